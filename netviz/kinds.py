"""Socket kinds: the one vocabulary of what a snapshot's `proto` may be, and what each kind means.

A socket's kind is the name of the /proc table it was read from (`tcp6`, `raw`, `packet`, ...).
Each kind has traits that the loader, the stitch, the filters and the renderers go by:

- `families`: the IP versions its addresses have (SCTP lists both: the address tells; a packet
  socket has none, it is below IP);
- `pairing`: how its sockets find their peers (see Pairing);
- `protocol`: the protocol name its flows carry and filters use (`tcp` for tcp and tcp6), None
  for the ingress kinds, which have no flows;
- `label`: how it is labelled in pictures, tables and JSON (flows: `tcp/80`; ingress: `raw6`);
- `repeats_inode`: whether one socket may appear as several records with one inode (SCTP lists
  each association of a one-to-many socket);
- `multihomed`: whether a record lists every address of each side (`local_all`, `remote_all`).

The payload (netviz/payload/capture.py) cannot import netviz: tests/test_snapshot_vocabulary.py
pins the kind names it writes to KIND_NAMES. docs/architecture.md says where to add a kind.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional


class Pairing(enum.Enum):
    """How the sockets of a kind are joined into flows."""

    CONNECTED = "connected"  # connection-oriented: a LISTEN socket serves, connected peers pair up
    BOUND = "bound"  # datagrams: a bound unconnected socket serves its connected clients
    INGRESS = "ingress"  # no peers: the socket sees traffic outside any flow (raw, packet, ping)


@dataclass(frozen=True)
class Kind:
    """One socket kind and its traits."""

    name: str
    families: tuple[int, ...]
    pairing: Pairing
    protocol: Optional[str]
    repeats_inode: bool = False  # one socket, several records (SCTP: one per association)
    multihomed: bool = False  # a record lists every address of each side (local_all, remote_all)

    @property
    def ingress(self) -> bool:
        """Does a socket of this kind see traffic outside any flow (drawn as an ingress item)?"""
        return self.pairing is Pairing.INGRESS

    @property
    def label(self) -> str:
        """How the kind is shown: its flows' protocol, or its own name for an ingress kind."""
        return self.protocol or self.name


_CONNECTED, _BOUND, _INGRESS = Pairing.CONNECTED, Pairing.BOUND, Pairing.INGRESS

# In the order docs/snapshot.md lists them (the payload reads the tables in this order).
KINDS: tuple[Kind, ...] = (
    Kind("tcp", (4,), _CONNECTED, "tcp"),
    Kind("tcp6", (6,), _CONNECTED, "tcp"),
    Kind("udp", (4,), _BOUND, "udp"),
    Kind("udp6", (6,), _BOUND, "udp"),
    Kind("udplite", (4,), _BOUND, "udplite"),
    Kind("udplite6", (6,), _BOUND, "udplite"),
    Kind("raw", (4,), _INGRESS, None),
    Kind("raw6", (6,), _INGRESS, None),
    Kind("icmp", (4,), _INGRESS, None),
    Kind("icmp6", (6,), _INGRESS, None),
    Kind("packet", (), _INGRESS, None),
    Kind("sctp", (4, 6), _CONNECTED, "sctp", repeats_inode=True, multihomed=True),
)

BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}

# Every name a snapshot's `proto` may hold.
KIND_NAMES: frozenset[str] = frozenset(BY_NAME)

# The kinds that see traffic outside any flow: raw, raw6, packet, icmp, icmp6.
INGRESS_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.ingress)

# The kinds whose records may share an inode (every other inode is unique on a machine).
REPEATED_INODE_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.repeats_inode)

# The kinds whose records list every address of each side (SCTP associations).
MULTIHOMED_KINDS: frozenset[str] = frozenset(kind.name for kind in KINDS if kind.multihomed)

# Raw IP sockets: the format keeps their IP protocol number in `local_port`.
RAW_KINDS: frozenset[str] = frozenset({"raw", "raw6"})

# The protocols flows carry, in a stable order (for filters and messages): tcp, udp, udplite, sctp.
PROTOCOLS: tuple[str, ...] = tuple(dict.fromkeys(kind.protocol for kind in KINDS if kind.protocol))

# The protocols whose servers are bound, unconnected sockets: udp, udplite.
DATAGRAM_PROTOCOLS: frozenset[str] = frozenset(
    kind.protocol for kind in KINDS if kind.pairing is Pairing.BOUND and kind.protocol)

# A name -> the protocol it joins as: every joinable kind, and the protocol names themselves as
# conntrack entries spell them. (`sctp6` never appears in a snapshot, SCTP has one table for both
# families; it is kept so that a conntrack entry spelled that way joins as before.)
JOIN_PROTOCOL: dict[str, str] = {
    **{kind.name: kind.protocol for kind in KINDS if kind.protocol},
    **{protocol: protocol for protocol in PROTOCOLS},
    "sctp6": "sctp",
}


def protocol_of(name: str) -> Optional[str]:
    """The protocol a socket kind (or a conntrack protocol name) joins as, None when it has none."""
    return JOIN_PROTOCOL.get(name)

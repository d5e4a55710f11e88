"""Join the snapshots of a group into process-to-process flows (pure: no I/O, no printing).

The rules, each with its own tests (tests/test_stitch_*.py):

* A flow is drawn only when both of its ends are sockets of machines in the group. Connections
  whose far end is outside are counted per machine (inbound when the local port listens, else
  outbound); connections whose far end should be in the group but cannot be told apart are
  counted as unresolved. Nothing is ever guessed.
* Address ownership comes from the snapshots' own addresses, per machine and namespace.
  Loopback addresses resolve only inside the same namespace of the same machine; link-local
  addresses and addresses owned by more than one machine (docker0's 172.17.0.1) only inside the
  same machine, except that a connection pairing an address several machines claim with an
  address of exactly one other machine joins across machines by its exact four-tuple (a machine
  claiming another's address must not hide that machine's flows; `address_claims` warns).
  `::ffff:a.b.c.d` is `a.b.c.d`.
* Connected sockets (TCP, connected UDP, SCTP associations over all their addresses) are matched
  by a hash join on the reversed four-tuple: linear in the number of sockets. An address that no
  machine of the group claims (legacy snapshots carry no addresses) still joins when exactly one
  socket of the group has the reversed tuple: both ends saw the same four numbers.
* What is left is tried, in order, against conntrack translations of any machine (NAT: the flow
  records the translating machine in `via`; a connection translated several times, such as a
  container's call masqueraded by its host then DNATed by another, is followed from one
  translation to the next and `via` names the last), then against listening sockets: a connected UDP
  socket reaches the bound socket that accepts its destination (exact address first, then the
  wildcard); a TCP/SCTP socket whose peer machine is in the group but whose peer socket is not in
  the snapshot is attached to the listener that accepts it and marked inferred. A connection that
  conntrack shows translated is never attached to a listener at the address it dialled (an idle
  docker-proxy on a published port): when its translations lead to no socket it is unresolved,
  or outside when they send it to an address that no machine of the group owns.
* Direction comes only from listening sockets (LISTEN; for UDP an unconnected bound socket) in the
  namespace of each end. When neither or both ends listen the flow is undirected, except after a
  NAT translation whose conntrack entry names the initiator.
* A socket held by several processes (pre-fork servers, inherited descriptors) belongs to the
  holder with the lowest pid; every holder is listed in the flow's `client_pids`/`server_pids`.
  When an accepted socket has no visible holder but the listener that accepted it has one, the
  flow goes to the listener's holder and is marked inferred.
* raw, raw6, packet, icmp and icmp6 sockets are ingress points of the process holding them.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Optional

from netviz.graph import (
    GROUP_BY_CHOICES,
    KIND_HOST,
    KIND_OUTSIDE,
    KIND_PROCESS,
    RANK_OUTSIDE,
    RANK_UNATTRIBUTED,
    UNATTRIBUTED,
    Flow,
    FlowGraph,
    HostEntry,
    Ingress,
    Listening,
    Node,
    NodeKey,
    UnresolvedConnection,
    node_key,
    outside_key,
)
from netviz.snapshot import Snapshot

log = logging.getLogger(__name__)

DATAGRAM_KINDS = frozenset({"udp", "udplite"})
INGRESS_PROTOS = frozenset({"raw", "raw6", "packet", "icmp", "icmp6"})
WILDCARDS = frozenset({"0.0.0.0", "::"})

# Translations followed one after another for one connection (masquerade, then DNAT, ...).
_MAX_TRANSLATION_HOPS = 4
MAX_UNRESOLVED_EXAMPLES = 10  # per machine, in the graph's `unresolved_examples`

_SCOPE_GLOBAL = 0
_SCOPE_LOOPBACK = 1
_SCOPE_LINK = 2


def normalize_address(text: str) -> str:
    """Canonical form for joining: an IPv4-mapped IPv6 address is its IPv4 address."""
    if text.startswith("::ffff:") and "." in text:
        return text[7:]
    return text


_scope_cache: dict[str, int] = {}


def _scope(address: str) -> int:
    """Loopback, link-local or anything else (cached: a fleet has few distinct addresses)."""
    scope = _scope_cache.get(address)
    if scope is None:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            scope = _SCOPE_GLOBAL
        else:
            if parsed.is_loopback:
                scope = _SCOPE_LOOPBACK
            elif parsed.is_link_local:
                scope = _SCOPE_LINK
            else:
                scope = _SCOPE_GLOBAL
        if len(_scope_cache) < 1_000_000:
            _scope_cache[address] = scope
    return scope


def _address_sort_key(address: str) -> tuple[int, int, str]:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (9, 0, address)
    return (parsed.version, int(parsed), address)


# Locality of an address: where a socket using it can find its peer.
_LOCAL_GLOBAL = 0  # anywhere in the group (owned by one machine, or by none)
_LOCAL_SHARED = 1  # owned by several machines: the same machine, or anywhere (see _shared_zone)
_LOCAL_MACHINE = 2  # link-local: the same machine only
_LOCAL_NETNS = 3  # loopback: the same namespace of the same machine only

# proto -> joinable kind (the family lives in the address)
_KIND = {
    "tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "udplite": "udplite", "udplite6": "udplite",
    "sctp": "sctp", "sctp6": "sctp",
}


class _End:
    """One socket of one machine, reduced to what the join needs.

    `locals_`/`remotes` hold every address of the end (one for TCP/UDP, all of an SCTP
    association), normalised. `listener` ends are LISTEN sockets or bound unconnected UDP sockets.
    """

    __slots__ = (
        "machine", "netns", "kind", "inode", "local_port", "remote_port", "locals_", "remotes", "owner",
        "listener", "matched", "ambiguous", "crowded", "zone", "translated", "leaves_group", "collector",
    )

    def __init__(
        self, machine: int, netns: int, kind: str, inode: int, local_port: int, remote_port: int,
        locals_: tuple[str, ...], remotes: tuple[str, ...], owner: Optional[int], listener: bool,
    ) -> None:
        self.machine = machine
        self.netns = netns
        self.kind = kind
        self.inode = inode
        self.local_port = local_port
        self.remote_port = remote_port
        self.locals_ = locals_
        self.remotes = remotes
        self.owner = owner
        self.listener = listener
        self.matched = False
        self.ambiguous = False
        self.crowded = False  # another socket has the same four-tuple in the same zone
        self.zone: object = None  # zone of the first (local, remote) pair
        self.translated = False  # a conntrack entry of the group shows this connection was NATed
        self.leaves_group = False  # ... and every translation sends it to an address outside the group
        self.collector = False  # the machine's end of netviz's own SSH session to it


def _addresses(primary: Optional[str], every: tuple[str, ...]) -> tuple[str, ...]:
    if not every:
        if primary is None:
            return ()
        if primary.startswith("::ffff:") and "." in primary:
            primary = primary[7:]
        return (primary,)
    result = [normalize_address(primary)] if primary is not None else []
    for address in every:
        address = normalize_address(address)
        if address not in result:
            result.append(address)
    return tuple(result)


class _Machine:
    """Per-machine lookups: who holds which socket inode, what each process is called."""

    def __init__(self, index: int, snapshot: Snapshot, group_by: str) -> None:
        self.index = index
        self.snapshot = snapshot
        self.group_by = group_by
        self.owner: dict[int, int] = {}  # socket inode -> lowest holder pid
        self.shared: dict[int, list[int]] = {}  # socket inode -> every holder, when more than one
        self.process = {process.pid: process for process in snapshot.processes}
        for process in sorted(snapshot.processes, key=lambda item: item.pid):
            for inode in process.sockets:
                first = self.owner.get(inode)
                if first is None:
                    self.owner[inode] = process.pid
                else:
                    self.shared.setdefault(inode, [first]).append(process.pid)
        self._keys: dict[Optional[int], NodeKey] = {}
        self.outside_inbound = 0
        self.outside_outbound = 0
        self.unresolved = 0
        self.unresolved_examples: list[UnresolvedConnection] = []
        # The sockets of the sshd processes the payload ran under: netviz's own session (and,
        # behind a jump host, the jump's forwarded connection arrives on it too).
        self.session_sockets: frozenset[int] = frozenset(
            inode for pid in snapshot.ssh_session_pids if pid in self.process for inode in self.process[pid].sockets
        )

    def holders(self, inode: int, owner: Optional[int]) -> Iterable[int]:
        shared = self.shared.get(inode)
        if shared is not None:
            return shared
        return () if owner is None else (owner,)

    def comm(self, pid: Optional[int]) -> str:
        if pid is None:
            return UNATTRIBUTED
        return self.process[pid].comm

    def key(self, pid: Optional[int]) -> NodeKey:
        """The node of a socket owned by `pid` (None: no visible owner), memoised."""
        key = self._keys.get(pid)
        if key is None:
            key = self._keys[pid] = node_key(self.group_by, self.index, pid, self.comm(pid))
        return key


def stitch(
    snapshots: Sequence[Snapshot],
    *,
    group_by: str = "process",
    show_external: bool = False,
    stale: Collection[str] = (),
) -> FlowGraph:
    """Join the snapshots of one group into a FlowGraph.

    `snapshots` must have distinct names (netviz.group.load_group makes them so). `stale` names
    machines whose snapshot comes from an earlier run (shown as such, stitched as usual).
    """
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}, not {group_by!r}")
    names = [snapshot.name for snapshot in snapshots]
    if len(set(names)) != len(names):
        raise ValueError("two snapshots share a name; load them with netviz.group.load_group")
    # A large group allocates millions of small objects and no garbage: the cyclic collector
    # would rescan all of them again and again (measured: 40% of the time). Pause it meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        stitcher = _Stitcher(sorted(snapshots, key=lambda item: item.name), group_by, show_external)
        stitcher.run()
        return stitcher.build(frozenset(stale))
    finally:
        if collecting:
            gc.enable()


def address_claims(snapshots: Sequence[Snapshot], shown: int = 5) -> list[str]:
    """Warnings for the addresses several machines claim that connections between machines use.

    Such an address is each claimant's own inside that machine (docker0's 172.17.0.1 is on
    every Docker host and nobody else's business), but when a connection pairs it with another
    machine's address, either the address is shared on purpose or one machine claims another's.
    The stitch then joins such connections by their exact four-tuple only (see _shared_zone);
    the warning names the address and every machine claiming it.
    """
    owners: dict[str, list[str]] = {}
    for snapshot in snapshots:
        mine = {normalize_address(address.address) for namespace in snapshot.namespaces
                for address in namespace.addresses}
        for address in mine:
            if _scope(address) == _SCOPE_GLOBAL:
                owners.setdefault(address, []).append(snapshot.name)
    shared = {address: names for address, names in owners.items() if len(names) > 1}
    if not shared:
        return []
    forms = set(shared) | {f"::ffff:{address}" for address in shared if "." in address}
    contested: set[str] = set()
    for snapshot in snapshots:
        for namespace in snapshot.namespaces:
            for socket in namespace.sockets:
                if socket.local not in forms and socket.remote not in forms:
                    continue  # the common case, checked without normalising
                local, remote = normalize_address(socket.local or ""), normalize_address(socket.remote or "")
                for claimed, other in ((local, remote), (remote, local)):
                    others = owners.get(other)
                    if claimed in shared and others is not None and len(others) == 1 \
                            and others[0] not in shared[claimed]:
                        contested.add(claimed)
    warnings = []
    for address in sorted(contested, key=_address_sort_key):
        names = shared[address]
        listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
        warnings.append(
            f"address {address} is claimed by {len(names)} machines ({listed}): their connections with other "
            f"machines at that address are joined only by exact addresses and ports. Unless it is shared on "
            f"purpose, one of them claims another's address"
        )
    return warnings


class _Stitcher:
    def __init__(self, snapshots: list[Snapshot], group_by: str, show_external: bool) -> None:
        self.group_by = group_by
        self.show_external = show_external
        self.machines = [_Machine(index, snapshot, group_by) for index, snapshot in enumerate(snapshots)]
        # address -> machines owning it; (machine, address) -> namespaces owning it there
        self.address_machines: dict[str, set[int]] = {}
        self.address_namespaces: dict[tuple[int, str], set[int]] = {}
        self.locality: dict[str, int] = {}
        self.singletons: dict[str, tuple[str]] = {}
        # (kind, local, local port, remote, remote port, zone) -> connected end, or a list of them
        # when several share the key (see _bucket). The zone keeps loopback and machine-local
        # tuples (identical on every machine) in separate buckets, so that a thousand machines
        # with the same 127.0.0.1 tuple cost no more than one.
        self.connections: dict[tuple, object] = {}
        # (machine, netns, kind, port) -> listening ends
        self.listeners: dict[tuple[int, int, str, int], list[_End]] = {}
        # conntrack original tuple (kind, src, sport, dst, dport, zone) -> [(machine, netns, reply)]
        self.translations: dict[tuple, list[tuple[int, int, tuple[str, int, str, int]]]] = {}
        # untranslated datagram conntrack entries (kind, src, sport, dst, dport) -> the first
        # (machine, netns) that tracked it: the only trace of a client that sends from an
        # unconnected socket (sendto), whose /proc row has no peer
        self.datagram_tracks: dict[tuple[str, str, int, str, int], tuple[int, int]] = {}
        self.ends: list[_End] = []
        self.ingress: dict[tuple[int, Optional[int]], set[Ingress]] = {}
        # flow key -> [count, server address, client pids, server pids]
        self.links: dict[tuple, list] = {}
        for machine in self.machines:
            self._index_addresses(machine)
        for machine in self.machines:
            self._index_sockets(machine)

    # ----------------------------------------------------------------- indexing

    def _index_addresses(self, machine: _Machine) -> None:
        for namespace in machine.snapshot.namespaces:
            for address in namespace.addresses:
                text = normalize_address(address.address)
                self.address_machines.setdefault(text, set()).add(machine.index)
                self.address_namespaces.setdefault((machine.index, text), set()).add(namespace.inode)

    def _locality(self, address: str) -> int:
        locality = self.locality.get(address)
        if locality is None:
            scope = _scope(address)
            if scope == _SCOPE_LOOPBACK:
                locality = _LOCAL_NETNS
            elif scope == _SCOPE_LINK:
                locality = _LOCAL_MACHINE
            elif len(self.address_machines.get(address, ())) > 1:
                locality = _LOCAL_SHARED
            else:
                locality = _LOCAL_GLOBAL
            self.locality[address] = locality
        return locality

    def _zone(self, machine: int, netns: int, local: str, remote: str) -> object:
        """Where the peer of a (local, remote) socket must live: None (anywhere), the machine,
        or (machine, namespace); the peer computes the same zone from the same two addresses."""
        locality = self.locality
        first = locality.get(local)
        if first is None:
            first = self._locality(local)
        second = locality.get(remote)
        if second is None:
            second = self._locality(remote)
        if first < second:
            first = second
        if first == _LOCAL_GLOBAL:
            return None
        if first == _LOCAL_SHARED:
            return self._shared_zone(machine, local, remote)
        return machine if first == _LOCAL_MACHINE else (machine, netns)

    def _shared_zone(self, machine: int, local: str, remote: str) -> Optional[int]:
        """The zone of a pair of addresses, one at least owned by several machines, neither
        loopback nor link-local.

        Such an address (docker0's 172.17.0.1 on every Docker host) is each owner's own: the
        peer is on the same machine. But paired with an address that exactly one other machine
        owns, the connection comes from that machine: the zone is the whole group, where only an
        exact reversed four-tuple joins it (one machine claiming another's address must not turn
        that machine's flows into unresolved ones). Both ends compute the same zone.
        """
        address_machines = self.address_machines
        shared, other = (local, remote) if self.locality[local] == _LOCAL_SHARED else (remote, local)
        if self.locality[other] != _LOCAL_GLOBAL:
            return machine  # both shared
        other_owners = address_machines.get(other)
        if other_owners is None or len(other_owners) != 1 or not other_owners.isdisjoint(address_machines[shared]):
            return machine
        return None

    def _index_sockets(self, machine: _Machine) -> None:
        index = machine.index
        owner_of = machine.owner.get
        connections = self.connections
        listeners = self.listeners
        add_end = self.ends.append
        singletons = self.singletons
        locality = self.locality
        session_sockets = machine.session_sockets
        for namespace in machine.snapshot.namespaces:
            netns = namespace.inode
            netns_zone = (index, netns)
            for entry in namespace.conntrack or ():
                self._index_translation(index, netns, entry)
            for socket in namespace.sockets:
                kind = _KIND.get(socket.proto)
                if kind is None:
                    if socket.proto in INGRESS_PROTOS:
                        self._add_ingress(machine, socket)
                    continue
                local_port = socket.local_port
                if not local_port:
                    continue
                remote = socket.remote
                remote_port = socket.remote_port
                unconnected = not remote_port or remote is None or remote in WILDCARDS
                if socket.state == "LISTEN" or (unconnected and kind in DATAGRAM_KINDS):
                    end = _End(
                        index, netns, kind, socket.inode, local_port, 0,
                        _addresses(socket.local, socket.local_all), (), owner_of(socket.inode), True,
                    )
                    key = (index, netns, kind, local_port)
                    bucket = listeners.get(key)
                    if bucket is None:
                        listeners[key] = [end]
                    else:
                        bucket.append(end)
                    continue
                if unconnected:
                    continue  # bound but neither listening nor connected: no flow
                if socket.local_all or socket.remote_all:  # SCTP: every address of the association
                    self._index_multihomed(
                        _End(
                            index, netns, kind, socket.inode, local_port, remote_port,
                            _addresses(socket.local, socket.local_all), _addresses(remote, socket.remote_all),
                            owner_of(socket.inode), False,
                        )
                    )
                    continue
                # TCP/UDP: one address each side; this loop runs a million times, so it is inlined
                local = socket.local
                if local is None:
                    continue
                if local.startswith("::ffff:") and "." in local:
                    local = local[7:]
                if remote.startswith("::ffff:") and "." in remote:
                    remote = remote[7:]
                # one shared 1-tuple per distinct address: a million sockets, a few thousand addresses
                locals_ = singletons.get(local)
                if locals_ is None:
                    locals_ = singletons[local] = (local,)
                    self._locality(local)
                remotes = singletons.get(remote)
                if remotes is None:
                    remotes = singletons[remote] = (remote,)
                    self._locality(remote)
                # join keys built from the shared strings compare by identity and reuse cached hashes
                local, remote = locals_[0], remotes[0]
                end = _End(index, netns, kind, socket.inode, local_port, remote_port, locals_, remotes, owner_of(socket.inode), False)
                add_end(end)
                if session_sockets and socket.inode in session_sockets:
                    end.collector = True
                reach = locality[local]
                if locality[remote] > reach:
                    reach = locality[remote]
                if reach == _LOCAL_GLOBAL:
                    end_zone = None
                elif reach == _LOCAL_SHARED:
                    end_zone = self._shared_zone(index, local, remote)
                else:
                    end_zone = index if reach == _LOCAL_MACHINE else netns_zone
                end.zone = end_zone
                key = (kind, local, local_port, remote, remote_port, end_zone)
                bucket = connections.get(key)
                if bucket is None:
                    connections[key] = end  # a lone end is stored bare: most tuples are unique
                else:
                    self._share_key(key, bucket, end)

    def _share_key(self, key: tuple, bucket: object, end: _End) -> None:
        """A second socket with the same join key: keep a list and mark them all crowded."""
        if bucket.__class__ is not list:
            bucket = self.connections[key] = [bucket]
        bucket.append(end)
        for other in bucket:
            other.crowded = True

    def _index_multihomed(self, end: _End) -> None:
        self.ends.append(end)
        first = True
        for local in end.locals_:
            for far in end.remotes:
                zone = self._zone(end.machine, end.netns, local, far)
                if first:
                    end.zone = zone
                    first = False
                key = (end.kind, local, end.local_port, far, end.remote_port, zone)
                bucket = self.connections.get(key)
                if bucket is None:
                    self.connections[key] = end
                else:
                    self._share_key(key, bucket, end)

    def _index_translation(self, machine: int, netns: int, entry) -> None:
        original, reply = entry.original, entry.reply
        if original.sport is None or original.dport is None or reply.sport is None or reply.dport is None:
            return
        kind = _KIND.get(entry.proto)
        if kind is None:
            return
        src, dst = normalize_address(original.src), normalize_address(original.dst)
        reply_src, reply_dst = normalize_address(reply.src), normalize_address(reply.dst)
        if (reply_src, reply.sport, reply_dst, reply.dport) == (dst, original.dport, src, original.sport):
            # tracked but not translated: the plain join covers connected sockets
            if kind in DATAGRAM_KINDS:
                self.datagram_tracks.setdefault((kind, src, original.sport, dst, original.dport), (machine, netns))
            return
        # a machine-local client or destination can only have been translated on its own machine
        zone = machine if self._zone(machine, netns, src, dst) is not None else None
        key = (kind, src, original.sport, dst, original.dport, zone)
        self.translations.setdefault(key, []).append((machine, netns, (reply_src, reply.sport, reply_dst, reply.dport)))

    def _add_ingress(self, machine: _Machine, socket) -> None:
        protocol = socket.protocol
        if protocol is None and socket.proto in ("raw", "raw6"):
            protocol = socket.local_port  # the format keeps a raw socket's IP protocol there
        item = Ingress(kind=socket.proto, protocol=protocol, interface=socket.interface)
        key = (machine.index, machine.owner.get(socket.inode))
        self.ingress.setdefault(key, set()).add(item)

    # ----------------------------------------------------------------- address resolution

    def _reachable(self, machine: int, netns: int, address: str, target: _End) -> bool:
        """Can a socket in (machine, netns) reach `address` on the socket `target`?"""
        locality = self.locality.get(address)
        if locality is None:
            locality = self._locality(address)
        if locality == _LOCAL_NETNS:
            return target.machine == machine and target.netns == netns
        owners = self.address_machines.get(address)
        if locality == _LOCAL_MACHINE:  # link-local: any namespace of the machine
            return target.machine == machine and (owners is None or machine in owners)
        if locality == _LOCAL_SHARED and machine in owners:  # docker0: the machine's own
            return target.machine == machine
        if owners is None:
            return True  # no machine claims it: the exact tuple is the only evidence, see _join_exact
        return target.machine in owners

    def _locations(self, machine: int, netns: int, address: str) -> Optional[list[tuple[int, int]]]:
        """The namespaces where `address`, seen from (machine, netns), lives; None when ambiguous."""
        scope = _scope(address)
        if scope == _SCOPE_LOOPBACK:
            return [(machine, netns)]
        if scope == _SCOPE_LINK:
            return [(machine, ns) for ns in sorted(self.address_namespaces.get((machine, address), ()))]
        owners = self.address_machines.get(address)
        if not owners:
            return []
        if len(owners) > 1:
            if machine not in owners:
                return None  # claimed by several other machines: which one listens is not known
            owner = machine  # a shared address (docker0) is the machine's own
        else:
            (owner,) = owners
        return [(owner, ns) for ns in sorted(self.address_namespaces[(owner, address)])]

    def _listeners_for(self, machine: int, netns: int, address: str, port: int, kind: str) -> Optional[list[_End]]:
        """The listening socket that accepts `address`:`port` seen from (machine, netns).

        The kernel prefers a socket bound to the exact address over a wildcard one. Several
        sockets in one namespace (SO_REUSEPORT workers) are one service: the lowest owner pid
        wins. Candidates in several namespaces are ambiguous: None.
        """
        locations = self._locations(machine, netns, address)
        if locations is None:
            return None
        exact: list[_End] = []
        wildcard: list[_End] = []
        ipv6 = ":" in address
        for owner_machine, ns in locations:
            for listener in self.listeners.get((owner_machine, ns, kind, port), ()):
                if address in listener.locals_:
                    exact.append(listener)
                elif "::" in listener.locals_ or ("0.0.0.0" in listener.locals_ and not ipv6):
                    wildcard.append(listener)
        found = exact or wildcard
        if not found:
            return []
        if len({(end.machine, end.netns) for end in found}) > 1:
            return None
        return [min(found, key=lambda end: (end.owner is None, end.owner or 0, end.inode))]

    def _listens(self, end: _End) -> bool:
        """Does a listening socket in the end's namespace accept the end's local address and port?"""
        if end.listener:
            return True
        bucket = self.listeners.get((end.machine, end.netns, end.kind, end.local_port))
        if not bucket:
            return False
        for listener in bucket:
            for local in end.locals_:
                if local in listener.locals_ or "::" in listener.locals_ or (
                    "0.0.0.0" in listener.locals_ and ":" not in local
                ):
                    return True
        return False

    # ----------------------------------------------------------------- joining

    def run(self) -> None:
        joined = self._join_exact()
        connected_datagrams = self._connected_datagram_tuples() if self.datagram_tracks else set()
        # the later phases only look at what the exact join left (a few percent of the sockets)
        self.ends = [end for end in self.ends if not end.matched]
        translated = self._join_translated()
        by_listener = self._join_listeners()
        tracked = self._join_tracked_datagrams(connected_datagrams)
        self._count_leftovers()
        log.debug(
            "stitch: %d exact pairs, %d through NAT, %d to listeners, %d datagram flows from conntrack, %d left unmatched",
            joined, translated, by_listener, tracked, sum(1 for end in self.ends if not end.matched),
        )

    def _bucket(self, key: tuple) -> Sequence[_End]:
        """The connected ends stored under a join key."""
        bucket = self.connections.get(key)
        if bucket is None:
            return ()
        return bucket if bucket.__class__ is list else (bucket,)

    def _exact_candidates(self, end: _End) -> list[_End]:
        """Unpaired sockets whose four-tuple is `end`'s reversed and that each end can reach."""
        found: list[_End] = []
        single = len(end.locals_) == 1 and len(end.remotes) == 1
        if single and not end.crowded:
            # the common case: one address each side, a key nobody else has
            local, far = end.locals_[0], end.remotes[0]
            bucket = self.connections.get((end.kind, far, end.remote_port, local, end.local_port, end.zone))
            if bucket is None:
                return found
            if bucket.__class__ is not list:
                if (
                    bucket is not end
                    and not bucket.matched
                    and self._reachable(end.machine, end.netns, far, bucket)
                    and self._reachable(bucket.machine, bucket.netns, local, end)
                ):
                    found.append(bucket)
                return found
        for far in end.remotes:
            for local in end.locals_:
                zone = end.zone if single else self._zone(end.machine, end.netns, local, far)
                for candidate in self._bucket((end.kind, far, end.remote_port, local, end.local_port, zone)):
                    if (
                        candidate is not end
                        and not candidate.matched
                        and candidate not in found
                        and self._reachable(end.machine, end.netns, far, candidate)
                        and self._reachable(candidate.machine, candidate.netns, local, end)
                    ):
                        found.append(candidate)
        return found

    def _join_exact(self) -> int:
        pairs = 0
        for end in self.ends:
            if end.matched or end.ambiguous:
                continue
            found = self._exact_candidates(end)
            if len(found) == 1:
                other = found[0]
                # the match must hold both ways; only checked when a tuple is shared, so it stays cheap
                if (end.crowded or other.crowded) and self._exact_candidates(other) != [end]:
                    end.ambiguous = other.ambiguous = True
                    continue
                self._pair(end, other, server_address=None, inferred=False, via=None, initiator=False)
                pairs += 1
            elif found:
                end.ambiguous = True
                for other in found:
                    other.ambiguous = True
        return pairs

    def _join_translated(self) -> int:
        if not self.translations:
            return 0
        pairs = 0
        for end in self.ends:
            if end.matched or end.ambiguous:
                continue
            found: dict[int, tuple[_End, int, str]] = {}
            leaves_group = True
            for local in end.locals_:
                for far in end.remotes:
                    zone = end.machine if self._zone(end.machine, end.netns, local, far) is not None else None
                    entries = self.translations.get((end.kind, local, end.local_port, far, end.remote_port, zone))
                    if entries:
                        end.translated = True
                        leaves_group = self._follow_translations(end, entries, found) and leaves_group
            end.leaves_group = end.translated and leaves_group
            if len(found) == 1:
                ((target, nat_machine, address),) = found.values()
                via = self.machines[nat_machine].snapshot.name
                self._pair(end, target, server_address=address, inferred=False, via=via, initiator=True)
                pairs += 1
            elif found:
                end.ambiguous = True
        return pairs

    def _follow_translations(
        self, end: _End, entries: list[tuple[int, int, tuple[str, int, str, int]]], found: dict[int, tuple[_End, int, str]]
    ) -> bool:
        """Collect the server sockets that `entries` (translations of `end`'s tuple) lead to;
        return True when they lead nowhere in the group (every last translation sends the
        connection to an address that no machine of the group owns).

        A connection can be translated more than once: a container's call to a port published on
        another Docker host is masqueraded by its own host, then DNATed by the other one. When no
        socket has a translated tuple, the tuple as it leaves the translating machine is looked up
        again as the original tuple of another translation, a few hops at most. The flow's `via`
        is the last translating machine, the one nearest the server.
        """
        pending = list(entries)
        seen: set[tuple] = set()
        outside = True
        for _hop in range(_MAX_TRANSLATION_HOPS):
            following: list[tuple[int, int, tuple[str, int, str, int]]] = []
            for nat_machine, nat_netns, reply in pending:
                if (nat_machine, reply) in seen:
                    continue
                seen.add((nat_machine, reply))
                targets = self._translated_targets(end, nat_machine, nat_netns, reply)
                if not targets:
                    # on the wire after this machine: from the reply's destination to its source
                    server, server_port, client, client_port = reply
                    zone = nat_machine if self._zone(nat_machine, nat_netns, client, server) is not None else None
                    further = self.translations.get((end.kind, client, client_port, server, server_port, zone))
                    if further:
                        following.extend(further)
                        continue
                    if end.kind in DATAGRAM_KINDS:
                        # the last translation: a connected UDP client reaches the bound socket there
                        targets = self._listeners_for(nat_machine, nat_netns, server, server_port, end.kind) or []
                    if not targets and (_scope(server) != _SCOPE_GLOBAL or server in self.address_machines):
                        outside = False
                else:
                    outside = False
                for target in targets:
                    found.setdefault(id(target), (target, nat_machine, reply[0]))
            if not following:
                return outside and not found
            pending = following
        return False

    def _translated_targets(self, end: _End, machine: int, netns: int, reply: tuple[str, int, str, int]) -> list[_End]:
        """The server side of a translated connection, resolved from the translating namespace."""
        server, server_port, client, client_port = reply
        # the server socket's own zone, computed from the translating machine's point of view
        zone = self._zone(machine, netns, server, client)
        targets = [
            candidate
            for candidate in self._bucket((end.kind, server, server_port, client, client_port, zone))
            if candidate is not end and not candidate.matched and self._reachable(machine, netns, server, candidate)
        ]
        return targets

    def _join_listeners(self) -> int:
        pairs = 0
        for end in self.ends:
            if end.matched or end.ambiguous or self._listens(end):
                continue  # a server-side socket whose client is missing: no listener to attach to
            if end.translated:
                # NAT took this connection elsewhere: whatever listens at the address it dialled
                # (an idle docker-proxy on a published port) is not its peer. Unresolved.
                continue
            found: list[tuple[_End, str]] = []
            for far in end.remotes:
                listeners = self._listeners_for(end.machine, end.netns, far, end.remote_port, end.kind)
                if listeners is None:
                    end.ambiguous = True
                    continue
                for listener in listeners:
                    if all(listener is not other for other, _ in found):
                        found.append((listener, far))
            if len(found) == 1 and not end.ambiguous:
                listener, far = found[0]
                inferred = end.kind not in DATAGRAM_KINDS
                self._pair(end, listener, server_address=far, inferred=inferred, via=None, initiator=True)
                pairs += 1
            elif found:
                end.ambiguous = True
        return pairs

    def _connected_datagram_tuples(self) -> set[tuple[str, str, int, str, int]]:
        """The four-tuples of every connected datagram socket, both ways round."""
        connected = set()
        for end in self.ends:
            if end.kind in DATAGRAM_KINDS:
                for local in end.locals_:
                    for far in end.remotes:
                        connected.add((end.kind, local, end.local_port, far, end.remote_port))
                        connected.add((end.kind, far, end.remote_port, local, end.local_port))
        return connected

    def _join_tracked_datagrams(self, connected: set[tuple[str, str, int, str, int]]) -> int:
        """Datagram flows that only conntrack shows: a client sending from an unconnected socket
        (statsd, syslog, SNMP, NTP) leaves a bound socket with no peer in /proc. When an entry
        leads from exactly one bound socket of the group (at its source address and port) to
        exactly one bound socket (at its destination), that is an `inferred` flow between them.
        Tuples of connected sockets (`connected`) are left to the joins above: they saw the socket."""
        flows = 0
        for (kind, src, sport, dst, dport), (machine, netns) in self.datagram_tracks.items():
            if (kind, src, sport, dst, dport) in connected:
                continue
            senders = self._listeners_for(machine, netns, src, sport, kind)
            receivers = self._listeners_for(machine, netns, dst, dport, kind)
            if not senders or not receivers or senders[0] is receivers[0]:
                continue  # not both ends in the group, or not told apart: nothing to draw
            self._pair(senders[0], receivers[0], server_address=dst, inferred=True, via=None, initiator=True)
            flows += 1
        return flows

    def _count_leftovers(self) -> None:
        for end in self.ends:
            if end.matched:
                continue
            machine = self.machines[end.machine]
            if end.collector:
                # netviz's own session, from a machine of the group that was captured when the
                # connection was not open yet (or no more): outside, as if seen from both ends
                in_group = False
            elif end.translated:
                # NAT decided where it went: outside when every translation leaves the group
                in_group = end.ambiguous or not end.leaves_group
            else:
                in_group = end.ambiguous or any(
                    _scope(far) != _SCOPE_GLOBAL or far in self.address_machines for far in end.remotes
                )
            if in_group:
                machine.unresolved += 1
                machine.unresolved_examples.append(self._unresolved(end))
                continue
            self._count_outside(end)

    def _unresolved(self, end: _End) -> UnresolvedConnection:
        """An unresolved connection for the graph, with the reason the joins could not place it."""
        if end.ambiguous:
            why = "several sockets or namespaces could be its peer"
        elif end.translated:
            why = "NAT in the group translated it, to no socket that was captured"
        elif any(_scope(far) != _SCOPE_GLOBAL for far in end.remotes):
            why = "no socket of its own machine has the reversed address and port"
        else:
            why = "its peer machine is in the group, but has no such socket nor a listener for it"
        return UnresolvedConnection(end.kind, end.locals_[0], end.local_port, end.remotes[0], end.remote_port,
                                    end.owner, why)

    def _count_outside(self, end: _End) -> None:
        """A connection whose far side is not drawn: inbound when the end's port listens."""
        machine = self.machines[end.machine]
        inbound = self._listens(end)
        if inbound:
            machine.outside_inbound += 1
        else:
            machine.outside_outbound += 1
        if self.show_external:
            self._add_outside(machine, end, inbound)

    # ----------------------------------------------------------------- flows

    def _pair(
        self,
        end: _End,
        other: _End,
        *,
        server_address: Optional[str],
        inferred: bool,
        via: Optional[str],
        initiator: bool,
    ) -> None:
        """Record the connection between `end` and `other` (a peer socket or a listener).

        `initiator` says `end` is known to have opened the connection (NAT, or a socket attached to
        a listener); otherwise direction comes from the listeners alone.
        """
        end.matched = True
        if not other.listener:
            other.matched = True
        if end.collector or other.collector:
            self._count_collector_session(end, other)
            return
        end_listens = self._listens(end)
        other_listens = self._listens(other)
        if other_listens and not end_listens:
            client, server, directed = end, other, True
        elif end_listens and not other_listens:
            client, server, directed = other, end, True
        elif initiator:
            client, server, directed = end, other, True
        else:
            client, server, directed = end, other, False
        self._add_link(client, server, server_address, directed, inferred, via)

    def _count_collector_session(self, *ends: _End) -> None:
        """netviz's own SSH session to a machine, seen from both ends (netviz ran on a machine of
        the group, or reached it through a jump host of the group): the connection exists only
        because the map is being made, so it is counted as outside at each end, never drawn (a
        listener it was attached to is no connection: nothing to count there)."""
        for end in ends:
            if not end.listener:
                self._count_outside(end)

    def _server_owner(self, server: _End) -> tuple[Optional[int], bool]:
        """The owner of a server-side socket; an accepted socket nobody visibly holds falls back to the
        holder of the listener that accepted it (inferred)."""
        if server.owner is not None or server.listener:
            return server.owner, False
        for local in server.locals_:
            listeners = self._listeners_for(server.machine, server.netns, local, server.local_port, server.kind)
            if listeners and listeners[0].owner is not None:
                return listeners[0].owner, True
        return None, False

    def _add_link(
        self, client: _End, server: _End, server_address: Optional[str], directed: bool, inferred: bool, via: Optional[str]
    ) -> None:
        client_machine = self.machines[client.machine]
        server_machine = self.machines[server.machine]
        server_owner = server.owner
        fallback = False
        if directed and server_owner is None:
            server_owner, fallback = self._server_owner(server)
            inferred = inferred or fallback
        client_key = client_machine._keys.get(client.owner) or client_machine.key(client.owner)
        server_key = server_machine._keys.get(server_owner) or server_machine.key(server_owner)
        if client_machine.shared:
            client_pids = client_machine.holders(client.inode, client.owner)
        else:
            client_pids = () if client.owner is None else (client.owner,)
        if fallback:
            server_pids: Iterable[int] = (server_owner,)
        elif server_machine.shared:
            server_pids = server_machine.holders(server.inode, server_owner)
        else:
            server_pids = () if server_owner is None else (server_owner,)
        server_port = server.local_port
        if server_address is None:
            server_address = server.locals_[0]
        if not directed and (client_key, client.local_port) > (server_key, server_port):
            # an undirected edge: put its two ends in a stable order
            client_key, server_key = server_key, client_key
            client_pids, server_pids = server_pids, client_pids
            server_port, server_address = client.local_port, client.locals_[0]
        self._accumulate(
            (client_key, server_key, server.kind, server_port, directed, inferred, via),
            server_address, client_pids, server_pids,
        )

    def _add_outside(self, machine: _Machine, end: _End, inbound: bool) -> None:
        inside = machine.key(end.owner)
        outside = outside_key(self.group_by, end.machine)
        pids = machine.holders(end.inode, end.owner)
        if inbound:
            key = (outside, inside, end.kind, end.local_port, True, False, None)
            self._accumulate(key, end.locals_[0], (), pids)
        else:
            # the far side's listeners are not in the group: no direction can be proven
            key = (inside, outside, end.kind, end.remote_port, False, False, None)
            self._accumulate(key, end.remotes[0], pids, ())

    def _accumulate(self, key: tuple, server_address: str, client_pids: Iterable[int], server_pids: Iterable[int]) -> None:
        link = self.links.get(key)
        if link is None:
            self.links[key] = [1, server_address, set(client_pids), set(server_pids)]
            return
        link[0] += 1
        if server_address < link[1]:
            link[1] = server_address
        link[2].update(client_pids)
        link[3].update(server_pids)

    # ----------------------------------------------------------------- graph

    def build(self, stale: frozenset[str]) -> FlowGraph:
        group_by = self.group_by
        wanted: set[NodeKey] = set()
        for client_key, server_key, *_ in self.links:
            wanted.add(client_key)
            wanted.add(server_key)
        listening: dict[NodeKey, set[Listening]] = {}
        for bucket in self.listeners.values():
            for listener in bucket:
                machine = self.machines[listener.machine]
                key = node_key(group_by, listener.machine, listener.owner, machine.comm(listener.owner))
                items = listening.setdefault(key, set())
                for address in listener.locals_:
                    items.add(Listening(listener.kind, address, listener.local_port))
        ingress: dict[NodeKey, set[Ingress]] = {}
        for (machine_index, pid), items in self.ingress.items():
            machine = self.machines[machine_index]
            key = node_key(group_by, machine_index, pid, machine.comm(pid))
            ingress.setdefault(key, set()).update(items)
        wanted.update(listening)
        wanted.update(ingress)
        if group_by == "host":
            wanted.update(node_key("host", machine.index, None, "") for machine in self.machines)

        members = self._members(wanted)
        ordered = sorted(wanted)
        ids = {key: f"n{number}" for number, key in enumerate(ordered, start=1)}
        nodes = [
            self._node(key, ids[key], members.get(key, []), listening.get(key, set()), ingress.get(key, set()))
            for key in ordered
        ]

        rank_of = {key: rank for rank, key in enumerate(ordered)}

        def flow_order(item: tuple[tuple, list]) -> tuple:
            (client_key, server_key, kind, port, directed, inferred, via), _ = item
            return (rank_of[client_key], rank_of[server_key], kind, port, not directed, inferred, via or "")

        flows = []
        for number, (key, link) in enumerate(sorted(self.links.items(), key=flow_order), start=1):
            client_key, server_key, kind, port, directed, inferred, via = key
            count, address, client_pids, server_pids = link
            flows.append(
                Flow(
                    id=f"f{number}", client=ids[client_key], server=ids[server_key], proto=kind,
                    server_port=port, server_address=address, count=count, directed=directed,
                    inferred=inferred, via=via, client_pids=tuple(sorted(client_pids)),
                    server_pids=tuple(sorted(server_pids)),
                )
            )
        hosts = [self._host(machine, stale) for machine in self.machines]
        return FlowGraph(group_by=group_by, hosts=hosts, nodes=nodes, flows=flows)

    def _members(self, wanted: set[NodeKey]) -> dict[NodeKey, list]:
        """The processes behind each wanted node (only processes holding at least one socket)."""
        members: dict[NodeKey, list] = {}
        for machine in self.machines:
            for process in machine.snapshot.processes:
                if not process.sockets:
                    continue
                key = node_key(self.group_by, machine.index, process.pid, process.comm)
                if key in wanted:
                    members.setdefault(key, []).append(process)
        return members

    def _node(self, key: NodeKey, node_id: str, processes: list, listening: set[Listening], ingress: set[Ingress]) -> Node:
        machine_index, rank, _ = key
        machine = self.machines[machine_index]
        host = machine.snapshot.name
        if rank == RANK_OUTSIDE:
            return Node(id=node_id, host=host, kind=KIND_OUTSIDE, comm="outside")
        if rank == RANK_UNATTRIBUTED:
            held = set(machine.owner)
            count = sum(1 for ns in machine.snapshot.namespaces for s in ns.sockets if s.inode not in held)
            return Node(
                id=node_id, host=host, kind=KIND_PROCESS, comm=UNATTRIBUTED,
                listening=tuple(sorted(listening)), ingress=tuple(sorted(ingress)), sockets=count,
            )
        processes = sorted(processes, key=lambda process: process.pid)
        inodes: set[int] = set()
        for process in processes:
            inodes.update(process.sockets)
        if self.group_by == "host":
            return Node(
                id=node_id, host=host, kind=KIND_HOST, comm=host,
                listening=tuple(sorted(listening)), ingress=tuple(sorted(ingress)),
                sockets=sum(len(ns.sockets) for ns in machine.snapshot.namespaces),
            )
        first = processes[0] if processes else None
        return Node(
            id=node_id,
            host=host,
            kind=KIND_PROCESS,
            comm=first.comm if first else str(key[2]),
            pids=tuple(process.pid for process in processes),
            users=tuple(sorted({process.user if process.user is not None else str(process.uid) for process in processes})),
            contexts=tuple(sorted({process.context for process in processes if process.context is not None})),
            cmdline=(" ".join(first.cmdline) if first and first.cmdline else (first.comm if first else "")),
            listening=tuple(sorted(listening)),
            ingress=tuple(sorted(ingress)),
            sockets=len(inodes),
        )

    def _host(self, machine: _Machine, stale: frozenset[str]) -> HostEntry:
        snapshot = machine.snapshot
        main = _main_namespace(snapshot)
        addresses: set[str] = set()
        for namespace in snapshot.namespaces:
            if namespace.inode != main:
                continue
            for address in namespace.addresses:
                text = normalize_address(address.address)
                if _scope(text) == _SCOPE_GLOBAL:
                    addresses.add(text)
        return HostEntry(
            name=snapshot.name,
            hostname=snapshot.host.hostname,
            machine_id=snapshot.host.machine_id,
            addresses=tuple(sorted(addresses, key=_address_sort_key)),
            captured_at=snapshot.host.captured_at,
            stale=snapshot.name in stale,
            complete=snapshot.coverage.complete,
            legacy=snapshot.legacy,
            outside_inbound=machine.outside_inbound,
            outside_outbound=machine.outside_outbound,
            unresolved=machine.unresolved,
            # the same few whatever the order of the input: the first in sorted order
            unresolved_examples=tuple(sorted(machine.unresolved_examples, key=_example_order)[:MAX_UNRESOLVED_EXAMPLES]),
        )


def _example_order(example: UnresolvedConnection) -> tuple:
    return (example.proto, _address_sort_key(example.local), example.local_port, _address_sort_key(example.remote),
            example.remote_port, example.pid is None, example.pid or 0, example.why)


def _main_namespace(snapshot: Snapshot) -> Optional[int]:
    """The machine's own network namespace: pid 1's, else the one with the most processes."""
    for process in snapshot.processes:
        if process.pid == 1 and process.netns is not None:
            return process.netns
    if not snapshot.namespaces:
        return None
    return min(snapshot.namespaces, key=lambda namespace: (-namespace.pids, namespace.inode)).inode

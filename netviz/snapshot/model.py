"""The snapshot model: one machine at one moment, as typed, frozen records.

Every record here has been validated (netviz/snapshot/parse.py and legacy.py build them from
untrusted JSON); the stitch and the renderers trust them. The format is documented in
docs/snapshot.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Optional

import msgspec


if TYPE_CHECKING:
    from netviz.snapshot.window import Window


@dataclass(frozen=True)
class Address:
    interface: str
    family: int  # 4 or 6
    address: str
    prefix: int


class SocketExtra(msgspec.Struct, frozen=True, gc=False):
    """What few sockets have: a raw or packet socket's IP protocol, a packet socket's interface
    and packet type, an SCTP association's every address and its SCTP state."""

    protocol: Optional[int] = None
    interface: Optional[str] = None
    packet_type: Optional[str] = None
    local_all: tuple[str, ...] = ()
    remote_all: tuple[str, ...] = ()
    sctp_state: Optional[str] = None  # SCTP associations: the SCTP state name


class Socket(msgspec.Struct, frozen=True, gc=False):
    """One socket of a namespace. A msgspec struct: a fleet holds millions of them. Its ten
    fields take 96 bytes (docs/scale.md); the fields only raw, packet and SCTP sockets have are
    in `extra` (None for the others), read through properties of the same names. No cycle can
    go through one, so the cyclic garbage collector does not track them. Build one with
    `Socket.of` when it may have any of those fields."""

    proto: str
    inode: int
    local: Optional[str]
    local_port: Optional[int]
    remote: Optional[str]
    remote_port: Optional[int]
    state: str
    uid: int
    netns: int = 0  # inode of the namespace the socket lives in (set by the reader, never from the JSON)
    extra: Optional[SocketExtra] = None

    @classmethod
    def of(cls, proto: str, inode: int, local: Optional[str], local_port: Optional[int], remote: Optional[str],
           remote_port: Optional[int], state: str, uid: int, netns: int = 0, *, protocol: Optional[int] = None,
           interface: Optional[str] = None, packet_type: Optional[str] = None, local_all: tuple[str, ...] = (),
           remote_all: tuple[str, ...] = (), sctp_state: Optional[str] = None) -> "Socket":
        """A socket from all its fields, `extra` only when one of the rare ones is set."""
        extra = None
        if (protocol is not None or interface is not None or packet_type is not None or local_all or remote_all
                or sctp_state is not None):
            extra = SocketExtra(protocol, interface, packet_type, tuple(local_all), tuple(remote_all), sctp_state)
        return cls(proto, inode, local, local_port, remote, remote_port, state, uid, netns, extra)

    @property
    def protocol(self) -> Optional[int]:
        return None if self.extra is None else self.extra.protocol

    @property
    def interface(self) -> Optional[str]:
        return None if self.extra is None else self.extra.interface

    @property
    def packet_type(self) -> Optional[str]:
        return None if self.extra is None else self.extra.packet_type

    @property
    def local_all(self) -> tuple[str, ...]:
        return () if self.extra is None else self.extra.local_all

    @property
    def remote_all(self) -> tuple[str, ...]:
        return () if self.extra is None else self.extra.remote_all

    @property
    def sctp_state(self) -> Optional[str]:
        return None if self.extra is None else self.extra.sctp_state


class ConntrackTuple(msgspec.Struct, frozen=True, gc=False):
    """One direction of a conntrack entry. A msgspec struct, as Socket: a NAT gateway tracks
    tens of thousands of connections (48 bytes each, against 280 as a dataclass)."""

    src: str
    dst: str
    sport: Optional[int]
    dport: Optional[int]


class ConntrackEntry(msgspec.Struct, frozen=True, gc=False):
    """A conntrack entry (64 bytes with its two tuples apart, against 410 as a dataclass)."""

    proto: str
    state: Optional[str]
    original: ConntrackTuple
    reply: ConntrackTuple
    netns: int
    # with nf_conntrack_acct: (original packets, original bytes, reply packets, reply bytes); bytes
    # are whole IP packets, headers included
    counters: Optional[tuple[int, int, int, int]] = None


class TcpInfo(NamedTuple):
    """A TCP socket's traffic counters, from the kernel's tcp_info (docs/snapshot.md, `tcp_info`).

    A named tuple, not a dataclass: a busy machine has tens of thousands."""

    bytes_acked: Optional[int]  # bytes sent and acknowledged by the peer (None: kernel before 4.1)
    bytes_received: Optional[int]  # bytes received in order (None: kernel before 4.1)
    rtt: int  # smoothed round-trip time, microseconds
    rttvar: int  # its mean deviation, microseconds
    total_retrans: int  # segments retransmitted over the connection's life
    ca_state: int  # congestion state: 0 open, 1 disorder, 2 CWR, 3 recovery, 4 loss


@dataclass(frozen=True)
class Namespace:
    inode: int
    pids: int
    addresses: tuple[Address, ...]
    sockets: tuple[Socket, ...]
    unkeyed: dict[str, dict[str, int]]
    conntrack: Optional[tuple[ConntrackEntry, ...]]
    name: Optional[str] = None  # what `ip netns` or the container runtime calls it, when known
    # socket inode -> its traffic counters; None when the capture could not read them (a
    # namespace read from /proc text, an older payload)
    tcp_info: Optional[dict[int, TcpInfo]] = None


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int
    euid: int
    user: Optional[str]
    context: Optional[str]
    netns: Optional[int]
    sockets: tuple[int, ...]
    fd_denied: bool = False
    comm_hex: Optional[str] = None  # exact bytes of comm when they are not valid UTF-8
    cmdline_hex: Optional[tuple[str, ...]] = None  # same, per argument
    cmdline_truncated: bool = False  # the payload cut an oversized command line
    cgroup: Optional[str] = None  # its cgroup path (only for processes holding sockets; netviz.identity reads it)


@dataclass(frozen=True)
class Container:
    """What a container runtime's or the kubelet's state files say about one container id."""

    runtime: Optional[str] = None  # "docker" when Docker's state named it
    name: Optional[str] = None
    image: Optional[str] = None
    pod: Optional[str] = None  # Kubernetes: the pod, its namespace, the container's name in it
    pod_namespace: Optional[str] = None
    container: Optional[str] = None
    # the uid whose own store named it (rootless Podman); None: the machine's runtimes
    user: Optional[int] = None


@dataclass(frozen=True)
class Pod:
    """What the kubelet's /var/log/pods directory names a pod uid."""

    name: str
    namespace: str


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    machine_id: Optional[str]
    boot_id: Optional[str]
    kernel: str
    captured_at: float
    python: str


@dataclass(frozen=True)
class Coverage:
    euid: int
    complete: bool
    processes_seen: int
    processes_vanished: int
    processes_denied: int
    namespaces_denied: int
    unattributed_sockets: int
    notes: tuple[str, ...] = ()

    def unread(self) -> str:
        """What could not be read, counted: `1 process and 2 network namespaces`; '' for nothing."""
        return unread_text(self.processes_denied, self.namespaces_denied)


def unread_text(processes_denied: int, namespaces_denied: int) -> str:
    """`1 process and 2 network namespaces`: the non-zero counts of what a capture could not read."""
    counts = ((processes_denied, "process", "processes"),
              (namespaces_denied, "network namespace", "network namespaces"))
    return " and ".join(f"{count} {one if count == 1 else many}" for count, one, many in counts if count)


@dataclass(frozen=True)
class Snapshot:
    """One machine at one moment.

    `name` is how the group knows the machine: the inventory name when collected over SSH,
    else the snapshot's hostname (made unique by the loader of a group, see stitch).
    `source` is where it was read from (file path or inventory name), for messages.
    `legacy` is true for snapshots written by the original capture.py (no addresses, no
    listening sockets).
    """

    name: str
    source: str
    host: HostInfo
    coverage: Coverage
    namespaces: tuple[Namespace, ...]
    processes: tuple[Process, ...]
    legacy: bool = False
    warnings: tuple[str, ...] = field(default=())
    # The sshd processes of the SSH session the payload ran in: netviz's own connection to the
    # machine, never a flow of the machine's own (empty for local and legacy captures).
    ssh_session_pids: tuple[int, ...] = ()
    # What the machine showed over a time window (--window); None for an instant capture.
    window: Optional["Window"] = None
    # Container ids (64 hex digits) -> what the runtimes' state files say (empty when nothing).
    containers: dict[str, Container] = field(default_factory=dict)
    # Kubernetes pod uids -> their names, from the kubelet's directories (empty when nothing).
    pods: dict[str, Pod] = field(default_factory=dict)
    # What the machine's /etc/hosts calls addresses (canonical address -> names, first first):
    # used only to name peers outside the group, never to resolve anything.
    hosts_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

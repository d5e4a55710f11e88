"""The snapshot model: typed, validated records built from untrusted JSON.

The format is documented in docs/snapshot.md. Every loader here treats its input as hostile:
a bad document raises SnapshotError with a one-line message naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

SCHEMA = "netviz.snapshot/1"


@dataclass(frozen=True)
class Address:
    interface: str
    family: int  # 4 or 6
    address: str
    prefix: int


@dataclass(frozen=True)
class Socket:
    proto: str
    inode: int
    local: Optional[str]
    local_port: Optional[int]
    remote: Optional[str]
    remote_port: Optional[int]
    state: str
    uid: int
    netns: int  # inode of the namespace the socket lives in
    protocol: Optional[int] = None
    interface: Optional[str] = None
    packet_type: Optional[str] = None
    local_all: tuple[str, ...] = ()
    remote_all: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConntrackTuple:
    src: str
    dst: str
    sport: Optional[int]
    dport: Optional[int]


@dataclass(frozen=True)
class ConntrackEntry:
    proto: str
    state: Optional[str]
    original: ConntrackTuple
    reply: ConntrackTuple
    netns: int


@dataclass(frozen=True)
class Namespace:
    inode: int
    pids: int
    addresses: tuple[Address, ...]
    sockets: tuple[Socket, ...]
    unkeyed: dict[str, dict[str, int]]
    conntrack: Optional[tuple[ConntrackEntry, ...]]


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

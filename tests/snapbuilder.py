"""Build Snapshot records in a few lines, for stitch and render tests.

    web = Machine("web1", "10.0.0.11")
    nginx = web.process(812, "nginx", user="www-data")
    web.listen(nginx, "tcp", "0.0.0.0:80")
    web.connect(nginx, "tcp", "10.0.0.11:40000", "10.0.0.13:5432")
    snapshot = web.build()

Endpoints are "address:port" strings; IPv6 ones are written "[address]:port".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from netviz.snapshot import (
    Address,
    ConntrackEntry,
    ConntrackTuple,
    Coverage,
    HostInfo,
    Namespace,
    Process,
    Snapshot,
    Socket,
)

HOST_NETNS = 4026531840
Holders = Union[int, Sequence[int], None]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'10.0.0.1:80' -> ('10.0.0.1', 80); '[::1]:80' -> ('::1', 80)."""
    if endpoint.startswith("["):
        address, _, port = endpoint[1:].partition("]:")
        return address, int(port)
    address, _, port = endpoint.rpartition(":")
    return address, int(port)


@dataclass
class _Ns:
    inode: int
    addresses: list[Address] = field(default_factory=list)
    sockets: list[Socket] = field(default_factory=list)
    conntrack: Optional[list[ConntrackEntry]] = None


@dataclass
class _Proc:
    pid: int
    comm: str
    user: Optional[str]
    uid: int
    context: Optional[str]
    netns: int
    cmdline: tuple[str, ...]
    sockets: list[int] = field(default_factory=list)


class Machine:
    """One machine under construction. `addresses` go on eth0 of the host namespace (plus lo)."""

    def __init__(
        self,
        name: str,
        *addresses: str,
        hostname: Optional[str] = None,
        machine_id: Optional[str] = None,
        legacy: bool = False,
        complete: bool = True,
    ) -> None:
        self.name = name
        self.hostname = hostname if hostname is not None else name
        self.machine_id = machine_id if machine_id is not None else f"id-{name}"
        self.legacy = legacy
        self.complete = complete
        self._namespaces: dict[int, _Ns] = {}
        self._processes: dict[int, _Proc] = {}
        self._inodes = itertools.count(1000)
        self.namespace(HOST_NETNS, "127.0.0.1", "::1", *addresses)

    # ------------------------------------------------------------ structure

    def namespace(self, inode: int, *addresses: str) -> int:
        """Add (or extend) a network namespace owning `addresses`; returns its inode."""
        ns = self._namespaces.setdefault(inode, _Ns(inode))
        for address in addresses:
            loopback = address in ("127.0.0.1", "::1")
            family = 6 if ":" in address else 4
            ns.addresses.append(
                Address("lo" if loopback else f"eth{len(ns.addresses)}", family, address, 8 if family == 4 else 64)
            )
        return inode

    def process(
        self,
        pid: int,
        comm: str,
        *,
        user: Optional[str] = "root",
        uid: Optional[int] = None,
        context: Optional[str] = None,
        netns: int = HOST_NETNS,
        cmdline: Optional[Sequence[str]] = None,
    ) -> int:
        if uid is None:
            uid = 0 if user == "root" else 1000
        self._processes[pid] = _Proc(
            pid, comm, user, uid, context, netns, tuple(cmdline) if cmdline is not None else (comm,)
        )
        return pid

    # ------------------------------------------------------------ sockets

    def socket(
        self,
        holders: Holders,
        proto: str,
        local: Optional[str],
        remote: Optional[str] = None,
        *,
        state: str = "ESTABLISHED",
        netns: int = HOST_NETNS,
        local_all: Sequence[str] = (),
        remote_all: Sequence[str] = (),
        protocol: Optional[int] = None,
        interface: Optional[str] = None,
        packet_type: Optional[str] = None,
        local_port: Optional[int] = None,
    ) -> int:
        """Add one socket held by `holders` (a pid, several pids, or None); returns its inode."""
        inode = next(self._inodes)
        local_address, port = split_endpoint(local) if local else (None, local_port)
        remote_address, remote_port = split_endpoint(remote) if remote else (None, None)
        if proto.startswith(("udp", "tcp", "sctp")) and remote is None:
            remote_address = "::" if ":" in (local_address or "") else "0.0.0.0"
            remote_port = 0
        ns = self._namespaces.setdefault(netns, _Ns(netns))
        ns.sockets.append(
            Socket.of(
                proto=proto, inode=inode, local=local_address, local_port=port, remote=remote_address,
                remote_port=remote_port, state=state, uid=0, netns=netns, protocol=protocol,
                interface=interface, packet_type=packet_type, local_all=tuple(local_all),
                remote_all=tuple(remote_all),
            )
        )
        if holders is not None:
            for pid in [holders] if isinstance(holders, int) else holders:
                self._processes[pid].sockets.append(inode)
        return inode

    def listen(self, holders: Holders, proto: str, local: str, **kwargs) -> int:
        state = "CLOSE" if proto.startswith("udp") else "LISTEN"
        return self.socket(holders, proto, local, None, state=state, **kwargs)

    def connect(self, holders: Holders, proto: str, local: str, remote: str, **kwargs) -> int:
        return self.socket(holders, proto, local, remote, **kwargs)

    def conntrack(
        self, proto: str, original: tuple[str, str], reply: tuple[str, str], *, netns: int = HOST_NETNS
    ) -> None:
        """A conntrack entry: original = (src endpoint, dst endpoint), reply likewise."""
        ns = self._namespaces.setdefault(netns, _Ns(netns))
        if ns.conntrack is None:
            ns.conntrack = []

        def tuple_of(pair: tuple[str, str]) -> ConntrackTuple:
            (src, sport), (dst, dport) = split_endpoint(pair[0]), split_endpoint(pair[1])
            return ConntrackTuple(src, dst, sport, dport)

        ns.conntrack.append(ConntrackEntry(proto, "ESTABLISHED", tuple_of(original), tuple_of(reply), netns))

    # ------------------------------------------------------------ result

    def build(self, name: Optional[str] = None) -> Snapshot:
        pids_per_ns: dict[int, int] = {}
        for proc in self._processes.values():
            pids_per_ns[proc.netns] = pids_per_ns.get(proc.netns, 0) + 1
        namespaces = tuple(
            Namespace(
                inode=ns.inode,
                pids=pids_per_ns.get(ns.inode, 0),
                addresses=() if self.legacy else tuple(ns.addresses),
                sockets=tuple(ns.sockets),
                unkeyed={},
                conntrack=tuple(ns.conntrack) if ns.conntrack is not None else None,
            )
            for ns in sorted(self._namespaces.values(), key=lambda item: item.inode)
        )
        processes = tuple(
            Process(
                pid=proc.pid, ppid=1, comm=proc.comm, cmdline=proc.cmdline, uid=proc.uid, euid=proc.uid,
                user=proc.user, context=proc.context, netns=proc.netns, sockets=tuple(sorted(set(proc.sockets))),
            )
            for proc in sorted(self._processes.values(), key=lambda item: item.pid)
        )
        return Snapshot(
            name=name or self.name,
            source=f"{self.name}.json",
            host=HostInfo(self.hostname, self.machine_id, f"boot-{self.name}", "6.1.0", 1764079200.0, "3.11.2"),
            coverage=Coverage(0, self.complete, len(processes), 0, 0, 0, 0),
            namespaces=namespaces,
            processes=processes,
            legacy=self.legacy,
        )


def edges(graph) -> set[tuple]:
    """Flows as readable tuples: (client "host/comm", server "host/comm", proto, port, count),
    with markers appended: "undirected", "inferred", "via=NAME"."""
    nodes = graph.nodes_by_id()
    result = set()
    for flow in graph.flows:
        client, server = nodes[flow.client], nodes[flow.server]
        item: tuple = (f"{client.host}/{client.comm}", f"{server.host}/{server.comm}", flow.proto, flow.server_port, flow.count)
        if not flow.directed:
            item += ("undirected",)
        if flow.inferred:
            item += ("inferred",)
        if flow.via:
            item += (f"via={flow.via}",)
        result.add(item)
    return result


def host(graph, name: str):
    for entry in graph.hosts:
        if entry.name == name:
            return entry
    raise KeyError(name)

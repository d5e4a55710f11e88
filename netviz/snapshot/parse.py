"""Read an untrusted document into a Snapshot: `netviz.snapshot/1`, or the original format.

parse_snapshot walks the document: each record through the fast path (fast.py) when it has a
plain shape, else through the reference readers (readers.py), which name what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from netviz.errors import SnapshotError
from netviz.kinds import REPEATED_INODE_KINDS
from netviz.snapshot.fast import CheckedStrings, _plain_conntrack, _plain_process, _plain_socket, checked_typed_sockets
from netviz.snapshot.fields import _Field, _show
from netviz.snapshot.format import SCHEMA
from netviz.snapshot.legacy import parse_legacy
from netviz.snapshot.limits import (
    MAX_ADDRESSES,
    MAX_CONNTRACK,
    MAX_NAMESPACES,
    MAX_PID,
    MAX_PROCESSES,
    MAX_SESSION_PIDS,
    MAX_SOCKETS,
)
from netviz.snapshot.model import Coverage, Namespace, Process, Snapshot, Socket
from netviz.snapshot.typed import DecodedSocket
from netviz.snapshot.readers import (
    _address,
    _conntrack,
    _coverage,
    _host,
    _process,
    _socket_record,
    _unkeyed,
    read_containers,
    read_pods,
    read_hosts_names,
)
from netviz.snapshot.traffic import read_tcp_info
from netviz.snapshot.window import read_window


def _namespace(node: _Field, budget: list[int], strings: CheckedStrings, seen: tuple[set[int], set[int]]) -> Namespace:
    """One namespace; `budget` is how many more sockets the document may hold, `seen` the inodes
    of the namespaces before it and of their (non-SCTP) sockets: both are unique on a machine."""
    seen_namespaces, seen_sockets = seen
    inode = node.key("inode").integer(0)
    if inode in seen_namespaces:
        raise node.key("inode").fail(f"namespace {inode} appears twice")
    seen_namespaces.add(inode)
    sockets_node = node.key("sockets")
    raw_sockets = sockets_node.entries(budget[0])
    budget[0] -= len(raw_sockets)
    conntrack_node = node.key("conntrack")
    conntrack = None
    if conntrack_node.value is not None:
        conntrack = tuple(
            _plain_conntrack(value, inode, strings) or _conntrack(conntrack_node.at(index), inode)
            for index, value in enumerate(conntrack_node.entries(MAX_CONNTRACK)))
    pids = node.key("pids").integer(high=MAX_PROCESSES)
    addresses = tuple(_address(item) for item in node.key("addresses").items(MAX_ADDRESSES))
    if raw_sockets and type(raw_sockets[0]) is DecodedSocket:  # decoded as records already (typed.py)
        sockets = checked_typed_sockets(raw_sockets, inode, strings)
    else:
        sockets = tuple(_plain_socket(value, inode, strings) or _socket_record(sockets_node.at(index), inode)
                        for index, value in enumerate(raw_sockets))
    # One-to-many SCTP sockets list each association under the socket's one inode.
    keyed = [sock.inode for sock in sockets if sock.proto not in REPEATED_INODE_KINDS]
    fresh = set(keyed)
    if len(fresh) != len(keyed) or not fresh.isdisjoint(seen_sockets):
        _name_repeated_inode(sockets_node, sockets, seen_sockets)
    seen_sockets |= fresh
    name = node.optional("name", lambda field: field.text(255, nullable=True), None)
    tcp_info = node.optional("tcp_info", read_tcp_info, None)
    return Namespace(inode=inode, pids=pids, addresses=addresses, sockets=sockets,
                     unkeyed=_unkeyed(node.key("unkeyed")), conntrack=conntrack, name=name or None,
                     tcp_info=tcp_info)


def _name_repeated_inode(sockets_node: _Field, sockets: tuple[Socket, ...], earlier: set[int]) -> None:
    """Raise the error for the first socket whose (non-SCTP) inode was listed before it."""
    seen = set(earlier)
    for index, sock in enumerate(sockets):
        if sock.proto not in REPEATED_INODE_KINDS:
            if sock.inode in seen:
                raise sockets_node.at(index).key("inode").fail(f"socket inode {sock.inode} appears twice")
            seen.add(sock.inode)


def _default_name(hostname: str, source: str) -> str:
    return hostname or Path(source).stem or source


def parse_snapshot(doc: object, source: str, name: Optional[str] = None, *,
                   strings: Optional[CheckedStrings] = None) -> Snapshot:
    """Validate an untrusted `netviz.snapshot/1` document into a Snapshot.

    `source` names where the document came from (for messages); `name` is how the group will
    know the machine (default: its hostname); `strings` the strings checked already, shared with
    other snapshots of the group. Any problem raises SnapshotError with one line:
    "<source>: <field path>: <what is wrong>".
    """
    top = _Field(source, "", doc)
    schema = top.key("schema").text(64)
    if schema != SCHEMA:
        raise top.key("schema").fail(f"unsupported schema {_show(schema)} (this netviz reads {SCHEMA})")
    top.key("payload_version").text(64)
    host = _host(top.key("host"))
    coverage = _coverage(top.key("coverage"))

    strings = strings if strings is not None else CheckedStrings()
    budget = [MAX_SOCKETS]
    seen: tuple[set[int], set[int]] = (set(), set())  # namespace inodes, socket inodes
    namespaces = tuple(_namespace(item, budget, strings, seen) for item in top.key("namespaces").items(MAX_NAMESPACES))
    processes: list[Process] = []
    seen_pids: set[int] = set()
    processes_node = top.key("processes")
    inodes = {socket.inode: socket.inode for namespace in namespaces for socket in namespace.sockets}
    for index, value in enumerate(processes_node.entries(MAX_PROCESSES)):
        process = _plain_process(value, inodes) or _process(processes_node.at(index))
        if process.pid in seen_pids:
            raise processes_node.at(index).key("pid").fail(f"duplicate pid {process.pid}")
        seen_pids.add(process.pid)
        processes.append(process)

    session = top.key("ssh_session", required=False)
    session_pids = () if session.missing else session.key("pids").integers(1, MAX_PID, MAX_SESSION_PIDS)

    window_node = top.key("window", required=False)
    window = None if window_node.missing else read_window(window_node)

    runtime = top.key("runtime", required=False)
    containers = {} if runtime.missing else read_containers(runtime)
    pods = {} if runtime.missing else read_pods(runtime)
    hosts_file = top.key("hosts_file", required=False)
    hosts_names = {} if hosts_file.missing else read_hosts_names(hosts_file)

    machine = name or _default_name(host.hostname, source)
    return Snapshot(name=machine, source=source, host=host, coverage=coverage, namespaces=namespaces,
                    processes=tuple(processes), warnings=_coverage_warnings(machine, coverage),
                    ssh_session_pids=session_pids, window=window, containers=containers, pods=pods,
                    hosts_names=hosts_names)


def _coverage_warnings(machine: str, coverage: Coverage) -> tuple[str, ...]:
    """Say when a capture saw only part of its machine (not root, hidepid): a map drawn from it
    silently lacks the flows of the processes it could not read."""
    if coverage.complete:
        return ()
    advice = "run as root, or sudo: true" if coverage.euid != 0 else "root was refused: see the snapshot's coverage notes"
    return (f"{machine}: partial capture (payload ran as uid {coverage.euid}): "
            f"{coverage.unread() or 'part of the machine'} could not be read; their flows are missing "
            f"or counted as unresolved ({advice})",)


def parse_any(doc: object, source: str, name: Optional[str] = None, *,
              strings: Optional[CheckedStrings] = None) -> Snapshot:
    """A `netviz.snapshot/1` document, or the original capture.py format (detected)."""
    if isinstance(doc, dict) and "schema" not in doc and "processes" in doc and "net" in doc:
        return parse_legacy(doc, source, name)
    if isinstance(doc, dict) and "schema" not in doc:
        raise SnapshotError(f"{source}: (top level): not a netviz snapshot (no 'schema' key)")
    return parse_snapshot(doc, source, name, strings=strings)

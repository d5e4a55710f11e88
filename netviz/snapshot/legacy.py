"""Snapshots written by the original capture.py, read into the same model (legacy=True)."""

from __future__ import annotations

import socket as _socket
from pathlib import Path
from typing import Optional

from netviz.snapshot.fields import _Field, _show
from netviz.snapshot.limits import MAX_ADDRESSES, MAX_PROCESSES, MAX_SOCKETS, UID_RANGE
from netviz.snapshot.model import Coverage, HostInfo, Namespace, Process, Snapshot, Socket


LEGACY_WARNING = (
    "snapshot from the original capture.py: it has no host identity, machine addresses, "
    "namespaces, conntrack, command lines or parent pids, and no socket states (LISTEN is "
    "inferred from an all-zero remote address), so flows into this machine through a "
    "non-loopback address cannot be matched reliably")

_LEGACY_INET = {"tcp", "tcp6", "udp", "udp6"}


def _legacy_ipv6(address: str) -> str:
    """Undo the original's IPv6 decoding bug.

    It packed the 128-bit number as two native 64-bit halves, which on a little-endian machine
    swaps the two 32-bit words inside each half (fd77::12 came out as ::fd77:0:0:12:0:0).
    Swapping them back restores the address (captures from little-endian machines: x86, arm64).
    """
    raw = _socket.inet_pton(_socket.AF_INET6, address)
    fixed = raw[4:8] + raw[0:4] + raw[12:16] + raw[8:12]
    return _socket.inet_ntop(_socket.AF_INET6, fixed)


def _legacy_endpoint(node: _Field, proto: str) -> tuple[str, int]:
    items = node.items(2)
    if len(items) != 2:
        raise node.fail("expected [address, port]")
    address = items[0].address()
    if proto.endswith("6"):
        if ":" not in address:
            raise items[0].fail("expected an IPv6 address")
        address = _legacy_ipv6(address)
    elif ":" in address:
        raise items[0].fail("expected an IPv4 address")
    return address, int(items[1].integer(0, 65535))


def _legacy_socket(node: _Field, inode: int) -> Optional[Socket]:
    kind = node.key("type").text(32)
    if kind in _LEGACY_INET:
        local, local_port = _legacy_endpoint(node.key("local"), kind)
        remote, remote_port = _legacy_endpoint(node.key("remote"), kind)
        unconnected = remote_port == 0 and remote in ("0.0.0.0", "::")
        if kind.startswith("tcp"):
            state = "LISTEN" if unconnected else "ESTABLISHED"
        else:
            state = "CLOSE" if unconnected else "ESTABLISHED"
        return Socket.of(proto=kind, inode=inode, local=local, local_port=local_port, remote=remote,
                      remote_port=remote_port, state=state, uid=-1, netns=0)
    if kind in ("raw", "raw6"):
        protocol = node.key("local").integer(0, 65535)
        return Socket.of(proto=kind, inode=inode, local=None, local_port=protocol, remote=None,
                      remote_port=None, state="CLOSE", uid=-1, netns=0, protocol=protocol)
    if kind == "packet":
        return Socket.of(proto="packet", inode=inode, local=None, local_port=None, remote=None,
                      remote_port=None, state="CLOSE", uid=-1, netns=0)
    if kind == "sctp":
        local = node.key("local").items(2)
        if len(local) != 2:
            raise node.key("local").fail("expected [[addresses], port]")
        addresses = tuple(item.address() for item in local[0].items(MAX_ADDRESSES))
        remote = node.key("remote").items(1)
        if len(remote) != 1:
            raise node.key("remote").fail("expected [port]")
        return Socket.of(proto="sctp", inode=inode, local=addresses[0] if addresses else None,
                      local_port=local[1].integer(0, 65535), remote=None,
                      remote_port=remote[0].integer(0, 65535), state="ESTABLISHED", uid=-1,
                      netns=0, local_all=addresses)
    if kind == "unix":
        return None
    raise node.key("type").fail(f"unknown socket type {_show(kind)}")


def _is_decimal(text: object) -> bool:
    """ASCII digits only (str.isdigit also accepts '²', which int() refuses)."""
    return isinstance(text, str) and 0 < len(text) <= 20 and not text.strip("0123456789")


def _legacy_key(node: _Field, key: str, what: str) -> int:
    if not _is_decimal(key):
        raise node.fail(f"{what} key {_show(key)} is not a number")
    return int(key)


def parse_legacy(doc: object, source: str, name: Optional[str] = None) -> Snapshot:
    """Validate a snapshot written by the original capture.py into a Snapshot (legacy=True).

    That format is `{"processes": {pid: {"cmd", "uid", "pid", "selinux", "inodes": [{"ino",
    "extra"}]}}, "net": {inode: {"type", "local", "remote"}}}`. Everything it lacks is left
    unknown (uid -1, ppid 0, one namespace with inode 0) and said in the snapshot's warning.
    """
    top = _Field(source, "", doc)
    net = top.key("net")
    if not isinstance(net.value, dict):
        raise net.fail("expected an object keyed by socket inode")
    if len(net.value) > MAX_SOCKETS:
        raise net.fail("too many sockets")
    sockets: list[Socket] = []
    for key in net.value:
        inode = _legacy_key(net, key, "socket")
        if inode == 0:
            continue  # the original could list one inode-0 row; it is not a socket key
        sock = _legacy_socket(net.key(key), inode)
        if sock is not None:
            sockets.append(sock)
    known = {sock.inode for sock in sockets}

    procs = top.key("processes")
    if not isinstance(procs.value, dict):
        raise procs.fail("expected an object keyed by pid")
    if len(procs.value) > MAX_PROCESSES:
        raise procs.fail("too many processes")
    processes: list[Process] = []
    attributed: set[int] = set()
    for key in procs.value:
        pid = _legacy_key(procs, key, "process")
        node = procs.key(key)
        if not node.key("pid", required=False).missing and node.key("pid").integer() != pid:
            raise node.key("pid").fail(f"does not match its key {pid}")
        inodes: set[int] = set()
        for item in node.key("inodes").items(MAX_SOCKETS):
            if item.key("extra").text(32) != "socket":
                continue
            ino = item.key("ino")
            value = ino.value
            if _is_decimal(value):
                value = int(value)
            number = _Field(source, ino.path, value).integer()
            if number in known:
                inodes.add(number)
        attributed |= inodes
        context = node.key("selinux").text(nullable=True)
        uid = node.key("uid").integer(*UID_RANGE)
        processes.append(Process(
            pid=pid, ppid=0, comm=node.key("cmd").text(), cmdline=(), uid=uid, euid=uid,
            user=None, context=None if context in (None, "none") else context, netns=0,
            sockets=tuple(sorted(inodes))))
    processes.sort(key=lambda p: p.pid)
    sockets.sort(key=lambda s: s.inode)

    label = name or Path(source).stem or source
    host = HostInfo(hostname=label, machine_id=None, boot_id=None, kernel="", captured_at=0.0,
                    python="")
    coverage = Coverage(euid=-1, complete=False, processes_seen=len(processes),
                        processes_vanished=0, processes_denied=0, namespaces_denied=0,
                        unattributed_sockets=len(known - attributed),
                        notes=("converted from the original capture.py format",))
    namespace = Namespace(inode=0, pids=len(processes), addresses=(), sockets=tuple(sockets),
                          unkeyed={}, conntrack=None)
    return Snapshot(name=label, source=source, host=host, coverage=coverage,
                    namespaces=(namespace,), processes=tuple(processes), legacy=True,
                    warnings=(f"{source}: {LEGACY_WARNING}",))

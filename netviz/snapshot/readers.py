"""The reference readers: each record of a `netviz.snapshot/1` document, field by field.

They accept exactly the valid records and name what is wrong with the others; the fast path
(fast.py) is pinned to them by tests/test_snapshot_fast_paths.py.
"""

from __future__ import annotations

import re
from typing import Optional

from netviz.kinds import KIND_NAMES
from netviz.snapshot.fields import _HEX, _STATE, _Field, _show
from netviz.snapshot.limits import (
    MAX_ADDRESSES,
    MAX_ARG_TEXT,
    MAX_ARGS,
    MAX_CGROUP_TEXT,
    MAX_CONTAINERS,
    MAX_HOSTS_ENTRIES,
    MAX_HOST_NAME,
    MAX_INODE,
    MAX_NAMES_PER_ADDRESS,
    MAX_NOTES,
    MAX_PID,
    MAX_SOCKETS,
    MAX_UNKEYED_STATES,
    UID_RANGE,
)
from netviz.snapshot.model import (Address, ConntrackEntry, ConntrackTuple, Container, Coverage, HostInfo, Pod, Process,
                                   Socket)


def _host(node: _Field) -> HostInfo:
    return HostInfo(
        hostname=node.key("hostname").text(),
        machine_id=node.key("machine_id").text(nullable=True),
        boot_id=node.key("boot_id").text(nullable=True),
        kernel=node.key("kernel").text(),
        captured_at=node.key("captured_at").number(),
        python=node.key("python").text(),
    )


def _coverage(node: _Field) -> Coverage:
    counts = {name: node.key(name).integer(high=(1 << 62))
              for name in ("processes_seen", "processes_vanished", "processes_denied",
                           "namespaces_denied", "unattributed_sockets")}
    notes = tuple(item.text() for item in node.key("notes").items(MAX_NOTES))
    return Coverage(euid=node.key("euid").integer(*UID_RANGE), complete=node.key("complete").boolean(),
                    notes=notes, **counts)


def _address(node: _Field) -> Address:
    family = node.key("family").integer(4, 6)
    if family not in (4, 6):
        raise node.key("family").fail("expected 4 or 6")
    address = node.key("address").address()
    if (":" in address) != (family == 6):
        raise node.key("address").fail(f"not an IPv{family} address: {_show(address)}")
    return Address(interface=node.key("interface").text(), family=family, address=address,
                   prefix=node.key("prefix").integer(0, 32 if family == 4 else 128))


def _socket_record(node: _Field, netns: int) -> Socket:
    proto = node.key("proto").text()
    if proto not in KIND_NAMES:
        raise node.key("proto").fail(f"unknown protocol {_show(proto)}")
    addresses = lambda child: tuple(item.address() for item in child.items(MAX_ADDRESSES))  # noqa: E731
    return Socket.of(
        proto=proto,
        inode=node.key("inode").integer(1),
        local=node.key("local").address(nullable=True),
        local_port=node.key("local_port").integer(0, 65535, nullable=True),
        remote=node.key("remote").address(nullable=True),
        remote_port=node.key("remote_port").integer(0, 65535, nullable=True),
        state=node.key("state").text(pattern=_STATE),
        uid=node.key("uid").integer(*UID_RANGE),
        netns=netns,
        protocol=node.optional("protocol", lambda f: f.integer(0, 65535), None),
        interface=node.optional("interface", lambda f: f.text(), None),
        packet_type=node.optional("packet_type", lambda f: f.text(), None),
        local_all=node.optional("local_all", addresses, ()),
        remote_all=node.optional("remote_all", addresses, ()),
        sctp_state=node.optional("sctp_state", lambda f: f.text(pattern=_STATE), None),
    )


def _conntrack_tuple(node: _Field) -> ConntrackTuple:
    return ConntrackTuple(
        src=node.key("src").address(), dst=node.key("dst").address(),
        sport=node.key("sport").integer(0, 65535, nullable=True),
        dport=node.key("dport").integer(0, 65535, nullable=True),
    )


def _conntrack(node: _Field, netns: int) -> ConntrackEntry:
    return ConntrackEntry(
        proto=node.key("proto").text(64), state=node.key("state").text(64, nullable=True),
        original=_conntrack_tuple(node.key("original")), reply=_conntrack_tuple(node.key("reply")),
        netns=netns, counters=_conntrack_counters(node.key("counters", required=False)),
    )


def _conntrack_counters(node: _Field) -> Optional[tuple[int, int, int, int]]:
    """[original packets, original bytes, reply packets, reply bytes], when the kernel counted."""
    if node.missing or node.value is None:
        return None
    counts = node.entries(4)
    if len(counts) != 4:
        raise node.fail(f"expected 4 counters, got {len(counts)}")
    return tuple(node.at(index).integer(0, (1 << 64) - 1) for index in range(4))  # type: ignore[return-value]


def _unkeyed(node: _Field) -> dict[str, dict[str, int]]:
    if not isinstance(node.value, dict) or len(node.value) > len(KIND_NAMES):
        raise node.fail("expected an object of per-protocol counts")
    out: dict[str, dict[str, int]] = {}
    for proto, counts in node.value.items():
        child = node.key(proto)
        if proto not in KIND_NAMES:
            raise child.fail("unknown protocol")
        if not isinstance(counts, dict) or len(counts) > MAX_UNKEYED_STATES:
            raise child.fail("expected an object of per-state counts")
        out[proto] = {}
        for state in counts:
            _Field(node.source, child.path, state).text(pattern=_STATE)
            out[proto][state] = child.key(state).integer(high=1 << 62)
    return out


def _hex_text(node: _Field) -> str:
    return node.text(2 * MAX_ARG_TEXT, pattern=_HEX)


def _process(node: _Field) -> Process:
    cmdline = node.key("cmdline").texts(MAX_ARG_TEXT, MAX_ARGS)
    sockets = node.key("sockets").integers(1, MAX_INODE, MAX_SOCKETS)
    if len(set(sockets)) != len(sockets):
        raise node.key("sockets").fail("repeated socket inode")
    cmdline_hex = node.optional(
        "cmdline_hex", lambda f: tuple(_hex_text(item) for item in f.items(MAX_ARGS)), None)
    if cmdline_hex is not None and len(cmdline_hex) != len(cmdline):
        raise node.key("cmdline_hex").fail("needs one entry per cmdline argument")
    return Process(
        pid=node.key("pid").integer(1, MAX_PID),
        ppid=node.key("ppid").integer(0, MAX_PID),
        comm=node.key("comm").text(),
        cmdline=cmdline,
        uid=node.key("uid").integer(*UID_RANGE),
        euid=node.key("euid").integer(*UID_RANGE),
        user=node.key("user").text(nullable=True),
        context=node.key("context").text(nullable=True),
        netns=node.key("netns").integer(0, nullable=True),
        sockets=tuple(sorted(sockets)),
        fd_denied=node.optional("fd_denied", _Field.boolean, False),
        comm_hex=node.optional("comm_hex", _hex_text, None),
        cmdline_hex=cmdline_hex,
        cmdline_truncated=node.optional("cmdline_truncated", _Field.boolean, False),
        cgroup=node.optional("cgroup", lambda f: f.text(MAX_CGROUP_TEXT), None),
    )


_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
_POD_UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def read_hosts_names(node: _Field) -> dict[str, tuple[str, ...]]:
    """The snapshot's `hosts_file`: [[address, [name, ...]], ...] -> canonical address -> names
    (docs/snapshot.md, "hosts_file"); an address listed twice keeps its first entry."""
    names: dict[str, tuple[str, ...]] = {}
    for entry in node.items(MAX_HOSTS_ENTRIES):
        pair = entry.items(2)
        if len(pair) != 2:
            raise entry.fail("expected [address, [name, ...]]")
        address = pair[0].address()
        listed = tuple(name for name in pair[1].texts(MAX_HOST_NAME, MAX_NAMES_PER_ADDRESS))
        if not all(name and name.isprintable() for name in listed):
            raise pair[1].fail("a host name must be printable text")
        names.setdefault(address, listed)
    return names


def read_containers(node: _Field) -> dict[str, Container]:
    """The snapshot's `runtime.containers`: id -> Container (docs/snapshot.md, "runtime")."""
    containers: dict[str, Container] = {}
    for cid, item in _keyed_entries(node.key("containers", required=False), _CONTAINER_ID, "container", "container id"):
        fields = {name: item.optional(name, lambda f: f.text(255, nullable=True), None)
                  for name in ("runtime", "name", "image", "pod", "pod_namespace", "container")}
        user = item.optional("user", lambda f: f.integer(0, UID_RANGE[1]), None)
        containers[cid] = Container(**fields, user=user)
    return containers


def read_pods(node: _Field) -> dict[str, Pod]:
    """The snapshot's `runtime.pods`: pod uid -> Pod (docs/snapshot.md, "runtime")."""
    return {uid: Pod(name=item.key("name").text(255), namespace=item.key("namespace").text(255))
            for uid, item in _keyed_entries(node.key("pods", required=False), _POD_UID, "pod", "pod uid")}


def _keyed_entries(entries: _Field, pattern: re.Pattern[str], noun: str, key_noun: str) -> list[tuple[str, _Field]]:
    """The (key, entry) pairs of an optional object of at most MAX_CONTAINERS entries whose keys
    match `pattern`, in key order; a missing object has none."""
    if entries.missing:
        return []
    if not isinstance(entries.value, dict):
        raise entries.fail(f"expected an object, got {type(entries.value).__name__}")
    if len(entries.value) > MAX_CONTAINERS:
        raise entries.fail(f"too many {noun}s ({len(entries.value)} > {MAX_CONTAINERS})")
    pairs = []
    for key in sorted(entries.value):
        if not isinstance(key, str) or not pattern.match(key):
            raise entries.fail(f"not a {key_noun}: {key[:80]!r}")
        pairs.append((key, entries.key(key)))
    return pairs
    if not isinstance(entries.value, dict):
        raise entries.fail(f"expected an object, got {type(entries.value).__name__}")
    if len(entries.value) > MAX_CONTAINERS:
        raise entries.fail(f"too many pods ({len(entries.value)} > {MAX_CONTAINERS})")
    for uid in sorted(entries.value):
        if not isinstance(uid, str) or not _POD_UID.match(uid):
            raise entries.fail(f"not a pod uid: {uid[:80]!r}")
        item = entries.key(uid)
        pods[uid] = Pod(name=item.key("name").text(255), namespace=item.key("namespace").text(255))
    return pods

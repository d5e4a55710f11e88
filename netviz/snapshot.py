"""The snapshot model: typed, validated records built from untrusted JSON.

The format is documented in docs/snapshot.md. Every loader here treats its input as hostile:
a bad document raises SnapshotError with a one-line message naming the file and the field.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import socket as _socket
import stat as _stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import orjson

from netviz.budget import MAX_JSON_BYTES, MAX_JSON_VALUES, json_values
from netviz.errors import SnapshotError
from netviz.framing import FrameError, decode_framed

SCHEMA = "netviz.snapshot/1"

# Bounds on untrusted input: far above any real machine, low enough to fail fast on garbage.
# What a snapshot may cost to read (bytes, JSON values) is set in netviz/budget.py, from a
# measured 50,000-socket machine; a file holds at most that much JSON.
MAX_FILE_BYTES = MAX_JSON_BYTES
MAX_PROCESSES = 1_000_000
MAX_NAMESPACES = 100_000
MAX_SOCKETS = 5_000_000  # over all namespaces
MAX_ADDRESSES = 100_000  # per namespace
MAX_CONNTRACK = 1_000_000  # per namespace
MAX_ARGS = 2_000_000  # command-line arguments of one process (ARG_MAX allows ~1M)
MAX_TEXT = 4096  # names, states, contexts, hostnames
MAX_ARG_TEXT = 1 << 20  # one command-line argument (escaped)
MAX_NOTES = 1000
MAX_UNKEYED_STATES = 64
MAX_SESSION_PIDS = 64  # the sshd processes above the payload (two or three in practice)

PROTOS = frozenset({"tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6",
                    "icmp", "icmp6", "packet", "sctp"})
_STATE = re.compile(r"[A-Z][A-Z0-9_]{0,31}\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})*\Z")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    sctp_state: Optional[str] = None  # SCTP associations: the SCTP state name


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
    comm_hex: Optional[str] = None  # exact bytes of comm when they are not valid UTF-8
    cmdline_hex: Optional[tuple[str, ...]] = None  # same, per argument
    cmdline_truncated: bool = False  # the payload cut an oversized command line


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
    # The sshd processes of the SSH session the payload ran in: netviz's own connection to the
    # machine, never a flow of the machine's own (empty for local and legacy captures).
    ssh_session_pids: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------
# Validation of untrusted documents
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")


def _show(value: Any) -> str:
    """A short, single-line rendering of an offending value for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_text(value: object, limit: int = MAX_TEXT) -> bool:
    """A string that _Field.text(limit) accepts."""
    return type(value) is str and len(value) <= limit and (value.isascii() or not _SURROGATE.search(value))


def _are_integers(values: list[Any], low: int, high: int) -> bool:
    """Every entry an integer in [low, high], checked in bulk (a process may hold thousands)."""
    return not values or (set(map(type, values)) == {int} and low <= min(values) and max(values) <= high)


class _Field:
    """One place in the document, for error messages: `namespaces[0].sockets[3].local`.

    The path is spelled out only when a message needs it: a valid document never does.
    """

    __slots__ = ("source", "value", "_path", "_parent", "_step")

    def __init__(self, source: str, path: Optional[str], value: Any,
                 parent: Optional["_Field"] = None, step: "str | int" = "") -> None:
        self.source = source
        self.value = value
        self._path = path  # None: `step` (a key or an index) under `parent`
        self._parent = parent
        self._step = step

    @property
    def path(self) -> str:
        if self._path is None:
            assert self._parent is not None
            base, step = self._parent.path, self._step
            if isinstance(step, int):
                self._path = f"{base}[{step}]"
            elif not _PLAIN_KEY.match(step):
                # Keys of open-ended objects (`unkeyed`, legacy pids) come from the document
                # itself: anything but a plain word is quoted, so the message stays one line.
                self._path = f"{base}[{_show(step)}]"
            else:
                self._path = f"{base}.{step}" if base else step
        return self._path

    def fail(self, what: str) -> SnapshotError:
        return SnapshotError(f"{self.source}: {self.path or '(top level)'}: {what}")

    def key(self, name: str, required: bool = True) -> "_Field":
        if not isinstance(self.value, dict):
            raise self.fail(f"expected an object, got {type(self.value).__name__}")
        if name not in self.value:
            if required:
                raise self.fail(f"missing key {name!r}")
            return _Field(self.source, None, _MISSING, self, name)
        return _Field(self.source, None, self.value[name], self, name)

    @property
    def missing(self) -> bool:
        return self.value is _MISSING

    def entries(self, limit: int) -> list[Any]:
        """The list itself, checked to be one of at most `limit` entries."""
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {type(self.value).__name__}")
        if len(self.value) > limit:
            raise self.fail(f"too many entries ({len(self.value)} > {limit})")
        return self.value

    def at(self, index: int) -> "_Field":
        """Entry `index` of a list already checked by entries()."""
        return _Field(self.source, None, self.value[index], self, index)

    def items(self, limit: int) -> list["_Field"]:
        return [_Field(self.source, None, value, self, index) for index, value in enumerate(self.entries(limit))]

    def integers(self, low: int, high: int, limit: int) -> tuple[int, ...]:
        """A list of integers in [low, high] (socket inodes of a process: thousands at times)."""
        values = self.entries(limit)
        if _are_integers(values, low, high):
            return tuple(values)
        return tuple(item.integer(low, high) for item in self.items(limit))  # names the bad entry

    def texts(self, limit: int, count: int) -> tuple[str, ...]:
        """A list of at most `count` strings of at most `limit` characters each."""
        values = self.entries(count)
        if all(_is_text(value, limit) for value in values):
            return tuple(values)
        return tuple(item.text(limit) for item in self.items(count))  # names the bad entry

    def integer(self, low: int = 0, high: int = (1 << 64) - 1, nullable: bool = False) -> Optional[int]:
        value = self.value
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if type(value) is float and value.is_integer() and abs(value) >= 2**64:
                # the JSON reader gives an integer past 64 bits as a float
                raise self.fail(f"{value:.0f} is out of range [{low}, {high}]")
            raise self.fail(f"expected an integer, got {_show(value)}")
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range [{low}, {high}]")
        return value

    def number(self) -> float:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.fail(f"expected a finite number, got {_show(value)}")
        return float(value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_show(self.value)}")
        return self.value

    def text(self, limit: int = MAX_TEXT, nullable: bool = False, pattern: Optional[re.Pattern[str]] = None) -> Optional[str]:
        value = self.value
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(f"expected a string, got {_show(value)}")
        if len(value) > limit:
            raise self.fail(f"string longer than {limit} characters")
        if not value.isascii() and _SURROGATE.search(value):
            # JSON can spell a lone surrogate (\ud800); it is not text and cannot be written out.
            raise self.fail("not valid Unicode text (lone surrogate)")
        if pattern is not None and not pattern.match(value):
            raise self.fail(f"unexpected value {_show(value)}")
        return value

    def address(self, nullable: bool = False) -> Optional[str]:
        value = self.text(64, nullable=nullable)
        if value is None:
            return None
        canonical = canonical_address(value)
        if canonical is None:
            raise self.fail(f"not an IP address: {_show(value)}")
        return canonical

    def optional(self, name: str, read: Callable[["_Field"], T], default: T) -> T:
        child = self.key(name, required=False)
        return default if child.missing else read(child)


_MISSING = object()
_UID = (-1, (1 << 32) - 1)  # -1: unknown


def canonical_address(text: str) -> Optional[str]:
    """The canonical text of an IPv4 or IPv6 address (as inet_ntop writes it), else None."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            return _socket.inet_ntop(family, _socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


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
    return Coverage(euid=node.key("euid").integer(*_UID), complete=node.key("complete").boolean(),
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
    if proto not in PROTOS:
        raise node.key("proto").fail(f"unknown protocol {_show(proto)}")
    addresses = lambda child: tuple(item.address() for item in child.items(MAX_ADDRESSES))  # noqa: E731
    return Socket(
        proto=proto,
        inode=node.key("inode").integer(1),
        local=node.key("local").address(nullable=True),
        local_port=node.key("local_port").integer(0, 65535, nullable=True),
        remote=node.key("remote").address(nullable=True),
        remote_port=node.key("remote_port").integer(0, 65535, nullable=True),
        state=node.key("state").text(pattern=_STATE),
        uid=node.key("uid").integer(*_UID),
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
        netns=netns,
    )


def _unkeyed(node: _Field) -> dict[str, dict[str, int]]:
    if not isinstance(node.value, dict) or len(node.value) > len(PROTOS):
        raise node.fail("expected an object of per-protocol counts")
    out: dict[str, dict[str, int]] = {}
    for proto, counts in node.value.items():
        child = node.key(proto)
        if proto not in PROTOS:
            raise child.fail("unknown protocol")
        if not isinstance(counts, dict) or len(counts) > MAX_UNKEYED_STATES:
            raise child.fail("expected an object of per-state counts")
        out[proto] = {}
        for state in counts:
            _Field(node.source, child.path, state).text(pattern=_STATE)
            out[proto][state] = child.key(state).integer(high=1 << 62)
    return out


# ---------------------------------------------------------------------------------------------
# Fast paths for the bulk of a document
#
# A machine has thousands of sockets and a fleet a million, nearly all in a few plain shapes.
# Records of those shapes are checked below with direct type and range tests on the decoded
# JSON, and built without the per-field objects of _Field. Anything else, including every
# faulty record, returns None and goes through the field-by-field readers above: they are the
# reference, accept exactly the same records and name what is wrong with the others.
# ---------------------------------------------------------------------------------------------

class _Checked(dict):  # type: ignore[type-arg]
    """Strings already checked, each mapped to the form accepted (None: refused); a string not
    seen yet is checked when first looked up."""

    LIMIT = 1_000_000  # distinct strings kept; past that it starts afresh (bounded memory)

    def __init__(self, check: Callable[[str], Optional[str]]) -> None:
        super().__init__()
        self._check = check

    def __missing__(self, value: object) -> Optional[str]:
        if len(self) >= self.LIMIT:
            self.clear()
        accepted = self[value] = self._check(value) if type(value) is str else None
        return accepted


class CheckedStrings:
    """The address and state strings met while loading snapshots, each checked once.

    The sockets of a machine, and of a fleet, repeat a few addresses and states thousands of
    times: each distinct string is parsed once, and the records share the accepted string (less
    memory, and equal strings that are one object compare at once in the stitcher's joins).
    A group is loaded with one of these for all its snapshots; by default each has its own.
    """

    def __init__(self) -> None:
        self.addresses = _Checked(lambda text: canonical_address(text) if len(text) <= 64 else None)
        self.states = _Checked(lambda text: text if _STATE.match(text) else None)


# What the plain shape allows: the eight keys every TCP/UDP record has and nothing else (an extra
# key such as `protocol` needs its own check), and a protocol other than SCTP (whose inodes repeat).
_PLAIN_SOCKET_KEYS = frozenset({"proto", "inode", "local", "local_port", "remote", "remote_port",
                                "state", "uid"})
_PLAIN_PROTOS = {proto: proto for proto in PROTOS - {"sctp"}}  # and one string object each
_MAX_INODE = (1 << 64) - 1


def _record(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of a frozen dataclass from its complete, already checked fields.

    The __init__ of a frozen dataclass assigns each field through object.__setattr__, which for
    the fifteen fields of a Socket costs more than all the checks of the record; the instance
    takes `fields` as its dictionary instead. `fields` must name every field of `cls`.
    """
    record = object.__new__(cls)
    object.__setattr__(record, "__dict__", fields)
    return record


def _plain_socket(value: object, netns: int, strings: CheckedStrings) -> Optional[Socket]:
    """A socket record of the plain TCP/UDP shape, else None (for the field-by-field reader)."""
    if type(value) is not dict or len(value) != len(_PLAIN_SOCKET_KEYS):
        return None
    addresses = strings.addresses
    try:  # eight keys, all of them these: exactly the plain shape
        proto, local, remote = _PLAIN_PROTOS[value["proto"]], addresses[value["local"]], addresses[value["remote"]]
        inode, local_port, remote_port = value["inode"], value["local_port"], value["remote_port"]
        state, uid = strings.states[value["state"]], value["uid"]
    except (KeyError, TypeError):  # another key, or a value that cannot be a dict key (list, object)
        return None
    if (local is None or remote is None or state is None
            or type(inode) is not int or not 1 <= inode <= _MAX_INODE
            or type(local_port) is not int or not 0 <= local_port <= 65535
            or type(remote_port) is not int or not 0 <= remote_port <= 65535
            or type(uid) is not int or not _UID[0] <= uid <= _UID[1]):
        return None
    return _record(Socket, {
        "proto": proto, "inode": inode, "local": local, "local_port": local_port, "remote": remote,
        "remote_port": remote_port, "state": state, "uid": uid, "netns": netns, "protocol": None,
        "interface": None, "packet_type": None, "local_all": (), "remote_all": (), "sctp_state": None})


def _plain_port(value: object) -> bool:
    return value is None or (type(value) is int and 0 <= value <= 65535)


def _plain_conntrack_tuple(value: object, strings: CheckedStrings) -> Optional[ConntrackTuple]:
    if type(value) is not dict:
        return None
    try:
        src, dst = strings.addresses[value.get("src")], strings.addresses[value.get("dst")]
    except TypeError:  # not a string, nor any value a dict key can be
        return None
    sport, dport = value.get("sport", _MISSING), value.get("dport", _MISSING)
    if src is None or dst is None or not _plain_port(sport) or not _plain_port(dport):
        return None
    return _record(ConntrackTuple, {"src": src, "dst": dst, "sport": sport, "dport": dport})


def _plain_conntrack(value: object, netns: int, strings: CheckedStrings) -> Optional[ConntrackEntry]:
    """A conntrack entry whose fields all check out, else None (for the field-by-field reader)."""
    if type(value) is not dict:
        return None
    proto, state = value.get("proto"), value.get("state", _MISSING)
    original = _plain_conntrack_tuple(value.get("original"), strings)
    reply = _plain_conntrack_tuple(value.get("reply"), strings)
    if (not _is_text(proto, 64) or not (state is None or _is_text(state, 64))
            or original is None or reply is None):
        return None
    return _record(ConntrackEntry, {"proto": proto, "state": state, "original": original, "reply": reply,
                                    "netns": netns})


_PLAIN_PROCESS_KEYS = ("pid", "ppid", "comm", "cmdline", "uid", "euid", "user", "context", "netns", "sockets")
_MAX_PID = (1 << 31) - 1


def _plain_process(value: object) -> Optional[Process]:
    """A process record with exactly the ten keys of the common case (no `fd_denied`, `*_hex` or
    `cmdline_truncated`), else None (for the field-by-field reader)."""
    if type(value) is not dict or len(value) != len(_PLAIN_PROCESS_KEYS):
        return None
    try:
        pid, ppid, comm, cmdline, sockets = value["pid"], value["ppid"], value["comm"], value["cmdline"], value["sockets"]
        uid, euid, user, context, netns = value["uid"], value["euid"], value["user"], value["context"], value["netns"]
    except KeyError:
        return None
    if not (type(pid) is int and 1 <= pid <= _MAX_PID and type(ppid) is int and 0 <= ppid <= _MAX_PID
            and type(uid) is int and _UID[0] <= uid <= _UID[1] and type(euid) is int and _UID[0] <= euid <= _UID[1]
            and (netns is None or (type(netns) is int and 0 <= netns <= _MAX_INODE))
            and _is_text(comm) and (user is None or _is_text(user)) and (context is None or _is_text(context))
            and type(cmdline) is list and len(cmdline) <= MAX_ARGS and all(_is_text(arg, MAX_ARG_TEXT) for arg in cmdline)
            and type(sockets) is list and len(sockets) <= MAX_SOCKETS and _are_integers(sockets, 1, _MAX_INODE)
            and len(set(sockets)) == len(sockets)):
        return None
    return Process(pid=pid, ppid=ppid, comm=comm, cmdline=tuple(cmdline), uid=uid, euid=euid, user=user,
                   context=context, netns=netns, sockets=tuple(sorted(sockets)))


# ---------------------------------------------------------------------------------------------
# Namespaces, processes, the document
# ---------------------------------------------------------------------------------------------

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
    sockets = tuple(_plain_socket(value, inode, strings) or _socket_record(sockets_node.at(index), inode)
                    for index, value in enumerate(raw_sockets))
    # One-to-many SCTP sockets list each association under the socket's one inode.
    keyed = [sock.inode for sock in sockets if sock.proto != "sctp"]
    fresh = set(keyed)
    if len(fresh) != len(keyed) or not fresh.isdisjoint(seen_sockets):
        _name_repeated_inode(sockets_node, sockets, seen_sockets)
    seen_sockets |= fresh
    return Namespace(inode=inode, pids=pids, addresses=addresses, sockets=sockets,
                     unkeyed=_unkeyed(node.key("unkeyed")), conntrack=conntrack)


def _name_repeated_inode(sockets_node: _Field, sockets: tuple[Socket, ...], earlier: set[int]) -> None:
    """Raise the error for the first socket whose (non-SCTP) inode was listed before it."""
    seen = set(earlier)
    for index, sock in enumerate(sockets):
        if sock.proto != "sctp":
            if sock.inode in seen:
                raise sockets_node.at(index).key("inode").fail(f"socket inode {sock.inode} appears twice")
            seen.add(sock.inode)


def _hex_text(node: _Field) -> str:
    return node.text(2 * MAX_ARG_TEXT, pattern=_HEX)


def _process(node: _Field) -> Process:
    cmdline = node.key("cmdline").texts(MAX_ARG_TEXT, MAX_ARGS)
    sockets = node.key("sockets").integers(1, _MAX_INODE, MAX_SOCKETS)
    if len(set(sockets)) != len(sockets):
        raise node.key("sockets").fail("repeated socket inode")
    cmdline_hex = node.optional(
        "cmdline_hex", lambda f: tuple(_hex_text(item) for item in f.items(MAX_ARGS)), None)
    if cmdline_hex is not None and len(cmdline_hex) != len(cmdline):
        raise node.key("cmdline_hex").fail("needs one entry per cmdline argument")
    return Process(
        pid=node.key("pid").integer(1, _MAX_PID),
        ppid=node.key("ppid").integer(0, _MAX_PID),
        comm=node.key("comm").text(),
        cmdline=cmdline,
        uid=node.key("uid").integer(*_UID),
        euid=node.key("euid").integer(*_UID),
        user=node.key("user").text(nullable=True),
        context=node.key("context").text(nullable=True),
        netns=node.key("netns").integer(0, nullable=True),
        sockets=tuple(sorted(sockets)),
        fd_denied=node.optional("fd_denied", _Field.boolean, False),
        comm_hex=node.optional("comm_hex", _hex_text, None),
        cmdline_hex=cmdline_hex,
        cmdline_truncated=node.optional("cmdline_truncated", _Field.boolean, False),
    )


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
    for index, value in enumerate(processes_node.entries(MAX_PROCESSES)):
        process = _plain_process(value) or _process(processes_node.at(index))
        if process.pid in seen_pids:
            raise processes_node.at(index).key("pid").fail(f"duplicate pid {process.pid}")
        seen_pids.add(process.pid)
        processes.append(process)

    session = top.key("ssh_session", required=False)
    session_pids = () if session.missing else session.key("pids").integers(1, _MAX_PID, MAX_SESSION_PIDS)

    machine = name or _default_name(host.hostname, source)
    return Snapshot(name=machine, source=source, host=host, coverage=coverage, namespaces=namespaces,
                    processes=tuple(processes), warnings=_coverage_warnings(machine, coverage),
                    ssh_session_pids=session_pids)


def _coverage_warnings(machine: str, coverage: Coverage) -> tuple[str, ...]:
    """Say when a capture saw only part of its machine (not root, hidepid): a map drawn from it
    silently lacks the flows of the processes it could not read."""
    if coverage.complete:
        return ()
    advice = "run as root, or sudo: true" if coverage.euid != 0 else "root was refused: see the snapshot's coverage notes"
    return (f"{machine}: partial capture (payload ran as uid {coverage.euid}): "
            f"{coverage.processes_denied} processes and {coverage.namespaces_denied} network namespaces "
            f"could not be read; their flows are missing or counted as unresolved ({advice})",)


# ---------------------------------------------------------------------------------------------
# Snapshots of the original capture.py
# ---------------------------------------------------------------------------------------------

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
        return Socket(proto=kind, inode=inode, local=local, local_port=local_port, remote=remote,
                      remote_port=remote_port, state=state, uid=-1, netns=0)
    if kind in ("raw", "raw6"):
        protocol = node.key("local").integer(0, 65535)
        return Socket(proto=kind, inode=inode, local=None, local_port=protocol, remote=None,
                      remote_port=None, state="CLOSE", uid=-1, netns=0, protocol=protocol)
    if kind == "packet":
        return Socket(proto="packet", inode=inode, local=None, local_port=None, remote=None,
                      remote_port=None, state="CLOSE", uid=-1, netns=0)
    if kind == "sctp":
        local = node.key("local").items(2)
        if len(local) != 2:
            raise node.key("local").fail("expected [[addresses], port]")
        addresses = tuple(item.address() for item in local[0].items(MAX_ADDRESSES))
        remote = node.key("remote").items(1)
        if len(remote) != 1:
            raise node.key("remote").fail("expected [port]")
        return Socket(proto="sctp", inode=inode, local=addresses[0] if addresses else None,
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
        uid = node.key("uid").integer(*_UID)
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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

class SnapshotTooLarge(SnapshotError):
    """The snapshot is larger than a snapshot may be (netviz/budget.py): refused unread."""


def check_document_size(text: str, source: str) -> None:
    """SnapshotTooLarge when JSON `text` is longer than MAX_JSON_BYTES or holds more than
    MAX_JSON_VALUES values (counted by a linear scan: parsing costs 35-65 bytes per value)."""
    if len(text) > MAX_JSON_BYTES:
        raise SnapshotTooLarge(f"{source}: (top level): more than {MAX_JSON_BYTES:,} bytes of JSON")
    values = json_values(text, MAX_JSON_VALUES)
    if values > MAX_JSON_VALUES:
        raise SnapshotTooLarge(f"{source}: (top level): about {values:,} JSON values (counted without parsing), "
                               f"more than a snapshot may hold ({MAX_JSON_VALUES:,}; a machine with 50,000 "
                               "sockets has about 1,000,000)")


def loads_document(text: str, source: str) -> Any:
    """Parse JSON text strictly: no NaN/Infinity, no lone surrogates, nesting bounded (1,024
    levels), numbers that fit a double; a text over the size budget (check_document_size) is
    refused before it is parsed.

    orjson reads a fleet's snapshots several times faster than the standard library (a thousand
    machines' worth in under a second). Like most JSON readers it keeps the last value of a key
    written twice; a machine that controls its snapshot controls every value anyway, and this is
    the only reader of the file.
    """
    check_document_size(text, source)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        message = str(error).splitlines()[0] if str(error) else "invalid JSON"
        if "depth" in message or "recursion" in message:  # worded differently across releases
            raise SnapshotError(f"{source}: (top level): JSON nested too deeply") from None
        near = text[max(0, error.pos - 1):error.pos + 9] if isinstance(text, str) else ""
        constant = next((word for word in ("-Infinity", "Infinity", "NaN") if word in near), None)
        if constant:  # as Python's own json writes them: say so rather than "unexpected character"
            message = f"{constant} is not allowed ({message})"
        raise SnapshotError(f"{source}: (top level): invalid JSON: {message}") from None


def parse_any(doc: object, source: str, name: Optional[str] = None, *,
              strings: Optional[CheckedStrings] = None) -> Snapshot:
    """A `netviz.snapshot/1` document, or the original capture.py format (detected)."""
    if isinstance(doc, dict) and "schema" not in doc and "processes" in doc and "net" in doc:
        return parse_legacy(doc, source, name)
    if isinstance(doc, dict) and "schema" not in doc:
        raise SnapshotError(f"{source}: (top level): not a netviz snapshot (no 'schema' key)")
    return parse_snapshot(doc, source, name, strings=strings)


_FILE_KINDS = ((_stat.S_ISDIR, "a directory"), (_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a character device"),
               (_stat.S_ISBLK, "a block device"), (_stat.S_ISSOCK, "a socket"), (_stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages ("a FIFO")."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


_LEADING_SPACE = re.compile(rb"\s*")


def _refuse_unless_regular(path: Path, mode: int) -> None:
    if not _stat.S_ISREG(mode):
        raise SnapshotError(f"{path}: is {file_kind(mode)}, not a snapshot file")


def read_snapshot_bytes(path: Path) -> bytes:
    """The content of a snapshot file; SnapshotError when it cannot be read, is not a regular
    file (a FIFO, a device, a symbolic link: never followed) or is larger than MAX_FILE_BYTES.

    The file is opened with O_NOFOLLOW | O_NONBLOCK (a FIFO swapped in never blocks), and its
    type and size are checked on the open file before anything is read.
    """
    try:
        _refuse_unless_regular(path, os.lstat(path).st_mode)  # a device is not even opened
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a link since lstat
            raise SnapshotError(f"{path}: is a symbolic link, not a snapshot file") from None
        raise SnapshotError(f"{path}: cannot read: {error.strerror or error}") from None
    with open(descriptor, "rb", closefd=True) as handle:
        status = os.fstat(descriptor)
        _refuse_unless_regular(path, status.st_mode)
        if status.st_size > MAX_FILE_BYTES:
            raise SnapshotError(f"{path}: (top level): file larger than {MAX_FILE_BYTES} bytes")
        try:
            data = handle.read(MAX_FILE_BYTES + 1)  # it may have grown since fstat
        except OSError as error:
            raise SnapshotError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SnapshotError(f"{path}: (top level): file larger than {MAX_FILE_BYTES} bytes")
    return data


def snapshot_from_bytes(data: bytes, source: str, name: Optional[str] = None, *,
                        strings: Optional[CheckedStrings] = None) -> Snapshot:
    """Validate the content of a snapshot file: netviz.snapshot/1 JSON (plain or in the transport
    framing) or the original capture.py JSON. Problems raise SnapshotError naming `source`."""
    first = _LEADING_SPACE.match(data).end()  # (no stripped copy of a large file)
    if data[first:first + 1] != b"{" and b"NETVIZ-SNAPSHOT-BEGIN" in data:
        try:
            text = decode_framed(data)
        except FrameError as error:
            raise SnapshotError(f"{source}: (frame): {error}") from None
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SnapshotError(f"{source}: (top level): not UTF-8 text (byte {error.start})") from None
    return parse_any(loads_document(text, source), source, name, strings=strings)


def load_snapshot(path: Path, name: Optional[str] = None) -> Snapshot:
    """Read and validate a snapshot file: netviz.snapshot/1 JSON (plain or in the transport
    framing) or the original capture.py JSON. Problems raise SnapshotError naming the file."""
    return snapshot_from_bytes(read_snapshot_bytes(path), str(path), name)


def snapshot_to_document(snapshot: Snapshot) -> dict[str, Any]:
    """The `netviz.snapshot/1` document of a Snapshot (parse_snapshot of it gives it back)."""

    def sock(s: Socket) -> dict[str, Any]:
        out: dict[str, Any] = {
            "proto": s.proto, "inode": s.inode, "local": s.local, "local_port": s.local_port,
            "remote": s.remote, "remote_port": s.remote_port, "state": s.state, "uid": s.uid}
        for key in ("protocol", "interface", "packet_type", "sctp_state"):
            if getattr(s, key) is not None:
                out[key] = getattr(s, key)
        if s.proto == "sctp":
            out["local_all"] = list(s.local_all)
            out["remote_all"] = list(s.remote_all)
        return out

    def ct(t: ConntrackTuple) -> dict[str, Any]:
        return {"src": t.src, "dst": t.dst, "sport": t.sport, "dport": t.dport}

    def process(p: Process) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": p.pid, "ppid": p.ppid, "comm": p.comm, "cmdline": list(p.cmdline), "uid": p.uid,
            "euid": p.euid, "user": p.user, "context": p.context, "netns": p.netns,
            "sockets": list(p.sockets)}
        if p.fd_denied:
            out["fd_denied"] = True
        if p.comm_hex is not None:
            out["comm_hex"] = p.comm_hex
        if p.cmdline_hex is not None:
            out["cmdline_hex"] = list(p.cmdline_hex)
        if p.cmdline_truncated:
            out["cmdline_truncated"] = True
        return out

    host = snapshot.host
    cov = snapshot.coverage
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "payload_version": "legacy" if snapshot.legacy else "loaded",
        "host": {"hostname": host.hostname, "machine_id": host.machine_id, "boot_id": host.boot_id,
                 "kernel": host.kernel, "captured_at": host.captured_at, "python": host.python},
        "coverage": {"euid": cov.euid, "complete": cov.complete,
                     "processes_seen": cov.processes_seen,
                     "processes_vanished": cov.processes_vanished,
                     "processes_denied": cov.processes_denied,
                     "namespaces_denied": cov.namespaces_denied,
                     "unattributed_sockets": cov.unattributed_sockets, "notes": list(cov.notes)},
        "namespaces": [
            {"inode": ns.inode, "pids": ns.pids,
             "addresses": [{"interface": a.interface, "family": a.family, "address": a.address,
                            "prefix": a.prefix} for a in ns.addresses],
             "sockets": [sock(s) for s in ns.sockets],
             "unkeyed": {proto: dict(counts) for proto, counts in ns.unkeyed.items()},
             "conntrack": None if ns.conntrack is None else [
                 {"proto": e.proto, "state": e.state, "original": ct(e.original), "reply": ct(e.reply)}
                 for e in ns.conntrack]}
            for ns in snapshot.namespaces],
        "processes": [process(p) for p in snapshot.processes],
    }
    if snapshot.ssh_session_pids:
        document["ssh_session"] = {"pids": list(snapshot.ssh_session_pids)}
    return document


def dump_snapshot(doc: "Snapshot | dict[str, Any]") -> str:
    """JSON text of a snapshot document (or of a Snapshot, through snapshot_to_document)."""
    if isinstance(doc, Snapshot):
        doc = snapshot_to_document(doc)
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"), allow_nan=False)

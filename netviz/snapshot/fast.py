"""Fast paths for the bulk of a document.

A machine has thousands of sockets and a fleet a million, nearly all in a few plain shapes.
Records of those shapes are checked here with direct type and range tests on the decoded JSON,
and built without the per-field objects of _Field. Anything else, including every faulty record,
returns None and goes through the field-by-field readers (readers.py): they are the reference,
accept exactly the same records and name what is wrong with the others
(tests/test_snapshot_fast_paths.py pins the two together).
"""

from __future__ import annotations

from typing import Callable, Optional

from netviz.kinds import KIND_NAMES, REPEATED_INODE_KINDS
from netviz.snapshot.fields import _MISSING, _STATE, _are_integers, _is_text
from netviz.snapshot.format import canonical_address
from netviz.snapshot.limits import (
    MAX_ADDRESSES, MAX_ARG_TEXT, MAX_ARGS, MAX_CGROUP_TEXT, MAX_INODE, MAX_PID, MAX_SOCKETS, UID_RANGE,
)
from netviz.snapshot.model import ConntrackEntry, ConntrackTuple, Process, Socket, SocketExtra
from netviz.snapshot.typed import DecodedSocket, NotTypedShape


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
        # short labels such as conntrack's protocol and state names, any text up to 64 characters
        self.labels = _Checked(lambda text: text if _is_text(text, 64) else None)
        # the owners' uids, one int object each: a service's thousands of sockets share its uid
        self.uids: dict[int, int] = {}


# What the plain shape allows: the eight keys every TCP/UDP record has and nothing else (an extra
# key such as `protocol` needs its own check), and a kind whose inodes do not repeat (not SCTP).
_U64 = (1 << 64) - 1
_PLAIN_SOCKET_KEYS = frozenset({"proto", "inode", "local", "local_port", "remote", "remote_port",
                                "state", "uid"})
_PLAIN_PROTOS = {proto: proto for proto in KIND_NAMES - REPEATED_INODE_KINDS}  # one string object each


# One int object per port number, shared by every socket (a JSON reader makes a new int object
# for each number past 256: two per socket, 64 bytes, otherwise).
_PORTS = tuple(range(65536))


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
            or type(inode) is not int or not 1 <= inode <= MAX_INODE
            or type(local_port) is not int or not 0 <= local_port <= 65535
            or type(remote_port) is not int or not 0 <= remote_port <= 65535
            or type(uid) is not int or not UID_RANGE[0] <= uid <= UID_RANGE[1]):
        return None
    # (the struct's own constructor, positional: cheaper than filling the fields one by one)
    return Socket(proto, inode, local, _PORTS[local_port], remote, _PORTS[remote_port], state, uid, netns)


def checked_typed_sockets(records: list[DecodedSocket], netns: int, strings: CheckedStrings) -> tuple[Socket, ...]:
    """The Socket records of the socket records typed.py decoded: checked for what msgspec could
    not check while decoding, exactly as the field-by-field reader checks them (address syntax,
    state names, the largest inode, text), placed in their namespace, and made to share the
    strings, port numbers and uids that recur (the protocol name is shared already: msgspec gives
    the literal's own string).
    Raises NotTypedShape at the first record the reader would refuse (the document is then read
    the ordinary way, which names the fault). This loop runs a million times: names are local."""
    addresses, states, ports, uids, highest_inode = strings.addresses, strings.states, _PORTS, strings.uids, MAX_INODE
    sockets = []
    add = sockets.append
    for record in records:
        local, remote, state = record.local, record.remote, states[record.state]
        if local is not None:
            local = addresses[local]
            if local is None:
                raise NotTypedShape
        if remote is not None:
            remote = addresses[remote]
            if remote is None:
                raise NotTypedShape
        if state is None or record.inode > highest_inode:
            raise NotTypedShape
        uid = record.uid
        if uid > 256:  # (Python shares the smaller ints already)
            uid = uids.setdefault(uid, uid)
        local_port, remote_port = record.local_port, record.remote_port
        if (record.interface is not None or record.packet_type is not None or record.sctp_state is not None
                or record.protocol is not None or record.local_all or record.remote_all):
            extra = _rare_fields(record, strings)
        else:
            extra = None
        add(Socket(record.proto, record.inode, local, local_port if local_port is None else ports[local_port],
                   remote, remote_port if remote_port is None else ports[remote_port], state, uid, netns, extra))
    return tuple(sockets)


def _rare_fields(record: DecodedSocket, strings: CheckedStrings) -> SocketExtra:
    """The fields of raw, packet and SCTP sockets, checked and shared as the reader does."""
    for text in (record.interface, record.packet_type):
        if text is not None and not _is_text(text):
            raise NotTypedShape
    sctp_state = record.sctp_state
    if sctp_state is not None:
        sctp_state = strings.states[sctp_state]
        if sctp_state is None:
            raise NotTypedShape
    every = []
    for addresses in (record.local_all, record.remote_all):
        canonical = tuple(strings.addresses[address] for address in addresses)
        if len(canonical) > MAX_ADDRESSES or None in canonical:
            raise NotTypedShape
        every.append(canonical)
    return SocketExtra(record.protocol, record.interface, record.packet_type, every[0], every[1], sctp_state)


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
    return ConntrackTuple(src, dst, sport if sport is None else _PORTS[sport], dport if dport is None else _PORTS[dport])


def _plain_conntrack(value: object, netns: int, strings: CheckedStrings) -> Optional[ConntrackEntry]:
    """A conntrack entry whose fields all check out, else None (for the field-by-field reader)."""
    if type(value) is not dict:
        return None
    labels = strings.labels
    try:
        proto, state = labels[value.get("proto")], value.get("state", _MISSING)
        if state is not None:  # (a missing state is not text either: refused)
            state = labels[state]
            if state is None:
                return None
    except TypeError:  # not a string, nor any value a dict key can be
        return None
    original = _plain_conntrack_tuple(value.get("original"), strings)
    reply = _plain_conntrack_tuple(value.get("reply"), strings)
    if proto is None or original is None or reply is None:
        return None
    counters = value.get("counters")
    if counters is not None:
        if (type(counters) is not list or len(counters) != 4
                or not all(type(count) is int and 0 <= count <= _U64 for count in counters)):
            return None
        counters = tuple(counters)
    return ConntrackEntry(proto, state, original, reply, netns, counters)


_PLAIN_PROCESS_KEYS = ("pid", "ppid", "comm", "cmdline", "uid", "euid", "user", "context", "netns", "sockets")


def _plain_process(value: object, inodes: Optional[dict[int, int]] = None) -> Optional[Process]:
    """A process record with exactly the ten keys of the common case (no `fd_denied`, `*_hex` or
    `cmdline_truncated`), else None (for the field-by-field reader). `inodes` maps the inodes of
    the document's sockets to their records' own int objects: the process's list shares them
    (32 bytes a socket otherwise)."""
    if type(value) is not dict:
        return None
    cgroup = value.get("cgroup")  # the one optional key of the common case
    if len(value) != len(_PLAIN_PROCESS_KEYS) + (cgroup is not None):
        return None
    if cgroup is not None and not _is_text(cgroup, MAX_CGROUP_TEXT):
        return None
    try:
        pid, ppid, comm, cmdline, sockets = value["pid"], value["ppid"], value["comm"], value["cmdline"], value["sockets"]
        uid, euid, user, context, netns = value["uid"], value["euid"], value["user"], value["context"], value["netns"]
    except KeyError:
        return None
    if not (type(pid) is int and 1 <= pid <= MAX_PID and type(ppid) is int and 0 <= ppid <= MAX_PID
            and type(uid) is int and UID_RANGE[0] <= uid <= UID_RANGE[1] and type(euid) is int and UID_RANGE[0] <= euid <= UID_RANGE[1]
            and (netns is None or (type(netns) is int and 0 <= netns <= MAX_INODE))
            and _is_text(comm) and (user is None or _is_text(user)) and (context is None or _is_text(context))
            and type(cmdline) is list and len(cmdline) <= MAX_ARGS and all(_is_text(arg, MAX_ARG_TEXT) for arg in cmdline)
            and type(sockets) is list and len(sockets) <= MAX_SOCKETS and _are_integers(sockets, 1, MAX_INODE)
            and len(set(sockets)) == len(sockets)):
        return None
    return Process(pid=pid, ppid=ppid, comm=comm, cmdline=tuple(cmdline), uid=uid, euid=euid, user=user,
                   context=context, netns=netns, cgroup=cgroup,
                   sockets=tuple(sorted(sockets if inodes is None else map(inodes.get, sockets, sockets))))

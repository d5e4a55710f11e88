"""The loader's fast paths accept exactly what its field-by-field readers accept, and build the
same records; everything else they hand over to those readers, which name the fault. The typed
path (sockets decoded by msgspec, netviz/snapshot/typed.py) is held to the same readers.

A record that the fast path let through with a wrong type (a bool as a port, a float as an
inode), an unchecked address or an out-of-range number would reach the stitcher unvalidated: each
test damages a valid record at random and compares both paths."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Callable

import msgspec
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from netviz.errors import SnapshotError
from netviz.snapshot import files, parse_snapshot
from netviz.snapshot.fast import CheckedStrings, _plain_conntrack, _plain_process, _plain_socket, checked_typed_sockets
from netviz.snapshot.fields import _Field
from netviz.snapshot.readers import _conntrack, _process, _socket_record
from netviz.snapshot.typed import _SOCKETS, NotTypedShape

NETNS = 4026531840

SOCKET = {"proto": "tcp6", "inode": 5002, "local": "::ffff:10.77.0.12", "local_port": 80,
          "remote": "fd77:0:0:0::13", "remote_port": 50000, "state": "ESTABLISHED", "uid": 33}
PROCESS = {"pid": 100, "ppid": 1, "comm": "nginx", "cmdline": ["nginx", "-g", "daemon off;"], "uid": 0,
           "euid": 0, "user": "root", "context": None, "netns": NETNS, "sockets": [5002, 5001]}
CONNTRACK = {"proto": "tcp", "state": "ESTABLISHED",
             "original": {"src": "10.77.0.13", "dst": "10.77.0.12", "sport": 1, "dport": 8080},
             "reply": {"src": "172.17.0.2", "dst": "10.77.0.13", "sport": 80, "dport": None}}
COUNTERS = [3, 180, 2, (1 << 64) - 1]  # with nf_conntrack_acct; the highest u64 is still a count

# Values near every boundary the readers check, valid and not.
TEXTS = st.sampled_from([
    "10.0.0.1", "0.0.0.0", "::", "::1", "FD77::0:13", "::FFFF:10.0.0.1", "10.0.0.256", "10.1", "localhost",
    "", " 10.0.0.1", "10.0.0.1\x00", "\u0661\u0660.0.0.1", "fe80::1%eth0", "1" * 70, "\ud800", "caf\u00e9",
    "tcp", "udp6", "sctp", "packet", "quic", "LISTEN", "listen", "ESTABLISHED\n", "A" * 33, "x" * 5000,
    "ab\ud800", "nginx"])
NUMBERS = st.one_of(
    st.sampled_from([0, 1, -1, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 1.0]),
    st.integers(-3, 70_000), st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(TEXTS, NUMBERS, st.booleans(), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.lists(st.integers(0, 3), max_size=4),  # repeats
                   st.dictionaries(st.sampled_from(["src", "a"]), SCALARS, max_size=2))


def damaged(record: dict[str, Any], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """`record` with a few of `keys` set to other values or removed (and extra keys added)."""
    change = st.tuples(st.sampled_from(keys + ["extra"]), st.one_of(VALUES, st.just(KeyError)))

    def apply(changes: list[tuple[str, Any]]) -> dict[str, Any]:
        out = copy.deepcopy(record)
        for key, value in changes:
            if value is KeyError:
                out.pop(key, None)
            else:
                out[key] = value
        return out

    return st.lists(change, min_size=1, max_size=3).map(apply)


def same_outcome(fast: Any, slow: Callable[[], Any]) -> None:
    try:
        expected = slow()
    except SnapshotError:
        assert fast is None, f"the fast path accepted what the full check refuses: {fast!r}"
        return
    if fast is None:
        return  # handed over to the full check, which accepts it: fine
    assert fast == expected
    names = getattr(type(expected), "__struct_fields__", None) or [field.name for field in dataclasses.fields(expected)]
    for name in names:  # 1 == True == 1.0: the types must match too
        assert type(getattr(fast, name)) is type(getattr(expected, name)), name


def typed_outcome(value: Any) -> None:
    """The typed path and the field-by-field reader agree on one socket, given as the JSON text a
    machine may send (NaN written as such, lone surrogates escaped)."""
    text = json.dumps([value])
    try:
        typed = checked_typed_sockets(_SOCKETS.decode(text), NETNS, CheckedStrings())[0]
    except (msgspec.MsgspecError, NotTypedShape, RecursionError, ValueError):
        typed = None
    try:
        parsed = orjson.loads(text)[0]
    except orjson.JSONDecodeError:  # the ordinary reading refuses the whole document
        assert typed is None, f"the typed path accepted what the JSON reader refuses: {text}"
        return
    same_outcome(typed, lambda: _socket_record(_Field("s", "", parsed), NETNS))


def test_the_fast_paths_take_the_common_records():
    strings = CheckedStrings()
    sock = _plain_socket(SOCKET, NETNS, strings)
    assert sock == _socket_record(_Field("s", "", SOCKET), NETNS)
    assert (sock.local, sock.remote) == ("::ffff:10.77.0.12", "fd77::13")  # canonical form
    assert _plain_socket(dict(SOCKET, inode=5003), NETNS, strings).remote is sock.remote  # one string object
    assert _plain_process(PROCESS) == _process(_Field("s", "", PROCESS))
    assert _plain_process(PROCESS).sockets == (5001, 5002)
    assert _plain_conntrack(CONNTRACK, NETNS, strings) == _conntrack(_Field("s", "", CONNTRACK), NETNS)
    counted = dict(CONNTRACK, counters=COUNTERS)
    assert _plain_conntrack(counted, NETNS, strings).counters == tuple(COUNTERS)
    assert _plain_conntrack(counted, NETNS, strings) == _conntrack(_Field("s", "", counted), NETNS)
    # a conntrack table repeats its protocol and state names, addresses and ports: one object each
    first, second = (_plain_conntrack(orjson.loads(orjson.dumps(counted)), NETNS, strings) for _ in range(2))
    assert first == second and first.original.dport > 256
    assert all(getattr(first, name) is getattr(second, name) for name in ("proto", "state"))
    assert all(getattr(first.original, name) is getattr(second.original, name) for name in ("src", "dst", "sport", "dport"))


@settings(max_examples=500, deadline=None)
@given(damaged(SOCKET, list(SOCKET)))
def test_socket_fast_path_agrees_with_the_full_check(value):
    same_outcome(_plain_socket(value, NETNS, CheckedStrings()), lambda: _socket_record(_Field("s", "", value), NETNS))


PACKET = {"proto": "packet", "inode": 7001, "local": None, "local_port": 0, "remote": None, "remote_port": None,
          "state": "CLOSE", "uid": 0, "protocol": 3, "interface": "eth0", "packet_type": "raw"}
SCTP = {"proto": "sctp", "inode": 7002, "local": "10.0.0.1", "local_port": 36412, "remote": "10.0.0.2",
        "remote_port": 36412, "state": "ESTABLISHED", "uid": 0, "sctp_state": "ESTABLISHED",
        "local_all": ["10.0.0.1", "FD00::1"], "remote_all": ["10.0.0.2"]}


@settings(max_examples=500, deadline=None)
@given(st.one_of(damaged(SOCKET, list(SOCKET)), damaged(PACKET, list(PACKET)), damaged(SCTP, list(SCTP))))
def test_typed_socket_path_agrees_with_the_full_check(value):
    typed_outcome(value)


@pytest.mark.parametrize("record", [SOCKET, PACKET, SCTP])
def test_the_typed_path_takes_every_common_shape_and_shares_strings(record):
    first, second = checked_typed_sockets(_SOCKETS.decode(json.dumps([record, dict(record, inode=9)])), NETNS,
                                          CheckedStrings())
    assert first == _socket_record(_Field("s", "", record), NETNS)
    assert first.netns == NETNS and first.state is second.state and first.local is second.local
    postgres, again = checked_typed_sockets(_SOCKETS.decode(json.dumps([dict(record, uid=999), dict(record, uid=999)])),
                                            NETNS, CheckedStrings())
    assert postgres.uid == 999 and postgres.uid is again.uid


def test_a_process_shares_the_inode_objects_of_its_sockets():
    """A socket's inode appears in its record and in its holder's list: one int object for both
    (32 bytes a socket otherwise), on the typed and on the ordinary reading alike."""
    from benchmarks.synth import make_fleet

    from netviz.snapshot.writer import dump_snapshot

    text = dump_snapshot(make_fleet(1, 200, seed=5)[0])
    for snapshot in (files.read_document(text, "m.json"), parse_snapshot(orjson.loads(text), "m.json")):
        records = {socket.inode: socket.inode for namespace in snapshot.namespaces for socket in namespace.sockets}
        held = [inode for process in snapshot.processes for inode in process.sockets if inode in records]
        assert len(held) > 100 and min(held) > 256  # (Python shares the small ints anyway)
        assert all(records[inode] is inode for inode in held)
        assert all(list(process.sockets) == sorted(process.sockets) for process in snapshot.processes)


def test_a_common_document_is_read_without_the_value_by_value_reading(monkeypatch):
    """The typed path is really taken: with the ordinary reading made to fail, a valid document
    still loads, and a faulty one is still refused by the ordinary reader's own words."""
    from snapbuilder import Machine

    from netviz.snapshot.writer import dump_snapshot

    machine = Machine("web", "10.0.0.1")
    machine.process(100, "nginx")
    machine.listen(100, "tcp", "0.0.0.0:80")
    machine.connect(100, "tcp", "10.0.0.1:80", "10.0.0.2:5000")
    machine.socket(None, "packet", None, protocol=3, interface="eth0", packet_type="raw", state="CLOSE", local_port=0)
    text = dump_snapshot(machine.build())
    expected = files.read_document(text, "web.json")
    monkeypatch.setattr(files, "loads_document", lambda *_: pytest.fail("read value by value"))
    assert files.read_document(text, "web.json") == expected
    monkeypatch.undo()
    faulty = text.replace('"ESTABLISHED"', '"established"', 1)
    with pytest.raises(SnapshotError, match=r"namespaces\[0\]\.sockets\[1\]\.state: "):
        files.read_document(faulty, "web.json")


@settings(max_examples=500, deadline=None)
@given(damaged(PROCESS, list(PROCESS) + ["fd_denied", "comm_hex"]))
def test_process_fast_path_agrees_with_the_full_check(value):
    same_outcome(_plain_process(value), lambda: _process(_Field("s", "", value)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(damaged(CONNTRACK, list(CONNTRACK)),
                 damaged(CONNTRACK["original"], list(CONNTRACK["original"])).map(
                     lambda original: dict(CONNTRACK, original=original)),
                 damaged(dict(CONNTRACK, counters=COUNTERS), list(CONNTRACK) + ["counters"]),
                 st.lists(st.one_of(VALUES, st.integers(-1, 1 << 65)), max_size=5).map(
                     lambda counters: dict(CONNTRACK, counters=counters))))
def test_conntrack_fast_path_agrees_with_the_full_check(value):
    same_outcome(_plain_conntrack(value, NETNS, CheckedStrings()), lambda: _conntrack(_Field("s", "", value), NETNS))


def test_strings_checked_for_one_snapshot_serve_the_next():
    """A group shares one CheckedStrings: an address refused in one snapshot stays refused in the
    next, and the records are the same as when each snapshot is read on its own."""
    def document(local: str) -> dict:
        return {
            "schema": "netviz.snapshot/1", "payload_version": "1",
            "host": {"hostname": "h", "machine_id": None, "boot_id": None, "kernel": "", "captured_at": 0,
                     "python": ""},
            "coverage": {"euid": 0, "complete": True, "processes_seen": 0, "processes_vanished": 0,
                         "processes_denied": 0, "namespaces_denied": 0, "unattributed_sockets": 0, "notes": []},
            "namespaces": [{"inode": NETNS, "pids": 0, "addresses": [], "unkeyed": {}, "conntrack": None,
                            "sockets": [dict(SOCKET, local=local)]}],
            "processes": [],
        }

    shared = CheckedStrings()
    for local in ("10.0.0.1", "localhost", "10.0.0.1", "localhost"):
        try:
            alone = parse_snapshot(document(local), "a.json")
        except SnapshotError as error:
            try:
                parse_snapshot(document(local), "a.json", strings=shared)
            except SnapshotError as again:
                assert str(again) == str(error) and "not an IP address" in str(error)
            else:
                raise AssertionError("refused alone, accepted with shared strings")
        else:
            assert parse_snapshot(document(local), "a.json", strings=shared) == alone


def test_each_boundary_gives_the_same_outcome_on_both_paths():
    """The edges the fuzzing above may miss, one by one."""
    sockets = [("inode", 0), ("inode", 2**64), ("inode", 2**64 - 1), ("inode", 7.0), ("inode", True),
               ("local_port", True), ("local_port", 65536), ("remote_port", -1), ("uid", -2), ("uid", 2**32),
               ("uid", -1), ("proto", "sctp"), ("proto", "TCP"), ("state", "A" * 33), ("state", "Listen"),
               ("local", "::FFFF:1.2.3.4"), ("local", "1.2.3.4\x00"), ("remote", None), ("local", 167772161)]
    for key, value in sockets + [("protocol", None), ("interface", None), ("sctp_state", "x"), ("local_all", [None]),
                                 ("local_all", ["10.1"]), ("local_all", []), ("netns", "x"), ("inode", 2**63)]:
        record = dict(SOCKET, **{key: value})
        same_outcome(_plain_socket(record, NETNS, CheckedStrings()), lambda: _socket_record(_Field("s", "", record), NETNS))
        typed_outcome(record)
    processes = [("sockets", [1, 1]), ("sockets", [0]), ("sockets", [True]), ("sockets", [2**64]),
                 ("sockets", [3, 2, 1]), ("pid", 0), ("pid", 2**31), ("ppid", -1), ("netns", -1), ("netns", None),
                 ("comm", "x" * 4097), ("comm", "x" * 4096), ("comm", "a\udcff"), ("cmdline", ["a\ud800"]),
                 ("cmdline", "nginx"), ("user", 0), ("context", "")]
    for key, value in processes:
        record = dict(PROCESS, **{key: value})
        same_outcome(_plain_process(record), lambda: _process(_Field("s", "", record)))
    assert _plain_process(dict(PROCESS, sockets=[1, 1])) is None
    assert _plain_socket(dict(SOCKET, local_port=True), NETNS, CheckedStrings()) is None

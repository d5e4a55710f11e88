"""The loader's fast paths accept exactly what its field-by-field readers accept, and build the
same records; everything else they hand over to those readers, which name the fault.

A record that the fast path let through with a wrong type (a bool as a port, a float as an
inode), an unchecked address or an out-of-range number would reach the stitcher unvalidated: each
test damages a valid record at random and compares both paths."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

from hypothesis import given, settings, strategies as st

from netviz.errors import SnapshotError
from netviz.snapshot import parse_snapshot
from netviz.snapshot.fast import CheckedStrings, _plain_conntrack, _plain_process, _plain_socket
from netviz.snapshot.fields import _Field
from netviz.snapshot.readers import _conntrack, _process, _socket_record

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
    for field in dataclasses.fields(expected):  # 1 == True == 1.0: the types must match too
        assert type(getattr(fast, field.name)) is type(getattr(expected, field.name)), field.name


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


@settings(max_examples=500, deadline=None)
@given(damaged(SOCKET, list(SOCKET)))
def test_socket_fast_path_agrees_with_the_full_check(value):
    same_outcome(_plain_socket(value, NETNS, CheckedStrings()), lambda: _socket_record(_Field("s", "", value), NETNS))


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
    for key, value in sockets:
        record = dict(SOCKET, **{key: value})
        same_outcome(_plain_socket(record, NETNS, CheckedStrings()), lambda: _socket_record(_Field("s", "", record), NETNS))
    processes = [("sockets", [1, 1]), ("sockets", [0]), ("sockets", [True]), ("sockets", [2**64]),
                 ("sockets", [3, 2, 1]), ("pid", 0), ("pid", 2**31), ("ppid", -1), ("netns", -1), ("netns", None),
                 ("comm", "x" * 4097), ("comm", "x" * 4096), ("comm", "a\udcff"), ("cmdline", ["a\ud800"]),
                 ("cmdline", "nginx"), ("user", 0), ("context", "")]
    for key, value in processes:
        record = dict(PROCESS, **{key: value})
        same_outcome(_plain_process(record), lambda: _process(_Field("s", "", record)))
    assert _plain_process(dict(PROCESS, sockets=[1, 1])) is None
    assert _plain_socket(dict(SOCKET, local_port=True), NETNS, CheckedStrings()) is None

"""The snapshot loader: untrusted documents become typed records or one-line errors."""

import copy
import json
import math
from pathlib import Path

import pytest

from netviz.errors import SnapshotError
from netviz.snapshot.framing import encode_framed
from netviz.snapshot import (
    Snapshot,
    dump_snapshot,
    load_snapshot,
    parse_legacy,
    parse_snapshot,
    snapshot_to_document,
)

FIXTURES = Path(__file__).parent / "fixtures" / "snapshots"


def valid_doc() -> dict:
    return {
        "schema": "netviz.snapshot/1",
        "payload_version": "1.0.0",
        "host": {"hostname": "web-1", "machine_id": "m1", "boot_id": "b1", "kernel": "6.1.0",
                 "captured_at": 1700000000.5, "python": "3.6.15"},
        "coverage": {"euid": 0, "complete": True, "processes_seen": 2, "processes_vanished": 0,
                     "processes_denied": 0, "namespaces_denied": 0, "unattributed_sockets": 0,
                     "notes": []},
        "namespaces": [{
            "inode": 4026531840, "pids": 2,
            "addresses": [{"interface": "eth0", "family": 4, "address": "10.77.0.12", "prefix": 24},
                          {"interface": "eth0", "family": 6, "address": "fd77:0:0:0::12", "prefix": 64}],
            "sockets": [
                {"proto": "tcp", "inode": 5001, "local": "10.77.0.12", "local_port": 80,
                 "remote": "0.0.0.0", "remote_port": 0, "state": "LISTEN", "uid": 0},
                {"proto": "tcp6", "inode": 5002, "local": "::ffff:10.77.0.12", "local_port": 80,
                 "remote": "::ffff:10.77.0.13", "remote_port": 50000, "state": "ESTABLISHED", "uid": 33},
                {"proto": "packet", "inode": 5003, "local": None, "local_port": None, "remote": None,
                 "remote_port": None, "state": "CLOSE", "uid": 0, "protocol": 3, "interface": "*",
                 "packet_type": "dgram"},
                {"proto": "sctp", "inode": 5004, "local": "10.77.0.12", "local_port": 3868, "remote": None,
                 "remote_port": None, "state": "LISTEN", "uid": 0, "local_all": ["10.77.0.12"], "remote_all": []},
                {"proto": "sctp", "inode": 5004, "local": "10.77.0.12", "local_port": 3868,
                 "remote": "10.77.0.13", "remote_port": 3868, "state": "ESTABLISHED", "uid": 0,
                 "local_all": ["10.77.0.12"], "remote_all": ["10.77.0.13"], "sctp_state": "ESTABLISHED"},
            ],
            "unkeyed": {"tcp": {"TIME_WAIT": 3}},
            "conntrack": [{"proto": "tcp", "state": "ESTABLISHED",
                           "original": {"src": "10.77.0.13", "dst": "10.77.0.12", "sport": 1, "dport": 8080},
                           "reply": {"src": "172.17.0.2", "dst": "10.77.0.13", "sport": 80, "dport": 1}}],
        }],
        "processes": [
            {"pid": 100, "ppid": 1, "comm": "nginx", "cmdline": ["nginx", "-g", "daemon off;"], "uid": 0,
             "euid": 0, "user": "root", "context": None, "netns": 4026531840, "sockets": [5002, 5001],
             "unknown_future_key": {"ignored": True}},
            {"pid": 101, "ppid": 100, "comm": "bad\\xff", "comm_hex": "626164ff", "cmdline": [], "uid": 33,
             "euid": 33, "user": None, "context": "unconfined", "netns": None, "sockets": [],
             "fd_denied": True},
        ],
    }


def test_valid_document_becomes_typed_records():
    snapshot = parse_snapshot(valid_doc(), "snap.json")
    assert snapshot.name == "web-1" and snapshot.source == "snap.json" and not snapshot.legacy
    (ns,) = snapshot.namespaces
    assert ns.addresses[1].address == "fd77::12"  # canonical form
    assert [s.netns for s in ns.sockets] == [4026531840] * 5
    assert ns.sockets[2].interface == "*" and ns.sockets[4].remote_all == ("10.77.0.13",)
    assert ns.conntrack[0].reply.src == "172.17.0.2" and ns.conntrack[0].netns == 4026531840
    web, worker = snapshot.processes
    assert web.sockets == (5001, 5002) and web.cmdline == ("nginx", "-g", "daemon off;")
    assert worker.fd_denied and worker.comm_hex == "626164ff"
    assert parse_snapshot(valid_doc(), "x", name="db").name == "db"


def test_round_trip_through_dump_snapshot():
    snapshot = parse_snapshot(valid_doc(), "a")
    again = parse_snapshot(json.loads(dump_snapshot(snapshot)), "a")
    assert again == snapshot
    assert snapshot_to_document(again)["namespaces"][0]["unkeyed"] == {"tcp": {"TIME_WAIT": 3}}


def test_a_namespace_name_survives_the_cache():
    """A container's namespace name (`ip netns`, Docker) is written back by the cache's writer:
    a map drawn from a cached run names the container's box like a live one."""
    doc = valid_doc()
    doc["namespaces"][0]["name"] = "web-container"
    again = parse_snapshot(json.loads(dump_snapshot(parse_snapshot(doc, "a"))), "a")
    assert again.namespaces[0].name == "web-container"


def broken(path, value):
    doc = valid_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, expected", [
    (("schema",), "netviz.snapshot/9", "schema: unsupported schema"),
    (("host",), KeyError, "(top level): missing key 'host'"),
    (("host", "captured_at"), math.nan, "host.captured_at: expected a finite number"),
    (("host", "captured_at"), "yesterday", "host.captured_at: expected a number"),
    (("coverage", "complete"), 1, "coverage.complete: expected true or false"),
    (("coverage", "processes_seen"), True, "coverage.processes_seen: expected an integer"),
    (("namespaces", 0, "sockets", 0, "local"), "localhost", "namespaces[0].sockets[0].local: not an IP address"),
    (("namespaces", 0, "sockets", 0, "local"), "10.0.0.1; rm -rf /", "not an IP address"),
    (("namespaces", 0, "sockets", 1, "local_port"), 70000, "namespaces[0].sockets[1].local_port: 70000 is out of range"),
    (("namespaces", 0, "sockets", 0, "proto"), "quic", "unknown protocol"),
    (("namespaces", 0, "sockets", 0, "state"), "listen; drop", "sockets[0].state: unexpected value"),
    (("namespaces", 0, "sockets", 1, "inode"), 5001, "sockets[1].inode: socket inode 5001 appears twice"),
    (("namespaces", 0, "addresses", 0, "family"), 6, "addresses[0].address: not an IPv6 address"),
    (("namespaces", 0, "addresses", 0, "prefix"), 33, "addresses[0].prefix: 33 is out of range"),
    (("namespaces", 0, "conntrack", 0, "reply"), [], "conntrack[0].reply: expected an object"),
    (("namespaces", 0, "unkeyed"), {"tcp": {"TIME_WAIT": -1}}, "unkeyed.tcp.TIME_WAIT: -1 is out of range"),
    (("processes", 1, "pid"), 100, "processes[1].pid: duplicate pid 100"),
    (("processes", 0, "cmdline"), "nginx -g", "processes[0].cmdline: expected a list"),
    (("processes", 0, "sockets"), [1, 1], "processes[0].sockets: repeated socket inode"),
    (("processes", 1, "comm_hex"), "zz", "processes[1].comm_hex: unexpected value"),
    (("processes", 0, "comm"), "x" * 5000, "processes[0].comm: string longer than 4096"),
    (("processes",), {"100": {}}, "processes: expected a list"),
])
def test_bad_documents_get_one_line_errors(path, value, expected):
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(broken(path, value), "hosts/web-1.json")
    message = str(caught.value)
    assert message.startswith("hosts/web-1.json: ") and expected in message
    assert "\n" not in message


def test_not_an_object_at_all():
    for doc in (None, [], "x", 3):
        with pytest.raises(SnapshotError, match=r"^src: \(top level\): expected an object"):
            parse_snapshot(doc, "src")


def test_bounds_are_enforced(monkeypatch):
    import netviz.snapshot.parse as module

    monkeypatch.setattr(module, "MAX_SOCKETS", 3)
    with pytest.raises(SnapshotError, match=r"^big: namespaces\[0\]\.sockets: too many entries \(5 > 3\)"):
        parse_snapshot(valid_doc(), "big")


def test_load_snapshot_files(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(valid_doc()))
    framed = tmp_path / "framed.out"
    framed.write_bytes(b"banner\n" + encode_framed(json.dumps(valid_doc())))
    assert load_snapshot(plain) == Snapshot(**{**parse_snapshot(valid_doc(), str(plain)).__dict__})
    assert load_snapshot(framed, name="w").name == "w"


@pytest.mark.parametrize("content, expected", [
    (b'{"a": NaN}', "NaN is not allowed"),
    (b'{"a": -Infinity}', "Infinity is not allowed"),
    (b'{"a": 1e400}', "infinity"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{", "invalid JSON"),
    (b'{"hello": 1}', "not a netviz snapshot"),
    (b"banner\nNETVIZ-SNAPSHOT-BEGIN 1 10 " + b"0" * 64 + b"\nAAAA\n", "(frame): truncated"),
])
def test_load_snapshot_rejects_bad_files(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_a_snapshot_error(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        load_snapshot(tmp_path / "nope.json")


def test_original_capture_format_loads_with_a_warning():
    snapshot = load_snapshot(FIXTURES / "legacy_capture.json")
    assert snapshot.legacy and snapshot.name == "legacy_capture"
    assert "original capture.py" in snapshot.warnings[0] and "addresses" in snapshot.warnings[0]
    (ns,) = snapshot.namespaces
    by_inode = {s.inode: s for s in ns.sockets}
    assert set(by_inode) == {5001, 5002, 5003, 6001, 6002, 6003}  # the unix socket is dropped
    assert by_inode[5001].state == "LISTEN" and by_inode[5003].state == "CLOSE"
    # The original printed fd77::12 as ::fd77:0:0:12:0:0; the loader undoes it.
    assert (by_inode[5002].local, by_inode[5002].remote) == ("fd77::12", "::ffff:10.77.0.12")
    assert by_inode[5002].state == "ESTABLISHED"
    assert by_inode[6001].protocol == 1 and by_inode[6003].local_all == ("127.0.0.1", "10.0.0.1")
    nginx, pinger = snapshot.processes
    assert nginx.sockets == (5001, 5002) and nginx.context is None and nginx.uid == 33
    assert pinger.context.startswith("unconfined_u") and pinger.sockets == (6001, 6002, 6003)
    assert snapshot.coverage.unattributed_sockets == 1  # 5003 is held by nobody
    assert load_snapshot(FIXTURES / "legacy_capture.json", name="old-db").name == "old-db"


def test_legacy_errors_name_the_field():
    doc = json.loads((FIXTURES / "legacy_capture.json").read_text())
    bad = copy.deepcopy(doc)
    bad["net"]["5001"]["local"] = ["not-an-ip", 80]
    with pytest.raises(SnapshotError, match=r"^old: net\.5001\.local\[0\]: not an IP address"):
        parse_legacy(bad, "old")
    bad = copy.deepcopy(doc)
    bad["processes"]["1234"]["pid"] = 99
    with pytest.raises(SnapshotError, match=r"processes\.1234\.pid: does not match its key 1234"):
        parse_legacy(bad, "old")


from hypothesis import given, settings, strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


ALL_PATHS = [p for p in _paths(valid_doc()) if p]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(ALL_PATHS), json_values)
def test_any_damaged_document_is_accepted_or_a_snapshot_error(path, value):
    doc = broken(path, value)
    try:
        parse_snapshot(doc, "fuzz")
    except SnapshotError as error:
        assert str(error).startswith("fuzz: ") and "\n" not in str(error)


LEGACY = json.loads((FIXTURES / "legacy_capture.json").read_text())
LEGACY_PATHS = [p for p in _paths(LEGACY) if p]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(LEGACY_PATHS), json_values)
def test_any_damaged_original_document_is_accepted_or_a_snapshot_error(path, value):
    doc = copy.deepcopy(LEGACY)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        parse_legacy(doc, "old")
    except SnapshotError as error:
        assert str(error).startswith("old: ") and "\n" not in str(error)


def test_a_truncated_command_line_is_carried_and_written_back():
    from netviz.payload import capture
    from netviz.snapshot import parse_snapshot, snapshot_to_document

    document = capture.collect()
    # Another process on this machine may really have a command line over the
    # cap; mark exactly one so the test does not depend on what else runs.
    for process in document["processes"]:
        process.pop("cmdline_truncated", None)
    document["processes"][0]["cmdline_truncated"] = True
    snapshot = parse_snapshot(document, "live")
    assert snapshot.processes[0].cmdline_truncated is True
    assert snapshot_to_document(snapshot)["processes"][0]["cmdline_truncated"] is True
    assert not any(p.cmdline_truncated for p in snapshot.processes[1:])

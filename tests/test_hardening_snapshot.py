"""A snapshot is untrusted: a machine of the group may be compromised.

The loader turns any document into a Snapshot or one SnapshotError line naming the file and the
field; bounds hold before the expensive work (file size before JSON parsing, counts before
records are built); and one bad snapshot is reported and skipped while the others still render.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

import netviz.snapshot as snapshot_module
import netviz.snapshot.files as snapshot_files
from benchmarks.synth import write_fleet
from netviz.cli import app
from netviz.collect import validate_output
from netviz.errors import EXIT_ERROR, EXIT_PARTIAL, SnapshotError
from netviz.snapshot.framing import encode_framed
from netviz.group import load_group
from netviz.payload import capture
from netviz.snapshot import dump_snapshot, load_snapshot, loads_document, parse_any, parse_legacy, parse_snapshot
from netviz.transport import HostFailure

# One example takes well under a second, and seconds on a very busy machine; far longer means a
# parser that hangs or blows up on its input (the failure the deadline is there to catch).
EXAMPLE_DEADLINE = timedelta(seconds=20)

FIXTURES = Path(__file__).parent / "fixtures" / "snapshots"


def _real_document() -> dict:
    """This machine's snapshot through the payload's own JSON writer, cut to a workable size."""
    document = json.loads(capture.dumps_document(capture.collect()))
    document["processes"] = document["processes"][:25]
    for namespace in document["namespaces"]:
        namespace["sockets"] = namespace["sockets"][:40]
    return document


REAL = _real_document()
LEGACY = json.loads((FIXTURES / "legacy_capture.json").read_text())


def _one_line_error(error: SnapshotError, source: str) -> None:
    message = str(error)
    assert message.startswith(f"{source}: "), message
    assert len(message.splitlines()) == 1, repr(message)  # no \n, \r, \x85, \u2028 ...
    assert len(message) < 1000


# Hostile JSON values: every JSON type, numbers json.loads gives for NaN/Infinity/huge literals,
# long and control-laden strings, and keys a message would have to show.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\n", "\x1b[2J\x1b]0;pwned\x07", "\u202e", "a\u2028b", "\x85", "\r", "0", "-1",
                     "localhost", "::ffff:1.2.3.4", "1.2.3.4.5", "999.1.1.1", "fe80::1%eth0", "LISTEN",
                     "ESTABLISHED\n", "tcp", "sctp", "x" * 5000]))
HOSTILE_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([2**64, 2**64 - 1, -1, 65536, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True), HOSTILE_TEXT)
HOSTILE_JSON = st.recursive(
    HOSTILE_SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=10)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


REAL_PATHS = [path for path in _paths(REAL) if path]
LEGACY_PATHS = [path for path in _paths(LEGACY) if path]


def _mutate(document, path, value, action):
    doc = copy.deepcopy(document)
    target = doc
    for key in path[:-1]:
        target = target[key]
    last = path[-1]
    if action == "set":
        target[last] = value
    elif action == "delete":
        del target[last]
    elif action == "duplicate" and isinstance(target, list):
        target.append(copy.deepcopy(target[last]))
    elif isinstance(target, dict):  # add a key beside it
        target[value if isinstance(value, str) else str(value)] = value
    return doc


HOSTILE = settings(max_examples=300, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
ACTIONS = st.sampled_from(("set", "set", "delete", "duplicate", "add"))


@HOSTILE
@given(HOSTILE_JSON)
def test_any_json_value_is_a_snapshot_error(value) -> None:
    for parse in (parse_snapshot, parse_legacy, parse_any):
        with pytest.raises(SnapshotError) as caught:
            parse(value, "evil.json")
        _one_line_error(caught.value, "evil.json")


@HOSTILE
@given(st.sampled_from(REAL_PATHS), HOSTILE_JSON, ACTIONS)
def test_mutated_real_snapshot_loads_or_is_one_line_error(path, value, action) -> None:
    doc = _mutate(REAL, path, value, action)
    try:
        loaded = parse_snapshot(doc, "evil.json")
    except SnapshotError as error:
        _one_line_error(error, "evil.json")
        return
    # What the loader accepts it can write back and read again, unchanged.
    assert parse_snapshot(json.loads(dump_snapshot(loaded)), "evil.json").processes == loaded.processes


@HOSTILE
@given(st.sampled_from(LEGACY_PATHS), HOSTILE_JSON, ACTIONS)
def test_mutated_original_snapshot_loads_or_is_one_line_error(path, value, action) -> None:
    doc = _mutate(LEGACY, path, value, action)
    try:
        parse_any(doc, "old.json")
    except SnapshotError as error:
        _one_line_error(error, "old.json")


@settings(max_examples=150, deadline=EXAMPLE_DEADLINE)
@given(st.binary(max_size=300) | HOSTILE_JSON.map(lambda v: json.dumps(v).encode()))
def test_any_file_content_loads_or_is_one_line_error(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("f") / "evil.json"
    path.write_bytes(data)
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(path)
    _one_line_error(caught.value, str(path))


# --------------------------------------------------------------------------------------------
# Each hostile shape named in the issue, rejected with the file and the field


def _write(tmp_path: Path, doc, name: str = "bad.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _rejected(path: Path, field: str, what: str) -> str:
    with pytest.raises(SnapshotError) as caught:
        load_snapshot(path)
    message = str(caught.value)
    _one_line_error(caught.value, str(path))
    assert f": {field}: " in message and what in message, message
    return message


def _with(**changes) -> dict:
    doc = copy.deepcopy(REAL)
    for dotted, value in changes.items():
        target = doc
        keys = [int(k) if k.isdigit() else k for k in dotted.split("__")]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return doc


def test_oversized_comm_is_refused_naming_the_field(tmp_path) -> None:
    path = _write(tmp_path, _with(processes__0__comm="A" * 10_000_000))
    _rejected(path, "processes[0].comm", "longer than")


def test_oversized_argument_and_hostname(tmp_path) -> None:
    _rejected(_write(tmp_path, _with(processes__0__cmdline=["x" * (2 << 20)])), "processes[0].cmdline[0]", "longer than")
    _rejected(_write(tmp_path, _with(host__hostname="h" * 100_000)), "host.hostname", "longer than")


def test_deep_nesting_is_a_snapshot_error_not_a_recursion_error(tmp_path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    _rejected(_write(tmp_path, deep), "(top level)", "nested too deeply")
    doc = json.dumps(_with(processes__0__comm="@@"))
    nested = doc.replace('"@@"', "[" * 100_000 + "]" * 100_000)
    _rejected(_write(tmp_path, nested), "(top level)", "nested too deeply")
    # and in the transport framing, as a compromised machine would send it
    framed = tmp_path / "framed.json"
    framed.write_bytes(b"motd\n" + encode_framed(deep))
    _rejected(framed, "(top level)", "nested too deeply")


def test_nan_and_infinity_are_refused(tmp_path) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(_with(host__captured_at=1.5)).replace("1.5", literal, 1)
        _rejected(_write(tmp_path, text), "(top level)", f"{literal} is not allowed")
    # the same values already decoded (a document handed to parse_snapshot directly)
    with pytest.raises(SnapshotError, match=r"host\.captured_at: expected a finite number"):
        parse_snapshot(_with(host__captured_at=float("nan")), "bad.json")
    with pytest.raises(SnapshotError, match=r"coverage\.processes_seen: expected an integer"):
        parse_snapshot(_with(coverage__processes_seen=float("inf")), "bad.json")


def test_huge_numbers_are_refused(tmp_path) -> None:
    text = json.dumps(_with(coverage__processes_seen=12345)).replace("12345", "9" * 10_000, 1)
    _rejected(_write(tmp_path, text), "(top level)", "invalid JSON")
    _rejected(_write(tmp_path, _with(coverage__processes_seen=2**100)), "coverage.processes_seen", "out of range")
    _rejected(_write(tmp_path, _with(processes__0__pid=2**40)), "processes[0].pid", "out of range")


def test_wrong_types_are_refused(tmp_path) -> None:
    _rejected(_write(tmp_path, _with(processes__0__pid="1")), "processes[0].pid", "expected an integer")
    _rejected(_write(tmp_path, _with(processes__0__pid=True)), "processes[0].pid", "expected an integer")
    _rejected(_write(tmp_path, _with(processes__0__cmdline="sh -c x")), "processes[0].cmdline", "expected a list")
    _rejected(_write(tmp_path, _with(namespaces={})), "namespaces", "expected a list")
    _rejected(_write(tmp_path, _with(host=[])), "host", "expected an object")


def test_duplicated_pids_namespaces_and_inodes_are_refused(tmp_path) -> None:
    doc = copy.deepcopy(REAL)
    doc["processes"].append(copy.deepcopy(doc["processes"][0]))
    _rejected(_write(tmp_path, doc), f"processes[{len(doc['processes']) - 1}].pid", "duplicate pid")
    doc = copy.deepcopy(REAL)
    doc["namespaces"].append(copy.deepcopy(doc["namespaces"][0]))
    _rejected(_write(tmp_path, doc), f"namespaces[{len(doc['namespaces']) - 1}].inode", "appears twice")
    doc = copy.deepcopy(REAL)
    sockets = doc["namespaces"][0]["sockets"]
    plain = next(s for s in sockets if s["proto"] != "sctp")
    sockets.append(dict(plain))
    _rejected(_write(tmp_path, doc), f"namespaces[0].sockets[{len(sockets) - 1}].inode", "appears twice")
    # a JSON key written twice keeps its last value, and that value is validated like any other
    text = json.dumps(REAL).replace('"schema": "netviz.snapshot/1"', '"schema": "netviz.snapshot/1", "schema": "x"', 1)
    _rejected(_write(tmp_path, text), "schema", "")


def _first_socket_field(field: str, value) -> dict:
    doc = copy.deepcopy(REAL)
    doc["namespaces"][0]["sockets"] = [{"proto": "tcp", "inode": 7, "local": "10.0.0.1", "local_port": 80,
                                        "remote": "0.0.0.0", "remote_port": 0, "state": "LISTEN", "uid": 0}]
    doc["namespaces"][0]["sockets"][0][field] = value
    return doc


def test_addresses_that_are_not_addresses_are_refused(tmp_path) -> None:
    for bad in ("localhost", "10.0.0", "10.0.0.256", "::g", "fe80::1%eth0", " 10.0.0.1", "10.0.0.1\n",
                "1" * 70, "0x0a000001", "١٠.٠.٠.١"):
        _rejected(_write(tmp_path, _first_socket_field("local", bad)), "namespaces[0].sockets[0].local",
                  "IP address" if len(bad) <= 64 else "longer than")
    doc = copy.deepcopy(REAL)
    doc["namespaces"][0]["addresses"] = [{"interface": "eth0", "family": 4, "address": "fd00::1", "prefix": 24}]
    _rejected(_write(tmp_path, doc), "namespaces[0].addresses[0].address", "not an IPv4 address")


def test_ports_out_of_range_are_refused(tmp_path) -> None:
    for bad in (-1, 65536, 2**64):
        _rejected(_write(tmp_path, _first_socket_field("local_port", bad)), "namespaces[0].sockets[0].local_port",
                  "out of range")
    _rejected(_write(tmp_path, _first_socket_field("remote_port", 1.0)), "namespaces[0].sockets[0].remote_port",
              "expected an integer")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_two_million_processes_are_refused_by_count(tmp_path) -> None:
    """2,000,000 entries: refused by the process count bound with a clear message (ten million
    are more JSON values than a snapshot may hold, refused before parsing: see
    tests/test_security_budgets.py). The entries are small integers (one shared object each), so
    the test itself stays light; the loader counts before it builds any record."""
    doc = copy.deepcopy(REAL)
    doc["processes"] = "@@"
    text = json.dumps(doc).replace('"@@"', "[" + ",".join(["0"] * 2_000_000) + "]")
    path = _write(tmp_path, text)
    started = time.monotonic()
    _rejected(path, "processes", f"too many entries (2000000 > {snapshot_module.MAX_PROCESSES})")
    assert time.monotonic() - started < 30


def test_file_size_is_bounded_before_parsing(tmp_path, monkeypatch) -> None:
    """The size limit is checked on the bytes, before json parsing builds anything."""
    monkeypatch.setattr(snapshot_files, "MAX_FILE_BYTES", 1 << 20)
    parsed = []
    monkeypatch.setattr(snapshot_files, "loads_document", lambda *a: parsed.append(a))
    path = _write(tmp_path, json.dumps(_with(processes__0__comm="A" * (2 << 20))))
    with pytest.raises(SnapshotError, match=rf"^{path}: \(top level\): file larger than {1 << 20} bytes$"):
        load_snapshot(path)
    assert parsed == []


def test_a_file_that_grew_since_it_was_measured_is_read_whole_within_the_limit(tmp_path, monkeypatch) -> None:
    """The file is read for the size fstat gave, plus one byte to see whether it grew since:
    then the rest is read too, up to the size limit and no further."""
    text = json.dumps(REAL)
    path = _write(tmp_path, text)
    real_fstat = os.fstat

    def measured_early(descriptor: int) -> os.stat_result:
        status = real_fstat(descriptor)
        if status.st_size != len(text):
            return status
        fields = list(status)
        fields[6] = 10  # st_size: the file had 10 bytes when it was measured
        return os.stat_result(fields)

    monkeypatch.setattr(snapshot_files.os, "fstat", measured_early)
    assert snapshot_files.read_snapshot_bytes(path) == text.encode()
    monkeypatch.setattr(snapshot_files, "MAX_FILE_BYTES", 100)
    with pytest.raises(SnapshotError, match=rf"^{path}: \(top level\): file larger than 100 bytes$"):
        snapshot_files.read_snapshot_bytes(path)


def test_hostile_keys_do_not_break_the_one_line_message() -> None:
    doc = copy.deepcopy(REAL)
    doc["namespaces"][0]["unkeyed"] = {"tcp\n\x1b[2Jevil": {"TIME_WAIT": 1}}
    with pytest.raises(SnapshotError) as caught:
        parse_snapshot(doc, "bad.json")
    _one_line_error(caught.value, "bad.json")
    assert "unknown protocol" in str(caught.value)


def test_collected_output_is_checked_as_strictly_as_a_file(tmp_path) -> None:
    """What a machine sends over SSH goes through the same strict JSON reading as a file: a
    snapshot accepted at collect time must load again from the cache."""
    text = json.dumps(REAL)
    for hostile in ("[" * 100_000 + "]" * 100_000,
                    text.replace(str(REAL["host"]["captured_at"]), "NaN", 1)):
        with pytest.raises(HostFailure) as caught:
            validate_output("web-1", b"motd\n" + encode_framed(hostile))
        assert caught.value.kind == "bad_output" and "\n" not in caught.value.message
        with pytest.raises(SnapshotError):
            loads_document(hostile, "web-1")


# --------------------------------------------------------------------------------------------
# One bad snapshot never spoils the others


@pytest.fixture()
def good_and_bad(tmp_path) -> tuple[Path, Path, Path]:
    write_fleet(tmp_path / "fleet", 2, 30, seed=7)
    good1, good2 = sorted((tmp_path / "fleet").glob("*.json"))
    bad = tmp_path / "bad.json"
    doc = json.loads(good1.read_text())
    doc["host"]["hostname"] = "bad"
    doc["processes"][0]["comm"] = "A" * 10_000_000
    bad.write_text(json.dumps(doc))
    return good1, bad, good2


def test_group_loader_skips_a_bad_snapshot_with_a_warning(good_and_bad) -> None:
    good1, bad, good2 = good_and_bad
    group = load_group([good1, bad, good2])
    assert [s.source for s in group.snapshots] == [str(good1), str(good2)]
    skipped = [w for w in group.warnings if w.startswith(f"{bad}: ")]
    assert skipped and "processes[0].comm" in skipped[0] and "skipped" in skipped[0]
    assert group.skipped == (str(bad),)


def test_stitch_renders_the_good_snapshots_and_exits_partial(good_and_bad, tmp_path) -> None:
    good1, bad, good2 = good_and_bad
    output = tmp_path / "map.json"
    result = CliRunner().invoke(app, ["stitch", str(good1), str(bad), str(good2), "-o", str(output)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert str(bad) in result.stderr and "processes[0].comm" in result.stderr
    graph = json.loads(output.read_text())
    machines = {node.get("host") for node in graph["nodes"]}
    assert {json.loads(good1.read_text())["host"]["hostname"], json.loads(good2.read_text())["host"]["hostname"]} <= machines
    assert "bad" not in machines
    # the table on the terminal too
    table = CliRunner().invoke(app, ["stitch", str(good1), str(bad), str(good2), "--format", "table"],
                               env={"COLUMNS": "200"}, catch_exceptions=False)
    assert table.exit_code == EXIT_PARTIAL and str(bad) in table.stderr and "client" in table.stdout


def test_stitch_with_only_bad_snapshots_is_an_error(good_and_bad, tmp_path) -> None:
    _, bad, _ = good_and_bad
    result = CliRunner().invoke(app, ["stitch", str(bad)], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == EXIT_ERROR, result.output
    assert str(bad) in result.stderr and "processes[0].comm" in result.stderr
    other = tmp_path / "other.json"
    other.write_text("[]")
    result = CliRunner().invoke(app, ["stitch", str(bad), str(other)], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == EXIT_ERROR and "no usable snapshot" in result.stderr
    assert str(bad) in result.stderr and str(other) in result.stderr


def test_run_pipeline_skips_a_damaged_cached_snapshot(good_and_bad, tmp_path) -> None:
    """`netviz run` stitches cached snapshots of machines that failed this time: a damaged one is
    reported and skipped, the others are drawn."""
    from netviz.cache import RunWriter
    from netviz.pipeline import CollectOutcome, stitch_run

    good1, bad, good2 = good_and_bad
    writer = RunWriter(tmp_path / "cache")
    for name, path in (("web-a", good1), ("evil", bad), ("web-b", good2)):
        writer.add(name, status="ok", category=None, message="", timings={}, seconds=0.1,
                   snapshot_json=path.read_text(), collected_at=time.time())
    outcome = stitch_run(CollectOutcome(results=[], run=writer.finish()), "json")
    hosts = {node.get("host") for node in json.loads(outcome.data)["nodes"]}
    assert {"web-a", "web-b"} <= hosts and "evil" not in hosts
    assert any("evil.json" in w and "processes[0].comm" in w and "skipped" in w for w in outcome.warnings)


# --------------------------------------------------------------------------------------------
# What the loader accepts, the stitcher and every renderer handle


def _stitch_and_render(snapshots) -> None:
    from netviz.render import render
    from netviz.stitch import stitch

    for group_by in ("process", "pid", "host"):
        graph = stitch(snapshots, group_by=group_by, show_external=True)
        for fmt in ("json", "table", "dot", "html"):
            render(graph, fmt)


# Values that keep a document valid while breaking its cross-references: socket inodes no
# namespace lists, namespaces no process lives in, pids and ports at their bounds, addresses
# shared with the other machine.
CONSISTENT_LOOKING = st.one_of(
    st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 65535, 2**31 - 1, 2**32 - 1, 2**64 - 1, 4026531840]),
    st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "fe80::1",
                     "255.255.255.255", "LISTEN", "ESTABLISHED", "CLOSE", "TIME_WAIT", "SYN_SENT", "UNKNOWN_99",
                     "tcp", "tcp6", "udp", "udp6", "raw", "packet", "sctp", "icmp", ""]),
    st.lists(st.integers(1, 2**64 - 1), max_size=3), st.none(), st.booleans())


@settings(max_examples=300, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(REAL_PATHS), CONSISTENT_LOOKING), min_size=1, max_size=4))
def test_whatever_the_loader_accepts_stitches_and_renders(changes) -> None:
    doc = copy.deepcopy(REAL)
    for path, value in changes:
        try:
            doc = _mutate(doc, path, value, "set")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the path
    try:
        evil = parse_snapshot(doc, "evil.json", name="evil")
    except SnapshotError:
        return
    good = parse_snapshot(copy.deepcopy(REAL), "good.json", name="good")
    _stitch_and_render([evil, good])

"""Memory budgets against hostile snapshots (netviz/budget.py), and snapshot files that are not
regular files.

A machine may send a zip bomb, a parse bomb (`[{},{},...]`: 3 bytes that cost ~70 in memory once
parsed) or output that never ends. Each is a failed machine (`bad_output`) and the memory of
the run stays bounded: checked on the peak RSS of real `python -m netviz` processes, reading
bomb files and collecting lab machines whose python3 prints bombs. `netviz stitch` refuses a
FIFO, a device, a symbolic link inside a directory and a huge sparse file, without blocking or
reading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from base64 import encodebytes
from pathlib import Path

import pytest

from netviz import budget as budget_module
from netviz.budget import MAX_JSON_VALUES, BudgetExceeded, OutputBudget, json_values
from netviz.collect import FAILED, OK, collect
from netviz.errors import SnapshotError
from netviz.snapshot.framing import BEGIN, END, FrameError, decode_framed, encode_framed
from netviz.group import load_group
from netviz.inventory import load_inventory
from netviz.snapshot import (
    SnapshotTooLarge, check_document_size, dump_snapshot, loads_document, parse_snapshot, read_snapshot_bytes,
)
from netviz.transport import KnownHosts, TransportOptions
from tests.test_snapshot_loader import valid_doc

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
# Peak RSS a `python -m netviz` process may reach whatever it is fed: its own imports take about
# 60 MB, a bounded snapshot decode a few hundred more. Before the budgets, the 79 KB parse bomb
# below took 1.9 GB and a machine's endless output 512 MiB (twice that while copied).
PEAK_RSS_LIMIT = 700 * MIB
PARSE_BOMB_ITEMS = 20_000_000  # `[{},{},...]`: 60 MB of JSON, a frame of 79 KB


def frame_of(payload: bytes) -> bytes:
    """A well-formed transport frame around any bytes (encode_framed takes text only)."""
    compressed = zlib.compress(payload, 9)
    header = f" 1 {len(compressed)} {hashlib.sha256(compressed).hexdigest()}\n".encode()
    return BEGIN + header + encodebytes(compressed) + END + b"\n"


def parse_bomb() -> bytes:
    return b"[" + b",".join([b"{}"] * PARSE_BOMB_ITEMS) + b"]"


# Runs argv in a child forked from this small launcher, and reports the child's peak RSS. Linux
# carries a process's peak RSS across exec, and a child spawned straight from pytest starts from
# pytest's own peak; a fork of the launcher starts from the launcher's few MB.
_LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.alarm(int(sys.argv[1]))
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nPEAK-RSS-KIB %d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv: list[str], timeout: int = 180) -> tuple[int, str, int]:
    """Run a command; return its exit code, its stderr and its peak RSS in bytes."""
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, str(timeout), *argv], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout + 30,
                            env={**os.environ, "COLUMNS": "300"})
    stderr, _, peak = result.stderr.decode(errors="replace").rpartition("PEAK-RSS-KIB ")
    return result.returncode, stderr, int(peak) * 1024


# ---------------------------------------------------------------------------- counting values


def test_json_values_counts_structure_outside_strings() -> None:
    assert json_values('{"a":[1,2,{"b":null}]}', limit=0) == 8  # exact past the limit
    # commas, colons and brackets inside strings (escaped quotes too) are not values
    text = json.dumps({"cmdline": ["a,b:c", "[{x}]", 'say "a,b"', "back\\slash,"]})
    assert json_values(text, limit=0) == 1 + 1 + 1 + 1 + 3  # object, key, list, its 4 items
    assert json_values(text) >= json_values(text, limit=0)  # below the limit: a quick upper bound
    assert json_values("[" + ",".join(["{}"] * 1000) + "]", limit=10) == 2001


def test_json_values_stays_linear_on_hostile_strings() -> None:
    """Unterminated strings full of escaped quotes: every string is scanned once."""
    hostile = '"' + '\\",' * 3_000_000  # never closed
    started = time.process_time()  # CPU time: a busy machine does not slow the scan itself
    assert json_values(hostile, limit=0) == 1
    assert json_values('["' + ',"\\"' * 2_000_000, limit=0) == 2  # `[` and one string, never closed
    assert time.process_time() - started < 5  # linear: about a second; a rescan per quote: hours


def test_a_parse_bomb_is_refused_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import netviz.snapshot.files as snapshot_module

    parsed = []
    monkeypatch.setattr(snapshot_module.orjson, "loads", lambda text: parsed.append(text))
    with pytest.raises(SnapshotTooLarge, match=r"^web-1: \(top level\): about 40,000,001 JSON values"):
        loads_document(parse_bomb().decode(), "web-1")
    assert parsed == []


def test_a_text_shorter_than_the_value_limit_is_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON text holds at most one value more than it has characters, so a text shorter than
    MAX_JSON_VALUES cannot pass the limit: check_document_size skips the count (a scan of every
    snapshot of a fleet otherwise)."""
    import netviz.snapshot.files as snapshot_module

    for text in ('{"a":[1,2,{"b":null}]}', "[" + ",".join(["{}"] * 1000) + "]", "[[[[]]]]", '{"":0}'):
        assert json_values(text, limit=0) <= len(text) + 1  # the bound the shortcut relies on
    counted = []
    monkeypatch.setattr(snapshot_module, "json_values", lambda text, limit: counted.append(len(text)) or 0)
    check_document_size("[" + ",".join(["0"] * 1000) + "]", "small")
    assert counted == []
    monkeypatch.setattr(snapshot_module, "MAX_JSON_VALUES", 100)
    check_document_size("[" + ",".join(["0"] * 1000) + "]", "larger than the limit")
    assert counted == [2001]


def test_a_real_large_snapshot_is_within_the_budget() -> None:
    """The limits are a multiple of what a 50,000-socket machine needs (benchmarks/synth.py)."""
    from benchmarks.synth import make_fleet

    document = make_fleet(machines=2, sockets_per_machine=50_000, seed=1)[0]
    text = dump_snapshot(document)
    assert sum(len(namespace["sockets"]) for namespace in document["namespaces"]) >= 50_000
    assert json_values(text) * 8 < MAX_JSON_VALUES
    assert len(text) * 8 < budget_module.MAX_JSON_BYTES
    assert len(encode_framed(text)) * 8 < budget_module.MAX_OUTPUT_BYTES
    assert parse_snapshot(loads_document(text, "big"), "big").namespaces


# ---------------------------------------------------------------------------- zip bombs


def test_a_zip_bomb_frame_is_refused_without_inflating_it_all() -> None:
    """200 MiB of spaces in a 200 KB frame: inflating stops at MAX_JSON_BYTES (it stopped at 1 GiB)."""
    import tracemalloc

    frame = frame_of(b" " * (200 * MIB))
    assert len(frame) < MIB
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as caught:
            decode_framed(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.kind == "too large"
    # zlib builds its output in blocks and joins them: twice the limit at most, never the bomb
    assert peak < 2 * budget_module.MAX_JSON_BYTES + 8 * MIB


def test_a_frame_of_exactly_the_limit_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import netviz.snapshot.framing as framing

    monkeypatch.setattr(framing, "MAX_JSON_BYTES", 1000)
    assert decode_framed(frame_of(b"[" + b" " * 998 + b"]")) == "[" + " " * 998 + "]"
    with pytest.raises(FrameError, match="too large"):
        decode_framed(frame_of(b"[" + b" " * 999 + b"]"))


@pytest.mark.parametrize("shape", ["parse bomb frame", "parse bomb plain", "zip bomb frame"])
def test_stitch_of_a_bomb_file_fails_cleanly_within_bounded_memory(tmp_path: Path, shape: str) -> None:
    """`python -m netviz stitch BOMB`: a clear error and a small peak RSS (1.9 GB before, for the
    79 KB parse bomb frame)."""
    path = tmp_path / "bomb.json"
    if shape == "parse bomb frame":
        path.write_bytes(frame_of(parse_bomb()))
        assert path.stat().st_size < 100_000
        expected = "JSON values"
    elif shape == "parse bomb plain":
        path.write_bytes(parse_bomb())
        expected = "JSON values"
    else:
        path.write_bytes(frame_of(b" " * (1 << 30)))  # a GiB of spaces in a 1 MB frame
        expected = "too large"
    code, stderr, peak = run_measured([sys.executable, "-m", "netviz", "stitch", str(path), "-o", str(tmp_path / "m.dot")])
    assert code == 1, stderr
    assert expected in stderr
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB"


# ---------------------------------------------------------------------------- files that are not files


def test_a_fifo_is_refused_by_stitch_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "snap.json"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "netviz", "stitch", str(fifo)], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 1
    assert f"{fifo}: is a FIFO, not a snapshot file or directory" in result.stderr
    assert "no such" not in result.stderr


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_device_is_refused_by_stitch(device: str) -> None:
    result = subprocess.run([sys.executable, "-m", "netviz", "stitch", device], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 1
    assert f"{device}: is a character device, not a snapshot file or directory" in result.stderr


def test_read_snapshot_bytes_never_opens_a_fifo_for_long(tmp_path: Path) -> None:
    """Read directly (a cached run's file swapped for a FIFO): refused at once, never blocks."""
    fifo = tmp_path / "web.json"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from netviz.snapshot import read_snapshot_bytes\n"
            "try:\n    read_snapshot_bytes(Path(sys.argv[1]))\nexcept Exception as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code, str(fifo)], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == f"{fifo}: is a FIFO, not a snapshot file"


def test_fifos_and_links_inside_a_directory_are_refused_and_the_rest_loads(tmp_path: Path) -> None:
    """A directory (a run in the cache) may hold planted entries: none blocks or is followed."""
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "a.json").write_text(dump_snapshot(valid_doc()))
    os.mkfifo(directory / "b.json")
    (directory / "c.json").symlink_to("/dev/zero")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(dump_snapshot(valid_doc()).replace("web-1", "web-2"))
    (directory / "d.json").symlink_to(elsewhere)
    group = load_group([directory])
    assert [snapshot.name for snapshot in group.snapshots] == ["web-1"]
    assert any(f"{directory / 'b.json'}: is a FIFO" in warning for warning in group.warnings)
    assert any(f"{directory / 'c.json'}: is a symbolic link" in warning for warning in group.warnings)
    assert any(f"{directory / 'd.json'}: is a symbolic link" in warning for warning in group.warnings)


def test_a_link_named_on_the_command_line_is_followed(tmp_path: Path) -> None:
    good = tmp_path / "real" / "a.json"
    good.parent.mkdir()
    good.write_text(dump_snapshot(valid_doc()))
    (tmp_path / "link.json").symlink_to(good)
    assert len(load_group([tmp_path / "link.json"]).snapshots) == 1


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """3 GB (sparse): refused by its size; before, 1 GiB of it was read first."""
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(3 << 30)
    code = ("import sys; from pathlib import Path; from netviz.snapshot import read_snapshot_bytes\n"
            "try:\n    read_snapshot_bytes(Path(sys.argv[1]))\nexcept Exception as error:\n    print(error)\n")
    _, _, peak = run_measured([sys.executable, "-c", code, str(path)], timeout=60)
    with pytest.raises(SnapshotError, match=r"file larger than \d+ bytes"):
        read_snapshot_bytes(path)
    assert peak < 100 * MIB, f"peak RSS {peak / MIB:.0f} MiB"


# ---------------------------------------------------------------------------- the run's budget


def test_a_machine_share_is_bounded_by_itself_and_by_the_run() -> None:
    budget = OutputBudget(total=10 * MIB, per_machine=6 * MIB)
    first, second = budget.share(), budget.share()
    first.take(5 * MIB)
    with pytest.raises(BudgetExceeded, match="more than 6 MiB of output"):
        first.take(2 * MIB)
    second.take(4 * MIB)
    with pytest.raises(BudgetExceeded, match=r"run's output budget \(10 MiB.*1 other machine\(s\) hold 5 MiB"):
        second.take(2 * MIB)
    assert budget.held == 9 * MIB  # refused bytes are not counted
    first.release()
    first.release()  # twice is once
    second.take(2 * MIB)
    assert budget.held == 6 * MIB
    with pytest.raises(BudgetExceeded, match="given up"):
        first.take(1)
    second.release()
    assert budget.held == 0


def test_the_run_budget_holds_under_concurrent_machines() -> None:
    """Many threads taking chunks at once: the total held never passes the budget."""
    budget = OutputBudget(total=64 * MIB, per_machine=16 * MIB)
    peak = [0]
    refused = []

    def machine() -> None:
        share = budget.share()
        try:
            for _ in range(32):
                share.take(MIB)
                peak[0] = max(peak[0], budget.held)
        except BudgetExceeded as error:
            refused.append(str(error))
        finally:
            share.release()

    threads = [threading.Thread(target=machine) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused and peak[0] <= 64 * MIB and budget.held == 0


# ---------------------------------------------------------------------------- lab machines sending bombs

# python3 on a lab machine is replaced by these (tests/lab: `python_wrapper`, {real} is the real
# interpreter). netviz's remote command first asks each candidate its version (`-c`).
_WRAPPER = "#!/bin/sh\nif [ \"$1\" = -c ]; then exec {{real}} \"$@\"; fi\ncat >/dev/null\n{body}\n"
_FRAME_PRINTER = (
    "exec {{real}} -c 'import base64, hashlib, sys, zlib\n"
    "data = {data}\n"
    "packed = zlib.compress(data, 9)\n"
    "sys.stdout.buffer.write(b\"NETVIZ-SNAPSHOT-BEGIN 1 %d %s\\n\" % (len(packed), hashlib.sha256(packed).hexdigest().encode()))\n"
    "sys.stdout.buffer.write(base64.encodebytes(packed) + b\"NETVIZ-SNAPSHOT-END\\n\")'"
)
PARSE_BOMB_PYTHON = _WRAPPER.format(body=_FRAME_PRINTER.format(data=f"b\"[\" + b\",\".join([b\"{{}}\"] * {PARSE_BOMB_ITEMS}) + b\"]\""))
ZIP_BOMB_PYTHON = _WRAPPER.format(body=_FRAME_PRINTER.format(data="b\" \" * (1 << 30)"))
ENDLESS_PYTHON = _WRAPPER.format(body="exec yes 'NETVIZ-SNAPSHOT-BEGIN endless output'")
LATE_ENDLESS_PYTHON = _WRAPPER.format(body="sleep 3\nexec yes 'NETVIZ-SNAPSHOT-BEGIN endless output'")


def test_collect_keeps_the_good_machines_when_others_send_bombs_within_bounded_memory(lab_factory, tmp_path) -> None:
    """`python -m netviz collect` from machines sending a parse bomb, a zip bomb and endless
    output, beside a good one: each bomb is bad_output, the good snapshot and the manifest are
    written, and the collector's peak RSS stays bounded."""
    lab = lab_factory(1, prefix=None)
    lab.add_machine("parsebomb", python_wrapper=PARSE_BOMB_PYTHON)
    lab.add_machine("zipbomb", python_wrapper=ZIP_BOMB_PYTHON)
    lab.add_machine("endless", python_wrapper=ENDLESS_PYTHON)
    names = ["m00", "parsebomb", "zipbomb", "endless"]
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=names, command_timeout=60)
    cache = tmp_path / "cache"
    code, stderr, peak = run_measured(
        [sys.executable, "-m", "netviz", "collect", "-i", str(inventory), "--cache", str(cache)])
    assert code == 3, stderr  # some machines failed, the run is complete
    hosts = {entry["host"]: entry for entry in json.loads((cache / "latest" / "manifest.json").read_text())["hosts"]}
    assert hosts["m00"]["status"] == "ok", hosts["m00"]
    for name in names[1:]:
        assert hosts[name]["category"] == "bad_output", hosts[name]
    assert "JSON values" in hosts["parsebomb"]["message"]
    assert "too large" in hosts["zipbomb"]["message"]
    assert "more than 64 MiB of output" in hosts["endless"]["message"]
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB"


def test_machines_past_the_run_budget_fail_and_the_others_are_kept(lab_factory, tmp_path, monkeypatch) -> None:
    """A run budget smaller than one machine's limit: the two machines sending endless output
    (after the good ones have answered) fail by the run's budget, which is given back."""
    monkeypatch.setattr(budget_module, "RUN_OUTPUT_BYTES", 8 * MIB)
    lab = lab_factory(2, prefix=None)
    lab.add_machine("endless1", python_wrapper=LATE_ENDLESS_PYTHON)
    lab.add_machine("endless2", python_wrapper=LATE_ENDLESS_PYTHON)
    names = ["m00", "m01", "endless1", "endless2"]
    inventory = load_inventory(lab.write_inventory(tmp_path / "hosts.yaml", hosts=names, command_timeout=60))
    results = {result.name: result for result in collect(inventory.hosts, TransportOptions(KnownHosts()))}
    assert results["m00"].status == OK and results["m01"].status == OK
    for name in ("endless1", "endless2"):
        assert results[name].status == FAILED and results[name].kind == "bad_output", results[name]
        assert "run's output budget (8 MiB" in results[name].message

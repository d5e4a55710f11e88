"""The cache shared by collectors running at the same time, and killed at any moment.

Writers are real processes (several at once, or one killed with SIGKILL at random moments);
after each, every run the cache lists must load with all its snapshots complete, and `latest`
must name a complete run. The last test runs two real `netviz collect` against the lab at once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netviz.cache import LATEST, MANIFEST, RunWriter, latest_run, list_runs, read_run, stitch_inputs
from netviz.errors import EXIT_OK
from netviz.snapshot import load_snapshot
from tests.lab.scenario import graph_flow_keys

REPO = Path(__file__).resolve().parent.parent

# A writer process: `rounds` runs into ROOT, each with a fresh snapshot (about `size` bytes) for
# "fresh" and a failure for "carried" (whose last good snapshot is carried forward, stale).
WRITER = """
import json, sys
from netviz.cache import RunWriter
root, rounds, size, keep, tag, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
for number in range(rounds):
    writer = RunWriter(root)
    body = json.dumps({"writer": tag, "round": number, "padding": "x" * size})
    writer.add("fresh", status="ok", category=None, message="", timings={}, seconds=0.1, snapshot_json=body)
    for extra in range(hosts):  # many files: deleting a pruned run takes a while
        writer.add(f"extra{extra}", status="ok", category=None, message="", timings={}, seconds=0.1,
                   snapshot_json=json.dumps({"extra": extra}))
    if number == 0:
        writer.add("carried", status="ok", category=None, message="", timings={}, seconds=0.1, snapshot_json=body)
    else:
        writer.add("carried", status="failed", category="refused", message="refused", timings={}, seconds=0.1,
                   snapshot_json=None)
    writer.finish(keep=keep)
"""


def start_writer(root: Path, rounds: int, size: int, keep: int, tag: str, hosts: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(rounds), str(size), str(keep), tag, str(hosts)],
                            cwd=REPO, stderr=subprocess.PIPE)


def assert_cache_is_whole(root: Path) -> None:
    """Every listed run loads, every snapshot it names is complete JSON, latest is a complete run."""
    for path in list_runs(root):
        run = read_run(path)
        for _, snapshot in run.snapshot_files():
            json.loads(snapshot.read_text())
    latest = latest_run(root, missing_ok=True)
    if list_runs(root):
        assert latest is not None and not latest.interrupted
        assert (latest.path / MANIFEST).is_file()
        stitch_inputs([], root)  # what `netviz stitch` without arguments resolves


def test_latest_never_moves_back_to_a_run_that_started_earlier(tmp_path):
    early = RunWriter(tmp_path, now=1_000_000)
    late = RunWriter(tmp_path, now=1_000_060)
    late.finish()
    early.finish()  # finishes last, but its snapshots are older
    assert latest_run(tmp_path).run_id == late.run_id
    assert {path.name for path in list_runs(tmp_path)} == {early.run_id, late.run_id}


def test_concurrent_writers_with_pruning_leave_a_whole_cache(tmp_path):
    root = tmp_path / "cache"
    writers = [start_writer(root, rounds=8, size=20_000, keep=3, tag=str(number)) for number in range(6)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        # A carried-forward snapshot pruned by another writer must not fail a run.
        assert writer.returncode == 0, stderr.decode()
    assert_cache_is_whole(root)
    assert len(list_runs(root)) <= 3 + 6  # keep=3, plus runs finished while others pruned
    leftovers = [path for path in root.rglob(".*") if path.name not in (".lock",)]
    assert leftovers == [], leftovers  # no temporary file, no half-deleted run


def test_a_writer_killed_at_any_moment_leaves_a_whole_cache(tmp_path):
    root = tmp_path / "cache"
    chance = random.Random(20261125)
    kills = 0
    for _ in range(12):
        writer = start_writer(root, rounds=1000, size=400_000, keep=1, tag="victim", hosts=5)
        time.sleep(chance.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        kills += writer.returncode == -signal.SIGKILL
        assert_cache_is_whole(root)
    assert kills >= 10  # the writer was killed mid-work, not after it was done
    # Runs without a manifest (killed collectors) are never listed nor pointed at.
    unfinished = [path for path in root.iterdir() if path.is_dir() and not (path / MANIFEST).exists()
                  and not path.name.startswith(".")]
    assert all(path not in list_runs(root) for path in unfinished)


PRUNER = """
import sys
from netviz.cache import prune
prune(__import__("pathlib").Path(sys.argv[1]), keep=1)
"""


def test_a_pruner_killed_while_deleting_a_run_leaves_no_half_run(tmp_path):
    """Deleting an old run takes a while when it holds many snapshots: a collector killed in the
    middle must not leave a run whose manifest names snapshots that are gone."""
    root = tmp_path / "cache"
    old = RunWriter(root, now=1_000_000)
    names = [f"host{number}" for number in range(20_000)]
    for name in names:  # written directly: 20,000 fsyncs would take too long
        (old.path / f"{name}.json").write_text("{}")
    (old.path / MANIFEST).write_text(json.dumps({
        "schema": "netviz.run/1", "run": old.run_id, "started_at": 1_000_000, "finished_at": 1_000_001,
        "hosts": [{"host": name, "status": "ok", "snapshot": f"{name}.json"} for name in names],
    }))
    RunWriter(root, now=1_000_100).finish(keep=30)  # the newest run: `latest`, never pruned
    pruner = subprocess.Popen([sys.executable, "-c", PRUNER, str(root)], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while pruner.poll() is None and time.monotonic() < deadline:
            try:
                remaining = len(os.listdir(old.path))
            except FileNotFoundError:
                remaining = len(os.listdir(next(root.glob(".*" + old.run_id))))
            if remaining < len(names) * 0.7:
                break
        pruner.send_signal(signal.SIGKILL)
    finally:
        pruner.wait(timeout=30)
    assert pruner.returncode == -signal.SIGKILL, "the pruner finished before it could be killed"
    assert_cache_is_whole(root)
    assert [path.name for path in list_runs(root)] == [latest_run(root).run_id]
    # The next prune finishes the deletion.
    from netviz.cache import prune

    prune(root)
    assert sorted(path.name for path in root.iterdir()) == sorted([".lock", LATEST, latest_run(root).run_id])


def test_two_concurrent_collects_on_the_lab_never_corrupt_the_cache(lab, tmp_path):
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "netviz", "collect", "--inventory", str(lab.scenario_inventory),
               "--cache", str(cache)]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for process in (first, second):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == EXIT_OK, stderr.decode()
    runs = [read_run(path) for path in list_runs(cache)]
    assert len(runs) == 2  # one directory each
    for run in runs:
        assert [host.host for host in run.hosts] == lab.scenario.hosts
        for host, path in run.snapshot_files():
            assert host.status == "ok" and not host.stale
            assert load_snapshot(path, name=host.host).host.hostname == host.host
    newest = max(runs, key=lambda run: (run.started_at, run.run_id))
    assert os.readlink(cache / LATEST) == newest.run_id
    stitched = subprocess.run([sys.executable, "-m", "netviz", "stitch", "--cache", str(cache), "--format", "json"],
                              cwd=REPO, capture_output=True, timeout=60)
    assert stitched.returncode == EXIT_OK, stitched.stderr.decode()
    assert graph_flow_keys(json.loads(stitched.stdout)) == lab.scenario.flow_keys()


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_runs_written_concurrently_are_owner_only_whatever_the_umask(tmp_path, umask):
    root = tmp_path / "deep" / "er" / "cache"
    previous = os.umask(umask)
    try:
        writers = [start_writer(root, rounds=3, size=100, keep=30, tag=str(number)) for number in range(2)]
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        os.umask(previous)
    for path in [tmp_path / "deep", tmp_path / "deep" / "er", *[p for p in root.rglob("*") if p.is_dir()], root]:
        assert path.stat().st_mode & 0o777 == 0o700, path
    files = [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]
    assert any(path.name == "carried.json" for path in files)
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_an_interrupted_run_is_read_with_a_warning_but_never_becomes_latest(tmp_path):
    complete = RunWriter(tmp_path, now=1_000_000)
    complete.add("a", status="ok", category=None, message="", timings={}, seconds=0.1, snapshot_json="{}")
    complete.finish()
    stopped = RunWriter(tmp_path, now=1_000_100)
    stopped.add("a", status="ok", category=None, message="", timings={}, seconds=0.1, snapshot_json="{}")
    stopped.add("b", status="interrupted", category="interrupted", message="interrupted before it finished",
                timings={}, seconds=0.0, snapshot_json=None)
    run = stopped.finish(interrupted=True)
    assert run.interrupted and read_run(run.path).interrupted
    assert latest_run(tmp_path).run_id == complete.run_id
    os.unlink(tmp_path / LATEST)  # even without the pointer, a complete run is preferred
    assert latest_run(tmp_path).run_id == complete.run_id
    inputs = stitch_inputs([run.path], tmp_path)
    assert [path.name for path in inputs.files] == ["a.json"]
    assert any("was interrupted: 1 of 2 machines finished" in warning for warning in inputs.warnings)


def test_run_directories_of_dead_collectors_are_removed_a_day_later(tmp_path):
    from netviz.cache import prune

    dead = RunWriter(tmp_path, now=1_000_000)  # never finished: no manifest
    alive = RunWriter(tmp_path, now=1_000_050)  # another collector, still writing
    finished = RunWriter(tmp_path, now=1_000_100).finish()
    os.utime(dead.path, (time.time() - 2 * 86400,) * 2)
    prune(tmp_path)
    assert not dead.path.exists() and alive.path.exists() and finished.path.exists()

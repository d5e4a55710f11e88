"""Collecting many machines holds about --parallel snapshots, not one per machine: each is
written to the cache as its machine answers and dropped; `run` draws the map from the cache.
Without a writable cache the snapshots are kept in memory instead (and the map still drawn).

The machines are a transport double answering with framed synthetic snapshots: what is tested
is the pipeline's memory, not SSH (benchmarks/bench_collect_memory.py measures it at scale)."""

from __future__ import annotations

import gc
import json
import logging
import threading
import weakref
from pathlib import Path

import pytest

import netviz.collect
import netviz.pipeline
from benchmarks.synth import make_fleet
from netviz.cache import CacheWriteError, RunWriter, latest_run
from netviz.pipeline import CollectRequest, collect_group, stitch_run
from netviz.snapshot.framing import encode_framed

MACHINES = 120
PARALLEL = 6


@pytest.fixture(scope="module")
def frames() -> dict[str, bytes]:
    """A framed snapshot per machine (a fleet of small machines that talk to each other)."""
    return {document["host"]["hostname"]: encode_framed(json.dumps(document))
            for document in make_fleet(MACHINES, 24, seed=3)}


class FramesTransport:
    """Answers each machine at once with its frame: the workers outrun the calling thread."""

    def __init__(self, frames: dict[str, bytes]) -> None:
        self.frames = frames

    def fetch(self, target, payload, attempt, timings) -> bytes:
        data = self.frames[target.name]
        attempt.output.take(len(data))
        return data

    def deadline(self, target) -> float:
        return 60.0

    def descriptors(self, target) -> int:
        return 1


class AliveSnapshots:
    """Counts the parsed snapshots alive (weakref.finalize on each one validate_output makes)."""

    def __init__(self) -> None:
        self.now = self.most = self.made = 0
        self._lock = threading.Lock()

    def _gone(self) -> None:
        with self._lock:
            self.now -= 1

    def watch(self, validate):
        def counted(name, stdout):
            text, snapshot = validate(name, stdout)
            with self._lock:
                self.made += 1
                self.now += 1
                self.most = max(self.most, self.now)
            weakref.finalize(snapshot, self._gone)
            return text, snapshot
        return counted


@pytest.fixture
def fleet(tmp_path, frames, monkeypatch):
    """An inventory of the fleet whose machines the transport double answers; the counter.
    Snapshots are validated in the threads unless a test says otherwise."""
    monkeypatch.setattr(netviz.collect, "VALIDATE_IN_PROCESSES_FROM", 10**9)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n" + "".join(f"  {name}: {{}}\n" for name in sorted(frames)))
    monkeypatch.setattr(netviz.pipeline, "SSHTransport", lambda options: FramesTransport(frames))
    alive = AliveSnapshots()
    monkeypatch.setattr(netviz.collect, "validate_output", alive.watch(netviz.collect.validate_output))
    gc.collect()
    return inventory, alive


def test_a_collection_holds_about_parallel_snapshots_and_run_draws_from_the_cache(fleet, tmp_path, caplog):
    inventory, alive = fleet
    request = CollectRequest(inventory=inventory, parallel=PARALLEL, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.DEBUG, logger="netviz.collect"):
        collected = collect_group(request, history_later=True)
    [cost] = [record.getMessage() for record in caplog.records if "client CPU" in record.getMessage()]
    assert cost.startswith(f"collected {MACHINES} machines in ") and "ms per machine" in cost  # --log debug
    assert alive.made == MACHINES and all(result.ok for result in collected.results)
    # A snapshot is written, then dropped, as its machine answers: never more than the pool holds.
    assert alive.most <= PARALLEL, f"{alive.most} snapshots alive at once with --parallel {PARALLEL}"
    gc.collect()
    assert alive.now == 0
    assert all(result.snapshot is None and result.snapshot_json is None for result in collected.results)
    assert collected.results[0].sockets and collected.results[0].coverage is not None  # the summary stays
    run = latest_run(tmp_path / "cache")
    assert run is not None and run.run_id == collected.run.run_id and len(run.snapshot_files()) == MACHINES

    outcome = stitch_run(collected, "json")  # from the cache, as `netviz stitch` reads it
    graph = json.loads(outcome.data)
    assert len(graph["hosts"]) == MACHINES and graph["summary"]["flows"] > 0
    from netviz.history import open_history, recorded_runs

    connection = open_history(tmp_path / "cache")  # recorded from the snapshots loaded for the map
    try:
        assert recorded_runs(connection) == {run.run_id}
    finally:
        connection.close()
    assert not collected.history_pending


def test_a_large_collection_validates_in_child_processes(fleet, tmp_path, frames, monkeypatch):
    """Past VALIDATE_IN_PROCESSES_FROM machines the snapshots are validated off the SSH threads,
    in child processes: this process parses none, a bad one is still bad_output, and the map is
    the same."""
    inventory, alive = fleet
    monkeypatch.setattr(netviz.collect, "VALIDATE_IN_PROCESSES_FROM", 64)
    monkeypatch.setitem(frames, "m0007", frames["m0007"].replace(b"NETVIZ-SNAPSHOT-END", b""))  # truncated
    request = CollectRequest(inventory=inventory, parallel=PARALLEL, cache_dir=tmp_path / "cache")
    collected = collect_group(request)
    assert alive.made == 0  # no snapshot was parsed here
    bad = [result for result in collected.results if not result.ok]
    assert [(result.name, result.kind) for result in bad] == [("m0007", "bad_output")], bad
    assert "truncated" in bad[0].message
    good = [result for result in collected.results if result.ok]
    assert all(result.sockets and result.validate_cpu > 0 for result in good)
    graph = json.loads(stitch_run(collected, "json").data)
    assert len(graph["hosts"]) == MACHINES - 1


def test_without_a_writable_cache_the_snapshots_stay_in_memory_and_the_map_is_drawn(fleet, tmp_path):
    inventory, alive = fleet
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    request = CollectRequest(inventory=inventory, parallel=PARALLEL, cache_dir=blocker / "cache")
    collected = collect_group(request)
    assert collected.cache_problem is not None and collected.exit_code == 3
    assert len(collected.snapshots) == MACHINES  # the in-memory fallback keeps every one
    graph = json.loads(stitch_run(collected, "json").data)
    assert len(graph["hosts"]) == MACHINES


def test_a_cache_that_fails_midway_reads_back_what_it_had_written(fleet, tmp_path, monkeypatch):
    inventory, alive = fleet
    add = RunWriter.add
    written = []

    def filling_up(self, host, **kwargs):
        if len(written) == 50:
            raise CacheWriteError("no space left on device (simulated)")
        written.append(host)
        return add(self, host, **kwargs)

    monkeypatch.setattr(RunWriter, "add", filling_up)
    request = CollectRequest(inventory=inventory, parallel=PARALLEL, cache_dir=tmp_path / "cache")
    collected = collect_group(request)
    assert collected.cache_problem is not None and "no space left" in collected.cache_problem
    assert sorted(collected.snapshots) == sorted(result.name for result in collected.results)
    assert [path.name for path in Path(tmp_path / "cache").iterdir() if not path.name.startswith(".")] == []
    graph = json.loads(stitch_run(collected, "json").data)
    assert len(graph["hosts"]) == MACHINES

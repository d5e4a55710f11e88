"""Collecting on a schedule: `netviz collect --every` (real subprocesses collecting this machine),
the retention of `--keep` in the cache and the history, and one run at a time on a cache."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netviz.cache import list_runs, read_run
from netviz.schedule import collecting, every

NETVIZ = [sys.executable, "-m", "netviz"]


@pytest.fixture
def cache(tmp_path) -> Path:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    return root


def wait_for_lines(stream, count: int, timeout: float = 120) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while len(lines) < count:
        assert time.monotonic() < deadline, f"only {len(lines)} runs: {lines}"
        lines.append(stream.readline().strip())
    return lines


def test_every_collects_until_stopped_and_keep_prunes_the_cache_and_its_history(cache):
    collector = subprocess.Popen(NETVIZ + ["collect", "--cache", str(cache), "--every", "1s", "--keep", "4s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = wait_for_lines(collector.stdout, 5)
    finally:
        collector.send_signal(signal.SIGTERM)
        _, errors = collector.communicate(timeout=120)
    assert collector.returncode in (0, 130), errors  # 130: stopped in the middle of a run
    runs = [read_run(path) for path in list_runs(cache)]
    newest = max(run.started_at for run in runs)
    assert runs and all(newest - run.started_at <= 4 + 0.5 for run in runs)  # older runs were pruned
    assert not Path(printed[0]).exists()  # the first run was more than 4 s older than the last
    shown = json.loads(subprocess.run(NETVIZ + ["history", "--cache", str(cache), "--format", "json"],
                                      capture_output=True, text=True, check=True).stdout)
    assert [line["run"] for line in shown["runs"]] == [run.run_id for run in runs]  # pruned runs left it too


def test_a_collection_waits_while_another_one_writes_to_the_same_cache(cache):
    with collecting(cache):
        waiting = subprocess.Popen(NETVIZ + ["collect", "--cache", str(cache)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(5)  # a collection of this machine takes about 2 s: this one would have made its run
        assert waiting.poll() is None and list_runs(cache) == []
    output, errors = waiting.communicate(timeout=120)
    assert waiting.returncode in (0, 3), errors
    assert "another collection is writing to this cache: waiting" in errors
    assert [path.name for path in list_runs(cache)] == [Path(output.strip()).name]


def test_a_run_longer_than_the_interval_skips_the_ticks_it_overlapped():
    clock, calls, skipped = [0.0], [], []

    def collect_once() -> None:
        calls.append(clock[0])
        clock[0] += 25.0 if len(calls) == 2 else 1.0  # the second run lasts 2.5 intervals
        if len(calls) == 4:
            raise KeyboardInterrupt

    def sleep(seconds: float) -> None:
        assert seconds >= 0
        clock[0] += seconds

    with pytest.raises(KeyboardInterrupt):
        every(10.0, collect_once, on_skip=skipped.append, clock=lambda: clock[0], sleep=sleep)
    assert calls == [0.0, 10.0, 40.0, 50.0] and skipped == [2]

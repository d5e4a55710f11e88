"""The run cache: layout, permissions, atomic writes, `latest`, stale snapshots, stitch inputs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from netviz.cache import (
    LATEST,
    MANIFEST,
    RunWriter,
    default_cache_dir,
    describe_age,
    host_file_name,
    latest_run,
    list_runs,
    read_run,
    stitch_inputs,
)
from netviz.errors import CacheError

TIMINGS = {"dns": 0.0, "connect": 0.1, "command": 0.2}


def write_run(root: Path, outcomes: dict, now: float) -> "object":
    writer = RunWriter(root, now=now)
    for host, snapshot in outcomes.items():
        writer.add(
            host,
            status="ok" if snapshot is not None else "failed",
            category=None if snapshot is not None else "refused",
            message="" if snapshot is not None else "connection refused",
            timings=TIMINGS,
            seconds=0.3,
            snapshot_json=snapshot,
            collected_at=now + 1 if snapshot is not None else None,
        )
    return writer.finish(now=now + 2)


def test_layout_permissions_and_manifest(tmp_path):
    root = tmp_path / "cache"
    run = write_run(root, {"web1": '{"a": 1}', "db1": None}, now=1_000_000)
    assert run.path.parent == root and (root / LATEST).resolve() == run.path.resolve()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and stat.S_IMODE(run.path.stat().st_mode) == 0o700
    for child in run.path.iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child
    assert sorted(p.name for p in run.path.iterdir()) == [MANIFEST, "web1.json"]  # no temporary files left
    document = json.loads((run.path / MANIFEST).read_text())
    assert document["schema"] == "netviz.run/1"
    hosts = {entry["host"]: entry for entry in document["hosts"]}
    assert hosts["web1"]["snapshot"] == "web1.json" and hosts["web1"]["status"] == "ok"
    assert hosts["db1"] == {**hosts["db1"], "status": "failed", "category": "refused", "snapshot": None,
                            "message": "connection refused", "timings": TIMINGS}


def test_failed_machine_keeps_its_last_good_snapshot_marked_stale(tmp_path):
    root = tmp_path / "cache"
    first = write_run(root, {"web1": '{"v": 1}', "db1": '{"v": "db"}'}, now=1_000_000)
    second = write_run(root, {"web1": '{"v": 2}', "db1": None}, now=1_000_600)
    third = write_run(root, {"web1": '{"v": 3}', "db1": None}, now=1_001_200)
    entry = third.host("db1")
    assert entry.status == "failed" and entry.stale and entry.snapshot == "db1.json"
    assert entry.captured_run == first.run_id  # carried forward twice, still naming its origin
    assert (third.path / "db1.json").read_text() == '{"v": "db"}'
    assert entry.age(now=1_001_201) == pytest.approx(1200)
    inputs = stitch_inputs([], root)
    assert [p.name for p in inputs.files] == ["web1.json", "db1.json"]
    assert inputs.stale == {"db1"}
    assert any("db1" in w and " old" in w and first.run_id in w for w in inputs.warnings)
    assert second.host("web1").stale is False


def test_stitch_inputs_by_run_id_run_dir_and_plain_paths(tmp_path):
    root = tmp_path / "cache"
    old = write_run(root, {"a": '{"x": 1}'}, now=1_000_000)
    write_run(root, {"a": '{"x": 2}', "b": '{"y": 1}'}, now=1_000_100)
    by_id = stitch_inputs([Path(old.run_id)], root)
    assert [p.read_text() for p in by_id.files] == ['{"x": 1}'] and by_id.names == {old.path / "a.json": "a"}
    by_dir = stitch_inputs([old.path], root)
    assert by_dir.files == by_id.files
    plain = tmp_path / "snap.json"
    plain.write_text("{}")
    assert stitch_inputs([plain], root).files == (plain,)
    assert len(stitch_inputs([], root).files) == 2  # latest


def test_no_run_yet_is_a_clear_error(tmp_path):
    with pytest.raises(CacheError, match="no collected run in .*netviz collect"):
        stitch_inputs([], tmp_path / "empty")


def test_interrupted_run_without_manifest_is_ignored(tmp_path):
    root = tmp_path / "cache"
    good = write_run(root, {"a": "{}"}, now=1_000_000)
    RunWriter(root, now=1_000_100).add("a", status="ok", category=None, message="", timings={}, seconds=0,
                                       snapshot_json="{}")  # never finished
    assert list_runs(root) == [good.path]
    assert latest_run(root).run_id == good.run_id


def test_host_names_cannot_escape_the_run_directory():
    assert host_file_name("web-1.example.com") == "web-1.example.com.json"
    assert "/" not in host_file_name("../../etc/passwd") and not host_file_name("..").startswith(".")
    assert host_file_name("a:b") != host_file_name("a_b")
    assert host_file_name("é") == "%E9.json"


def test_malformed_manifest_is_a_cache_error(tmp_path):
    run = write_run(tmp_path, {"a": "{}"}, now=1_000_000)
    (run.path / MANIFEST).write_text('{"schema": "netviz.run/1", "hosts": [{"host": "a", "snapshot": "../x"}]}')
    with pytest.raises(CacheError, match="malformed manifest"):
        read_run(run.path)


def test_old_runs_are_pruned(tmp_path):
    runs = [RunWriter(tmp_path, now=1_000_000 + i) for i in range(4)]
    finished = [writer.finish(now=1_000_000 + i, keep=2) for i, writer in enumerate(runs)]
    assert list_runs(tmp_path) == [finished[2].path, finished[3].path]


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "netviz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "netviz"


def test_describe_age():
    assert [describe_age(s) for s in (5, 600, 7200, 3 * 86400)] == ["5 s", "10 min", "2 h", "3 d"]

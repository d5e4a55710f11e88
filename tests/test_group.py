"""Loading a group: files and directories, unique machine names, duplicates dropped (rule 13),
legacy snapshots with their warning (rule 14). Uses the real loader on real files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks.synth import make_fleet
from netviz.errors import SnapshotError
from netviz.group import load_group, resolve_inputs
from netviz.stitch import stitch


def write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture()
def pair() -> list[dict]:
    return make_fleet(2, 60, seed=11)


def test_files_and_directories_load_in_order(tmp_path, pair):
    first = write(tmp_path / "a" / "one.json", pair[0])
    write(tmp_path / "b" / "two.json", pair[1])
    (tmp_path / "b" / "notes.txt").write_text("not a snapshot")
    group = load_group([first, tmp_path / "b"])
    assert [snapshot.name for snapshot in group.snapshots] == ["m0000", "m0001"]
    assert group.warnings == ()


def test_clones_sharing_hostname_and_machine_id_stay_two_machines_named_after_files(tmp_path, pair):
    clone = copy.deepcopy(pair[1])
    clone["host"]["hostname"] = pair[0]["host"]["hostname"]
    clone["host"]["machine_id"] = pair[0]["host"]["machine_id"]
    write(tmp_path / "vm-a.json", pair[0])
    write(tmp_path / "vm-b.json", clone)
    group = load_group([tmp_path])
    assert [snapshot.name for snapshot in group.snapshots] == ["vm-a", "vm-b"]
    assert [snapshot.host.hostname for snapshot in group.snapshots] == ["m0000", "m0000"]
    assert len(group.warnings) == 1 and "'m0000'" in group.warnings[0] and "vm-a.json" in group.warnings[0]
    graph = stitch(group.snapshots)
    assert [host.name for host in graph.hosts] == ["vm-a", "vm-b"]
    assert any(
        graph.node(flow.client).host != graph.node(flow.server).host for flow in graph.flows
    ), "the two clones still talk to each other"


def test_clones_with_the_same_file_stem_in_different_directories(tmp_path, pair):
    clone = copy.deepcopy(pair[1])
    clone["host"]["hostname"] = pair[0]["host"]["hostname"]
    write(tmp_path / "east" / "snapshot.json", pair[0])
    write(tmp_path / "west" / "snapshot.json", clone)
    group = load_group([tmp_path / "east", tmp_path / "west"])
    assert [snapshot.name for snapshot in group.snapshots] == ["east/snapshot", "west/snapshot"]


def test_a_file_name_meeting_another_hostname_is_numbered(tmp_path):
    documents = make_fleet(3, 40, seed=2)
    documents[1]["host"]["hostname"] = "m0000"  # clones m0000's name; its file is called m0002.json
    documents[2]["host"]["hostname"] = "m0002"
    write(tmp_path / "m0000.json", documents[0])
    write(tmp_path / "m0002.json", documents[1])
    write(tmp_path / "x.json", documents[2])
    names = [snapshot.name for snapshot in load_group([tmp_path]).snapshots]
    assert len(set(names)) == 3 and "m0002-2" in names


def test_the_same_snapshot_given_twice_is_dropped_with_a_warning(tmp_path, pair):
    path = write(tmp_path / "one.json", pair[0])
    copy_path = write(tmp_path / "copy" / "again.json", pair[0])
    group = load_group([path, path, tmp_path / "copy"])
    assert [snapshot.name for snapshot in group.snapshots] == ["m0000"]
    assert len(group.warnings) == 2
    assert "given twice" in group.warnings[0] and str(copy_path) in group.warnings[1]


def test_missing_paths_empty_directories_and_bad_files_are_errors(tmp_path, pair):
    with pytest.raises(SnapshotError, match="no such snapshot"):
        load_group([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SnapshotError, match="no \\*.json"):
        load_group([tmp_path / "empty"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SnapshotError, match="bad.json"):
        load_group([bad])
    with pytest.raises(SnapshotError, match="no snapshots given"):
        resolve_inputs([])


def legacy(pid: int, comm: str, sockets: dict[int, tuple[str, list, list]]) -> dict:
    """A snapshot in the original capture.py layout."""
    return {
        "processes": {
            str(pid): {
                "cmd": comm, "uid": 0, "pid": pid, "selinux": "none",
                "inodes": [{"ino": str(inode), "extra": "socket"} for inode in sockets],
            }
        },
        "net": {
            str(inode): {"type": kind, "local": local, "remote": remote}
            for inode, (kind, local, remote) in sockets.items()
        },
    }


def test_legacy_snapshots_load_with_a_warning_and_join(tmp_path):
    client = write(tmp_path / "old-client.json", legacy(10, "psql", {111: ("tcp", ["10.9.0.1", 40000], ["10.9.0.2", 5432])}))
    server = write(
        tmp_path / "old-server.json",
        legacy(20, "postgres", {
            221: ("tcp", ["0.0.0.0", 5432], ["0.0.0.0", 0]),
            222: ("tcp", ["10.9.0.2", 5432], ["10.9.0.1", 40000]),
        }),
    )
    group = load_group([client, server])
    assert [snapshot.legacy for snapshot in group.snapshots] == [True, True]
    assert [snapshot.name for snapshot in group.snapshots] == ["old-client", "old-server"]
    assert len(group.warnings) == 2 and all("original capture.py" in warning for warning in group.warnings)
    assert all(warning.count(str(tmp_path)) == 1 for warning in group.warnings)
    graph = stitch(group.snapshots)
    flows = [(graph.node(f.client).comm, graph.node(f.server).comm, f.server_port, f.directed) for f in graph.flows]
    assert flows == [("psql", "postgres", 5432, True)]


def test_the_same_machine_captured_twice_is_kept_once_first_given_first(tmp_path):
    """An inventory that lists one machine under two names (an alias and an address) captures it
    twice: kept twice, it would own its addresses twice and every flow to it would be lost. The
    capture given first is kept, not the one claiming the later time (a claim anyone can make:
    tests/test_security_trust.py)."""
    fleet = make_fleet(3, 80, seed=5)
    before = stitch(load_group([write(tmp_path / "fleet" / f"{d['host']['hostname']}.json", d) for d in fleet]).snapshots)
    again = copy.deepcopy(fleet[1])
    again["host"]["captured_at"] += 60  # a minute later, same boot
    write(tmp_path / "alias" / "m0001-by-address.json", again)
    group = load_group([tmp_path / "fleet", tmp_path / "alias"])
    assert [snapshot.name for snapshot in group.snapshots] == ["m0000", "m0001", "m0002"]
    kept = group.snapshots[1]  # the capture given first, although the other claims a later time
    assert kept.source.endswith("fleet/m0001.json") and kept.host.captured_at == fleet[1]["host"]["captured_at"]
    assert len(group.warnings) == 1 and "same machine" in group.warnings[0] and "m0001-by-address.json" in group.warnings[0]
    after = stitch(group.snapshots)
    assert after.summary() == before.summary() and after.unresolved == 0 and len(after.flows) > 0


def test_same_machine_id_and_boot_but_another_hostname_or_namespace_stays_apart(tmp_path):
    """Containers of one host share its kernel's boot id, and those of one image its machine-id:
    a different hostname, or (same hostname) different network namespaces, keep them apart."""
    fleet = make_fleet(2, 40, seed=9)
    twin = copy.deepcopy(fleet[1])
    twin["host"].update(machine_id=fleet[0]["host"]["machine_id"], boot_id=fleet[0]["host"]["boot_id"])
    write(tmp_path / "a.json", fleet[0])
    write(tmp_path / "b.json", twin)
    assert len(load_group([tmp_path]).snapshots) == 2
    twin["host"]["hostname"] = fleet[0]["host"]["hostname"]
    for namespace in twin["namespaces"]:
        namespace["inode"] += 1_000_000
    for process in twin["processes"]:
        if process.get("netns") is not None:
            process["netns"] += 1_000_000
    write(tmp_path / "b.json", twin)
    group = load_group([tmp_path])
    assert [snapshot.name for snapshot in group.snapshots] == ["a", "b"]
    assert not any("same machine" in warning for warning in group.warnings)

"""The synthetic fleet of benchmarks/synth.py goes through the real loader and stitches exactly:
every connection it wires is found, every outside one counted, nothing unresolved."""

from __future__ import annotations

import json

from benchmarks.synth import PATTERN, connection_slots, make_fleet, write_fleet
from netviz.group import load_group
from netviz.snapshot import parse_snapshot
from netviz.stitch import stitch


def expected_counts(machines: int, sockets: int) -> dict[str, int]:
    slots = connection_slots(sockets)
    kinds = [PATTERN[slot % len(PATTERN)] for slot in range(slots)]
    return {kind: kinds.count(kind) * machines for kind in set(kinds)}


def test_synthetic_fleet_stitches_every_wired_connection():
    machines, sockets = 12, 300
    documents = make_fleet(machines, sockets, seed=3)
    snapshots = [parse_snapshot(document, f"{document['host']['hostname']}.json") for document in documents]
    counts = expected_counts(machines, sockets)
    graph = stitch(snapshots)
    in_group = sum(count for kind, count in counts.items() if kind != "outside-https")
    assert sum(flow.count for flow in graph.flows) == in_group
    assert sum(flow.count for flow in graph.flows if flow.via) == counts["nat-api"]
    assert sum(flow.count for flow in graph.flows if flow.inferred) == counts["partial-postgres"]
    assert all(flow.directed for flow in graph.flows)
    assert graph.unresolved == 0
    assert sum(host.outside_outbound for host in graph.hosts) == counts["outside-https"]
    assert all(host.outside_inbound == 1 for host in graph.hosts)  # the ssh session from 192.0.2.10
    per_machine = [sum(len(ns.sockets) for ns in snapshot.namespaces) for snapshot in snapshots]
    assert all(abs(count - sockets) <= sockets // 20 for count in per_machine)
    assert abs(sum(per_machine) - sockets * machines) <= machines * 2


def test_synthetic_fleet_is_deterministic_and_writes_loadable_files(tmp_path):
    assert json.dumps(make_fleet(3, 100, seed=5)) == json.dumps(make_fleet(3, 100, seed=5))
    paths = write_fleet(tmp_path, 3, 100, seed=5)
    group = load_group([tmp_path])
    assert [snapshot.name for snapshot in group.snapshots] == ["m0000", "m0001", "m0002"]
    assert len(paths) == 3 and group.warnings == ()

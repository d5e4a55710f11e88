"""The stitch at scale (docs/scale.md): compact socket records and the sharded simulation both give
the flows of the plain, whole-fleet stitch, on a synthetic fleet small enough for CI."""

from __future__ import annotations

import pytest

from benchmarks.shards import flow_counts, sharded_stitch
from benchmarks.synth import make_fleet
from netviz.snapshot import Socket, parse_snapshot
from netviz.snapshot import parse as parse_module
from netviz.stitch import stitch


@pytest.fixture(scope="module")
def documents():
    return make_fleet(machines=50, sockets_per_machine=200, seed=5)


@pytest.fixture(scope="module")
def snapshots(documents):
    return [parse_snapshot(document, document["host"]["hostname"]) for document in documents]


def test_records_of_the_fast_path_stitch_like_the_reference_readers(documents, snapshots, monkeypatch):
    """Every socket read field by field (Socket.__init__, one int object per number) gives the
    same graph, byte for byte, as the fast path's slotted records with shared port numbers."""
    monkeypatch.setattr(parse_module, "_plain_socket", lambda value, netns, strings: None)
    reference = [parse_snapshot(document, document["host"]["hostname"]) for document in documents]
    assert reference == snapshots
    for group_by, show_external in (("process", False), ("pid", True)):
        expected = stitch(reference, group_by=group_by, show_external=show_external).to_json_dict()
        assert stitch(snapshots, group_by=group_by, show_external=show_external).to_json_dict() == expected


def test_sockets_are_compact_records():
    assert not hasattr(Socket("tcp", 1, "10.0.0.1", 1, "10.0.0.2", 2, "ESTABLISHED", 0, 4026531840), "__dict__")


@pytest.fixture(scope="module")
def whole(snapshots):
    return flow_counts(stitch(snapshots))


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_shards_stitched_apart_then_joined_at_their_boundary_give_the_fleet_flows(snapshots, whole, shards):
    flows, figures = sharded_stitch(snapshots, shards)
    assert flows == whole
    assert sum(flows.values()) == sum(whole.values()) > 0
    assert figures["boundary_sockets"] < figures["sockets"]

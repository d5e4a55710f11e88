"""Properties of the stitch: the result never depends on the order of snapshots, namespaces or
sockets, and every connection is accounted for exactly once (drawn, outside or unresolved)."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synth import make_fleet
from netviz.render.json import render_json
from netviz.snapshot import parse_snapshot
from netviz.stitch import stitch


def shuffled(snapshots, rng: random.Random):
    result = []
    for snapshot in snapshots:
        namespaces = []
        for namespace in snapshot.namespaces:
            sockets = list(namespace.sockets)
            rng.shuffle(sockets)
            namespaces.append(dataclasses.replace(namespace, sockets=tuple(sockets)))
        rng.shuffle(namespaces)
        processes = list(snapshot.processes)
        rng.shuffle(processes)
        result.append(dataclasses.replace(snapshot, namespaces=tuple(namespaces), processes=tuple(processes)))
    rng.shuffle(result)
    return result


def fleet(machines: int, sockets: int, seed: int, clones: int):
    documents = make_fleet(machines, sockets, seed)
    snapshots = [parse_snapshot(document, document["host"]["hostname"]) for document in documents]
    # clones: copies of a machine under another name (same addresses, same tuples): never guessed
    for number in range(clones):
        snapshots.append(dataclasses.replace(snapshots[number % len(snapshots)], name=f"clone{number}"))
    return snapshots


@settings(max_examples=12, deadline=None)
@given(
    machines=st.integers(1, 6),
    sockets=st.integers(20, 120),
    seed=st.integers(0, 10_000),
    clones=st.integers(0, 2),
    order=st.integers(0, 10_000),
)
def test_order_does_not_matter_and_every_connection_is_counted_once(machines, sockets, seed, clones, order):
    snapshots = fleet(machines, sockets, seed, clones)
    expected = render_json(stitch(snapshots, show_external=True))
    assert render_json(stitch(shuffled(snapshots, random.Random(order)), show_external=True)) == expected

    graph = stitch(snapshots)
    drawn_ends = 0
    for flow in graph.flows:
        # a flow to a listener (UDP, inferred) has one connected socket; a socket pair has two
        drawn_ends += flow.count if (flow.proto == "udp" or flow.inferred) else 2 * flow.count
    connected = sum(
        1
        for snapshot in snapshots
        for namespace in snapshot.namespaces
        for socket in namespace.sockets
        if socket.proto in ("tcp", "tcp6", "udp", "udp6") and socket.remote_port and socket.state != "LISTEN"
    )
    assert drawn_ends + graph.outside + graph.unresolved == connected

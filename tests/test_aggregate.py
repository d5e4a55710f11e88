"""Aggregation for DOT/SVG/PNG: what is folded, that no connection is lost, what is said, and
that JSON keeps every node. Graphviz runs for real where a layout is checked."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

import pytest
from snapbuilder import Machine

from benchmarks.synth import make_fleet
from netviz import aggregate
from netviz.aggregate import drawn_edges, fold, static_view
from netviz.render import image, render
from netviz.render.dot import render_dot
from netviz.snapshot import parse_snapshot
from netviz.stitch import stitch

needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None or shutil.which("sfdp") is None,
    reason="Graphviz is not installed (apt-get install graphviz)",
)


def synthetic(machines: int, sockets: int = 200, group_by: str = "process"):
    documents = make_fleet(machines, sockets, seed=1)
    return stitch([parse_snapshot(doc, source=f"synthetic {i}") for i, doc in enumerate(documents)], group_by=group_by)


def machine_traffic(graph) -> Counter:
    """Connections per (client machine, server machine, service): what folding must preserve."""
    by_id = graph.nodes_by_id()
    totals: Counter = Counter()
    for flow in graph.flows:
        totals[(by_id[flow.client].host, by_id[flow.server].host, flow.proto, flow.server_port)] += flow.count
    return totals


def test_fold_keeps_the_busiest_per_machine_and_loses_no_connection():
    graph = synthetic(6, 120)
    folded = fold(graph, 2)
    per_machine = Counter(node.host for node in folded.nodes)
    assert set(per_machine.values()) == {3}  # two busiest plus one machine node
    busy = graph.connections_by_node()
    for host in {node.host for node in graph.nodes}:
        ranked = sorted((n for n in graph.nodes if n.host == host), key=lambda n: (-busy[n.id], graph.nodes.index(n)))
        kept = {n.comm for n in folded.nodes if n.host == host and not n.folded}
        assert kept == {n.comm for n in ranked[:2]}
        machine = next(n for n in folded.nodes if n.host == host and n.folded)
        assert list(machine.folded) == [n.comm for n in ranked[2:]]  # busiest first
        assert machine.kind == "host" and machine.sockets == sum(n.sockets for n in ranked[2:])
    assert machine_traffic(folded) == machine_traffic(graph)
    assert sum(f.count for f in folded.flows) == sum(f.count for f in graph.flows)
    assert "the 2 busiest per machine kept" in folded.notes[-1]


def test_ingress_survives_folding():
    graph = synthetic(3, 60)
    folded = fold(graph, 0)
    assert all(any(item.kind == "packet" for item in node.ingress) for node in folded.nodes)  # dhclient's


def test_small_graphs_are_drawn_in_full():
    graph = synthetic(3, 60)
    view = static_view(graph)
    assert view.graph is graph and view.notice is None and not view.aggregated
    assert render(graph, "dot") == render(graph, "dot", detail="full")
    assert static_view(graph, "aggregate").aggregated


def test_large_graphs_fold_within_the_budgets_and_say_so():
    graph = synthetic(60)
    assert aggregate.needs_aggregation(graph)
    view = static_view(graph, "aggregate")
    assert view.aggregated
    assert len(view.graph.nodes) <= aggregate.NODE_BUDGET and drawn_edges(view.graph) <= aggregate.EDGE_BUDGET
    notices: list[str] = []
    dot = render(graph, "dot", on_notice=notices.append, detail="aggregate").decode()
    assert notices == [view.notice] and "folded into 60 machine nodes" in view.notice
    assert "aggregated for a static layout" in dot and "folded:" in dot
    assert dot.count(" -> ") == drawn_edges(view.graph)
    full = render(graph, "dot", detail="full").decode()
    assert full.count(" -> ") == len(graph.flows) and "aggregated" not in full
    # the full detail always stays in JSON
    assert len(json.loads(render(graph, "json"))["nodes"]) == len(graph.nodes)


def test_a_fleet_too_dense_for_the_budget_gets_the_fewest_edges_then_the_most_detail():
    graph = synthetic(200, 80)
    view = static_view(graph, "aggregate")
    edges = {kept: drawn_edges(fold(graph, kept)) for kept in range(aggregate.MOST_KEPT_PER_MACHINE + 1)}
    assert min(edges.values()) > aggregate.EDGE_BUDGET  # no level fits
    assert drawn_edges(view.graph) == min(edges.values())
    # keeping each machine's busiest process (its app client) apart costs no edge here
    assert edges[1] == edges[0] and view.kept_per_machine == 1
    assert len(view.graph.nodes) == 400 and {n.comm for n in view.graph.nodes if not n.folded} == {"app"}
    assert machine_traffic(view.graph) == machine_traffic(graph)


def test_unknown_detail_is_refused():
    with pytest.raises(ValueError):
        static_view(synthetic(2, 40), "some")


def test_layout_engine_follows_the_measured_limits():
    assert image.layout_engine(180, 820) == "dot"  # 0.66 s measured
    assert image.layout_engine(40, 1000) == "sfdp"  # dense machine graph: dot over 2 minutes
    assert image.layout_engine(360, 2680) == "sfdp"  # dot 10.6 s
    assert image.layout_engine(1200, 100) == "sfdp"
    assert image.layout_engine(60, 400) == "dot"


@needs_graphviz
def test_aggregated_dot_with_hostile_names_is_valid_for_graphviz():
    machines = []
    for index in range(2):
        machine = Machine(f"h{index}", f"10.0.0.{index + 1}")
        for pid, comm in enumerate(['"]; evil -> x [', "\\G<b>", "ok", "a\nb"], start=10):
            machine.process(pid, comm)
            machine.listen(pid, "tcp", f"0.0.0.0:{pid + 1000}")
        machines.append(machine)
    port = 40000
    for pid in range(10, 14):
        for server_pid in range(10, 14):
            port += 1
            machines[0].connect(pid, "tcp", f"10.0.0.1:{port}", f"10.0.0.2:{server_pid + 1000}")
            machines[1].connect(server_pid, "tcp", f"10.0.0.2:{server_pid + 1000}", f"10.0.0.1:{port}")
    graph = stitch([machine.build() for machine in machines])
    folded = fold(graph, 1)
    source = render_dot(folded, bundle_edges=True)
    assert "evil -> x" not in source
    result = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert b"folded" in result.stdout and b"aggregated for a static layout" in result.stdout


@needs_graphviz
def test_default_svg_of_a_large_fleet_is_the_machine_overview():
    graph = synthetic(60)
    notices: list[str] = []
    svg = render(graph, "svg", on_notice=notices.append, timeout=120)
    assert svg.lstrip().startswith(b"<?xml") or b"<svg" in svg[:400]
    assert any(notice.startswith("overview for a static layout") for notice in notices)
    assert svg.count(b'class="node"') == 60 + 1  # one per machine, and the legend
    assert b'class="cluster"' not in svg  # the node is the machine: no box around it


def test_flows_that_become_one_add_up():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    b.process(5, "postgres")
    b.listen(5, "tcp", "0.0.0.0:5432")
    port = 40000
    for pid, connections in ((11, 1), (12, 2), (13, 3)):
        a.process(pid, f"client{pid}", user="app")
        for _ in range(connections):
            port += 1
            a.connect(pid, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
            b.connect(5, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
    graph = stitch([a.build(), b.build()])
    assert len(graph.flows) == 3
    folded = fold(graph, 1)  # client13 (3 connections) kept; client11 and client12 folded
    counts = sorted((folded.node(flow.client).comm, flow.count) for flow in folded.flows)
    assert counts == [("a", 3), ("client13", 3)]
    machine = next(node for node in folded.nodes if node.folded)
    assert machine.folded == ("client12", "client11") and machine.users == ("app",)
    merged = next(flow for flow in folded.flows if folded.node(flow.client).folded)
    assert merged.client_pids == (11, 12) and merged.server_pids == (5,)


def test_thousands_of_edges_lose_their_labels_not_their_services():
    graph = synthetic(200, 80)
    view = static_view(graph, "aggregate")
    assert drawn_edges(view.graph) > aggregate.EDGE_LABEL_LIMIT
    dot = render(graph, "dot", detail="aggregate").decode()
    edges = [line for line in dot.splitlines() if " -> " in line]
    assert edges and not any("label=" in line for line in edges)
    assert all('tooltip="' in line for line in edges)
    assert "labels left out" in view.notice
    smaller = static_view(synthetic(60), "aggregate")
    assert drawn_edges(smaller.graph) <= aggregate.EDGE_LABEL_LIMIT or "labels left out" in smaller.notice


def test_past_eight_machines_auto_draws_one_node_per_machine_and_says_what_it_left_out():
    graph = synthetic(9, 60)
    assert len(graph.hosts) > aggregate.OVERVIEW_MACHINE_LIMIT
    view = static_view(graph)
    hosts = {node.host for node in view.graph.nodes if node.kind == "host"}
    assert hosts == {host.name for host in graph.hosts}
    assert all(node.kind in ("host", "outside") for node in view.graph.nodes)
    assert all(flow.client != flow.server for flow in view.graph.flows)  # inside a machine: in its node
    between = Counter({key: count for key, count in machine_traffic(graph).items() if key[0] != key[1]})
    assert machine_traffic(view.graph) == between  # every pair drawn here (fewer than the limit)
    inside = sum(count for key, count in machine_traffic(graph).items() if key[0] == key[1])
    assert f"{inside} connections inside machines not drawn" in view.notice
    dot = render(graph, "dot").decode()
    assert "subgraph cluster_" not in dot and dot.count(" -> ") == drawn_edges(view.graph)
    assert render(graph, "dot", detail="full").decode().count(" -> ") == len(graph.flows)


def test_past_sixty_processes_auto_draws_the_overview_and_below_it_everything():
    graph = synthetic(4, 300)
    processes = sum(1 for node in graph.nodes if node.kind == "process")
    view = static_view(graph)
    assert (processes > aggregate.OVERVIEW_PROCESS_LIMIT) == view.aggregated
    small = synthetic(3, 60)
    assert sum(1 for node in small.nodes if node.kind == "process") <= aggregate.OVERVIEW_PROCESS_LIMIT
    assert static_view(small).graph is small


def test_the_overview_draws_the_busiest_machine_pairs_only(monkeypatch):
    graph = synthetic(12, 200)
    pairs = {(c, s) for (c, s, _, _) in machine_traffic(graph) if c != s}
    monkeypatch.setattr(aggregate, "OVERVIEW_EDGE_LIMIT", 10)
    view = static_view(graph)
    drawn = machine_traffic(view.graph)
    assert len({(c, s) for (c, s, _, _) in drawn}) == 10 < len(pairs)
    totals = Counter()
    for (client, server, _, _), count in machine_traffic(graph).items():
        if client != server:
            totals[(client, server)] += count
    threshold = sorted(totals.values(), reverse=True)[9]
    assert all(totals[(c, s)] >= threshold for (c, s, _, _) in drawn)
    assert f"the 10 busiest of {len(pairs)} machine pairs drawn" in view.notice


@pytest.mark.parametrize("machines, sockets", [(60, 200), (200, 80)])
def test_aggregate_builds_only_the_fold_it_draws(monkeypatch, machines, sockets):
    """Folding is the costly part: each level is only counted, and the one chosen is the only one
    built, whether a level fits (60 machines) or none does (200 machines)."""
    graph = synthetic(machines, sockets)
    levels: list[int] = []
    real_fold = aggregate.fold

    def recording_fold(graph, kept):
        levels.append(kept)
        return real_fold(graph, kept)

    monkeypatch.setattr(aggregate, "fold", recording_fold)
    view = aggregate.aggregate(graph)
    assert levels == [view.kept_per_machine]


@pytest.mark.parametrize("machines, sockets", [(3, 60), (8, 120), (60, 200)])
def test_counting_a_fold_gives_the_nodes_and_edges_that_building_it_does(machines, sockets):
    graph = synthetic(machines, sockets)
    ranked = aggregate._ranked_by_host(graph)
    for kept in range(aggregate.MOST_KEPT_PER_MACHINE + 2):
        built = fold(graph, kept)
        assert aggregate._folded_size(graph, ranked, kept) == (len(built.nodes), drawn_edges(built))

"""Aggregation for the static formats, so that a large group lays out in seconds and reads as a
map rather than a hairball.

`--detail auto` draws everything up to OVERVIEW_PROCESS_LIMIT process nodes and
OVERVIEW_MACHINE_LIMIT machines, and past that the machine-level overview (`overview`): one node
per machine, flows summed between machines. `--detail aggregate` keeps on each machine its
busiest nodes (by connections) and folds the others into one node per machine; the number kept
per machine is the largest that fits NODE_BUDGET nodes and EDGE_BUDGET drawn edges (parallel
flows between two nodes are drawn as one edge in an aggregated view); when none fits, the
folding with the fewest edges. Graphviz `dot` lays out 500 nodes in 0.5 s but 2,000 in 15.6 s;
benchmarks/bench_render.py prints the figures. JSON and HTML always keep the full detail.

Pure: no I/O, nothing printed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from netviz.graph import KIND_HOST, KIND_OUTSIDE, Flow, FlowGraph, Node, renumbered

DETAIL_CHOICES = ("auto", "full", "aggregate")

# Measured with benchmarks/bench_render.py (see its docstring for the figures behind them).
FULL_NODE_LIMIT = 500
FULL_EDGE_LIMIT = 1000
NODE_BUDGET = 600
EDGE_BUDGET = 3000
MOST_KEPT_PER_MACHINE = 3
# Past this many process nodes or machines, `auto` draws the machine-level overview instead: one
# node per machine, flows summed between machines. Sixty boxes of process detail in eight machine
# boxes is about what a page shows legibly; past it edges and labels cross whatever is between.
OVERVIEW_PROCESS_LIMIT = 60
OVERVIEW_MACHINE_LIMIT = 8
# The overview draws the busiest machine pairs only (the table, JSON and HTML list every flow):
# a dense fleet (each of 200 machines talking to 24 others) has thousands, a hairball whatever
# the layout.
OVERVIEW_EDGE_LIMIT = 250
# Past this many drawn edges their labels are left out (kept as tooltips): thousands of labels
# cover the drawing, and the table, JSON and HTML list every service.
EDGE_LABEL_LIMIT = 1000


@dataclass(frozen=True)
class StaticView:
    """The graph a static format draws, and what was folded to get it (None: full detail)."""

    graph: FlowGraph
    notice: str | None = None
    kept_per_machine: int | None = None  # None: full detail; 0 for the machine-level overview

    @property
    def aggregated(self) -> bool:
        return self.kept_per_machine is not None


def drawn_edges(graph: FlowGraph) -> int:
    """Edges an aggregated DOT draws: one per ordered pair of nodes."""
    return len({(flow.client, flow.server) for flow in graph.flows})


def needs_aggregation(graph: FlowGraph) -> bool:
    """Is the full graph too large for a static layout done in seconds?"""
    return len(graph.nodes) > FULL_NODE_LIMIT or len(graph.flows) > FULL_EDGE_LIMIT


def fold(graph: FlowGraph, kept_per_machine: int) -> FlowGraph:
    """Keep on each machine its `kept_per_machine` busiest nodes (connections touching them; ties
    by node order) and fold the other nodes of the machine into one machine node. Outside nodes
    stay. Flows are re-attached to the nodes that stand for their ends and merged when they
    become the same flow; the counts add up, so no connection disappears."""
    nodes, flows = _folded(graph, kept_per_machine, fold_single=False)
    edges = len({(flow.client, flow.server) for flow in flows})
    notes = list(graph.notes) + [_note(graph, nodes, kept_per_machine, edges)]
    return renumbered(graph, list(graph.hosts), nodes, flows, notes)


def by_machine(graph: FlowGraph) -> FlowGraph:
    """The graph with one node per machine (plus outside nodes), as `--group-by host` draws it:
    used when filters had to see processes before the machines were grouped."""
    nodes, flows = _folded(graph, 0, fold_single=True)
    nodes = [dataclasses.replace(node, folded=()) for node in nodes]
    view = renumbered(graph, list(graph.hosts), nodes, flows, list(graph.notes))
    view.group_by = "host"
    return view


def _ranked_by_host(graph: FlowGraph) -> list[tuple[str, list[Node]]]:
    """Each machine's nodes, busiest first (connections touching them; ties by node order)."""
    busy = graph.connections_by_node()
    by_host: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.kind != KIND_OUTSIDE:
            by_host.setdefault(node.host, []).append(node)
    order = {node.id: index for index, node in enumerate(graph.nodes)}
    return [(host, sorted(members, key=lambda node: (-busy.get(node.id, 0), order[node.id])))
            for host, members in by_host.items()]


def _folded_members(ranked: list[tuple[str, list[Node]]], kept_per_machine: int, *,
                    fold_single: bool) -> list[tuple[str, list[Node]]]:
    """The nodes each machine folds: all but its `kept_per_machine` busiest, when that is at
    least two (folding one node only loses its detail) or `fold_single`."""
    folding = []
    for host, members in ranked:
        rest = members[kept_per_machine:]
        if rest and (len(rest) >= 2 or fold_single):
            folding.append((host, rest))
    return folding


def _folded_size(graph: FlowGraph, ranked: list[tuple[str, list[Node]]], kept_per_machine: int) -> tuple[int, int]:
    """The nodes and drawn edges of `fold(graph, kept_per_machine)`, counted without building it."""
    stands_for: dict[str, tuple[str, str]] = {}
    folded_away = 0
    for host, rest in _folded_members(ranked, kept_per_machine, fold_single=False):
        folded_away += len(rest) - 1
        for node in rest:
            stands_for[node.id] = ("folded", host)  # never equal to a node id (a string)
    edges = {(stands_for.get(flow.client, flow.client), stands_for.get(flow.server, flow.server))
             for flow in graph.flows}
    return len(graph.nodes) - folded_away, len(edges)


def _folded(graph: FlowGraph, kept_per_machine: int, *, fold_single: bool) -> tuple[list[Node], list[Flow]]:
    stands_for: dict[str, str] = {node.id: node.id for node in graph.nodes}
    folded_nodes: dict[str, Node] = {}
    for host, rest in _folded_members(_ranked_by_host(graph), kept_per_machine, fold_single=fold_single):
        machine = _machine_node(f"{host}\0folded", host, rest)
        folded_nodes[machine.id] = machine
        for node in rest:
            stands_for[node.id] = machine.id
    nodes = _ordered_nodes(graph, stands_for, folded_nodes)
    flows = _merged_flows(graph, stands_for, {node.id: index for index, node in enumerate(nodes)})
    return nodes, flows


def _machine_node(node_id: str, host: str, members: list[Node]) -> Node:
    """One node standing for `members` (busiest first), all on machine `host`."""
    names: list[str] = []
    for member in members:
        names.extend(member.folded or (member.comm,))
    return Node(
        id=node_id,
        host=host,
        kind=KIND_HOST,
        comm=host,
        users=tuple(sorted({user for member in members for user in member.users})),
        listening=tuple(sorted({item for member in members for item in member.listening})),
        ingress=tuple(sorted({item for member in members for item in member.ingress})),
        sockets=sum(member.sockets for member in members),
        folded=tuple(names),
    )


def _ordered_nodes(graph: FlowGraph, stands_for: dict[str, str], folded: dict[str, Node]) -> list[Node]:
    """Kept nodes in their order, each machine's folded node where its first member was."""
    nodes: list[Node] = []
    placed: set[str] = set()
    for node in graph.nodes:
        target = stands_for[node.id]
        if target in placed:
            continue
        placed.add(target)
        nodes.append(folded.get(target, node))
    return nodes


def _merged_flows(graph: FlowGraph, stands_for: dict[str, str], rank: dict[str, int]) -> list[Flow]:
    merged: dict[tuple, Flow] = {}
    for flow in graph.flows:
        client, server = stands_for[flow.client], stands_for[flow.server]
        key = (client, server, flow.proto, flow.server_port, flow.directed, flow.inferred, flow.via)
        seen = merged.get(key)
        if seen is None:
            merged[key] = Flow(
                id=flow.id, client=client, server=server, proto=flow.proto, server_port=flow.server_port,
                server_address=flow.server_address, count=flow.count, directed=flow.directed,
                inferred=flow.inferred, via=flow.via, client_pids=flow.client_pids, server_pids=flow.server_pids,
                window=flow.window, dialled=flow.dialled, traffic=flow.traffic,
            )
            continue
        seen.count += flow.count
        if flow.window is not None:
            seen.window = flow.window.merged(seen.window)
        if flow.traffic is not None:
            seen.traffic = flow.traffic.merged(seen.traffic)
        seen.server_address = min(seen.server_address, flow.server_address)
        seen.client_pids = tuple(sorted(set(seen.client_pids) | set(flow.client_pids)))
        seen.server_pids = tuple(sorted(set(seen.server_pids) | set(flow.server_pids)))
        seen.dialled = tuple(sorted(set(seen.dialled) | set(flow.dialled)))
    return sorted(
        merged.values(),
        key=lambda flow: (rank[flow.client], rank[flow.server], flow.proto, flow.server_port,
                          not flow.directed, flow.inferred, flow.via or ""),
    )


def _note(graph: FlowGraph, nodes: list[Node], kept: int, edges: int) -> str:
    folded = sum(len(node.folded) for node in nodes)
    machines = sum(1 for node in nodes if node.folded)
    if folded:
        what = f"the {kept} busiest per machine kept" if kept else "one node per machine"
        done = f"{folded} of {len(graph.nodes)} nodes folded into {machines} machine nodes ({what}); "
    else:
        done = ""
    unlabelled = f" ({edges} edges: labels left out, see --format table)" if edges > EDGE_LABEL_LIMIT else ""
    return (
        f"aggregated for a static layout: {done}parallel flows between two nodes drawn as one edge{unlabelled}; "
        "--detail full draws everything"
    )


def aggregate(graph: FlowGraph) -> StaticView:
    """The most detailed folding that fits the budgets, tried level by level from the most
    detailed and stopping at the first that fits. When none fits the edge budget (a dense
    fleet: every machine talks to dozens of others), the one with the fewest edges among those
    within the node budget, the more detailed among equals (keeping a machine's busiest client
    apart often adds no edge at all). Each level is only counted (nodes, distinct edges); the
    one chosen is the only one built."""
    ranked = _ranked_by_host(graph)
    best: tuple[int, int, int] | None = None  # (kept, nodes, edges)
    for kept in range(MOST_KEPT_PER_MACHINE, -1, -1):
        nodes, edges = _folded_size(graph, ranked, kept)
        if nodes <= NODE_BUDGET and edges <= EDGE_BUDGET:
            best = (kept, nodes, edges)
            break
        # strictly fewer edges wins, so that among equals the more detailed (earlier) stays
        if best is None or (nodes <= NODE_BUDGET and (edges < best[2] or best[1] > NODE_BUDGET)):
            best = (kept, nodes, edges)
    assert best is not None
    view = fold(graph, best[0])
    return StaticView(view, view.notes[-1], best[0])


def needs_overview(graph: FlowGraph) -> bool:
    """Too many processes or machines for a legible picture of processes?"""
    processes = sum(1 for node in graph.nodes if node.kind != KIND_OUTSIDE and node.kind != KIND_HOST)
    return processes > OVERVIEW_PROCESS_LIMIT or len(graph.hosts) > OVERVIEW_MACHINE_LIMIT


def overview(graph: FlowGraph) -> StaticView:
    """One node per machine (listing its processes, busiest first), flows summed between
    machines and drawn one edge per pair labelled with its busiest services; the
    OVERVIEW_EDGE_LIMIT busiest pairs only, and no flow inside a machine (the machine's node
    lists its processes). What was left out is said in the note."""
    nodes, flows = _folded(graph, 0, fold_single=True)
    between = [flow for flow in flows if flow.client != flow.server]
    pairs: dict[tuple[str, str], int] = {}
    for flow in between:
        pairs[(flow.client, flow.server)] = pairs.get((flow.client, flow.server), 0) + flow.count
    busiest = set(sorted(pairs, key=lambda pair: (-pairs[pair], pair))[:OVERVIEW_EDGE_LIMIT])
    drawn = [flow for flow in between if (flow.client, flow.server) in busiest]
    inside = sum(flow.count for flow in flows if flow.client == flow.server)
    left = sum(count for pair, count in pairs.items() if pair not in busiest)
    machines = sum(1 for node in nodes if node.kind == KIND_HOST)
    note = (f"overview for a static layout: {len(graph.nodes)} nodes drawn as {machines} machines, parallel flows "
            f"between two machines as one edge")
    if len(pairs) > len(busiest):
        note += f"; the {len(busiest)} busiest of {len(pairs)} machine pairs drawn ({left} connections between the others not drawn)"
    if inside:
        note += f"; {inside} connections inside machines not drawn"
    note += "; --detail aggregate keeps the busiest processes, --detail full draws everything"
    view = renumbered(graph, list(graph.hosts), nodes, drawn, list(graph.notes) + [note])
    return StaticView(view, note, 0)


def static_view(graph: FlowGraph, detail: str = "auto") -> StaticView:
    """What DOT, SVG and PNG draw for `detail`: `full` (everything), `aggregate` (always fold
    each machine's quieter processes), or `auto`: everything up to OVERVIEW_PROCESS_LIMIT
    process nodes and OVERVIEW_MACHINE_LIMIT machines, the machine-level overview past that."""
    if detail not in DETAIL_CHOICES:
        raise ValueError(f"unknown detail {detail!r}; use one of {', '.join(DETAIL_CHOICES)}")
    if detail == "aggregate":
        return aggregate(graph)
    if detail == "full" or graph.group_by == "host" or not needs_overview(graph):
        return StaticView(graph)
    return overview(graph)

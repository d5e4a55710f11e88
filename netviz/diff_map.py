"""A diff as a map (`netviz diff --format dot|svg|png|pdf|html`): the union of two runs' graphs,
every machine, node and flow marked added, removed, unchanged or not compared.

Pure: the two stitched graphs (natural keys set) and what each run captured in, one FlowGraph
out, for the renderers to draw the marks (netviz.render.marks, the HTML page). The marks follow
the rules of netviz.diff.compare: a machine not captured in A or in B (failed, interrupted,
drawn from a stale snapshot) is marked unreachable, and its nodes and flows are not compared,
never drawn as removed: a machine that is down has not closed all its connections.
"""

from __future__ import annotations

from typing import Collection, Mapping, Optional

from netviz.graph import (
    CHANGE_ADDED,
    CHANGE_NOT_COMPARED,
    CHANGE_REMOVED,
    CHANGE_UNCHANGED,
    CHANGE_UNREACHABLE,
    FlowGraph,
)
from netviz.graph_union import union


def diff_graph(a: FlowGraph, b: FlowGraph, *, machines_a: Collection[str], machines_b: Collection[str],
               down_a: Collection[str] = (), down_b: Collection[str] = (),
               categories: Optional[Mapping[str, Optional[str]]] = None, title: str = "") -> FlowGraph:
    """The union of `a` (run A) and `b` (run B) with change marks.

    `machines_a`/`machines_b`: the machines each run included (captured or not); `down_a`/`down_b`:
    those it did not capture; `categories`: why a machine failed (refused, timeout), for its label.
    """
    joined = union([a, b])
    graph = joined.graph
    down = set(down_a) | set(down_b)
    categories = categories or {}
    for host in graph.hosts:
        if host.name in down:
            runs = " and ".join(run for run, failed in (("A", down_a), ("B", down_b)) if host.name in failed)
            why = categories.get(host.name)
            host.change = CHANGE_UNREACHABLE
            host.change_detail = f"unreachable in {runs}" + (f" ({why})" if why else "") + ": not compared"
        elif host.name not in machines_a:
            host.change, host.change_detail = CHANGE_ADDED, "added in B"
        elif host.name not in machines_b:
            host.change, host.change_detail = CHANGE_REMOVED, "removed in B"
    for node in graph.nodes:
        node.change = _mark(joined.nodes_in[node.key], node.host in down)
    before = joined.flows_by_graph[0]
    nodes = graph.nodes_by_id()
    counted = {CHANGE_ADDED: 0, CHANGE_REMOVED: 0, CHANGE_NOT_COMPARED: 0}
    for flow in graph.flows:
        skipped = nodes[flow.client].host in down or nodes[flow.server].host in down
        flow.change = _mark(joined.flows_in[flow.key], skipped)
        if flow.change == CHANGE_UNCHANGED and before[flow.key].count != flow.count:
            flow.count_before = before[flow.key].count
        if flow.change in counted:
            counted[flow.change] += 1
    summary = (f"flows: {counted[CHANGE_ADDED]} added, {counted[CHANGE_REMOVED]} removed"
               + (f", {counted[CHANGE_NOT_COMPARED]} not compared (a machine unreachable)"
                  if counted[CHANGE_NOT_COMPARED] else ""))
    drawn = {host.name for host in graph.hosts}
    missing = [f"{name}: unreachable in {'A and B' if name in down_a and name in down_b else 'A' if name in down_a else 'B'}"
               f"{' (' + str(categories[name]) + ')' if categories.get(name) else ''}, no snapshot to draw"
               for name in sorted(down - drawn)]
    graph.notes = [line for line in (title, summary, *missing) if line]
    return graph


def _mark(seen_in: set[int], skipped: bool) -> str:
    if skipped:
        return CHANGE_NOT_COMPARED
    if seen_in == {0, 1}:
        return CHANGE_UNCHANGED
    return CHANGE_ADDED if seen_in == {1} else CHANGE_REMOVED

"""`netviz stitch --since 7d`: the union of what the cached runs of a period saw, each flow with
when it was first and last seen and in how many of the period's runs, so that a nightly job
shows up in a weekly map (drawn dashed, "seen in 3 of 1,008 runs").

The history store (netviz.history) holds each run's flows by natural key, but only grouped by
process, unfiltered and without what a map draws of a process (users, units, listeners'
addresses, namespaces): so each cached run of the period is stitched here with the command's
own options, and the graphs joined by natural key (netviz.graph_union), the newest run's facts
winning. A flow of a machine drawn from a stale snapshot in a run (the machine failed) is not
counted as seen in that run: it was not seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

from netviz.cache import Run, default_cache_dir, list_runs, read_run, run_inputs, trusted_cache_dir
from netviz.errors import CacheError, NetvizError
from netviz.graph import FlowGraph, FlowPeriod, with_natural_keys
from netviz.graph_union import union
from netviz.options import StitchOptions


def period_runs(cache_root: Path, since: float) -> list[Run]:
    """The cache's complete runs started at or after `since` (Unix time), oldest first."""
    runs = []
    for path in list_runs(trusted_cache_dir(cache_root)):
        try:
            run = read_run(path)
        except NetvizError:
            continue  # a run being written or broken: `netviz history` says so; a period map skips it
        if run.started_at >= since:
            runs.append(run)
    return runs


def period_graph(runs: Sequence[Run], options: StitchOptions = StitchOptions(),
                 working: Optional[Callable[[str], object]] = None) -> tuple[FlowGraph, list[str], list[str]]:
    """Every run stitched with `options`, joined: (graph with each flow's FlowPeriod, warnings, notices)."""
    from netviz.filters import stitch_filtered
    from netviz.group import load_group

    graphs, warnings, notices = [], [], []
    for run in runs:
        inputs = run_inputs(run)
        if not inputs.files:
            warnings.append(f"run {run.run_id}: no snapshot; counted as a run that saw nothing")
            graphs.append(FlowGraph(group_by=options.group_by.value))
            continue
        group = load_group(list(inputs.files), names=inputs.names)
        warnings.extend(f"run {run.run_id}: {message}" for message in group.warnings)
        graph, found = stitch_filtered(group.snapshots, group_by=options.group_by.value,
                                       show_external=options.show_external, stale=inputs.stale,
                                       filters=options.knowing_groups(run.groups).filters)
        notices.extend(message for message in found if message not in notices)
        graphs.append(with_natural_keys(graph))
    joined = union(graphs)
    seen: dict[str, list[int]] = {}
    for index, graph in enumerate(graphs):
        stale = {host.name for host in graph.hosts if host.stale}
        hosts = {node.id: node.host for node in graph.nodes}
        for flow in graph.flows:
            if hosts[flow.client] not in stale and hosts[flow.server] not in stale:
                seen.setdefault(flow.key, []).append(index)
    some = 0
    for flow in joined.graph.flows:
        runs_seen = sorted(set(seen.get(flow.key, [])))
        if not runs_seen:  # only ever drawn from stale snapshots: when it was drawn, not seen
            runs_seen = sorted(joined.flows_in[flow.key])
        flow.period = FlowPeriod(runs[runs_seen[0]].started_at, runs[runs_seen[-1]].started_at, len(runs_seen),
                                 len(runs))
        some += not flow.period.always
    joined.graph.notes = [f"{len(runs)} runs, {_when(runs[0].started_at)} to {_when(runs[-1].started_at)}: "
                          f"{len(joined.graph.flows)} flows, {some} seen in only some runs (dashed)"] if runs else []
    notices[:0] = joined.graph.notes
    return joined.graph, warnings, notices


def _when(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def stitch_period(cache_dir: Optional[Path], since: float, fmt: Optional[str], *,
                  options: StitchOptions = StitchOptions(), render_options=None,
                  on_notice: Optional[Callable[[str], None]] = None):
    """The `stitch --since` job: the period's runs joined and rendered as `fmt` (None: not rendered).
    Returns a netviz.pipeline.StitchOutcome, as `stitch` does."""
    from netviz.pipeline import Drawn, StitchOutcome
    from netviz.render import RenderOptions, render

    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    runs = period_runs(root, since)
    if not runs:
        raise CacheError(f"no cached run in {root} started in the period asked (--since)")
    graph, warnings, notices = period_graph(runs, options)
    data = render(graph, fmt, on_notice=on_notice, options=render_options or RenderOptions()) if fmt else b""
    return StitchOutcome(Drawn(graph, data, warnings, notices), ())

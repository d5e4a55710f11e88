"""The two sides of `netviz diff`: what each argument names, and its graph and facts.

An argument names a recorded run of the cache's history (a run id, `latest`, a time, a cached
run's directory) or snapshots given by hand: a snapshot file, or a directory of snapshot files
(any directory without a run's manifest). A cached run's directory that the history does not
hold (another cache's run) is read like snapshots, with its manifest's machines and times.
Sides named by snapshots are stitched here, as the history stitches a run (grouped by process,
no filters), so the two sides compare by the same natural keys.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from netviz.cache import MANIFEST, Run, StitchInputs, find_run, read_run, run_inputs, stitch_inputs
from netviz.errors import NetvizError
from netviz.graph import FlowGraph
from netviz.history import RunFacts, facts_of, read_facts


@dataclass
class Side:
    """One side of a diff: a recorded run (`run_id`), or snapshots (`inputs`, with `run` when
    they are a cached run's)."""

    label: str
    run_id: Optional[str] = None
    run: Optional[Run] = None
    inputs: Optional[StitchInputs] = None

    @property
    def recorded(self) -> bool:
        return self.run_id is not None


def names_snapshots(spec: str) -> bool:
    """Does a diff argument name snapshots on disk (a file, or a directory), not a run or a time?"""
    path = Path(spec)
    return path.exists() and (path.is_file() or path.is_dir())


def snapshot_side(spec: str, held: Optional[set[str]] = None) -> Side:
    """A side named by a path: a cached run's directory (recorded when `held` has its id) or snapshots."""
    path = Path(spec)
    if path.is_dir() and (path / MANIFEST).is_file():
        run = read_run(path)
        if held is not None and run.run_id in held:
            return Side(spec, run_id=run.run_id, run=run)
        return Side(spec, run=run, inputs=run_inputs(run))
    return Side(spec, inputs=stitch_inputs([path]))


def graph_and_facts(side: Side, cache_root: Path,
                    connection: Optional[sqlite3.Connection] = None) -> tuple[FlowGraph, RunFacts]:
    """Stitch a side (grouped by process, no filters) and give its graph and its facts."""
    from netviz.group import load_group
    from netviz.stitch import stitch

    run = side.run
    inputs = side.inputs
    if inputs is None:
        if run is None:
            assert side.run_id is not None
            run = find_run(cache_root, side.run_id)
            if run is None:
                raise NetvizError(f"run {side.run_id} is in the history but no longer in the cache {cache_root}")
        inputs = run_inputs(run)
    group = load_group(list(inputs.files), names=inputs.names)
    graph = stitch(group.snapshots, group_by="process", stale=inputs.stale)
    if run is None:  # snapshots given by hand: a run of their own, as old as the oldest capture
        times = [snapshot.host.captured_at for snapshot in group.snapshots]
        run = Run(side.label, Path(side.label), min(times), max(times), ())
    facts = facts_of(run, graph)
    if side.recorded and connection is not None:  # the history's own record of the run's machines
        facts.machines = read_facts(connection, side.run_id).machines
    return graph, facts


def facts(side: Side, cache_root: Path, connection: Optional[sqlite3.Connection]) -> RunFacts:
    """A side's facts: read from the history when recorded, else stitched."""
    if side.recorded and connection is not None:
        assert side.run_id is not None
        return read_facts(connection, side.run_id)
    return graph_and_facts(side, cache_root, connection)[1]

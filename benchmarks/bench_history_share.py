"""What recording a run in the history adds to the run: on a synthetic fleet, the time to load and
stitch its snapshots and to draw its map (what `netviz run` does after collecting: its default
map is DOT on stdout), against the time to record the stitched graph in the history, and against
the old way (a second stitch of the run for the history).

    .venv/bin/python -m benchmarks.bench_history_share [MACHINES] [SOCKETS_PER_MACHINE] [RUNS]

Each of RUNS runs is recorded into one history (the tables grow as they do in a real cache); the
medians are printed, with the share of the run's load, stitch and drawing (and of load and stitch
alone). The run's collection over SSH is left out of the denominator, so the real share is
smaller still. Target (issue 13): recording adds under 5% to the run's time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from benchmarks.synth import write_fleet
from netviz.group import load_group
from netviz.history import facts_of, open_history, record
from netviz.render import render
from netviz.stitch import stitch

TARGET_SHARE = 0.05


def seconds(what, *args, **kwargs):
    started = time.perf_counter()
    result = what(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> int:
    machines, sockets, runs = (int(value) for value in (sys.argv[1:] + ["1000", "200", "5"])[:3])
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        paths = write_fleet(root / "fleet", machines, sockets, seed=1)
        connection = open_history(root)
        loads, stitches, draws, records, restitches = [], [], [], [], []
        for number in range(runs):
            group, load_s = seconds(load_group, paths)
            graph, stitch_s = seconds(stitch, group.snapshots, group_by="process")
            _, draw_s = seconds(render, graph, "dot")  # `netviz run`'s default map
            run = SimpleNamespace(run_id=f"run{number:04d}", started_at=1_800_000_000.0 + 600 * number,
                                  finished_at=1_800_000_005.0 + 600 * number, sequence=number,
                                  interrupted=False, window=None, hosts=[])
            started = time.perf_counter()
            record(connection, facts_of(run, graph))
            record_s = time.perf_counter() - started
            _, restitch_s = seconds(stitch, group.snapshots, group_by="process")  # what a second stitch cost
            loads.append(load_s), stitches.append(stitch_s), draws.append(draw_s)
            records.append(record_s), restitches.append(restitch_s)
        flows = connection.execute("SELECT avg(flows) FROM run").fetchone()[0]
        connection.close()
    load_s, stitch_s, draw_s = statistics.median(loads), statistics.median(stitches), statistics.median(draws)
    record_s, restitch_s = statistics.median(records), statistics.median(restitches)
    run_s = load_s + stitch_s + draw_s
    share, before = record_s / run_s, (record_s + restitch_s) / run_s
    print(f"{machines} machines x {sockets} sockets, {flows:.0f} flows a run, {runs} runs recorded "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); medians:")
    print(f"  load the snapshots     {load_s:8.2f} s")
    print(f"  stitch                 {stitch_s:8.2f} s")
    print(f"  draw the map (DOT)     {draw_s:8.2f} s")
    print(f"  record the graph       {record_s:8.2f} s  = {share:.1%} of load + stitch + draw (target {TARGET_SHARE:.0%}); "
          f"{record_s / (load_s + stitch_s):.1%} of load + stitch alone")
    print(f"  before: stitch again and record {restitch_s + record_s:.2f} s = {before:.1%} of load + stitch + draw")
    return 0 if share < TARGET_SHARE else 1


if __name__ == "__main__":
    sys.exit(main())

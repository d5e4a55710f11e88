"""The run history at scale: record N runs of M machines (F flows each), then time `diff` of two
runs, `history`, a flow's timeline, and the store's size per run.

    .venv/bin/python -m benchmarks.bench_history [RUNS] [MACHINES] [FLOWS_PER_MACHINE]

Runs are RunFacts made here (the store's cost; stitching a run is benchmarks/bench_stitch.py's),
with a few percent of flows changing between runs. 300 runs of 1,000 machines with 10 flows each
(10,000 flows a run) take about ten minutes and are measured directly; the target (10,000 runs
of 10,000 flows) does not fit in minutes: the figures printed for it are extrapolated from the
measured ones, and say so. Times are wall clock, the median of several reads; the load average
is printed (a busy machine inflates them).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from netviz.history import FlowSeen, MachineSeen, RunFacts, open_history, record, run_lines, timelines
from netviz.history_diff import diff_recorded


def facts(number: int, machines: int, flows: int, rng: random.Random) -> RunFacts:
    run = RunFacts(f"run{number:06d}", 1_800_000_000.0 + number * 600, 1_800_000_000.0 + number * 600 + 5,
                   sequence=number)
    for m in range(machines):
        name = f"m{m:04d}"
        run.machines[name] = MachineSeen(name, "ok" if rng.random() > 0.01 else "failed", None, False, run.started_at)
        for f in range(flows):
            if rng.random() < 0.03:  # a few flows come and go
                continue
            peer = f"m{(m + f + 1) % machines:04d}"
            client, server = f"{name}|host|app{f % 7}", f"{peer}|host|svc{f}"
            run.nodes[client] = (name, f"app{f % 7}", (1000 + f % 7,))
            run.nodes[server] = (peer, f"svc{f}", (2000 + f,))
            key = f"{client}>{server}|tcp|{5000 + f}|"
            run.flows[key] = FlowSeen(key, client, server, name, peer, "tcp", 5000 + f, None, rng.randint(1, 9))
            listener = f"{peer}|host|tcp|0.0.0.0|{5000 + f}"
            run.listeners.setdefault(listener, set()).add(server)
            run.listener_places[listener] = (peer, "tcp", "0.0.0.0", 5000 + f)
    return run


def timed(what, *args, repeat: int = 1):
    """The result and the median wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = what(*args)
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def main() -> None:
    runs, machines, flows = (int(value) for value in (sys.argv[1:] + ["200", "100", "10"])[:3])
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        connection = open_history(root)
        recording = []
        for number in range(runs):
            _, seconds = timed(record, connection, facts(number, machines, flows, rng))
            recording.append(seconds)
        per_run_flows = connection.execute("SELECT avg(flows) FROM run").fetchone()[0]
        last = f"run{runs - 1:06d}"
        _, diff_seconds = timed(diff_recorded, connection, "run000000", last, repeat=5)
        _, diff_next = timed(diff_recorded, connection, f"run{runs - 2:06d}", last, repeat=5)
        _, history_seconds = timed(run_lines, connection, repeat=5)
        _, timeline_seconds = timed(timelines, connection, "m0001|host|app3>", "flow", None, 1, repeat=5)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(root / "history.sqlite")
        connection.close()
    record_median = statistics.median(recording[len(recording) // 2:])  # once the tables are big
    print(f"measured: {runs} runs x {machines} machines, {per_run_flows:.0f} flows a run "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  record a run        {record_median * 1000:8.1f} ms  (median of the second half of the runs)")
    print(f"  diff: first, last   {diff_seconds * 1000:8.1f} ms")
    print(f"  diff: last two      {diff_next * 1000:8.1f} ms")
    print(f"  history (all runs)  {history_seconds * 1000:8.1f} ms")
    print(f"  a flow's timeline   {timeline_seconds * 1000:8.1f} ms")
    print(f"  store size          {size / runs / 1024:8.1f} KiB a run ({size / runs / per_run_flows:.0f} B a flow)")
    scale = 10_000 / per_run_flows
    print("extrapolated (not measured) to 10,000 runs of 10,000 flows: "
          f"record a run ~{record_median * scale:.2f} s (linear in flows a run), "
          f"history ~{history_seconds * 10_000 / runs:.2f} s and a timeline ~{timeline_seconds * 10_000 / runs:.2f} s "
          f"(linear in runs), store ~{size / runs / per_run_flows * 10_000 * 10_000 / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()

"""The run history at scale: record N runs of M machines (F flows each), then time `diff` of two
runs, `history`, a flow's timeline, and the store's size per run.

    .venv/bin/python -m benchmarks.bench_history [RUNS] [MACHINES] [FLOWS_PER_MACHINE]

Runs are RunFacts made here (the store's cost; stitching a run is benchmarks/bench_stitch.py's),
with a few percent of flows changing between runs. The target (10,000 runs of 1,000 machines,
10,000 flows each) does not fit in minutes: the figures printed for larger histories are
extrapolated from the measured ones, and say so.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

from netviz.diff import compare
from netviz.history import FlowSeen, MachineSeen, RunFacts, open_history, read_facts, record, run_lines, timelines


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


def timed(what, *args):
    started = time.perf_counter()
    result = what(*args)
    return result, time.perf_counter() - started


def main() -> None:
    runs, machines, flows = (int(value) for value in (sys.argv[1:] + ["200", "100", "10"])[:3])
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        connection = open_history(root)
        recording = 0.0
        for number in range(runs):
            _, seconds = timed(record, connection, facts(number, machines, flows, rng))
            recording += seconds
        per_run_flows = connection.execute("SELECT avg(flows) FROM run").fetchone()[0]
        _, diff_seconds = timed(lambda: compare(read_facts(connection, "run000000"),
                                                read_facts(connection, f"run{runs - 1:06d}")))
        _, history_seconds = timed(run_lines, connection)
        _, timeline_seconds = timed(timelines, connection, "m0001|host|app3>", "flow", None, 1)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(root / "history.sqlite")
        connection.close()
    print(f"measured: {runs} runs x {machines} machines, {per_run_flows:.0f} flows a run")
    print(f"  record a run        {recording / runs * 1000:8.1f} ms")
    print(f"  diff of two runs    {diff_seconds * 1000:8.1f} ms")
    print(f"  history (all runs)  {history_seconds * 1000:8.1f} ms")
    print(f"  a flow's timeline   {timeline_seconds * 1000:8.1f} ms")
    print(f"  store size          {size / runs / 1024:8.1f} KiB a run ({size / runs / per_run_flows:.0f} B a flow)")
    scale = 10_000 / per_run_flows
    print("extrapolated (linear in flows a run; not measured) to 10,000 runs of 10,000 flows:")
    print(f"  record a run ~{recording / runs * scale:.1f} s, diff ~{diff_seconds * scale:.2f} s, "
          f"history ~{history_seconds * 10_000 / runs:.2f} s (linear in runs), "
          f"store ~{size / runs / per_run_flows * 10_000 * 10_000 / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()

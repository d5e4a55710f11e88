"""The run history at its target size (issue 13): 10,000 runs of 1,000 machines with 10 flows each
(10,000 flows a run), then what a user and a collector do with it, timed.

    .venv/bin/python -m benchmarks.bench_history_big [RUNS] [MACHINES] [FLOWS_PER_MACHINE] [BASE]

BASE runs (default 50) are recorded as `netviz collect` records them (netviz.history.record, with
a few percent of flows changing between runs); every later run is a copy of one of them made in
SQL (its rows are the rows of a recorded run, under a new id, sequence and time), since recording
10,000 runs one at a time would take about an hour. A copy's new and gone counts are those of
its recorded run, whose predecessor its own predecessor copies (worked out as record does for the
copies of the first recorded run). Then, on the full store: a diff of the first and the last run and of the
last two, `netviz history`, a flow's and a node's timeline, recording three more runs, and
pruning the oldest run (`--keep`); and the store's size per run. Targets: each read under 1 s,
recording as flat as at the start.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_history import facts, timed
from netviz.history import _summarise, _transaction, forget, open_history, record, run_lines, timelines
from netviz.history_diff import diff_recorded

TARGET_SECONDS = 1.0
COPIES_PER_TRANSACTION = 200


def copy_runs(connection, base: int, runs: int) -> None:
    """Runs base..runs-1 as copies of the recorded runs 1..base (ids in recording order)."""
    copies = [0] * (base + 1)
    for number in range(base, runs):
        if (number - base) % COPIES_PER_TRANSACTION == 0:
            if number > base:
                connection.execute("COMMIT")
            connection.execute("BEGIN IMMEDIATE")
        source = number % base + 1
        copies[source] += 1
        run = connection.execute(
            "INSERT INTO run (run_id, sequence, started_at, finished_at, interrupted, window_seconds, machines_ok, "
            "machines_failed, flows, flows_new, flows_gone) SELECT ?, ?, ?, ?, interrupted, window_seconds, "
            "machines_ok, machines_failed, flows, flows_new, flows_gone FROM run WHERE id = ?",
            (f"run{number:06d}", number, 1_800_000_000.0 + number * 600, 1_800_000_005.0 + number * 600,
             source)).lastrowid
        connection.execute("INSERT INTO machine_seen SELECT ?, machine, status, category, stale, captured_at "
                           "FROM machine_seen WHERE run = ?", (run, source))
        connection.execute("INSERT INTO node_seen SELECT ?, node, pids FROM node_seen WHERE run = ?", (run, source))
        connection.execute("INSERT INTO flow_seen SELECT ?, flow, count, stale, connections, first_seen, last_seen "
                           "FROM flow_seen WHERE run = ?", (run, source))
        connection.execute("INSERT INTO listener_seen SELECT ?, listener, node FROM listener_seen WHERE run = ?",
                           (run, source))
        if source == 1:  # the run before it copies another pair of runs: its counts are its own
            _summarise(connection, run, run - 1)
    connection.execute("COMMIT")
    with _transaction(connection):  # each copy refers to what its recorded run refers to
        for source in range(1, base + 1):
            for table in ("flow", "node"):
                connection.execute(f"UPDATE {table}_refs SET runs = runs + ? WHERE {table} IN "
                                   f"(SELECT {table} FROM {table}_seen WHERE run = ?)", (copies[source], source))
            connection.execute("UPDATE listener_refs SET runs = runs + ? * (SELECT count(*) FROM listener_seen s "
                               "WHERE s.run = ? AND s.listener = listener_refs.listener) WHERE listener IN "
                               "(SELECT listener FROM listener_seen WHERE run = ?)", (copies[source], source, source))


def main() -> int:
    runs, machines, flows, base = (int(value) for value in (sys.argv[1:] + ["10000", "1000", "10", "50"])[:4])
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        connection = open_history(root)
        started = time.perf_counter()
        early = [timed(record, connection, facts(number, machines, flows, rng), repeat=1)[1] for number in range(base)]
        copy_runs(connection, base, runs)
        built = time.perf_counter() - started
        per_run_flows = connection.execute("SELECT avg(flows) FROM run").fetchone()[0]
        total = connection.execute("SELECT count(*) FROM run").fetchone()[0]
        first, last, before_last = "run000000", f"run{runs - 1:06d}", f"run{runs - 2:06d}"
        _, diff_far = timed(diff_recorded, connection, first, last, repeat=3)
        _, diff_near = timed(diff_recorded, connection, before_last, last, repeat=3)
        lines, history_seconds = timed(run_lines, connection, repeat=3)
        flow_lines, flow_timeline = timed(timelines, connection, "m0001|host|app3>", "flow", None, 1, repeat=3)
        node_lines, node_timeline = timed(timelines, connection, "m0002|host|svc4", "node", None, 1, repeat=3)
        late = [timed(record, connection, facts(runs + extra, machines, flows, rng), repeat=1)[1] for extra in range(3)]
        _, prune_seconds = timed(forget, connection, [first], repeat=1)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(root / "history.sqlite")
        connection.close()
    assert len(lines) == total and flow_lines and flow_lines[0].taken == total and node_lines
    reads = {"diff of the first and the last run": diff_far, "diff of the last two runs": diff_near,
             "`netviz history` (all runs)": history_seconds, "a flow's timeline": flow_timeline,
             "a node's timeline": node_timeline, "pruning the oldest run": prune_seconds}
    print(f"{total} runs x {machines} machines, {per_run_flows:.0f} flows a run ({base} recorded, the rest copied "
          f"in SQL; built in {built:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"  record a run, first {base} runs (median)  {statistics.median(early) * 1000:8.1f} ms")
    print(f"  record a run, at {total} runs (median of 3) {statistics.median(late) * 1000:8.1f} ms")
    for what, seconds in reads.items():
        verdict = "OK" if seconds < TARGET_SECONDS else "MISSED"
        print(f"  {what:<40} {seconds * 1000:8.1f} ms  (target < {TARGET_SECONDS:.0f} s) {verdict}")
    print(f"  store size: {size / 2**30:.2f} GiB, {size / total / 1024:.1f} KiB a run "
          f"({size / total / per_run_flows:.0f} bytes a flow)")
    return 0 if all(seconds < TARGET_SECONDS for seconds in reads.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

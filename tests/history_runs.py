"""Cached runs built from snapbuilder machines, written through the cache's own writer, for the
history and diff tests (and runnable as a script: `python history_runs.py CACHE N` records N
runs, for the tests that kill or race a recording process)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).parent))

from snapbuilder import Machine  # noqa: E402

from netviz.cache import Run, RunWriter  # noqa: E402
from netviz.history import record_collected  # noqa: E402
from netviz.snapshot.writer import dump_snapshot  # noqa: E402


def lab(*, extra_flow: bool = False, old_flow: bool = True, cache_listener: bool = False,
        replaced: bool = False, clients: int = 1) -> dict[str, Machine]:
    """web -> db:5432 always; web -> db:6000 (`old_flow`) and web -> db:7000 (`extra_flow`);
    db listening on 11211 (`cache_listener`); db's 5432 held by `pgbouncer` instead (`replaced`);
    `clients` connections web -> db:5432 (many: a run with many flows)."""
    web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
    web.process(10, "app")
    server = "pgbouncer" if replaced else "postgres"
    db.process(20, server)
    db.listen(20, "tcp", "0.0.0.0:5432")
    for n in range(clients):
        web.connect(10, "tcp", f"10.0.0.1:{20000 + n}", "10.0.0.2:5432")
        db.connect(20, "tcp", "10.0.0.2:5432", f"10.0.0.1:{20000 + n}")
    for wanted, port, comm, pid in ((old_flow, 6000, "olddb", 21), (extra_flow, 7000, "newdb", 22)):
        if wanted:
            db.process(pid, comm)
            db.listen(pid, "tcp", f"0.0.0.0:{port}")
            web.connect(10, "tcp", f"10.0.0.1:{port + 1}", f"10.0.0.2:{port}")
            db.connect(pid, "tcp", f"10.0.0.2:{port}", f"10.0.0.1:{port + 1}")
    if cache_listener:
        db.process(23, "memcached")
        db.listen(23, "tcp", "0.0.0.0:11211")
    return {"web": web, "db": db}


def wide(flows: int) -> dict[str, Machine]:
    """web with `flows` distinct client commands, each to its own port of db: `flows` flows."""
    web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
    for n in range(flows):
        web.process(1000 + n, f"client{n}")
        db.process(5000 + n, f"server{n}")
        db.listen(5000 + n, "tcp", f"0.0.0.0:{10000 + n}")
        web.connect(1000 + n, "tcp", f"10.0.0.1:{30000 + n}", f"10.0.0.2:{10000 + n}")
        db.connect(5000 + n, "tcp", f"10.0.0.2:{10000 + n}", f"10.0.0.1:{30000 + n}")
    return {"web": web, "db": db}


def write_run(root: Path, machines: dict[str, Machine], *, failed: dict[str, str] = {}, keep: int = 30,
              now: Optional[float] = None, record: bool = True) -> Run:
    """One cached run: every machine ok but those in `failed` (name -> category), then recorded
    in the history as `netviz collect` does (unless `record` is False)."""
    now = now if now is not None else time.time()
    writer = RunWriter(root, now=now)
    snapshots = {}
    for name, machine in machines.items():
        if name in failed:
            writer.add(name, status="failed", category=failed[name], message="down", timings={}, seconds=0.1,
                       snapshot_json=None)
            continue
        snapshot = machine.build(name)
        snapshots[name] = snapshot
        writer.add(name, status="ok", category=None, message="", timings={}, seconds=0.1,
                   snapshot_json=dump_snapshot(snapshot), collected_at=now)
    run = writer.finish(now=now + 1, keep=keep, order=list(machines))
    if record:
        problem = record_collected(root, run, snapshots)
        assert problem is None, problem
    return run


if __name__ == "__main__":  # python history_runs.py CACHE N [FLOWS]
    cache, count = Path(sys.argv[1]), int(sys.argv[2])
    flows = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    for _ in range(count):
        write_run(cache, wide(flows))
        print("recorded", flush=True)

"""How fast a fleet's snapshot files can be read, by the readers a loader could be built on.

    python3 benchmarks/bench_decoders.py FLEET_DIR [--runs 3]

FLEET_DIR holds snapshot files written by benchmarks/synth.py (bench_stitch.py --sizes writes
them). Each variant runs in a fresh child, `--runs` times (the best run is kept: other work on the
machine only adds time), and prints its wall and CPU time, the sockets it read and its peak RSS:

- orjson: every file parsed into dictionaries and lists, nothing checked (what the ordinary
  reading starts from: netviz.snapshot.files.loads_document);
- typed: every file through netviz.snapshot.typed.typed_document (msgspec decodes the sockets
  into DecodedSocket records, orjson the rest), nothing else checked;
- netviz: netviz.group.load_group, what `netviz stitch` does before stitching (read, count the
  values, decode, check every field, build the Snapshot records);
- duckdb (when the duckdb module is installed; netviz does not depend on it): read_json over the
  directory, the sockets unnested into a table of one row each, on every core; then the exact
  join of rule 4 on that table (the reversed four-tuple, keys held by one socket only), timed on
  its own;
- polars (when the polars module is installed; netviz does not depend on it): each file read by
  `polars.read_json` with the socket and process schema (strings as categoricals), one file per
  task on a thread pool as wide as the machine's CPUs (polars parses outside the GIL), the
  sockets flattened into one row each; then the same exact join, timed on its own
  (benchmarks/bench_columnar.py goes on to the holders, direction and links).

It measures readers, not a second loader: only `netviz` checks what it reads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = ("orjson", "typed", "netviz", "duckdb", "polars")
OPTIONAL = ("duckdb", "polars")  # engines netviz does not depend on

SOCKET_COLUMNS = ('STRUCT(inode UBIGINT, sockets STRUCT(proto VARCHAR, inode UBIGINT, "local" VARCHAR, '
                  'local_port INTEGER, remote VARCHAR, remote_port INTEGER, state VARCHAR, uid BIGINT)[])[]')


def _files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.suffix == ".json")


def _orjson(directory: Path) -> tuple[int, dict]:
    import orjson

    documents = [orjson.loads(path.read_bytes()) for path in _files(directory)]
    return sum(len(ns["sockets"]) for doc in documents for ns in doc["namespaces"]), {}


def _typed(directory: Path) -> tuple[int, dict]:
    from netviz.snapshot.typed import typed_document

    documents = [typed_document(path.read_text(encoding="utf-8")) for path in _files(directory)]
    if any(document is None for document in documents):
        raise SystemExit("a file was not read the typed way")
    return sum(len(ns["sockets"]) for doc in documents for ns in doc["namespaces"]), {}


def _netviz(directory: Path) -> tuple[int, dict]:
    from netviz.group import load_group

    group = load_group([directory])
    return sum(len(ns.sockets) for snapshot in group.snapshots for ns in snapshot.namespaces), {}


def _duckdb(directory: Path) -> tuple[int, dict]:
    import duckdb

    connection = duckdb.connect()
    connection.execute(f"""
        CREATE TABLE sockets AS
        SELECT m.filename AS machine, m.ns.inode AS netns, s.proto, s.inode, s."local" AS local_address,
               s.local_port, s.remote AS remote_address, s.remote_port, s.state
        FROM (SELECT filename, unnest(namespaces) AS ns
              FROM read_json('{directory}/*.json', filename = true, maximum_object_size = 200000000,
                             columns = {{'namespaces': '{SOCKET_COLUMNS}'}})) m,
             LATERAL (SELECT unnest(m.ns.sockets) AS s)""")
    sockets = connection.execute("SELECT count(*) FROM sockets").fetchone()[0]
    clock = (time.perf_counter(), time.process_time())
    pairs = connection.execute("""
        WITH connected AS (
            SELECT *, count(*) OVER (PARTITION BY proto, local_address, local_port, remote_address, remote_port) AS holders
            FROM sockets
            WHERE state <> 'LISTEN' AND remote_port <> 0 AND remote_address NOT IN ('0.0.0.0', '::'))
        SELECT count(*) FROM connected a JOIN connected b
          ON a.proto = b.proto AND a.local_address = b.remote_address AND a.local_port = b.remote_port
         AND a.remote_address = b.local_address AND a.remote_port = b.local_port
        WHERE a.holders = 1 AND b.holders = 1 AND (a.machine, a.inode) < (b.machine, b.inode)""").fetchone()[0]
    return sockets, {"join_wall": time.perf_counter() - clock[0], "join_cpu": time.process_time() - clock[1],
                     "pairs": pairs}


def polars_tables(directory: Path) -> tuple[object, object, object]:
    """The fleet's sockets, one row each (machine, netns, proto, inode, local, local_port, remote,
    remote_port, state), its processes' sockets ((machine, inode) -> owner, the lowest pid), and
    the addresses each machine claims (machine, address), as polars frames: each file read by
    `polars.read_json` on a thread pool as wide as the CPUs."""
    from concurrent.futures import ThreadPoolExecutor

    import polars as pl

    # strings as categoricals (one dictionary for the process): 39 bytes a socket, not about 100
    text = pl.Categorical
    schema = {
        "namespaces": pl.List(pl.Struct({"inode": pl.UInt64, "sockets": pl.List(pl.Struct({
            "proto": text, "inode": pl.UInt64, "local": text, "local_port": pl.UInt16, "remote": text,
            "remote_port": pl.UInt16, "state": text})), "addresses": pl.List(pl.Struct({"address": text}))})),
        "processes": pl.List(pl.Struct({"pid": pl.UInt32, "sockets": pl.List(pl.UInt64)})),
    }

    def read(numbered: tuple[int, Path]) -> pl.DataFrame:
        machine, path = numbered
        return pl.read_json(path, schema=schema).with_columns(machine=pl.lit(machine, pl.UInt32))

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        files = pl.concat(list(pool.map(read, enumerate(_files(directory)))))
    # (flattened once, all files together: flattening each file in its task took 1.6-1.8 s, not 1.1)
    namespaces = files.select("machine", "namespaces").explode("namespaces").unnest("namespaces").rename({"inode": "netns"})
    sockets = namespaces.drop("addresses").explode("sockets").unnest("sockets")
    addresses = namespaces.select("machine", "addresses").explode("addresses").unnest("addresses").drop_nulls().unique()
    owners = (files.select("machine", "processes").explode("processes").unnest("processes").explode("sockets")
              .rename({"sockets": "inode"}).drop_nulls("inode").group_by("machine", "inode").agg(owner=pl.col("pid").min()))
    return sockets, owners, addresses


def _polars(directory: Path) -> tuple[int, dict]:
    import polars as pl

    sockets, _, _ = polars_tables(directory)
    clock = (time.perf_counter(), time.process_time())
    key = ["proto", "local", "local_port", "remote", "remote_port"]
    connected = (sockets.filter((pl.col("state") != "LISTEN") & (pl.col("remote_port") != 0)
                                & ~pl.col("remote").is_in(["0.0.0.0", "::"]))
                 .with_columns(holders=pl.len().over(key)).filter(pl.col("holders") == 1))
    reversed_key = {"remote": "local", "remote_port": "local_port", "local": "remote", "local_port": "remote_port"}
    pairs = connected.join(connected.select(*key, "machine", "inode").rename(reversed_key), on=key, suffix="_peer")
    pairs = pairs.filter((pl.col("machine") < pl.col("machine_peer"))
                         | ((pl.col("machine") == pl.col("machine_peer")) & (pl.col("inode") < pl.col("inode_peer"))))
    return sockets.height, {"join_wall": time.perf_counter() - clock[0], "join_cpu": time.process_time() - clock[1],
                            "pairs": pairs.height, "table_bytes": sockets.estimated_size()}


def measure_here(variant: str, directory: Path) -> dict:
    import gc

    gc.disable()  # as the loader does (netviz.gcpause): millions of objects, no cycle
    clock = (time.perf_counter(), time.process_time())
    sockets, extra = globals()[f"_{variant}"](directory)
    wall, cpu = time.perf_counter() - clock[0], time.process_time() - clock[1]
    return {"variant": variant, "sockets": sockets, "wall": wall, "cpu": cpu,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, **extra}


def available(variant: str) -> bool:
    if variant not in OPTIONAL:
        return True
    try:
        __import__(variant)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.measure:
        print(json.dumps(measure_here(arguments.measure, arguments.directory)))
        return 0
    print(f"{len(_files(arguments.directory))} files in {arguments.directory}; {os.cpu_count()} CPUs; "
          f"best of {arguments.runs} fresh children; load average {os.getloadavg()[0]:.2f}")
    for variant in VARIANTS:
        if not available(variant):
            print(f"{variant:>7}: not installed here, skipped")
            continue
        runs = [json.loads(subprocess.run([sys.executable, __file__, str(arguments.directory), "--measure", variant],
                                          check=True, capture_output=True, text=True).stdout)
                for _ in range(arguments.runs)]
        best = min(runs, key=lambda run: run["wall"])
        per_million = 1e6 / max(1, best["sockets"])
        line = (f"{variant:>7}: {best['sockets']:,} sockets, wall {best['wall']:.2f} s, CPU {min(r['cpu'] for r in runs):.2f} s "
                f"({best['wall'] * per_million:.2f} s wall per million sockets), peak RSS {best['peak_rss'] / 1024**2:,.0f} MiB")
        if "pairs" in best:
            line += f"; exact join {best['join_wall']:.2f} s wall, {best['join_cpu']:.2f} s CPU, {best['pairs']:,} pairs"
        if "table_bytes" in best:
            line += f"; the socket table {best['table_bytes'] / 1024**2:,.0f} MiB"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

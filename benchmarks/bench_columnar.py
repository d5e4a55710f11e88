"""What the bulk of the stitch costs in a columnar engine (polars), on a cached fleet.

    python3 benchmarks/bench_columnar.py FLEET_DIR [FLEET_DIR ...]

Issue 15's time goals (1,000 machines in 2.5 s, 10,000 in 30 s and 4 GiB, on 2 CPUs) are out of
reach of one Python object per socket (docs/scale.md, "What the time goals need"). This measures,
in a fresh child per fleet, the phases a columnar core would run for the sockets the exact join
settles (most of them), each timed on its own (wall and CPU) with the child's peak RSS:

1. read: every snapshot file by `polars.read_json` on a thread pool (bench_decoders.polars_tables):
   one row per socket, and each (machine, inode)'s holder, the lowest pid;
2. join: the connected sockets whose key (kind, local, local port, remote, remote port) no
   other socket holds, paired with the one holding the reversed key; each end's holder, and
   whether a listener in its namespace has its port (direction);
3. fold: the pairs grouped into links (client holder, server holder, kind, server port,
   directed), with their connection counts.

It is a measurement of cost, not a second stitcher: zones, crowds, SCTP, NAT, the listener joins,
group-by modes other than process and the checks of every field are left out, so its links are
not netviz's (the pairs are: the same count as bench_decoders' DuckDB join). Needs polars
(`pip install polars`); netviz does not depend on it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_decoders import polars_tables  # noqa: E402


class Phases:
    """Wall and CPU time of each phase, and the peak RSS when it ended."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, float]] = {}
        self._clock = (time.perf_counter(), time.process_time())

    def done(self, phase: str, rows: int) -> None:
        wall, cpu = time.perf_counter() - self._clock[0], time.process_time() - self._clock[1]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.figures[phase] = {"wall": wall, "cpu": cpu, "rows": rows, "peak_rss": peak}
        self._clock = (time.perf_counter(), time.process_time())


def measure_here(directory: Path) -> dict:
    import polars as pl

    phases = Phases()
    sockets, owners = polars_tables(directory)
    phases.done("read", sockets.height)

    kind = pl.col("proto").cast(pl.Utf8).str.strip_suffix("6").cast(pl.Categorical)
    sockets = sockets.with_columns(kind=kind)
    unconnected = (pl.col("remote_port") == 0) | pl.col("remote").is_in(["0.0.0.0", "::"])
    listeners = (sockets.filter((pl.col("state") == "LISTEN") | (unconnected & (pl.col("kind") == "udp")))
                 .select("machine", "netns", "kind", port="local_port").unique().with_columns(listens=pl.lit(True)))
    key = ["kind", "local", "local_port", "remote", "remote_port"]
    connected = (sockets.filter((pl.col("state") != "LISTEN") & ~unconnected)
                 .with_columns(holders=pl.len().over(key)).filter(pl.col("holders") == 1)
                 .drop("holders", "proto", "state")
                 .join(owners, on=["machine", "inode"], how="left")
                 .join(listeners, left_on=["machine", "netns", "kind", "local_port"],
                       right_on=["machine", "netns", "kind", "port"], how="left")
                 .with_columns(pl.col("listens").fill_null(False)))
    reversed_key = {"remote": "local", "remote_port": "local_port", "local": "remote", "local_port": "remote_port"}
    peers = connected.select(*key, "machine", "inode", "owner", "listens").rename(reversed_key)
    first = (pl.col("machine") < pl.col("machine_peer")) | (
        (pl.col("machine") == pl.col("machine_peer")) & (pl.col("inode") < pl.col("inode_peer")))
    pairs = connected.join(peers, on=key, suffix="_peer").filter(first)
    phases.done("join", pairs.height)

    # the end whose peer listens (and it does not) is the client; otherwise the pair is undirected
    peer_serves = pl.col("listens_peer") & ~pl.col("listens")
    links = (pairs.with_columns(
        client_machine=pl.when(peer_serves).then("machine").otherwise("machine_peer"),
        client_owner=pl.when(peer_serves).then("owner").otherwise("owner_peer"),
        server_machine=pl.when(peer_serves).then("machine_peer").otherwise("machine"),
        server_owner=pl.when(peer_serves).then("owner_peer").otherwise("owner"),
        server_port=pl.when(peer_serves).then("remote_port").otherwise("local_port"),
        directed=pl.col("listens") != pl.col("listens_peer"))
        .group_by("client_machine", "client_owner", "server_machine", "server_owner", "kind", "server_port", "directed")
        .agg(connections=pl.len()))
    phases.done("fold", links.height)
    return phases.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's job
    arguments = parser.parse_args(argv)
    if arguments.measure:
        print(json.dumps(measure_here(arguments.measure)))
        return 0
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    for directory in arguments.directories:
        child = subprocess.run([sys.executable, __file__, str(directory), "--measure", str(directory)],
                               check=True, capture_output=True, text=True)
        figures = json.loads(child.stdout)
        files = sum(1 for path in directory.iterdir() if path.suffix == ".json")
        print(f"{directory.name} ({files:,} files):")
        for phase, figure in figures.items():
            print(f"  {phase:>5}: {figure['rows']:>12,} rows, wall {figure['wall']:6.2f} s, CPU {figure['cpu']:6.2f} s, "
                  f"peak RSS {figure['peak_rss'] / 1024**2:,.0f} MiB")
        print(f"  total: wall {sum(f['wall'] for f in figures.values()):.2f} s, "
              f"CPU {sum(f['cpu'] for f in figures.values()):.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

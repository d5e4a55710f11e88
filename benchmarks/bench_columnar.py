"""What the bulk of the stitch costs in a columnar engine (polars), on a cached fleet.

    python3 benchmarks/bench_columnar.py FLEET_DIR [FLEET_DIR ...]

Issue 15's time goals (1,000 machines in 2.5 s, 10,000 in 30 s and 4 GiB, on 2 CPUs) are out of
reach of one Python object per socket (docs/scale.md, "What the time goals need"). This measures,
in a fresh child per fleet, the phases a columnar core would run for the sockets the exact join
settles (most of them), each timed on its own (wall and CPU) with the child's peak RSS:

1. read: every snapshot file by `polars.read_json` on a thread pool (bench_decoders.polars_tables):
   one row per socket, and each (machine, inode)'s holder, the lowest pid;
2. zones: each connected socket's addresses made canonical (`::ffff:a.b.c.d` is a.b.c.d) and
   its zone, as netviz.stitch.addresses.AddressBook.zone gives it (loopback: its namespace;
   link-local or claimed by several machines: its machine; else none), from each distinct
   address's locality (computed in Python: a few thousand addresses);
3. join: the connected sockets whose key (kind, local, local port, remote, remote port, zone) no
   other socket holds, paired with the one holding the reversed key; each end's holder, and
   whether a listener in its namespace has its port (direction);
4. fold: the pairs grouped into links (client holder, server holder, kind, server port,
   directed), with their connection counts.

It is a measurement of cost, not a second stitcher: the exception of shared addresses paired with
one machine's own, crowds, SCTP, NAT, the listener joins, every holder of a shared socket,
group-by modes other than process and the checks of every field are left out, so its links are
not netviz's. Its pairs are netviz's plain pairs: 404,000 per 1,000 synthetic machines, as the
stitch's index files them. Needs polars (`pip install polars`); netviz does not depend on it.
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


def _addresses(sockets, addresses):
    """Each distinct address of the sockets: its canonical form (`::ffff:a.b.c.d` is a.b.c.d, as
    netviz.stitch.addresses.normalize_address says) and its locality rank, as AddressBook's
    locality_of gives it (loopback 3, link-local 2, claimed by several machines 1, else 0). A few
    thousand addresses: computed in Python."""
    import polars as pl

    from netviz.stitch.addresses import Locality, Scope, normalize_address, scope

    claims = dict(addresses.group_by("address").agg(pl.col("machine").n_unique()).iter_rows())
    distinct = set(sockets.get_column("local").drop_nulls().cast(pl.Utf8).unique()) | set(
        sockets.get_column("remote").drop_nulls().cast(pl.Utf8).unique())
    rows = []
    for address in distinct:
        canonical = normalize_address(address)
        found = scope(canonical)
        rank = (Locality.NETNS if found is Scope.LOOPBACK else Locality.MACHINE if found is Scope.LINK
                else Locality.SHARED if claims.get(canonical, 0) > 1 else Locality.GLOBAL)
        rows.append((address, canonical, rank.value))
    return pl.DataFrame(rows, schema={"address": pl.Categorical, "canonical": pl.Categorical, "rank": pl.UInt8},
                        orient="row")


def measure_here(directory: Path) -> dict:
    import polars as pl

    phases = Phases()
    sockets, owners, addresses = polars_tables(directory)
    phases.done("read", sockets.height)

    kind = pl.col("proto").cast(pl.Utf8).str.strip_suffix("6").cast(pl.Categorical)
    sockets = sockets.with_columns(kind=kind)
    unconnected = (pl.col("remote_port") == 0) | pl.col("remote").is_in(["0.0.0.0", "::"])
    listeners = (sockets.filter((pl.col("state") == "LISTEN") | (unconnected & (pl.col("kind") == "udp")))
                 .select("machine", "netns", "kind", port="local_port").unique().with_columns(listens=pl.lit(True)))
    # the zone (AddressBook.zone, without shared_zone's exception): loopback keys stay in their
    # namespace, link-local and shared addresses on their machine, the rest join anywhere
    known = _addresses(sockets, addresses)
    connected = (sockets.filter((pl.col("state") != "LISTEN") & ~unconnected)
                 .join(known.rename({"address": "local", "canonical": "local_canonical", "rank": "local_rank"}),
                       on="local", how="left")
                 .join(known.rename({"address": "remote", "canonical": "remote_canonical", "rank": "remote_rank"}),
                       on="remote", how="left")
                 .with_columns(reach=pl.max_horizontal("local_rank", "remote_rank")))
    connected = (connected.with_columns(
        local=pl.col("local_canonical"), remote=pl.col("remote_canonical"),
        zone_machine=pl.when(pl.col("reach") > 0).then("machine"),
        zone_netns=pl.when(pl.col("reach") == 3).then("netns"))
        .drop("local_canonical", "remote_canonical", "local_rank", "remote_rank", "reach"))
    phases.done("zones", connected.height)

    key = ["kind", "local", "local_port", "remote", "remote_port", "zone_machine", "zone_netns"]
    connected = (connected.with_columns(holders=pl.len().over(key)).filter(pl.col("holders") == 1)
                 .drop("holders", "proto", "state")
                 .join(owners, on=["machine", "inode"], how="left")
                 .join(listeners, left_on=["machine", "netns", "kind", "local_port"],
                       right_on=["machine", "netns", "kind", "port"], how="left")
                 .with_columns(pl.col("listens").fill_null(False)))
    reversed_key = {"remote": "local", "remote_port": "local_port", "local": "remote", "local_port": "remote_port"}
    peers = connected.select(*key, "machine", "inode", "owner", "listens").rename(reversed_key)
    first = (pl.col("machine") < pl.col("machine_peer")) | (
        (pl.col("machine") == pl.col("machine_peer")) & (pl.col("inode") < pl.col("inode_peer")))
    pairs = connected.join(peers, on=key, suffix="_peer", nulls_equal=True).filter(first)
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

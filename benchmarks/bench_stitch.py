"""Benchmark: stitch a million sockets, and check that the stitch grows linearly.

    python3 benchmarks/bench_stitch.py [--machines 1000] [--sockets 1000] [--small 100]

Writes synthetic fleets (benchmarks/synth.py) to a temporary directory in a child process (so the
generator's memory is not counted), loads them with netviz.group.load_group (timed: JSON parsing
and validation), then stitches the already-parsed snapshots (timed on its own). Prints the
figures and checks the targets of issue 3: the large stitch under 10 s and the whole process
under 2 GiB peak RSS; stitch time at `--machines` over stitch time at `--small` machines at most
12 (for ten times the machines). Both wall and CPU time are printed; the targets are checked on
CPU time (best of 3), which a busy machine does not inflate. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netviz.group import load_group  # noqa: E402
from netviz.stitch import stitch  # noqa: E402

TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 1024**3
TARGET_RATIO = 12.0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def write_fleet(directory: Path, machines: int, sockets: int, seed: int) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "synth.py"), str(directory),
         "--machines", str(machines), "--sockets", str(sockets), "--seed", str(seed)],
        check=True,
    )


def measure(directory: Path, repeats: int) -> tuple[float, float, float, object, int]:
    """(load seconds, best stitch wall seconds, best stitch CPU seconds, graph, sockets)."""
    started = time.perf_counter()
    group = load_group([directory])
    load_seconds = time.perf_counter() - started
    print(f"  loaded {len(group.snapshots)} snapshots: RSS now {current_rss_bytes() / 1024**2:,.0f} MiB")
    sockets = sum(len(ns.sockets) for snapshot in group.snapshots for ns in snapshot.namespaces)
    best_wall = best_cpu = float("inf")
    graph = None
    for _ in range(repeats):
        graph = None
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        graph = stitch(group.snapshots)
        best_wall = min(best_wall, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    return load_seconds, best_wall, best_cpu, graph, sockets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--sockets", type=int, default=1000, help="sockets per machine")
    parser.add_argument("--small", type=int, default=100, help="machines in the fleet for the linearity ratio")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="netviz-bench-") as temporary:
        small_dir, large_dir = Path(temporary, "small"), Path(temporary, "large")
        started = time.perf_counter()
        write_fleet(small_dir, arguments.small, arguments.sockets, arguments.seed)
        write_fleet(large_dir, arguments.machines, arguments.sockets, arguments.seed)
        print(f"generated fleets in {time.perf_counter() - started:.1f} s (child process, not counted)")

        small_load, small_wall, small_cpu, small_graph, small_sockets = measure(small_dir, repeats=3)
        print(
            f"{arguments.small} machines, {small_sockets:,} sockets: load {small_load:.2f} s, "
            f"stitch {small_wall:.3f} s wall / {small_cpu:.3f} s CPU (best of 3), {len(small_graph.flows):,} flows"
        )
        del small_graph
        large_load, large_wall, large_cpu, large_graph, large_sockets = measure(large_dir, repeats=3)
        summary = large_graph.summary()
        print(
            f"{arguments.machines} machines, {large_sockets:,} sockets: load {large_load:.2f} s, "
            f"stitch {large_wall:.3f} s wall / {large_cpu:.3f} s CPU (best of 3)"
        )
        print(
            f"  graph: {summary['nodes']:,} nodes, {summary['flows']:,} flows, {summary['connections']:,} connections, "
            f"{summary['outside']:,} outside, {summary['unresolved']:,} unresolved"
        )

    peak = peak_rss_bytes()
    scale = arguments.machines / arguments.small
    wall_ratio, cpu_ratio = large_wall / small_wall, large_cpu / small_cpu
    print(f"peak RSS (whole process: loaded snapshots + stitch): {peak / 1024**2:,.0f} MiB")
    print(
        f"stitch time ratio {arguments.machines}/{arguments.small} machines ({scale:.0f}x): "
        f"{wall_ratio:.2f} wall, {cpu_ratio:.2f} CPU"
    )
    # CPU time is what the stitch costs; wall time also counts waiting for a busy CPU
    large_stitch, ratio = large_cpu, cpu_ratio

    failures = []
    if large_stitch > TARGET_SECONDS:
        failures.append(f"stitch took {large_stitch:.1f} s > {TARGET_SECONDS:.0f} s")
    if peak > TARGET_BYTES:
        failures.append(f"peak RSS {peak / 1024**3:.2f} GiB > 2 GiB")
    if scale == 10 and ratio > TARGET_RATIO:
        failures.append(f"ratio {ratio:.2f} > {TARGET_RATIO:.0f}")
    for failure in failures:
        print(f"MISSED: {failure}")
    if not failures:
        print("targets met: stitch < 10 s, peak RSS < 2 GiB, ratio <= 12")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

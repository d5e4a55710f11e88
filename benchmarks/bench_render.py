"""Benchmark: the default SVG of a large fleet, aggregated for a static layout.

    python3 benchmarks/bench_render.py [--machines 200] [--processes 5000] [--sockets 200] [--full]

Builds `--machines` synthetic snapshots (benchmarks/synth.py), each machine given extra processes
(celery, envoy, node_exporter, ... taking over part of the `app` workers' sockets) until the
fleet holds `--processes` processes, stitches them, and writes the SVG that `netviz stitch -o
map.svg` writes by default (`--detail auto`), once per granularity (group-by process, the
default, and pid). Prints the nodes and flows before and after aggregation, the layout engine
and its time, and checks the target of issue 6: the default SVG written in under 30 s.
`--full` also times `--detail full` (the layout of every node; minutes, bounded by --timeout).
Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.synth import make_fleet  # noqa: E402
from netviz.aggregate import drawn_edges, static_view  # noqa: E402
from netviz.errors import RenderError  # noqa: E402
from netviz.render import render  # noqa: E402
from netviz.render.dot import render_dot  # noqa: E402
from netviz.render.image import layout_engine, render_image  # noqa: E402
from netviz.snapshot import parse_snapshot  # noqa: E402
from netviz.stitch import stitch  # noqa: E402

TARGET_SVG_SECONDS = 30.0
# Commands that take over part of the app workers' sockets: a machine runs more than one program.
EXTRA_COMMANDS = ("celery", "envoy", "node_exporter", "fluent-bit", "gunicorn", "sidekiq", "java", "node")


def add_processes(documents: list[dict[str, Any]], total: int) -> None:
    """Give the machines extra processes until the fleet holds `total`: each new process takes
    every n-th socket of the machine's `app` workers (so the sockets and connections are the
    same, spread over more programs)."""
    count = sum(len(document["processes"]) for document in documents)
    machine = 0
    while count < total:
        document = documents[machine % len(documents)]
        extra = [p for p in document["processes"] if p["comm"] in EXTRA_COMMANDS]
        apps = [p for p in document["processes"] if p["comm"] == "app"]
        comm = EXTRA_COMMANDS[len(extra) % len(EXTRA_COMMANDS)]
        pid = 700 + len(extra)
        taken: list[int] = []
        for app in apps:
            keep = []
            for index, inode in enumerate(app["sockets"]):
                (taken if index % (len(extra) + 3) == 1 else keep).append(inode)
            app["sockets"] = keep
        document["processes"].append({
            "pid": pid, "ppid": 1, "comm": comm, "cmdline": [f"/usr/bin/{comm}"], "uid": 1001, "euid": 1001,
            "user": "app", "context": "unconfined", "netns": apps[0]["netns"], "sockets": sorted(taken),
        })
        document["processes"].sort(key=lambda process: process["pid"])
        document["coverage"]["processes_seen"] += 1
        count += 1
        machine += 1


def timed_svg(graph, directory: Path, name: str) -> float:
    """Seconds to render the default SVG and write it, as `netviz stitch -o map.svg` does."""
    started = time.perf_counter()
    data = render(graph, "svg", timeout=600.0, on_notice=lambda message: print(f"    notice: {message}"))
    (directory / name).write_bytes(data)
    return time.perf_counter() - started


def stages(graph, detail: str, timeout: float) -> None:
    """Print each stage of the static rendering on its own: aggregation, DOT text, layout."""
    started = time.perf_counter()
    view = static_view(graph, detail)
    fold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    source = render_dot(view.graph, bundle_edges=view.aggregated)
    dot_seconds = time.perf_counter() - started
    edges = drawn_edges(view.graph) if view.aggregated else len(view.graph.flows)
    engine = layout_engine(len(view.graph.nodes), edges)
    started = time.perf_counter()
    try:
        svg = render_image(source, "svg", node_count=len(view.graph.nodes), edge_count=edges, timeout=timeout)
        layout = f"{time.perf_counter() - started:6.2f} s, SVG {len(svg) / 1e6:.2f} MB"
    except RenderError as error:
        layout = f"failed: {error}"
    kept = ("full detail" if not view.aggregated else "machine overview" if view.notice and view.notice.startswith("overview")
            else f"{view.kept_per_machine} busiest kept per machine")
    print(f"    {detail:9} {len(graph.nodes):5} nodes / {len(graph.flows):6} flows -> {len(view.graph.nodes):5} nodes / "
          f"{edges:6} edges ({kept}); fold {fold_seconds:5.2f} s, DOT text {dot_seconds:5.2f} s, "
          f"{engine} layout {layout}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--processes", type=int, default=5000)
    parser.add_argument("--sockets", type=int, default=200, help="sockets per machine (about)")
    parser.add_argument("--full", action="store_true", help="also lay out every node (--detail full)")
    parser.add_argument("--timeout", type=float, default=300.0, help="time limit of a --full layout")
    arguments = parser.parse_args(argv)

    documents = make_fleet(arguments.machines, arguments.sockets, seed=1)
    add_processes(documents, arguments.processes)
    processes = sum(len(document["processes"]) for document in documents)
    snapshots = [parse_snapshot(document, source=f"synthetic {index}") for index, document in enumerate(documents)]
    print(f"fleet: {len(snapshots)} machines, {processes} processes, "
          f"{sum(len(ns.sockets) for s in snapshots for ns in s.namespaces)} sockets")
    missed = False
    with tempfile.TemporaryDirectory(prefix="netviz-bench-render-") as temporary:
        for group_by in ("process", "pid"):
            started = time.perf_counter()
            graph = stitch(snapshots, group_by=group_by)
            print(f"group-by {group_by}: stitched in {time.perf_counter() - started:.2f} s")
            stages(graph, "auto", arguments.timeout)
            stages(graph, "aggregate", arguments.timeout)
            if arguments.full:
                stages(graph, "full", arguments.timeout)
            seconds = timed_svg(graph, Path(temporary), f"{group_by}.svg")
            size = (Path(temporary) / f"{group_by}.svg").stat().st_size
            ok = seconds < TARGET_SVG_SECONDS
            missed = missed or not ok
            print(f"  default SVG written: {seconds:.2f} s ({size / 1e6:.1f} MB), target < {TARGET_SVG_SECONDS:.0f} s: "
                  f"{'ok' if ok else 'MISSED'} (ratio {seconds / TARGET_SVG_SECONDS:.2f})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

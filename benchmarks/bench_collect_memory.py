"""Memory and client CPU of `netviz collect` / `netviz run` as the number of machines grows.

    python3 benchmarks/bench_collect_memory.py [--machines 100,1000,3000] [--sockets 1000]
                                               [--parallel 32] [--mode collect|run|both]

For each N, a synthetic fleet of N machines (benchmarks/synth.py, about `--sockets` sockets each)
is framed once, as the payload frames its output, into `--work` (kept between invocations:
making a fleet of 3,000 machines takes a minute or two). Then a fresh Python process per N and
per mode runs the real pipeline (netviz.pipeline.collect_group, then stitch_run for `run`) on an
inventory of N hosts, the SSH transport replaced by one that answers each machine with its frame
after `--latency` seconds (the network's share of a real collection). Everything else is real:
the bounded pool, the watchdog, the output budget, validation, the cache writes, the manifest,
the run history, the map's stitch.

Each child prints, from /proc/self/status VmHWM (peak resident memory):
  collection  the peak when the last machine was collected (the fan-out: what `--parallel` bounds)
  command     the peak when collect_group returned (with the run history's stitch of the run)
  map         `run` only: the peak after the map was stitched from the cache
and the client CPU per machine during the collection (user + system of this process, plus the
CPU its validator processes report when snapshots are validated there), with the share spent
decoding and validating snapshots and writing them (thread CPU in the cache writer), and the
most parsed snapshots alive at once in this process.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_WORK = Path(tempfile.gettempdir()) / "netviz-bench-collect-memory"


def vm_hwm_mib() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# ------------------------------------------------------------------------------------------
# the fleet, framed once


def fleet_dir(work: Path, machines: int, sockets: int, seed: int) -> Path:
    return work / f"fleet-{machines}x{sockets}-s{seed}"


def make_frames(directory: Path, machines: int, sockets: int, seed: int) -> None:
    """Frame every machine of a synthetic fleet into `<name>.frame` (in a child process: the
    fleet is built whole in memory, and the measured processes must not inherit any of it)."""
    from benchmarks.synth import make_fleet
    from netviz.snapshot.framing import encode_framed

    partial = directory.with_name(directory.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for document in make_fleet(machines, sockets, seed):
        name = document["host"]["hostname"]
        (partial / f"{name}.frame").write_bytes(encode_framed(json.dumps(document, separators=(",", ":"))))
    partial.rename(directory)


def ensure_fleet(work: Path, machines: int, sockets: int, seed: int) -> Path:
    directory = fleet_dir(work, machines, sockets, seed)
    if not directory.is_dir():
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--make-fleet", str(directory), "--machines", str(machines),
                        "--sockets", str(sockets), "--seed", str(seed)], check=True, cwd=ROOT)
        print(f"  framed {machines} machines in {time.perf_counter() - started:.0f} s ({directory})", flush=True)
    return directory


def write_inventory(path: Path, names: list[str]) -> None:
    lines = ["defaults:", "  user: bench", "  connect_timeout: 10", "  command_timeout: 60", "hosts:"]
    lines += [f"  {name}: {{}}" for name in names]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------
# one measured collection (a child process)


class FleetTransport:
    """Answers each machine with its framed snapshot from disk after `latency` seconds."""

    def __init__(self, directory: Path, latency: float) -> None:
        self.directory = directory
        self.latency = latency

    def fetch(self, target, payload, attempt, timings) -> bytes:
        started = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        data = (self.directory / f"{target.name}.frame").read_bytes()
        attempt.output.take(len(data))  # counted against the run's output budget, as SSH does
        timings.command = time.monotonic() - started
        return data

    def deadline(self, target) -> float:
        return 120.0

    def descriptors(self, target) -> int:
        return 1


class ThreadCpu:
    """Thread CPU seconds spent inside some functions, summed over every thread."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def wrap(self, function):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.seconds += spent
        return timed


def child(options: argparse.Namespace) -> int:
    import netviz.cache
    import netviz.collect
    import netviz.pipeline
    import netviz.history  # noqa: F401  (imported before the baseline, as the run imports it)
    import netviz.stitch  # noqa: F401
    from netviz.pipeline import CollectRequest, QuietReporter, collect_group, stitch_run

    directory = Path(options.fleet)
    work = Path(options.child_work)
    names = sorted(path.name[: -len(".frame")] for path in directory.glob("*.frame"))
    inventory = work / "hosts.yaml"
    write_inventory(inventory, names)
    baseline = vm_hwm_mib()

    transport = FleetTransport(directory, options.latency)
    netviz.pipeline.SSHTransport = lambda *args, **kwargs: transport  # the only thing not real

    validating, writing = ThreadCpu(), ThreadCpu()
    alive = {"now": 0, "most": 0}
    lock = threading.Lock()

    def gone() -> None:
        with lock:
            alive["now"] -= 1

    original_validate = netviz.collect.validate_output

    def validate(name, stdout):
        text, snapshot = original_validate(name, stdout)
        with lock:
            alive["now"] += 1
            alive["most"] = max(alive["most"], alive["now"])
        weakref.finalize(snapshot, gone)
        return text, snapshot

    netviz.collect.validate_output = validating.wrap(validate)
    netviz.cache.RunWriter.add = writing.wrap(netviz.cache.RunWriter.add)

    figures: dict = {"machines": len(names), "mode": options.mode, "baseline_mib": round(baseline, 1)}

    class Measuring(QuietReporter):
        def begin(self, total: int) -> None:
            self.cpu = os.times()
            self.wall = time.perf_counter()

        def end(self) -> None:
            after = os.times()
            cpu = (after.user - self.cpu.user) + (after.system - self.cpu.system)
            figures["collection_mib"] = round(vm_hwm_mib(), 1)
            figures["collection_wall_s"] = round(time.perf_counter() - self.wall, 2)
            figures["cpu_ms_per_machine"] = round(1000 * cpu / len(names), 2)
            # validated in this process (seen by the wrapper) or in child processes (their CPU,
            # reported in each result, is not in this process's os.times)
            figures["validate_here_ms_per_machine"] = round(1000 * validating.seconds / len(names), 2)
            figures["write_ms_per_machine"] = round(1000 * writing.seconds / len(names), 2)
            figures["snapshots_alive_at_end"] = alive["now"]

    request = CollectRequest(inventory=inventory, parallel=options.parallel, cache_dir=work / "cache")
    started = time.perf_counter()
    extra = {}
    if options.mode == "run" and "history_later" in inspect.signature(collect_group).parameters:
        extra["history_later"] = True  # as `netviz run`: the history from the map's load
    collected = collect_group(request, Measuring(), **extra)
    validated = sum(getattr(result, "validate_cpu", 0.0) for result in collected.results)
    figures["validate_ms_per_machine"] = round(1000 * (validated or validating.seconds) / len(names), 2)
    figures["validated_in_children"] = bool(validated) and not validating.seconds
    if figures["validated_in_children"]:  # client CPU: this process and its validators
        figures["cpu_ms_per_machine"] = round(figures["cpu_ms_per_machine"] + figures["validate_ms_per_machine"], 2)
    figures["command_mib"] = round(vm_hwm_mib(), 1)
    figures["command_wall_s"] = round(time.perf_counter() - started, 2)
    figures["ok"] = sum(1 for result in collected.results if result.ok)
    if options.mode == "run":
        started = time.perf_counter()
        outcome = stitch_run(collected, None)
        figures["map_mib"] = round(vm_hwm_mib(), 1)
        figures["map_wall_s"] = round(time.perf_counter() - started, 2)
        figures["flows"] = len(outcome.graph.edges) if hasattr(outcome.graph, "edges") else None
    figures["snapshots_alive_most"] = alive["most"]
    print(json.dumps(figures), flush=True)
    return 0


# ------------------------------------------------------------------------------------------
# the driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default="100,1000,3000", help="comma-separated fleet sizes")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each machine takes to answer")
    parser.add_argument("--mode", choices=("collect", "run", "both"), default="both")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where the framed fleets are kept")
    parser.add_argument("--make-fleet", help=argparse.SUPPRESS)
    parser.add_argument("--fleet", help=argparse.SUPPRESS)
    parser.add_argument("--child-work", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.make_fleet:
        make_frames(Path(options.make_fleet), int(options.machines), options.sockets, options.seed)
        return 0
    if options.fleet:
        return child(options)

    sizes = [int(size) for size in options.machines.split(",")]
    modes = ["collect", "run"] if options.mode == "both" else [options.mode]
    options.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for machines in sizes:
        directory = ensure_fleet(options.work, machines, options.sockets, options.seed)
        for mode in modes:
            with tempfile.TemporaryDirectory(prefix="netviz-bench-") as scratch:
                argv = [sys.executable, __file__, "--fleet", str(directory), "--child-work", scratch,
                        "--mode", mode, "--parallel", str(options.parallel), "--latency", str(options.latency)]
                process = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
                if process.returncode != 0:
                    print(process.stderr, file=sys.stderr)
                    return 1
                figures = json.loads(process.stdout.strip().splitlines()[-1])
                rows.append(figures)
                print(json.dumps(figures), flush=True)
    print()
    print(f"--parallel {options.parallel}, {options.sockets} sockets per machine, latency {options.latency} s; "
          "peak RSS (VmHWM) in MiB")
    print(f"{'mode':8} {'N':>6} {'collection':>11} {'command':>8} {'map':>7} {'alive':>6} "
          f"{'CPU ms/machine':>15} {'validate':>9} {'(where)':>9} {'write':>6} {'wall s':>7}")
    for row in rows:
        where = "children" if row.get("validated_in_children") else "threads"
        print(f"{row['mode']:8} {row['machines']:6d} {row['collection_mib']:11.0f} {row['command_mib']:8.0f} "
              f"{row.get('map_mib', float('nan')):7.0f} {row['snapshots_alive_most']:6d} "
              f"{row['cpu_ms_per_machine']:15.1f} {row['validate_ms_per_machine']:9.1f} {where:>9} "
              f"{row['write_ms_per_machine']:6.1f} {row['collection_wall_s']:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

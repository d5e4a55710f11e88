"""Benchmark: the payload's cost during a window (--window) at ~1,000 and ~50,000 sockets.

The load is real: server/client process pairs hold established loopback TCP connections
(benchmarks/bench_capture.py's holders), and one more process opens and closes ~50 connections
per second during the window, so that the event streams and the TIME_WAIT rows have work.
The payload then observes WINDOW seconds; the script prints, for each load, the payload's CPU
share during the window (the window section's own cpu_seconds over the window's length, and
the whole process's CPU over its wall time, the closing capture included), the sampling
interval it chose, the number of samples, and its peak resident memory.

Targets (issue 11): at most 5% of one core at 1,000 sockets, 20% at 50,000.

As root, everything runs in a network and pid namespace of its own (`unshare`), so that the
other namespaces and processes of this machine do not weigh on the figures.

Run as: python3 benchmarks/bench_window.py [--window 10] [--sizes 1000,50000]
Every process it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_capture import PAYLOAD, start_load, stop_load  # noqa: E402

CHURN = r"""
import socket, sys, time
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen(512)
port = listener.getsockname()[1]
listener.setblocking(False)
print("ready", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    socket.create_connection(("127.0.0.1", port)).close()
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        pass
    time.sleep(0.02)
"""


def measure(window: float) -> dict:
    """Run the payload for `window` seconds (with churn beside it): its figures."""
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(window + 5)], stdout=subprocess.PIPE, text=True)
    try:
        churn.stdout.readline()
        started = time.perf_counter()
        read, write = os.pipe()
        pid = os.posix_spawn(sys.executable, [sys.executable, str(PAYLOAD), "--window", str(window)], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, write, 1), (os.POSIX_SPAWN_CLOSE, read)])
        os.close(write)
        chunks = []
        while True:
            chunk = os.read(read, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - started
    finally:
        churn.kill()
        churn.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"payload failed with status {status}")
    section = json.loads(b"".join(chunks))["window"]
    length = section["ended_at"] - section["started_at"]
    return {
        "sockets_seen": sum(len(ns["sockets"]) for ns in json.loads(b"".join(chunks))["namespaces"]),
        "window_cpu_share": section["cpu_seconds"] / length,
        "process_cpu_share": (usage.ru_utime + usage.ru_stime) / elapsed,
        "interval": section["interval"], "samples": section["samples"],
        "first_sample_cpu": section["first_sample_cpu"], "allowed_share": section["cpu_share"],
        "peak_rss_mib": usage.ru_maxrss / 1024.0, "flows": len(section["flows"]),
        "sources": {name: source["state"] for name, source in section["sources"].items()},
    }


def run(window: float, sizes: list[int]) -> None:
    for size in sizes:
        pairs = max(1, size // 1000)
        connections = size // (2 * pairs)
        load = start_load(pairs, connections)
        try:
            figures = measure(window)
        finally:
            stop_load(load)
        print(f"~{size} sockets ({figures['sockets_seen']} in the snapshot): "
              f"window CPU {100 * figures['window_cpu_share']:.1f}% of one core "
              f"(allowed {100 * figures['allowed_share']:.0f}%), whole process "
              f"{100 * figures['process_cpu_share']:.1f}% over its wall time; interval "
              f"{figures['interval']:.2f} s, {figures['samples']} samples, first sample "
              f"{figures['first_sample_cpu'] * 1000:.0f} ms CPU; peak RSS {figures['peak_rss_mib']:.1f} MiB; "
              f"{figures['flows']} flow keys; sources {figures['sources']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=10.0, help="window length, seconds")
    parser.add_argument("--sizes", default="1000,50000", help="socket counts, comma-separated")
    parser.add_argument("--here", action="store_true", help="do not isolate in namespaces of its own")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    if not options.here and os.geteuid() == 0 and shutil.which("unshare"):
        inner = [sys.executable, str(Path(__file__).resolve()), "--here", "--window", str(options.window),
                 "--sizes", options.sizes]
        script = "ip link set lo up 2>/dev/null || true; exec " + " ".join(map(repr, inner))
        return subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", script]).returncode
    run(options.window, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

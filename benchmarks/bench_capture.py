"""Benchmark: the capture payload against `ss -tanp` on 50,000 established loopback TCP sockets.

The load is real: SERVERS server processes each accept CONNECTIONS connections from one client
process (50 pairs x 500 connections = 25,000 connections = 50,000 sockets in 100 processes).
Both tools then run on the same load, best of 3, and the script prints their times, the ratio
(target: payload <= 0.8 x ss) and the payload's peak resident memory (target: < 64 MiB).

The payload also reads every other network namespace of the machine (ss -tanp does not), and
the kernel builds each namespace's tcp/tcp6 text by walking all TCP sockets of the machine, so
the figures are comparable only on a machine without other busy namespaces: the script prints
how many there are, and the CPU times next to the wall times.

Run as: python3 benchmarks/bench_capture.py [--pairs 50] [--connections 500] [--runs 3]
Every process it starts is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

PAYLOAD = Path(__file__).resolve().parent.parent / "netviz" / "payload" / "capture.py"

# One program for both sides, run with `python3 -c`: it holds its sockets until stdin closes.
HOLDER = r"""
import resource, socket, sys
role, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = count + 64
if soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
held = []
if role == "server":
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    print(listener.getsockname()[1], flush=True)
    while len(held) < count:
        held.append(listener.accept()[0])
else:
    port = int(sys.argv[3])
    for _ in range(count):
        held.append(socket.create_connection(("127.0.0.1", port)))
print("ready", flush=True)
sys.stdin.read()
"""


def start_load(pairs: int, connections: int) -> list[subprocess.Popen]:
    """Start `pairs` server/client process pairs holding `connections` connections each."""
    processes: list[subprocess.Popen] = []

    def spawn(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        processes.append(process)
        return process

    try:
        servers = [spawn("server", str(connections)) for _ in range(pairs)]
        ports = [server.stdout.readline().strip() for server in servers]
        clients = [spawn("client", str(connections), port) for port in ports]
        for process in servers + clients:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"load process {process.pid} failed to start")
    except BaseException:
        stop_load(processes)
        raise
    return processes


def stop_load(processes: list[subprocess.Popen]) -> None:
    """Close every holder's stdin (it exits) and kill by pid whatever is still alive."""
    for process in processes:
        try:
            process.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed(command: list[str]) -> tuple[float, float, int]:
    """Run `command` with stdout discarded: (wall seconds, CPU seconds, peak RSS in KiB)."""
    started = time.perf_counter()
    pid = os.posix_spawn(command[0], command, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed with status {status}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def interleaved_best(commands: list[list[str]], runs: int) -> list[tuple[float, float, int]]:
    """Best wall time, best CPU time and peak RSS of each command over `runs` rounds, run in
    turn each round so that a burst of unrelated load on the machine hits every command alike."""
    results: list[list[tuple[float, float, int]]] = [[] for _ in commands]
    for _ in range(runs):
        for index, command in enumerate(commands):
            results[index].append(timed(command))
    return [(min(r[0] for r in rows), min(r[1] for r in rows), max(r[2] for r in rows))
            for rows in results]


def count_namespaces() -> int:
    """Distinct network namespaces of the visible processes: the payload reads each one's
    /proc/PID/net tables, and the kernel walks every TCP socket of the machine for each."""
    inodes = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                inodes.add(os.stat(f"/proc/{name}/ns/net").st_ino)
            except OSError:
                pass
    return len(inodes)


def count_tcp_sockets() -> int:
    output = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    return len(output.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=50, help="server/client process pairs")
    parser.add_argument("--connections", type=int, default=500, help="connections per pair")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool (best is kept)")
    options = parser.parse_args()

    ss = shutil.which("ss")
    if ss is None:
        print("ss (iproute2) is required", file=sys.stderr)
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"fd limit {soft}/{hard}; starting {2 * options.pairs} processes holding "
          f"{2 * options.pairs * options.connections} sockets ...", flush=True)
    load = start_load(options.pairs, options.connections)
    try:
        print(f"TCP sockets on the machine: {count_tcp_sockets()}; network namespaces: "
              f"{count_namespaces()}; load average: {os.getloadavg()[0]:.2f}")
        (payload_time, payload_cpu, payload_rss), (ss_time, ss_cpu, _) = interleaved_best(
            [[sys.executable, str(PAYLOAD)], [ss, "-tanp"]], options.runs)
    finally:
        stop_load(load)

    ratio = payload_time / ss_time
    print(f"payload (python3 capture.py): {payload_time:.3f} s wall, {payload_cpu:.3f} s CPU (best of {options.runs})")
    print(f"ss -tanp:                     {ss_time:.3f} s wall, {ss_cpu:.3f} s CPU (best of {options.runs})")
    print(f"ratio payload/ss (wall): {ratio:.2f} (target <= 0.80) {'OK' if ratio <= 0.8 else 'MISSED'}")
    print(f"ratio payload/ss (CPU):  {payload_cpu / ss_cpu:.2f}")
    print(f"payload peak RSS: {payload_rss / 1024:.1f} MiB (target < 64 MiB) "
          f"{'OK' if payload_rss < 64 * 1024 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

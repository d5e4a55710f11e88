"""Benchmark: the capture payload on a container host: 40 network namespaces, 50,000 sockets.

The load is real: NAMESPACES holder processes, each alone in a network namespace of its own
(`unshare --net`, loopback up), each holding CONNECTIONS established loopback TCP connections
(both ends: 2 x CONNECTIONS sockets) and a listener, and a few UDP sockets (40 x 625 x 2 =
50,000 TCP sockets). With `--v6 F` a fraction F of the connections goes over ::1.

The payload runs as it does over SSH (`python3 - < capture.py`), in turn:

* before: the payload of a git revision (`--before-rev`, default HEAD), read with `git show`
  (no file is written); that is today's payload when the working tree holds the change;
* after: the payload of the working tree (netlink in every namespace, through a child each);
* text: the working tree's payload with `--no-netlink` (every table from /proc text), for
  reference.

Every run is at nice -20 by default (`--nice`), so that other load on the machine weighs less
on the wall times. It prints the median and best wall and CPU time of each over RUNS rounds (interleaved), the
ratio before/after (target: >= 2), and the peak memory: the payload process's own peak RSS,
its largest child's (which shares the parent's pages), and the largest child's private memory
(the pages it did not share: what the child adds), against the target of 64 MiB.

As root, the benchmark runs in a pid namespace of its own (`unshare --pid --fork --mount-proc`),
so that the payload sees only the benchmark's processes; the kernel's socket tables are the
machine's, though, and every namespace's dump walks every TCP socket of the machine, so the
script prints how many there are. Everything it starts ends with it (the pid namespace's
init is the script: the kernel kills the rest when it exits), also on Ctrl-C or a failure.

Run as: python3 benchmarks/bench_capture_namespaces.py [--namespaces 40] [--connections 625]
        [--runs 5] [--v6 0] [--before-rev HEAD]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "netviz" / "payload" / "capture.py"
INNER = "NETVIZ_BENCH_NAMESPACES_INNER"

# One holder per namespace, run with `python3 -c`: `count` connections to its own listener,
# a fraction of them over ::1, two UDP sockets; it holds them until stdin closes.
HOLDER = r"""
import resource, socket, sys
count, v6 = int(sys.argv[1]), float(sys.argv[2])
need = 2 * count + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
held = []
six = int(count * v6)
for family, host, n in ((socket.AF_INET, "127.0.0.1", count - six), (socket.AF_INET6, "::1", six)):
    if not n:
        continue
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(n)
    port = listener.getsockname()[1]
    held.append(listener)
    for _ in range(n):
        client = socket.create_connection((host, port))
        held.append(client)
        held.append(listener.accept()[0])
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.connect(udp.getsockname())
held += [udp, peer]
print("ready", flush=True)
sys.stdin.read()
"""

# Runs a payload given on stdin as `python3 -` would, its stdout to /dev/null, and reports on
# stderr the peak RSS of the payload process and of its largest child, and the largest child's
# private memory (read in each child just after it serialised its reply: marshal.dumps).
RUNNER = r"""
import marshal, os, resource, sys
source = sys.stdin.buffer.read()
namespace = {"__name__": "payload", "__file__": "<stdin>"}
exec(compile(source, "<stdin>", "exec"), namespace)
private = []

class Marshal(object):
    loads = staticmethod(marshal.loads)

    @staticmethod
    def dumps(value):
        data = marshal.dumps(value)
        kib = 0
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    kib += int(line.split()[1])
        os.write(2, ("NVBENCH-CHILD %d\n" % kib).encode())
        return data

if "marshal" in namespace:
    namespace["marshal"] = Marshal
sys.argv = ["-"] + sys.argv[1:]
status = namespace["main"](sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
os.write(2, ("NVBENCH-RSS %d %d\n" % (own, children)).encode())
sys.exit(status)
"""


def start_load(namespaces: int, connections: int, v6: float) -> list[subprocess.Popen]:
    """One holder per new network namespace; returns them once every one is ready."""
    processes: list[subprocess.Popen] = []
    for _ in range(namespaces):
        processes.append(subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2" "$3"',
             sys.executable, HOLDER, str(connections), str(v6)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for process in processes:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"holder {process.pid} failed to start")
    return processes


def stop_load(processes: list[subprocess.Popen]) -> None:
    """Close every holder's stdin (it exits, and its namespace with it); kill the slow ones."""
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


def run_payload(source: bytes, args: list[str], nice: int) -> dict:
    """One run: wall and CPU seconds (the payload and its children), peak memory in KiB."""
    started = time.perf_counter()
    before = os.times()
    result = subprocess.run([sys.executable, "-c", RUNNER, *args], input=source,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    wall = time.perf_counter() - started
    after = os.times()
    if result.returncode != 0:
        raise RuntimeError(f"payload {args} failed: {result.stderr.decode()[-2000:]}")
    own = children = 0
    private = [0]
    for line in result.stderr.decode().splitlines():
        if line.startswith("NVBENCH-RSS "):
            own, children = map(int, line.split()[1:])
        elif line.startswith("NVBENCH-CHILD "):
            private.append(int(line.split()[1]))
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "cpu": cpu, "rss": own, "child_rss": children, "child_private": max(private),
            "entered": len(private) - 1}


# In a new, empty network namespace: the CPU of one sock_diag dump of its TCP sockets (none), i.e.
# of the kernel's walk over every TCP socket of the machine that each namespace's dump (and each
# tcp or tcp6 text) costs, best of 7.
WALK = r"""
import resource, socket, sys
sys.path.insert(0, sys.argv[1])
from netviz.payload import capture
best = None
for _ in range(7):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    capture.netlink_inet_sockets(socket.AF_INET, socket.IPPROTO_TCP, "tcp")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = usage.ru_utime + usage.ru_stime - before
    best = spent if best is None else min(best, spent)
print(best)
"""


def walk_cpu() -> float:
    """CPU seconds of one walk of the machine's TCP sockets by the kernel (see WALK)."""
    result = subprocess.run(["unshare", "--net", sys.executable, "-c", WALK, str(ROOT)],
                            capture_output=True, text=True, check=True)
    return float(result.stdout)


def machine_tcp_sockets() -> int:
    """TCP sockets in the machine's tables (every namespace): what each dump walks."""
    with open("/proc/net/sockstat") as handle:
        for line in handle:
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("alloc") + 1])
    return -1


def inner(options: argparse.Namespace) -> int:
    before_source = subprocess.run(["git", "-C", str(ROOT), "show", f"{options.before_rev}:netviz/payload/capture.py"],
                                   capture_output=True, check=True).stdout
    after_source = PAYLOAD.read_bytes()
    variants = [("before", before_source, []), ("after", after_source, []),
                ("text", after_source, ["--no-netlink"])]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"fd limit {soft}/{hard}; starting {options.namespaces} namespaces x {options.connections} "
          f"connections ({2 * options.namespaces * options.connections} TCP sockets, "
          f"{options.v6:.0%} over ::1) ...", flush=True)
    started = time.perf_counter()
    load = start_load(options.namespaces, options.connections, options.v6)
    try:
        print(f"load ready in {time.perf_counter() - started:.1f} s; TCP sockets on the machine "
              f"(all namespaces): {machine_tcp_sockets()}; load average {os.getloadavg()[0]:.2f}; "
              f"{os.cpu_count()} CPUs; payload runs at nice {options.nice}", flush=True)
        results: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
        for _ in range(options.runs):
            for name, source, args in variants:
                results[name].append(run_payload(source, args, options.nice))
        walk = walk_cpu()
    finally:
        stop_load(load)

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in results[name])

    print(f"{'':8} {'wall median':>12} {'wall best':>10} {'CPU median':>11} {'RSS MiB':>8} "
          f"{'child RSS':>10} {'child private':>14} {'netns entered':>14}")
    for name, _, _ in variants:
        runs = results[name]
        print(f"{name:8} {median(name, 'wall'):11.3f}s {min(r['wall'] for r in runs):9.3f}s "
              f"{median(name, 'cpu'):10.3f}s {max(r['rss'] for r in runs) / 1024:8.1f} "
              f"{max(r['child_rss'] for r in runs) / 1024:10.1f} "
              f"{max(r['child_private'] for r in runs) / 1024:14.1f} {runs[0]['entered']:14d}")
    ratio = median("before", "wall") / median("after", "wall")
    print(f"speed-up before/after (median wall, {options.runs} runs): {ratio:.2f}x (target >= 2) "
          f"{'OK' if ratio >= 2 else 'MISSED'}")
    print(f"speed-up before/after (median CPU): {median('before', 'cpu') / median('after', 'cpu'):.2f}x")
    walks = walk * options.namespaces
    print(f"one kernel walk of the machine's TCP sockets: {walk * 1000:.1f} ms CPU; one per namespace "
          f"in every variant ({options.namespaces} namespaces: {walks:.2f} s; twice through the text "
          f"where a namespace has both families): CPU besides those walks, before "
          f"{median('before', 'cpu') - walks:.2f} s, after {median('after', 'cpu') - walks:.2f} s "
          f"({(median('before', 'cpu') - walks) / max(0.001, median('after', 'cpu') - walks):.2f}x)")
    peak = max(r["rss"] + r["child_private"] for r in results["after"])
    print(f"after: peak memory {peak / 1024:.1f} MiB (payload's peak RSS + its largest child's private "
          f"memory; target 64 MiB) {'OK' if peak <= 64 * 1024 else 'MISSED'}; largest child RSS "
          f"(shared pages included) {max(r['child_rss'] for r in results['after']) / 1024:.1f} MiB")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=40, help="network namespaces (one holder each)")
    parser.add_argument("--connections", type=int, default=625, help="TCP connections per namespace")
    parser.add_argument("--runs", type=int, default=5, help="rounds (each runs every variant once)")
    parser.add_argument("--v6", type=float, default=0.0, help="fraction of the connections over ::1")
    parser.add_argument("--before-rev", default="HEAD", help="git revision of the 'before' payload")
    parser.add_argument("--nice", type=int, default=-20,
                        help="niceness of every payload run (default -20: other load on the machine "
                             "weighs less on the wall times; the same for every variant)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    for tool in ("unshare", "ip", "git"):
        if shutil.which(tool) is None:
            print(f"needs {tool}", file=sys.stderr)
            return 1
    if os.environ.get(INNER) == "1":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # as pid 1, SIGTERM is ignored otherwise
        return inner(options)
    # The script again, as pid 1 of a pid namespace: whatever it starts dies with it.
    environment = dict(os.environ, **{INNER: "1"})
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, __file__, *sys.argv[1:]],
                          env=environment).returncode


if __name__ == "__main__":
    sys.exit(main())

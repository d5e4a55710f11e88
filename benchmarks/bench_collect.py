"""Collect 32 lab machines with netviz and with plain OpenSSH; print wall times, ratio and CPU.

    sudo python3 benchmarks/bench_collect.py [--machines 32] [--rounds 3]

Builds a lab of bare machines (tests/lab: network namespaces, each with its own sshd), then
alternates rounds of
  - netviz:  `python3 -m netviz collect --inventory lab.yaml --parallel 32` (the whole command:
             interpreter start, imports, SSH, cache writes), and
  - OpenSSH: `xargs -P 32 ssh ... python3 - --framed < capture.py`, output thrown away,
and prints the median wall time of each, their ratio (target: netviz / OpenSSH <= 1.0), and
the client CPU (user + system of the client processes, from os.times) per machine.
Both ends share this box's cores, so client CPU per machine weighs on the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lab.lab import bare_lab, cleanup_stale, missing_requirements  # noqa: E402

PAYLOAD = ROOT / "netviz" / "payload" / "capture.py"


def read_run_manifest(cache: Path) -> list[dict]:
    return json.loads((cache / "latest" / "manifest.json").read_text())["hosts"]


def timed(argv: list[str], **kwargs) -> tuple[float, float]:
    """Run a command; return (wall seconds, CPU seconds of its process tree)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    reasons = missing_requirements()
    if reasons:
        print("cannot build the lab: " + "; ".join(reasons), file=sys.stderr)
        return 2
    cleanup_stale("nvbench")
    with tempfile.TemporaryDirectory(prefix="netviz-bench-") as work:
        work_dir = Path(work)
        started = time.perf_counter()
        with bare_lab(options.machines, work_dir / "lab", prefix="nvbench") as lab:
            print(f"lab: {options.machines} machines up in {time.perf_counter() - started:.1f} s")
            inventory = lab.write_inventory(work_dir / "lab.yaml", connect_timeout=10, command_timeout=60)
            addresses = "\n".join(machine.ipv4 for machine in lab.machines.values()) + "\n"
            ssh = " ".join(lab.ssh_argv(next(iter(lab.machines)))[:-1])  # everything but user@host
            ssh_script = f'exec {ssh} "root@$1" python3 - --framed < {PAYLOAD} > /dev/null'
            openssh_argv = ["xargs", "-P", str(options.machines), "-I{}", "sh", "-c", ssh_script, "_", "{}"]
            netviz_argv = [sys.executable, "-m", "netviz", "collect", "--inventory", str(inventory),
                           "--parallel", str(options.machines), "--cache", str(work_dir / "cache")]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}

            # One untimed round each: page cache, sshd key loading, ARP.
            timed(netviz_argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            timed(openssh_argv, input=addresses.encode(), stderr=subprocess.DEVNULL)

            netviz_runs, openssh_runs = [], []
            for _ in range(options.rounds):
                netviz_runs.append(timed(netviz_argv, env=env, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd=ROOT))
                openssh_runs.append(timed(openssh_argv, input=addresses.encode(), stderr=subprocess.DEVNULL))

            ok = sum(1 for entry in read_run_manifest(work_dir / "cache") if entry["status"] == "ok")

    machines = options.machines
    print(f"netviz: {ok} of {machines} machines ok in the last round")
    netviz_wall = statistics.median(wall for wall, _ in netviz_runs)
    openssh_wall = statistics.median(wall for wall, _ in openssh_runs)
    netviz_cpu = statistics.median(cpu for _, cpu in netviz_runs)
    openssh_cpu = statistics.median(cpu for _, cpu in openssh_runs)
    print(f"machines: {machines}, rounds: {options.rounds} (medians)")
    print(f"netviz collect : {netviz_wall:6.2f} s wall   client CPU {netviz_cpu:6.2f} s "
          f"= {1000 * netviz_cpu / machines:5.1f} ms per machine")
    print(f"OpenSSH xargs  : {openssh_wall:6.2f} s wall   client CPU {openssh_cpu:6.2f} s "
          f"= {1000 * openssh_cpu / machines:5.1f} ms per machine")
    ratio = netviz_wall / openssh_wall
    print(f"ratio netviz / OpenSSH wall: {ratio:.2f} (target <= 1.0: {'met' if ratio <= 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

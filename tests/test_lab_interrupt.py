"""SIGINT and SIGTERM during `netviz run`, on the lab: the run stops at once with exit code 130,
every SSH session closes on the machines (no sshd session, no payload left: the remote guard ends
them), no thread is left behind, and the cache holds the complete snapshots of the machines that
had finished, under a manifest that says which finished and which were interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest

from netviz.cache import INTERRUPTED, MANIFEST
from netviz.errors import EXIT_INTERRUPTED, EXIT_OK, Interrupted
from netviz.pipeline import CollectRequest, collect_group
from netviz.snapshot import load_snapshot
from tests.lab.fixtures import wait_until
from tests.lab.scenario import graph_flow_keys

REPO = Path(__file__).resolve().parent.parent
SCENARIO = ("web", "db", "cache")


def command_lines(machine) -> dict[int, str]:
    """Root pid -> command line of every process inside a lab machine."""
    found = {}
    for pid, _, comm in machine.processes():
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def running(machine, needle: str) -> bool:
    return any(needle in line for line in command_lines(machine).values())


def ssh_sessions(machine) -> list:
    """Established TCP connections on the machine's SSH port, according to ss inside it."""
    return [row for row in machine.sockets("-t") if row.state == "ESTAB" and row.local_port == str(machine.port)]


def run_directory(cache: Path) -> Path | None:
    runs = [path for path in cache.glob("2*") if path.is_dir()] if cache.is_dir() else []
    return runs[0] if len(runs) == 1 else None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_run_closes_every_session_and_keeps_only_complete_snapshots(lab, tmp_path, signum):
    hang, slow = lab.machines["hang"], lab.machines["slow"]
    baseline = {machine.name: set(machine.pids()) for machine in (hang, slow)}
    inventory = lab.inventory_for([*SCENARIO, "hang", "slow"], path=tmp_path / "hosts.yaml",
                                  connect_timeout=3, command_timeout=60)
    cache = tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-m", "netviz", "run", "--inventory", str(inventory), "--cache", str(cache),
         "--format", "json", "--output", str(tmp_path / "map.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # Underway: the scenario's snapshots are written, hang's payload hangs, slow's has not started.
        wait_until(lambda: running(hang, "sleep infinity") and running(slow, "sleep 4"), 20, "hang and slow busy")
        wait_until(lambda: (run := run_directory(cache)) and all((run / f"{n}.json").exists() for n in SCENARIO),
                   20, "the scenario's snapshots")
        assert running(slow, "sleep 4"), "slow finished before the signal: the test lost its window"
        signalled = time.monotonic()
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=15)
        exited_after = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr.decode()
    assert exited_after < 5, exited_after
    assert b"interrupted" in stderr and stdout == b""
    assert not (tmp_path / "map.json").exists()

    # On the machines: the sessions are closed and every process the run started is gone.
    for machine in (hang, slow):
        wait_until(lambda: set(machine.pids()) <= baseline[machine.name], 5,
                   f"{machine.name} back to its own processes (left: {command_lines(machine)})")
        assert ssh_sessions(machine) == [], machine.name

    # The cache: complete snapshots of what finished, and a manifest that says what did not.
    run = run_directory(cache)
    manifest = json.loads((run / MANIFEST).read_text())
    assert manifest["interrupted"] is True
    hosts = {entry["host"]: entry for entry in manifest["hosts"]}
    assert list(hosts) == [*SCENARIO, "hang", "slow"]
    for name in SCENARIO:
        assert hosts[name]["status"] == "ok" and hosts[name]["snapshot"] == f"{name}.json", hosts[name]
        assert load_snapshot(run / hosts[name]["snapshot"], name=name).host.hostname == name
    for name in ("hang", "slow"):
        assert hosts[name]["status"] == INTERRUPTED and hosts[name]["snapshot"] is None, hosts[name]
    assert sorted(path.name for path in run.iterdir()) == sorted([MANIFEST, *(f"{n}.json" for n in SCENARIO)])
    assert not (cache / "latest").exists()  # an interrupted run never becomes `latest`

    # Its finished part can still be stitched, with a message saying the run was interrupted.
    stitched = subprocess.run([sys.executable, "-m", "netviz", "stitch", run.name, "--cache", str(cache),
                               "--format", "json"], cwd=REPO, capture_output=True, timeout=60)
    assert stitched.returncode == EXIT_OK, stitched.stderr.decode()
    assert b"was interrupted: 3 of 5 machines finished" in stitched.stderr
    assert graph_flow_keys(json.loads(stitched.stdout)) == lab.scenario.flow_keys()


def netviz_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name.startswith("netviz-collect") or isinstance(thread, paramiko.Transport)]


def test_interrupted_collection_leaves_no_thread_and_returns_what_finished(lab, tmp_path):
    """In-process: KeyboardInterrupt in the main thread (what SIGINT and netviz's SIGTERM
    handler raise) while a machine hangs: collect_group returns promptly, no worker or paramiko
    thread survives, and the machines that had finished are in the error and in the cache."""
    assert netviz_threads() == []
    hang = lab.machines["hang"]
    inventory = lab.inventory_for(["web", "hang"], path=tmp_path / "hosts.yaml", command_timeout=60)
    request = CollectRequest(inventory=inventory, cache_dir=tmp_path / "cache")

    def interrupt_when_hanging() -> None:
        wait_until(lambda: running(hang, "sleep infinity"), 20, "the hanging payload")
        wait_until(lambda: run_directory(tmp_path / "cache") and (run_directory(tmp_path / "cache") / "web.json").exists(),
                   20, "web's snapshot")
        os.kill(os.getpid(), signal.SIGINT)

    trigger = threading.Thread(target=interrupt_when_hanging, daemon=True)
    trigger.start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as raised:
        collect_group(request)
    elapsed = time.monotonic() - started
    trigger.join(5)
    assert elapsed < 20
    assert [result.name for result in raised.value.finished] == ["web"]
    assert not [thread for thread in netviz_threads() if thread.name.startswith("netviz-collect")]
    # paramiko's transport threads notice their closed sockets within their read timeout.
    wait_until(lambda: netviz_threads() == [], 3, "paramiko threads to end")
    assert "1 of 2 machines had finished" in str(raised.value)
    wait_until(lambda: not running(hang, "sleep infinity"), 5, "the hanging payload to end on the machine")


def test_collector_killed_mid_run_leaves_a_usable_cache_and_no_remote_process(lab, tmp_path):
    """SIGKILL (no handler runs): the run directory has no manifest, so the cache ignores it;
    `latest` and `netviz stitch` still give the previous complete run; the machine's guard ends
    the payload the killed collector left hanging."""
    hang = lab.machines["hang"]
    baseline = set(hang.pids())
    cache = tmp_path / "cache"
    complete = subprocess.run([sys.executable, "-m", "netviz", "collect", "-i", str(lab.scenario_inventory),
                               "--cache", str(cache)], cwd=REPO, capture_output=True, timeout=120)
    assert complete.returncode == EXIT_OK, complete.stderr.decode()
    previous = os.readlink(cache / "latest")
    inventory = lab.inventory_for([*SCENARIO, "hang"], path=tmp_path / "hosts.yaml", command_timeout=60)
    process = subprocess.Popen([sys.executable, "-m", "netviz", "collect", "-i", str(inventory), "--cache", str(cache)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def killed_run() -> Path | None:
            runs = [path for path in cache.glob("2*") if path.name != previous]
            return runs[0] if runs and all((runs[0] / f"{n}.json").exists() for n in SCENARIO) else None

        wait_until(lambda: killed_run() and running(hang, "sleep infinity"), 20, "the collection underway")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        process.wait()
    run = killed_run()
    assert not (run / MANIFEST).exists()
    assert os.readlink(cache / "latest") == previous
    stitched = subprocess.run([sys.executable, "-m", "netviz", "stitch", "--cache", str(cache), "--format", "json"],
                              cwd=REPO, capture_output=True, timeout=60)
    assert stitched.returncode == EXIT_OK, stitched.stderr.decode()
    assert graph_flow_keys(json.loads(stitched.stdout)) == lab.scenario.flow_keys()
    # Its snapshots that were written are whole (atomic writes).
    for name in SCENARIO:
        assert load_snapshot(run / f"{name}.json", name=name).host.hostname == name
    wait_until(lambda: set(hang.pids()) <= baseline, 5, f"hang back to its own processes ({command_lines(hang)})")

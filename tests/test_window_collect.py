"""`netviz collect/run --window`: one observation window for the whole group.

The orchestrator picks one start time a little ahead and gives every machine's payload
`--window W --start-at T`; the window and the wait for it are not charged to command_timeout;
Ctrl-C during the window ends the run at once and leaves nothing on the machines. End to end on
real sshd machines of the lab (one of them through sudo), and on this machine without SSH.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from typer.testing import CliRunner

from netviz.cache import MANIFEST, RunWindow, RunWriter, read_run
from netviz.cli import app
from netviz.collect import HostResult
from netviz.console import window_status
from netviz.errors import EXIT_INTERRUPTED, EXIT_OK
from netviz.inventory import HostSpec
from netviz.pipeline import window_notes
from netviz.snapshot import load_snapshot
from netviz.transport import KILL_GRACE, LocalTransport, SSHTransport, TransportOptions, WindowPlan, remote_command
from netviz.transport.base import WINDOW_START_DELAY, WINDOW_START_DELAY_MIN
from netviz.transport.local import LOCAL_SLACK
from netviz.transport.ssh_command import PasswordProof
from tests.lab.fixtures import _teardown_on_sigterm, skip_unless_lab_possible, unique_prefix, wait_until
from tests.lab.lab import SUDO_NOPASSWD_USER, bare_lab

REPO = Path(__file__).resolve().parent.parent
PORT = 7070
# A server on m01 and a client on m00 holding one connection open through every window.
SERVER = (
    "import socket, time\n"
    "open('/proc/self/comm', 'w').write('win-server')\n"
    f"s = socket.create_server(('0.0.0.0', {PORT}))\n"
    "held = []\n"
    "while True:\n"
    "    held.append(s.accept()[0])\n"
)
CLIENT = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('win-client')\n"
    f"c = socket.create_connection((sys.argv[1], {PORT}))\n"
    "time.sleep(100000)\n"
)


def netviz(*arguments: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m netviz ARGUMENTS` and the seconds it took."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "netviz", *arguments], cwd=REPO, capture_output=True,
                            timeout=timeout)
    return result, time.monotonic() - started


def latest_manifest(cache: Path) -> dict:
    return json.loads((cache / "latest" / MANIFEST).read_text())


# ------------------------------------------------------------------------------------------
# the lab: three bare machines, m02 collected as a user who may sudo without a password


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    skip_unless_lab_possible()
    root = tmp_path_factory.mktemp("window-lab")
    with _teardown_on_sigterm(), bare_lab(3, root, prefix=unique_prefix("nvw")) as lab:
        server, client = lab.machines["m01"], lab.machines["m00"]
        server.run(["python3", "-c", SERVER], log_name="win-server")
        wait_until(lambda: f":{PORT}" in server.exec(["ss", "-tlnH"]).stdout, 20, "the server to listen")
        client.run(["python3", "-c", CLIENT, server.ipv4], log_name="win-client")
        wait_until(lambda: f":{PORT}" in client.exec(["ss", "-tnH"]).stdout, 20, "the client's connection")
        yield lab


def inventory(lab, path: Path, **defaults) -> Path:
    """Every machine of the lab; m02 logs in as a user who runs the payload through `sudo -n`."""
    written = lab.write_inventory(path, **defaults)
    document = yaml.safe_load(written.read_text())
    document["hosts"]["m02"].update({"user": SUDO_NOPASSWD_USER, "sudo": True})
    written.write_text(yaml.safe_dump(document, sort_keys=False))
    return written


def window_payloads(machine) -> list[int]:
    """Pids of the payloads observing a window inside a machine (their command lines say so)."""
    found = []
    for pid in machine.pids():
        try:
            line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--start-at" in line:
            found.append(pid)
    return found


def test_every_machine_observes_the_same_interval(group, tmp_path):
    cache = tmp_path / "cache"
    result, took = netviz("collect", "-i", str(inventory(group, tmp_path / "hosts.yaml")), "--cache", str(cache),
                          "--window", "5s")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    manifest = latest_manifest(cache)
    start_at = manifest["window_start_at"]
    assert manifest["window_seconds"] == 5.0
    # The start is chosen a few seconds ahead of the run's start (the group's logins).
    assert 0 < start_at - manifest["started_at"] <= WINDOW_START_DELAY + 0.5
    # About the window, the wait for its start and the closing capture: not twice the window.
    assert 5 <= took < 5 + WINDOW_START_DELAY + 8, took
    windows = {}
    for entry in manifest["hosts"]:
        snapshot = load_snapshot(cache / "latest" / entry["snapshot"], name=entry["host"])
        assert snapshot.window is not None, entry["host"]
        windows[entry["host"]] = snapshot.window
    assert sorted(windows) == ["m00", "m01", "m02"]
    for name, window in windows.items():
        assert window.requested == 5.0 and window.start_at == start_at, name
        assert abs(window.started_at - start_at) < 1.0, (name, window.started_at, start_at)
        assert window.ended_at - window.started_at == pytest.approx(5.0, abs=1.0), name
    starts = [window.started_at for window in windows.values()]
    assert max(starts) - min(starts) < 1.0, starts
    # The connection alive through the window is persistent at both of its ends.
    client = [flow for flow in windows["m00"].flows if flow.remote_port == PORT and flow.role == "client"]
    server = [flow for flow in windows["m01"].flows if flow.local_port == PORT and flow.role == "server"]
    assert client and client[0].persistent, windows["m00"].flows
    assert server and server[0].persistent, windows["m01"].flows
    assert b"window began" not in result.stderr  # no machine late


def test_the_window_is_not_charged_to_command_timeout(group, tmp_path):
    """A 6 s window on machines whose command_timeout is 3 s: the collection after the window
    fits in 3 s, so every machine answers (before, the remote `timeout` killed the payload)."""
    cache = tmp_path / "cache"
    hosts = inventory(group, tmp_path / "hosts.yaml", command_timeout=3)
    result, took = netviz("collect", "-i", str(hosts), "--cache", str(cache), "--window", "6s")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert took >= 6
    for entry in latest_manifest(cache)["hosts"]:
        assert entry["status"] == "ok", entry
        assert load_snapshot(cache / "latest" / entry["snapshot"]).window.requested == 6.0


def test_ctrl_c_during_the_window_ends_the_run_and_every_payload(group, tmp_path):
    machines = list(group.machines.values())
    hosts = inventory(group, tmp_path / "hosts.yaml")
    process = subprocess.Popen(
        [sys.executable, "-m", "netviz", "collect", "-i", str(hosts), "--cache", str(tmp_path / "cache"),
         "--window", "60s"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: all(window_payloads(machine) for machine in machines), 20, "every payload observing")
        time.sleep(WINDOW_START_DELAY)  # well inside the window
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
        exited_after = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr.decode()
    assert exited_after < 5, exited_after
    # The remote guard ends each payload once its session is gone (within about a second).
    for machine in machines:
        wait_until(lambda: not window_payloads(machine), 5, f"the payload on {machine.name} to end")


def _python36() -> str:
    """The real path of a Python 3.6 interpreter on this machine (the oldest the payload supports)."""
    for candidate in ("python3.6", str(Path.home() / ".pyenv/versions/3.6.15/bin/python3.6")):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.executable, sys.version_info[:2] == (3, 6))"],
                               capture_output=True, text=True) if shutil.which(candidate) else None
        if probe is not None and probe.returncode == 0 and probe.stdout.split()[-1] == "True":
            return probe.stdout.split()[0]
    pytest.skip("no Python 3.6 on this machine (CI's machine has one under ~/.pyenv)")


def test_a_window_through_a_jump_host_on_python_3_6(group, tmp_path):
    """m01 reached through m00 as a jump host, its payload run by Python 3.6: the window is
    observed there all the same, and the connection alive through it is persistent."""
    interpreter = _python36()
    hosts = tmp_path / "hosts.yaml"
    document = yaml.safe_load(group.write_inventory(hosts).read_text())
    document["hosts"]["m01"].update({"jump": "m00", "python": interpreter})
    hosts.write_text(yaml.safe_dump(document, sort_keys=False))
    cache = tmp_path / "cache"
    m01 = group.machines["m01"]
    log_size = m01.sshd_log.stat().st_size
    result, _ = netviz("collect", "-i", str(hosts), "--cache", str(cache), "--window", "3s")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    entry = next(entry for entry in latest_manifest(cache)["hosts"] if entry["host"] == "m01")
    snapshot = load_snapshot(cache / "latest" / entry["snapshot"], name="m01")
    assert snapshot.host.python.startswith("3.6."), snapshot.host.python
    window = snapshot.window
    assert window is not None and window.requested == 3.0 and window.samples >= 2, window
    server = [flow for flow in window.flows if flow.local_port == PORT and flow.role == "server"]
    assert server and server[0].persistent, window.flows
    # the login came through m00: m01's sshd saw it from m00's address
    with open(m01.sshd_log) as log:
        log.seek(log_size)
        logins = [line for line in log if "Accepted publickey" in line]
    assert logins and all(f"from {group.machines['m00'].ipv4} " in line for line in logins), logins


# ------------------------------------------------------------------------------------------
# this machine, without SSH


def test_local_collect_with_a_window(tmp_path):
    cache = tmp_path / "cache"
    result, took = netviz("collect", "--cache", str(cache), "--window", "2s")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert took >= 2
    manifest = latest_manifest(cache)
    assert manifest["window_seconds"] == 2.0
    [entry] = manifest["hosts"]
    window = load_snapshot(cache / "latest" / entry["snapshot"]).window
    assert window is not None and window.requested == 2.0 and window.start_at == manifest["window_start_at"]
    assert abs(window.started_at - window.start_at) < 1.0


def test_local_run_with_a_window_draws_the_map(tmp_path):
    output = tmp_path / "map.json"
    result = CliRunner().invoke(app, ["run", "--cache", str(tmp_path / "cache"), "--window", "1s", "-o", str(output)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    assert "nodes" in json.loads(output.read_text())
    assert latest_manifest(tmp_path / "cache")["window_seconds"] == 1.0


def test_an_instant_collect_records_no_window(tmp_path):
    cache = tmp_path / "cache"
    result, _ = netviz("collect", "--cache", str(cache))
    assert result.returncode == EXIT_OK, result.stderr.decode()
    manifest = latest_manifest(cache)
    assert "window_seconds" not in manifest and "window_start_at" not in manifest
    [entry] = manifest["hosts"]
    assert load_snapshot(cache / "latest" / entry["snapshot"]).window is None


@pytest.mark.parametrize("text", ["-1", "2 weeks", "3601"])
def test_a_bad_window_is_a_usage_error(text, tmp_path):
    result = CliRunner().invoke(app, ["collect", "--cache", str(tmp_path / "cache"), "--window", text],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------
# the pieces


PLAN = WindowPlan(seconds=10.0, start_at=1_800_000_000.25, delay=3.0)


@pytest.mark.parametrize("sudo,with_password", [(False, False), (True, False), ("password", True)])
def test_an_instant_capture_sends_todays_command(sudo, with_password):
    """Without a window the command is the instant capture's; with one, it differs only by the
    payload's two options and a remote timeout longer by the wait and the window."""
    spec = HostSpec(name="h", address="h", sudo=sudo, command_timeout=20)
    proof = PasswordProof(123456789, 987654321)
    today = remote_command(spec, with_password=with_password, proof=proof)
    assert remote_command(spec, with_password, proof, window=None) == today
    assert "--window" not in today and "--start-at" not in today
    windowed = remote_command(spec, with_password, proof, window=PLAN)
    options = " --window 10 --start-at 1800000000.250"
    assert windowed.count("--ssh-session" + options) == today.count("--ssh-session")
    back = windowed.replace(options, "").replace(f"timeout -k {KILL_GRACE} 33 ", f"timeout -k {KILL_GRACE} 20 ")
    assert back == today


def test_every_limit_grows_by_the_window_and_its_start():
    spec = HostSpec(name="h", address="h", connect_timeout=2, command_timeout=30)
    assert PLAN.extra == 13.0
    assert SSHTransport(TransportOptions(window=PLAN)).deadline(spec) == SSHTransport().deadline(spec) + 13.0
    assert LocalTransport(PLAN).deadline(spec) == 30 + 13.0 + LOCAL_SLACK
    assert LocalTransport().deadline(spec) == 30 + LOCAL_SLACK


def test_the_start_is_a_few_seconds_ahead_bounded_by_the_connect_timeouts():
    assert WindowPlan.starting_soon(5, [10, 30], now=100.0) == WindowPlan(5, 100.0 + WINDOW_START_DELAY,
                                                                         WINDOW_START_DELAY)
    assert WindowPlan.starting_soon(5, [1, 2], now=100.0).delay == 2
    assert WindowPlan.starting_soon(5, [0.0], now=100.0).delay == WINDOW_START_DELAY_MIN
    assert WindowPlan.starting_soon(5, [], now=100.0).delay == WINDOW_START_DELAY


def test_the_local_child_gets_the_window(tmp_path):
    """The local transport runs the payload with --window and --start-at, and waits past
    command_timeout for it."""
    from netviz.transport import Attempt, Timings, local_target

    script = b"import sys\nsys.stdout.write(' '.join(sys.argv[1:]))\n"
    plan = WindowPlan(seconds=1.5, start_at=time.time(), delay=0.5)
    out = LocalTransport(plan).fetch(local_target("here", 5), script, Attempt(), Timings())
    assert out.decode() == f"--framed --window 1.5 --start-at {plan.start_at:.3f}"
    sleeper = b"import time\ntime.sleep(1.5)\n"
    LocalTransport(plan).fetch(local_target("here", 0.5), sleeper, Attempt(), Timings())  # 0.5 + 2 s allowed


def test_the_manifest_records_the_window_and_older_manifests_load(tmp_path):
    writer = RunWriter(tmp_path / "cache")
    run = writer.finish(window=RunWindow(10.0, 1_800_000_000.25))
    assert read_run(run.path).window == RunWindow(10.0, 1_800_000_000.25)
    document = json.loads((run.path / MANIFEST).read_text())
    del document["window_seconds"], document["window_start_at"]
    (run.path / MANIFEST).write_text(json.dumps(document))
    assert read_run(run.path).window is None


def test_the_progress_says_what_the_window_is_doing():
    assert window_status(100.0, 10, now=97.2) == "10 s window opens in 3 s"
    assert window_status(100.0, 10, now=103.5) == "observing 10 s window, 7 s left"
    assert window_status(100.0, 10, now=110.5) == "window over, collecting"


def test_late_windows_and_clocks_ahead_are_reported(tmp_path):
    cache = tmp_path / "cache"
    result, _ = netviz("collect", "--cache", str(cache), "--window", "1s")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    [entry] = latest_manifest(cache)["hosts"]
    snapshot = load_snapshot(cache / "latest" / entry["snapshot"], name="here")
    on_time = WindowPlan(1.0, snapshot.window.started_at, 0.5)
    received = snapshot.host.captured_at + 0.3
    fine = HostResult("here", "ok", snapshot=snapshot, finished_at=received)
    assert window_notes([fine], on_time) == []
    early = WindowPlan(1.0, snapshot.window.started_at - 4, 0.5)
    [note] = window_notes([fine], early)
    assert note.startswith("here: its window began 4.0 s after the group's"), note
    ahead = HostResult("here", "ok", snapshot=snapshot, finished_at=snapshot.host.captured_at - 5)
    [note] = window_notes([ahead], on_time)
    assert "clock is at least 5.0 s ahead" in note


def local_window_payloads() -> list[int]:
    """Pids of payloads on this machine observing a window (their command lines say so)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"--start-at" in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_during_a_local_window_kills_the_child(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "netviz", "collect", "--cache", str(tmp_path / "cache"),
                                "--window", "60s"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        child = wait_until(lambda: [pid for pid in local_window_payloads()
                                    if Path(f"/proc/{pid}/stat").read_text().split()[3] == str(process.pid)],
                           20, "the payload observing")
        time.sleep(1)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
        exited_after = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED, stderr.decode()
    assert exited_after < 5, exited_after
    wait_until(lambda: not set(child) & set(local_window_payloads()), 5, "the payload to end")

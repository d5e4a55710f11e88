"""Security on the lab: no agent forwarding (a real ssh-agent holds the key), the sudo password
never in a process list (here and on the machine), a log, the cache or an output; the payload
writes nothing on the machine and leaves no process; the cache is owner-only under any umask.
Host keys: tests/test_hostkeys_lab.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from netviz.pipeline import CollectRequest, collect_group
from netviz.transport import SUDO_PASSWORD_ENV
from tests.lab.lab import SUDO_NOPASSWD_USER, SUDO_PASSWORD, SUDO_PASSWORD_USER

REPO = Path(__file__).resolve().parent.parent


def netviz(*args: str, env: dict | None = None, umask: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "netviz", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})}, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def machine_processes(machine) -> dict[int, tuple[str, bytes]]:
    """Root pid -> (command line, raw environment) of every process inside a lab machine."""
    found = {}
    for pid, _, _ in machine.processes():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[pid] = (cmdline, Path(f"/proc/{pid}/environ").read_bytes())
        except OSError:
            continue
    return found


def watch_while(process: subprocess.Popen, look: Callable[[], None], timeout: float = 60) -> tuple[bytes, bytes]:
    """Call `look` repeatedly while `process` runs; return its output."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        look()
        time.sleep(0.05)
    return process.communicate(timeout=30)


def sudo_inventory(lab, path: Path, host: str, **defaults) -> Path:
    inventory = lab.inventory_for([host], path=path, **defaults)
    document = yaml.safe_load(inventory.read_text())
    document["hosts"][host].update(user=SUDO_PASSWORD_USER, sudo="password")
    inventory.write_text(yaml.safe_dump(document))
    return inventory


# ------------------------------------------------------------------------------ agent forwarding


@pytest.fixture
def ssh_agent(lab, tmp_path):
    """A real ssh-agent holding the lab's client key; yields its socket path."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent / ssh-add (openssh-client) missing")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        subprocess.run(["ssh-add", str(lab.client_key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        yield str(sock)
    finally:
        agent.kill()
        agent.wait()


def test_no_agent_forwarding_even_with_an_agent_holding_the_key(lab, tmp_path, ssh_agent):
    slow = lab.machines["slow"]
    # Control: the lab's sshd does forward an agent to a client that asks (OpenSSH's ssh -A).
    argv = lab.ssh_argv("slow")
    forwarded = subprocess.run([*argv[:-1], "-A", argv[-1], "printenv SSH_AUTH_SOCK"], capture_output=True,
                               text=True, env={**os.environ, "SSH_AUTH_SOCK": ssh_agent}, timeout=60)
    assert forwarded.returncode == 0 and forwarded.stdout.strip(), forwarded

    # netviz with the agent available (and used for authentication): nothing forwarded. The slow
    # machine's payload waits 4 s: the environment of its session's processes is read meanwhile.
    inventory = lab.inventory_for(["slow"], path=tmp_path / "hosts.yaml")
    process = netviz("collect", "-i", str(inventory), "--cache", str(tmp_path / "cache"),
                     env={"SSH_AUTH_SOCK": ssh_agent})
    environments: dict[int, bytes] = {}

    def look() -> None:
        for pid, (_, environ) in machine_processes(slow).items():
            if b"SSH_CONNECTION=" in environ:  # started by an SSH session
                environments[pid] = environ

    _, stderr = watch_while(process, look)
    assert process.returncode == 0, stderr.decode()
    assert environments, "no process of the session was seen"
    assert not [pid for pid, environ in environments.items() if b"SSH_AUTH_SOCK=" in environ]


# ------------------------------------------------------------------------------ the sudo password


def test_sudo_password_never_in_process_lists_logs_cache_or_outputs(lab, tmp_path):
    """The slow machine (python3 starts 4 s late) logged into as labsudo with `sudo: password`:
    while the payload runs, `ps -eo args` here (which lists the lab machines' processes too) and
    every process's command line and environment on the machine are read."""
    slow = lab.machines["slow"]
    inventory = sudo_inventory(lab, tmp_path / "hosts.yaml", "slow", command_timeout=30)
    cache = tmp_path / "cache"
    output = tmp_path / "map.json"
    process = netviz("run", "-i", str(inventory), "--cache", str(cache), "-o", str(output), "--log", "debug",
                     env={SUDO_PASSWORD_ENV: SUDO_PASSWORD})
    seen_payload: list[str] = []
    leaks: list[str] = []

    def look() -> None:
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if SUDO_PASSWORD in listing:
            leaks.append("ps -eo args")
        for _, (cmdline, environ) in machine_processes(slow).items():
            if "timeout -k" in cmdline:
                seen_payload.append(cmdline)
            if SUDO_PASSWORD in cmdline or SUDO_PASSWORD.encode() in environ:
                leaks.append(f"on the machine: {cmdline}")

    stdout, stderr = watch_while(process, look)
    assert process.returncode == 0, stderr.decode()
    assert seen_payload, "the payload was never seen running"
    assert leaks == []
    assert "running exec sh -c" in stderr.decode()  # --log debug did log the remote command...
    assert SUDO_PASSWORD.encode() not in stdout + stderr  # ...and nothing of the password
    snapshot = json.loads((cache / "latest" / "slow.json").read_text())
    assert snapshot["coverage"]["euid"] == 0  # it did run as root through sudo
    files = [path for path in [*cache.rglob("*"), output] if path.is_file()]
    assert len(files) >= 3
    for path in files:
        assert SUDO_PASSWORD.encode() not in path.read_bytes(), path


def test_sudo_password_never_in_any_log_record_even_at_debug(lab, tmp_path, caplog):
    """In-process, every logger at DEBUG (paramiko's packet-level log included)."""
    inventory = sudo_inventory(lab, tmp_path / "hosts.yaml", "sudopass")
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="netviz")  # the CLI may have set it higher in this process
    caplog.set_level(logging.DEBUG, logger="paramiko")
    try:
        os.environ[SUDO_PASSWORD_ENV] = SUDO_PASSWORD
        outcome = collect_group(CollectRequest(inventory=inventory, cache_dir=tmp_path / "cache"))
    finally:
        os.environ.pop(SUDO_PASSWORD_ENV, None)
    assert outcome.results[0].ok, outcome.results[0].message
    assert any(record.name.startswith("paramiko") for record in caplog.records)
    assert any(record.name.startswith("netviz") for record in caplog.records)
    assert [record.getMessage() for record in caplog.records if SUDO_PASSWORD in record.getMessage()] == []


# ------------------------------------------------------------------------------ nothing left behind

WATCHED_DIRECTORIES = ("/tmp", "/root", "/var/tmp", "/dev/shm", "/home")


def file_listing(machine) -> list[str]:
    """Every file and directory under the watched directories: path, type, size, mode, mtime."""
    result = machine.exec(["find", *WATCHED_DIRECTORIES, "-xdev", "-printf", r"%p %y %s %m %T@\n"], check=True)
    return sorted(result.stdout.splitlines())


@pytest.mark.parametrize("host", ["web", "sudoer"], ids=["root", "sudo"])
def test_payload_writes_nothing_on_the_machine_and_leaves_no_process(lab, tmp_path, host):
    machine = lab.machines[host]
    files_before = file_listing(machine)
    processes_before = {pid: comm for pid, _, comm in machine.processes()}
    inventory = lab.inventory_for([host], path=tmp_path / "hosts.yaml")
    process = netviz("collect", "-i", str(inventory), "--cache", str(tmp_path / "cache"))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert json.loads((tmp_path / "cache" / "latest" / f"{host}.json").read_text())["coverage"]["euid"] == 0
    # The remote guard's watcher notices within a second that the command is over.
    deadline = time.monotonic() + 5
    while {pid: comm for pid, _, comm in machine.processes()} != processes_before:
        assert time.monotonic() < deadline, (processes_before, machine.processes())
        time.sleep(0.1)
    assert file_listing(machine) == files_before
    if host == "sudoer":
        assert machine.inventory["user"] == SUDO_NOPASSWD_USER


# ------------------------------------------------------------------------------ cache modes


def test_cache_is_owner_only_even_with_a_permissive_umask(lab, tmp_path):
    cache = tmp_path / "new" / "parents" / "cache"
    inventory = lab.inventory_for(["web", "db"], path=tmp_path / "hosts.yaml")
    first = netviz("collect", "-i", str(inventory), "--cache", str(cache), umask=0o000)
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()
    # Second run: db fails, its last snapshot is carried forward (stale) into the new run.
    document = yaml.safe_load(inventory.read_text())
    document["hosts"]["db"]["port"] = 2
    inventory.write_text(yaml.safe_dump(document))
    second = netviz("collect", "-i", str(inventory), "--cache", str(cache), umask=0o000)
    assert second.wait(timeout=120) == 3, second.stderr.read().decode()
    manifest = json.loads((cache / "latest" / "manifest.json").read_text())
    assert {entry["host"]: entry["stale"] for entry in manifest["hosts"]} == {"web": False, "db": True}

    directories = [tmp_path / "new", tmp_path / "new" / "parents", cache]
    directories += [path for path in cache.rglob("*") if path.is_dir() and not path.is_symlink()]
    files = [path for path in cache.rglob("*") if path.is_file() and not path.is_symlink()]
    assert len(directories) == 5 and len(files) >= 6  # 2 runs: manifest + 2 snapshots each; the lock
    for path in directories:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

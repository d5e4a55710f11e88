"""The SSH transport and the remote side under hostile or careless conditions: the sudo password
goes only to netviz's own wrapper (never to a login that echoes), Ctrl-C at its prompt stops the
run, the pool fits the open-file limit, the remote guard needs no program beyond the shell, a
Python 2 `python3` is `no_python`, identity files that are no keys are named, and recording a
host key never spoils known_hosts nor follows a planted link. Lab tests build real sshd machines
(tests/lab/README.md)."""

from __future__ import annotations

import errno
import json
import os
import pty
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sshkeys import keygen, pkey

from netviz.inventory import HostSpec
from netviz.known_hosts import KEY_KNOWN, KnownHosts
from netviz.pipeline import CollectRequest, collect_group
from netviz.transport import (
    AUTH,
    CommandOutput,
    HostFailure,
    interpret,
    remote_command,
)
from tests.lab.lab import SUDO_PASSWORD, SUDO_PASSWORD_USER

REPO = Path(__file__).resolve().parent.parent
needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def netviz(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    clean = {key: value for key, value in os.environ.items() if key not in ("SSH_AUTH_SOCK", "NETVIZ_SUDO_PASSWORD")}
    return subprocess.Popen([sys.executable, "-m", "netviz", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**clean, "COLUMNS": "200", **(env or {})}, **popen)


def manifest_of(cache: Path) -> dict:
    return json.loads((cache / "latest" / "manifest.json").read_text())


def restart_with(machine, sshd_lines: str) -> None:
    with open(machine.dir / "sshd_config", "a") as config:
        config.write("\n" + sshd_lines + "\n")
    machine.restart()


# ------------------------------------------------------------------------------ 4: the sudo password

# A login that runs something else and echoes: the command line (whole, and, when it forges,
# with netviz's marker lines copied out of it: `echo MARKER ...` printed without the shell
# evaluating it), then every stdin line, on stdout and stderr; it keeps what it received in its
# machine's private /tmp.
ECHOING_LOGIN = r"""#!/bin/sh
received=/tmp/received
printf '%s\n' "$SSH_ORIGINAL_COMMAND"
printf '%s\n' "$SSH_ORIGINAL_COMMAND" >&2
[ {forge} = yes ] && printf '%s\n' "$SSH_ORIGINAL_COMMAND" | grep -o 'echo NETVIZ-[A-Z-]*[^>;]*' | sed 's/^echo //' >&2
while IFS= read -r line; do
    printf '%s\n' "$line" >> "$received"
    printf 'you said: %s\n' "$line"
    printf 'you said: %s\n' "$line" >&2
done
"""


@pytest.mark.parametrize("forge", ["no", "yes"], ids=["echo", "echo-and-forge-markers"])
def test_sudo_password_is_sent_only_to_netvizs_wrapper_never_to_a_login_that_echoes(lab_factory, tmp_path, forge):
    """m00's sshd forces every login into an echoing program (as a restricted shell, a menu or
    `command=` in authorized_keys would): it must never receive the password, and nothing
    netviz shows or keeps may contain it. m01, a plain machine, gets it and works."""
    lab = lab_factory(2)
    echoing, plain = lab.machines["m00"], lab.machines["m01"]
    script = echoing.dir / "echoing-login"
    script.write_text(ECHOING_LOGIN.format(forge=forge))
    script.chmod(0o755)
    restart_with(echoing, f"ForceCommand {script}")
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", user=SUDO_PASSWORD_USER, sudo="password",
                                    connect_timeout=3, command_timeout=30)
    cache = tmp_path / "cache"
    process = netviz("collect", "-i", str(inventory), "--cache", str(cache), "--log", "debug",
                     env={"NETVIZ_SUDO_PASSWORD": SUDO_PASSWORD})
    stdout, stderr = process.communicate(timeout=120)
    # The echoing login got nothing on stdin, so it could echo nothing back.
    received = echoing.exec(["cat", "/tmp/received"])
    assert SUDO_PASSWORD not in received.stdout
    everything = stdout + stderr + b"".join(path.read_bytes() for path in cache.rglob("*") if path.is_file())
    assert SUDO_PASSWORD.encode() not in everything
    assert process.returncode == 3, stderr.decode()
    hosts = {entry["host"]: entry for entry in manifest_of(cache)["hosts"]}
    assert hosts["m01"]["status"] == "ok", hosts["m01"]
    assert hosts["m00"]["category"] == AUTH, hosts["m00"]
    assert "the sudo password was not sent" in hosts["m00"]["message"]
    assert plain.running


def test_proof_is_what_a_shell_computes_and_no_echo_of_the_command_contains():
    from netviz.transport import PasswordProof

    proof = PasswordProof.new()
    spec = HostSpec(name="h", address="h", sudo="password")
    command = remote_command(spec, with_password=True, proof=proof)
    assert proof.line.decode() not in command  # an echo of the command cannot show it
    # A real shell running the command's first statements prints it, before reading stdin.
    shell = subprocess.run(["sh", "-c", proof.statement], capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert shell.stderr.strip() == proof.line
    assert PasswordProof.new() != proof  # fresh numbers per attempt


@pytest.mark.parametrize("where", ["stdout", "stderr"])
def test_text_quoted_from_a_machine_is_scrubbed_of_the_password(where):
    secret = "hunter2-Secret"
    said = f"menu> you typed {secret}\n".encode()
    output = CommandOutput(stdout=said if where == "stdout" else b"", stderr=said if where == "stderr" else b"",
                           exit_status=1)
    with pytest.raises(HostFailure) as raised:
        interpret(output, HostSpec(name="h", address="h", user="ops"), secret)
    assert raised.value.kind == AUTH and "you typed ********" in raised.value.message
    assert secret not in raised.value.message


# ------------------------------------------------------------------------------ 14: Ctrl-C at the prompt


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def test_ctrl_c_at_the_sudo_password_prompt_stops_the_run_with_130(tmp_path):
    """A real terminal (a pty as the controlling tty): Ctrl-C typed at the prompt is SIGINT from
    the line discipline, as at a keyboard. No machine is contacted (TEST-NET address)."""
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": {"h": {"address": "192.0.2.1", "sudo": "password"}}}))
    cache = tmp_path / "cache"
    controller, terminal = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        import fcntl
        import termios

        fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)

    process = netviz("collect", "-i", str(inventory), "--cache", str(cache), stdin=terminal,
                     preexec_fn=own_terminal, pass_fds=(terminal,))
    os.close(terminal)
    try:
        prompt = _read_until(process.stderr.fileno(), b"sudo password", 30)
        assert b"sudo password" in prompt, prompt
        time.sleep(0.3)  # getpass has turned echo off and waits in read()
        os.write(controller, b"\x03")
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert process.returncode == 130, stderr.decode()
    assert b"interrupted" in stderr
    assert not (cache / "latest").exists()  # nothing was collected, nothing recorded as a run


# ------------------------------------------------------------------------------ 12: open files


@pytest.mark.parametrize("soft, hard", [(80, 80), (40, 80)], ids=["at-the-hard-limit", "soft-below-hard"])
def test_parallel_above_the_open_file_limit_collects_every_machine(lab_factory, tmp_path, soft, hard):
    """40 inventory entries on two machines, --parallel 100, in a process allowed 80 open
    files: every machine is collected (none fails with `Too many open files`), and a notice says
    the pool was reduced. With a lower soft limit, netviz first raises it to the hard one."""
    lab = lab_factory(2)
    hosts = {f"h{number:02d}": {"address": lab.machines[f"m0{number % 2}"].ipv4} for number in range(40)}
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=[], connect_timeout=5, command_timeout=30)
    document = yaml.safe_load(inventory.read_text())
    document["hosts"] = hosts
    inventory.write_text(yaml.safe_dump(document))
    cache = tmp_path / "cache"
    process = netviz("collect", "-i", str(inventory), "--cache", str(cache), "--parallel", "100",
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    _, stderr = process.communicate(timeout=300)
    text = stderr.decode()
    failed = [entry for entry in manifest_of(cache)["hosts"] if entry["status"] != "ok"]
    assert not failed, failed
    assert process.returncode == 0, text
    assert "machines at a time, not 40: the open-file limit is 80" in " ".join(text.split())


# ------------------------------------------------------------------------------ 15: the remote guard

# Stands in for the interpreter: answers the version check as the real one, and as the payload
# reads its stdin, then hangs (its command line says lab-hang).
HANGING_INTERPRETER = """#!/bin/sh
case "$1" in -c) exec python3 "$@";; esac
exec python3 -c 'import sys, time; sys.stdin.buffer.read(); time.sleep(600)' lab-hang
"""


def _hide_programs(machine, names: list[str]) -> None:
    """An overlay on the machine's /usr/bin (its own mount namespace) with whiteouts for `names`."""
    layer = "/run/netviz-test-hide"
    whiteouts = " && ".join(f"mknod {layer}/upper/{name} c 0 0" for name in names)
    machine.exec(check=True, cmd=["sh", "-c", f"mkdir -p {layer}/upper {layer}/work && {whiteouts} && mount -t overlay "
                  f"netviz-test-hide -o lowerdir=/usr/bin,upperdir={layer}/upper,workdir={layer}/work /usr/bin"])
    for name in names:
        assert machine.exec(["sh", "-c", f"ls /usr/bin/{name} /bin/{name}"]).returncode != 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids_with(machine, word: str) -> list[int]:
    found = []
    for pid, _, _ in machine.processes():
        try:
            if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("hidden", [["kill"], ["kill", "sleep"]], ids=["no-kill", "no-kill-no-sleep"])
def test_an_interrupted_run_ends_the_payload_on_a_machine_without_kill_or_sleep(lab_factory, tmp_path, hidden):
    """A minimal image (debian-slim has no procps `kill`; some have no `sleep` either): netviz
    dies (SIGKILL) while the payload hangs; the guard must still end the payload within seconds
    (command_timeout is 120 s), and without `sleep` its watcher must not spin."""
    lab = lab_factory(1)
    machine = lab.machines["m00"]
    interpreter = machine.dir / "hanging-python"
    interpreter.write_text(HANGING_INTERPRETER)
    interpreter.chmod(0o755)
    _hide_programs(machine, hidden)
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=120,
                                    python=str(interpreter))
    process = netviz("collect", "-i", str(inventory), "--cache", str(tmp_path / "cache"))
    try:
        deadline = time.monotonic() + 30
        while not _pids_with(machine, "lab-hang") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pids_with(machine, "lab-hang"), "the payload never started"
        watchers = _pids_with(machine, "netviz-watch")
        assert watchers, "no watcher runs beside the payload"
        before = {pid: _cpu_seconds(pid) for pid in watchers}
        time.sleep(3)
        spent = {pid: _cpu_seconds(pid) - before[pid] for pid in watchers if Path(f"/proc/{pid}").exists()}
        assert all(seconds < 0.5 for seconds in spent.values()), spent  # napping, not spinning
    finally:
        process.kill()
        process.communicate(timeout=30)
    deadline = time.monotonic() + 15
    while _pids_with(machine, "lab-hang") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pids_with(machine, "lab-hang"), "the payload outlived its session"
    assert not _pids_with(machine, "netviz-watch")


# ------------------------------------------------------------------------------ 16: Python 2


# `python3` that is Python 2.7 as far as anyone can tell: its version says so, and the payload is
# a syntax error to it.
PYTHON2 = """#!/bin/sh
if [ "$1" = -c ]; then
    exec {real} -c 'import sys; sys.version_info = (2, 7, 18, "final", 0); exec(sys.argv[1])' "$2"
fi
echo '  File "<stdin>", line 1' >&2
echo 'SyntaxError: invalid syntax' >&2
exit 1
"""


def test_a_python3_that_is_python_2_is_no_python_on_a_machine(lab_factory, tmp_path):
    lab = lab_factory(0)
    lab.add_machine("py2", python_wrapper=PYTHON2)
    assert lab.machines["py2"].exec(["python3", "-c", "import sys; sys.exit(sys.version_info < (3, 6))"],
                                   check=False).returncode == 1
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=30)
    outcome = collect_group(CollectRequest(inventory=inventory, cache_dir=tmp_path / "cache"))
    (result,) = outcome.results
    assert result.kind == "no_python", result
    assert "no Python 3.6+ found" in result.message


def test_every_interpreter_candidate_is_version_checked_and_the_next_one_is_taken(tmp_path):
    """The remote command run by a local shell: `python3` on PATH is Python 2, `python` is a real
    Python 3: the payload runs with the latter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(PYTHON2.replace("{real}", sys.executable))
    fake.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    command = remote_command(HostSpec(name="h", address="h", command_timeout=20), with_password=False)
    payload = b"import sys; sys.stdout.write('ran with %d' % sys.version_info[0])\n"
    ran = subprocess.run(["sh", "-c", command], input=payload, capture_output=True, timeout=60,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert ran.stdout == b"ran with 3", ran


# ------------------------------------------------------------------------------ 17: identity files


@pytest.mark.parametrize("problem", ["not-a-key", "missing", "public-key"])
def test_an_identity_file_that_holds_no_key_is_an_auth_failure_naming_it(lab_factory, tmp_path, monkeypatch, problem):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    lab = lab_factory(1)
    identity = tmp_path / "id_broken"
    if problem == "not-a-key":
        identity.write_text("this is not a key\n")
    elif problem == "public-key":
        identity.write_text(Path(str(lab.client_key) + ".pub").read_text())
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=30,
                                    identity_file=str(identity))
    outcome = collect_group(CollectRequest(inventory=inventory, cache_dir=tmp_path / "cache"))
    (result,) = outcome.results
    assert result.kind == AUTH, result
    assert str(identity) in result.message
    expected = "No such file or directory" if problem == "missing" else "not a private key"
    assert expected in result.message


def test_a_bad_identity_file_beside_a_good_one_does_not_stop_the_good_one(lab_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    lab = lab_factory(1)
    garbage = tmp_path / "id_garbage"
    garbage.write_text("garbage\n")
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=30,
                                    identity_file=[str(garbage), str(tmp_path / "missing"), str(lab.client_key)])
    outcome = collect_group(CollectRequest(inventory=inventory, cache_dir=tmp_path / "cache"))
    assert [result.status for result in outcome.results] == ["ok"], outcome.results


# ------------------------------------------------------------------------------ 18: recording host keys


@needs_keygen
def test_recording_into_known_hosts_without_a_final_newline_keeps_both_entries(tmp_path):
    old, new = pkey(*keygen(tmp_path, "old")), pkey(*keygen(tmp_path, "new"))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"10.0.0.1 {old.get_name()} {old.get_base64()}")  # edited by hand: no newline
    KnownHosts().record(str(known_hosts), "10.0.0.2", new)
    assert known_hosts.read_text().splitlines() == [
        f"10.0.0.1 {old.get_name()} {old.get_base64()}", f"10.0.0.2 {new.get_name()} {new.get_base64()}"]
    reread = KnownHosts()
    reread.load(known_hosts)
    assert reread.check("10.0.0.1", old).status == KEY_KNOWN
    assert reread.check("10.0.0.2", new).status == KEY_KNOWN
    # ssh-keygen, OpenSSH's own reader, finds both too.
    for name in ("10.0.0.1", "10.0.0.2"):
        assert subprocess.run(["ssh-keygen", "-F", name, "-f", str(known_hosts)], capture_output=True).returncode == 0


@needs_keygen
def test_a_new_known_hosts_and_its_directories_are_private_whatever_the_umask(tmp_path):
    key = pkey(*keygen(tmp_path, "k"))
    target = tmp_path / "deep" / "er" / "known_hosts"
    previous = os.umask(0)
    try:
        KnownHosts().record(str(target), "10.0.0.1", key)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(target.parent.parent.stat().st_mode) == 0o700


@needs_keygen
def test_a_link_planted_in_a_directory_others_can_write_is_never_followed(tmp_path):
    """Another user who can write the known_hosts directory plants a link to a file of root's:
    recording a key must not append to it (nor create it)."""
    key = pkey(*keygen(tmp_path, "k"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (shared / "known_hosts").symlink_to(victim)
    (shared / "dangling").symlink_to(tmp_path / "created-by-root")
    for name in ("known_hosts", "dangling"):
        with pytest.raises(OSError) as raised:
            KnownHosts().record(str(shared / name), "10.0.0.1", key)
        assert raised.value.errno == errno.EPERM and "another user can write" in str(raised.value)
    assert victim.read_text() == "root's file\n"
    assert not (tmp_path / "created-by-root").exists()


@needs_keygen
def test_a_link_of_ones_own_is_followed_and_a_fifo_is_refused_without_blocking(tmp_path):
    key = pkey(*keygen(tmp_path, "k"))
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_text("")
    (tmp_path / "known_hosts").symlink_to(real)  # a dotfiles manager's link
    KnownHosts().record(str(tmp_path / "known_hosts"), "10.0.0.1", key)
    assert real.read_text().startswith("10.0.0.1 ")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as raised:
        KnownHosts().record(str(fifo), "10.0.0.1", key)
    assert "not a regular file" in str(raised.value)

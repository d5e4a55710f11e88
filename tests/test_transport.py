"""The SSH transport's parts that need no SSH server: known_hosts, the remote command (run by a
real local `sh`), exit-status interpretation, DNS and TCP failures. Paths that only a broken
server produces are mocked; everything a real server can do is in test_lab_collect.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import fabric
import paramiko
import pytest

from netviz.inventory import SUDO_NOPASSWD, SUDO_PASSWORD, HostSpec
from netviz.transport import (
    AUTH,
    DNS,
    HOST_KEY,
    NO_PYTHON,
    PAYLOAD_ERROR,
    REFUSED,
    SUDO,
    TIMEOUT,
    UNREACHABLE,
    Attempt,
    CommandOutput,
    HostFailure,
    KnownHosts,
    Timings,
    TransportOptions,
    connect,
    fingerprint,
    interpret,
    open_tcp,
    remote_command,
    resolve,
)
from netviz.transport import _open as open_connection

needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def keygen(directory: Path, name: str) -> tuple[str, str]:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key_type, data = path.with_suffix(".pub").read_text().split()[:2]
    return key_type, data


def pkey(key_type: str, data: str) -> paramiko.PKey:
    return paramiko.PKey.from_type_string(key_type, __import__("base64").b64decode(data))


# ------------------------------------------------------------------------------ known_hosts


@needs_keygen
def test_known_hosts_reads_hashed_and_port_entries_and_skips_marker_lines(tmp_path):
    plain = keygen(tmp_path, "plain")
    hashed = keygen(tmp_path, "hashed")
    ported = keygen(tmp_path, "ported")
    revoked = keygen(tmp_path, "revoked")
    hashed_file = tmp_path / "hashed_hosts"
    hashed_file.write_text(f"secret.example {hashed[0]} {hashed[1]}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed_file)], check=True, capture_output=True)
    hashed_line = hashed_file.read_text().strip()
    assert hashed_line.startswith("|1|")
    known = tmp_path / "known_hosts"
    known.write_text(
        "# comment\n"
        f"@cert-authority *.example.com {plain[0]} {plain[1]}\n"
        f"@revoked * {revoked[0]} {revoked[1]}\n"
        f"web.example,10.0.0.5 {plain[0]} {plain[1]}\n"
        f"{hashed_line}\n"
        f"[10.0.0.6]:2222 {ported[0]} {ported[1]}\n"
        f"revokedhost {revoked[0]} {revoked[1]}\n"
        "this line is not a key\n"
    )
    store = KnownHosts()
    store.load(known)
    assert store.lookup("10.0.0.5")[plain[0]] == pkey(*plain)
    assert store.lookup("secret.example")[hashed[0]] == pkey(*hashed)
    assert store.lookup("[10.0.0.6]:2222")[ported[0]] == pkey(*ported)
    assert store.lookup("10.0.0.6") == {}
    # A revoked key is never trusted, even where a plain line lists it.
    assert store.lookup("revokedhost") == {}
    assert store.is_revoked(pkey(*revoked)) and not store.is_revoked(pkey(*plain))


@needs_keygen
def test_recorded_key_is_appended_readable_by_openssh_and_found_again(tmp_path):
    key = pkey(*keygen(tmp_path, "new"))
    target = tmp_path / "sub" / "known_hosts"
    store = KnownHosts()
    store.record(str(target), "[10.1.2.3]:2200", key)
    assert target.stat().st_mode & 0o777 == 0o600
    assert store.lookup("[10.1.2.3]:2200")[key.get_name()] == key
    found = subprocess.run(["ssh-keygen", "-F", "[10.1.2.3]:2200", "-f", str(target)], capture_output=True, text=True)
    assert found.returncode == 0 and key.get_base64() in found.stdout


@needs_keygen
def test_fingerprint_matches_ssh_keygen(tmp_path):
    key_type, data = keygen(tmp_path, "fp")
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "fp.pub")], capture_output=True, text=True, check=True)
    assert fingerprint(pkey(key_type, data)) == listed.stdout.split()[1]


# ------------------------------------------------------------------------------ remote command

FAKE_PAYLOAD = b"import os, sys\nprint('ARGS', sys.argv[1:], 'EUID', os.geteuid())\n"


def run_remote(spec: HostSpec, stdin: bytes, path: str, with_password: bool = False) -> CommandOutput:
    """Run the remote command the way sshd would: the user's shell with `-c`."""
    command = remote_command(spec, with_password=with_password)
    env = {"PATH": path, "LANG": "C.UTF-8"}
    process = subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, env=env, timeout=60)
    return CommandOutput(process.stdout, process.stderr, process.returncode)


SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
SYSTEM_PYTHON3 = shutil.which("python3", path=SYSTEM_PATH)


@pytest.mark.skipif(SYSTEM_PYTHON3 is None, reason="no python3 on the system PATH")
def test_remote_command_runs_python3_with_framed_flag_under_timeout():
    spec = HostSpec(name="h", address="h", command_timeout=7)
    output = run_remote(spec, FAKE_PAYLOAD, SYSTEM_PATH)
    assert output.exit_status == 0, output.stderr
    assert b"ARGS ['--framed']" in output.stdout


@pytest.mark.skipif(SYSTEM_PYTHON3 is None, reason="no python3 on the system PATH")
def test_remote_command_falls_back_to_python_only_if_it_is_python3(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(SYSTEM_PYTHON3)
    for tool in ("timeout", "sh"):
        if shutil.which(tool, path=SYSTEM_PATH):
            (bin_dir / tool).symlink_to(shutil.which(tool, path=SYSTEM_PATH))
    spec = HostSpec(name="h", address="h")
    output = run_remote(spec, FAKE_PAYLOAD, str(bin_dir))
    assert output.exit_status == 0 and b"ARGS ['--framed']" in output.stdout, output.stderr

    (bin_dir / "python").unlink()
    (bin_dir / "python").write_text("#!/bin/sh\nexit 1\n")  # a Python 2 fails the version check
    (bin_dir / "python").chmod(0o755)
    with pytest.raises(HostFailure) as raised:
        interpret(run_remote(spec, FAKE_PAYLOAD, str(bin_dir)), spec, None)
    assert raised.value.kind == NO_PYTHON
    assert "tried python3, /usr/libexec/platform-python, python" in raised.value.message


def test_inventory_text_never_reaches_the_shell_unquoted(tmp_path):
    marker = tmp_path / "pwned"
    spec = HostSpec(name="h", address="h", python=f"/nonexistent'; touch {marker}; echo '$(touch {marker})")
    output = run_remote(spec, FAKE_PAYLOAD, SYSTEM_PATH)
    assert not marker.exists()
    with pytest.raises(HostFailure) as raised:
        interpret(output, spec, None)
    assert raised.value.kind == NO_PYTHON


@pytest.mark.skipif(shutil.which("timeout") is None, reason="coreutils timeout missing")
def test_hung_payload_is_stopped_by_the_remote_timeout():
    spec = HostSpec(name="h", address="h", command_timeout=1)
    started = time.monotonic()
    output = run_remote(spec, b"import time\ntime.sleep(60)\n", SYSTEM_PATH)
    assert time.monotonic() - started < 10
    with pytest.raises(HostFailure) as raised:
        interpret(output, spec, None)
    assert raised.value.kind == TIMEOUT


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("sudo") is None, reason="needs root and sudo")
def test_sudo_modes_run_the_payload_and_keep_the_password_off_its_stdin():
    spec = HostSpec(name="h", address="h", sudo=SUDO_NOPASSWD)
    output = run_remote(spec, FAKE_PAYLOAD, SYSTEM_PATH)
    assert output.exit_status == 0 and b"EUID 0" in output.stdout, output.stderr
    # Root needs no password: the wrapper reads the password line itself, and the payload
    # (Python reading its source from stdin) must not see it, or it would be a syntax error.
    spec = HostSpec(name="h", address="h", sudo=SUDO_PASSWORD)
    output = run_remote(spec, b"hunter2 secret\n" + FAKE_PAYLOAD, SYSTEM_PATH, with_password=True)
    assert output.exit_status == 0 and b"EUID 0" in output.stdout, output.stderr
    assert b"hunter2" not in output.stdout + output.stderr


# ------------------------------------------------------------------------------ exit statuses


@pytest.mark.parametrize(
    "status, stderr, kind, words",
    [
        (124, b"", TIMEOUT, "did not finish within 60 s"),
        (137, b"", TIMEOUT, "stopped on the machine"),
        (126, b"NETVIZ-FAIL sudo Sorry, try again.\nsudo: 1 incorrect password attempt\n", SUDO,
         "Sorry, try again.; sudo: 1 incorrect password attempt"),
        (127, b"motd noise\nNETVIZ-FAIL no_python no Python 3.6+ found\n", NO_PYTHON, "no Python 3.6+ found"),
        (1, b"Traceback...\nOSError: boom s3cret\n", PAYLOAD_ERROR, "exit status 1): OSError: boom ********"),
        (-1, b"", PAYLOAD_ERROR, "ended without an exit status"),
    ],
)
def test_interpret_exit_status_and_stderr(status, stderr, kind, words):
    with pytest.raises(HostFailure) as raised:
        interpret(CommandOutput(b"", stderr, status), HostSpec(name="h", address="h"), "s3cret")
    assert raised.value.kind == kind
    assert words in raised.value.message


def test_interpret_success_returns_stdout():
    assert interpret(CommandOutput(b"frame", b"warning\n", 0), HostSpec(name="h", address="h"), None) == b"frame"


# ------------------------------------------------------------------------------ DNS and TCP


def test_resolve_literal_addresses_without_lookup():
    assert resolve("127.0.0.1", 22, 0.01)[0][4] == ("127.0.0.1", 22)
    assert resolve("::1", 22, 0.01)[0][4][:2] == ("::1", 22)


def test_resolve_unknown_name_is_dns():
    with pytest.raises(HostFailure) as raised:
        resolve("no-such-host.invalid", 22, 5)
    assert raised.value.kind == DNS and "no-such-host.invalid" in raised.value.message


def test_resolve_gives_up_on_a_resolver_that_never_answers(mocker):
    # A hung resolver cannot be produced on demand: getaddrinfo blocks as it would.
    real = socket.getaddrinfo
    release = threading.Event()

    def slow(host, *args, **kwargs):
        if kwargs.get("flags", 0) & socket.AI_NUMERICHOST:
            return real(host, *args, **kwargs)
        release.wait(10)
        raise socket.gaierror(-2, "late")

    mocker.patch("socket.getaddrinfo", side_effect=slow)
    started = time.monotonic()
    with pytest.raises(HostFailure) as raised:
        resolve("slow.example", 22, 0.3)
    release.set()
    assert raised.value.kind == DNS and "no DNS answer" in raised.value.message
    assert time.monotonic() - started < 2


def test_closed_port_is_refused():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(HostFailure) as raised:
        open_tcp(resolve("127.0.0.1", port, 1), 2, f"127.0.0.1:{port}")
    assert raised.value.kind == REFUSED and f"127.0.0.1:{port}" in raised.value.message


def test_silent_server_is_cut_short_by_cancel():
    """A server that accepts and never speaks: a cancelled attempt returns at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    spec = HostSpec(name="silent", address="127.0.0.1", port=port, connect_timeout=30)
    attempt = Attempt()
    outcome: dict[str, object] = {}

    def go() -> None:
        try:
            connect(spec, TransportOptions(), attempt, Timings())
        except HostFailure as failure:
            outcome["failure"] = failure

    worker = threading.Thread(target=go)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    attempt.cancel()
    worker.join(5)
    listener.close()
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(outcome.get("failure"), HostFailure)


# ------------------------------------------------------------------------------ paramiko errors (mocked)


@needs_keygen
@pytest.mark.parametrize(
    "error, kind, words",
    [
        (paramiko.PasswordRequiredException("private key file is encrypted"), AUTH, "ssh-agent"),
        (paramiko.AuthenticationException("Authentication failed."), AUTH, "authentication as 'root' failed"),
        (paramiko.SSHException("Error reading SSH protocol banner"), UNREACHABLE, "no SSH banner"),
        (paramiko.SSHException("Incompatible ssh peer (no acceptable kex algorithm)"), UNREACHABLE, "kex"),
        (EOFError(), UNREACHABLE, "lost during handshake"),
    ],
)
def test_paramiko_errors_become_failure_kinds(mocker, tmp_path, error, kind, words):
    mocker.patch.object(fabric.Connection, "open", side_effect=error)
    spec = HostSpec(name="h", address="192.0.2.1", user="root", known_hosts=str(tmp_path / "kh"))
    with pytest.raises(HostFailure) as raised:
        open_connection(spec, None, TransportOptions(), Attempt(), "")
    assert raised.value.kind == kind
    assert words in raised.value.message


@needs_keygen
def test_changed_host_key_message_names_both_fingerprints(mocker, tmp_path):
    old = pkey(*keygen(tmp_path, "old"))
    new = pkey(*keygen(tmp_path, "new"))
    mocker.patch.object(fabric.Connection, "open", side_effect=paramiko.BadHostKeyException("h", new, old))
    spec = HostSpec(name="h", address="192.0.2.1", port=2222, known_hosts=str(tmp_path / "kh"))
    with pytest.raises(HostFailure) as raised:
        open_connection(spec, None, TransportOptions(), Attempt(), "")
    assert raised.value.kind == HOST_KEY
    message = raised.value.message
    assert "[192.0.2.1]:2222" in message and fingerprint(old) in message and fingerprint(new) in message


def test_connection_never_uses_autoadd_nor_agent_forwarding(tmp_path):
    from netviz.transport import _connection

    spec = HostSpec(name="h", address="192.0.2.1", known_hosts=str(tmp_path / "kh"))
    connection = _connection(spec, None, TransportOptions())
    policy = connection.client._policy
    assert isinstance(policy, paramiko.RejectPolicy) and not isinstance(policy, paramiko.AutoAddPolicy)
    assert connection.forward_agent is False
    assert connection.gateway is False  # hops are opened by netviz, never by fabric's ProxyJump


def test_framed_output_of_the_real_payload_decodes():
    from netviz.collect import payload_source, validate_output

    process = subprocess.run([sys.executable, "-", "--framed"], input=payload_source(), capture_output=True,
                             timeout=120)
    text, snapshot = validate_output("me", b"login banner\n" + process.stdout)
    assert snapshot.name == "me" and '"netviz.snapshot/1"' in text


@pytest.mark.parametrize("sudo", [SUDO_NOPASSWD, SUDO_PASSWORD, "no"])
def test_remote_command_survives_any_login_shell(sudo):
    """sshd hands the command to the user's shell: one line, no `!` (csh history expansion)."""
    for with_password in (False, True):
        command = remote_command(HostSpec(name="h", address="h", sudo=sudo), with_password=with_password)
        assert "\n" not in command and "!" not in command
        assert command.startswith("exec sh -c ")


def test_sudo_password_host_without_a_password_fails_before_connecting():
    from netviz.transport import fetch_framed

    spec = HostSpec(name="h", address="192.0.2.1", sudo=SUDO_PASSWORD)
    with pytest.raises(HostFailure) as raised:
        fetch_framed(spec, b"", TransportOptions(sudo_password=None), Attempt(), Timings())
    assert raised.value.kind == SUDO and "NETVIZ_SUDO_PASSWORD" in raised.value.message


@needs_keygen
def test_accepting_a_key_into_an_unwritable_known_hosts_is_a_host_key_failure(tmp_path):
    from netviz.transport import _VerifyingPolicy

    key = pkey(*keygen(tmp_path, "k"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    policy = _VerifyingPolicy(KnownHosts(), str(blocker / "known_hosts"), accept_new=True)  # parent is a file
    with pytest.raises(HostFailure) as raised:
        policy.missing_host_key(None, "10.0.0.1", key)
    assert raised.value.kind == HOST_KEY and "cannot record" in raised.value.message
    refusing = _VerifyingPolicy(KnownHosts(), str(tmp_path / "kh"), accept_new=False)
    with pytest.raises(HostFailure) as raised:
        refusing.missing_host_key(None, "10.0.0.1", key)
    assert fingerprint(key) in raised.value.message and not (tmp_path / "kh").exists()

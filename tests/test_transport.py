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
from sshkeys import keygen, pkey

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
from netviz.transport.ssh import _open as open_connection
from netviz.transport.ssh import _transport_preferring, _tunnel, _VerifyingPolicy

needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


# ------------------------------------------------------------------------------ host key policy
# (known_hosts matching itself: test_known_hosts.py)


def policy_for(tmp_path: Path, known_hosts: str, accept_new: bool = False) -> _VerifyingPolicy:
    path = tmp_path / "known_hosts"
    path.write_text(known_hosts)
    store = KnownHosts()
    store.load(path)
    return _VerifyingPolicy(store, str(path), accept_new=accept_new)


def refusal(policy: _VerifyingPolicy, name: str, key: paramiko.PKey) -> HostFailure:
    with pytest.raises(HostFailure) as raised:
        policy.missing_host_key(None, name, key)
    assert raised.value.kind == HOST_KEY
    return raised.value


@needs_keygen
def test_key_listed_by_a_pattern_is_accepted_and_nothing_is_written(tmp_path):
    key = keygen(tmp_path, "k")
    policy = policy_for(tmp_path, f"[*.lab.example]:22?2 {key[0]} {key[1]}\n", accept_new=True)
    before = (tmp_path / "known_hosts").read_text()
    policy.missing_host_key(None, "[Web.Lab.Example]:2222", pkey(*key))  # no exception: accepted
    assert (tmp_path / "known_hosts").read_text() == before


@needs_keygen
@pytest.mark.parametrize("accept_new", [False, True], ids=["default", "accept-new"])
def test_changed_host_key_message_names_both_fingerprints_and_the_line(tmp_path, accept_new):
    old = keygen(tmp_path, "old")
    new = pkey(*keygen(tmp_path, "new"))
    policy = policy_for(tmp_path, f"# fleet\n[192.0.2.*]:2222 {old[0]} {old[1]}\n", accept_new=accept_new)
    message = refusal(policy, "[192.0.2.1]:2222", new).message
    assert "[192.0.2.1]:2222 has CHANGED" in message
    assert fingerprint(pkey(*old)) in message and fingerprint(new) in message
    assert f"{tmp_path / 'known_hosts'}:2" in message
    assert "certificate" not in message
    assert (tmp_path / "known_hosts").read_text().count(new.get_base64()) == 0


@needs_keygen
def test_revoked_key_is_refused_even_with_accept_new(tmp_path):
    key = keygen(tmp_path, "k")
    policy = policy_for(tmp_path, f"@revoked nobody.example {key[0]} {key[1]}\n* {key[0]} {key[1]}\n", accept_new=True)
    message = refusal(policy, "10.0.0.1", pkey(*key)).message
    assert "revoked" in message and fingerprint(pkey(*key)) in message


@needs_keygen
def test_unknown_key_under_a_certificate_authority_says_so_and_what_to_do(tmp_path):
    authority = keygen(tmp_path, "ca")
    key = pkey(*keygen(tmp_path, "host"))
    policy = policy_for(tmp_path, f"@cert-authority *.lab.example,[*.lab.example]:* {authority[0]} {authority[1]}\n")
    message = refusal(policy, "[web.lab.example]:2222", key).message
    assert "\n" not in message
    assert f"unknown host key for [web.lab.example]:2222: {key.get_name()} {fingerprint(key)}" in message
    assert "trusts a certificate authority for [web.lab.example]:2222" in message
    assert f"@cert-authority, {tmp_path / 'known_hosts'}:1" in message
    assert "offered a plain host key, no certificate" in message and "HostCertificate" in message
    assert "ssh-keyscan -p 2222 web.lab.example" in message and "--accept-new-host-keys" in message
    # Without such a line for the host, the message is the plain one.
    plain = refusal(policy, "db.other.example", key).message
    assert "certificate" not in plain and "--accept-new-host-keys" in plain
    # A changed key under a CA line names both, since ssh would have checked the certificate.
    old = keygen(tmp_path, "old")
    both = policy_for(tmp_path, f"@cert-authority * {authority[0]} {authority[1]}\nweb {old[0]} {old[1]}\n")
    message = refusal(both, "web", key).message
    assert "CHANGED" in message and "certificate authority for web" in message and "ssh-keyscan web" in message


@needs_keygen
def test_certificate_authority_hint_does_not_weaken_the_refusal_and_accept_new_records(tmp_path):
    authority = keygen(tmp_path, "ca")
    key = pkey(*keygen(tmp_path, "host"))
    policy = policy_for(tmp_path, f"@cert-authority * {authority[0]} {authority[1]}\n", accept_new=True)
    policy.missing_host_key(None, "web.lab.example", key)  # --accept-new-host-keys: recorded
    assert f"web.lab.example {key.get_name()} {key.get_base64()}" in (tmp_path / "known_hosts").read_text()
    policy.accept_new = False
    policy.missing_host_key(None, "web.lab.example", key)  # known from now on


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
    assert b"ARGS ['--framed'" in output.stdout  # the payload's first argument (more may follow)


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
    assert output.exit_status == 0 and b"ARGS ['--framed'" in output.stdout, output.stderr

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
        (124, b"NETVIZ-STARTED\n", TIMEOUT, "did not finish within 60 s"),
        (137, b"NETVIZ-STARTED\n", TIMEOUT, "stopped on the machine"),
        (126, b"NETVIZ-STARTED\nNETVIZ-FAIL sudo Sorry, try again.\nsudo: 1 incorrect password attempt\n", SUDO,
         "Sorry, try again.; sudo: 1 incorrect password attempt"),
        (127, b"motd noise\nNETVIZ-STARTED\nNETVIZ-FAIL no_python no Python 3.6+ found\n", NO_PYTHON,
         "no Python 3.6+ found"),
        (1, b"NETVIZ-STARTED\nTraceback...\nOSError: boom s3cret\n", PAYLOAD_ERROR,
         "exit status 1): OSError: boom ********"),
        (-1, b"", PAYLOAD_ERROR, "ended without an exit status"),
        (1, b"", AUTH, "did not run netviz's command (exit status 1)"),  # /bin/false as login shell
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
def test_connection_never_uses_autoadd_nor_agent_forwarding_and_leaves_keys_to_the_policy(tmp_path):
    from netviz.transport.ssh import _connection

    key = keygen(tmp_path, "k")
    (tmp_path / "kh").write_text(f"192.0.2.* {key[0]} {key[1]}\n")
    spec = HostSpec(name="h", address="192.0.2.1", known_hosts=str(tmp_path / "kh"))
    connection = _connection(spec, None, TransportOptions())
    policy = connection.client._policy
    assert isinstance(policy, _VerifyingPolicy) and not isinstance(policy, paramiko.AutoAddPolicy)
    assert connection.forward_agent is False
    assert connection.gateway is False  # hops are opened by netviz, never by fabric's ProxyJump
    # paramiko's own exact-name check never runs: every offered key reaches the policy.
    assert len(connection.client.get_host_keys()) == 0 and len(connection.client._system_host_keys) == 0
    assert "transport_factory" in connection.connect_kwargs


@pytest.mark.parametrize(
    "known, first",
    [
        ([], None),  # paramiko's own order
        (["ssh-rsa"], ["rsa-sha2-512", "rsa-sha2-256"]),
        (["ecdsa-sha2-nistp384", "ssh-rsa"], ["ecdsa-sha2-nistp384", "rsa-sha2-512", "rsa-sha2-256"]),
    ],
)
def test_transport_asks_first_for_the_key_types_known_hosts_lists(known, first):
    """As ssh orders HostKeyAlgorithms: a machine with keys of several types shows one we know."""
    default = list(paramiko.Transport._preferred_keys)
    ours, theirs = socket.socketpair()
    try:
        transport = _transport_preferring(known)(ours)
        offered = list(transport.get_security_options().key_types)
    finally:
        ours.close()
        theirs.close()
    assert sorted(offered) == sorted(default)  # reordered, nothing added or dropped
    assert offered[: len(first or [])] == (first or [])
    if first is None:
        assert offered == default


# ------------------------------------------------------------------------------ jump hosts (mocked)


@pytest.mark.parametrize(
    "address, names_the_jump_host_lookup",
    [("db.internal.example", True), ("10.0.0.7", False), ("fd00::7", False), ("fe80::7%eth0", False)],
)
def test_a_jump_host_timeout_says_when_the_jump_host_resolves_the_name(mocker, address, names_the_jump_host_lookup):
    """paramiko's channel-open timeout cannot be produced cheaply on demand (a jump host stuck
    resolving a name): its exception is raised as paramiko raises it."""
    through = mocker.Mock()
    through.transport.open_channel.side_effect = paramiko.SSHException("Timeout opening channel.")
    target = HostSpec(name="db", address=address, connect_timeout=4)
    with pytest.raises(HostFailure) as raised:
        _tunnel(through, target, "jump host bastion: ", Attempt())
    assert raised.value.kind == UNREACHABLE
    message = raised.value.message
    shown = f"[{address}]:22" if ":" in address else f"{address}:22"
    assert message.startswith(f"jump host bastion: the jump host did not reach {shown} within 4 s")
    assert ("is resolved by the jump host" in message) is names_the_jump_host_lookup
    if names_the_jump_host_lookup:
        assert f"({address} is resolved by the jump host" in message


@pytest.mark.parametrize(
    "reason, kind",
    [("Connection refused", REFUSED), ("Name or service not known", DNS), ("No route to host", UNREACHABLE)],
)
def test_a_jump_host_refusing_the_channel_keeps_its_category(mocker, reason, kind):
    through = mocker.Mock()
    through.transport.open_channel.side_effect = paramiko.ChannelException(2, reason)
    through.transport.ident = None
    with pytest.raises(HostFailure) as raised:
        _tunnel(through, HostSpec(name="db", address="db.internal.example"), "", Attempt())
    assert raised.value.kind == kind and reason in raised.value.message
    assert "resolved by the jump host" not in raised.value.message  # the jump host said what went wrong


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

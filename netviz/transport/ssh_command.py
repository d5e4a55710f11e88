"""The command netviz runs on a machine over SSH, and how its answer is read.

`remote_command` builds the one shell line sent (a Python 3.6+ found and version-checked, a
remote `timeout -k`, sudo, a guard that ends the payload when the session goes away);
`run_command` runs it on an open connection, sends the sudo password only to a wrapper that
proved itself (PasswordProof), and reads stdout and stderr to EOF within budgets; `interpret`
turns the exit status and the wrapper's markers into a HostFailure or the raw standard output.
"""

from __future__ import annotations

import math
import secrets
import select
import shlex
import time
from dataclasses import dataclass
from typing import Optional

import fabric
import paramiko

from netviz.budget import BudgetExceeded, OutputShare
from netviz.inventory import SUDO_NO, HostSpec
from netviz.transport.base import (
    AUTH,
    BAD_OUTPUT,
    FAILURE_KINDS,
    MAX_STDERR,
    NO_PYTHON,
    PAYLOAD_ERROR,
    SUDO,
    TIMEOUT,
    UNREACHABLE,
    Attempt,
    HostFailure,
    WindowPlan,
    window_extra,
)

PYTHON_CANDIDATES = ("python3", "/usr/libexec/platform-python", "python")
# What each candidate interpreter is asked before it is trusted (`-c`): Python 2 fails it.
VERSION_CHECK = "import sys; sys.exit(sys.version_info < (3, 6))"
KILL_GRACE = 5  # `timeout -k`: seconds between SIGTERM and SIGKILL on the machine
FAIL_MARKER = "NETVIZ-FAIL"  # written on stderr by the remote wrapper for sudo / no_python
# The wrapper's first words on stderr: without them, the login shell never ran the command
# (nologin, /bin/false, a ForceCommand).
START_MARKER = "NETVIZ-STARTED"
# Written on stderr by the wrapper when it waits for the sudo password, with a proof that netviz's
# own script computed it (see PasswordProof); nothing is sent on stdin before it.
PASSWORD_MARKER = "NETVIZ-PASSWORD-PLEASE"
SUDO_PASSWORD_ENV = "NETVIZ_SUDO_PASSWORD"
SCRUBBED = "********"
PROOF_WAIT_MIN = 10.0  # seconds a login shell gets to start the wrapper before the password is withheld

# Without a pty, sshd neither signals nor kills a command whose client went away (an interrupted
# or crashed netviz, a dropped link), and OpenSSH refuses the "signal" channel request for root
# logins: a hung payload would live on until its `timeout`. So the payload command is started by
# a guard, with the payload's own privileges (under sudo too): the guard starts a watcher, then
# execs the command (keeping its pid, $$). Once a second the watcher checks that the session's
# sshd ($1) still exists and sends SIGTERM to the command (`timeout` passes it on) when it is
# gone; it leaves as soon as it is no longer the command's child, so a pid reused after the
# command ended is never signalled. No `$!` and no `!`: see remote_command.
# Only shell builtins act: `kill` is a builtin of dash, bash and busybox sh, but a separate
# program (procps) that minimal images lack, and `exec kill` would run that program. `sleep` is
# a program too: where it is missing the watcher naps with the payload's own Python ($3), so it
# neither spins nor gives up; a nap that fails ends the watcher (no busy loop either way).
REMOTE_WATCH = (
    'w=$1; p=$2; py=$3; '
    'if command -v sleep >/dev/null 2>&1; then nap() { sleep 1; }; '
    'else nap() { "$py" -c "import time; time.sleep(1)"; }; fi; '
    'while nap; do read -r _ _ _ q _ < /proc/$$/stat || exit 0; '
    '[ "$q" = "$p" ] || exit 0; [ -d "/proc/$w" ] || { kill -TERM "$p"; exit 0; }; done'
)
REMOTE_GUARD = (
    f'w=$1; py=$2; shift 2; sh -c {shlex.quote(REMOTE_WATCH)} netviz-watch "$w" "$$" "$py" '
    '</dev/null >/dev/null 2>&1 & exec "$@"'
)
# --------------------------------------------------------------------------------------------
# the remote command


@dataclass(frozen=True)
class PasswordProof:
    """What the remote wrapper must say before netviz sends it the sudo password.

    A login may run something other than netviz's script (a restricted shell, a menu, a
    `command=` in authorized_keys) that echoes its input or its command line back. The command
    holds two random numbers and asks the shell to print their sum: an echo of the command shows
    the expression, not the sum, and nothing has been sent on stdin yet that could be echoed.
    Only a shell running the script (or one that computes it on purpose: a machine that is
    hostile already) answers with the sum.
    """

    first: int
    second: int

    @classmethod
    def new(cls) -> "PasswordProof":
        # Nine digits each: the sum stays below 2**31 for shells with 32-bit arithmetic.
        return cls(100_000_000 + secrets.randbelow(900_000_000), 100_000_000 + secrets.randbelow(900_000_000))

    @property
    def statement(self) -> str:
        """The shell statement that proves it (to stderr)."""
        return f"echo {PASSWORD_MARKER} $(({self.first} + {self.second})) >&2"

    @property
    def line(self) -> bytes:
        """The stderr line the statement prints, and that no echo can produce."""
        return f"{PASSWORD_MARKER} {self.first + self.second}".encode("ascii")


def scrub(text: str, secret: Optional[str]) -> str:
    """`text` (quoted from a machine) without any occurrence of `secret`."""
    return text.replace(secret, SCRUBBED) if secret else text


def remote_command(
    spec: HostSpec, with_password: bool, proof: Optional[PasswordProof] = None, window: Optional[WindowPlan] = None
) -> str:
    """The one shell command sent to the machine. Every inventory value in it is shlex-quoted.

    It picks the first Python 3.6+ that exists, wraps it in `timeout -k` (so a hung payload dies on
    the machine too), optionally under sudo, and reports a missing interpreter or a sudo refusal
    on stderr with FAIL_MARKER so that those get their own failure kinds. With a password, it
    first writes `proof` (see PasswordProof) and waits for the password on stdin.

    The script is handed to `sh -c` by the user's login shell, whatever that is: it is kept on
    one line and free of `!`, which csh-family shells would mangle even inside single quotes.

    With a `window`, the payload gets its `--window` and `--start-at`, and the remote timeout
    is longer by the wait for the start and the window (command_timeout covers the collection
    after it). Without one, the command is the instant capture's, byte for byte.
    """
    seconds = max(1, math.ceil(spec.command_timeout + window_extra(window)))
    extra = [shlex.quote(argument) for argument in window.payload_arguments()] if window is not None else []
    arguments = " ".join(["- --framed --ssh-session"] + extra)
    candidates = (spec.python,) if spec.python else PYTHON_CANDIDATES
    no_python = shlex.quote(f"{FAIL_MARKER} {NO_PYTHON} no Python 3.6+ found (tried {', '.join(candidates)})")
    statements = [f"echo {START_MARKER} >&2"]
    if with_password:
        # Prove it is this script asking, then read the password: the first stdin line, which
        # netviz sends only once it has seen the proof (the payload source follows it).
        statements += [
            (proof or PasswordProof.new()).statement,
            f"IFS= read -r pw || {{ echo '{FAIL_MARKER} {SUDO} the sudo password did not arrive' >&2; exit 126; }}",
        ]
    statements += [
        "py=",
        f"for c in {' '.join(shlex.quote(c) for c in candidates)}; do"
        ' p=$(command -v "$c" 2>/dev/null) || continue;'
        # Any of them may be Python 2 (an old `python3` symlink, the inventory's own choice):
        # each is asked its version, with nothing on stdin (the payload waits there).
        f' "$p" -c "{VERSION_CHECK}" </dev/null >/dev/null 2>&1 || continue;'
        " py=$p; break; done",
        f'[ -n "$py" ] || {{ echo {no_python} >&2; exit 127; }}',
        # Probed, not just looked up: an old BusyBox timeout has no -k and would fail the run.
        f"if timeout -k 1 5 true >/dev/null 2>&1; then set -- timeout -k {KILL_GRACE} {seconds} \"$py\";"
        ' else set -- "$py"; fi',
        # Guarded only when the session process is visible (Linux /proc): see REMOTE_GUARD.
        f'if [ -d "/proc/$PPID" ]; then set -- sh -c {shlex.quote(REMOTE_GUARD)} netviz-guard "$PPID" "$py" "$@"; fi',
    ]
    if spec.sudo == SUDO_NO:
        statements.append(f'exec "$@" {arguments}')
    else:
        statements += [
            f"command -v sudo >/dev/null 2>&1 || {{ echo '{FAIL_MARKER} {SUDO} sudo is not installed' >&2; exit 126; }}",
            f'if msg=$(sudo -n true 2>&1); then exec sudo -n -- "$@" {arguments}; fi',
        ]
        if with_password:
            # Validate the password alone first (a wrong one must not make sudo eat payload lines
            # as further attempts), then feed it once more ahead of the payload; -k makes sure
            # sudo reads it instead of using cached credentials.
            statements += [
                "msg=$(printf '%s\\n' \"$pw\" | sudo -S -p '' -v 2>&1) ||"
                f" {{ echo '{FAIL_MARKER} {SUDO}' \"${{msg:-sudo refused the password}}\" >&2; exit 126; }}",
                "{ printf '%s\\n' \"$pw\"; exec cat; } | sudo -k -S -p '' -- \"$@\" " + arguments,
            ]
        else:
            statements.append(f"echo '{FAIL_MARKER} {SUDO}' \"$msg\" >&2; exit 126")
    return "exec sh -c " + shlex.quote("; ".join(statements))



# --------------------------------------------------------------------------------------------
# running the payload


@dataclass
class CommandOutput:
    stdout: bytes
    stderr: bytes
    exit_status: int
    withheld_sent: bool = True  # False: the proof never came, the withheld input was not sent


@dataclass(frozen=True)
class Withheld:
    """Input (the sudo password) sent ahead of stdin only once the remote side shows `proof`
    on stderr within `wait` seconds; without it, nothing at all is sent."""

    data: bytes
    proof: PasswordProof
    wait: float


def run_command(
    connection: fabric.Connection,
    command: str,
    stdin: bytes,
    timeout: float,
    attempt: Attempt,
    withheld: Optional[Withheld] = None,
) -> CommandOutput:
    """Run `command`, feed `stdin` (after `withheld`, once proven), read stdout and stderr to EOF
    within `timeout` seconds."""
    try:
        channel = connection.create_session()
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise HostFailure(UNREACHABLE, f"the machine refused a session: {error or 'channel closed'}") from None
    attempt.track(channel.close)
    deadline = time.monotonic() + timeout
    try:
        channel.exec_command(command)
        early = _Early(b"", b"")
        if withheld is not None:
            early = _await_proof(channel, withheld.proof.line, min(deadline, time.monotonic() + withheld.wait))
            # Not proven: whatever runs there gets nothing but EOF (the wrapper, if it was just
            # late, then reports that the password did not arrive).
            stdin = withheld.data + stdin if early.proven else b""
        try:
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except OSError:
            pass  # the remote side stopped early (no python, sudo refused): its stderr says why
        stdout, stderr = _read_until_eof(channel, deadline, timeout, attempt.output)
        stdout, stderr = early.stdout + stdout, early.stderr + stderr
        # Output is drained; the exit status follows EOF closely (a deadline still applies).
        if not channel.status_event.wait(max(0.1, deadline - time.monotonic())):
            raise HostFailure(TIMEOUT, f"no exit status within {timeout:g} s")
        return CommandOutput(stdout, stderr, channel.recv_exit_status(), withheld_sent=early.proven or withheld is None)
    except HostFailure:
        raise
    except (paramiko.SSHException, EOFError, OSError) as error:
        if attempt.cancelled:
            raise HostFailure(TIMEOUT, "cancelled") from None
        raise HostFailure(PAYLOAD_ERROR, f"connection lost while running the payload: {error or 'EOF'}") from None
    finally:
        channel.close()


@dataclass
class _Early:
    """Output read while waiting for a proof (login noise, the wrapper's first lines)."""

    stdout: bytes
    stderr: bytes
    proven: bool = False


def _await_proof(channel: paramiko.Channel, line: bytes, until: float) -> _Early:
    """Read stdout and stderr until `line` appears as a whole line on stderr, the remote side
    closes, or `until` passes. Both are kept to their last MAX_STDERR bytes: before any input
    is sent, stdout can hold noise only."""
    stdout = bytearray()
    stderr = bytearray()
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    wanted = b"\n" + line + b"\n"
    while True:
        while channel.recv_ready():
            stdout += channel.recv(1 << 16)
            del stdout[: max(0, len(stdout) - MAX_STDERR)]
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(1 << 16)
            if wanted in b"\n" + stderr:
                return _Early(bytes(stdout), bytes(stderr), proven=True)
            del stderr[: max(0, len(stderr) - MAX_STDERR)]
        if channel.closed or (channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready()):
            return _Early(bytes(stdout), bytes(stderr))
        remaining = until - time.monotonic()
        if remaining <= 0:
            return _Early(bytes(stdout), bytes(stderr))
        poller.poll(min(remaining, 1.0) * 1000)


def _read_until_eof(
    channel: paramiko.Channel, deadline: float, timeout: float, output: OutputShare
) -> tuple[bytes, bytes]:
    """Standard output and error until EOF; standard output counts against `output` (a
    bad_output HostFailure as soon as it would pass the machine's or the run's budget)."""
    stdout = bytearray()
    stderr = bytearray()
    poller = select.poll()  # poll, not select: no FD_SETSIZE limit with hundreds of machines
    poller.register(channel.fileno(), select.POLLIN)
    while True:
        while channel.recv_ready():
            chunk = channel.recv(1 << 20)
            try:
                output.take(len(chunk))
            except BudgetExceeded as error:
                raise HostFailure(BAD_OUTPUT, str(error)) from None
            stdout += chunk
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(1 << 16)
            if len(stderr) > MAX_STDERR:
                del stderr[: len(stderr) - MAX_STDERR]  # keep the tail: the error is at the end
        if channel.eof_received and not channel.recv_ready() and not channel.recv_stderr_ready():
            return bytes(stdout), bytes(stderr)
        if channel.closed:
            return bytes(stdout), bytes(stderr)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HostFailure(TIMEOUT, f"payload gave no complete answer within {timeout:g} s")
        poller.poll(min(remaining, 1.0) * 1000)


def interpret(
    output: CommandOutput, spec: HostSpec, secret: Optional[str], window: Optional[WindowPlan] = None
) -> bytes:
    """Turn exit status and stderr into a HostFailure, or return stdout for frame decoding.

    Every text quoted from the machine (stdout or stderr) is scrubbed of `secret` first;
    `window` (the one the command was given) only words a timeout.
    """
    stderr = scrub(output.stderr.decode("utf-8", errors="replace"), secret)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    started = START_MARKER in lines
    lines = [line for line in lines if line != START_MARKER and not line.startswith(PASSWORD_MARKER + " ")]
    refused = output.exit_status > 0 and output.exit_status not in (124, 137)
    if not started and (refused or not output.withheld_sent):
        said = scrub(_last_line(output.stdout), secret) or (lines[-1] if lines else "")
        withheld = "" if output.withheld_sent else "; the sudo password was not sent"
        raise HostFailure(
            AUTH,
            f"logged in as {spec.user!r}, but the account did not run netviz's command (exit status "
            f"{output.exit_status}{': ' + said[:300] if said else ''}{withheld}); check its login shell "
            "(nologin, /bin/false, a restricted shell or menu) and any ForceCommand or command= in authorized_keys",
        )
    for index, line in enumerate(lines):
        if line.startswith(FAIL_MARKER + " "):
            _, kind, *rest = line.split(" ", 2)
            # sudo's own words may span lines ("Sorry, try again." / "1 incorrect password attempt").
            message = "; ".join(rest + lines[index + 1 : index + 4]) or kind
            if kind == SUDO:
                message = f"sudo refused: {message}" if message != kind else "sudo refused"
            raise HostFailure(kind if kind in FAILURE_KINDS else PAYLOAD_ERROR, message)
    if not output.withheld_sent:
        # Something printed netviz's first line (an echo can) but never the proof.
        said = scrub(_last_line(output.stdout), secret) or (lines[-1] if lines else "")
        raise HostFailure(
            AUTH,
            f"logged in as {spec.user!r}, but what runs there never proved to be netviz's command "
            f"(exit status {output.exit_status}{': ' + said[:300] if said else ''}): the sudo password was not sent; "
            "check the account's login shell and any ForceCommand or command= in authorized_keys",
        )
    status = output.exit_status
    if status in (124, 137):
        after = f" after its {window.seconds:g} s window" if window is not None else ""
        raise HostFailure(
            TIMEOUT,
            f"payload did not finish within {math.ceil(spec.command_timeout)} s{after} (stopped on the machine)",
        )
    if status < 0:
        # paramiko's -1: the channel closed without an exit status (killed, or the link dropped).
        said = f"; last error line: {lines[-1][:300]}" if lines else ""
        raise HostFailure(PAYLOAD_ERROR, f"the session ended without an exit status (payload killed or connection cut){said}")
    if status != 0:
        last = lines[-1] if lines else "no error message"
        raise HostFailure(PAYLOAD_ERROR, f"payload failed (exit status {status}): {last[:500]}")
    return output.stdout


def _last_line(data: bytes) -> str:
    """The last non-empty line of some output, as text for a message (one line, printable)."""
    for line in reversed(data[-4096:].decode("utf-8", errors="replace").splitlines()):
        if line.strip():
            return "".join(char if char.isprintable() else "?" for char in line.strip())
    return ""



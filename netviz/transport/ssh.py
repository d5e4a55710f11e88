"""One machine over SSH: verify its host key, send the payload, read the framed snapshot back.

Every way this can go wrong ends as a HostFailure(kind, message); the kinds are listed in
FAILURE_KINDS. Nothing here prints; collect.py runs one `fetch_snapshot` per machine on a pool.

Why so much is done by hand around fabric's Connection:
- Fabric 3 installs paramiko's AutoAddPolicy on every client, so unknown and even changed host
  keys would be accepted. We load known_hosts ourselves (netviz/known_hosts.py, with OpenSSH's
  patterns and markers) and install a verifying policy before `open()`, also on every jump host
  (fabric's own ProxyJump support builds hop connections with AutoAddPolicy, so hops are opened
  here instead).
- `getaddrinfo` has no timeout: it runs in a daemon thread that we stop waiting for.
- Output is read with poll() until EOF *before* asking for the exit status (paramiko stalls
  once ~2 MiB sit unread), and paramiko calls that wait without a timeout are bounded by the
  per-machine deadline in collect.py, which calls `Attempt.cancel()`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import secrets
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import fabric
import paramiko

from netviz.budget import BudgetExceeded, OutputBudget, OutputShare
from netviz.inventory import GLOBAL_KNOWN_HOSTS, SUDO_NO, SUDO_NOPASSWD, SUDO_PASSWORD, HostSpec
from netviz.known_hosts import (
    KEY_CHANGED,
    KEY_KNOWN,
    KEY_REVOKED,
    KnownHosts,
    Verdict,
    fingerprint,
    host_algorithms,
)

# Failure kinds, in the order a connection meets them.
DNS = "dns"
REFUSED = "refused"
UNREACHABLE = "unreachable"
AUTH = "auth"
HOST_KEY = "host_key"
SUDO = "sudo"
NO_PYTHON = "no_python"
TIMEOUT = "timeout"
PAYLOAD_ERROR = "payload_error"
BAD_OUTPUT = "bad_output"
FAILURE_KINDS = (DNS, REFUSED, UNREACHABLE, AUTH, HOST_KEY, SUDO, NO_PYTHON, TIMEOUT, PAYLOAD_ERROR, BAD_OUTPUT)

PYTHON_CANDIDATES = ("python3", "/usr/libexec/platform-python", "python")
KILL_GRACE = 5  # `timeout -k`: seconds between SIGTERM and SIGKILL on the machine
# Standard output is bounded by the run's OutputBudget (netviz/budget.py: per machine and for
# all the machines at once); standard error keeps its last MAX_STDERR bytes (the error is there).
MAX_STDERR = 256 * 1024
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

log = logging.getLogger(__name__)

# paramiko logs socket errors of connections we close on purpose (cancel, timeouts); every
# failure already reaches the user as a HostFailure, so keep its log off the terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _ChannelOpenFailures(logging.Handler):
    """The reason a jump host gives for not reaching the next machine ("Connection refused",
    "No route to host") reaches paramiko's log only; ChannelException keeps just "Connect
    failed". Keep the last reason per transport thread so _tunnel can name it."""

    MARK = "open FAILED: "

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self._reasons: dict[Optional[int], str] = {}
        self._reasons_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.MARK in message:
            reason = message.split(self.MARK, 1)[1].rsplit(": ", 1)[0]
            with self._reasons_lock:
                self._reasons[record.thread] = reason

    def pop(self, thread: Optional[int]) -> Optional[str]:
        with self._reasons_lock:
            return self._reasons.pop(thread, None)


_CHANNEL_OPEN_FAILURES = _ChannelOpenFailures()
logging.getLogger("paramiko.transport").addHandler(_CHANNEL_OPEN_FAILURES)


class HostFailure(Exception):
    """A machine could not give its snapshot: `kind` is one of FAILURE_KINDS."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass
class Timings:
    """Seconds spent per phase on one machine (0 for phases not reached)."""

    dns: float = 0.0
    connect: float = 0.0  # TCP + SSH handshake + authentication, jump hosts included
    command: float = 0.0  # payload sent until all output read

    def as_dict(self) -> dict[str, float]:
        return {"dns": round(self.dns, 3), "connect": round(self.connect, 3), "command": round(self.command, 3)}


# --------------------------------------------------------------------------------------------
# host keys


class _VerifyingPolicy(paramiko.RejectPolicy):
    """Judges every key a machine offers against known_hosts (see netviz/known_hosts.py).

    paramiko is given no known keys at all: its own check knows exact names only and one key
    per type, so it would call a key listed by a pattern line unknown, and a second valid key
    of the same type changed. With none, paramiko hands every offered key to this policy.
    """

    def __init__(self, store: KnownHosts, record_to: str, accept_new: bool):
        self.store = store
        self.record_to = record_to
        self.accept_new = accept_new

    def missing_host_key(self, client: Optional[paramiko.SSHClient], hostname: str, key: paramiko.PKey) -> None:
        verdict = self.store.check(hostname, key)
        if verdict.status == KEY_KNOWN:
            return
        offered = f"{key.get_name()} {fingerprint(key)}"
        if verdict.status == KEY_REVOKED:
            raise HostFailure(HOST_KEY, f"host key {offered} of {hostname} is revoked")
        authority = _certificate_authority_note(hostname, verdict)
        if verdict.status == KEY_CHANGED and verdict.recorded is not None:
            recorded = verdict.recorded
            raise HostFailure(
                HOST_KEY,
                f"host key of {hostname} has CHANGED: known_hosts has {recorded.key.get_name()} "
                f"{fingerprint(recorded.key)} ({recorded.where}), the machine offers {offered}; refusing "
                "(possible man-in-the-middle). If the change is expected, replace the key on that line of known_hosts"
                + (f"; {authority}" if authority else ""),
            )
        if not self.accept_new:
            if authority:
                raise HostFailure(HOST_KEY, f"unknown host key for {hostname}: {offered}; {authority}")
            raise HostFailure(
                HOST_KEY,
                f"unknown host key for {hostname}: {offered}; "
                "verify it, then add it to known_hosts or rerun with --accept-new-host-keys",
            )
        try:
            self.store.record(self.record_to, hostname, key)
        except OSError as error:
            raise HostFailure(
                HOST_KEY, f"cannot record the new key of {hostname} in {self.record_to}: {error.strerror or error}"
            ) from None


def _certificate_authority_note(hostname: str, verdict: Verdict) -> str:
    """What to do when known_hosts trusts a CA for the machine: netviz cannot check certificates."""
    line = verdict.certificate_authority
    if line is None:
        return ""
    return (
        f"known_hosts trusts a certificate authority for {hostname} (@cert-authority, {line.where}), but netviz "
        f"checks plain host keys only, not host certificates: add the machine's own key to known_hosts after "
        f"verifying it (for example from `{_keyscan_command(hostname)}`), or rerun with --accept-new-host-keys"
    )


def _keyscan_command(hostname: str) -> str:
    """The ssh-keyscan command that fetches the plain keys of `host` or `[host]:port`."""
    if hostname.startswith("[") and "]:" in hostname:
        host, _, port = hostname[1:].rpartition("]:")
        return f"ssh-keyscan -p {port} {host}"
    return f"ssh-keyscan {hostname}"


def _transport_preferring(key_types: list[str]) -> Callable[..., paramiko.Transport]:
    """A paramiko transport factory that asks first for the host key types known_hosts lists
    for the machine (as `ssh` orders its HostKeyAlgorithms), so that a machine with several keys
    shows the one we can check, rather than a type we know nothing about."""
    wanted = [algorithm for key_type in key_types for algorithm in host_algorithms(key_type)]

    def make(sock: object, **kwargs: object) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)  # type: ignore[arg-type]
        options = transport.get_security_options()
        available = list(options.key_types)
        first = [algorithm for algorithm in available if algorithm in wanted]
        options.key_types = first + [algorithm for algorithm in available if algorithm not in first]
        return transport

    return make


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


def remote_command(spec: HostSpec, with_password: bool, proof: Optional[PasswordProof] = None) -> str:
    """The one shell command sent to the machine. Every inventory value in it is shlex-quoted.

    It picks the first Python 3.6+ that exists, wraps it in `timeout -k` (so a hung payload dies on
    the machine too), optionally under sudo, and reports a missing interpreter or a sudo refusal
    on stderr with FAIL_MARKER so that those get their own failure kinds. With a password, it
    first writes `proof` (see PasswordProof) and waits for the password on stdin.

    The script is handed to `sh -c` by the user's login shell, whatever that is: it is kept on
    one line and free of `!`, which csh-family shells would mangle even inside single quotes.
    """
    seconds = max(1, math.ceil(spec.command_timeout))
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
        ' "$p" -c "import sys; sys.exit(sys.version_info < (3, 6))" </dev/null >/dev/null 2>&1 || continue;'
        " py=$p; break; done",
        f'[ -n "$py" ] || {{ echo {no_python} >&2; exit 127; }}',
        # Probed, not just looked up: an old BusyBox timeout has no -k and would fail the run.
        f"if timeout -k 1 5 true >/dev/null 2>&1; then set -- timeout -k {KILL_GRACE} {seconds} \"$py\";"
        ' else set -- "$py"; fi',
        # Guarded only when the session process is visible (Linux /proc): see REMOTE_GUARD.
        f'if [ -d "/proc/$PPID" ]; then set -- sh -c {shlex.quote(REMOTE_GUARD)} netviz-guard "$PPID" "$py" "$@"; fi',
    ]
    if spec.sudo == SUDO_NO:
        statements.append('exec "$@" - --framed --ssh-session')
    else:
        statements += [
            f"command -v sudo >/dev/null 2>&1 || {{ echo '{FAIL_MARKER} {SUDO} sudo is not installed' >&2; exit 126; }}",
            'if msg=$(sudo -n true 2>&1); then exec sudo -n -- "$@" - --framed --ssh-session; fi',
        ]
        if with_password:
            # Validate the password alone first (a wrong one must not make sudo eat payload lines
            # as further attempts), then feed it once more ahead of the payload; -k makes sure
            # sudo reads it instead of using cached credentials.
            statements += [
                "msg=$(printf '%s\\n' \"$pw\" | sudo -S -p '' -v 2>&1) ||"
                f" {{ echo '{FAIL_MARKER} {SUDO}' \"${{msg:-sudo refused the password}}\" >&2; exit 126; }}",
                "{ printf '%s\\n' \"$pw\"; exec cat; } | sudo -k -S -p '' -- \"$@\" - --framed --ssh-session",
            ]
        else:
            statements.append(f"echo '{FAIL_MARKER} {SUDO}' \"$msg\" >&2; exit 126")
    return "exec sh -c " + shlex.quote("; ".join(statements))


# --------------------------------------------------------------------------------------------
# connecting


class Attempt:
    """The live resources of one machine's attempt, so another thread can cut it short.

    `output` is the machine's share of the run's output budget (by default a budget of its own:
    the per-machine limit only); `cancel()` gives it back.
    """

    def __init__(self, output: Optional[OutputShare] = None) -> None:
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self.cancelled = False
        self.output = output if output is not None else OutputBudget().share()

    def track(self, closer: Callable[[], None]) -> None:
        with self._lock:
            if self.cancelled:
                closer()
                raise HostFailure(TIMEOUT, "cancelled")
            self._closers.append(closer)

    def cancel(self) -> None:
        """Close every socket and connection of the attempt: blocked paramiko calls then return."""
        with self._lock:
            self.cancelled = True
            closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception:  # closing is best effort; the thread is being abandoned anyway
                pass
        self.output.release()


def resolve(host: str, port: int, timeout: float) -> list[tuple]:
    """getaddrinfo with a deadline: the lookup runs in a daemon thread we stop waiting for."""
    try:
        # Literal addresses need no lookup (and no thread).
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    box: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            box["result"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            box["error"] = error
        done.set()

    threading.Thread(target=lookup, name=f"netviz-dns-{host}", daemon=True).start()
    if not done.wait(timeout):
        raise HostFailure(DNS, f"no DNS answer for {host!r} within {timeout:g} s")
    if "error" in box:
        error = box["error"]
        reason = getattr(error, "strerror", None) or str(error)
        raise HostFailure(DNS, f"cannot resolve {host!r}: {reason}")
    return box["result"]  # type: ignore[return-value]


def open_tcp(addresses: list[tuple], timeout: float, label: str) -> socket.socket:
    """Connect to the first address that answers within the shared deadline."""
    deadline = time.monotonic() + timeout
    refused: Optional[str] = None
    failure: Optional[str] = None
    for index, (family, kind, proto, _, address) in enumerate(addresses):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        # Share the time among the addresses left, so a blackholed IPv6 address does not use
        # it all before the IPv4 one is tried.
        sock.settimeout(remaining / (len(addresses) - index))
        try:
            sock.connect(address)
        except ConnectionRefusedError:
            sock.close()
            refused = f"connection refused by {_show(address)}"
            continue
        except socket.timeout:
            sock.close()
            failure = f"no answer from {_show(address)} in time (connect_timeout {timeout:g} s)"
            continue
        except OSError as error:
            sock.close()
            failure = f"cannot reach {_show(address)}: {error.strerror or error}"
            continue
        sock.settimeout(None)
        return sock
    if refused:
        raise HostFailure(REFUSED, refused)
    raise HostFailure(UNREACHABLE, failure or f"no answer from {label} within {timeout:g} s")


def _show(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class TransportOptions:
    """What every machine of a run shares."""

    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    accept_new_host_keys: bool = False
    sudo_password: Optional[str] = None  # only for hosts with `sudo: password`


_FABRIC_CONFIG_LOCK = threading.Lock()


def _fabric_config() -> fabric.Config:
    # lazy: ignore ~/.fabric.yaml and friends (one could turn on agent forwarding); an empty
    # SSHConfig: ssh_config was already applied by the inventory, and must not be applied twice.
    with _FABRIC_CONFIG_LOCK:
        return fabric.Config(lazy=True, ssh_config=paramiko.SSHConfig())


_KEY_CLASSES = (paramiko.RSAKey, paramiko.ECDSAKey, paramiko.Ed25519Key)  # those paramiko's client tries


def identity_problem(path: str) -> Optional[str]:
    """Why the identity file `path` cannot be used (None: it holds a private key).

    Loaded as paramiko's client loads it (a `-cert.pub` path stands for its private key). A
    file that is not a key would make paramiko give up the whole connection with a parse error
    that reads like a network failure; a missing one would leave only "No authentication
    methods available". A passphrase-protected key is a key: ssh-agent may hold it.
    """
    key_path = path[: -len("-cert.pub")] if path.endswith("-cert.pub") else path
    reason = "not a private key paramiko can read"
    for key_class in _KEY_CLASSES:
        try:
            key_class.from_private_key_file(key_path)
            return None
        except paramiko.PasswordRequiredException:
            return None
        except OSError as error:
            return error.strerror or str(error)
        except (paramiko.SSHException, ValueError, TypeError) as error:
            reason = f"not a private key paramiko can read ({str(error).rstrip('.') or type(error).__name__})"
    return reason


def usable_identities(spec: HostSpec) -> tuple[list[str], list[str]]:
    """The identity files that hold a key, and a note per file that does not ("PATH: why")."""
    usable: list[str] = []
    skipped: list[str] = []
    for path in spec.identity_files:
        problem = identity_problem(path)
        if problem is None:
            usable.append(path)
        else:
            skipped.append(f"{path}: {problem}")
    return usable, skipped


def _connection(
    spec: HostSpec, sock: object, options: TransportOptions, identities: Optional[list[str]] = None
) -> fabric.Connection:
    """A fabric Connection with host keys checked strictly (set up before open()), offering
    `identities` (default: the spec's identity files that hold a key)."""
    if identities is None:
        identities = usable_identities(spec)[0]
    options.known_hosts.load(spec.known_hosts)
    options.known_hosts.load(GLOBAL_KNOWN_HOSTS)
    known_types = [key.get_name() for key in options.known_hosts.host_keys(spec.known_hosts_key)]
    connect_kwargs = {
        "sock": sock,
        "transport_factory": _transport_preferring(known_types),
        # paramiko's `timeout` bounds banner + key exchange and, when it runs out first, is
        # silently ignored (the failure shows up later as "No existing session"): keep it
        # above the banner timeout so a mute server is reported as such.
        "timeout": spec.connect_timeout * 2,
        "banner_timeout": spec.connect_timeout,
        "auth_timeout": spec.connect_timeout,
        "channel_timeout": spec.connect_timeout,
        "allow_agent": not spec.identities_only,
        "look_for_keys": not spec.identity_files and not spec.identities_only,
    }
    if identities:
        connect_kwargs["key_filename"] = identities
    connection = fabric.Connection(
        host=spec.address,
        user=spec.user,
        port=spec.port,
        config=_fabric_config(),
        gateway=False,
        forward_agent=False,
        connect_kwargs=connect_kwargs,
    )
    # The client keeps no known keys: every key offered goes to the policy (see _VerifyingPolicy).
    connection.client.set_missing_host_key_policy(
        _VerifyingPolicy(options.known_hosts, spec.known_hosts, options.accept_new_host_keys)
    )
    return connection


def _open(spec: HostSpec, sock: object, options: TransportOptions, attempt: Attempt, label: str) -> fabric.Connection:
    identities, skipped = usable_identities(spec)
    connection = _connection(spec, sock, options, identities)
    attempt.track(connection.close)
    unusable = f"; identity files left out: {'; '.join(skipped)}" if skipped else ""
    try:
        connection.open()
    except HostFailure as failure:
        raise HostFailure(failure.kind, f"{label}{failure.message}") from None
    except paramiko.PasswordRequiredException as error:
        raise HostFailure(AUTH, f"{label}key is passphrase-protected ({error}); load it into ssh-agent") from None
    except paramiko.AuthenticationException as error:
        tried = ", ".join(identities) or ("ssh-agent" if not spec.identities_only else "no key")
        if not spec.identity_files and not spec.identities_only:
            tried = "ssh-agent and default keys"
        reason = str(error).rstrip(".") or "refused"
        raise HostFailure(
            AUTH, f"{label}authentication as {spec.user!r} failed ({reason}; tried {tried}{unusable})"
        ) from None
    except paramiko.ssh_exception.ProxyCommandFailure as error:
        raise HostFailure(UNREACHABLE, f"{label}ProxyCommand failed: {error}") from None
    except paramiko.SSHException as error:
        text = str(error) or type(error).__name__
        if attempt.cancelled:
            raise HostFailure(TIMEOUT, "cancelled") from None
        if "banner" in text.lower():
            raise HostFailure(UNREACHABLE, f"{label}no SSH banner from {spec.address}:{spec.port} ({text})") from None
        if "no existing session" in text.lower():
            raise HostFailure(
                UNREACHABLE, f"{label}SSH key exchange with {spec.address}:{spec.port} did not finish in time"
            ) from None
        if "authentication" in text.lower():
            raise HostFailure(AUTH, f"{label}authentication as {spec.user!r} failed ({text.rstrip('.')}{unusable})") from None
        raise HostFailure(UNREACHABLE, f"{label}SSH handshake with {spec.address}:{spec.port} failed: {text}") from None
    except (EOFError, OSError) as error:
        if attempt.cancelled:
            raise HostFailure(TIMEOUT, "cancelled") from None
        raise HostFailure(
            UNREACHABLE, f"{label}connection to {spec.address}:{spec.port} lost during handshake: {error or 'EOF'}"
        ) from None
    return connection


def connect(spec: HostSpec, options: TransportOptions, attempt: Attempt, timings: Timings) -> fabric.Connection:
    """An open, authenticated Connection to `spec`, through its jump hosts if any."""
    hops = _flatten_hops(spec)
    first = hops[0] if hops else spec
    started = time.monotonic()
    if first.proxy_command:
        sock: object = paramiko.ProxyCommand(first.proxy_command)
        attempt.track(sock.close)  # type: ignore[attr-defined]
    else:
        addresses = resolve(first.address, first.port, first.connect_timeout)
        timings.dns = time.monotonic() - started
        sock = open_tcp(addresses, first.connect_timeout, f"{first.address}:{first.port}")
        attempt.track(sock.close)  # type: ignore[attr-defined]
    connect_started = time.monotonic()
    previous: Optional[fabric.Connection] = None
    for hop in hops:
        label = f"jump host {hop.name}: "
        if previous is not None:
            sock = _tunnel(previous, hop, label, attempt)
        previous = _open(hop, sock, options, attempt, label)
    if previous is not None:
        sock = _tunnel(previous, spec, "", attempt)
    connection = _open(spec, sock, options, attempt, "")
    timings.connect = time.monotonic() - connect_started
    return connection


def _flatten_hops(spec: HostSpec) -> list[HostSpec]:
    hops: list[HostSpec] = []
    for hop in spec.jump:
        hops.extend(_flatten_hops(hop))
        hops.append(hop)
    return hops


def _tunnel(through: fabric.Connection, target: HostSpec, label: str, attempt: Attempt) -> paramiko.Channel:
    """A direct-tcpip channel from a jump host to the next machine (ProxyJump)."""
    destination = _show((target.address, target.port))
    try:
        channel = through.transport.open_channel(
            "direct-tcpip", dest_addr=(target.address, target.port), src_addr=("", 0), timeout=target.connect_timeout
        )
    except paramiko.ChannelException as error:
        said = _CHANNEL_OPEN_FAILURES.pop(through.transport.ident) or error.text or "refused"
        reason = said.lower()
        where = f"{label}the jump host could not connect to {destination}: {said}"
        if "refused" in reason:
            raise HostFailure(REFUSED, where) from None
        if "resolve" in reason or "name" in reason:
            raise HostFailure(DNS, where) from None
        raise HostFailure(UNREACHABLE, where) from None
    except (paramiko.SSHException, EOFError, OSError) as error:
        if "timeout" in str(error).lower():
            # The jump host resolves a name itself: a slow or failing DNS lookup there also ends here.
            resolved_there = "" if _is_ip_literal(target.address) else (
                f" ({target.address} is resolved by the jump host: a slow or failed DNS lookup there looks the same)"
            )
            raise HostFailure(
                UNREACHABLE,
                f"{label}the jump host did not reach {destination} within "
                f"{target.connect_timeout:g} s{resolved_there}",
            ) from None
        raise HostFailure(
            UNREACHABLE, f"{label}the jump host gave no route to {destination}: {error or 'EOF'}"
        ) from None
    attempt.track(channel.close)
    return channel


def _is_ip_literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is no name
    except ValueError:
        return False
    return True


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


def interpret(output: CommandOutput, spec: HostSpec, secret: Optional[str]) -> bytes:
    """Turn exit status and stderr into a HostFailure, or return stdout for frame decoding.

    Every text quoted from the machine (stdout or stderr) is scrubbed of `secret` first.
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
        raise HostFailure(
            TIMEOUT, f"payload did not finish within {math.ceil(spec.command_timeout)} s (stopped on the machine)"
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


def fetch_framed(
    spec: HostSpec, payload: bytes, options: TransportOptions, attempt: Attempt, timings: Timings
) -> bytes:
    """Connect to `spec`, run the payload there, and return its raw stdout (a frame plus noise)."""
    password = options.sudo_password if spec.sudo == SUDO_PASSWORD else None
    if spec.sudo == SUDO_PASSWORD and password is None:
        raise HostFailure(SUDO, f"sudo needs a password: set {SUDO_PASSWORD_ENV} or answer the prompt")
    connection = connect(spec, options, attempt, timings)
    try:
        proof = PasswordProof.new() if password is not None else None
        command = remote_command(spec, with_password=password is not None, proof=proof)
        # The password goes only to a wrapper that proved it is netviz's (see PasswordProof); the
        # wrapper proves it first thing, so a login that has not within connect_timeout (10 s
        # at least) runs something else.
        withheld = None
        if password is not None and proof is not None:
            withheld = Withheld((password + "\n").encode("utf-8"), proof, max(spec.connect_timeout, PROOF_WAIT_MIN))
        # Our side waits for the remote `timeout -k` to act, plus slack for the network.
        wait = spec.command_timeout + KILL_GRACE + 5
        started = time.monotonic()
        # The command never holds the sudo password (it travels on stdin), so it may be logged.
        log.debug("%s: running %s", spec.name, command)
        output = run_command(connection, command, payload, wait, attempt, withheld)
        timings.command = time.monotonic() - started
        log.debug("%s: exit status %s, %d bytes of output, %d of stderr, %.2f s", spec.name, output.exit_status,
                  len(output.stdout), len(output.stderr), timings.command)
        return interpret(output, spec, password)
    except HostFailure as failure:
        raise HostFailure(failure.kind, scrub(failure.message, password)) from None
    finally:
        connection.close()


__all__ = [
    "FAILURE_KINDS",
    "HostFailure",
    "KnownHosts",
    "TransportOptions",
    "Attempt",
    "Timings",
    "fetch_framed",
    "remote_command",
    "resolve",
    "fingerprint",
    "SUDO_NO",
    "SUDO_NOPASSWD",
]

"""One machine over SSH: verify its host key, send the payload, read the framed snapshot back.

Every way this can go wrong ends as a HostFailure(kind, message) (netviz/transport/base.py).
Nothing here prints; collect.py runs one `SSHTransport.fetch` per machine on a pool. What runs
on the machine, and how its answer is read, is in ssh_command.py.

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
- paramiko's errors are sorted by their type where paramiko has one; where it raises a plain
  SSHException, by its message, each check naming the message it matches (see _handshake_failure).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import fabric
import paramiko

from netviz.inventory import GLOBAL_KNOWN_HOSTS, SUDO_PASSWORD, HostSpec
from netviz import host_certificates
from netviz.known_hosts import (
    CERT_AUTHORITY,
    KEY_CERTIFICATE_REFUSED,
    KEY_CHANGED,
    KEY_KNOWN,
    KEY_REVOKED,
    KnownHosts,
    Verdict,
    fingerprint,
    host_algorithms,
)
from netviz.transport.base import (
    AUTH,
    DNS,
    HOST_KEY,
    REFUSED,
    SUDO,
    TIMEOUT,
    UNREACHABLE,
    Attempt,
    HostFailure,
    Timings,
    WindowPlan,
    window_extra,
)
from netviz.transport.ssh_command import (
    KILL_GRACE,
    PROOF_WAIT_MIN,
    SUDO_PASSWORD_ENV,
    PasswordProof,
    Withheld,
    interpret,
    remote_command,
    run_command,
    scrub,
)

# Open files: a machine holds a few descriptors per hop at once (its TCP socket or ProxyCommand
# pipes, the session channel's wake-up pipe, a DNS lookup's socket).
DESCRIPTORS_PER_HOP = 4

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
            raise HostFailure(HOST_KEY, f"host key {offered} of {hostname} is revoked"
                              + (f": {verdict.reason}" if verdict.reason else ""))
        if verdict.status == KEY_CERTIFICATE_REFUSED:
            where = verdict.certificate_authority.where if verdict.certificate_authority else "known_hosts"
            raise HostFailure(
                HOST_KEY,
                f"host certificate of {hostname} refused: {verdict.reason} (certified key {offered}; the authorities "
                f"known_hosts trusts for it start at {where}); refusing (possible man-in-the-middle)",
            )
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
    """What to do when known_hosts trusts a CA for the machine but it offered a plain key."""
    line = verdict.certificate_authority
    if line is None:
        return ""
    return (
        f"known_hosts trusts a certificate authority for {hostname} (@cert-authority, {line.where}), but the "
        f"machine offered a plain host key, no certificate: give it a host certificate (sshd's HostCertificate), "
        f"or add its own key to known_hosts after verifying it (for example from `{_keyscan_command(hostname)}`), "
        f"or rerun with --accept-new-host-keys"
    )


def _keyscan_command(hostname: str) -> str:
    """The ssh-keyscan command that fetches the plain keys of `host` or `[host]:port`."""
    if hostname.startswith("[") and "]:" in hostname:
        host, _, port = hostname[1:].rpartition("]:")
        return f"ssh-keyscan -p {port} {host}"
    return f"ssh-keyscan {hostname}"


def _transport_preferring(key_types: list[str], certificates: bool = False) -> Callable[..., paramiko.Transport]:
    """A paramiko transport factory that asks first for the host key types known_hosts lists
    for the machine (as `ssh` orders its HostKeyAlgorithms), so that a machine with several keys
    shows the one we can check, rather than a type we know nothing about. With `certificates`
    (known_hosts trusts a certificate authority for the machine), certificates come before all."""
    wanted = [algorithm for key_type in key_types for algorithm in host_algorithms(key_type)]

    def make(sock: object, **kwargs: object) -> paramiko.Transport:
        transport = paramiko.Transport(sock, **kwargs)  # type: ignore[arg-type]
        options = transport.get_security_options()
        available = list(options.key_types)
        first = [host_certificates.ALGORITHMS[algorithm] for algorithm in available
                 if certificates and algorithm in host_certificates.ALGORITHMS]
        first += [algorithm for algorithm in available if algorithm in wanted]
        options.key_types = first + [algorithm for algorithm in available if algorithm not in first]
        return transport

    return make


# --------------------------------------------------------------------------------------------
# connecting



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
    window: Optional[WindowPlan] = None  # --window: one observation window for every machine


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
    known = options.known_hosts.entries(spec.known_hosts_key, revoked=True)
    known_types = [entry.key.get_name() for entry in known if not entry.marker]
    # (a revoked authority too: the certificate it signed is then refused, saying so)
    certified = any(entry.marker == CERT_AUTHORITY for entry in known)
    connect_kwargs = {
        "sock": sock,
        "transport_factory": _transport_preferring(known_types, certified),
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
    """Open and authenticate a Connection to `spec` over `sock`; any failure is a HostFailure
    whose message starts with `label` (which jump host, if any)."""
    identities, skipped = usable_identities(spec)
    connection = _connection(spec, sock, options, identities)
    attempt.track(connection.close)
    try:
        connection.open()
    except HostFailure as failure:  # from _VerifyingPolicy: the host key
        raise HostFailure(failure.kind, f"{label}{failure.message}") from None
    except (paramiko.SSHException, EOFError, OSError) as error:
        raise _handshake_failure(error, spec, label, _Offered(spec, identities, skipped), attempt.cancelled) from None
    return connection


@dataclass(frozen=True)
class _Offered:
    """The keys a connection offered, to say so when authentication fails."""

    spec: HostSpec
    identities: list[str]  # the identity files that hold a key
    skipped: list[str]  # "PATH: why" per identity file left out

    @property
    def tried(self) -> str:
        if not self.spec.identity_files and not self.spec.identities_only:
            return "ssh-agent and default keys"
        return ", ".join(self.identities) or ("ssh-agent" if not self.spec.identities_only else "no key")

    @property
    def unusable(self) -> str:
        return f"; identity files left out: {'; '.join(self.skipped)}" if self.skipped else ""


def _handshake_failure(
    error: BaseException, spec: HostSpec, label: str, offered: _Offered, cancelled: bool
) -> HostFailure:
    """The HostFailure for an error of Connection.open(): sorted by paramiko's exception type
    where it has one, by its message only where paramiko raises a plain SSHException."""
    where = f"{spec.address}:{spec.port}"
    failed_as = f"{label}authentication as {spec.user!r} failed"
    if isinstance(error, paramiko.PasswordRequiredException):
        return HostFailure(AUTH, f"{label}key is passphrase-protected ({error}); load it into ssh-agent")
    if isinstance(error, paramiko.BadAuthenticationType):
        # The server takes none of the methods netviz uses (keys): password only, for example.
        allowed = ", ".join(error.allowed_types) or "none"
        return HostFailure(AUTH, f"{failed_as} (the server allows only: {allowed}; tried {offered.tried}"
                                 f"{offered.unusable})")
    if isinstance(error, paramiko.AuthenticationException):
        reason = str(error).rstrip(".") or "refused"
        return HostFailure(AUTH, f"{failed_as} ({reason}; tried {offered.tried}{offered.unusable})")
    if isinstance(error, paramiko.ssh_exception.ProxyCommandFailure):
        return HostFailure(UNREACHABLE, f"{label}ProxyCommand failed: {error}")
    if cancelled:
        return HostFailure(TIMEOUT, "cancelled")
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        # Raised when paramiko opens the TCP connection itself (netviz hands it its own socket,
        # see open_tcp): every address refused it, or some did not answer.
        refused = all(isinstance(cause, ConnectionRefusedError) for cause in error.errors.values())
        return HostFailure(REFUSED if refused else UNREACHABLE, f"{label}{error}")
    if isinstance(error, paramiko.IncompatiblePeer):
        return HostFailure(UNREACHABLE, f"{label}SSH handshake with {where} failed: no algorithm in common ({error})")
    if isinstance(error, paramiko.SSHException):
        return _plain_ssh_failure(error, spec, label, offered)
    return HostFailure(UNREACHABLE, f"{label}connection to {where} lost during handshake: {error or 'EOF'}")


def _plain_ssh_failure(error: paramiko.SSHException, spec: HostSpec, label: str, offered: _Offered) -> HostFailure:
    """A plain SSHException, told apart by its message: paramiko has no type for these."""
    where = f"{spec.address}:{spec.port}"
    text = str(error) or type(error).__name__
    lowered = text.lower()
    # paramiko.Transport._check_banner: "Error reading SSH protocol banner<reason>" (nothing, or
    # not SSH, within banner_timeout) and "Invalid SSH banner".
    if "banner" in lowered:
        return HostFailure(UNREACHABLE, f"{label}no SSH banner from {where} ({text})")
    # paramiko.Transport.auth_*: "No existing session": the key exchange had not finished when
    # SSHClient.connect's `timeout` ran out (see _connection).
    if "no existing session" in lowered:
        return HostFailure(UNREACHABLE, f"{label}SSH key exchange with {where} did not finish in time")
    # paramiko.SSHClient._auth: "No authentication methods available" (no key, no agent), and
    # Transport.auth_*: "Fallback authentication failed.".
    if "authentication" in lowered:
        return HostFailure(AUTH, f"{label}authentication as {spec.user!r} failed ({text.rstrip('.')}{offered.unusable})")
    return HostFailure(UNREACHABLE, f"{label}SSH handshake with {where} failed: {text}")


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
        # The code is CONNECT_FAILED for every reason, so the jump host's words decide: OpenSSH's
        # sshd says strerror() for a failed connect ("Connection refused", "No route to host")
        # and gai_strerror() for a failed lookup ("Name or service not known", "Temporary failure
        # in name resolution"); paramiko keeps them in its log only (_ChannelOpenFailures).
        said = _CHANNEL_OPEN_FAILURES.pop(through.transport.ident) or error.text or "refused"
        reason = said.lower()
        where = f"{label}the jump host could not connect to {destination}: {said}"
        if "refused" in reason:
            raise HostFailure(REFUSED, where) from None
        if "resolve" in reason or "name" in reason:
            raise HostFailure(DNS, where) from None
        raise HostFailure(UNREACHABLE, where) from None
    except (paramiko.SSHException, EOFError, OSError) as error:
        # paramiko.Transport.open_channel: "Timeout opening channel." (a plain SSHException).
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
        command = remote_command(spec, with_password=password is not None, proof=proof, window=options.window)
        # The password goes only to a wrapper that proved it is netviz's (see PasswordProof); the
        # wrapper proves it first thing, so a login that has not within connect_timeout (10 s
        # at least) runs something else.
        withheld = None
        if password is not None and proof is not None:
            withheld = Withheld((password + "\n").encode("utf-8"), proof, max(spec.connect_timeout, PROOF_WAIT_MIN))
        # Our side waits for the remote `timeout -k` to act, plus slack for the network; a
        # window (and the wait for its start) is not charged to command_timeout.
        wait = spec.command_timeout + window_extra(options.window) + KILL_GRACE + 5
        started = time.monotonic()
        # The command never holds the sudo password (it travels on stdin), so it may be logged.
        log.debug("%s: running %s", spec.name, command)
        output = run_command(connection, command, payload, wait, attempt, withheld)
        timings.command = time.monotonic() - started
        log.debug("%s: exit status %s, %d bytes of output, %d of stderr, %.2f s", spec.name, output.exit_status,
                  len(output.stdout), len(output.stderr), timings.command)
        return interpret(output, spec, password, window=options.window)
    except HostFailure as failure:
        raise HostFailure(failure.kind, scrub(failure.message, password)) from None
    finally:
        connection.close()


class SSHTransport:
    """The Transport to machines over SSH (see the module's docstring); `options` are what every
    machine of the run shares (known_hosts, the sudo password)."""

    def __init__(self, options: Optional[TransportOptions] = None) -> None:
        self.options = options if options is not None else TransportOptions()

    def fetch(self, target: HostSpec, payload: bytes, attempt: Attempt, timings: Timings) -> bytes:
        """Connect to `target` (through its jump hosts), run the payload, return its raw stdout."""
        return fetch_framed(target, payload, self.options, attempt, timings)

    def deadline(self, target: HostSpec) -> float:
        """Each connection phase has its own limit, for the machine and each jump host: DNS, TCP,
        banner + key exchange (twice connect_timeout), authentication, opening the channel; the
        command has its own timeout (plus the window, if any) and the remote kill grace; a
        little slack on top."""
        hops = 1 + len(target.jump)
        command = target.command_timeout + window_extra(self.options.window)
        return target.connect_timeout * 6 * hops + command + KILL_GRACE + 10

    def descriptors(self, target: HostSpec) -> int:
        """DESCRIPTORS_PER_HOP for the machine and for each jump host on the way."""
        return DESCRIPTORS_PER_HOP * (1 + len(_flatten_hops(target)))

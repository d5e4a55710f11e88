"""Real Linux machines on one box, built out of namespaces, for end-to-end tests.

A ``Lab`` is a bridge in the root network namespace plus machines. Each machine has its own
network namespace (a veth into the bridge, an IPv4 and an IPv6 address), and its own PID, mount
and UTS namespaces: its pid 1 is an OpenSSH server started with
``ip netns exec NS unshare --pid --fork --mount-proc --uts sh init.sh``. Before it execs sshd,
``init.sh`` gives the machine private mounts: its own /tmp, /run, /home, /root, hostname,
machine-id and /etc/hosts, the lab's users (bind-mounted /etc/passwd, shadow, group, sudoers),
and optionally an overlay on /usr/bin that hides or wraps ``python3`` (the fault machines).

The orchestrator (the test process, in the root namespace) reaches every machine over the bridge,
where the root namespace owns the first address of the lab's subnet. Each lab takes its own
subnet (10.77.N.0/24, fd77:0:0:N::/64), so two labs can run side by side.

Everything started is recorded in /run/netviz-lab/<prefix>.json so that ``cleanup_stale`` can
remove what a crashed run left behind. ``Lab.stop`` is idempotent and also runs at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import yaml

from netviz.transport.ssh_command import VERSION_CHECK

STATE_DIR = Path("/run/netviz-lab")
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"

# Every command the lab runs gets this environment: the box's own PATH may point at other
# interpreters (pyenv shims, virtualenvs) that the machines must not see.
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

# The system interpreter every machine runs its programs with (never a virtualenv's).
SYSTEM_PYTHON = "/usr/bin/python3"

REQUIRED_TOOLS = ("ip", "unshare", "nsenter", "sshd", "ssh-keygen", "ssh", "ss", "sudo", "setsid", "mount", "openssl")

# Users that exist only inside the lab machines (bind-mounted /etc/passwd, shadow, group and
# sudoers). Every one of them logs in with the lab's client key.
UNPRIVILEGED_USER = "labuser"  # no sudoers entry at all: `sudo -n` fails
SUDO_PASSWORD_USER = "labsudo"  # may sudo, with a password: `sudo -n` fails, `sudo -S` works
SUDO_NOPASSWD_USER = "labadmin"  # may sudo without a password: `sudo -n` works
SUDO_PASSWORD = "netviz-lab-sudo"
LAB_USERS = {UNPRIVILEGED_USER: 2901, SUDO_PASSWORD_USER: 2902, SUDO_NOPASSWD_USER: 2903}

SUBNET_V4 = "10.77.{index}.0/24"
SUBNET_V6 = "fd77:0:0:{index}::/64"
FIRST_MACHINE_HOST = 10  # machines get .10, .11, ...; phantom hosts .200 and up
FIRST_PHANTOM_HOST = 200


class LabError(RuntimeError):
    """The lab could not be built or driven; the message says which step failed."""


def missing_requirements() -> list[str]:
    """Why the lab cannot run here (not root, a tool missing); empty when it can."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("the lab needs root (network, PID and mount namespaces)")
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool, path=CLEAN_ENV["PATH"]) is None:
            reasons.append(f"`{tool}` is not installed")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        reasons.append(f"{SYSTEM_PYTHON} is missing")
    return reasons


# --------------------------------------------------------------------------- small helpers


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a root-side command with the clean environment and readable failures."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, env=CLEAN_ENV, timeout=timeout, **kwargs
    )
    if check and result.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _start_time(pid: int) -> Optional[int]:
    """The start time of ``pid`` in clock ticks (to tell a process from a later one with its pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start_time: Optional[int] = None) -> bool:
    now = _start_time(pid)
    if now is None:
        return False
    if _is_zombie(pid):
        return False
    return start_time is None or now == start_time


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(item) for item in text.split()]


def _kill(pid: int, start_time: Optional[int] = None, sig: int = signal.SIGKILL) -> None:
    if _alive(pid, start_time):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every pid has exited (or is a zombie); return those still running."""
    deadline = time.monotonic() + timeout
    remaining = [pid for pid in pids if _alive(pid)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [pid for pid in remaining if _alive(pid)]
    return remaining


def _ns_inode(pid: int, kind: str) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _keygen(path: Path, comment: str) -> str:
    """Make an ed25519 key pair at ``path`` (no passphrase); return the public key line."""
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def _wait_for_ssh_banner(address: str, port: int, timeout: float) -> bool:
    """True once something at address:port speaks the SSH protocol."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as conn:
                conn.settimeout(2)
                if conn.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- python3 wrappers
# A wrapper replaces `python3` on one machine only (an overlay on its /usr/bin), so the payload
# meets the fault there while the orchestrator and the other machines are untouched. netviz first
# asks every interpreter its version (`python3 -c ...`): the real one answers that, as on a real
# machine; the fault is in the payload's run (`python3 - --framed ...`).
PASS_VERSION_CHECK = f'[ "$1" = -c ] && [ "$2" = {shlex.quote(VERSION_CHECK)} ] && exec {{real}} "$@"\n'


def slow_python(delay_seconds: float) -> str:
    """python3 that waits ``delay_seconds`` before it starts: a machine that answers slowly."""
    return (f"#!/bin/sh\n# A slow machine: python3 starts only after {delay_seconds} s.\n{PASS_VERSION_CHECK}"
            f"sleep {delay_seconds}\nexec {{real}} \"$@\"\n")


def hanging_python() -> str:
    """python3 that swallows its input and never answers."""
    return ("#!/bin/sh\n# A payload that hangs: read everything, then wait forever.\n" + PASS_VERSION_CHECK
            + "cat >/dev/null\nexec sleep infinity\n")


def truncating_python(keep_bytes: int) -> str:
    """python3 whose standard output is cut off after ``keep_bytes`` bytes."""
    return f"#!/bin/sh\n# Output cut off after {keep_bytes} bytes.\n{PASS_VERSION_CHECK}{{real}} \"$@\" | head -c {keep_bytes}\n"


def session_killing_python(keep_bytes: int, delay_seconds: float) -> str:
    """python3 during which the machine's sshd dies: the real interpreter runs (its output cut
    after ``keep_bytes`` bytes) and ``delay_seconds`` later every sshd process of this SSH
    session (all but the listener, pid 1) is killed, so the connection drops while the command
    runs; then the command's own process group goes too. The machine accepts new sessions."""
    return (
        "#!/bin/sh\n"
        "# sshd dies while the payload runs: partial output, then the session's sshd processes are killed.\n"
        + PASS_VERSION_CHECK +
        "exec 3<&0\n"
        f"{{real}} \"$@\" <&3 3<&- | head -c {keep_bytes} &\n"
        f"sleep {delay_seconds}\n"
        "pid=$$\n"
        "victims=\n"
        "while [ \"$pid\" -gt 1 ]; do\n"
        "  ppid=$(sed 's/.*) //' /proc/$pid/stat | cut -d' ' -f2)\n"
        "  [ \"$(cat /proc/$pid/comm)\" = sshd ] && victims=\"$victims $pid\"\n"
        "  pid=$ppid\n"
        "done\n"
        "kill -9 $victims\n"
        "kill -9 0\n"
    )


LOGIN_NOISE = (
    "Welcome to the netviz lab. Unauthorized access is prohibited.\n"
    "Last login: Wed Nov 25 09:00:00 2026 from 10.0.0.1\n"
    "NETVIZ-SNAPSHOT-BEGIN 1 16 0000000000000000000000000000000000000000000000000000000000000000\n"
    "\x1b[31mnot a snapshot\x1b[0m\n"
)


# --------------------------------------------------------------------------- ss parsing


@dataclass(frozen=True)
class SsSocket:
    """One row of ``ss -Hanp`` inside a machine (the oracle the tests compare with)."""

    netid: str  # tcp, udp, raw, p_raw, ...
    state: str  # ESTAB, LISTEN, UNCONN, ...
    local_address: str
    local_port: str
    peer_address: str
    peer_port: str
    processes: tuple[tuple[str, int], ...]  # (comm, pid as seen inside the machine)

    @property
    def comms(self) -> set[str]:
        return {comm for comm, _ in self.processes}


_SS_USER = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')


def _split_endpoint(text: str) -> tuple[str, str]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return host, port


def parse_ss(output: str, netid: str = "?") -> list[SsSocket]:
    """Parse ``ss -H -a -n -p`` output into rows. ss prints a Netid column only when more than
    one kind of socket is asked for; without it, every row gets ``netid``."""
    rows = []
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0].isupper():
            fields.insert(0, netid)
        if len(fields) < 6:
            continue
        kind, state, _recvq, _sendq, local, peer = fields[:6]
        process_text = " ".join(fields[6:])
        local_address, local_port = _split_endpoint(local)
        peer_address, peer_port = _split_endpoint(peer)
        processes = tuple((match.group(1), int(match.group(2))) for match in _SS_USER.finditer(process_text))
        rows.append(SsSocket(kind, state, local_address, local_port, peer_address, peer_port, processes))
    return rows


# --------------------------------------------------------------------------- machines


@dataclass
class PhantomHost:
    """An inventory entry with no machine behind it: an address that times out (``blackhole``:
    frames go to a MAC nobody owns, so a connect waits until its timeout) or one that nobody
    answers for (``unreachable``: the kernel reports "No route to host" after ARP gives up, ~3 s)."""

    name: str
    kind: str
    ipv4: str
    ipv6: str
    groups: tuple[str, ...] = ()
    inventory: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    index: int = 0


@dataclass
class Machine:
    """One lab machine. Build it with ``Lab.add_machine``; its fields describe what it is."""

    lab: "Lab"
    name: str
    index: int
    ipv4: str
    ipv6: str
    port: int = 22
    sshd: bool = True
    python: bool = True
    python_wrapper: Optional[str] = None
    login_noise: Optional[str] = None
    authorize_client: bool = True
    known_host_key: str = "match"  # match | changed | absent
    groups: tuple[str, ...] = ()
    inventory: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    init_pid: Optional[int] = None  # pid 1 of the machine, as the root namespace numbers it
    _unshare: Optional[subprocess.Popen] = field(default=None, repr=False)
    _popens: list[subprocess.Popen] = field(default_factory=list, repr=False)

    # ---- where things are

    @property
    def netns(self) -> str:
        return f"{self.lab.prefix}-{self.name}"

    @property
    def veth(self) -> str:
        return f"{self.lab.prefix}v{self.index}"

    @property
    def dir(self) -> Path:
        return self.lab.root_dir / "machines" / self.name

    @property
    def host_key_path(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_public_key(self) -> str:
        return self.host_key_path.with_name(self.host_key_path.name + ".pub").read_text().strip()

    @property
    def running(self) -> bool:
        return self.init_pid is not None and _alive(self.init_pid)

    # ---- starting programs inside

    def _nsenter(self) -> list[str]:
        if not self.running:
            raise LabError(f"machine {self.name} is not running")
        return ["nsenter", f"--target={self.init_pid}", "--net", "--pid", "--mount", "--uts", "--wd=/", "--"]

    def run(
        self,
        cmd: Sequence[str],
        background: bool = True,
        *,
        log_name: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ) -> int:
        """Start ``cmd`` inside the machine, in its own session, stdio to a log file under the
        machine's directory. Returns the program's pid as the root namespace numbers it (usable
        with ``os.kill``). With ``background=False``, wait for it to exit first."""
        name = log_name or Path(cmd[0]).name
        log_path = self.dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [*self._nsenter(), "setsid", *cmd],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**CLEAN_ENV, **(env or {})}, start_new_session=True, cwd="/",
            )
        self._popens.append(popen)
        self.lab._record_pid(popen.pid)
        # nsenter forks once to enter the PID namespace; the program is that child.
        deadline = time.monotonic() + 10
        pid = None
        while time.monotonic() < deadline:
            children = _children(popen.pid)
            if children:
                pid = children[0]
                break
            if popen.poll() is not None:
                break
            time.sleep(0.01)
        if pid is None:
            popen.wait(timeout=10)
            raise LabError(f"{shlex.join(cmd)} did not start on {self.name}: see {log_path}")
        if not background:
            popen.wait()
        return pid

    def exec(
        self,
        cmd: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 60,
        input: Optional[str] = None,
        user: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Run a one-shot command inside the machine and return its result (text output).
        ``user`` runs it as that user (through ``setpriv``), e.g. to try ``sudo -n`` as labuser."""
        argv = list(cmd)
        if user is not None:
            argv = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", *argv]
        result = subprocess.run(
            [*self._nsenter(), *argv], capture_output=True, text=True, env=CLEAN_ENV,
            timeout=timeout, input=input, cwd="/",
        )
        if check and result.returncode != 0:
            raise LabError(f"on {self.name}: `{shlex.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def pids(self) -> list[int]:
        """Pids (root namespace numbering) of every process inside the machine."""
        if self.init_pid is None:
            return []
        inode = _ns_inode(self.init_pid, "pid")
        if inode is None:
            return []
        return sorted(pid for pid in _all_pids() if _ns_inode(pid, "pid") == inode and not _is_zombie(pid))

    def processes(self) -> list[tuple[int, int, str]]:
        """(root pid, pid inside the machine, comm) of every process inside the machine."""
        found = []
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                comm = Path(f"/proc/{pid}/comm").read_text().rstrip("\n")
            except OSError:
                continue
            nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            found.append((pid, int(nspids[-1]) if nspids else pid, comm))
        return found

    def wait_for_process(self, comm: str, timeout: float = 30) -> int:
        """Wait until a process named ``comm`` runs inside the machine; return its root pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid, _, name in self.processes():
                if name == comm:
                    return pid
            time.sleep(0.02)
        raise LabError(f"no process named {comm!r} on {self.name} within {timeout} s")

    def sockets(self, *families: str) -> list[SsSocket]:
        """The machine's sockets according to ``ss -H -a -n -p`` (families: ``-t``, ``-u``,
        ``-w`` raw, ``-0`` packet; default TCP and UDP)."""
        families = families or ("-t", "-u")
        result = self.exec(["ss", "-H", "-a", "-n", "-p", *families], check=True)
        names = {"-t": "tcp", "-u": "udp", "-w": "raw", "-0": "p_raw"}
        return parse_ss(result.stdout, names.get(families[0], "?") if len(families) == 1 else "?")

    # ---- faults on demand

    def kill_sshd(self) -> None:
        """Kill the machine's sshd (its pid 1): the kernel then kills every process inside,
        SSH sessions included, as if the machine died. ``restart()`` brings it back."""
        if self.init_pid is None:
            return
        victims = self.pids()
        _kill(self.init_pid)
        _wait_gone(victims, timeout=10)
        if self._unshare is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._unshare.wait(timeout=10)
        self.init_pid = None

    def restart(self) -> None:
        """Start the machine's pid 1 (sshd) again after ``kill_sshd``; programs started earlier
        are gone for good."""
        self.kill_sshd()
        (self.dir / "booted").unlink(missing_ok=True)
        self.lab._boot(self)
        self.lab._wait_ready([self])


# --------------------------------------------------------------------------- the lab


class Lab:
    """A bridge, machines on it, a client key and a known_hosts file.

    Use as a context manager, or call ``start()`` and ``stop()``. Machines added after
    ``start()`` start at once.
    """

    def __init__(self, root_dir: Path, prefix: str = "nvl", subnet_index: Optional[int] = None) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise ValueError("prefix: 1 to 8 lowercase letters or digits, starting with a letter (it names links)")
        self.root_dir = Path(root_dir).resolve()
        self.prefix = prefix
        self.requested_subnet_index = subnet_index
        self.subnet_index: Optional[int] = None
        self.machines: dict[str, Machine] = {}
        self.phantoms: dict[str, PhantomHost] = {}
        self._root_popens: list[subprocess.Popen] = []
        self._started = False
        self._stopped = False
        self._next_machine = 0
        self._next_phantom = 0

    # ---- addresses and files

    @property
    def programs_dir(self) -> Path:
        """The lab's programs, copied under the lab directory: each machine has a private /tmp, so
        a checkout that lives under /tmp would not be visible inside the machines, the lab
        directory is."""
        target = self.root_dir / "bin"
        if not target.is_dir():
            shutil.copytree(PROGRAMS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def network_v4(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(SUBNET_V4.format(index=self._index()))

    @property
    def network_v6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(SUBNET_V6.format(index=self._index()))

    @property
    def root_ipv4(self) -> str:
        """The root namespace's address on the bridge: outside the group, reaches every machine."""
        return str(self.network_v4[1])

    @property
    def root_ipv6(self) -> str:
        return str(self.network_v6[1])

    @property
    def client_key(self) -> Path:
        """Private key (ed25519, no passphrase) that every machine authorizes, except wrong-key ones."""
        return self.root_dir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root_dir / "known_hosts"

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.prefix}.json"

    def _index(self) -> int:
        if self.subnet_index is None:
            raise LabError("the lab's subnet is chosen by start()")
        return self.subnet_index

    # ---- building

    def add_machine(
        self,
        name: str,
        *,
        sshd: bool = True,
        port: int = 22,
        python: bool = True,
        python_wrapper: Optional[str] = None,
        login_noise: Optional[str] = None,
        authorize_client: bool = True,
        known_host_key: str = "match",
        groups: Sequence[str] = (),
        inventory: Optional[dict[str, Any]] = None,
        user: Optional[str] = None,
        sudo: Optional[bool] = None,
        description: str = "",
    ) -> Machine:
        """Declare a machine (started by ``start()``, or now if the lab runs).

        - ``sshd=False``: nothing listens on its port (connections are refused).
        - ``python=False``: no python3, python3.11 or python on the machine (hidden by an overlay).
        - ``python_wrapper``: shell script text that replaces ``python3`` on this machine;
          ``{real}`` in it stands for the real interpreter (see ``slow_python`` and friends).
        - ``login_noise``: text root's ~/.bashrc prints on stdout for every SSH command.
        - ``authorize_client=False``: the lab's client key is not authorized (auth fails).
        - ``known_host_key``: ``match``; ``changed`` (known_hosts holds another key for it);
          ``absent`` (it is not in known_hosts at all).
        - ``inventory``: per-host keys for ``write_inventory``; ``user`` and ``sudo`` are
          shortcuts for the two most used (users: root, labuser, labsudo, labadmin).
        """
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise ValueError(f"machine name {name!r}: lowercase letters, digits and '-', starting with a letter")
        if name in self.machines or name in self.phantoms:
            raise ValueError(f"{name} is already in the lab")
        if known_host_key not in ("match", "changed", "absent"):
            raise ValueError("known_host_key: match, changed or absent")
        index = self._next_machine
        if FIRST_MACHINE_HOST + index >= FIRST_PHANTOM_HOST:
            raise LabError("a lab holds at most 190 machines")
        self._next_machine += 1
        machine = Machine(
            lab=self, name=name, index=index, ipv4="", ipv6="", port=port, sshd=sshd, python=python,
            python_wrapper=python_wrapper, login_noise=login_noise, authorize_client=authorize_client,
            known_host_key=known_host_key, groups=tuple(groups), inventory=dict(inventory or {}),
            description=description,
        )
        if user is not None:
            machine.inventory["user"] = user
        if sudo is not None:
            machine.inventory["sudo"] = sudo
        self.machines[name] = machine
        if self._started:
            self._assign_addresses(machine)
            self._create(machine)
            self._write_known_hosts()
            self._wait_ready([machine])
        return machine

    def add_phantom(self, name: str, kind: str, *, groups: Sequence[str] = (), description: str = "") -> PhantomHost:
        """An inventory host with no machine: ``blackhole`` (connects time out) or
        ``unreachable`` (no route to host after ~3 s)."""
        if kind not in ("blackhole", "unreachable"):
            raise ValueError("kind: blackhole or unreachable")
        if name in self.machines or name in self.phantoms:
            raise ValueError(f"{name} is already in the lab")
        phantom = PhantomHost(name=name, kind=kind, ipv4="", ipv6="", groups=tuple(groups),
                              description=description, index=self._next_phantom)
        self._next_phantom += 1
        self.phantoms[name] = phantom
        if self._started:
            self._place_phantom(phantom)
        return phantom

    def start(self) -> "Lab":
        """Build the bridge, keys and every declared machine; return when each sshd answers."""
        if self._started:
            return self
        reasons = missing_requirements()
        if reasons:
            raise LabError("; ".join(reasons))
        self._started = True
        self._owner_pid = os.getpid()
        atexit.register(self._stop_at_exit)
        try:
            self.root_dir.mkdir(parents=True, exist_ok=True)
            self.root_dir.chmod(0o755)
            self._claim_subnet()
            _keygen(self.client_key, "netviz-lab-client")
            _keygen(self.root_dir / "stranger_ed25519", "netviz-lab-stranger")
            self._write_users()
            self._create_bridge()
            for machine in self.machines.values():
                self._assign_addresses(machine)
                self._create(machine)
            for phantom in self.phantoms.values():
                self._place_phantom(phantom)
            self._write_known_hosts()
            self._wait_ready(list(self.machines.values()))
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- the subnet and the record of what runs

    def _claim_subnet(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        with open(STATE_DIR / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.state_file.exists():
                cleanup_stale(self.prefix)
                if self.state_file.exists():
                    raise LabError(f"a lab with prefix {self.prefix!r} is already running ({self.state_file})")
            used = set()
            for record in STATE_DIR.glob("*.json"):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    used.add(json.loads(record.read_text())["subnet_index"])
            routes = _run(["ip", "-4", "route", "show", "table", "all"], check=False).stdout
            candidates = [self.requested_subnet_index] if self.requested_subnet_index is not None else range(1, 255)
            for index in candidates:
                network = ipaddress.IPv4Network(SUBNET_V4.format(index=index))
                if index in used or _overlaps(routes, network):
                    continue
                self.subnet_index = index
                break
            else:
                raise LabError("no free 10.77.N.0/24 subnet for the lab")
            self._state = {
                "prefix": self.prefix, "owner_pid": os.getpid(), "owner_start": _start_time(os.getpid()),
                "subnet_index": self.subnet_index, "root_dir": str(self.root_dir),
                "bridge": self.bridge, "netns": [], "links": [], "pids": [],
            }
            self._save_state()

    def _save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=1))
        tmp.replace(self.state_file)

    def _record_pid(self, pid: int) -> None:
        self._state["pids"].append([pid, _start_time(pid)])
        self._save_state()

    # ---- network

    def _create_bridge(self) -> None:
        # A fixed MAC: otherwise the bridge takes the lowest MAC of its ports and changes it as
        # machines join, leaving stale neighbour entries for the root address in the machines.
        mac = f"02:77:00:00:{self._index():02x}:01"
        _run(["ip", "link", "add", self.bridge, "address", mac, "type", "bridge"])
        self._state["links"].append(self.bridge)
        self._save_state()
        _run(["ip", "addr", "add", f"{self.root_ipv4}/24", "dev", self.bridge])
        _run(["ip", "-6", "addr", "add", f"{self.root_ipv6}/64", "dev", self.bridge, "nodad"])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _assign_addresses(self, machine: Machine) -> None:
        machine.ipv4 = str(self.network_v4[FIRST_MACHINE_HOST + machine.index])
        machine.ipv6 = str(self.network_v6[FIRST_MACHINE_HOST + machine.index])

    def _place_phantom(self, phantom: PhantomHost) -> None:
        number = FIRST_PHANTOM_HOST + phantom.index
        phantom.ipv4 = str(self.network_v4[number])
        phantom.ipv6 = str(self.network_v6[number])
        if phantom.kind == "blackhole":
            # A permanent neighbour entry to a MAC that no port of the bridge owns: frames leave
            # and vanish, so the SYN is never answered and the connect runs into its timeout.
            mac = f"02:00:00:77:{self._index():02x}:{number:02x}"
            for family, address in (("-4", phantom.ipv4), ("-6", phantom.ipv6)):
                _run(["ip", family, "neigh", "replace", address, "lladdr", mac, "dev", self.bridge, "nud", "permanent"])

    def _create(self, machine: Machine) -> None:
        """Network namespace, veth, addresses, files, then boot the machine's pid 1."""
        netns = machine.netns
        _run(["ip", "netns", "add", netns])
        self._state["netns"].append(netns)
        self._state["links"].append(machine.veth)
        self._save_state()
        _run(["ip", "link", "add", machine.veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _run(["ip", "link", "set", machine.veth, "master", self.bridge, "up"])
        ns = ["ip", "-n", netns]
        _run([*ns, "link", "set", "lo", "up"])
        _run([*ns, "addr", "add", f"{machine.ipv4}/24", "dev", "eth0"])
        _run([*ns, "-6", "addr", "add", f"{machine.ipv6}/64", "dev", "eth0", "nodad"])
        _run([*ns, "link", "set", "eth0", "up"])
        _run([*ns, "route", "add", "default", "via", self.root_ipv4])
        self._write_machine_files(machine)
        self._boot(machine)

    def _boot(self, machine: Machine) -> None:
        log = open(machine.dir / "init.log", "ab")
        with log:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", machine.netns, "unshare", "--pid", "--fork", "--mount-proc", "--uts",
                 "--propagation", "private", "/bin/sh", str(machine.dir / "init.sh")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=CLEAN_ENV,
                start_new_session=True, cwd="/",
            )
        machine._unshare = popen
        self._record_pid(popen.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = _children(popen.pid)
            if children:
                machine.init_pid = children[0]
                self._record_pid(machine.init_pid)
                return
            if popen.poll() is not None:
                break
            time.sleep(0.01)
        raise LabError(f"machine {machine.name} did not boot: {(machine.dir / 'init.log').read_text()[-2000:]}")

    def _wait_ready(self, machines: Sequence[Machine], timeout: float = 20) -> None:
        for machine in machines:
            ready_file = machine.dir / "booted"
            deadline = time.monotonic() + timeout
            while not ready_file.exists():
                if machine._unshare is not None and machine._unshare.poll() is not None or time.monotonic() > deadline:
                    log = (machine.dir / "init.log").read_text()[-2000:]
                    raise LabError(f"machine {machine.name} failed while booting: {log}")
                time.sleep(0.02)
            if machine.sshd and not _wait_for_ssh_banner(machine.ipv4, machine.port, timeout):
                log = machine.sshd_log.read_text()[-2000:] if machine.sshd_log.exists() else ""
                raise LabError(f"sshd on {machine.name} ({machine.ipv4}:{machine.port}) did not answer: {log}")

    # ---- files

    def _write_users(self) -> None:
        """passwd, shadow, group and sudoers for the machines: the box's own, plus the lab users."""
        etc = self.root_dir / "etc"
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
        shadow = Path("/etc/shadow").read_text() if Path("/etc/shadow").exists() else ""
        password_hash = _run(["openssl", "passwd", "-6", SUDO_PASSWORD]).stdout.strip()
        for user, uid in LAB_USERS.items():
            passwd += f"{user}:x:{uid}:{uid}:netviz lab user:/home/{user}:/bin/bash\n"
            group += f"{user}:x:{uid}:\n"
            # "*": no password login, yet not locked ("!" would make sshd refuse the key too).
            secret = password_hash if user == SUDO_PASSWORD_USER else "*"
            shadow += f"{user}:{secret}:20000:0:99999:7:::\n"
        _write(etc / "passwd", passwd)
        _write(etc / "group", group)
        _write(etc / "shadow", shadow, 0o640)
        _write(
            etc / "sudoers",
            "# sudoers of the netviz lab machines\n"
            "Defaults\tenv_reset\n"
            'Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
            "root\tALL=(ALL:ALL) ALL\n"
            f"{SUDO_PASSWORD_USER}\tALL=(ALL:ALL) ALL\n"
            f"{SUDO_NOPASSWD_USER}\tALL=(ALL:ALL) NOPASSWD: ALL\n",
            0o440,
        )

    def _write_machine_files(self, machine: Machine) -> None:
        d = machine.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "booted").unlink(missing_ok=True)
        if not machine.host_key_path.exists():
            _keygen(machine.host_key_path, f"root@{machine.name}")
        if machine.known_host_key == "changed" and not (d / "impostor_ed25519").exists():
            _keygen(d / "impostor_ed25519", f"impostor@{machine.name}")
        client = (self.root_dir / ("client_ed25519.pub" if machine.authorize_client else "stranger_ed25519.pub")).read_text()
        _write(d / "authorized_keys", client)
        if not (d / "machine-id").exists():
            _write(d / "machine-id", uuid.uuid4().hex + "\n")
        _write(d / "hostname", machine.name + "\n")
        _write(d / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{machine.name}\n::1\tlocalhost ip6-localhost\n"
                            f"{machine.ipv4}\t{machine.name}\n{machine.ipv6}\t{machine.name}\n")
        home = d / "root-home"
        home.mkdir(exist_ok=True)
        home.chmod(0o700)
        bashrc = Path("/etc/skel/.bashrc").read_text() if Path("/etc/skel/.bashrc").exists() else ""
        if machine.login_noise is not None:
            # Before the "not interactive: return" guard, like a careless banner in a real .bashrc;
            # bash reads ~/.bashrc for commands run by sshd.
            noise = "".join(f"printf '%s\\n' {shlex.quote(line)}\n" for line in machine.login_noise.splitlines())
            bashrc = "# login banner\n" + noise + bashrc
        _write(home / ".bashrc", bashrc)
        if Path("/etc/skel/.profile").exists():
            _write(home / ".profile", Path("/etc/skel/.profile").read_text())
        listen = [f"ListenAddress {machine.ipv4}:{machine.port}", f"ListenAddress [{machine.ipv6}]:{machine.port}"]
        _write(d / "sshd_config", "\n".join([
            f"# sshd of lab machine {machine.name}",
            f"Port {machine.port}",
            *listen,
            f"HostKey {machine.host_key_path}",
            "AuthorizedKeysFile /run/netviz-lab/authorized_keys",
            "PidFile /run/sshd.pid",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "MaxStartups 100:30:200",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        if machine.python_wrapper is not None:
            real = os.path.realpath(SYSTEM_PYTHON)
            _write(d / "python3-wrapper", machine.python_wrapper.replace("{real}", real), 0o755)
        _write(d / "init.sh", self._init_script(machine), 0o755)

    def _init_script(self, machine: Machine) -> str:
        d = machine.dir
        q = shlex.quote
        root = q(str(self.root_dir))
        etc = self.root_dir / "etc"
        lines = [
            "#!/bin/sh",
            f"# pid 1 of lab machine {machine.name}: private mounts, then sshd in the foreground.",
            "set -eu",
            f"hostname {q(machine.name)}",
            # A private /run (sshd's privilege separation dir, sudo's timestamps, the lab's files).
            "mount -t tmpfs -o mode=755 netviz-lab-run /run",
            "mkdir -p /run/sshd /run/netviz-lab/hold /run/lock",
            # A private /tmp; the lab directory stays reachable at its path if it lives under /tmp.
            f"mount --bind {root} /run/netviz-lab/hold",
            "mount -t tmpfs -o mode=1777 netviz-lab-tmp /tmp",
            f"if [ ! -d {root} ]; then mkdir -p {root} && mount --bind /run/netviz-lab/hold {root}; fi",
            "umount /run/netviz-lab/hold && rmdir /run/netviz-lab/hold",
            f"[ -e /etc/machine-id ] && mount --bind {q(str(d / 'machine-id'))} /etc/machine-id",
            f"mount --bind {q(str(d / 'hostname'))} /etc/hostname",
            f"mount --bind {q(str(d / 'hosts'))} /etc/hosts",
            *(f"mount --bind {q(str(etc / name))} /etc/{name}" for name in ("passwd", "group", "shadow", "sudoers")),
            # This machine's interpreters built under /root/.pyenv (Python 3.6, the oldest the payload
            # supports) stay usable at their own paths, for inventories that name them.
            f"if [ -d /root/.pyenv/versions ]; then mkdir -p {q(str(d / 'root-home' / '.pyenv' / 'versions'))} && "
            f"mount --bind /root/.pyenv/versions {q(str(d / 'root-home' / '.pyenv' / 'versions'))}; fi",
            f"mount --rbind {q(str(d / 'root-home'))} /root",
            "mount -t tmpfs -o mode=755 netviz-lab-home /home",
        ]
        for user in LAB_USERS:
            lines.append(f"mkdir -m 700 /home/{user} && cp -a /etc/skel/. /home/{user}/ && chown -R {user}:{user} /home/{user}")
        lines += [
            # Readable by every user through this path, whatever the lab directory's permissions.
            "touch /run/netviz-lab/authorized_keys",
            f"mount --bind {q(str(d / 'authorized_keys'))} /run/netviz-lab/authorized_keys",
        ]
        hidden = [] if machine.python else ["python", "python3", os.path.basename(os.path.realpath(SYSTEM_PYTHON))]
        if hidden or machine.python_wrapper is not None:
            # An overlay on /usr/bin seen by this machine only: whiteouts hide interpreters,
            # an upper-layer file replaces python3 (the symlink) with a wrapper.
            lines += ["mkdir -p /run/netviz-lab/usr-bin/upper /run/netviz-lab/usr-bin/work"]
            lines += [f"mknod /run/netviz-lab/usr-bin/upper/{name} c 0 0" for name in hidden]
            if machine.python_wrapper is not None:
                lines += [f"cp {q(str(d / 'python3-wrapper'))} /run/netviz-lab/usr-bin/upper/python3",
                          "chmod 755 /run/netviz-lab/usr-bin/upper/python3"]
            lines += ["mount -t overlay netviz-lab-usr-bin -o lowerdir=/usr/bin,upperdir=/run/netviz-lab/usr-bin/upper,"
                      "workdir=/run/netviz-lab/usr-bin/work /usr/bin"]
        lines.append(f"touch {q(str(d / 'booted'))}")
        if machine.sshd:
            lines.append(f"exec /usr/sbin/sshd -D -f {q(str(d / 'sshd_config'))} -E {q(str(machine.sshd_log))}")
        else:
            lines.append("exec sleep infinity")
        return "\n".join(lines) + "\n"

    def _write_known_hosts(self) -> None:
        lines = []
        for machine in self.machines.values():
            if not machine.sshd or machine.known_host_key == "absent" or not machine.host_key_path.exists():
                continue
            key_file = machine.host_key_path if machine.known_host_key == "match" else machine.dir / "impostor_ed25519"
            key = " ".join(key_file.with_name(key_file.name + ".pub").read_text().split()[:2])
            for address in (machine.ipv4, machine.ipv6):
                host = address if machine.port == 22 else f"[{address}]:{machine.port}"
                lines.append(f"{host} {key}")
        _write(self.known_hosts, "\n".join(lines) + "\n")

    # ---- programs outside the machines

    def run_outside(self, cmd: Sequence[str], *, log_name: Optional[str] = None) -> int:
        """Start ``cmd`` in the root namespace (outside every machine, so outside the group)."""
        name = log_name or Path(cmd[0]).name
        log_path = self.root_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=CLEAN_ENV, start_new_session=True, cwd="/")
        self._root_popens.append(popen)
        self._record_pid(popen.pid)
        return popen.pid

    def holder_spec(self, name: str, spec: dict[str, Any]) -> Path:
        """Write a holder program spec (see programs/holder.py) and return its path."""
        return _write(self.root_dir / "programs" / f"{name}.json", json.dumps(spec, indent=1))

    # ---- what the orchestrator uses

    def ssh_argv(self, name: str, *, user: str = "root", connect_timeout: int = 5) -> list[str]:
        """An OpenSSH command line (without the remote command) that logs into machine ``name``
        with the lab's key and known_hosts, and nothing from the box's own ssh configuration."""
        host = self.machines.get(name) or self.phantoms[name]
        port = getattr(host, "port", 22)
        return [
            "ssh", "-F", "/dev/null", "-i", str(self.client_key), "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={connect_timeout}", "-o", "LogLevel=ERROR", f"{user}@{host.ipv4}",
        ]

    def write_inventory(
        self,
        path: Path,
        hosts: Optional[Iterable[str]] = None,
        groups: Optional[dict[str, Sequence[str]]] = None,
        **defaults: Any,
    ) -> Path:
        """Write a netviz inventory (YAML) for ``hosts`` (default: every machine, then every
        phantom host, each in the order they were added). ``defaults`` override the
        lab's defaults (user root, port 22, the lab key and known_hosts, sudo false,
        connect_timeout 5, command_timeout 30). Groups are those given to add_machine /
        add_phantom (restricted to ``hosts``), plus ``groups``."""
        everyone: dict[str, Any] = {**self.machines, **self.phantoms}
        names = list(hosts) if hosts is not None else list(everyone)
        unknown = [name for name in names if name not in everyone]
        if unknown:
            raise ValueError(f"not in the lab: {', '.join(unknown)}")
        base = {
            "user": "root", "port": 22, "identity_file": str(self.client_key), "known_hosts": str(self.known_hosts),
            "sudo": False, "connect_timeout": 5, "command_timeout": 30,
        }
        base.update(defaults)
        host_entries: dict[str, dict[str, Any]] = {}
        group_entries: dict[str, list[str]] = {}
        for name in names:
            host = everyone[name]
            entry: dict[str, Any] = {"address": host.ipv4}
            if getattr(host, "port", 22) != base["port"] and isinstance(host, Machine):
                entry["port"] = host.port
            entry.update(host.inventory)
            host_entries[name] = entry
            for group in host.groups:
                group_entries.setdefault(group, []).append(name)
        for group, members in (groups or {}).items():
            group_entries[group] = list(members)
        document: dict[str, Any] = {"defaults": base, "hosts": host_entries}
        if group_entries:
            document["groups"] = group_entries
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# netviz inventory of a test lab (written by tests/lab)\n" + yaml.safe_dump(document, sort_keys=False))
        return path

    # ---- teardown

    def _stop_at_exit(self) -> None:
        # A forked child of the test process inherits this handler: only the owner tears down.
        if os.getpid() == self._owner_pid:
            self.stop()

    def stop(self) -> None:
        """Kill everything the lab started, delete its namespaces and links. Idempotent."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self._stop_at_exit)
        victims: list[int] = []
        for machine in self.machines.values():
            victims += machine.pids()
            if machine.init_pid is not None:
                _kill(machine.init_pid)
        for popen in self._root_popens:
            _kill(popen.pid)
        popens = [m._unshare for m in self.machines.values() if m._unshare is not None]
        popens += [p for m in self.machines.values() for p in m._popens] + self._root_popens
        for popen in popens:
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill(popen.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=5)
        _wait_gone(victims, timeout=10)
        state = getattr(self, "_state", None)
        if state is not None:
            _remove_network(state)
            self.state_file.unlink(missing_ok=True)


def _overlaps(routes: str, network: ipaddress.IPv4Network) -> bool:
    """Does any route of the box cover an address of ``network`` (so using it would clash)?"""
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit", "multicast"):
            parts = line.split()
            first = parts[1] if len(parts) > 1 else ""
        with contextlib.suppress(ValueError):
            route = ipaddress.IPv4Network(first, strict=False)
            if route.prefixlen > 0 and route.overlaps(network):
                return True
    return False


def _remove_network(state: dict[str, Any]) -> None:
    for netns in state.get("netns", []):
        inside = [int(pid) for pid in _run(["ip", "netns", "pids", netns], check=False).stdout.split()]
        for pid in inside:
            _kill(pid)
        _wait_gone(inside, timeout=10)
        _run(["ip", "netns", "del", netns], check=False)
    for link in state.get("links", []):
        if _link_exists(link):
            _run(["ip", "link", "del", link], check=False)


def cleanup_stale(prefix: Optional[str] = None, *, force: bool = False) -> list[str]:
    """Remove what crashed labs left behind: processes, namespaces, links and records.

    Only labs whose owning process is gone are touched (``force=True``: also live ones). With
    ``prefix``, only that lab, and also any namespace named ``<prefix>-*`` without a record.
    Returns a description of what was removed."""
    removed = []
    if STATE_DIR.exists():
        for record in sorted(STATE_DIR.glob("*.json")):
            try:
                state = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if prefix is not None and state.get("prefix") != prefix:
                continue
            if not force and _alive(state.get("owner_pid", -1), state.get("owner_start")):
                continue
            recorded = [(pid, start) for pid, start in state.get("pids", []) if _alive(pid, start)]
            for pid, start in recorded:
                _kill(pid, start)
            _wait_gone([pid for pid, _ in recorded], timeout=10)
            _remove_network(state)
            record.unlink(missing_ok=True)
            removed.append(f"lab {state.get('prefix')} (owner pid {state.get('owner_pid')})")
    if prefix is not None:
        names = [line.split()[0] for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines() if line.strip()]
        orphans = [name for name in names if name.startswith(f"{prefix}-")]
        if orphans and (force or not (STATE_DIR / f"{prefix}.json").exists()):
            _remove_network({"netns": orphans, "links": [f"{prefix}br"]})
            removed += [f"netns {name}" for name in orphans]
    return removed


def bare_lab_machines(lab: Lab, count: int, *, name_format: str = "m{:02d}") -> list[Machine]:
    """Declare ``count`` plain machines (sshd, python3, nothing running) named m00, m01, ..."""
    return [lab.add_machine(name_format.format(number), groups=("all-bare",)) for number in range(count)]


@contextlib.contextmanager
def bare_lab(count: int, root_dir: Path, prefix: str = "nvb") -> Iterator[Lab]:
    """A started lab of ``count`` plain machines (for benchmarks), torn down on exit."""
    lab = Lab(root_dir, prefix)
    bare_lab_machines(lab, count)
    with lab:
        yield lab


def main(argv: Sequence[str]) -> int:
    """``python3 -m tests.lab.lab cleanup [PREFIX]``: remove leftovers of crashed labs."""
    if len(argv) >= 1 and argv[0] == "cleanup":
        for item in cleanup_stale(argv[1] if len(argv) > 1 else None, force=len(argv) > 1):
            print("removed", item)
        return 0
    print("usage: python3 -m tests.lab.lab cleanup [PREFIX]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

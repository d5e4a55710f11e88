"""Transports: how the payload reaches a machine and its output comes back.

- base.py: the Transport interface, FailureKind and HostFailure, Attempt (what another thread
  may cancel), Timings.
- ssh.py: SSHTransport: host keys, jump hosts, authentication, paramiko's errors as kinds.
- ssh_command.py: the command run over SSH (interpreter, `timeout -k`, sudo, the remote guard)
  and the reading of its answer (budgets, the sudo password's proof, exit status and markers).
- local.py: LocalTransport: this machine, the payload in a child process of this Python.

collect.py drives any Transport the same way. The names below are the package's public ones.
"""

from netviz.inventory import SUDO_NO, SUDO_NOPASSWD
from netviz.known_hosts import KnownHosts, fingerprint
from netviz.transport.base import (
    AUTH,
    BAD_OUTPUT,
    DNS,
    FAILURE_KINDS,
    HOST_KEY,
    MAX_STDERR,
    NO_PYTHON,
    PAYLOAD_ERROR,
    REFUSED,
    SUDO,
    TIMEOUT,
    UNREACHABLE,
    Attempt,
    FailureKind,
    HostFailure,
    Timings,
    Transport,
    WindowPlan,
)
from netviz.transport.local import LocalTransport, local_target, run_child
from netviz.transport.ssh import (
    SSHTransport,
    TransportOptions,
    connect,
    fetch_framed,
    identity_problem,
    open_tcp,
    resolve,
    usable_identities,
)
from netviz.transport.ssh_command import (
    KILL_GRACE,
    SUDO_PASSWORD_ENV,
    CommandOutput,
    PasswordProof,
    interpret,
    remote_command,
    run_command,
    scrub,
)

__all__ = [
    "AUTH",
    "BAD_OUTPUT",
    "DNS",
    "FAILURE_KINDS",
    "HOST_KEY",
    "KILL_GRACE",
    "MAX_STDERR",
    "NO_PYTHON",
    "PAYLOAD_ERROR",
    "REFUSED",
    "SUDO",
    "SUDO_NO",
    "SUDO_NOPASSWD",
    "SUDO_PASSWORD_ENV",
    "TIMEOUT",
    "UNREACHABLE",
    "Attempt",
    "CommandOutput",
    "FailureKind",
    "HostFailure",
    "KnownHosts",
    "LocalTransport",
    "PasswordProof",
    "SSHTransport",
    "Timings",
    "Transport",
    "TransportOptions",
    "WindowPlan",
    "connect",
    "fetch_framed",
    "fingerprint",
    "identity_problem",
    "interpret",
    "local_target",
    "open_tcp",
    "remote_command",
    "resolve",
    "run_child",
    "run_command",
    "scrub",
    "usable_identities",
]

"""A lab of real Linux machines on one box (namespaces + OpenSSH) for end-to-end tests.

See README.md in this directory. The main entry points:
``Lab`` (lab.py), ``build_scenario`` and ``add_fault_hosts`` (scenario.py), and the pytest
fixtures ``lab``, ``lab_many_sockets`` and ``lab_factory`` (fixtures.py).
"""

from .lab import (
    LOGIN_NOISE,
    SUDO_NOPASSWD_USER,
    SUDO_PASSWORD,
    SUDO_PASSWORD_USER,
    UNPRIVILEGED_USER,
    Lab,
    LabError,
    Machine,
    PhantomHost,
    SsSocket,
    bare_lab,
    cleanup_stale,
    hanging_python,
    missing_requirements,
    parse_ss,
    session_killing_python,
    slow_python,
    truncating_python,
)
from .scenario import (
    ExpectedFlow,
    ExpectedIngress,
    ExpectedOutside,
    FaultHost,
    ManySockets,
    Scenario,
    add_fault_hosts,
    build_scenario,
    flow_visible,
    graph_flow_keys,
    start_many_sockets,
    wait_for_flows,
)

__all__ = [
    "LOGIN_NOISE", "SUDO_NOPASSWD_USER", "SUDO_PASSWORD", "SUDO_PASSWORD_USER", "UNPRIVILEGED_USER",
    "Lab", "LabError", "Machine", "PhantomHost", "SsSocket", "bare_lab", "cleanup_stale", "hanging_python",
    "missing_requirements", "parse_ss", "session_killing_python", "slow_python", "truncating_python",
    "ExpectedFlow", "ExpectedIngress", "ExpectedOutside", "FaultHost", "ManySockets", "Scenario",
    "add_fault_hosts", "build_scenario", "flow_visible", "graph_flow_keys", "start_many_sockets", "wait_for_flows",
]

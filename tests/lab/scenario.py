"""The standard lab scenario, the fault machines, and what netviz should find on them.

``build_scenario(lab)`` declares three machines (web, db, cache) running holder programs
(programs/holder.py) with distinctive names, and returns a ``Scenario`` describing the flows,
ingress sockets and outside connections they were built to hold. After ``lab.start()``, call
``scenario.start_programs()``: it returns once ``ss`` inside each machine shows every
connection established, so a capture taken afterwards must find exactly ``scenario.flows``.

``add_fault_hosts(lab)`` declares one host per collector fault and per hardening case, each
with the failure category it is meant to provoke.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from .lab import (
    LOGIN_NOISE,
    SUDO_NOPASSWD_USER,
    SUDO_PASSWORD_USER,
    SYSTEM_PYTHON,
    UNPRIVILEGED_USER,
    Lab,
    LabError,
    Machine,
    hanging_python,
    session_killing_python,
    slow_python,
    truncating_python,
)

SCENARIO_GROUP = "scenario"
FAULT_GROUP = "faults"
HARDENING_GROUP = "hardening"
CONTROL_GROUP = "controls"

# Ports of the scenario's services.
DB_PORT = 5432
CACHE_PORT = 6379
METRICS_PORT = 8125
OUTSIDE_PORT = 9999

FlowKey = tuple[str, str, str, str, str, int]


@dataclass(frozen=True, order=True)
class FlowEnds:
    """An edge by its ends: client (machine, comm) -> server (machine, comm) on one service;
    ``proto`` is family-free (``tcp``/``udp``) as in docs/graph.md."""

    client_host: str
    client_comm: str
    server_host: str
    server_comm: str
    proto: str
    server_port: int

    def key(self) -> FlowKey:
        return (self.client_host, self.client_comm, self.server_host, self.server_comm, self.proto, self.server_port)


@dataclass(frozen=True, order=True)
class ExpectedFlow(FlowEnds):
    """One edge the stitched graph must contain. ``family`` says which IP version the
    connections use; ``server_address`` is the address the client dialled (an IPv4 address for
    an IPv4 client of a dual-stack listener); ``count`` is the number of connections (or
    connected UDP sockets) behind the edge."""

    server_address: str
    family: int
    count: int
    what: str


@dataclass(frozen=True, order=True)
class ExpectedIngress:
    """A raw or packet socket a node must list under ``ingress`` (kind, protocol, interface as
    in docs/graph.md: raw -> IP protocol number; packet -> ethertype and bound interface)."""

    host: str
    comm: str
    kind: str
    protocol: int
    interface: Optional[str]
    what: str


@dataclass(frozen=True, order=True)
class ExpectedOutside:
    """A connection from a group machine to an address outside the group: no flow may be drawn
    for it; it counts in that host's ``outside`` (outbound)."""

    host: str
    comm: str
    direction: str
    remote_address: str
    remote_port: int
    what: str


@dataclass
class FaultHost:
    """A host of the inventory meant to fail (or to succeed, for controls) in one way.

    ``category`` names the failure as issue 4 lists them: ``refused``, ``unreachable``
    (unreachable or timed out), ``auth``, ``host key``, ``no python``, ``timeout`` (the payload
    outlived the command timeout), ``sudo``, ``bad output``, ``disconnected``; ``ok`` for the
    controls (and for hardening cases that must still succeed)."""

    name: str
    category: str
    what: str
    group: str


@dataclass
class Scenario:
    """The standard scenario: its machines and everything netviz must (and must not) find."""

    lab: Lab
    machines: dict[str, Machine]
    flows: list[ExpectedFlow]
    ingress: list[ExpectedIngress]
    outside: list[ExpectedOutside]
    programs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (machine, comm, spec)
    outside_programs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # comm -> root pid

    @property
    def hosts(self) -> list[str]:
        return list(self.machines)

    def flow_keys(self) -> set[FlowKey]:
        return {flow.key() for flow in self.flows}

    def to_json(self) -> dict[str, Any]:
        """The machine-readable description (what ``expected.json`` in the lab directory holds)."""
        return {
            "hosts": {name: {"ipv4": m.ipv4, "ipv6": m.ipv6} for name, m in self.machines.items()},
            "outside_address": self.lab.root_ipv4,
            "flows": [asdict(flow) for flow in sorted(self.flows)],
            "ingress": [asdict(item) for item in sorted(self.ingress)],
            "outside": [asdict(item) for item in sorted(self.outside)],
        }

    def start_programs(self, timeout: float = 30) -> None:
        """Start every program (servers first), then wait until ss shows each expected flow."""
        for comm, spec in self.outside_programs:
            spec_path = self.lab.holder_spec(f"outside-{comm}", spec)
            self.pids[comm] = self.lab.run_outside([SYSTEM_PYTHON, str(self.lab.programs_dir / "holder.py"), str(spec_path)],
                                                   log_name=comm)
        # Servers (programs that listen and connect nowhere) first, so clients connect at once.
        ordered = sorted(self.programs, key=lambda item: bool(item[2].get("connect")))
        for machine_name, comm, spec in ordered:
            spec_path = self.lab.holder_spec(f"{machine_name}-{comm}", spec)
            machine = self.machines[machine_name]
            self.pids[comm] = machine.run([SYSTEM_PYTHON, str(self.lab.programs_dir / "holder.py"), str(spec_path)], log_name=comm)
        wait_for_flows(self.lab, self.flows, timeout)
        wait_for_ingress(self.lab, self.ingress, timeout)
        wait_for_outside(self.lab, self.outside, timeout)
        _write_json(self.lab.root_dir / "expected.json", self.to_json())


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n")


def build_scenario(lab: Lab, timeout: float = 30) -> Scenario:
    """Add web, db and cache to ``lab`` (started first if needed), start their programs and
    return once ss shows every expected flow and ingress socket.

    The flows (client -> server):
      1. web/lab-web -> db/lab-db tcp 5432 over IPv4, two connections (a pre-forked server:
         lab-db has a worker process that holds the listening sockets too).
      2. cache/lab-worker -> db/lab-db tcp 5432 over IPv6 (lab-db listens on [::]:5432 v6only).
      3. db/lab-dbcheck -> db/lab-db tcp 5432 over loopback 127.0.0.1 (inside one machine).
      4. web/lab-web -> cache/lab-cache tcp 6379: an IPv4 client of a dual-stack [::] listener.
      5. web/lab-web -> cache/lab-metrics udp 8125: a connected UDP client, an unconnected listener.
    Ingress: web/lab-ping holds a raw ICMP socket; cache/lab-sniffer a packet socket on eth0.
    Outside: web/lab-web -> the root namespace's address (lab-outside, not in the group).
    """
    lab.start()
    machines = {name: lab.add_machine(name, groups=(SCENARIO_GROUP,)) for name in ("web", "db", "cache")}
    scenario = Scenario(lab=lab, machines=machines, flows=[], ingress=[], outside=[])
    _fill(scenario)
    scenario.start_programs(timeout)
    return scenario


def _fill(scenario: Scenario) -> None:
    """The programs and what they must show (addresses are known once the machines run)."""
    lab = scenario.lab
    web, db, cache = (scenario.machines[name] for name in ("web", "db", "cache"))
    scenario.programs = [
        ("db", "lab-db", {
            "comm": "lab-db", "workers": 1,
            "listen": [{"proto": "tcp", "address": "0.0.0.0", "port": DB_PORT},
                       {"proto": "tcp", "address": "::", "port": DB_PORT}],
        }),
        ("db", "lab-dbcheck", {
            "comm": "lab-dbcheck",
            "connect": [{"proto": "tcp", "address": "127.0.0.1", "port": DB_PORT}],
        }),
        ("cache", "lab-cache", {
            "comm": "lab-cache",
            "listen": [{"proto": "tcp", "address": "::", "port": CACHE_PORT, "dual_stack": True}],
        }),
        ("cache", "lab-metrics", {
            "comm": "lab-metrics",
            "listen": [{"proto": "udp", "address": "0.0.0.0", "port": METRICS_PORT}],
        }),
        ("cache", "lab-worker", {
            "comm": "lab-worker",
            "connect": [{"proto": "tcp", "address": db.ipv6, "port": DB_PORT}],
        }),
        ("cache", "lab-sniffer", {"comm": "lab-sniffer", "packet": ["eth0"]}),
        ("web", "lab-ping", {"comm": "lab-ping", "raw": [1]}),
        ("web", "lab-web", {
            "comm": "lab-web",
            "connect": [
                {"proto": "tcp", "address": db.ipv4, "port": DB_PORT, "count": 2},
                {"proto": "tcp", "address": cache.ipv4, "port": CACHE_PORT},
                {"proto": "udp", "address": cache.ipv4, "port": METRICS_PORT},
                {"proto": "tcp", "address": lab.root_ipv4, "port": OUTSIDE_PORT},
            ],
        }),
    ]
    scenario.outside_programs = [
        ("lab-outside", {"comm": "lab-outside",
                         "listen": [{"proto": "tcp", "address": lab.root_ipv4, "port": OUTSIDE_PORT}]}),
    ]
    scenario.flows = [
        ExpectedFlow("web", "lab-web", "db", "lab-db", "tcp", DB_PORT, db.ipv4, 4, 2,
                     "TCP client and server on different machines (IPv4), pre-forked server"),
        ExpectedFlow("cache", "lab-worker", "db", "lab-db", "tcp", DB_PORT, db.ipv6, 6, 1, "IPv6 flow"),
        ExpectedFlow("db", "lab-dbcheck", "db", "lab-db", "tcp", DB_PORT, "127.0.0.1", 4, 1,
                     "loopback flow inside one machine"),
        ExpectedFlow("web", "lab-web", "cache", "lab-cache", "tcp", CACHE_PORT, cache.ipv4, 4, 1,
                     "IPv4 client of a dual-stack [::] listener"),
        ExpectedFlow("web", "lab-web", "cache", "lab-metrics", "udp", METRICS_PORT, cache.ipv4, 4, 1,
                     "connected UDP client to an unconnected listener"),
    ]
    scenario.ingress = [
        ExpectedIngress("web", "lab-ping", "raw", 1, None, "raw ICMP socket"),
        ExpectedIngress("cache", "lab-sniffer", "packet", 3, "eth0", "packet socket (ETH_P_ALL) bound to eth0"),
    ]
    scenario.outside = [
        ExpectedOutside("web", "lab-web", "outbound", lab.root_ipv4, OUTSIDE_PORT,
                        "connection to the root namespace, which is not in the group"),
    ]


# --------------------------------------------------------------------------- oracles (ss)


def _owned_by(rows, comm: str):
    return [row for row in rows if comm in row.comms]


def flow_visible(lab: Lab, flow: ExpectedFlow) -> Optional[str]:
    """None when ss inside both machines shows ``flow`` (``count`` times on the client side,
    the accepted or bound socket on the server side); else what is missing."""
    client = lab.machines[flow.client_host]
    server = lab.machines[flow.server_host]
    family = "-t" if flow.proto == "tcp" else "-u"
    client_rows = _owned_by(client.sockets(family), flow.client_comm)
    connected = [
        row for row in client_rows
        if row.state == "ESTAB" and row.peer_address == flow.server_address and row.peer_port == str(flow.server_port)
    ]
    if len(connected) < flow.count:
        return f"{flow.client_host}/{flow.client_comm}: {len(connected)} of {flow.count} connections to " \
               f"{flow.server_address}:{flow.server_port}"
    server_rows = _owned_by(server.sockets(family), flow.server_comm)
    wanted_state = "ESTAB" if flow.proto == "tcp" else "UNCONN"
    served = [row for row in server_rows if row.state == wanted_state and row.local_port == str(flow.server_port)]
    needed = flow.count if flow.proto == "tcp" else 1
    if len(served) < needed:
        return f"{flow.server_host}/{flow.server_comm}: {len(served)} {wanted_state} sockets on port {flow.server_port}"
    return None


def wait_for_flows(lab: Lab, flows: Iterable[ExpectedFlow], timeout: float = 30) -> None:
    """Wait until ss shows every flow established; raise LabError naming what is missing."""
    pending = list(flows)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [flow for flow in pending if flow_visible(lab, flow) is not None]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError("flows not established: " + "; ".join(str(flow_visible(lab, f)) for f in pending))
        time.sleep(0.1)


def ingress_visible(lab: Lab, item: ExpectedIngress) -> bool:
    machine = lab.machines[item.host]
    return bool(_owned_by(machine.sockets("-w" if item.kind == "raw" else "-0"), item.comm))


def wait_for_ingress(lab: Lab, items: Iterable[ExpectedIngress], timeout: float = 30) -> None:
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [item for item in pending if not ingress_visible(lab, item)]
        if pending and time.monotonic() > deadline:
            raise LabError("ingress sockets missing: " + ", ".join(f"{i.host}/{i.comm}" for i in pending))
        time.sleep(0.05 if pending else 0)


def outside_visible(lab: Lab, item: ExpectedOutside) -> bool:
    rows = _owned_by(lab.machines[item.host].sockets("-t"), item.comm)
    return any(row.state == "ESTAB" and row.peer_address == item.remote_address
               and row.peer_port == str(item.remote_port) for row in rows)


def wait_for_outside(lab: Lab, items: Iterable[ExpectedOutside], timeout: float = 30) -> None:
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [item for item in pending if not outside_visible(lab, item)]
        if pending and time.monotonic() > deadline:
            raise LabError("outside connections not established: "
                           + ", ".join(f"{i.host}/{i.comm} -> {i.remote_address}:{i.remote_port}" for i in pending))
        time.sleep(0.05 if pending else 0)


def graph_flow_keys(graph: dict[str, Any]) -> set[FlowKey]:
    """The flows of a ``netviz.graph/1`` document (group-by process), as comparable keys."""
    nodes = {node["id"]: node for node in graph["nodes"]}
    return {
        (nodes[flow["client"]]["host"], nodes[flow["client"]]["comm"], nodes[flow["server"]]["host"],
         nodes[flow["server"]]["comm"], flow["proto"], flow["server_port"])
        for flow in graph["flows"]
    }


# --------------------------------------------------------------------------- fault hosts


SLOW_SECONDS = 4.0
TRUNCATE_BYTES = 300
DIES_AFTER_SECONDS = 1.0


def add_fault_hosts(lab: Lab) -> list[FaultHost]:
    """Declare one host per fault (group ``faults``), per hardening case (group ``hardening``)
    and two controls that must succeed (group ``controls``). Returns what each is for."""
    hosts: list[FaultHost] = []

    def machine(name: str, category: str, what: str, group: str, **options: Any) -> None:
        lab.add_machine(name, groups=(group,), description=what, **options)
        hosts.append(FaultHost(name, category, what, group))

    machine("closed", "refused", "nothing listens on port 22 (no sshd)", FAULT_GROUP, sshd=False)
    lab.add_phantom("blackhole", "blackhole", groups=(FAULT_GROUP,),
                    description="frames to this address vanish: connect times out")
    hosts.append(FaultHost("blackhole", "unreachable", "connect times out (blackholed address)", FAULT_GROUP))
    lab.add_phantom("unreachable", "unreachable", groups=(FAULT_GROUP,),
                    description="nobody owns this address: no route to host after ~3 s")
    hosts.append(FaultHost("unreachable", "unreachable", "no route to host (nobody answers ARP)", FAULT_GROUP))
    machine("wrongkey", "auth", "the client key is not authorized", FAULT_GROUP, authorize_client=False)
    machine("changedkey", "host key", "known_hosts holds another key for this address", FAULT_GROUP,
            known_host_key="changed")
    machine("unknownkey", "host key", "this host is not in known_hosts", FAULT_GROUP, known_host_key="absent")
    machine("nopython", "no python", "no python3, python3.11 or python on the machine", FAULT_GROUP, python=False)
    machine("hang", "timeout", "python3 reads its input and never answers", FAULT_GROUP,
            python_wrapper=hanging_python())
    machine("nosudo", "sudo", f"logs in as {UNPRIVILEGED_USER}, who has no sudoers entry", FAULT_GROUP,
            user=UNPRIVILEGED_USER, sudo=True)
    machine("sudopass", "sudo", f"logs in as {SUDO_PASSWORD_USER}, whose sudo needs a password", FAULT_GROUP,
            user=SUDO_PASSWORD_USER, sudo=True)

    machine("slow", "ok", f"python3 starts after {SLOW_SECONDS} s (a slow machine; no sch_netem here)",
            HARDENING_GROUP, python_wrapper=slow_python(SLOW_SECONDS))
    machine("truncated", "bad output", f"the payload's output is cut off after {TRUNCATE_BYTES} bytes",
            HARDENING_GROUP, python_wrapper=truncating_python(TRUNCATE_BYTES))
    machine("noise", "ok", "root's ~/.bashrc prints a banner (with a decoy frame line) before any output",
            HARDENING_GROUP, login_noise=LOGIN_NOISE)
    machine("dies", "disconnected", "the session's sshd processes are killed while the payload runs",
            HARDENING_GROUP, python_wrapper=session_killing_python(TRUNCATE_BYTES, DIES_AFTER_SECONDS))

    machine("sudoer", "ok", f"logs in as {SUDO_NOPASSWD_USER}, who may sudo without a password", CONTROL_GROUP,
            user=SUDO_NOPASSWD_USER, sudo=True)
    machine("altport", "ok", "sshd on port 2222 ([address]:2222 in known_hosts)", CONTROL_GROUP, port=2222)
    return hosts


MANY_SOCKETS = 100_000


@dataclass
class ManySockets:
    """A machine holding a great many TCP sockets, and the loopback flows behind them."""

    machine: Machine
    sockets: int
    processes: int
    flows: list[ExpectedFlow]


def start_many_sockets(lab: Lab, name: str = "many", sockets: int = MANY_SOCKETS, timeout: float = 300) -> ManySockets:
    """Add a machine whose ``lab-many`` processes hold ``sockets`` TCP sockets between them
    (established loopback pairs), and wait until each has opened its share.

    Each process holds as many as its open-files hard limit allows (a container without
    CAP_SYS_RESOURCE cannot raise it), so the sockets are spread over several processes, all
    named lab-many; process ``i`` serves on port 20000 + i."""
    machine = lab.add_machine(name, groups=(HARDENING_GROUP,), description=f"{sockets} TCP sockets")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_process = max(1, (min(hard, 1_000_000) - 256) // 2)  # pairs per process
    pairs = sockets // 2
    flows = []
    logs = []
    number = 0
    while pairs > 0:
        count = min(per_process, pairs)
        port = 20000 + number
        spec = {"comm": "lab-many", "loopback_pairs": count, "loopback_first_port": port,
                "loopback_per_port": count, "fd_limit": 2 * count + 256}
        spec_path = lab.holder_spec(f"{name}-lab-many-{number}", spec)
        log_name = f"lab-many-{number}"
        machine.run([SYSTEM_PYTHON, str(lab.programs_dir / "holder.py"), str(spec_path)], log_name=log_name)
        logs.append(machine.dir / "logs" / f"{log_name}.log")
        flows.append(ExpectedFlow(name, "lab-many", name, "lab-many", "tcp", port, "127.0.0.1", 4, count,
                                  "loopback connections held by one process"))
        pairs -= count
        number += 1
    deadline = time.monotonic() + timeout
    for log in logs:
        while not (log.exists() and "READY" in log.read_text()):
            if time.monotonic() > deadline:
                tail = log.read_text()[-1000:] if log.exists() else ""
                raise LabError(f"lab-many on {name} did not open its sockets within {timeout} s: {tail}")
            time.sleep(0.2)
    return ManySockets(machine=machine, sockets=2 * sum(flow.count for flow in flows), processes=number, flows=flows)

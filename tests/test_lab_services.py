"""End to end on real daemons: nginx, gunicorn, redis and PostgreSQL as Debian ships them.

tests/lab/services.py starts them in four lab machines (edge, front, app, store) with their
clients on long-lived keepalive connections. `netviz run --format json` then collects the
machines over SSH, as a user would, and the map must hold exactly the flows built; ``ss -tanpH``
inside each machine, just before and just after the capture, is the independent oracle: every
connection between two lab machines that it lists both times must be in netviz's capture and
behind a flow of the map, with the process ss names.

Needs root and the daemons (scripts/setup.sh --test installs them); skips saying what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from tests.lab.fixtures import _teardown_on_sigterm, skip_unless_lab_possible, unique_prefix
from tests.lab.lab import Lab, SsSocket, _alive
from tests.lab.scenario import graph_flow_keys
from tests.lab.services import (
    APP_PORT,
    GUNICORN_WORKERS,
    HTTP_PORT,
    NGINX_USER,
    NGINX_WORKERS,
    Services,
    build_services,
    missing_daemons,
    tcp_sockets,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    skip_unless_lab_possible()
    missing = missing_daemons()
    if missing:
        pytest.skip("real daemons unavailable: " + "; ".join(missing) + " (scripts/setup.sh --test installs them)")
    lab = Lab(tmp_path_factory.mktemp("services"), prefix=unique_prefix("nvr"))
    with _teardown_on_sigterm():
        built: Optional[Services] = None
        try:
            built = build_services(lab)
            yield built
        finally:
            lab.stop()
            leftovers = [ns for ns in lab._state.get("netns", []) if os.path.exists(f"/run/netns/{ns}")]
            assert not leftovers, f"namespaces left behind: {leftovers}"
            if built is not None:
                running = {name: pid for name, pid in built.pids.items() if _alive(pid)}
                assert not running, f"daemons left running: {running}"


# --------------------------------------------------------------------------- one capture, two ss


Endpoint = tuple[str, int]


@dataclass(frozen=True)
class ConnectionEnd:
    """One end of an established TCP connection between two lab machines, as ss shows it."""

    machine: str
    comm: str
    pid: int  # as the machine numbers it (ss runs inside the machine, like netviz's payload)
    local: Endpoint
    remote: Endpoint
    peer_machine: str
    server_side: bool  # the local port listens on this machine

    @property
    def server_port(self) -> int:
        return self.local[1] if self.server_side else self.remote[1]

    def connection(self) -> tuple[str, Endpoint, str, Endpoint]:
        """The connection, the same from both ends: (client machine, client end, server machine, server end)."""
        if self.server_side:
            return (self.peer_machine, self.remote, self.machine, self.local)
        return (self.machine, self.local, self.peer_machine, self.remote)


def connection_ends(services: Services, machine: str, rows: list[SsSocket]) -> set[ConnectionEnd]:
    """Every end of a connection between two lab machines in ``rows`` (ss of ``machine``)."""
    listening = {int(row.local_port) for row in rows if row.state == "LISTEN"}
    ends = set()
    for row in rows:
        peer = services.machine_of(row.peer_address, machine)
        if row.state != "ESTAB" or peer is None or services.machine_of(row.local_address, machine) != machine:
            continue
        for comm, pid in row.processes:
            ends.add(ConnectionEnd(machine, comm, pid, (row.local_address, int(row.local_port)),
                                   (row.peer_address, int(row.peer_port)), peer, int(row.local_port) in listening))
    return ends


def ss_everywhere(services: Services) -> set[ConnectionEnd]:
    return {end for name, machine in services.machines.items()
            for end in connection_ends(services, name, tcp_sockets(machine))}


@dataclass
class Capture:
    graph: dict[str, Any]
    snapshots: dict[str, dict[str, Any]]
    before: set[ConnectionEnd]  # ss just before netviz ran
    after: set[ConnectionEnd]  # and just after

    @property
    def long_lived(self) -> set[ConnectionEnd]:
        """Ends ss listed both times: their connection was open during the whole capture."""
        return self.before & self.after

    def node(self, host: str, comm: str) -> dict[str, Any]:
        (node,) = [node for node in self.graph["nodes"] if node["host"] == host and node["comm"] == comm]
        return node


@pytest.fixture(scope="module")
def capture(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    """`netviz run --format json` over SSH against the four machines, between two ss passes."""
    work = tmp_path_factory.mktemp("services-run")
    inventory = services.lab.write_inventory(work / "hosts.yaml", hosts=services.hosts, connect_timeout=5,
                                             command_timeout=30)
    output = work / "graph.json"
    before = ss_everywhere(services)
    result = subprocess.run(
        [sys.executable, "-m", "netviz", "run", "--inventory", str(inventory), "--format", "json",
         "--output", str(output), "--cache", str(work / "cache")],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    after = ss_everywhere(services)
    assert result.returncode == 0, result.stdout + result.stderr
    snapshots = {host: json.loads((work / "cache" / "latest" / f"{host}.json").read_text()) for host in services.hosts}
    return Capture(json.loads(output.read_text()), snapshots, before, after)


# --------------------------------------------------------------------------- the map


def test_the_map_holds_exactly_the_flows_the_daemons_make(services, capture):
    graph = capture.graph
    assert graph_flow_keys(graph) == services.flow_keys()
    nodes = {node["id"]: node for node in graph["nodes"]}
    # netviz's own SSH sessions are outside: sshd is on no edge, though each machine runs one
    assert {node["host"] for node in graph["nodes"] if node["comm"] == "sshd"} == set(services.hosts)
    assert not [flow for flow in graph["flows"]
                if "sshd" in (nodes[flow["client"]]["comm"], nodes[flow["server"]]["comm"])]
    hosts = {entry["name"]: entry for entry in graph["hosts"]}
    assert set(hosts) == set(services.hosts)
    for name, entry in hosts.items():
        assert entry["complete"] and entry["unresolved"] == 0, entry
        # nothing of the scenario leaves the group: the only outside connections are netviz's sessions
        assert entry["outside"] == {"inbound": ssh_sessions(capture.snapshots[name]), "outbound": 0}, entry


def ssh_sessions(snapshot: dict[str, Any]) -> int:
    """Established sockets on port 22 in a snapshot: netviz's own SSH session to the machine."""
    return sum(1 for namespace in snapshot["namespaces"] for sock in namespace["sockets"]
               if sock["proto"].startswith("tcp") and sock["state"] == "ESTABLISHED" and sock["local_port"] == 22)


def test_every_edge_points_from_client_to_server_and_names_every_process(services, capture):
    nodes = {node["id"]: node for node in capture.graph["nodes"]}
    for flow in capture.graph["flows"]:
        assert flow["directed"] and not flow["inferred"] and flow["via"] is None, flow
        # the pids behind each edge are processes of that node
        assert set(flow["client_pids"]) <= set(nodes[flow["client"]]["pids"]), flow
        assert set(flow["server_pids"]) <= set(nodes[flow["server"]]["pids"]), flow

    # nginx: the master and every worker share the listeners, and are all one node
    nginx = capture.node("front", "nginx")
    nginx_pids = services.pids_named("front", "nginx")
    assert len(nginx_pids) == 1 + NGINX_WORKERS
    assert sorted(nginx["pids"]) == nginx_pids
    assert set(nginx["users"]) == {"root", NGINX_USER}
    assert {(item["proto"], item["address"], item["port"]) for item in nginx["listening"]} == {
        ("tcp", "0.0.0.0", HTTP_PORT), ("tcp", "::", HTTP_PORT)}
    # ss agrees that all of them hold the listening sockets
    listeners = [row for row in tcp_sockets(services.machines["front"])
                 if row.state == "LISTEN" and row.local_port == str(HTTP_PORT)]
    assert len(listeners) == 2 and all(sorted(pid for _, pid in row.processes) == nginx_pids for row in listeners)

    # nginx is the server of the clients' edge and the client of the upstream edge, from its workers
    by_key = {(nodes[f["client"]]["comm"], nodes[f["server"]]["comm"], f["server_port"]): f
              for f in capture.graph["flows"]}
    inbound, upstream = by_key[("curl", "nginx", HTTP_PORT)], by_key[("nginx", "gunicorn", APP_PORT)]
    master = services.inner_pid("nginx")  # the process started; it forked the workers
    assert inbound["server_pids"] and master not in inbound["server_pids"]
    assert upstream["client_pids"] and master not in upstream["client_pids"]
    assert set(inbound["server_pids"]) | set(upstream["client_pids"]) <= set(nginx_pids)

    # gunicorn is pre-forked too: master and workers in one node, listening on 8000
    gunicorn = capture.node("app", "gunicorn")
    assert sorted(gunicorn["pids"]) == services.pids_named("app", "gunicorn")
    assert len(gunicorn["pids"]) == 1 + GUNICORN_WORKERS
    assert {(item["proto"], item["address"], item["port"]) for item in gunicorn["listening"]} == {
        ("tcp", "0.0.0.0", APP_PORT)}


# --------------------------------------------------------------------------- ss as the oracle


def _snapshot_holds(snapshot: dict[str, Any], end: ConnectionEnd) -> bool:
    """Does the machine's snapshot hold ``end``'s socket, established, in a process ``end.pid``
    named ``end.comm``? (tcp6 sockets of dual-stack listeners name IPv4 peers ::ffff:a.b.c.d)"""
    def plain(address: str) -> str:
        return address[len("::ffff:"):] if address.startswith("::ffff:") and "." in address else address

    inodes = {sock["inode"] for namespace in snapshot["namespaces"] for sock in namespace["sockets"]
              if sock["proto"] in ("tcp", "tcp6") and sock["state"] == "ESTABLISHED"
              and (plain(sock["local"]), sock["local_port"]) == end.local
              and (plain(sock["remote"]), sock["remote_port"]) == end.remote}
    return any(process["pid"] == end.pid and process["comm"] == end.comm and inodes & set(process["sockets"])
               for process in snapshot["processes"])


def _flow_for(graph: dict[str, Any], end: ConnectionEnd) -> Optional[dict[str, Any]]:
    """The map's flow carrying ``end``: this process on this side, the peer machine on the other."""
    nodes = {node["id"]: node for node in graph["nodes"]}
    mine, theirs, pids = ("server", "client", "server_pids") if end.server_side else ("client", "server", "client_pids")
    for flow in graph["flows"]:
        here, there = nodes[flow[mine]], nodes[flow[theirs]]
        if (here["host"], here["comm"], there["host"]) == (end.machine, end.comm, end.peer_machine) \
                and flow["proto"] == "tcp" and flow["server_port"] == end.server_port and end.pid in flow[pids]:
            return flow
    return None


def test_every_connection_ss_shows_between_the_machines_is_in_the_map(services, capture):
    long_lived = capture.long_lived
    # the oracle is not vacuous: both ends of every flow, and both address families to nginx
    assert {(end.machine, end.comm) for end in long_lived} == {
        (host, comm) for key in services.flow_keys() for host, comm in (key[0:2], key[2:4])}
    to_nginx = {end.remote[0] for end in long_lived if end.comm == "curl"}
    front = services.machines["front"]
    assert to_nginx == {front.ipv4, front.ipv6}

    missing_in_snapshot = [end for end in long_lived if not _snapshot_holds(capture.snapshots[end.machine], end)]
    assert not missing_in_snapshot
    missing_in_map = [end for end in long_lived if _flow_for(capture.graph, end) is None]
    assert not missing_in_map

    # counts: at least the connections open throughout, at most those ss saw at either moment
    nodes = {node["id"]: node for node in capture.graph["nodes"]}
    for flow in capture.graph["flows"]:
        client, server = nodes[flow["client"]], nodes[flow["server"]]
        key = (client["host"], client["comm"], server["host"], server["comm"], flow["server_port"])
        open_throughout = connections_of(long_lived, key)
        open_at_either = connections_of(capture.before | capture.after, key)
        assert len(open_throughout) <= flow["count"] <= len(open_at_either), (flow, open_throughout, open_at_either)


def connections_of(ends: set[ConnectionEnd], key: tuple[str, str, str, str, int]) -> set:
    """The connections among ``ends`` from (client host, comm) to (server host, comm) on a port:
    those whose two ends ss showed, each in the expected process."""
    client_host, client_comm, server_host, server_comm, port = key
    clients = {end.connection() for end in ends if not end.server_side and end.server_port == port
               and (end.machine, end.comm, end.peer_machine) == (client_host, client_comm, server_host)}
    servers = {end.connection() for end in ends if end.server_side and end.server_port == port
               and (end.machine, end.comm, end.peer_machine) == (server_host, server_comm, client_host)}
    return clients & servers

"""Real processes holding real sockets on this machine, captured by the real payload, stitched;
`ss` is the independent oracle for the number of connections."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netviz.snapshot import parse_snapshot
from netviz.stitch import stitch

REPO = Path(__file__).resolve().parent.parent
PAYLOAD = REPO / "netviz" / "payload" / "capture.py"

SERVER = r"""
import socket, sys, time
tcp = socket.socket(); tcp.bind(("127.0.0.1", 0)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
print(tcp.getsockname()[1], udp.getsockname()[1], flush=True)
held = []
while True:
    connection, _ = tcp.accept(); held.append(connection)
"""

CLIENT = r"""
import socket, sys, time
tcp_port, udp_port, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection(("127.0.0.1", tcp_port)) for _ in range(count)]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.connect(("127.0.0.1", udp_port))
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def processes():
    started: list[subprocess.Popen] = []

    def start(code: str, *arguments: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *arguments], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def test_live_loopback_flows_match_ss(processes):
    if not PAYLOAD.exists():
        pytest.skip("the capture payload is not in this checkout")
    server = processes(SERVER)
    tcp_port, udp_port = (int(value) for value in server.stdout.readline().split())
    clients = [processes(CLIENT, str(tcp_port), str(udp_port), str(count)) for count in (1, 3)]
    for client in clients:
        assert client.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # let the server accept every connection

    captured = subprocess.run(
        [sys.executable, "-"], stdin=PAYLOAD.open("rb"), capture_output=True, timeout=300, check=True
    )
    graph = stitch([parse_snapshot(json.loads(captured.stdout), "live")], group_by="pid")

    pids_of = {node.id: node.pids for node in graph.nodes}
    ours = {
        (pids_of[flow.client], pids_of[flow.server], flow.proto, flow.server_port): (flow.count, flow.directed)
        for flow in graph.flows
        if pids_of[flow.server] == (server.pid,)
    }
    assert ours == {
        ((clients[0].pid,), (server.pid,), "tcp", tcp_port): (1, True),
        ((clients[1].pid,), (server.pid,), "tcp", tcp_port): (3, True),
        ((clients[0].pid,), (server.pid,), "udp", udp_port): (1, True),
        ((clients[1].pid,), (server.pid,), "udp", udp_port): (1, True),
    }
    if shutil.which("ss"):
        oracle = subprocess.run(
            ["ss", "-Htn", "state", "established", f"( dport = :{tcp_port} )"],
            capture_output=True, text=True, check=True,
        )
        assert len(oracle.stdout.splitlines()) == 4


# A transparent proxy's upstream leg, for real: a socket with IP_TRANSPARENT bound to an address
# its namespace does not have (the client machine's), connected to the server of its namespace.
TRANSPARENT = r"""
import socket, sys
open("/proc/self/comm", "w").write(sys.argv[1])
if sys.argv[1] == "upstream":
    s = socket.socket()
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
    s.bind(("10.255.254.1", 51000))
    s.connect(("10.255.254.2", 25432))
    held = [s]
else:
    server = socket.create_server(("0.0.0.0", 25432))
    print("listening", flush=True)
    held = [server.accept()[0]]
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_real_transparent_socket_joins_the_server_of_its_namespace(tmp_path):
    """In a namespace of its own: a server on 10.255.254.2:25432 and an IP_TRANSPARENT socket bound
    to 10.255.254.1, an address of another machine of the group (only a local route leads it back).
    Captured by the real payload and stitched with that machine: one exact flow, nothing
    inferred or unresolved; `ss` in the namespace shows the same one connection."""
    import os
    import uuid

    from tests.snapbuilder import Machine

    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip (iproute2) for a network namespace")
    name = "nvtp-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    started: list[subprocess.Popen] = []
    try:
        inside = ["ip", "netns", "exec", name]
        for command in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "10.255.254.2/32", "dev", "lo"],
                        ["ip", "route", "add", "local", "10.255.254.0/24", "dev", "lo"]):
            subprocess.run([*inside, *command], check=True)
        for role in ("postgres", "upstream"):
            process = subprocess.Popen([*inside, sys.executable, "-c", TRANSPARENT, role], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            started.append(process)
            if role == "postgres":
                assert process.stdout.readline() == "listening\n"
        assert started[1].stdout.readline() == "ready\n" and started[0].stdout.readline() == "ready\n"
        rows = subprocess.run([*inside, "ss", "-tnH", "state", "established"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        ends = sorted(tuple(row.split()[2:4]) for row in rows)
        # the oracle: one connection, its two ends in the namespace
        assert ends == [("10.255.254.1:51000", "10.255.254.2:25432"), ("10.255.254.2:25432", "10.255.254.1:51000")], rows
        result = subprocess.run([*inside, sys.executable, str(PAYLOAD)], capture_output=True, timeout=120, check=True)
        captured = parse_snapshot(json.loads(result.stdout), "db")
        held = {address.address for namespace in captured.namespaces for address in namespace.addresses}
        assert "10.255.254.2" in held and "10.255.254.1" not in held  # a route leads it back: not an address
        web = Machine("web", "10.255.254.1")  # the machine whose address the proxy holds
        graph = stitch([captured, web.build()])
        nodes = graph.nodes_by_id()
        # (the payload sees every process of the machine: other tests' labs too)
        flows = [(nodes[f.client].comm, nodes[f.server].comm, f.server_port, f.count, f.inferred) for f in graph.flows
                 if {nodes[f.client].comm, nodes[f.server].comm} & {"upstream", "postgres"}]
        assert flows == [("upstream", "postgres", 25432, 1, False)], flows
        assert not [u for host in graph.hosts for u in host.unresolved_examples if 25432 in (u.local_port, u.remote_port)]
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", name], check=True)

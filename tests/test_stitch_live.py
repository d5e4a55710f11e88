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

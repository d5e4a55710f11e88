"""`netviz run --window` end to end: a client on one lab machine opens and closes ~20 TCP
connections a second to a server on another; the map draws that flow between the right
machines and to the server process, short-lived, with more than one connection.

The oracle is the client's own log: one line per connection, with its time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.lab.fixtures import _teardown_on_sigterm, skip_unless_lab_possible, unique_prefix
from tests.lab.lab import bare_lab

REPO = Path(__file__).resolve().parent.parent
PORT = 7171
SERVER = (
    "import socket\n"
    "open('/proc/self/comm', 'w').write('churn-server')\n"
    f"s = socket.create_server(('0.0.0.0', {PORT}))\n"
    "while True:\n"
    "    c = s.accept()[0]\n"
    "    c.recv(16)\n"
    "    c.close()\n"
)
# ~20 connections a second, each closed at once; one line per connection on stdout.
CLIENT = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('churn-client')\n"
    "while True:\n"
    f"    c = socket.create_connection((sys.argv[1], {PORT}))\n"
    "    c.sendall(b'x')\n"
    "    c.recv(16)\n"
    "    c.close()\n"
    "    print(time.time(), flush=True)\n"
    "    time.sleep(0.05)\n"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    skip_unless_lab_possible()
    root = tmp_path_factory.mktemp("window-stitch-lab")
    with _teardown_on_sigterm(), bare_lab(2, root, prefix=unique_prefix("nvs")) as lab:
        server, client = lab.machines["m01"], lab.machines["m00"]
        server.run(["python3", "-c", SERVER], log_name="churn-server")
        deadline = time.monotonic() + 20
        while f":{PORT}" not in server.exec(["ss", "-tlnH"]).stdout:
            assert time.monotonic() < deadline, "the server did not listen"
            time.sleep(0.05)
        client.run(["python3", "-u", "-c", CLIENT, server.ipv4], log_name="churn-client")
        yield lab


def test_short_lived_connections_are_drawn_between_the_right_machines(lab, tmp_path):
    inventory = lab.write_inventory(tmp_path / "hosts.yaml")
    output = tmp_path / "map.json"
    result = subprocess.run(
        [sys.executable, "-m", "netviz", "run", "-i", str(inventory), "--cache", str(tmp_path / "cache"),
         "--window", "5s", "-f", "json", "-o", str(output)],
        cwd=REPO, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    document = json.loads(output.read_text())
    nodes = {node["id"]: node for node in document["nodes"]}
    flows = [flow for flow in document["flows"] if flow["server_port"] == PORT]
    assert len(flows) >= 1, document["flows"]
    for flow in flows:  # every flow on the port: from m00 to the server process on m01, never another
        client, server = nodes[flow["client"]], nodes[flow["server"]]
        assert (client["host"], server["host"], server["comm"]) == ("m00", "m01", "churn-server"), flow
        assert client["comm"] in ("churn-client", "(short-lived)"), client
        assert flow["persistent"] is False and flow["directed"] is True, flow
    seen = sum(flow["connections"] for flow in flows)
    # the oracle: the client's own count of the connections it made during m00's window
    window = next(host["window"] for host in document["hosts"] if host["name"] == "m00")
    log = (lab.machines["m00"].dir / "logs" / "churn-client.log").read_text().split()
    made = sum(1 for stamp in log if window["started_at"] <= float(stamp) <= window["ended_at"])
    assert made > 20, made
    # a lower bound, never more than were made (a connection straddling the window's edges counts)
    assert 1 < seen <= made + 2, (seen, made, flows)
    assert seen >= made * 0.5, (seen, made, flows)

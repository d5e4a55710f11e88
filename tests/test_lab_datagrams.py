"""End to end on the lab: a UDP client that sends with sendto from an unconnected socket (as
statsd and syslog clients do) leaves no peer in /proc; conntrack on the receiving machine is what
shows the flow, and netviz draws it, marked inferred."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from netviz.cli import app

RECEIVER = (
    "import socket\n"
    "open('/proc/self/comm', 'w').write('udp-receiver')\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 8125))\n"
    "while True:\n"
    "    s.recv(2048)\n"
)
SENDER = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('udp-sender')\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 0))\n"
    "while True:\n"
    "    s.sendto(b'requests:1|c', (sys.argv[1], 8125))\n"
    "    time.sleep(0.2)\n"
)
# Connection tracking runs in a namespace once a rule there needs it.
TRACKING = "table inet netviz_test {\n  chain input {\n    type filter hook input priority 0;\n    ct state new counter\n  }\n}\n"


def _wait(condition, deadline: float, failure: str) -> None:
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def _mapped(lab, tmp_path):
    """`netviz run` over SSH on the lab: the JSON graph and its nodes by id."""
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=30)
    output = tmp_path / "map.json"
    result = CliRunner().invoke(app, ["run", "-i", str(inventory), "--cache", str(tmp_path / "cache"), "-o", str(output)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    graph = json.loads(output.read_text())
    return graph, {node["id"]: node for node in graph["nodes"]}


def test_a_sendto_client_is_drawn_from_the_receivers_conntrack(lab_factory, tmp_path):
    lab = lab_factory(2)
    sender_machine, receiver_machine = lab.machines["m00"], lab.machines["m01"]
    receiver_machine.exec(["nft", "-f", "-"], input=TRACKING, check=True)
    receiver_machine.run(["python3", "-c", RECEIVER], log_name="receiver")
    deadline = time.monotonic() + 20
    _wait(lambda: "0.0.0.0:8125" in receiver_machine.exec(["ss", "-uanH"]).stdout, deadline, "the receiver did not bind")
    sender_machine.run(["python3", "-c", SENDER, receiver_machine.ipv4], log_name="sender")
    _wait(lambda: "dport=8125" in receiver_machine.exec(["cat", "/proc/net/nf_conntrack"]).stdout, deadline,
          "conntrack never saw the datagrams")
    # the oracle: /proc shows the sender's socket with no peer at all
    sender_rows = [line for line in sender_machine.exec(["ss", "-uanpH"]).stdout.splitlines() if "udp-sender" in line]
    assert len(sender_rows) == 1 and sender_rows[0].split()[4] == "0.0.0.0:*", sender_rows

    graph, nodes = _mapped(lab, tmp_path)
    flows = [(nodes[f["client"]]["host"], nodes[f["client"]]["comm"], nodes[f["server"]]["host"],
              nodes[f["server"]]["comm"], f["proto"], f["server_port"], f["inferred"], f["directed"])
             for f in graph["flows"]]
    assert flows == [("m00", "udp-sender", "m01", "udp-receiver", "udp", 8125, True, True)]


# With conntrack's accounting on the receiving machine, UDP flows between machines weigh what its
# entries counted: packets, and bytes of whole IPv4 packets (28 bytes of headers each).
ECHO = (
    "import socket, threading\n"
    "open('/proc/self/comm', 'w').write('udp-echo')\n"
    "answering = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "answering.bind(('0.0.0.0', 9125))\n"
    "silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "silent.bind(('0.0.0.0', 9126))\n"
    "threading.Thread(target=lambda: [silent.recv(2048) for _ in iter(int, 1)], daemon=True).start()\n"
    "while True:\n"
    "    data, peer = answering.recvfrom(2048)\n"
    "    answering.sendto(b'a' * 400, peer)\n"
)
CLIENTS = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('udp-clients')\n"
    "asking = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "asking.connect((sys.argv[1], 9125))\n"
    "for _ in range(30):\n"
    "    asking.send(b'q' * 200)\n"
    "    asking.recv(2048)\n"
    "telling = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "telling.bind(('0.0.0.0', 0))\n"
    "for _ in range(20):\n"
    "    telling.sendto(b's' * 60, (sys.argv[1], 9126))\n"
    "print('done', flush=True)\n"
    "time.sleep(3600)\n"
)
ACCOUNTING = "echo 1 > /proc/sys/net/netfilter/nf_conntrack_acct"


def test_udp_flows_between_machines_weigh_what_the_receivers_conntrack_counted(lab_factory, tmp_path):
    lab = lab_factory(2)
    client_machine, server_machine = lab.machines["m00"], lab.machines["m01"]
    server_machine.exec(["nft", "-f", "-"], input=TRACKING, check=True)
    server_machine.exec(["sh", "-c", ACCOUNTING], check=True)
    server_machine.run(["python3", "-c", ECHO], log_name="echo")
    deadline = time.monotonic() + 20
    _wait(lambda: "0.0.0.0:9126" in server_machine.exec(["ss", "-uanH"]).stdout, deadline, "the echo server did not bind")
    client_machine.run(["python3", "-c", CLIENTS, server_machine.ipv4], log_name="clients")
    log = client_machine.dir / "logs" / "clients.log"
    _wait(lambda: log.exists() and "done" in log.read_text(), deadline, "the clients did not finish")

    graph, nodes = _mapped(lab, tmp_path)
    weights = {(nodes[f["client"]]["comm"], nodes[f["server"]]["comm"], f["server_port"], f["inferred"]):
               {name: f["traffic"].get(name) for name in ("packets_sent", "ip_bytes_sent", "packets_received",
                                                            "ip_bytes_received", "bytes_sent")}
               for f in graph["flows"] if f["proto"] == "udp"}
    assert weights == {
        ("udp-clients", "udp-echo", 9125, False): {"packets_sent": 30, "ip_bytes_sent": 30 * 228, "packets_received": 30,
                                                    "ip_bytes_received": 30 * 428, "bytes_sent": None},
        ("udp-clients", "udp-echo", 9126, True): {"packets_sent": 20, "ip_bytes_sent": 20 * 88, "packets_received": 0,
                                                   "ip_bytes_received": 0, "bytes_sent": None},
    }

"""Bytes and round-trip times on the edges, end to end on lab machines (`netviz run` over SSH).

m00 sends at a known rate (RATE bytes a second for SECONDS seconds) to a sink on m01, logs what it
sent, and keeps the connection open. m02 sends as fast as it can to the same sink through a
`tc tbf` rate limit on its own eth0 (1 mbit, a 400 ms queue: netem is not in this kernel), so its
connection's RTT grows with the queue. The oracles: the sender's own log for the bytes, and
`ss -tin` read inside each machine (the kernel's tcp_info through another reader) just before and
after the capture for the RTT and retransmits of the idle connection.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.lab.fixtures import _teardown_on_sigterm, skip_unless_lab_possible, unique_prefix, wait_until
from tests.lab.lab import bare_lab

REPO = Path(__file__).resolve().parent.parent
PORT = 7181
RATE, SECONDS = 5_000_000, 3.0
SINK = (
    "import socket, threading\n"
    "open('/proc/self/comm', 'w').write('sink')\n"
    f"s = socket.create_server(('0.0.0.0', {PORT}))\n"
    "def drain(c):\n"
    "    while c.recv(1 << 20):\n"
    "        pass\n"
    "while True:\n"
    "    threading.Thread(target=drain, args=(s.accept()[0],), daemon=True).start()\n"
)
# RATE bytes a second in 50 ms steps for SECONDS, then the total on stdout; the connection stays open
PACED_SENDER = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('paced-sender')\n"
    f"c = socket.create_connection((sys.argv[1], {PORT}))\n"
    f"step, total, start = {RATE} // 20, 0, time.monotonic()\n"
    f"while time.monotonic() - start < {SECONDS}:\n"
    "    c.sendall(b'x' * step)\n"
    "    total += step\n"
    "    time.sleep(max(0.0, start + total / %d - time.monotonic()))\n"
    "print('sent', total, flush=True)\n"
    "time.sleep(100000)\n"
) % RATE
# Inside a window: waits until argv[2] (Unix time), connects, sends RATE bytes a second for
# SECONDS, closes, and prints the total and the seconds it took
WINDOW_SENDER = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write('window-sender')\n"
    "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
    "c = socket.create_connection((sys.argv[1], int(sys.argv[3])))\n"
    f"step, total, start = {RATE} // 20, 0, time.monotonic()\n"
    f"while time.monotonic() - start < {SECONDS}:\n"
    "    c.sendall(b'x' * step)\n"
    "    total += step\n"
    "    time.sleep(max(0.0, start + total / %d - time.monotonic()))\n"
    "c.close()\n"
    "print('sent', total, time.monotonic() - start, flush=True)\n"
    "time.sleep(100000)\n"
) % RATE
FLOOD_SENDER = (
    "import socket, sys\n"
    "open('/proc/self/comm', 'w').write('flood-sender')\n"
    f"c = socket.create_connection((sys.argv[1], {PORT}))\n"
    "print('connected', flush=True)\n"
    "while True:\n"
    "    c.sendall(b'y' * 65536)\n"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    skip_unless_lab_possible()
    root = tmp_path_factory.mktemp("traffic-lab")
    with _teardown_on_sigterm(), bare_lab(3, root, prefix=unique_prefix("nvt")) as lab:
        sender, sink, limited = lab.machines["m00"], lab.machines["m01"], lab.machines["m02"]
        sink.run(["python3", "-c", SINK], log_name="sink")
        wait_until(lambda: f":{PORT}" in sink.exec(["ss", "-tlnH"]).stdout, 20, "the sink listening")
        limited.exec(["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kbit",
                      "latency", "400ms"], check=True)
        limited.run(["python3", "-u", "-c", FLOOD_SENDER, sink.ipv4], log_name="flood-sender")
        sender.run(["python3", "-u", "-c", PACED_SENDER, sink.ipv4], log_name="paced-sender")
        log = sender.dir / "logs" / "paced-sender.log"
        wait_until(lambda: "sent" in log.read_text(), SECONDS + 30, "the paced sender's total")
        time.sleep(1)  # the last bytes acknowledged, and the limited link's queue full
        yield lab


def _ss(machine, port_filter: str) -> str:
    return machine.exec(["ss", "-tinH", "state", "established", port_filter]).stdout


def _ss_facts(text: str) -> tuple[float, int]:
    """(RTT in ms, total retransmits) of the one connection `ss -tin` printed."""
    rtt = re.search(r"\brtt:([\d.]+)/", text)
    assert rtt, text
    retrans = re.search(r"\bretrans:\d+/(\d+)", text)
    return float(rtt.group(1)), int(retrans.group(1)) if retrans else 0


@pytest.fixture(scope="module")
def captured(lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[str], list[str], Path]:
    """The map as JSON, with `ss -tin` of the paced connection at both ends just before and after."""
    where = tmp_path_factory.mktemp("traffic-run")
    inventory = lab.write_inventory(where / "hosts.yaml")
    output = where / "map.json"
    ends = [(lab.machines["m00"], f"( dport = :{PORT} )"), (lab.machines["m01"], f"( sport = :{PORT} and dst {lab.machines['m00'].ipv4} )")]
    before = [_ss(machine, expression) for machine, expression in ends]
    result = subprocess.run(
        [sys.executable, "-m", "netviz", "run", "-i", str(inventory), "--cache", str(where / "cache"),
         "-f", "json", "-o", str(output)], cwd=REPO, capture_output=True, timeout=180)
    after = [_ss(machine, expression) for machine, expression in ends]
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return json.loads(output.read_text()), before, after, where / "cache"


def _flow(document: dict, client_comm: str) -> dict:
    nodes = {node["id"]: node for node in document["nodes"]}
    flows = [flow for flow in document["flows"]
             if flow["server_port"] == PORT and nodes[flow["client"]]["comm"] == client_comm]
    assert len(flows) == 1, document["flows"]
    (flow,) = flows
    assert nodes[flow["server"]]["comm"] == "sink" and nodes[flow["server"]]["host"] == "m01", flow
    return flow


def test_a_flow_carries_the_bytes_its_sender_sent(lab, captured):
    document, _, _, _ = captured
    sent = int((lab.machines["m00"].dir / "logs" / "paced-sender.log").read_text().split()[1])
    assert sent >= RATE * SECONDS * 0.9  # the sender kept its pace
    traffic = _flow(document, "paced-sender")["traffic"]
    assert traffic["connections"] == 1
    assert abs(traffic["bytes_sent"] - sent) <= sent * 0.05, (traffic, sent)
    assert traffic["bytes_received"] <= 1, traffic  # the sink sends nothing back


def test_rtt_and_retransmits_agree_with_ss(captured):
    """The idle connection's smoothed RTT does not move between the readings: the flow's is the
    client's, as `ss -tin` prints it on m00; its retransmits are both ends' together."""
    document, before, after, _ = captured
    traffic = _flow(document, "paced-sender")["traffic"]
    client_rtt, client_retrans = _ss_facts(before[0])
    assert (client_rtt, client_retrans) == _ss_facts(after[0])  # nothing moved meanwhile
    server_retrans = _ss_facts(before[1])[1]
    assert traffic["rtt_median_ms"] == traffic["rtt_max_ms"] == pytest.approx(client_rtt, abs=0.0005)
    assert traffic["retransmits"] == client_retrans + server_retrans


def test_a_rate_limited_link_raises_the_rtt_and_retransmits_of_the_flow_through_it(lab, captured):
    document, _, _, _ = captured
    limited = _flow(document, "flood-sender")["traffic"]
    paced = _flow(document, "paced-sender")["traffic"]
    assert limited["bytes_sent"] > 0
    # 1 mbit through a queue of up to 400 ms: tens to hundreds of ms, against well under one on the bridge
    assert limited["rtt_median_ms"] > 20 > 10 * paced["rtt_median_ms"], (limited, paced)
    # its small queue drops segments, which the sender resends; the paced flow lost next to none
    # (a busy machine can delay one segment on the bridge long enough to be resent)
    assert limited["retransmits"] > 0 and paced["retransmits"] <= limited["retransmits"] // 20, (limited, paced)
    ss_rtt, _ = _ss_facts(_ss(lab.machines["m02"], f"( dport = :{PORT} )"))
    assert ss_rtt > 20, ss_rtt  # the kernel's own reader sees the same queue


def test_edges_are_drawn_wider_for_more_bytes(captured):
    """DOT through the same stitch: the paced flow (15 MB) is drawn wider than the limited one (a
    few hundred kB to a few MB, as the machine allows), and both labels carry their bytes and RTT."""
    cache = captured[3]
    result = subprocess.run([sys.executable, "-m", "netviz", "stitch", "--cache", str(cache), "-f", "dot",
                             "--detail", "full"], cwd=REPO,
                            capture_output=True, timeout=120, text=True)
    assert result.returncode == 0, result.stderr
    widths = {}
    for line in result.stdout.splitlines():
        if "->" in line and f"tcp/{PORT}" in line:
            width = re.search(r"penwidth=([\d.]+)", line)
            label = re.search(r"label=<([^>]*)>", line).group(1)
            assert " MB" in label or " kB" in label, label
            widths[label] = float(width.group(1)) if width else 1.0
    assert len(widths) == 2, result.stdout

    def sent(label: str) -> float:  # "tcp/7181 15.0 MB / 0 B, ..." -> 15e6
        number, unit = re.search(r"([\d.]+) (B|kB|MB|GB) /", label).groups()
        return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]

    paced, other = (widths[label] for label in sorted(widths, key=sent, reverse=True))
    assert paced > other, widths  # the one that moved more bytes (the paced 15 MB) is the wider


def test_a_window_gives_the_bytes_and_the_rate_of_a_sender_inside_it(lab, tmp_path):
    """`netviz run --window 14s` while m00 opens a connection well inside the window, sends 5 MB/s
    for 3 s and closes it: the flow's window bytes within 5% of what the sender logged, its rate
    within 10% of the rate the sender kept (the window begins about WINDOW_START_DELAY after the
    command starts; the sender begins about 5 s after that, once the first sample, which walks every
    process's fds, is surely over). It sends to a sink of its own port: the
    window counts per (client address, service), and the paced sender's key is m00 -> m01:PORT."""
    from netviz.transport.base import WINDOW_START_DELAY

    sender, sink = lab.machines["m00"], lab.machines["m01"]
    port = PORT + 1
    sink.run(["python3", "-c", SINK.replace(str(PORT), str(port))], log_name="window-sink")
    wait_until(lambda: f":{port}" in sink.exec(["ss", "-tlnH"]).stdout, 20, "the second sink listening")
    inventory = lab.write_inventory(tmp_path / "hosts.yaml")
    output = tmp_path / "window.json"
    begin = time.time() + WINDOW_START_DELAY + 6.0
    sender.run(["python3", "-u", "-c", WINDOW_SENDER, sink.ipv4, f"{begin:.3f}", str(port)], log_name="window-sender")
    result = subprocess.run(
        [sys.executable, "-m", "netviz", "run", "-i", str(inventory), "--window", "14s",
         "--cache", str(tmp_path / "cache"), "-f", "json", "-o", str(output)], cwd=REPO, capture_output=True, timeout=240)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    _, total, seconds = (sender.dir / "logs" / "window-sender.log").read_text().split()
    sent, rate = int(total), int(total) / float(seconds)
    document = json.loads(output.read_text())
    started = min(host["window"]["started_at"] for host in document["hosts"] if host.get("window"))
    assert started < begin, (started, begin)  # the sender began inside the window
    nodes = {node["id"]: node for node in document["nodes"]}
    (flow,) = [flow for flow in document["flows"] if flow["server_port"] == port]
    assert nodes[flow["client"]]["comm"] == "window-sender" and nodes[flow["server"]]["host"] == "m01", flow
    assert abs(flow["window_bytes_sent"] - sent) <= 0.05 * sent, (flow, sent)
    assert abs(flow["bytes_per_second"] - rate) <= 0.10 * rate, (flow, rate)

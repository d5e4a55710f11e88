"""Conntrack's accounting (nf_conntrack_acct) as a flow's weight, where tcp_info has nothing: UDP
(connected, or sendto from a bound socket) counted in packets and IP bytes.

Real datagrams of known sizes are exchanged in a throwaway network namespace whose conntrack
counts; the expected counts follow from what was sent (an IPv4 UDP packet is 28 bytes of headers
plus its payload, IPv6 48), and the /proc text and the netlink dump must both give them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netviz.graph import FlowTraffic
from netviz.payload import capture
from netviz.render.csv import render_rows
from netviz.render.dot import render_dot
from netviz.snapshot import parse_snapshot, snapshot_to_document
from netviz.stitch import stitch

PAYLOAD = Path(capture.__file__)
REPO = PAYLOAD.parents[2]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft and ip (a network namespace whose conntrack counts)")

EXCHANGES = 40  # request/answer pairs on the connected UDP client
REQUEST, ANSWER = 100, 300  # payload bytes
SENT_ALONE = 25  # datagrams from a bound socket with sendto, never answered
STATSD = 50

# Runs inside the namespace: conntrack with accounting, then UDP over IPv4 and IPv6 and one TCP
# connection, all held open while the payload captures; prints the payload's document and both
# readings of the conntrack table.
TRAFFIC = r"""
import json, socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
from netviz.payload import capture
exchanges, request, answer, alone, statsd = (int(value) for value in sys.argv[3:8])
subprocess.run(["nft", "-f", "-"], input="table inet netviz_acct {\n chain out {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n",
               universal_newlines=True, check=True)
with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as handle:
    handle.write("1")
held = []
for family, host, port in ((socket.AF_INET, "127.0.0.1", 9125), (socket.AF_INET6, "::1", 9135)):
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, port))
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.connect((host, port))
    for _ in range(exchanges):
        client.send(b"q" * request)
        data, peer = server.recvfrom(4096)
        server.sendto(b"a" * answer, peer)
        client.recv(4096)
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, port + 1))
    sender = socket.socket(family, socket.SOCK_DGRAM)
    sender.bind((host, 0))
    for _ in range(alone):
        sender.sendto(b"s" * statsd, (host, port + 1))
        receiver.recv(4096)
    held += [server, client, receiver, sender]
listener = socket.socket()
listener.bind(("127.0.0.1", 9140))
listener.listen(1)
tcp_client = socket.create_connection(("127.0.0.1", 9140))
accepted, _ = listener.accept()
tcp_client.sendall(b"t" * 1000)
accepted.recv(4096)
document = json.loads(subprocess.run([sys.executable, sys.argv[2]], stdout=subprocess.PIPE, check=True).stdout)
with open("/proc/net/nf_conntrack") as handle:
    text = capture.parse_nf_conntrack(handle.read())[0]
print(json.dumps({"document": document, "text": text, "netlink": capture.netlink_conntrack()[0]}))
"""


@pytest.fixture(scope="module")
def counted() -> dict:
    name = "nvacct" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", TRAFFIC, str(REPO), str(PAYLOAD),
                               *(str(n) for n in (EXCHANGES, REQUEST, ANSWER, SENT_ALONE, STATSD))],
                              stdout=subprocess.PIPE, timeout=60, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    return json.loads(done.stdout)


def _udp_counters(entries: list[dict]) -> dict[int, list[int]]:
    """Counters of the UDP entries by destination port."""
    return {entry["original"]["dport"]: entry.get("counters") for entry in entries if entry["proto"] == "udp"}


def _expected() -> dict[int, list[int]]:
    out = {}
    for port, headers in ((9125, 28), (9135, 48)):
        out[port] = [EXCHANGES, EXCHANGES * (headers + REQUEST), EXCHANGES, EXCHANGES * (headers + ANSWER)]
        out[port + 1] = [SENT_ALONE, SENT_ALONE * (headers + STATSD), 0, 0]
    return out


@needs_root
def test_the_text_and_the_netlink_dump_give_the_counts_that_were_sent(counted: dict) -> None:
    assert _udp_counters(counted["text"]) == _expected()
    assert _udp_counters(counted["netlink"]) == _expected()
    tcp = [entry for entry in counted["text"] if entry["proto"] == "tcp" and entry["original"]["dport"] == 9140]
    assert len(tcp) == 1 and tcp[0]["counters"][0] >= 3  # SYN, ACK, data at least


@needs_root
def test_udp_flows_weigh_what_conntrack_counted(counted: dict) -> None:
    snapshot = parse_snapshot(counted["document"], "box")
    # the counters survive the snapshot's own writer and reader
    assert parse_snapshot(snapshot_to_document(snapshot), "box") == snapshot
    graph = stitch([snapshot])
    expected = _expected()
    by_port = {}
    for flow in graph.flows:
        by_port.setdefault(flow.server_port, []).append(flow)
    for port, (packets_out, bytes_out, packets_back, bytes_back) in expected.items():
        (flow,) = by_port[port]
        traffic = flow.traffic
        assert traffic is not None, flow
        assert (traffic.packets_sent, traffic.ip_bytes_sent, traffic.packets_received, traffic.ip_bytes_received) \
            == (packets_out, bytes_out, packets_back, bytes_back), (port, traffic)
        assert traffic.bytes_sent is None and traffic.rtts == () and traffic.connections == 1
        assert traffic.total_bytes == bytes_out + bytes_back
        assert flow.inferred == (port in (9126, 9136))  # sendto: only conntrack links the two sockets
        exported = flow.to_json()["traffic"]
        assert exported["ip_bytes_sent"] == bytes_out and exported["rtt_median_ms"] is None
    # TCP keeps its tcp_info data bytes: conntrack's IP bytes are not mixed in
    (tcp,) = by_port[9140]
    assert tcp.traffic.bytes_sent == 1000 and tcp.traffic.packets_sent is None
    rows = render_rows(graph).splitlines()
    header = rows[0].split(",")
    assert header[-4:] == ["packets_sent", "packets_received", "ip_bytes_sent", "ip_bytes_received"]
    assert any(row.endswith(f",{EXCHANGES},{EXCHANGES},{expected[9125][1]},{expected[9125][3]}") for row in rows)
    dot = render_dot(graph)
    assert f"{expected[9125][1] / 1000:.1f} kB / {expected[9125][3] / 1000:.1f} kB IP" in dot


def test_an_entry_without_accounting_has_no_counters_and_a_cut_line_counts_nothing() -> None:
    plain = ("ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 src=10.0.0.2 dst=10.0.0.1 "
             "sport=53 dport=5000 mark=0 use=1\n")
    counted = ("ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 packets=3 bytes=180 "
               "src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000 packets=2 bytes=152 mark=0 use=1\n")
    one_way = ("ipv4 2 udp 17 29 src=10.0.0.1 dst=10.0.0.2 sport=5000 dport=53 packets=3 bytes=180 "
               "src=10.0.0.2 dst=10.0.0.1 sport=53 dport=5000 mark=0 use=1\n")
    entries = capture.parse_nf_conntrack(plain + counted + one_way)[0]
    assert ["counters" in entry for entry in entries] == [False, True, False]
    assert entries[1]["counters"] == [3, 180, 2, 152]


def test_merged_flows_add_their_counts_and_keep_the_two_kinds_of_bytes_apart() -> None:
    tcp = FlowTraffic(connections=2, bytes_sent=500, bytes_received=700, retransmits=1, rtts=(100, 300))
    udp = FlowTraffic(connections=1, bytes_sent=None, bytes_received=None, retransmits=0, packets_sent=4,
                      packets_received=2, ip_bytes_sent=512, ip_bytes_received=256)
    assert udp.bytes_text() == "512 B / 256 B IP" and udp.rtt_text() == "-" and udp.total_bytes == 768
    both = udp.merged(udp)
    assert (both.packets_sent, both.ip_bytes_received, both.connections) == (8, 512, 2)
    mixed = tcp.merged(udp)
    assert mixed.total_bytes == 1200 and mixed.ip_bytes_sent == 512 and mixed.bytes_text() == "500 B / 700 B"

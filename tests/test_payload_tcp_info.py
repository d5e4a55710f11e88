"""Traffic counters: the payload's tcp_info through sock_diag, the snapshot's `tcp_info` section and
the flows' `traffic`, on real loopback connections that moved known numbers of bytes.

`ss -tin` (iproute2) reads the same kernel struct and is the independent oracle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from netviz.errors import SnapshotError
from netviz.payload import capture
from netviz.snapshot import dump_snapshot, parse_snapshot
from netviz.stitch import stitch

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")

SENT, RECEIVED = 250_000, 12_345


def _exchange(listener: socket.socket, to_server: int, to_client: int) -> tuple[socket.socket, socket.socket]:
    """A connection to `listener` that moved `to_server` bytes one way and `to_client` back."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    for sender, receiver, size in ((client, server, to_server), (server, client, to_client)):
        sender.sendall(b"x" * size)
        got = 0
        while got < size:
            got += len(receiver.recv(1 << 20))
    return client, server


@pytest.fixture()
def loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    pairs = [_exchange(listener, SENT, RECEIVED), _exchange(listener, 3 * SENT, 0)]
    yield listener, pairs
    for client, server in pairs:
        client.close()
        server.close()
    listener.close()


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def _ss_counters(sock: socket.socket) -> dict[str, int]:
    """bytes_acked, bytes_received, rtt (µs) and total retransmits of the connected socket, as
    `ss -tin` prints them (filtered by both ends: other sockets may share its local port)."""
    local, remote = sock.getsockname()[1], sock.getpeername()[1]
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{local} and dport = :{remote} )"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("\n\t") == 1, out  # exactly one socket
    found: dict[str, int] = {}
    for name in ("bytes_acked", "bytes_received"):
        match = re.search(rf"\b{name}:(\d+)", out)
        found[name] = int(match.group(1)) if match else 0  # ss leaves a zero counter out
    rtt = re.search(r"\brtt:([\d.]+)/([\d.]+)", out)
    assert rtt, out
    found["rtt"] = round(float(rtt.group(1)) * 1000)
    retrans = re.search(r"\bretrans:\d+/(\d+)", out)
    found["total_retrans"] = int(retrans.group(1)) if retrans else 0
    return found


def test_netlink_counters_are_the_bytes_each_end_moved(loopback):
    listener, ((client, server), (client2, server2)) = loopback
    counters: dict[int, tuple] = {}
    capture.netlink_inet_sockets(socket.AF_INET, socket.IPPROTO_TCP, "tcp", counters=counters)
    sent, received, rtt, _rttvar, retrans, ca_state = counters[_inode(client)]
    assert sent in (SENT, SENT + 1)  # the kernel may count the SYN as one byte acknowledged
    assert received == RECEIVED
    assert 0 < rtt < 1_000_000 and retrans == 0 and ca_state == 0
    assert counters[_inode(server)][:2] == (RECEIVED, SENT)
    assert counters[_inode(client2)][0] in (3 * SENT, 3 * SENT + 1)
    assert counters[_inode(server2)][1] == 3 * SENT
    assert _inode(listener) not in counters  # a listener moves nothing


@needs_ss
def test_counters_agree_with_ss(loopback):
    _listener, ((client, _server), _) = loopback
    counters: dict[int, tuple] = {}
    capture.netlink_inet_sockets(socket.AF_INET, socket.IPPROTO_TCP, "tcp", counters=counters)
    expected = _ss_counters(client)
    sent, received, rtt, _rttvar, retrans, _ = counters[_inode(client)]
    assert {"bytes_acked": sent, "bytes_received": received, "rtt": rtt, "total_retrans": retrans} == expected


def test_udp_and_plain_dumps_carry_no_counters(loopback):
    counters: dict[int, tuple] = {}
    records, _ = capture.netlink_inet_sockets(socket.AF_INET, socket.IPPROTO_UDP, "udp", counters=counters)
    assert counters == {}
    records, _ = capture.netlink_inet_sockets(socket.AF_INET, socket.IPPROTO_TCP, "tcp")
    assert records  # the dump without INET_DIAG_INFO still lists the sockets


def test_tcp_info_struct_by_length():
    """The fields are read only where the kernel's struct has them."""
    full = bytearray(232)
    full[1] = 4  # ca_state: loss
    struct.pack_into("=II", full, 68, 1500, 250)
    struct.pack_into("=I", full, 100, 7)
    struct.pack_into("=QQ", full, 120, 1 << 40, 99)
    assert capture.tcp_info_counters(full, 0, 232) == (1 << 40, 99, 1500, 250, 7, 4)
    assert capture.tcp_info_counters(full, 0, 136) == (1 << 40, 99, 1500, 250, 7, 4)
    assert capture.tcp_info_counters(full, 0, 104) == (None, None, 1500, 250, 7, 4)  # before Linux 4.1
    assert capture.tcp_info_counters(full, 0, 103) is None


def _own_namespace(doc: dict) -> dict:
    own = os.stat("/proc/self/ns/net").st_ino
    return next(ns for ns in doc["namespaces"] if ns["inode"] == own)


def test_snapshot_section_round_trips_through_the_loader(loopback):
    listener, ((client, server), _) = loopback
    doc = json.loads(capture.dumps_document(capture.collect(compact=True)))
    section = _own_namespace(doc)["tcp_info"]
    assert section["version"] == 1 and section["columns"][:2] == ["bytes_acked", "bytes_received"]
    assert section["sockets"][str(_inode(server))][:2] == [RECEIVED, SENT]
    snapshot = parse_snapshot(doc, "live")
    namespace = next(ns for ns in snapshot.namespaces if ns.tcp_info)
    assert namespace.tcp_info[_inode(server)].bytes_received == SENT
    assert _inode(listener) not in namespace.tcp_info
    assert parse_snapshot(json.loads(dump_snapshot(snapshot)), "again").namespaces == snapshot.namespaces


def test_loader_checks_the_section():
    doc = json.loads(capture.dumps_document(capture.collect(compact=True)))
    section = _own_namespace(doc)["tcp_info"]
    section["sockets"]["12"] = [1, 2, 3, 4, 5, 0, "a later column"]  # extra columns are ignored
    assert parse_snapshot(doc, "x")
    section["sockets"]["12"] = [1, 2, -3, 4, 5, 0]
    with pytest.raises(SnapshotError, match=r"tcp_info\.sockets\.12\[2\]: -3 is out of range"):
        parse_snapshot(doc, "x")
    section["sockets"]["12"] = [1, 2, 3]
    with pytest.raises(SnapshotError, match="at least 6 values"):
        parse_snapshot(doc, "x")
    section["sockets"] = {"0x1": [1, 2, 3, 4, 5, 0]}
    with pytest.raises(SnapshotError, match="not a socket inode"):
        parse_snapshot(doc, "x")
    del _own_namespace(doc)["tcp_info"]  # a snapshot from a payload without counters
    assert all(ns.tcp_info is None for ns in parse_snapshot(doc, "x").namespaces
               if ns.inode == os.stat("/proc/self/ns/net").st_ino)


def test_flow_sums_its_connections(loopback):
    listener, _ = loopback
    snapshot = parse_snapshot(json.loads(capture.dumps_document(capture.collect(compact=True))), "m")
    graph = stitch([snapshot]).to_json_dict()
    port = listener.getsockname()[1]
    (flow,) = [flow for flow in graph["flows"] if flow["server_port"] == port]
    traffic = flow["traffic"]
    assert traffic["connections"] == flow["count"] == 2
    assert 4 * SENT <= traffic["bytes_sent"] <= 4 * SENT + 2
    assert traffic["bytes_received"] == RECEIVED
    assert 0 < traffic["rtt_median_ms"] <= traffic["rtt_max_ms"] < 1000
    assert traffic["retransmits"] == 0


def test_flows_without_counters_have_no_traffic_key(loopback):
    listener, _ = loopback
    doc = json.loads(capture.dumps_document(capture.collect(compact=True)))
    for namespace in doc["namespaces"]:
        namespace.pop("tcp_info", None)
    graph = stitch([parse_snapshot(doc, "m")]).to_json_dict()
    assert graph["flows"] and all("traffic" not in flow for flow in graph["flows"])


def test_table_sorts_by_bytes_on_request(tmp_path):
    """`--sort bytes`: the flow that moved the most comes first, whatever its connection count;
    the table shows the bytes, RTT and retransmit columns."""
    busy, chatty = socket.socket(), socket.socket()
    for listener in (busy, chatty):
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
    held = [_exchange(busy, 2_000_000, 0)] + [_exchange(chatty, 10, 10) for _ in range(3)]
    try:
        path = tmp_path / "snapshot.json"
        path.write_text(capture.dumps_document(capture.collect(compact=True)))
        ports = [f"tcp/{listener.getsockname()[1]}" for listener in (busy, chatty)]

        def table(*sort: str) -> list[str]:
            command = [sys.executable, "-m", "netviz", "stitch", str(path), "-f", "table",
                       "--only", ports[0], "--only", ports[1], *sort]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                    cwd=Path(__file__).resolve().parent.parent)
            assert result.returncode == 0, result.stderr
            return result.stdout.splitlines()

        by_count, by_bytes = table(), table("--sort", "bytes")
        header = next(line for line in by_count if "client" in line)
        assert all(column in header for column in ("bytes", "rtt ms", "retrans")), header

        def rows(lines: list[str]) -> list[str]:
            return [line for line in lines if any(f"{port} " in line for port in ports)]

        assert ports[1] in rows(by_count)[0] and ports[0] in rows(by_count)[1], by_count  # 3 connections first
        assert ports[0] in rows(by_bytes)[0] and "2.0 MB / 0 B" in rows(by_bytes)[0], by_bytes
    finally:
        for pair in held:
            for sock in pair:
                sock.close()
        busy.close()
        chatty.close()


def test_streamed_section_is_the_json_of_the_plain_one():
    """write_json formats the compact rows itself: the same JSON as the plain dict, nulls (a kernel
    before 4.1) included, sorted by inode."""
    counters = {30: (5, 6, 7, 8, 9, 1), 4: (None, None, 7, 8, 0, 0)}
    compact = capture.dumps_document({"namespaces": [{"tcp_info": capture.tcp_info_document(counters, True)}]})
    plain = capture.tcp_info_document(counters, False)
    assert json.loads(compact)["namespaces"][0]["tcp_info"] == plain
    assert list(plain["sockets"]) == ["4", "30"] and compact.index('"4"') < compact.index('"30"')


def test_csv_carries_the_counters(loopback):
    """CSV read back by the stdlib reader: the traffic columns hold the flow's numbers."""
    import csv
    import io

    from netviz.render.csv import render_rows

    listener, _ = loopback
    snapshot = parse_snapshot(json.loads(capture.dumps_document(capture.collect(compact=True))), "m")
    rows = list(csv.DictReader(io.StringIO(render_rows(stitch([snapshot])))))
    (row,) = [row for row in rows if row["server_port"] == str(listener.getsockname()[1])]
    assert 4 * SENT <= int(row["bytes_sent"]) <= 4 * SENT + 2 and int(row["bytes_received"]) == RECEIVED
    assert float(row["rtt_max_ms"]) >= float(row["rtt_median_ms"]) > 0 and row["retransmits"] == "0"
    assert all(row["bytes_sent"] == "" for row in rows if row["proto"] == "udp")

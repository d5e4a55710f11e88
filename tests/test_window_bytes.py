"""Bytes and their rate over a time window (issue 14, "How much flows"): the payload's ByteCounts
rules on counters it is given, the loader's optional keys, and the whole chain on real traffic
in a network namespace, against what the sender wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from netviz.errors import SnapshotError
from netviz.payload import capture
from netviz.snapshot import parse_snapshot, snapshot_to_document
from netviz.stitch import stitch
from tests.test_payload_window import _window_document, _with_window

PAYLOAD = Path(capture.__file__)
KEY = (1, "tcp", "client", "10.0.0.1", None, "10.0.0.2", 5432)
ENDS = ("tcp", "10.0.0.1", 40000, "10.0.0.2", 5432)


def tally() -> tuple[capture.Observations, capture.ByteCounts]:
    observations = capture.Observations()
    observations.add(KEY, 100.0, "sample")
    counts = capture.ByteCounts(observations)
    counts.key_of_inode[7] = (KEY, ENDS)
    return observations, counts


def moved(observations: capture.Observations) -> dict:
    document = observations.flows_document(3)[0]
    return {name: document.get(name) for name in ("bytes_sent", "bytes_received", "bytes_from", "bytes_to")}


def counters(sent: int, received: int) -> tuple:
    return (sent, received, 200, 50, 0, 0)  # as tcp_info_counters gives them


def test_a_connection_alive_at_the_first_sample_counts_only_what_moved_after_it() -> None:
    observations, counts = tally()
    counts.sample({7: counters(5_000, 100)}, 100.0, None)
    counts.sample({7: counters(8_000, 150)}, 101.0, 100.0)
    counts.finish(102.0)
    assert moved(observations) == {"bytes_sent": 3_000, "bytes_received": 50, "bytes_from": 100.0, "bytes_to": 102.0}


def test_a_connection_born_in_the_window_counts_from_zero_and_starts_when_its_rate_says() -> None:
    observations, counts = tally()
    counts.sample({}, 100.0, None)
    # the kernel counts the SYN as one byte acknowledged: 1,001 is 1,000 bytes of data
    counts.sample({7: counters(1_001, 0)}, 101.0, 100.0)  # 1,000 bytes by its first sample
    counts.sample({7: counters(5_001, 0)}, 103.0, 101.0)  # then 2,000 bytes a second
    counts.sample({}, 104.0, 103.0)  # gone, no destroy event: its bytes and its span end at 103
    # started 0.5 s before its first sample, at the rate it kept
    assert moved(observations) == {"bytes_sent": 5_000, "bytes_received": 0, "bytes_from": 100.5, "bytes_to": 103.0}


def test_a_connection_seen_once_starts_halfway_between_samples() -> None:
    observations, counts = tally()
    counts.sample({}, 100.0, None)
    counts.sample({7: counters(4_001, 10)}, 101.0, 100.0)
    counts.finish(101.0)
    assert moved(observations) == {"bytes_sent": 4_000, "bytes_received": 10, "bytes_from": 100.5, "bytes_to": 101.0}


def test_a_destroy_event_gives_the_last_bytes_and_the_end() -> None:
    observations, counts = tally()
    counts.sample({7: counters(1_000, 0)}, 100.0, None)
    counts.destroyed(ENDS, counters(6_001, 2), 100.4)  # before the next sample
    counts.sample({}, 101.0, 100.0)
    assert moved(observations) == {"bytes_sent": 5_000, "bytes_received": 1, "bytes_from": 100.0, "bytes_to": 100.4}
    # and after the sample that missed it: the bytes since that sample are added
    observations, counts = tally()
    counts.sample({7: counters(1_000, 0)}, 100.0, None)
    counts.sample({}, 101.0, 100.0)
    counts.destroyed(ENDS, counters(2_501, 1), 101.2)
    assert moved(observations) == {"bytes_sent": 1_500, "bytes_received": 0, "bytes_from": 100.0, "bytes_to": 101.2}


def test_a_connection_born_and_gone_between_two_samples_counts_by_its_destroy_event() -> None:
    observations, counts = tally()
    counts.sample({}, 100.0, None)
    counts.destroyed(ENDS, counters(3_002, 21), 101.0, KEY)  # its SYN and both FINs
    counts.destroyed(ENDS, counters(3_002, 21), 101.1, KEY)  # the same event again counts once
    counts.sample({}, 102.0, 100.0)
    counts.finish(102.0)
    # all it moved but its SYN and FINs, from halfway between the sample before and its end
    assert moved(observations) == {"bytes_sent": 3_000, "bytes_received": 20, "bytes_from": 100.5, "bytes_to": 101.0}


def test_a_destroy_event_of_a_connection_a_sample_had_is_not_counted_again() -> None:
    # alive before the window: in the first sample (here as an orphan, which has no inode and
    # no counters) and destroyed long after: what it moved before the window is not the window's
    observations, counts = tally()
    counts.remember(ENDS)
    counts.sample({}, 100.0, None)
    for second in (101.0, 102.0, 103.0):
        counts.sample({}, second, second - 1)
    counts.destroyed(ENDS, counters(90_000, 10), 103.5, KEY)
    assert moved(observations)["bytes_sent"] is None
    # counted while alive, folded, and destroyed three samples later: counted once
    observations, counts = tally()
    counts.sample({}, 100.0, None)
    counts.sample({7: counters(2_001, 0)}, 101.0, 100.0)
    for second in (102.0, 103.0, 104.0):
        counts.sample({}, second, second - 1)
    counts.destroyed(ENDS, counters(2_002, 1), 104.5, KEY)
    assert moved(observations)["bytes_sent"] == 2_000
    # and nothing before the first sample: the window has not begun
    observations, counts = tally()
    counts.destroyed(ENDS, counters(5_000, 0), 99.0, KEY)
    counts.sample({}, 100.0, None)
    assert moved(observations)["bytes_sent"] is None


def test_without_counters_a_flow_has_no_byte_keys() -> None:
    observations, counts = tally()
    counts.sample({7: (None, None, 200, 50, 0, 0)}, 100.0, None)  # a kernel before 4.1
    counts.finish(101.0)
    assert "bytes_sent" not in observations.flows_document(1)[0]


def test_the_loader_keeps_the_bytes_and_refuses_a_reversed_span() -> None:
    window = _window_document()
    window["flows"][0].update(bytes_sent=10, bytes_received=5_000, bytes_from=101.0, bytes_to=102.0)
    snapshot = parse_snapshot(_with_window(window), "w")
    assert snapshot.window.flows[0].moved.received == 5_000
    assert parse_snapshot(snapshot_to_document(snapshot), "again").window == snapshot.window
    window["flows"][0]["bytes_to"] = 100.0
    with pytest.raises(SnapshotError, match="earlier than bytes_from"):
        parse_snapshot(_with_window(window), "w")


SENDER = textwrap.dedent("""
    import socket, sys, threading, time
    rate, seconds, begin, report = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    def serve(port):
        server = socket.socket(); server.bind(("127.0.0.1", port)); server.listen()
        def drain():
            while True:
                connection = server.accept()[0]
                while connection.recv(1 << 16):
                    pass
                connection.close()
        threading.Thread(target=drain, daemon=True).start()
    serve(7301); serve(7302)
    time.sleep(max(0.0, begin - time.time()))  # the window's first sample is over by then
    client = socket.create_connection(("127.0.0.1", 7301))
    chunk, sent, started = b"x" * 10000, 0, time.time()
    while time.time() - started < seconds:
        while sent < rate * (time.time() - started):
            client.sendall(chunk)
            sent += len(chunk)
        time.sleep(0.005)
    client.close()
    elapsed = time.time() - started
    burst = socket.create_connection(("127.0.0.1", 7302))  # born and gone within milliseconds
    burst.sendall(b"y" * 500000)
    burst.close()
    with open(report, "w") as handle:
        handle.write("%d %f" % (sent, elapsed))
    time.sleep(30)
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace and a pid namespace)")
def test_a_known_rate_over_a_window_in_a_namespace(tmp_path: Path) -> None:
    """A sender at 2 MB/s for 3 s inside a 10 s window: the flow's bytes within 5% of what was
    written, its rate within 10% of the rate it was written at, in the graph's JSON; then a burst
    of 500,000 bytes on a connection that lives for milliseconds, which no sample is likely to
    see: its bytes come from its destroy event. The payload and the sender share a pid namespace
    of their own, so the window's samples cost what two processes cost, whatever else runs on
    the machine; the sender connects 4.5 s after the window's set start (--start-at), after its
    first sample: a connection alive then counts only what moves after it."""
    name = "nvbytes" + uuid.uuid4().hex[:8]
    report = tmp_path / "sent"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        start = time.time() + 1.5
        # the payload is the pid namespace's first process: when it ends, the sender ends with it
        script = f'"$1" -c "$2" 2000000 3 {start + 4.5:.3f} "$3" & exec "$1" "$4" --window 10 --start-at {start:.3f}'
        payload = subprocess.run(["ip", "netns", "exec", name, "unshare", "--pid", "--fork", "--mount-proc",
                                  "sh", "-c", script, "sh", sys.executable, SENDER, str(report), str(PAYLOAD)],
                                 stdout=subprocess.PIPE, timeout=60, check=True)
        document = json.loads(payload.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    written, seconds = report.read_text().split()
    snapshot = parse_snapshot(document, "box")
    graph = stitch([snapshot])
    flows = [flow for flow in graph.flows if flow.server_port == 7301]
    assert len(flows) == 1, graph.flows
    window = flows[0].window
    assert window is not None and window.bytes_sent is not None
    assert snapshot.window.started_at < start + 4.5  # the sender connected inside the window
    assert abs(window.bytes_sent - int(written)) <= 0.05 * int(written), (window.bytes_sent, written)
    rate = int(written) / float(seconds)
    assert abs(window.bytes_per_second - rate) <= 0.10 * rate, (window.bytes_per_second, rate)
    exported = flows[0].to_json()
    assert exported["window_bytes_sent"] == window.bytes_sent and exported["bytes_per_second"] == window.bytes_per_second
    assert "MB/s" in (window.bytes_rate_text() or "")
    bursts = [flow for flow in graph.flows if flow.server_port == 7302]
    assert len(bursts) == 1 and bursts[0].window.bytes_sent == 500_000, bursts

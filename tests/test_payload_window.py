"""The payload's observation over a time window (--window), on real processes and real sockets.

In a network namespace of its own (loopback only, conntrack switched on by an nftables rule), a
server, a client making ~50 TCP connect/close per second and a UDP client that sends one datagram
every 0.2 s from a new process each time run during a 5 s window; `conntrack -E`, run in the same
namespace during the same window, is the independent oracle for the number of connections.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from netviz.duration import parse_duration
from netviz.errors import SnapshotError
from netviz.snapshot.framing import decode_framed
from netviz.payload import capture
from netviz.snapshot import parse_snapshot, snapshot_to_document

PAYLOAD = Path(capture.__file__)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("ip", "nft", "conntrack", "stdbuf")),
                                 reason="needs ip, nft, conntrack and stdbuf")
INSTANT_KEYS = ["schema", "payload_version", "host", "coverage", "namespaces", "processes"]
# written only when the machine has them (a container runtime's names, an /etc/hosts with names)
OPTIONAL_INSTANT_KEYS = {"runtime", "hosts_file"}

LOAD = r"""
import os, socket, sys, threading, time
role = sys.argv[1]
if role == "server":
    tcp = socket.socket(); tcp.bind(("127.0.0.1", 7001)); tcp.listen(512)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 7002))
    def accept():
        while True:
            tcp.accept()[0].close()
    def receive():
        while True:
            udp.recvfrom(100)
    threading.Thread(target=accept, daemon=True).start()
    threading.Thread(target=receive, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
elif role == "tcp-client":
    end, count = time.time() + float(sys.argv[2]), 0
    while time.time() < end:
        socket.create_connection(("127.0.0.1", 7001)).close()
        count += 1
        time.sleep(0.02)
    print(count)
else:
    end, count = time.time() + float(sys.argv[2]), 0
    while time.time() < end:
        # a new process per query (forked: a Python start per query is too slow on a busy machine)
        child = os.fork()
        if child == 0:
            # a source port of its own: a random one may repeat an earlier query's within the
            # 30 s conntrack keeps a UDP entry, and a repeated tuple is no NEW event for the oracle
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 40000 + count))
            s.connect(("127.0.0.1", 7002)); s.send(b"q")
            os._exit(0)
        os.waitpid(child, 0)
        count += 1
        time.sleep(0.2)
    print(count)
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    """A network namespace with loopback up and conntrack on (an nftables rule needs it)."""
    name = "nvwin" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inside = ["ip", "netns", "exec", name]
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(inside + ["nft", "add", "table", "inet", "nvwin"], check=True)
        subprocess.run(inside + ["nft", "add", "chain", "inet", "nvwin", "out",
                                 "{ type filter hook output priority 0; }"], check=True)
        subprocess.run(inside + ["nft", "add", "rule", "inet", "nvwin", "out", "ct", "state", "new", "counter"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _oracle_counts(events: str) -> dict[tuple[str, int], int]:
    """NEW events per (protocol, destination port) in `conntrack -E` output."""
    counts: dict[tuple[str, int], int] = {}
    for line in events.splitlines():
        fields = line.split()
        if "[NEW]" not in fields:
            continue
        proto = fields[fields.index("[NEW]") + 1]
        dport = int(next(f for f in fields if f.startswith("dport=")).split("=")[1])
        counts[(proto, dport)] = counts.get((proto, dport), 0) + 1
    return counts


def _flow(window, netns: int, proto: str, role: str, port: int):
    """The one flow key of the test's namespace (the payload samples every namespace of the
    machine, and other programs there may use the same ports)."""
    found = [f for f in window.flows if f.netns == netns and f.proto == proto and f.role == role
             and (f.local_port if role == "server" else f.remote_port) == port]
    assert len(found) == 1, (proto, role, port, window.flows)
    return found[0]


@needs_root
@needs_tools
def test_window_sees_short_connections_that_an_instant_misses(namespace: str) -> None:
    inside = ["ip", "netns", "exec", namespace]
    started: list[subprocess.Popen] = []

    def start(args: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(inside + args, **kwargs)
        started.append(process)
        return process

    try:
        server = start([sys.executable, "-c", LOAD, "server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        server_comm = Path(f"/proc/{server.pid}/comm").read_text().strip()
        oracle = start(["stdbuf", "-oL", "conntrack", "-E", "-e", "NEW", "--buffer-size", "8388608"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.3)  # the oracle subscribed before the window starts
        observer = start([sys.executable, "-", "--window", "5"], stdin=open(PAYLOAD, "rb"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)  # the payload started its window (a Python start and a first sample)
        tcp = start([sys.executable, "-c", LOAD, "tcp-client", "3.5"], stdout=subprocess.PIPE, text=True)
        udp = start([sys.executable, "-c", LOAD, "udp-clients", "3.5"], stdout=subprocess.PIPE, text=True)
        tcp_sent, udp_sent = int(tcp.communicate(timeout=30)[0]), int(udp.communicate(timeout=30)[0])
        out, err = observer.communicate(timeout=30)
        assert observer.returncode == 0, err.decode()
        time.sleep(0.3)
        oracle.send_signal(signal.SIGINT)
        events = oracle.communicate(timeout=10)[0]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()

    snapshot = parse_snapshot(json.loads(out), "window")
    window = snapshot.window
    # At least the window's first and last samples. How many fit between them depends on what a
    # sample costs on this machine (the payload keeps to its CPU share: on a busy host with many
    # processes a sample is expensive and only the two are taken); the event streams counted below
    # are what must see every short connection either way.
    assert window is not None and window.samples >= 2
    seen = _oracle_counts(events)
    assert tcp_sent >= 100 and udp_sent >= 10
    assert seen[("tcp", 7001)] == tcp_sent and seen[("udp", 7002)] == udp_sent  # the oracle is whole

    netns = os.stat(f"/run/netns/{namespace}").st_ino
    client = _flow(window, netns, "tcp", "client", 7001)
    served = _flow(window, netns, "tcp", "server", 7001)
    datagrams = _flow(window, netns, "udp", "client", 7002)
    for flow, truth in ((client, tcp_sent), (served, tcp_sent), (datagrams, udp_sent)):
        assert abs(flow.connections - truth) <= max(2, truth // 20), (flow, truth)
        assert window.started_at <= flow.first_seen <= flow.last_seen <= window.ended_at
        assert not flow.persistent
    # Every connection was seen by the event streams; TIME_WAIT rows caught some between samples.
    assert client.evidence["conntrack"] == tcp_sent
    assert served.evidence["destroy"] == tcp_sent
    assert served.evidence.get("time_wait", 0) + client.evidence.get("time_wait", 0) > 0
    # The server process is named: it holds the listening socket of the port.
    assert [(h.pid, h.comm, h.via) for h in served.holders] == [(server.pid, server_comm, "listener")]
    # The sources say what they gave.
    sources = {s.name: s for s in window.sources}
    assert sources["sock_destroy"].state == "used" and sources["sock_destroy"].events >= 2 * tcp_sent
    assert sources["conntrack"].state == "used" and sources["conntrack"].events >= tcp_sent
    # The snapshot's instant part is still there, as the window's last sample.
    assert snapshot.processes and any(p.pid == server.pid for p in snapshot.processes)
    assert parse_snapshot(snapshot_to_document(snapshot), "again").window == window


@needs_root
@pytest.mark.skipif(not Path("/proc/sys/net/netfilter/nf_conntrack_max").exists(),
                    reason="needs nf_conntrack loaded (the state is about a kernel that has it)")
def test_a_namespace_conntrack_does_not_track_says_untracked_not_used() -> None:
    """nf_conntrack is loaded but no rule in this namespace needs it: the event socket opens, and
    loopback connections made during the window leave no event and no table entry. The source
    says `untracked` with the reason, not `used` with 0 events (which reads as 'no traffic')."""
    name = "nvunt" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inside = ["ip", "netns", "exec", name]
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        server = subprocess.Popen(inside + [sys.executable, "-c", LOAD, "server"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        try:
            assert server.stdout is not None and server.stdout.readline() == b"ready\n"
            observer = subprocess.Popen(inside + [sys.executable, "-", "--window", "2"], stdin=open(PAYLOAD, "rb"),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.5)
            made = subprocess.run(inside + [sys.executable, "-c", LOAD, "tcp-client", "1"], capture_output=True,
                                  text=True, timeout=30)
            out, err = observer.communicate(timeout=30)
        finally:
            server.kill()
            server.wait()
        assert observer.returncode == 0, err.decode()
        assert int(made.stdout) >= 10
        window = parse_snapshot(json.loads(out), "untracked").window
        sources = {s.name: s for s in window.sources}
        conntrack = sources["conntrack"]
        assert (conntrack.state, conntrack.events) == ("untracked", 0), conntrack
        assert conntrack.reason == capture.UNTRACKED_REASON
        assert sources["sock_destroy"].state == "used" and sources["sock_destroy"].events > 0  # not a quiet window
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_instant_capture_is_unchanged() -> None:
    result = subprocess.run([sys.executable, str(PAYLOAD)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    assert [key for key in document if key not in OPTIONAL_INSTANT_KEYS] == INSTANT_KEYS  # no window section
    assert parse_snapshot(document, "instant").window is None


def test_sigterm_ends_a_window_at_once() -> None:
    process = subprocess.Popen([sys.executable, "-", "--window", "30", "--framed"], stdin=open(PAYLOAD, "rb"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert process.poll() is None
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=5)
    assert time.monotonic() - sent < 1.0
    assert process.returncode == -signal.SIGTERM and out == b"" and err == b""


def test_start_at_far_ahead_is_refused_and_past_starts_now() -> None:
    refused = subprocess.run([sys.executable, str(PAYLOAD), "--window", "1", "--start-at", str(time.time() + 120)],
                             capture_output=True, timeout=30)
    assert refused.returncode == 2 and b"ahead" in refused.stderr
    begun = time.time()
    past = subprocess.run([sys.executable, str(PAYLOAD), "--window", "0.5", "--start-at", str(begun - 100)],
                          capture_output=True, timeout=60)
    window = json.loads(past.stdout)["window"]
    assert window["start_at"] == pytest.approx(begun - 100) and window["started_at"] - begun < 5


def test_start_at_waits_for_the_common_start() -> None:
    start_at = time.time() + 2
    done = subprocess.run([sys.executable, str(PAYLOAD), "--window", "0.5", "--start-at", str(start_at)],
                          capture_output=True, timeout=60)
    window = json.loads(done.stdout)["window"]
    # started_at is written to the millisecond: a start less than 0.5 ms after start_at may round below it
    assert start_at - 0.0005 <= window["started_at"] < start_at + 0.5


def test_window_runs_on_python_3_6() -> None:
    from tests.test_payload_compat import _interpreters

    interpreter = _interpreters().get("3.6")
    if interpreter is None:
        pytest.skip("no Python 3.6 installed")
    result = subprocess.run([interpreter, "-", "--framed", "--window", "1"], stdin=open(PAYLOAD, "rb"),
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    snapshot = parse_snapshot(json.loads(decode_framed(result.stdout)), "python 3.6")
    assert snapshot.host.python.startswith("3.6.") and snapshot.window is not None
    assert snapshot.window.samples >= 2


def test_flow_keys_are_capped_and_overflow_counted() -> None:
    observations = capture.Observations(max_keys=2)
    for port in range(5):
        observations.add((1, "tcp", "client", "127.0.0.1", None, "127.0.0.1", 1000 + port), 1.0, "destroy")
    observations.add((1, "tcp", "client", "127.0.0.1", None, "127.0.0.1", 1000), 2.0, "destroy")
    assert len(observations.flows) == 2 and observations.overflow == 3
    assert observations.flows_document(0)[0]["connections"] == 2


def test_cpu_share_follows_the_socket_count() -> None:
    assert capture.cpu_share(10) == 0.05 and capture.cpu_share(1000) == 0.05
    assert capture.cpu_share(50000) == 0.20 and 0.05 < capture.cpu_share(7000) < 0.20


def _window_document() -> dict:
    return {
        "version": 1, "requested": 5.0, "start_at": None, "started_at": 100.0, "ended_at": 105.0,
        "interval": 0.4, "samples": 12, "first_sample_cpu": 0.01, "cpu_seconds": 0.2, "cpu_share": 0.05,
        "sources": {"sock_destroy": {"state": "used", "events": 3, "lost": 0},
                    "proc_connector": {"state": "missing", "events": 0, "lost": 0, "reason": "no"}},
        "max_flows": 20000, "flows_overflow": 0,
        "flows": [{"netns": 1, "proto": "tcp", "role": "server", "local": "127.0.0.1", "local_port": 80,
                   "remote": "::ffff:127.0.0.1", "remote_port": None, "first_seen": 101.0, "last_seen": 102.0,
                   "connections": 3, "evidence": {"destroy": 3}, "samples": 0, "persistent": False,
                   "holders": [{"pid": 4, "comm": "nginx", "via": "listener"}], "uids": [0]}],
        "max_processes": 4096, "processes_overflow": 0,
        "processes": [{"netns": 1, "uid": 0, "comm": "dig", "cmdline": ["dig"], "execs": 2,
                       "first_seen": 101.0, "last_seen": 103.0, "pids": [7, 9]}],
    }


def _with_window(window: dict) -> dict:
    document = json.loads((Path(__file__).parent / "fixtures" / "snapshots" / "m1.json").read_text()) \
        if (Path(__file__).parent / "fixtures" / "snapshots" / "m1.json").exists() else None
    if document is None:
        document = capture.collect(compact=False)
    document["window"] = window
    return document


def test_loader_reads_a_window_and_writes_it_back() -> None:
    snapshot = parse_snapshot(_with_window(_window_document()), "w")
    assert snapshot.window is not None
    flow = snapshot.window.flows[0]
    assert flow.remote == "::ffff:127.0.0.1" and flow.holders[0].comm == "nginx"
    assert parse_snapshot(snapshot_to_document(snapshot), "again").window == snapshot.window


@pytest.mark.parametrize("path, value, message", [
    (("version",), 2, "unsupported window version"),
    (("flows", 0, "role"), "client", "a client flow has only a remote port"),
    (("flows", 0, "evidence"), {"guess": 1}, "unknown evidence kind"),
    (("flows", 0, "last_seen"), 50.0, "earlier than first_seen"),
    (("flows", 0, "local"), "not-an-address", "not an IP address"),
    (("flows", 0, "holders"), [{"pid": 4, "comm": "x", "via": "hunch"}] , "expected one of"),
    (("flows", 0, "uids"), list(range(65)), "too many entries"),
    (("sources",), {"ebpf": {"state": "used", "events": 0, "lost": 0}}, "unknown event source"),
    (("requested",), 7200.0, "out of range"),
    (("processes", 0, "execs"), 0, "out of range"),
])
def test_loader_refuses_a_damaged_window(path: tuple, value: object, message: str) -> None:
    window = _window_document()
    target = window
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(SnapshotError, match=message):
        parse_snapshot(_with_window(window), "w")


@pytest.mark.parametrize("text, seconds", [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("1.5m", 90.0),
                                           ("0", 0.0), (" 10s ", 10.0), ("1h", 3600.0)])
def test_duration_parser(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-1", "2x", "1e3", "2h", "nan", "inf"])
def test_duration_parser_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)

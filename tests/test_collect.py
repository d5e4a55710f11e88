"""The fan-out: one result per machine, bounded parallelism, a hard deadline per machine, and
the no-SSH local collection. Servers here are real local sockets that misbehave."""

from __future__ import annotations

import itertools
import socket
import threading
import time

import pytest

from netviz.collect import FAILED, OK, collect, collect_local, validate_output
from netviz.snapshot.framing import encode_framed
from netviz.inventory import HostSpec
from netviz.transport import BAD_OUTPUT, DNS, REFUSED, TIMEOUT, UNREACHABLE, HostFailure, TransportOptions


class SilentServer:
    """Accepts TCP connections and never says a word (no SSH banner); counts them."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = 0
        self.peak = 0
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            while conn.recv(4096):  # until the client gives up and closes
                pass
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        self.stopping = True
        self.listener.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def test_every_machine_gets_a_result_in_inventory_order(silent):
    hosts = [
        HostSpec(name="silent", address="127.0.0.1", port=silent.port, connect_timeout=0.5),
        HostSpec(name="closed", address="127.0.0.1", port=closed_port(), connect_timeout=0.5),
        HostSpec(name="nowhere", address="no-such-host.invalid", connect_timeout=3),
    ]
    seen = []
    results = collect(hosts, TransportOptions(), parallel=4, payload=b"", on_result=lambda r: seen.append(r.name))
    assert [r.name for r in results] == ["silent", "closed", "nowhere"]
    assert [(r.status, r.kind) for r in results] == [(FAILED, UNREACHABLE), (FAILED, REFUSED), (FAILED, DNS)]
    assert sorted(seen) == ["closed", "nowhere", "silent"]
    assert "no SSH banner" in results[0].message


def test_parallelism_is_bounded(silent):
    hosts = [HostSpec(name=f"h{i}", address="127.0.0.1", port=silent.port, connect_timeout=0.4) for i in range(8)]
    workers = []

    def count_workers(result) -> None:
        workers.append(sum(1 for t in threading.enumerate() if t.name.startswith("netviz-collect")))

    started = time.monotonic()
    results = collect(hosts, TransportOptions(), parallel=3, payload=b"", on_result=count_workers)
    elapsed = time.monotonic() - started
    assert all(r.kind == UNREACHABLE for r in results)
    assert silent.accepted == 8
    assert max(workers) <= 3
    # Each machine holds its slot 0.4 s (the banner timeout): 8 machines, 3 at a time, 3 rounds.
    assert elapsed >= 3 * 0.4 * 0.9


def test_a_machine_past_its_deadline_is_given_up_and_its_socket_closed(silent):
    # The clock is faked (each reading jumps 100 s) so the deadline passes at once; the machine
    # itself would have waited 60 s for a banner.
    ticks = itertools.count(step=100)
    spec = HostSpec(name="stuck", address="127.0.0.1", port=silent.port, connect_timeout=60)
    started = time.monotonic()
    results = collect([spec], TransportOptions(), parallel=1, payload=b"", clock=lambda: float(next(ticks)))
    assert results[0].status == FAILED and results[0].kind == TIMEOUT
    assert "gave up after" in results[0].message
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while silent.open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert silent.open == 0  # the watchdog closed the connection, the worker did not linger


def test_local_collection_runs_the_real_payload():
    result = collect_local("here", timeout=120)
    assert result.status == OK, result.message
    assert result.snapshot is not None and result.snapshot.name == "here"
    assert result.sockets is not None and result.sockets >= 0
    assert '"netviz.snapshot/1"' in result.snapshot_json


def test_local_collection_without_a_startable_interpreter_is_a_result(tmp_path, monkeypatch):
    not_executable = tmp_path / "python3"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    monkeypatch.setattr("sys.executable", str(not_executable))
    result = collect_local("here", timeout=10)
    assert (result.status, result.kind) == (FAILED, "payload_error")
    assert "cannot start" in result.message and "ermission denied" in result.message


def test_local_collection_timeout():
    result = collect_local("here", timeout=0.5, payload=b"import time\ntime.sleep(30)\n")
    assert (result.status, result.kind) == (FAILED, TIMEOUT)


@pytest.mark.parametrize(
    "stdout, words",
    [
        (b"", "no output at all"),
        (b"banner only\n", "no usable snapshot"),
        (encode_framed("not json"), "not JSON"),
        (encode_framed('{"schema": "something else"}'), "does not follow the format"),
        (encode_framed('{"a": 1}')[:-30], "no usable snapshot"),
    ],
)
def test_unusable_output_is_bad_output(stdout, words):
    with pytest.raises(HostFailure) as raised:
        validate_output("h", stdout)
    assert raised.value.kind == BAD_OUTPUT
    assert words in raised.value.message

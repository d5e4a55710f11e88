"""The run history on real machines: `netviz collect` twice over SSH on three lab machines, with
changes between the runs made by real processes: a flow that starts, one that stops, a listener
that opens, a process replaced by another on its port, a machine that goes down. `netviz diff`
and `netviz history` (JSON, real subprocesses) see each, with the times of the runs; then the
same again after `netviz history --rebuild` recreated the database from the cached runs.
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
# a server named by its first argument: each connection held until its client closes it
SERVER = (
    "import socket, sys, threading\n"
    "open('/proc/self/comm', 'w').write(sys.argv[1])\n"
    "s = socket.create_server(('0.0.0.0', int(sys.argv[2])))\n"
    "def hold(c):\n"
    "    while c.recv(64):\n"
    "        pass\n"
    "    c.close()\n"
    "while True:\n"
    "    threading.Thread(target=hold, args=(s.accept()[0],), daemon=True).start()\n"
)
# a client holding one connection open, named by its first argument
CLIENT = (
    "import socket, sys, time\n"
    "open('/proc/self/comm', 'w').write(sys.argv[1])\n"
    "c = socket.create_connection((sys.argv[2], int(sys.argv[3])))\n"
    "time.sleep(100000)\n"
)
STEADY, OLD, REPLACED, LATE, FAR = 7201, 7202, 7203, 7204, 7205


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    skip_unless_lab_possible()
    root = tmp_path_factory.mktemp("history-lab")
    with _teardown_on_sigterm(), bare_lab(3, root, prefix=unique_prefix("nvh")) as lab:
        yield lab


def serve(machine, name: str, port: int) -> int:
    pid = machine.run(["python3", "-c", SERVER, name, str(port)], log_name=name)
    deadline = time.monotonic() + 20
    while f"0.0.0.0:{port}" not in machine.exec(["ss", "-tlnH"]).stdout.split():
        assert time.monotonic() < deadline, f"{name} did not listen on {port}"
        time.sleep(0.05)
    return pid


def connect(machine, name: str, server, port: int) -> int:
    pid = machine.run(["python3", "-c", CLIENT, name, server.ipv4, str(port)], log_name=name)
    deadline = time.monotonic() + 20
    while f"{server.ipv4}:{port}" not in machine.exec(["ss", "-tnH", "state", "established"]).stdout.split():
        assert time.monotonic() < deadline, f"{name} did not connect to {port}"
        time.sleep(0.05)
    return pid


def stop(machine, pid: int, port: str) -> None:
    """Kill a process (started by this test, by its pid) and wait until `port` (`0.0.0.0:7203`,
    `10.77.1.11:7202`) is an end of no socket of the machine that a process holds."""
    subprocess.run(["kill", "-9", str(pid)], check=True)
    deadline = time.monotonic() + 20
    while any(port in line.split() and "users:" in line for line in machine.exec(["ss", "-tnapH"]).stdout.splitlines()):
        assert time.monotonic() < deadline, f"{port.strip()} is still held on {machine.name}"
        time.sleep(0.05)


def netviz(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "netviz", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def runs(lab, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two collections with the changes between them; the times around each."""
    client, server, far = lab.machines["m00"], lab.machines["m01"], lab.machines["m02"]
    where = tmp_path_factory.mktemp("history-runs")
    inventory = lab.write_inventory(where / "hosts.yaml", connect_timeout=3)
    cache = where / "cache"
    serve(server, "steady-srv", STEADY)
    serve(server, "old-srv", OLD)
    holder = serve(server, "holder-a", REPLACED)
    serve(far, "far-srv", FAR)
    connect(client, "steady-cli", server, STEADY)
    old_client = connect(client, "old-cli", server, OLD)
    connect(client, "far-cli", far, FAR)
    times = {"before_a": time.time()}
    first = netviz("collect", "-i", str(inventory), "--cache", str(cache))
    times["after_a"] = time.time()
    stop(client, old_client, f"{server.ipv4}:{OLD}")  # old-cli -> old-srv stops (old-srv keeps listening)
    connect(client, "new-cli", server, STEADY)  # a flow starts
    serve(server, "late-srv", LATE)  # a listener opens
    stop(server, holder, f"0.0.0.0:{REPLACED}")
    serve(server, "holder-b", REPLACED)  # another process on the same port
    far.kill_sshd()  # a machine goes down
    time.sleep(1.1)  # the second run starts in another second than the first
    times["before_b"] = time.time()
    second = netviz("collect", "-i", str(inventory), "--cache", str(cache), check=False)
    times["after_b"] = time.time()
    assert second.returncode != 0, "a machine was down: the collection is partial"  # m02 refused
    return {"cache": cache, "a": Path(first.stdout.strip()).name, "b": Path(second.stdout.strip()).name, **times}


FLOW_STARTED = "m00|host|new-cli>m01|host|steady-srv|tcp|7201|"
FLOW_STOPPED = "m00|host|old-cli>m01|host|old-srv|tcp|7202|"
FLOW_STEADY = "m00|host|steady-cli>m01|host|steady-srv|tcp|7201|"
FLOW_FAR = "m00|host|far-cli>m02|host|far-srv|tcp|7205|"


def check_diff(runs: dict) -> dict:
    document = json.loads(netviz("diff", "--cache", str(runs["cache"]), "--format", "json").stdout)
    assert (document["a"]["run"], document["b"]["run"]) == (runs["a"], runs["b"])
    assert runs["before_a"] <= document["a"]["started_at"] <= runs["after_a"]
    assert runs["before_b"] <= document["b"]["started_at"] <= runs["after_b"]
    assert [flow["key"] for flow in document["flows"]["added"]] == [FLOW_STARTED]
    assert [flow["key"] for flow in document["flows"]["removed"]] == [FLOW_STOPPED]
    assert document["machines"]["unreachable"] == [{"machine": "m02", "in": ["b"], "category": "refused"}]
    assert document["flows"]["not_compared"] == 1  # far-cli -> far-srv: not reported removed
    opened = {item["key"]: item["held_by"] for item in document["listeners"]["opened"]}
    assert opened == {"m01|host|tcp|0.0.0.0|7204": ["m01|host|late-srv"]}
    assert document["listeners"]["replaced"] == [
        {"key": "m01|host|tcp|0.0.0.0|7203", "before": ["m01|host|holder-a"], "after": ["m01|host|holder-b"]}]
    assert document["listeners"]["closed"] == [] and document["changed"] is True
    return document


def check_history(runs: dict) -> dict:
    cache = str(runs["cache"])
    document = json.loads(netviz("history", "--cache", cache, "--format", "json").stdout)
    first, second = document["runs"]
    assert (first["run"], second["run"]) == (runs["a"], runs["b"])
    assert (first["machines_ok"], first["machines_failed"]) == (3, 0)
    assert (second["machines_ok"], second["machines_failed"]) == (2, 1)
    assert (second["flows_new"], second["flows_gone"]) == (1, 1)
    timelines = {}
    for term in (FLOW_STARTED, FLOW_STOPPED, FLOW_STEADY):
        found = json.loads(netviz("history", "--cache", cache, "--format", "json", "--flow", term).stdout)
        timeline, = found["timelines"]
        timelines[term] = timeline
    assert timelines[FLOW_STARTED]["first_seen"] == second["started_at"] == timelines[FLOW_STARTED]["last_seen"]
    assert timelines[FLOW_STOPPED]["first_seen"] == first["started_at"] == timelines[FLOW_STOPPED]["last_seen"]
    steady = timelines[FLOW_STEADY]
    assert (steady["first_seen"], steady["last_seen"]) == (first["started_at"], second["started_at"])
    assert (steady["runs_seen"], steady["runs_taken"]) == (2, 2)
    assert [item["count"] for item in timelines[FLOW_STARTED]["counts"]] == [None, 1]
    return document


def test_diff_sees_each_change_with_the_times_of_the_runs(runs):
    check_diff(runs)


def test_history_sees_each_change_with_the_times_of_the_runs(runs):
    check_history(runs)


def test_the_same_after_the_history_is_rebuilt_from_the_cached_runs(runs):
    diff_before, history_before = check_diff(runs), check_history(runs)
    rebuilt = netviz("history", "--rebuild", "--cache", str(runs["cache"]))
    assert "rebuilt from 2 cached run(s)" in rebuilt.stderr
    assert check_diff(runs) == diff_before
    assert check_history(runs) == history_before

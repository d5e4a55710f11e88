"""Faults during one real run on the lab: a machine that dies mid-collection (its session's sshd
killed, and a whole machine killed while its payload runs), one that answers slowly, one whose
output is cut off, one that prints noise (with a decoy frame line) before the payload's output,
and one holding 100,000 sockets. Each ends with its category in its own time; the run completes;
the other machines' snapshots are complete and the stitched graph holds exactly the expected flows.

(test_lab_collect.py checks every fault's category in a run with all of them; this file checks
timings, the snapshots of the survivors and the machines that die at a moment of the test's choosing.)
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from netviz.cli import app
from netviz.snapshot import load_snapshot
from tests.lab.lab import slow_python
from tests.lab.scenario import DIES_AFTER_SECONDS, SLOW_SECONDS, graph_flow_keys

COMMAND_TIMEOUT = 40  # far above every fault below: none may end by a timeout
DOOMED_DELAY = 3.0  # the doomed machine's python3 starts late; it is killed meanwhile


def command_lines(machine) -> list[str]:
    lines = []
    for pid, _, _ in machine.processes():
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def test_faulty_machines_end_with_their_category_and_the_others_are_whole(lab, lab_many_sockets, tmp_path):
    doomed = lab.lab.machines.get("doomed") or lab.lab.add_machine(
        "doomed", description="killed whole (pid 1) while its payload runs", python_wrapper=slow_python(DOOMED_DELAY))
    many = lab_many_sockets.machine.name
    survivors = ["web", "db", "cache"]
    names = [*survivors, "slow", "truncated", "noise", "dies", many, "doomed"]
    inventory = lab.inventory_for(names, path=tmp_path / "hosts.yaml", connect_timeout=3,
                                  command_timeout=COMMAND_TIMEOUT)
    cache = tmp_path / "cache"
    output = tmp_path / "map.json"
    killed_at: list[float] = []

    def kill_doomed_while_its_payload_runs() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(line.startswith("sleep 3") for line in command_lines(doomed)):
                doomed.kill_sshd()
                killed_at.append(time.monotonic())
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_doomed_while_its_payload_runs, daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["run", "-i", str(inventory), "--cache", str(cache), "-o", str(output)],
                                    env={"COLUMNS": "200"}, catch_exceptions=False)
        elapsed = time.monotonic() - started
    finally:
        killer.join(30)
        doomed.restart()  # the session lab stays whole for the tests that follow
    assert killed_at, "the doomed machine's payload never started"
    assert result.exit_code == 3, result.output  # some failed, the map was written
    assert elapsed < 30, elapsed

    run = cache / "latest"
    hosts = {entry["host"]: entry for entry in json.loads((run / "manifest.json").read_text())["hosts"]}
    assert list(hosts) == names

    # Each fault: its category, in its own time (the hardening cases of tests/lab/scenario.py).
    slow = hosts["slow"]
    assert slow["status"] == "ok" and SLOW_SECONDS <= slow["timings"]["command"] < SLOW_SECONDS + 4, slow
    truncated = hosts["truncated"]
    assert truncated["category"] == "bad_output" and truncated["seconds"] < 5, truncated
    assert "no usable snapshot" in truncated["message"]
    noise = hosts["noise"]
    assert noise["status"] == "ok" and noise["seconds"] < 5, noise
    dies = hosts["dies"]
    assert dies["category"] == "payload_error" and dies["seconds"] < DIES_AFTER_SECONDS + 4, dies
    assert "without an exit status" in dies["message"] or "connection lost" in dies["message"], dies
    gone = hosts["doomed"]
    assert gone["category"] in ("payload_error", "unreachable"), gone
    assert gone["seconds"] < DOOMED_DELAY + 5, gone  # noticed when the machine died, not at a timeout
    huge = hosts[many]
    assert huge["status"] == "ok", huge

    # The survivors and the successful fault machines: complete snapshots of the right machine.
    for name in [*survivors, "slow", "noise", many]:
        snapshot = load_snapshot(run / hosts[name]["snapshot"], name=name)
        assert snapshot.host.hostname == name  # noise's decoy frame line was not taken for the snapshot
        assert not hosts[name]["stale"]
    web = load_snapshot(run / "web.json", name="web")
    assert {"lab-web", "lab-ping"} <= {process.comm for process in web.processes}
    sockets = sum(len(namespace.sockets) for namespace in load_snapshot(run / f"{many}.json", name=many).namespaces)
    assert sockets >= lab_many_sockets.sockets

    # The map: exactly the scenario's flows and the big machine's loopback flows, nothing from the faults.
    expected = lab.scenario.flow_keys() | {flow.key() for flow in lab_many_sockets.flows}
    assert graph_flow_keys(json.loads(output.read_text())) == expected

"""`netviz run` / `collect` / `stitch` through the CLI on this machine (no SSH), exit codes,
and the sudo password policy. Multi-machine runs are in test_lab_collect.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netviz.cli import app
from netviz.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOTHING, EXIT_OK, InventoryError
from netviz.inventory import SUDO_NO, SUDO_PASSWORD, HostSpec
from netviz.pipeline import sudo_password

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """One `netviz run` of this machine alone, shared by the tests that read its results."""
    work = tmp_path_factory.mktemp("local-run")
    result = invoke("run", "--cache", str(work / "cache"), "--output", str(work / "map.json"))
    return work, result


def test_run_without_inventory_maps_this_machine(local_run):
    work, result = local_run
    assert result.exit_code == EXIT_OK, result.output
    graph = json.loads((work / "map.json").read_text())
    assert graph["schema"] == "netviz.graph/1"
    assert [host["name"] for host in graph["hosts"]] == [socket.gethostname()]
    manifest = json.loads((work / "cache" / "latest" / "manifest.json").read_text())
    assert [(h["host"], h["status"]) for h in manifest["hosts"]] == [(socket.gethostname(), "ok")]
    snapshot = json.loads((work / "cache" / "latest" / manifest["hosts"][0]["snapshot"]).read_text())
    # a capture that could not read everything (not root, or a sandbox) is said to be partial
    assert ("1 machine ok" if snapshot["coverage"]["complete"] else "1 of 1 machines gave a partial capture") \
        in result.stderr


def test_stitch_without_arguments_reads_the_latest_cached_run(local_run):
    work, _ = local_run
    stitched = invoke("stitch", "--cache", str(work / "cache"), "--format", "json")
    assert stitched.exit_code == EXIT_OK, stitched.output
    assert json.loads(stitched.stdout)["flows"] == json.loads((work / "map.json").read_text())["flows"]
    run_id = os.readlink(work / "cache" / "latest")
    by_id = invoke("stitch", run_id, "--cache", str(work / "cache"), "--format", "json")
    assert by_id.exit_code == EXIT_OK and json.loads(by_id.stdout)["hosts"] == json.loads(stitched.stdout)["hosts"]


def test_output_format_follows_extension_unless_forced(tmp_path):
    cache = str(tmp_path / "cache")
    dot = invoke("run", "--cache", cache)
    assert dot.exit_code == EXIT_OK, dot.output
    assert dot.stdout.startswith("digraph"), dot.stdout[:500]  # no --output: DOT on stdout
    table = invoke("run", "--cache", cache, "--format", "table")
    assert table.exit_code == EXIT_OK, table.output
    header = table.stdout.strip().splitlines()[0].split()
    assert header[:3] == ["client", "server", "service"], table.stdout[:2000]  # the flow table, not DOT
    forced = tmp_path / "map.svg"
    result = invoke("run", "--cache", cache, "--format", "json", "--output", str(forced))
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(forced.read_text())["schema"] == "netviz.graph/1"


def test_nothing_usable_exits_4_with_one_line(tmp_path):
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  gone:\n    address: 127.0.0.1\n    port: {closed_port()}\n")
    for command in ("run", "collect"):
        result = invoke(command, "--inventory", str(inventory), "--cache", str(tmp_path / command))
        assert result.exit_code == EXIT_NOTHING, result.output
        assert "refused" in result.stderr
        assert "Traceback" not in result.output
    assert "no machine gave a usable snapshot" in invoke(
        "run", "-i", str(inventory), "--cache", str(tmp_path / "again")).stderr


def test_inventory_mistakes_exit_1_naming_host_and_key(tmp_path):
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  web:\n    adress: 10.0.0.1\n")
    result = invoke("run", "--inventory", str(inventory), "--cache", str(tmp_path / "c"))
    assert result.exit_code == EXIT_ERROR
    assert "host 'web': unknown key 'adress' (did you mean 'address'?)" in result.stderr
    assert invoke("run", "--limit", "web", "--cache", str(tmp_path / "c")).exit_code == EXIT_ERROR


def test_sigint_stops_a_run_with_130(tmp_path):
    listener = socket.socket()  # accepts and stays mute: the run would wait 30 s for a banner
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        f"defaults: {{connect_timeout: 30, known_hosts: {tmp_path / 'kh'}}}\n"
        f"hosts:\n  mute:\n    address: 127.0.0.1\n    port: {listener.getsockname()[1]}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "netviz", "run", "-i", str(inventory), "--cache", str(tmp_path / "c")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        listener.settimeout(20)
        listener.accept()  # the run is connecting now
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        process.kill()
        listener.close()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert b"interrupted" in stderr


def test_sudo_password_only_when_asked_env_first_prompt_once(monkeypatch):
    plain = [HostSpec(name="a", address="a", sudo=SUDO_NO)]
    needs = plain + [HostSpec(name="b", address="b", sudo=SUDO_PASSWORD), HostSpec(name="c", address="c",
                                                                                   sudo=SUDO_PASSWORD)]
    asked = []

    def ask():
        asked.append(1)
        return "typed"

    monkeypatch.delenv("NETVIZ_SUDO_PASSWORD", raising=False)
    assert sudo_password(plain, ask) is None and not asked
    assert sudo_password(needs, ask) == "typed" and len(asked) == 1
    monkeypatch.setenv("NETVIZ_SUDO_PASSWORD", "from-env")
    assert sudo_password(needs, ask) == "from-env" and len(asked) == 1
    monkeypatch.setenv("NETVIZ_SUDO_PASSWORD", "two\nlines")
    with pytest.raises(InventoryError, match="newline"):
        sudo_password(needs, ask)


def test_summary_table_escapes_what_machines_said():
    from netviz import console
    from netviz.collect import HostResult

    results = [
        HostResult("web1", "ok", seconds=0.42),
        HostResult("db1", "failed", "payload_error", "payload failed: \x1b[2J\x1b]0;owned\x07 [red]x[/red]", seconds=1.5),
    ]
    with console.err_console.capture() as captured:
        console.collect_summary(results, title="run X")
    text = captured.get()
    assert "\x1b[2J" not in text and "\x07" not in text  # terminal control from a machine is neutralised
    assert "[red]x[/red]" in text  # and rich markup is shown, not interpreted
    assert "db1 (payload_error)" in text and "1 of 2 machines failed" in text
    assert "web1" in text and "0.4" in text


def test_summary_of_a_large_fleet_keeps_the_failed_and_the_slowest():
    from netviz import console
    from netviz.collect import HostResult

    results = [HostResult(f"web{index:03d}", "ok", seconds=1.0 + index / 1000) for index in range(100)]
    results[10] = HostResult("web010", "failed", "unreachable", "connect timed out", seconds=10.0)
    results[20] = HostResult("web020", "failed", "unreachable", "connect timed out", seconds=10.0)
    results[30] = HostResult("web030", "failed", "auth", "authentication failed", seconds=0.3)
    with console.err_console.capture() as captured:
        console.collect_summary(results, title="run X")
    text = captured.get()
    listed = {f"web{index:03d}" for index in range(100) if f"web{index:03d} " in text or f"web{index:03d}\n" in text}
    # the three failed machines and the five slowest that answered (web099 .. web095)
    assert listed == {"web010", "web020", "web030", "web095", "web096", "web097", "web098", "web099"}
    assert "92 more machines answered ok" in text
    assert "3 of 100 machines failed (2 unreachable, 1 auth)" in text

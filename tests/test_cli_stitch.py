"""`netviz stitch` through typer's CliRunner, on real snapshot files; DOT piped into the real dot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.synth import write_fleet
from netviz.cli import app

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def fleet(tmp_path) -> Path:
    directory = tmp_path / "fleet"
    write_fleet(directory, 3, 80, seed=4)
    return directory


def invoke(*arguments: str):
    runner = CliRunner()
    return runner.invoke(app, ["stitch", *arguments], env={"COLUMNS": "200"}, catch_exceptions=False)


def test_default_is_dot_on_stdout(fleet):
    result = invoke(str(fleet))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("digraph netviz {")
    # one box per machine, and inside each the synthetic container's network namespace
    assert len(re.findall(r"subgraph cluster_\d+ \{", result.stdout)) == 3
    assert len(re.findall(r"subgraph cluster_\d+_\d+ \{", result.stdout)) == 3


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")
def test_stitch_piped_into_dot_like_the_original(fleet, tmp_path):
    """`netviz stitch --log debug a.json b.json > g.dot` then `dot -Tsvg < g.dot > g.svg`."""
    files = sorted(str(path) for path in fleet.glob("*.json"))
    stitched = subprocess.run(
        [sys.executable, "-m", "netviz", "stitch", "--log", "debug", *files],
        cwd=REPO, capture_output=True, timeout=120,
    )
    assert stitched.returncode == 0, stitched.stderr.decode()
    assert b"exact pairs" in stitched.stderr  # the debug log went to stderr, not into the DOT
    svg = subprocess.run(["dot", "-Tsvg"], input=stitched.stdout, capture_output=True, timeout=120)
    assert svg.returncode == 0 and b"<svg" in svg.stdout


def test_json_output_file_and_group_by(fleet, tmp_path):
    output = tmp_path / "graph.json"
    result = invoke(str(fleet), "--format", "json", "--output", str(output), "--group-by", "host")
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert document["schema"] == "netviz.graph/1" and document["group_by"] == "host"
    assert [node["kind"] for node in document["nodes"]] == ["host"] * 3
    assert result.stdout == ""


def test_format_follows_the_output_extension(fleet, tmp_path):
    output = tmp_path / "map.json"
    assert invoke(str(fleet), "-o", str(output)).exit_code == 0
    assert json.loads(output.read_text())["schema"] == "netviz.graph/1"


def test_show_external_adds_outside_nodes(fleet):
    without = json.loads(invoke(str(fleet), "--format", "json").stdout)
    with_external = json.loads(invoke(str(fleet), "--format", "json", "--show-external").stdout)
    assert not [node for node in without["nodes"] if node["kind"] == "outside"]
    outside = [node for node in with_external["nodes"] if node["kind"] == "outside"]
    # one node per outside peer of each machine, named by its address
    assert {node["host"] for node in outside} == {"m0000", "m0001", "m0002"} and len(outside) == 6
    assert all(node["address"] for node in outside)
    assert len({(node["host"], node["address"]) for node in outside}) == len(outside)
    assert without["summary"]["outside"] == with_external["summary"]["outside"] > 0


def test_table_in_the_terminal(fleet):
    result = invoke(str(fleet), "--format", "table")
    assert result.exit_code == 0, result.output
    assert "client" in result.stdout and "m0000: app" in result.stdout and "tcp/5432" in result.stdout


def test_warnings_go_to_stderr_and_output_stays_clean(fleet, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(fleet / "m0000.json", again / "copy.json")
    result = invoke(str(fleet), str(again), "--format", "json")
    assert result.exit_code == 0
    assert "the same snapshot" in result.stderr
    assert len(json.loads(result.stdout)["hosts"]) == 3


def test_bad_input_exits_1_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    result = invoke(str(bad))
    assert result.exit_code == 1
    assert "bad.json" in result.stderr and "Traceback" not in result.stderr
    assert invoke(str(tmp_path / "missing.json")).exit_code == 1
    assert invoke().exit_code == 1


def test_unknown_format_and_log_level_are_usage_errors(fleet):
    assert invoke(str(fleet), "--format", "gif").exit_code == 2
    assert invoke(str(fleet), "--log", "chatty").exit_code == 2


def test_missing_graphviz_for_svg_names_the_package(fleet, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["stitch", str(fleet), "--format", "svg", "-o", str(tmp_path / "g.svg")],
        env={"PATH": str(tmp_path), "COLUMNS": "200"},
    )
    assert result.exit_code == 1
    assert "graphviz" in result.stderr and not (tmp_path / "g.svg").exists()


def test_a_partial_capture_is_said_on_stderr(tmp_path):
    """A snapshot taken without root (coverage.complete false) draws, with a warning naming it."""
    from netviz.payload import capture

    document = capture.collect()
    document["coverage"].update(complete=False, euid=1000, processes_denied=7, namespaces_denied=1)
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["stitch", str(path), "-f", "json"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "partial capture (payload ran as uid 1000): 7 processes and 1 network namespace could not be read" in result.stderr


def test_unresolved_connections_are_shown_with_their_reason(tmp_path):
    """`stitch` says which connections it could not resolve and why, on stderr; the JSON keeps them."""
    from snapbuilder import Machine

    from netviz.snapshot import dump_snapshot

    web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
    web.process(100, "app")
    db.process(200, "postgres")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:6000")
    for machine in (web, db):
        (tmp_path / f"{machine.name}.json").write_text(dump_snapshot(machine.build()))
    result = CliRunner().invoke(app, ["stitch", str(tmp_path), "-f", "json", "-o", str(tmp_path / "g.json")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "unresolved (first 1 of 1):" in result.stderr
    assert "web: tcp 10.0.0.1:40000 -> 10.0.0.2:6000 pid 100: its peer machine is in the group" in result.stderr
    hosts = {host["name"]: host for host in json.loads((tmp_path / "g.json").read_text())["hosts"]}
    assert hosts["web"]["unresolved_examples"][0]["remote_port"] == 6000


def test_a_terminal_sees_what_is_being_done_and_a_pipe_does_not(tmp_path):
    """Loading and stitching a large group takes seconds: a spinner says so on a terminal (a real
    pseudo-terminal here), and nothing of it reaches a pipe or a file."""
    import os
    import pty
    import subprocess
    import sys

    from benchmarks.synth import make_fleet

    for document in make_fleet(3, 50, seed=3):
        (tmp_path / f"{document['host']['hostname']}.json").write_text(json.dumps(document))
    command = [sys.executable, "-m", "netviz", "stitch", str(tmp_path), "-f", "json", "-o", str(tmp_path / "g.out")]
    environment = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower, env=environment)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    assert b"loading snapshots" in seen and b"stitching 3 snapshots" in seen and b"drawing json" in seen
    piped = subprocess.run(command, capture_output=True, env=environment, timeout=60)
    assert piped.returncode == 0 and b"stitching" not in piped.stderr and b"3 machines" in piped.stderr


@pytest.mark.parametrize(("processes", "namespaces", "said"), [
    (1, 0, "1 process could not be read"),
    (0, 2, "2 network namespaces could not be read"),
    (0, 0, "part of the machine could not be read"),
])
def test_a_partial_capture_counts_what_it_could_not_read(processes, namespaces, said):
    from netviz.payload import capture
    from netviz.snapshot.parse import parse_snapshot

    document = capture.collect()
    document["coverage"].update(complete=False, euid=0, processes_denied=processes, namespaces_denied=namespaces)
    warning, = parse_snapshot(document, "here").warnings
    assert f"partial capture (payload ran as uid 0): {said}; their flows are missing" in warning

"""--only, --exclude and --detail through `netviz stitch` (typer's CliRunner, real snapshot files),
and the busiest flows and machines in the table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.synth import write_fleet
from netviz.cli import app
from netviz.render.table import busiest_lines, machine_loads, render_table_text, table_rows
from netviz.stitch import stitch


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fleet")
    write_fleet(directory, 4, 100, seed=4)
    return directory


def invoke(*arguments: str):
    return CliRunner().invoke(app, ["stitch", *arguments], env={"COLUMNS": "200"}, catch_exceptions=False)


def test_exclude_and_only_reach_the_json(fleet):
    full = json.loads(invoke(str(fleet), "-f", "json").stdout)
    result = invoke(str(fleet), "-f", "json", "--exclude", "app", "--only", "m0001")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    comms = {(node["host"], node["comm"]) for node in document["nodes"]}
    assert not any(comm == "app" for _, comm in comms)
    assert len(document["flows"]) < len(full["flows"])
    assert document["notes"] == ["filtered by --only m0001 --exclude app: " + document["notes"][0].split(": ", 1)[1]]
    assert "filtered by --only m0001 --exclude app: hidden" in result.stderr
    assert "notes" not in full


def test_a_term_that_matches_nothing_is_said(fleet):
    result = invoke(str(fleet), "-f", "json", "--exclude", "prometheus")
    assert result.exit_code == 0
    assert "'prometheus' matched nothing" in result.stderr


def test_a_bad_term_is_a_usage_error(fleet):
    result = invoke(str(fleet), "--only", "tcp/99999")
    assert result.exit_code == 2 and "between 1 and 65535" in result.output


def test_detail_full_and_aggregate_on_dot(fleet):
    full = invoke(str(fleet), "--detail", "full").stdout
    folded = invoke(str(fleet), "--detail", "aggregate")
    assert "aggregated" not in full and "aggregated for a static layout" in folded.stdout
    assert "aggregated for a static layout" in folded.stderr  # said on stderr too
    assert folded.stdout.count(" -> ") < full.count(" -> ")


def test_table_names_busiest_flows_and_machines(fleet):
    result = invoke(str(fleet), "-f", "table")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("connections" in line and "machine" in line for line in lines)  # the machine table
    counts = [int(found[1]) for line in lines if (found := re.search(r"(?:tcp|udp)/\d+\s+(\d+)", line))]
    assert counts == sorted(counts, reverse=True) and counts  # busiest flows first
    assert "machine" in result.stdout and "m0000" in result.stdout


def test_busiest_machines_and_flows_summary_is_escaped():
    from snapbuilder import Machine

    a = Machine("quiet", "10.0.0.1")
    b = Machine("busy\x1b[2J", "10.0.0.2")
    a.process(1, "client")
    b.process(2, "srv\x07")
    b.listen(2, "tcp", "0.0.0.0:80")
    for port in range(40000, 40003):
        a.connect(1, "tcp", f"10.0.0.1:{port}", "10.0.0.2:80")
        b.connect(2, "tcp", "10.0.0.2:80", f"10.0.0.1:{port}")
    b.process(3, "loner")
    b.connect(3, "tcp", "10.0.0.2:50000", "10.0.0.2:80")
    b.connect(2, "tcp", "10.0.0.2:80", "10.0.0.2:50000")
    graph = stitch([a.build(), b.build()])
    loads = machine_loads(graph)
    assert [(load.name, load.connections, load.flows) for load in loads] == [("busy\x1b[2J", 4, 2), ("quiet", 3, 1)]
    machines, flows = busiest_lines(graph)
    assert machines.startswith("busiest machines: busy\\x1b[2J (4 connections, 2 flows), quiet (3 connections")
    assert "srv\\x07" in flows and "\x1b" not in flows + machines and "\x07" not in flows
    assert flows.index("×3") < flows.index("loner")
    text = render_table_text(graph)
    assert "\x1b" not in text and "busiest machines (top 2 of 2, by connections)" in text
    assert table_rows(graph)[1][0][3] == "3"

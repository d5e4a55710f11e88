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


def test_inventory_groups_reach_the_filters(tmp_path):
    """Nested groups name their machines; --only GROUP in `run` keeps those machines' flows."""
    from netviz.pipeline import CollectRequest, load_selection

    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "hosts:\n  web1: {address: 10.0.0.11}\n  db1: {address: 10.0.0.13}\n  db2: {address: 10.0.0.14}\n"
        "groups:\n  db: [db1, db2]\n  everything: [web1, db]\n"
    )
    hosts, groups = load_selection(CollectRequest(inventory=inventory, limit=("web1",)))
    assert [host.name for host in hosts] == ["web1"]
    assert groups == {"db": ["db1", "db2"], "everything": ["web1", "db1", "db2"]}


def test_run_filters_by_a_group_and_names_the_busiest(tmp_path):
    """`netviz run` on this machine: the run's groups decide what a group term names; the end of
    the run names the busiest machines and flows."""
    import socket

    from netviz.filters import FilterSpec
    from netviz.options import StitchOptions
    from netviz.pipeline import CollectRequest, collect_group, stitch_run

    collected = collect_group(CollectRequest(cache_dir=tmp_path / "cache"))
    here = socket.gethostname()
    collected.groups = {"mine": [here], "theirs": ["elsewhere"]}
    kept = stitch_run(collected, "json", options=StitchOptions(filters=FilterSpec.parse(only=["mine"])))
    assert [host.name for host in kept.graph.hosts] == [here]
    hidden = stitch_run(collected, "json", options=StitchOptions(filters=FilterSpec.parse(only=["theirs"])))
    assert hidden.graph.hosts == [] and hidden.graph.flows == []
    assert any("hidden 1 of 1 machines" in notice for notice in hidden.notices)

    # a real loopback connection held by this process: the run has at least one flow to name
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        try:
            result = CliRunner().invoke(app, ["run", "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "map.dot")],
                                        env={"COLUMNS": "200"}, catch_exceptions=False)
        finally:
            client.close()
            accepted.close()
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"busiest machines: {here} (" in stderr and "busiest flows: " in stderr
    assert " -> " in stderr.split("busiest flows: ", 1)[1] and " ×" in stderr


def test_stitch_of_a_cached_run_knows_the_inventory_groups(fleet, tmp_path):
    """The run's manifest records the inventory's groups, so `stitch --only GROUP` on the cache
    means what it meant in `run`."""
    from netviz.cache import RunWriter, read_run

    cache = tmp_path / "cache"
    writer = RunWriter(cache)
    files = sorted(fleet.glob("*.json"))
    for path in files:
        writer.add(path.stem, status="ok", category=None, message="", timings={}, seconds=0.1,
                   snapshot_json=path.read_text())
    chosen = files[1].stem
    run = writer.finish(groups={"dbs": [chosen]})
    assert read_run(run.path).groups == {"dbs": (chosen,)}

    result = CliRunner().invoke(app, ["stitch", "--cache", str(cache), "-f", "json", "--only", "dbs"],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    flows = json.loads(result.stdout)["flows"]
    nodes = {node["id"]: node["host"] for node in json.loads(result.stdout)["nodes"]}
    assert flows and all(chosen in (nodes[flow["client"]], nodes[flow["server"]]) for flow in flows)
    unknown = CliRunner().invoke(app, ["stitch", "--cache", str(cache), "-f", "json", "--only", "nosuchgroup"],
                                 env={"COLUMNS": "200"}, catch_exceptions=False)
    assert json.loads(unknown.stdout)["flows"] == []

"""End to end on the lab: one machine listed twice in an inventory (by IPv4 and by IPv6 address,
as happens with aliases) is captured twice and drawn once, with every flow of the scenario."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from netviz.cli import app
from tests.lab.scenario import graph_flow_keys


def test_a_machine_listed_twice_is_drawn_once_with_all_its_flows(lab, tmp_path):
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=["web", "db", "cache"],
                                    connect_timeout=5, command_timeout=30)
    document = yaml.safe_load(inventory.read_text())
    document["hosts"]["db-v6"] = {"address": lab.machines["db"].ipv6}  # the same db, by another address
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    output = tmp_path / "map.json"
    result = CliRunner().invoke(app, ["run", "-i", str(inventory), "--cache", str(tmp_path / "cache"),
                                      "-o", str(output)], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "captures of the same machine" in result.stderr
    graph = json.loads(output.read_text())
    assert sorted(host["name"] for host in graph["hosts"]) == ["cache", "db", "web"]
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()
    assert all(host["unresolved"] == 0 for host in graph["hosts"])

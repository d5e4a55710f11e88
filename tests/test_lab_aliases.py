"""End to end on the lab: one machine listed twice in an inventory (by IPv4 and by IPv6 address,
as happens with aliases) is captured twice and drawn once, with every flow of the scenario."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from netviz.cli import app
from tests.lab.lab import SUDO_NOPASSWD_USER
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


@pytest.mark.parametrize("login", [{"user": "root"}, {"user": SUDO_NOPASSWD_USER, "sudo": True}],
                         ids=["root", "sudo"])
def test_netvizs_own_sessions_are_named_and_never_drawn_even_through_a_jump_host(lab, tmp_path, login):
    """cache is reached through db, a machine of the group: db's sshd forwards netviz's session to
    cache's sshd. That connection exists only because the map is being made: not a flow. Under
    sudo the session's sshd processes are found above sudo as well."""
    db = lab.machines["db"]
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=["web", "db", "cache"],
                                    connect_timeout=5, command_timeout=30, **login)
    document = yaml.safe_load(inventory.read_text())
    document["hosts"]["cache"]["jump"] = f"{login['user']}@{db.ipv4}"
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    output, cache = tmp_path / "map.json", tmp_path / "cache"
    result = CliRunner().invoke(app, ["run", "-i", str(inventory), "--cache", str(cache), "-o", str(output)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    graph = json.loads(output.read_text())
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()
    assert all(host["unresolved"] == 0 for host in graph["hosts"])
    # Each snapshot names its session's sshd processes, and they hold a connection on port 22.
    for name in ("web", "db", "cache"):
        snapshot = json.loads((cache / "latest" / f"{name}.json").read_text())
        pids = snapshot["ssh_session"]["pids"]
        processes = {process["pid"]: process for process in snapshot["processes"]}
        assert pids and all(processes[pid]["comm"] in ("sshd", "sshd-session") for pid in pids), (name, pids)
        held = {inode for pid in pids for inode in processes[pid]["sockets"]}
        sockets = [sock for namespace in snapshot["namespaces"] for sock in namespace["sockets"]]
        assert any(sock["inode"] in held and sock["local_port"] == 22 and sock["state"] == "ESTABLISHED"
                   for sock in sockets), name


def test_an_account_that_cannot_run_commands_is_an_auth_failure_with_what_it_said(lab_factory, tmp_path):
    """Logged in, but the account's shell or a ForceCommand refuses commands (nologin): say so,
    with the machine's own words, rather than "payload failed"."""
    lab = lab_factory(1)
    machine = lab.machines["m00"]
    with open(machine.dir / "sshd_config", "a") as config:
        config.write("\nForceCommand /usr/sbin/nologin\n")
    machine.restart()
    # the oracle: the real ssh client gets the refusal too
    seen = subprocess.run([*lab.ssh_argv("m00"), "true"], capture_output=True, text=True, timeout=30)
    assert seen.returncode == 1 and "This account is currently not available." in seen.stdout
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", connect_timeout=5, command_timeout=30)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["collect", "-i", str(inventory), "--cache", str(cache)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 4, result.output
    (entry,) = json.loads((cache / "latest" / "manifest.json").read_text())["hosts"]
    assert entry["category"] == "auth", entry
    assert "did not run netviz's command" in entry["message"]
    assert "This account is currently not available." in entry["message"]

"""End to end on the lab: NAT and containers, the situations of real fleets.

Each situation (tests/lab/scenarios_extra.py) runs in a lab of its own, so the session lab's
standard scenario stays as other tests expect. `netviz run` collects the machines over SSH and
the JSON graph must hold exactly the flows built: no more, no fewer, `via` where NAT translated.
Needs root, nft (Debian nftables) and the kernel's conntrack; skips saying which is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest
from typer.testing import CliRunner

from netviz.cli import app
from tests.lab.fixtures import _teardown_on_sigterm, skip_unless_lab_possible, unique_prefix
from tests.lab.lab import Lab
from tests.lab.scenarios_extra import (
    CONTAINER_ADDRESS,
    DB_PORT,
    DOCKER_BRIDGE_ADDRESS,
    GATEWAY_PORT,
    PINNED_GATEWAY_SOURCE_PORT,
    PUBLISHED_DNS_PORT,
    PUBLISHED_PORT,
    SIDECAR_PORT,
    Situation,
    build_docker_hosts,
    build_loopback_namespaces,
    build_nat_gateway,
    build_sidecar,
    conntrack_entries,
    graph_flow_keys_with_via,
)


def _skip_unless_nat_possible() -> None:
    skip_unless_lab_possible()
    if shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("nft missing (Debian package nftables): the NAT situations need it")
    if not os.path.exists("/proc/net/nf_conntrack"):
        pytest.skip("no /proc/net/nf_conntrack: the kernel lacks nf_conntrack, NAT cannot be followed")


def _situation(tmp_path_factory: pytest.TempPathFactory, stem: str, build) -> Iterator[Situation]:
    _skip_unless_nat_possible()
    lab = Lab(tmp_path_factory.mktemp(stem), prefix=unique_prefix(stem))
    with _teardown_on_sigterm():
        try:
            yield build(lab)
        finally:
            lab.stop()
            leftovers = [ns for ns in lab._state.get("netns", []) if os.path.exists(f"/run/netns/{ns}")]
            assert not leftovers, f"namespaces left behind: {leftovers}"


@pytest.fixture(scope="module")
def nat_gateway(tmp_path_factory) -> Iterator[Situation]:
    yield from _situation(tmp_path_factory, "nvg", build_nat_gateway)


@pytest.fixture(scope="module")
def docker_hosts(tmp_path_factory) -> Iterator[Situation]:
    yield from _situation(tmp_path_factory, "nvd", build_docker_hosts)


@pytest.fixture(scope="module")
def loopback_namespaces(tmp_path_factory) -> Iterator[Situation]:
    yield from _situation(tmp_path_factory, "nvn", build_loopback_namespaces)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory) -> Iterator[Situation]:
    yield from _situation(tmp_path_factory, "nvs", build_sidecar)


def run_netviz(situation: Situation, hosts: Sequence[str], tmp_path: Path, *extra: str) -> dict[str, Any]:
    """`netviz run` over SSH against ``hosts``; the JSON graph it wrote."""
    inventory = situation.lab.write_inventory(tmp_path / "hosts.yaml", hosts=hosts, connect_timeout=5,
                                              command_timeout=30)
    output = tmp_path / "graph.json"
    result = CliRunner().invoke(
        app, ["run", "--inventory", str(inventory), "--cache", str(tmp_path / "cache"), "--output", str(output), *extra],
        env={"COLUMNS": "200"}, catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return json.loads(output.read_text())


def snapshot(tmp_path: Path, host: str) -> dict[str, Any]:
    return json.loads((tmp_path / "cache" / "latest" / f"{host}.json").read_text())


def hosts_by_name(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in graph["hosts"]}


def ssh_sessions(document: dict[str, Any]) -> int:
    """Established sockets on port 22 in a snapshot: the collector's own SSH sessions (outside)."""
    return sum(
        1 for namespace in document["namespaces"] for sock in namespace["sockets"]
        if sock["proto"].startswith("tcp") and sock["state"] == "ESTABLISHED" and sock["local_port"] == 22
    )


def expected_counts(situation: Situation, hosts: Optional[Sequence[str]] = None) -> dict:
    wanted = situation.flow_keys(hosts)
    return {flow.key: flow.count for flow in situation.flows if flow.key in wanted}


def node_of(graph: dict[str, Any], host: str, comm: str) -> dict[str, Any]:
    (node,) = [node for node in graph["nodes"] if node["host"] == host and node["comm"] == comm]
    return node


# --------------------------------------------------------------------------- 1. NAT gateway


def test_nat_gateway_draws_the_client_to_the_real_server_via_the_gateway(nat_gateway, tmp_path):
    gw, db = nat_gateway.machines["gw"], nat_gateway.machines["db"]
    # the translations really happened: gw's conntrack holds both clients' connections from
    # source port 45000 to gw:8080, answered by db:5432 on two different masqueraded ports
    entries = [re.findall(r"(src|dst|sport|dport)=(\S+)", line) for line in conntrack_entries(gw).splitlines()]
    natted = [dict(fields[:4]) | {"reply_" + k: v for k, v in fields[4:8]} for fields in entries
              if dict(fields[:4]).get("dport") == str(GATEWAY_PORT) and dict(fields[:4]).get("dst") == gw.ipv4]
    assert {entry["sport"] for entry in natted} == {str(PINNED_GATEWAY_SOURCE_PORT)}, natted
    assert {entry["reply_src"] for entry in natted} == {db.ipv4}, natted
    assert len({entry["reply_dport"] for entry in natted}) == 2, natted

    graph = run_netviz(nat_gateway, ["web", "gw", "db", "cache"], tmp_path)

    assert graph_flow_keys_with_via(graph) == expected_counts(nat_gateway)
    # no phantom flow from or to the gateway: it holds no socket of the connection
    nodes = {node["id"]: node for node in graph["nodes"]}
    assert not [flow for flow in graph["flows"]
                if "gw" in (nodes[flow["client"]]["host"], nodes[flow["server"]]["host"])]
    translated = [flow for flow in graph["flows"] if flow["via"]]
    assert len(translated) == 4
    for flow in translated:
        assert flow["directed"] is True and flow["inferred"] is False
        # the address the server end uses, after translation
        ipv6 = nodes[flow["client"]]["comm"] == "nat6-client"
        assert flow["server_address"] == (db.ipv6 if ipv6 else db.ipv4), flow
        # and the front the client dialled: through gw, the gateway's address and forwarded port
        assert len(flow["dialled"]) == 1, flow
        if flow["via"] == "gw":
            assert flow["dialled"] == [{"address": gw.ipv6 if ipv6 else gw.ipv4, "port": GATEWAY_PORT}], flow
    hosts = hosts_by_name(graph)
    assert all(entry["unresolved"] == 0 for entry in hosts.values()), hosts
    assert hosts["web"]["outside"]["outbound"] == 0 and hosts["cache"]["outside"]["outbound"] == 0
    # db sees gw as its client (masquerade); joined through conntrack, so not counted outside
    assert hosts["db"]["outside"]["inbound"] == ssh_sessions(snapshot(tmp_path, "db"))


def test_nat_gateway_outside_the_group_leaves_both_ends_outside_and_draws_no_edge(nat_gateway, tmp_path):
    graph = run_netviz(nat_gateway, ["web", "db"], tmp_path)

    # the direct flow and the one web translated itself; gw's translation has no conntrack to follow
    assert graph_flow_keys_with_via(graph) == expected_counts(nat_gateway, ["web", "db"])
    assert len(graph["flows"]) == 2
    hosts = hosts_by_name(graph)
    # web dialled gw (not in the group, IPv4 and IPv6), db was dialled by gw: outside on both
    # ends, never a guess
    assert hosts["web"]["outside"]["outbound"] == 2 and hosts["web"]["unresolved"] == 0
    # the three connections through gw (web's two, cache's) reach db from gw's addresses
    assert hosts["db"]["outside"]["inbound"] == ssh_sessions(snapshot(tmp_path, "db")) + 3
    assert hosts["db"]["unresolved"] == 0


def test_nat_gateway_to_a_server_outside_the_group_counts_outside_not_unresolved(nat_gateway, tmp_path):
    graph = run_netviz(nat_gateway, ["web", "gw"], tmp_path)

    assert graph["flows"] == []
    hosts = hosts_by_name(graph)
    # every connection of web ends at db, outside the group: directly, through gw's conntrack
    # (IPv4 and IPv6), or through web's own (the service address); none is a guess or unresolved
    assert hosts["web"]["outside"]["outbound"] == 4
    assert hosts["web"]["unresolved"] == 0 and hosts["gw"]["unresolved"] == 0


# --------------------------------------------------------------------------- 2. Docker hosts


def test_published_container_port_and_identical_docker0_tuples_stay_on_their_machine(docker_hosts, tmp_path):
    db = docker_hosts.machines["db"]
    table = conntrack_entries(db)
    assert f"dport={PUBLISHED_PORT} " in table and f"src={CONTAINER_ADDRESS} " in table, table

    graph = run_netviz(docker_hosts, ["web", "db", "cache"], tmp_path)

    assert graph_flow_keys_with_via(graph) == expected_counts(docker_hosts)
    hosts = hosts_by_name(graph)
    assert all(entry["unresolved"] == 0 for entry in hosts.values()), hosts
    assert hosts["web"]["outside"]["outbound"] == 0
    # the idle docker-proxy listens on the published port but carries nothing
    proxy = node_of(graph, "db", "docker-proxy")
    assert {(item["proto"], item["address"], item["port"]) for item in proxy["listening"]} == {
        ("tcp", "0.0.0.0", PUBLISHED_PORT), ("udp", "0.0.0.0", PUBLISHED_DNS_PORT)}
    # the published flow ends in the container's namespace, at its own address
    nodes = {node["id"]: node for node in graph["nodes"]}
    translated = [flow for flow in graph["flows"] if flow["via"] == "db"]
    assert {nodes[flow["client"]]["comm"] for flow in translated} == {"nat-client", "ctr-client", "self-client",
                                                                      "local-client"}
    for flow in translated:
        assert flow["server_address"] == CONTAINER_ADDRESS and flow["directed"] and not flow["inferred"], flow
    # both containers' processes belong to their machine (captured through /proc/PID/net)
    for name in ("db", "cache"):
        document = snapshot(tmp_path, name)
        owners = {namespace["inode"]: {a["address"] for a in namespace["addresses"]}
                  for namespace in document["namespaces"]}
        assert sum(1 for addresses in owners.values() if CONTAINER_ADDRESS in addresses) == 1, owners
        assert sum(1 for addresses in owners.values() if DOCKER_BRIDGE_ADDRESS in addresses) == 1, owners


def test_docker_hosts_grouped_by_pid_pair_each_machines_own_processes(docker_hosts, tmp_path):
    graph = run_netviz(docker_hosts, ["db", "cache"], tmp_path, "--group-by", "pid")
    # one node per pid: every flow joins two processes of one machine (no pid is on two flows)
    assert graph_flow_keys_with_via(graph) == expected_counts(docker_hosts, ["db", "cache"])
    assert len({f["client"] for f in graph["flows"]}) == len(graph["flows"])
    hosts = hosts_by_name(graph)
    # without web, its two connections to the published port (one from its container) come from
    # an address outside the group: counted on db, drawn nowhere
    assert hosts["db"]["outside"]["inbound"] == ssh_sessions(snapshot(tmp_path, "db")) + 2
    assert all(entry["unresolved"] == 0 for entry in hosts.values()), hosts


# --------------------------------------------------------------------------- 3. loopback namespaces


def test_the_same_loopback_tuple_in_three_namespaces_gives_three_separate_flows(loopback_namespaces, tmp_path):
    graph = run_netviz(loopback_namespaces, ["multi"], tmp_path, "--group-by", "pid")
    nodes = {node["id"]: node for node in graph["nodes"]}
    pairs = {(nodes[f["client"]]["comm"], nodes[f["server"]]["comm"], f["server_port"], f["count"])
             for f in graph["flows"]}
    assert pairs == {(f"app-{name}", f"srv-{name}", 7000, 1) for name in ("root", "a", "b")}
    # each flow joins the processes of one namespace: the pids are those the machine gives them
    machine = loopback_namespaces.machines["multi"]
    inside = {root: ns_pid for root, ns_pid, _ in machine.processes()}
    pid_of = {name: inside[pid] for name, pid in loopback_namespaces.pids.items()}
    for flow in graph["flows"]:
        suffix = nodes[flow["client"]]["comm"].split("-", 1)[1]
        assert flow["client_pids"] == [pid_of[f"app-{suffix}"]] and flow["server_pids"] == [pid_of[f"srv-{suffix}"]]
    assert hosts_by_name(graph)["multi"]["unresolved"] == 0

    by_process = run_netviz(loopback_namespaces, ["multi"], tmp_path / "process")
    assert graph_flow_keys_with_via(by_process) == expected_counts(loopback_namespaces)


# --------------------------------------------------------------------------- 4. service mesh sidecar


def test_a_sidecar_redirect_inside_a_pod_draws_app_to_sidecar_to_server(sidecar, tmp_path):
    web, db = sidecar.machines["web"], sidecar.machines["db"]
    # the pod's conntrack: the application dialled db:5432, the sidecar on 127.0.0.1:15001 answered
    pod_table = conntrack_entries(web, sidecar.containers["pod"])
    assert any(f"dst={db.ipv4} " in line and f"dport={DB_PORT} " in line and "src=127.0.0.1 " in line
               and f"sport={SIDECAR_PORT} " in line for line in pod_table.splitlines()), pod_table

    graph = run_netviz(sidecar, ["web", "db"], tmp_path)

    # not web/app -> db/lab-pg: the application's connection never left the pod
    assert graph_flow_keys_with_via(graph) == expected_counts(sidecar)
    hosts = hosts_by_name(graph)
    assert all(entry["unresolved"] == 0 for entry in hosts.values()), hosts
    assert hosts["web"]["outside"]["outbound"] == 0

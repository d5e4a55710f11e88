"""--only / --exclude: what a term matches, what is kept, what the notes say."""

from __future__ import annotations

import pytest
from snapbuilder import Machine

from netviz.filters import FilterSpec, apply_filters, parse_term, stitch_filtered
from netviz.render import render

GROUPS = {"db": ["db1", "db2"], "front": ["web1"]}


def fleet():
    """web1 (nginx, sshd, node_exporter), app1 (gunicorn, prometheus), db1 and db2 (postgres,
    node_exporter), plus an admin ssh session from app1 to web1 and statsd over UDP."""
    web = Machine("web1", "10.0.0.11")
    app = Machine("app1", "10.0.0.12")
    db1 = Machine("db1", "10.0.0.13")
    db2 = Machine("db2", "10.0.0.14")
    web.process(80, "nginx", user="www-data")
    web.listen(80, "tcp", "0.0.0.0:80")
    web.process(22, "sshd")
    web.listen(22, "tcp", "0.0.0.0:22")
    app.process(10, "gunicorn", user="app")
    app.listen(10, "tcp", "0.0.0.0:8000")
    app.process(11, "prometheus", user="prom")
    app.process(12, "ssh", user="admin")
    app.process(13, "statsd", user="app")
    app.listen(13, "udp", "0.0.0.0:8125")
    for machine, pid in ((web, 91), (db1, 92), (db2, 93)):
        machine.process(pid, "node_exporter", user="nobody")
        machine.listen(pid, "tcp", "0.0.0.0:9100")
    for machine in (db1, db2):
        machine.process(50, "postgres", user="postgres")
        machine.listen(50, "tcp", "0.0.0.0:5432")
    db2.process(51, "pgbouncer", user="postgres")
    db2.listen(51, "tcp", "0.0.0.0:6432")  # idle: no flow

    port = iter(range(40000, 41000))
    address = {web: "10.0.0.11", app: "10.0.0.12", db1: "10.0.0.13", db2: "10.0.0.14"}

    def link(client, cpid, server, spid, service):
        local = f"{address[client]}:{next(port)}"
        remote = f"{address[server]}:{service}"
        client.connect(cpid, "tcp", local, remote)
        server.connect(spid, "tcp", remote, local)

    link(web, 80, app, 10, 8000)  # nginx -> gunicorn
    link(web, 80, app, 10, 8000)
    link(app, 10, db1, 50, 5432)  # gunicorn -> postgres x3
    link(app, 10, db1, 50, 5432)
    link(app, 10, db1, 50, 5432)
    link(app, 10, db2, 50, 5432)
    link(app, 12, web, 22, 22)  # an admin session
    for target, pid in ((web, 91), (db1, 92), (db2, 93)):
        link(app, 11, target, pid, 9100)  # prometheus scrapes every node_exporter
    app.connect(10, "udp", "10.0.0.12:45000", "10.0.0.12:8125")  # statsd, on the machine itself
    app.connect(13, "udp", "10.0.0.12:8125", "10.0.0.12:45000")
    return [machine.build() for machine in (web, app, db1, db2)]


def view(only=(), exclude=(), group_by="process", groups=GROUPS):
    graph, notices = stitch_filtered(fleet(), group_by=group_by, filters=FilterSpec.parse(only, exclude, groups))
    return graph, notices


def names(graph):
    return {f"{node.host}:{node.comm}" for node in graph.nodes}


def services(graph):
    by_id = graph.nodes_by_id()
    return {
        (by_id[flow.client].comm, by_id[flow.server].comm, f"{flow.proto}/{flow.server_port}", flow.count)
        for flow in graph.flows
    }


def test_parse_terms():
    assert parse_term("5432").port == 5432 and parse_term("5432").proto is None
    term = parse_term("UDP/8125")
    assert (term.port, term.proto) == (8125, "udp")
    assert parse_term("10.0.0.0/24").network is not None
    assert parse_term("fd00::1").network is not None
    assert parse_term("db").port is None and parse_term("db").network is None
    for bad in ("", "0", "70000", "icmp/1", "tcp/0"):
        with pytest.raises(ValueError):
            parse_term(bad)
    assert [t.text for t in FilterSpec.parse(["sshd,prometheus"], []).only] == ["sshd", "prometheus"]


def test_exclude_a_process_hides_it_its_flows_and_what_only_it_talked_to():
    graph, notices = view(exclude=["prometheus"])
    assert not any(node.comm == "prometheus" for node in graph.nodes)
    # node_exporters only ever talked to prometheus: left without a flow, they go too
    assert not any(node.comm == "node_exporter" for node in graph.nodes)
    assert ("gunicorn", "postgres", "tcp/5432", 3) in services(graph)
    assert not any(port == "tcp/9100" for _, _, port, _ in services(graph))
    # an idle listener that no filter touched stays
    assert "db2:pgbouncer" in names(graph)
    assert notices[-1].startswith("filtered by --exclude prometheus: hidden 0 of 4 machines, 4 of ")
    assert graph.notes == notices[-1:]


def test_exclude_sshd_by_name_and_by_port_agree():
    by_name, _ = view(exclude=["sshd"])
    by_port, _ = view(exclude=["22"])
    assert "web1:sshd" not in names(by_name) and "web1:sshd" not in names(by_port)
    assert services(by_name) == services(by_port)
    assert not any(port == "tcp/22" for _, _, port, _ in services(by_name))
    assert "app1:ssh" not in names(by_name)  # its only flow went to sshd


def test_only_a_host_keeps_its_flows_and_the_peers_they_touch():
    graph, _ = view(only=["db1"])
    assert services(graph) == {("gunicorn", "postgres", "tcp/5432", 3), ("prometheus", "node_exporter", "tcp/9100", 1)}
    assert {host.name for host in graph.hosts} == {"app1", "db1"}
    assert "app1:ssh" not in names(graph) and "db2:postgres" not in names(graph)


def test_only_a_group_from_the_inventory():
    graph, _ = view(only=["db"])
    assert {host.name for host in graph.hosts} == {"app1", "db1", "db2"}
    assert ("gunicorn", "postgres", "tcp/5432", 1) in services(graph)
    assert "db2:pgbouncer" in names(graph)  # a node of a named machine stays, even idle
    without_groups, notices = view(only=["db"], groups={})
    assert without_groups.nodes == [] and "filter term 'db' matched nothing in this group" in notices


def test_only_a_port_keeps_that_service_and_its_idle_listeners():
    graph, _ = view(only=["5432"])
    assert {port for _, _, port, _ in services(graph)} == {"tcp/5432"}
    assert names(graph) == {"app1:gunicorn", "db1:postgres", "db2:postgres"}
    graph, _ = view(only=["6432"])
    assert names(graph) == {"db2:pgbouncer"} and graph.flows == []


def test_proto_port_tells_udp_from_tcp():
    graph, _ = view(only=["udp/8125"])
    assert services(graph) == {("gunicorn", "statsd", "udp/8125", 1)}
    graph, notices = view(only=["tcp/8125"])
    assert graph.flows == [] and "filter term 'tcp/8125' matched nothing in this group" in notices


def test_address_and_network_name_machines():
    graph, _ = view(only=["10.0.0.14"])
    assert {host.name for host in graph.hosts} == {"app1", "db2"}
    graph, _ = view(exclude=["10.0.0.12/31"])  # app1 and db1
    assert {host.name for host in graph.hosts} == {"web1", "db2"}
    assert graph.flows == []


def test_patterns_and_only_then_exclude():
    graph, _ = view(only=["db*"], exclude=["node_*"])
    assert services(graph) == {("gunicorn", "postgres", "tcp/5432", 3), ("gunicorn", "postgres", "tcp/5432", 1)}


def test_outside_counts_and_machines_are_never_rewritten():
    full, _ = view()
    graph, _ = view(exclude=["gunicorn"])
    before = {host.name: (host.outside_inbound, host.outside_outbound, host.unresolved) for host in full.hosts}
    after = {host.name: (host.outside_inbound, host.outside_outbound, host.unresolved) for host in graph.hosts}
    assert after == before


def test_ids_are_dense_and_flows_point_at_kept_nodes():
    graph, _ = view(exclude=["sshd", "web1"])
    assert [node.id for node in graph.nodes] == [f"n{i}" for i in range(1, len(graph.nodes) + 1)]
    assert [flow.id for flow in graph.flows] == [f"f{i}" for i in range(1, len(graph.flows) + 1)]
    ids = {node.id for node in graph.nodes}
    assert all(flow.client in ids and flow.server in ids for flow in graph.flows)
    assert "web1" not in {host.name for host in graph.hosts}


def test_group_by_host_filters_on_processes_first():
    graph, _ = view(exclude=["prometheus", "sshd", "ssh"], group_by="host")
    assert graph.group_by == "host"
    assert all(node.kind == "host" for node in graph.nodes)
    pairs = {(graph.node(flow.client).host, graph.node(flow.server).host, flow.server_port) for flow in graph.flows}
    assert pairs == {("web1", "app1", 8000), ("app1", "db1", 5432), ("app1", "db2", 5432), ("app1", "app1", 8125)}


def test_every_format_gets_the_filtered_graph():
    graph, _ = view(exclude=["prometheus"])
    for fmt in ("dot", "json", "table"):
        text = render(graph, fmt).decode()
        assert "prometheus" in text  # the note names the filter
        assert "node_exporter" not in text
    assert '"notes": [' in render(graph, "json").decode()


def test_an_empty_spec_changes_nothing():
    graph, notices = view()
    assert notices == [] and graph.notes == []
    assert apply_filters(graph, FilterSpec()).graph is graph

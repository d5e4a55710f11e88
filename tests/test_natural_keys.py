"""Natural keys: every machine, node, flow and listener of the JSON graph has a `key` that is the
same in every run where it is the same thing, while ids (n1, f1) are positional."""

from __future__ import annotations

import json

from snapbuilder import Machine

from netviz.graph import flow_natural_key, node_natural_key
from netviz.render import render
from netviz.stitch import stitch


def pair(extra_machine: bool = False, postgres_pid: int = 20) -> list:
    """web -> db:5432; optionally a machine `aaa` sorting first, which shifts every id."""
    web = Machine("web", "10.0.0.1")
    db = Machine("db", "10.0.0.2")
    web.process(10, "app")
    db.process(postgres_pid, "postgres")
    db.listen(postgres_pid, "tcp", "0.0.0.0:5432")
    web.connect(10, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(postgres_pid, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    snapshots = [web.build(), db.build()]
    if extra_machine:
        other = Machine("aaa", "10.0.0.9")
        other.process(5, "cron")
        other.listen(5, "tcp", "0.0.0.0:25")
        snapshots.append(other.build())
    return snapshots


def document(snapshots, group_by: str = "process") -> dict:
    return json.loads(render(stitch(snapshots, group_by=group_by), "json"))


def keyed(items: list[dict]) -> dict[str, dict]:
    return {item["key"]: item for item in items}


def test_keys_survive_a_machine_that_shifts_every_id():
    before, after = document(pair()), document(pair(extra_machine=True))
    flow_before, = before["flows"]
    flow_after, = after["flows"]
    assert flow_before["id"] == flow_after["id"] == "f1"
    assert flow_before["client"] != flow_after["client"]  # positional ids moved...
    assert flow_before["key"] == flow_after["key"] == "web|host|app>db|host|postgres|tcp|5432|"  # ...keys did not
    assert set(keyed(before["nodes"])) < set(keyed(after["nodes"]))
    assert [host["key"] for host in after["hosts"]] == ["aaa", "db", "web"]


def test_listener_key_names_the_port_not_the_process():
    postgres = keyed(document(pair())["nodes"])["db|host|postgres"]
    assert postgres["listening"] == [{"key": "db|host|tcp|0.0.0.0|5432", "proto": "tcp", "address": "0.0.0.0",
                                      "port": 5432}]
    replaced = keyed(document(pair(postgres_pid=99))["nodes"])["db|host|postgres"]
    assert replaced["listening"][0]["key"] == postgres["listening"][0]["key"]


def test_group_by_pid_keys_carry_the_pid():
    first = keyed(document(pair(), "pid")["nodes"])
    second = keyed(document(pair(postgres_pid=99), "pid")["nodes"])
    assert "db|host|postgres|20" in first and "db|host|postgres|99" in second
    assert "web|host|app|10" in first and "web|host|app|10" in second


def test_group_by_host_keys_are_machine_names():
    nodes = document(pair(), "host")["nodes"]
    assert sorted(node["key"] for node in nodes) == ["db", "web"]
    assert document(pair(), "host")["flows"][0]["key"] == "web>db|tcp|5432|"


def test_separators_inside_names_are_escaped_so_keys_cannot_collide():
    graph = stitch(pair())
    app = next(node for node in graph.nodes if node.comm == "app")
    app.comm = "a|b>c"
    assert node_natural_key(app, "process") == "web|host|a\\|b\\>c"
    flow = graph.flows[0]
    assert flow_natural_key(flow, "x|y", "z") != flow_natural_key(flow, "x", "y|z")


def test_a_container_namespace_is_part_of_the_key():
    gw = Machine("gw", "10.0.0.3")
    gw.namespace(7001, "172.17.0.2")
    gw.process(30, "api", netns=7001)
    gw.process(31, "api")
    gw.process(1, "init")  # pid 1 says which namespace is the machine's own
    gw.listen(30, "tcp", "0.0.0.0:80", netns=7001)
    gw.listen(31, "tcp", "0.0.0.0:80")
    keys = set(keyed(document([gw.build()])["nodes"]))
    assert keys == {"gw|7001|api", "gw|host|api"}

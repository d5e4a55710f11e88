"""The FlowGraph model: node keys per granularity, JSON document, summary, markers."""

from __future__ import annotations

import json

from snapbuilder import Machine

from netviz.graph import (
    GRAPH_SCHEMA,
    RANK_OUTSIDE,
    RANK_UNATTRIBUTED,
    Flow,
    FlowGraph,
    HostEntry,
    Ingress,
    Node,
    node_key,
    outside_key,
)
from netviz.stitch import stitch


def test_node_keys_per_granularity_sort_without_mixing_types():
    assert node_key("process", 0, 812, "nginx") == (0, 0, "nginx")
    assert node_key("pid", 0, 812, "nginx") == (0, 0, 812)
    assert node_key("host", 3, 812, "nginx") == (3, 0, 0)
    assert node_key("process", 0, None, "") == (0, RANK_UNATTRIBUTED, "")
    assert node_key("pid", 0, None, "") == (0, RANK_UNATTRIBUTED, 0)
    assert outside_key("pid", 2) == (2, RANK_OUTSIDE, "")
    assert outside_key("process", 2, "203.0.113.9") == (2, RANK_OUTSIDE, "203.0.113.9")
    # a command in a container's namespace is a node apart from the same command on the machine
    assert node_key("process", 0, 812, "nginx", "4026532281") != node_key("process", 0, 813, "nginx")
    assert node_key("pid", 0, 812, "nginx", "4026532281") == (0, 0, 812)
    for group_by in ("process", "pid", "host"):
        keys = [node_key(group_by, 0, pid, comm) for pid, comm in ((5, "b"), (None, ""), (2, "a"))]
        keys.append(outside_key(group_by, 0))
        sorted(keys)  # must not raise TypeError


def test_to_json_dict_is_plain_json_with_summary():
    graph = FlowGraph(
        group_by="pid",
        hosts=[HostEntry("h", "h", None, ("10.0.0.1",), 1.0, False, True, False, 2, 1, 4)],
        nodes=[
            Node("n1", "h", "process", "a", pids=(1,), users=("root",), ingress=(Ingress("raw", 1),)),
            Node("n2", "h", "process", "b", pids=(2,), contexts=("unconfined_u:unconfined_r:unconfined_t:s0",)),
        ],
        flows=[Flow("f1", "n1", "n2", "tcp", 80, "10.0.0.1", 3, client_pids=(1,), server_pids=(2,))],
    )
    document = json.loads(json.dumps(graph.to_json_dict()))
    assert document["schema"] == GRAPH_SCHEMA
    assert document["summary"] == {"hosts": 1, "nodes": 2, "flows": 1, "connections": 3, "outside": 3, "unresolved": 4}
    assert document["hosts"][0]["outside"] == {"inbound": 2, "outbound": 1}
    assert document["nodes"][0]["ingress"] == [{"kind": "raw", "protocol": 1, "interface": None}]
    assert graph.node("n1").is_root and not graph.node("n2").is_root
    assert graph.node("n2").is_unconfined and not graph.node("n1").is_unconfined


def test_stale_machines_are_marked():
    graph = stitch([Machine("a", "10.0.0.1").build(), Machine("b", "10.0.0.2").build()], stale={"b"})
    assert [(host.name, host.stale) for host in graph.hosts] == [("a", False), ("b", True)]


def test_host_addresses_are_the_main_namespace_global_ones():
    box = Machine("box", "10.0.0.1", "fd00::1", "fe80::1", "172.17.0.1")
    box.namespace(7001, "172.17.0.2")
    box.process(1, "systemd")
    graph = stitch([box.build()])
    assert graph.hosts[0].addresses == ("10.0.0.1", "172.17.0.1", "fd00::1")


def test_ids_follow_sorted_order():
    a = Machine("a", "10.0.0.1")
    a.process(3, "zeta")
    a.process(1, "alpha")
    a.listen(3, "tcp", "0.0.0.0:1")
    a.listen(1, "tcp", "0.0.0.0:2")
    a.listen(None, "tcp", "0.0.0.0:3")
    graph = stitch([a.build()])
    assert [(node.id, node.comm) for node in graph.nodes] == [("n1", "alpha"), ("n2", "zeta"), ("n3", "(unattributed)")]

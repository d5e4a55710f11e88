"""The union of several stitched graphs by natural key (netviz.graph): one machine, node or flow
for each key any of them holds, and the graphs each was seen in.

A diff map (two runs) and a period map (`stitch --since`, every run of the period) are both
drawn from such a union. Pure: graphs in, a graph out; the later graph's facts win (the newest
run says what a process is now), and ids are made dense again (n1.., f1..) in a stable order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

from netviz.graph import KIND_HOST, KIND_OUTSIDE, Flow, FlowGraph, HostEntry, Node

_KIND_ORDER = {KIND_HOST: 0, KIND_OUTSIDE: 2}


@dataclass
class Union:
    """The union graph, and for each key the indices of the graphs that held it."""

    graph: FlowGraph
    hosts_in: dict[str, set[int]] = field(default_factory=dict)
    nodes_in: dict[str, set[int]] = field(default_factory=dict)
    flows_in: dict[str, set[int]] = field(default_factory=dict)
    flows_by_graph: list[dict[str, Flow]] = field(default_factory=list)  # each graph's flows by key


def union(graphs: Sequence[FlowGraph]) -> Union:
    """One graph of every machine, node and flow the graphs hold, by natural key."""
    if not graphs:
        return Union(FlowGraph(group_by="process"))
    result = Union(FlowGraph(group_by=graphs[-1].group_by))
    hosts: dict[str, HostEntry] = {}
    nodes: dict[str, Node] = {}
    flows: dict[str, tuple[Flow, str, str]] = {}  # key -> flow, client key, server key
    for index, graph in enumerate(graphs):
        for host in graph.hosts:
            key = host.key or host.name
            hosts[key] = host
            result.hosts_in.setdefault(key, set()).add(index)
        keys = {}
        for node in graph.nodes:
            nodes[node.key] = node
            keys[node.id] = node.key
            result.nodes_in.setdefault(node.key, set()).add(index)
        own: dict[str, Flow] = {}
        for flow in graph.flows:
            flows[flow.key] = (flow, keys[flow.client], keys[flow.server])
            result.flows_in.setdefault(flow.key, set()).add(index)
            own[flow.key] = flow
        result.flows_by_graph.append(own)
    host_list = sorted(hosts.values(), key=lambda host: host.name)
    rank = {host.name: number for number, host in enumerate(host_list)}
    node_list = sorted(nodes.values(), key=lambda node: (rank.get(node.host, len(rank)),
                                                         _KIND_ORDER.get(node.kind, 1), node.key))
    ids = {node.key: f"n{number}" for number, node in enumerate(node_list, start=1)}
    order = {node.key: number for number, node in enumerate(node_list)}
    flow_list = sorted(flows.values(), key=lambda item: (order[item[1]], order[item[2]], item[0].proto,
                                                         item[0].server_port, item[0].key))
    result.graph.hosts = [dataclasses.replace(host) for host in host_list]
    result.graph.nodes = [dataclasses.replace(node, id=ids[node.key]) for node in node_list]
    result.graph.flows = [dataclasses.replace(flow, id=f"f{number}", client=ids[client], server=ids[server])
                          for number, (flow, client, server) in enumerate(flow_list, start=1)]
    return result

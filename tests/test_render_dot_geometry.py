"""Static maps that do not mislead, read from the layout the real Graphviz computes
(tests/dot_geometry.py): no edge through an unrelated node, no label over another or over a
node, every label by its own edge. On a small map built like a real stack and on the golden
fleet map."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest
from dot_geometry import crossings, distant_labels, label_overlaps, parse, problems, run_dot
from snapbuilder import Machine
from test_render_golden import fleet

from netviz.render.dot import render_dot
from netviz.render.legend import STYLES, legend_meanings
from netviz.stitch import stitch

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")


class Ports:
    """Ephemeral client ports, one per connection."""

    def __init__(self) -> None:
        self.next = 40000

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _tcp(ports: Ports, client: Machine, client_pid: int, client_address: str, server: Machine, server_pid: int,
         server_address: str, port: int, count: int = 1, *, client_netns: int | None = None,
         server_netns: int | None = None, captured: bool = True) -> None:
    """`count` TCP connections from client_pid to server_pid's port, both ends captured."""
    for _ in range(count):
        local = ports()
        extra_client = {"netns": client_netns} if client_netns else {}
        extra_server = {"netns": server_netns} if server_netns else {}
        client.connect(client_pid, "tcp", f"{client_address}:{local}", f"{server_address}:{port}", **extra_client)
        if captured:
            server.connect(server_pid, "tcp", f"{server_address}:{port}", f"{client_address}:{local}", **extra_server)


def stack() -> list:
    """Four machines as a real stack runs: haproxy on lb in front of nginx on app1 and app2;
    gunicorn behind nginx on app1, an api in a container namespace on app2 (socat on the host
    and in the container), pgbouncer and postgres on db; sshd, consul and node_exporter on
    every machine, prometheus on db scraping them; ping's raw sockets, dhclient's packet socket;
    an undirected flow (no listener) and an inferred one (a server end not captured)."""
    ports = Ports()
    lb, app1, app2, db = (Machine("lb", "10.0.0.10"), Machine("app1", "10.0.0.11"),
                          Machine("app2", "10.0.0.12", "172.17.0.1"), Machine("db", "10.0.0.13"))
    machines = {"lb": (lb, "10.0.0.10"), "app1": (app1, "10.0.0.11"), "app2": (app2, "10.0.0.12"),
                "db": (db, "10.0.0.13")}
    for machine, _ in machines.values():
        machine.process(2, "sshd", user="root")
        machine.listen(2, "tcp", "0.0.0.0:22")
        machine.process(3, "consul", user="consul")
        machine.listen(3, "tcp", "0.0.0.0:8301")
        machine.process(4, "node_exporter", user="nobody")
        machine.listen(4, "tcp", "0.0.0.0:9100")
    order = list(machines.values())
    for (client, client_address), (server, server_address) in zip(order, order[1:] + order[:1]):
        _tcp(ports, client, 3, client_address, server, 3, server_address, 8301)
    # lb: haproxy (master root, workers haproxy) to both nginx; ping with raw sockets
    lb.process(100, "haproxy", user="root")
    lb.process(101, "haproxy", user="haproxy")
    lb.listen([100, 101], "tcp", "0.0.0.0:80")
    lb.listen([100, 101], "tcp", "0.0.0.0:443")
    lb.process(110, "ping", user="root")
    lb.socket(110, "raw", None, local_port=0, protocol=1)
    lb.socket(110, "raw6", None, local_port=0, protocol=58)
    for server, address in ((app1, "10.0.0.11"), (app2, "10.0.0.12")):
        server.process(200, "nginx", user="root")
        server.process(201, "nginx", user="www-data")
        server.listen([200, 201], "tcp", "0.0.0.0:8000")
        _tcp(ports, lb, 101, "10.0.0.10", server, 201, address, 8000, 3)
    # app1: nginx -> gunicorn (loopback) -> redis (loopback) and pgbouncer on db; dhclient
    app1.process(300, "gunicorn", user="www-data")
    app1.listen(300, "tcp", "127.0.0.1:9000")
    _tcp(ports, app1, 201, "127.0.0.1", app1, 300, "127.0.0.1", 9000, 4)
    app1.process(310, "redis-server", user="redis")
    app1.listen(310, "tcp", "127.0.0.1:6379")
    _tcp(ports, app1, 300, "127.0.0.1", app1, 310, "127.0.0.1", 6379, 2)
    app1.process(320, "dhclient", user="root")
    app1.socket(320, "packet", None, local_port=0, protocol=0x0800, interface="eth0")
    # app2: nginx -> api in a container; socat on the host to socat in the container
    app2.namespace(7001, "172.17.0.2")
    app2.process(400, "api", user="nobody", netns=7001)
    app2.listen(400, "tcp", "0.0.0.0:9000", netns=7001)
    _tcp(ports, app2, 201, "172.17.0.1", app2, 400, "172.17.0.2", 9000, 2, server_netns=7001)
    app2.process(410, "socat", user="root")
    app2.process(411, "socat", user="root", netns=7001)
    app2.listen(411, "tcp", "0.0.0.0:7000", netns=7001)
    _tcp(ports, app2, 410, "172.17.0.1", app2, 411, "172.17.0.2", 7000, server_netns=7001)
    # db: pgbouncer -> postgres; prometheus scrapes every node_exporter (app2's end not captured)
    db.process(500, "pgbouncer", user="pgbouncer")
    db.listen(500, "tcp", "0.0.0.0:6432")
    db.process(510, "postgres", user="postgres", context="unconfined")
    db.process(511, "postgres", user="postgres", context="unconfined")
    db.listen([510, 511], "tcp", "127.0.0.1:5432")
    _tcp(ports, app1, 300, "10.0.0.11", db, 500, "10.0.0.13", 6432, 5)
    _tcp(ports, app2, 400, "172.17.0.1", db, 500, "10.0.0.13", 6432, captured=False)
    _tcp(ports, db, 500, "127.0.0.1", db, 511, "127.0.0.1", 5432, 5)
    db.process(520, "prometheus", user="nobody")
    for name, (server, address) in machines.items():
        client_address = "127.0.0.1" if name == "db" else "10.0.0.13"
        target = "127.0.0.1" if name == "db" else address
        _tcp(ports, db, 520, client_address, server, 4, target, 9100, captured=name != "app2")
    # db's rsync talks to app1's rsync on a port neither listens on: no direction
    db.process(530, "rsync", user="backup")
    app1.process(330, "rsync", user="backup")
    db.connect(530, "tcp", "10.0.0.13:41873", "10.0.0.11:41874")
    app1.connect(330, "tcp", "10.0.0.11:41874", "10.0.0.13:41873")
    snapshots = [machine.build() for machine, _ in machines.values()]
    return [dataclasses.replace(snapshot, namespaces=tuple(
        dataclasses.replace(ns, name="api-1") if ns.inode == 7001 else ns for ns in snapshot.namespaces))
        for snapshot in snapshots]


def stack_graph():
    return stitch(stack())


def test_the_stack_has_what_a_real_one_has():
    graph = stack_graph()
    comms = [node.comm for node in graph.nodes]
    assert comms.count("sshd") == 4 and comms.count("node_exporter") == 4 and comms.count("socat") == 2
    assert any(node.netns_name == "api-1" for node in graph.nodes)
    assert any(not flow.directed for flow in graph.flows) and any(flow.inferred for flow in graph.flows)
    assert len(graph.nodes) >= 18


def _node(name: str, x: float, y: float) -> dict:
    return {"name": name, "pos": f"{x},{y}", "width": "1", "height": "0.5"}  # 72 x 36 points


def _edge(tail: int, head: int, points: list, label_at: tuple) -> dict:
    return {"tail": tail, "head": head, "_draw_": [{"op": "b", "points": points}],
            "_ldraw_": [{"op": "F", "size": 9.0, "face": "Helvetica"},
                        {"op": "T", "pt": list(label_at), "align": "c", "width": 40.0, "text": "tcp/8000"}]}


def test_the_checker_sees_what_misleads():
    """The checker can fail: an edge through a third node, labels over each other and over a
    node, a label far from its edge (a hand-made layout, as `dot -Tjson` writes one)."""
    straight = [[36, 0], [100, 0], [200, 0], [264, 0]]  # a -> b, through c at (150, 0)
    layout = parse({"objects": [_node("a", 0, 0), _node("b", 300, 0), _node("c", 150, 0), _node("d", 150, 200)],
                    "edges": [_edge(0, 1, straight, (80, 4)), _edge(0, 1, straight, (85, 6)),
                              _edge(0, 3, [[36, 0], [80, 60], [120, 140], [150, 182]], (250, 100))]})
    assert crossings(layout) == ["edge a -> b passes through node c"] * 2
    overlaps = label_overlaps(layout)
    assert "label of a -> b overlaps label of a -> b" in overlaps
    assert distant_labels(layout) == ["label of a -> d is 76 pt from its edge"] or \
        any("a -> d" in problem for problem in distant_labels(layout))
    clean = parse({"objects": [_node("a", 0, 0), _node("b", 300, 0)],
                   "edges": [_edge(0, 1, straight, (150, 4))]})
    assert crossings(clean) == label_overlaps(clean) == distant_labels(clean) == []
    near_node = parse({"objects": [_node("a", 0, 0), _node("b", 300, 0)], "edges": [_edge(0, 1, straight, (40, 4))]})
    assert label_overlaps(near_node) == ["label of a -> b overlaps node a"]


@needs_dot
@pytest.mark.parametrize("name, graph", [("stack", stack_graph), ("fleet", lambda: stitch(fleet(), show_external=True))])
def test_the_map_does_not_mislead(name, graph):
    assert problems(render_dot(graph())) == []


# ------------------------------------------------------------------ the legend

def styles_in(source: str) -> set[str]:
    """The legend keys a DOT text needs, read from its statements (the legend's own excepted)."""
    lines = [line for line in source.splitlines() if not line.strip().startswith("legend ")]
    edges = [line for line in lines if " -> " in line]
    nodes = [line for line in lines if line.strip().startswith("n") and "[label=" in line and " -> " not in line]
    found = {
        "edge": bool(edges),
        "edge-width": any("penwidth" in line for line in edges),
        "edge-undirected": any("dir=none" in line for line in edges),
        "edge-short-lived": any('style="dashed"' in line and "dir=none" not in line for line in edges),
        "edge-inferred": any("dotted" in line for line in edges),
        "node-ingress": any("peripheries=2" in line for line in nodes),
        "node-unowned": any('style="rounded,dashed"' in line for line in nodes),
        "node-machine": any("shape=box3d" in line for line in nodes),
        "node-outside": any("shape=ellipse" in line for line in nodes),
        "namespace": any(line.strip().startswith("subgraph cluster_") and line.count("_") == 2 for line in lines),
        "unconfined": any('<FONT COLOR="red">' in line for line in nodes),
    }
    return {key for key, present in found.items() if present}


def legend_texts(svg: str) -> list[str]:
    """The text lines of the legend node in an SVG drawn by Graphviz."""
    root = ElementTree.fromstring(svg)
    namespace = "{http://www.w3.org/2000/svg}"
    for group in root.iter(f"{namespace}g"):
        title = group.find(f"{namespace}title")
        if group.get("class") == "node" and title is not None and title.text == "legend":
            return ["".join(text.itertext()) for text in group.iter(f"{namespace}text")]
    return []


@needs_dot
def test_the_legend_lists_exactly_the_styles_the_map_uses():
    maps = {"stack": stack_graph(), "fleet": stitch(fleet(), show_external=True),
            "fleet by host": stitch(fleet(), group_by="host")}
    seen = {}
    for name, graph in maps.items():
        source = render_dot(graph)
        styles = styles_in(source)
        svg = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True, check=True).stdout
        shown = [text for text in legend_texts(svg) if text in set(legend_meanings(STYLES))]
        assert shown == legend_meanings(styles), name
        seen[name] = styles
    # the maps differ: each legend lists what its own map draws and nothing of the other's
    assert "node-outside" in seen["fleet"] and "node-outside" not in seen["stack"]
    assert "edge-inferred" in seen["stack"] and "node-ingress" in seen["stack"]
    assert "node-machine" in seen["fleet by host"] and "namespace" not in seen["fleet by host"]


def test_root_is_written_not_coloured():
    source = render_dot(stack_graph())
    haproxy = next(line for line in source.splitlines() if "<B>haproxy</B>" in line)
    assert "user root" in haproxy and "color=red" not in haproxy and 'COLOR="red"' not in haproxy
    # red is left for the rare unconfined context: postgres only
    assert [line for line in source.splitlines() if 'COLOR="red"' in line and not line.strip().startswith("legend")] \
        == [line for line in source.splitlines() if "<B>postgres</B>" in line]


def test_no_legend_when_asked_or_nothing_is_drawn():
    assert "legend [" not in render_dot(stack_graph(), legend=False)
    from snapbuilder import Machine as Quiet
    assert "legend [" not in render_dot(stitch([Quiet("quiet", "10.0.0.1").build()]))


@needs_dot
def test_the_machine_overview_of_a_fleet_has_no_label_over_another_or_over_a_machine():
    """Past eight machines the default picture is one node per machine: Graphviz must draw it
    with no edge through a machine it does not join and no label over a label or a machine."""
    from benchmarks.synth import make_fleet
    from netviz.aggregate import static_view
    from netviz.snapshot import parse_snapshot

    documents = make_fleet(200, 200, seed=1)  # the fleet of benchmarks/bench_render.py
    graph = stitch([parse_snapshot(document, source=f"synthetic {i}") for i, document in enumerate(documents)])
    view = static_view(graph)
    assert view.notice.startswith("overview")
    layout = parse(run_dot(render_dot(view.graph, bundle_edges=True)))
    assert sum(1 for edge in layout.edges if edge.label) == len(layout.edges) > 40
    assert crossings(layout) == []
    assert [problem for problem in label_overlaps(layout) if "crossed by" not in problem] == []

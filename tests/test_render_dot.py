"""DOT output: valid for hostile names (checked by the real Graphviz), marked as documented."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest
from snapbuilder import Machine

from netviz.render.dot import render_dot
from netviz.stitch import stitch
from netviz.textsafe import for_terminal

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")

HOSTILE = [
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "new\nline",
    "\\N",
    "\\G",
    "\\E\\T\\H\\L\\n\\l\\r",
    "<b>bold</b>",
    "<TABLE><TR><TD>x</TD></TR></TABLE>",
    "{braces}",
    "a -> b",
    "graph",
    "node",
    "subgraph",
    "digraph",
    "strict edge",
    '"]; evil -> n1 [label="x',
    "bad\\xff\\xfename",  # non-UTF-8 bytes, as the snapshot writes them (backslashreplace)
    "&amp; &lt;&#65;",
    "tab\there",
    "ünïcödé 🚀",
    "-- // /* c */ #",
]


def svg_texts(svg: bytes) -> list[str]:
    root = ElementTree.fromstring(svg)
    return ["".join(element.itertext()) for element in root.iter("{http://www.w3.org/2000/svg}text")]


def hostile_group() -> list:
    snapshots = []
    for number, name in enumerate(HOSTILE):
        machine = Machine(name, f"10.0.{number}.1")
        machine.process(100, name, user=name, context=name)
        machine.listen(100, "tcp", "0.0.0.0:80")
        snapshots.append(machine.build())
    return snapshots


@needs_dot
def test_hostile_names_survive_real_graphviz_and_stay_readable():
    graph = stitch(hostile_group())
    source = render_dot(graph)
    result = subprocess.run(["dot", "-Tsvg"], input=source.encode("utf-8"), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Warning" not in result.stderr and b"Error" not in result.stderr, result.stderr.decode()
    texts = svg_texts(result.stdout)
    for name in HOSTILE:
        shown = for_terminal(name, limit=120)
        assert shown in texts, f"{name!r} not readable in the SVG"
        assert f"<B>{shown}</B>" not in texts  # markup in names stays text
    # cluster labels, user and context lines carry the names too
    assert sum(1 for text in texts if text.startswith("user ")) == len(HOSTILE)


def test_node_ids_are_generated_and_names_never_reach_dot_syntax():
    graph = stitch(hostile_group())
    source = render_dot(graph)
    structural = [line for line in source.splitlines() if "label=" not in line]
    for line in structural:
        for name in HOSTILE:
            if any(char in name for char in '"<{-;\\'):
                assert name not in line
    ids = sorted(line.split()[0] for line in source.splitlines() if line.strip().startswith("n") and "[label=" in line)
    assert ids == sorted(node.id for node in graph.nodes)


def test_unconfined_is_red_root_only_written_ingress_marked_edges_labelled():
    box = Machine("box", "10.0.0.1")
    other = Machine("other", "10.0.0.2")
    box.process(1, "sshd", user="root", context="unconfined")
    box.process(2, "tcpdump", user="tcpdump", context="system_u:system_r:netutils_t:s0")
    box.socket(2, "packet", None, local_port=0, protocol=3, interface="eth0")
    box.listen(1, "tcp", "0.0.0.0:22")
    other.process(3, "ssh", user="alice")
    for port in (40000, 40001, 40002):
        other.connect(3, "tcp", f"10.0.0.2:{port}", "10.0.0.1:22")
        box.connect(1, "tcp", "10.0.0.1:22", f"10.0.0.2:{port}")
    graph = stitch([box.build(), other.build()])
    source = render_dot(graph)
    sshd = next(node for node in graph.nodes if node.comm == "sshd")
    tcpdump = next(node for node in graph.nodes if node.comm == "tcpdump")
    ssh = next(node for node in graph.nodes if node.comm == "ssh")
    sshd_line = next(line for line in source.splitlines() if line.strip().startswith(f"{sshd.id} ["))
    assert "<BR/>user root<BR/>" in sshd_line and "color=red" not in sshd_line  # root is too common to colour
    assert '<FONT COLOR="red">unconfined</FONT>' in sshd_line
    tcpdump_line = next(line for line in source.splitlines() if line.strip().startswith(f"{tcpdump.id} ["))
    assert "ingress packet eth0 proto 3" in tcpdump_line and "peripheries=2" in tcpdump_line
    assert 'COLOR="red"' not in tcpdump_line
    assert f"{ssh.id} -> {sshd.id} [label=<tcp/22 ×3>" in source
    assert "subgraph cluster_1 {" in source and "label=<<B>box</B><BR/>10.0.0.1>" in source


def test_undirected_and_inferred_edges_are_marked():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, "peer")
    b.process(2, "peer")
    b.process(3, "server")
    b.listen(3, "tcp", "0.0.0.0:9000")
    a.connect(1, "tcp", "10.0.0.1:7000", "10.0.0.2:7001")
    b.connect(2, "tcp", "10.0.0.2:7001", "10.0.0.1:7000")
    a.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:9000")  # b's end not captured
    source = render_dot(stitch([a.build(), b.build()]))
    assert 'dir=none, style="dashed"' in source and "(no listener)" in source
    assert 'label=<tcp/9000 inferred>, style="dotted"' in source


def test_machine_without_flows_still_gets_a_cluster():
    source = render_dot(stitch([Machine("quiet", "10.0.0.1").build()]))
    assert "subgraph cluster_1 {" in source and 'empty_1 [label="no flows"' in source


@needs_dot
def test_a_container_namespace_is_a_box_inside_its_machine_for_the_real_dot():
    """Graphviz itself reads the namespace as a cluster nested in the machine's, holding the
    container's process and not the machine's process of the same name."""
    import dataclasses
    import json

    box = Machine("box", "10.0.0.2", "172.17.0.1")
    box.namespace(7001, "172.17.0.2")
    box.process(1, "systemd")
    box.process(50, "socat")
    box.process(60, "socat", netns=7001)
    box.listen(60, "tcp", "0.0.0.0:80", netns=7001)
    box.connect(50, "tcp", "172.17.0.1:40000", "172.17.0.2:80")
    box.connect(60, "tcp", "172.17.0.2:80", "172.17.0.1:40000", netns=7001)
    snapshot = box.build()
    snapshot = dataclasses.replace(snapshot, namespaces=tuple(
        dataclasses.replace(ns, name="web<1>") if ns.inode == 7001 else ns for ns in snapshot.namespaces))
    graph = stitch([snapshot])
    container = next(node for node in graph.nodes if node.netns)
    layout = json.loads(subprocess.run(["dot", "-Tjson"], input=render_dot(graph), capture_output=True,
                                       text=True, check=True).stdout)
    clusters = {obj["name"]: obj for obj in layout["objects"] if obj["name"].startswith("cluster")}
    inner = clusters["cluster_1_1"]
    assert "netns web&lt;1&gt;" in inner["label"] or "netns web<1>" in inner["label"], inner["label"]
    members = {layout["objects"][index]["name"] for index in inner["nodes"]}
    assert members == {container.id}
    outer = {layout["objects"][index]["name"] for index in clusters["cluster_1"]["nodes"]}
    assert container.id in outer and len(outer) == 2  # the machine's socat beside the box

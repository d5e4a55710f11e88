"""SVG/PNG through the real Graphviz: output, missing tool, time limit, engine switch."""

from __future__ import annotations

import shutil

import pytest
from snapbuilder import Machine

from netviz.errors import RenderError
from netviz.render import image, render
from netviz.stitch import stitch

needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None or shutil.which("sfdp") is None,
    reason="Graphviz is not installed (apt-get install graphviz)",
)


def small_graph():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, "client")
    b.process(2, "server")
    b.listen(2, "tcp", "0.0.0.0:80")
    a.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:80")
    b.connect(2, "tcp", "10.0.0.2:80", "10.0.0.1:40000")
    return stitch([a.build(), b.build()])


def chain_dot(nodes: int) -> str:
    lines = ["digraph g {"]
    lines += [f"  x{i} -> x{(i * 7 + 3) % nodes}; x{i} -> x{(i * 13 + 5) % nodes};" for i in range(nodes)]
    return "\n".join(lines + ["}"])


@needs_graphviz
def test_svg_and_png_come_from_graphviz():
    graph = small_graph()
    svg = render(graph, "svg")
    assert b"<svg" in svg and b"client" in svg and b"server" in svg
    assert render(graph, "png").startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_graphviz_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no dot anywhere
    with pytest.raises(RenderError) as caught:
        render(small_graph(), "svg")
    assert "graphviz" in str(caught.value) and "apt-get install graphviz" in str(caught.value)


@needs_graphviz
def test_layout_past_the_time_limit_is_killed_and_reported():
    with pytest.raises(RenderError) as caught:
        image.render_image(chain_dot(3000), "svg", node_count=3000, timeout=0.2, engine="dot")
    assert "did not finish within" in str(caught.value)


@needs_graphviz
def test_large_graphs_switch_to_sfdp_and_say_so(monkeypatch):
    assert image.layout_engine(image.DOT_NODE_LIMIT) == "dot"
    assert image.layout_engine(image.DOT_NODE_LIMIT + 1) == "sfdp"
    monkeypatch.setattr(image, "DOT_NODE_LIMIT", 1)
    notices: list[str] = []
    svg = render(small_graph(), "svg", on_notice=notices.append)
    assert b"<svg" in svg
    assert len(notices) == 1 and "sfdp" in notices[0]


@needs_graphviz
def test_graphviz_failure_is_a_render_error():
    with pytest.raises(RenderError) as caught:
        image.render_image("digraph { a -> }", "svg", node_count=1)
    assert "failed" in str(caught.value)


def test_unknown_format_is_a_render_error():
    with pytest.raises(RenderError):
        render(small_graph(), "gif")

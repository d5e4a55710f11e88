"""The HTML page as text: self-contained, safely embedded graph, script hashes, layout."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from netviz.render.html import compute_layout, embed_json, render_html, render_html_graph
from tests.browser.graphs import HOSTILE_COMMS, GraphBuilder, lab_like_graph, synthetic_graph


class PageParts(HTMLParser):
    """Collects the tags, attributes, scripts and title text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, Any]]] = []
        self.scripts: list[tuple[dict[str, Any], str]] = []
        self.title = ""
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "title"):
            self._in = tag
            if tag == "script":
                self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data


def parse(page: str) -> PageParts:
    parts = PageParts()
    parts.feed(page)
    parts.close()
    return parts


@pytest.fixture(scope="module")
def hostile_page() -> tuple[dict[str, Any], str]:
    doc = lab_like_graph(hostile=True)
    return doc, render_html(doc, title="lab </title><script>window.__pwned=9</script>")


def test_page_needs_nothing_from_outside(hostile_page: tuple[dict[str, Any], str]) -> None:
    _, page = hostile_page
    parts = parse(page)
    for tag, attrs in parts.tags:
        assert "src" not in attrs and "href" not in attrs, f"<{tag}> loads something: {attrs}"
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
    assert [attrs.get("type") for attrs, _ in parts.scripts] == ["application/json", None, None]


def test_hostile_names_stay_data(hostile_page: tuple[dict[str, Any], str]) -> None:
    doc, page = hostile_page
    parts = parse(page)
    # Exactly the three script blocks of the template: no name opened or closed one.
    assert len(re.findall(r"<script", page, flags=re.IGNORECASE)) == 3
    assert len(re.findall(r"</script", page, flags=re.IGNORECASE)) == 3
    assert "<!--" not in page
    for comm in HOSTILE_COMMS:
        assert comm not in page
    assert "\u2028" not in page and "\u2029" not in page
    assert parts.title == "lab </title><script>window.__pwned=9</script>"
    # The data block reads back as exactly the document.
    payload = json.loads(parts.scripts[0][1])
    assert payload["graph"] == doc
    assert payload["title"] == "lab </title><script>window.__pwned=9</script>"


def test_template_markers_in_names_are_not_expanded() -> None:
    g = GraphBuilder()
    host = g.host("@@APP@@", ["10.0.0.1"])
    g.process(host, "@@LIBRARY@@", [1])
    page = render_html(g.build(), title="@@DATA@@")
    assert page.count("cytoscape") >= 1
    assert "<title>@@DATA@@</title>" in page
    payload = json.loads(parse(page).scripts[0][1])
    assert payload["graph"]["nodes"][0]["comm"] == "@@LIBRARY@@"


def test_policy_allows_exactly_the_inline_scripts(hostile_page: tuple[dict[str, Any], str]) -> None:
    _, page = hostile_page
    parts = parse(page)
    policy = next(attrs["content"] for tag, attrs in parts.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    allowed = set(re.findall(r"'sha256-([A-Za-z0-9+/=]+)'", policy))
    executable = [text for attrs, text in parts.scripts if attrs.get("type") is None]
    digests = {base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() for text in executable}
    assert digests == allowed and len(allowed) == 2
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy
    assert "unsafe-eval" not in policy and "unsafe-inline" not in policy.split("style-src")[0]


@pytest.mark.parametrize("text", ["</script>", "<!--", "a&b", "\u2028\u2029", "\ud800", "é"])
def test_embed_json_round_trips_without_markup(text: str) -> None:
    embedded = embed_json({"name": text})
    assert not set("<>&\u2028\u2029") & set(embedded)
    assert embedded.isascii()
    assert json.loads(embedded) == {"name": text}


def test_render_html_graph_uses_the_documents_json() -> None:
    doc = lab_like_graph(hostile=False)

    class Graph:
        def to_json_dict(self) -> dict[str, Any]:
            return doc

    assert render_html_graph(Graph()) == render_html(doc)


def boxes_overlap(a: list[float], b: list[float]) -> bool:
    return abs(a[0] - b[0]) * 2 < a[2] + b[2] and abs(a[1] - b[1]) * 2 < a[3] + b[3]


def test_layout_puts_processes_inside_their_machine_and_machines_apart() -> None:
    doc = synthetic_graph(machines=60, processes=900, seed=3)
    layout = compute_layout(doc)
    assert set(layout["nodes"]) == {node["id"] for node in doc["nodes"]}
    assert set(layout["machines"]) == {host["name"] for host in doc["hosts"]}
    for node in doc["nodes"]:
        x, y = layout["nodes"][node["id"]]
        cx, cy, width, height = layout["machines"][node["host"]]
        assert abs(x - cx) < width / 2 and abs(y - cy) < height / 2, node["id"]
    seen = set()
    for node in doc["nodes"]:
        spot = tuple(layout["nodes"][node["id"]])
        assert spot not in seen
        seen.add(spot)
    boxes = list(layout["machines"].values())
    for index, box in enumerate(boxes):
        for other in boxes[index + 1:]:
            assert not boxes_overlap(box, other)
    # Deterministic: the same document gives the same positions.
    assert compute_layout(doc) == layout


def test_layout_of_a_machine_level_graph_and_of_empty_machines() -> None:
    g = GraphBuilder(group_by="host")
    a = g.host("a", ["10.0.0.1"])
    g.host("empty", ["10.0.0.2"])
    node = g.process(a, "a", [], kind="host")
    layout = compute_layout(g.build())
    assert layout["nodes"][node] == layout["machines"]["a"][:2]
    assert "empty" in layout["machines"]
    assert compute_layout({"hosts": [], "nodes": [], "flows": []}) == {"nodes": {}, "machines": {}, "ring": {}}


def test_ring_puts_hosts_that_talk_side_by_side() -> None:
    """The host view's order: each host follows the ones it talks to most, whatever their names."""
    g = GraphBuilder()
    names = ["a", "b", "c", "d", "e", "f"]
    procs = {name: g.process(g.host(name, [f"10.0.0.{i}"]), "app", [i]) for i, name in enumerate(names)}
    # Two cliques that never talk to each other: {a, c, e} and {b, d, f}.
    for x, y in (("a", "c"), ("c", "e"), ("a", "e"), ("b", "d"), ("d", "f"), ("b", "f")):
        g.flow(procs[x], procs[y], "tcp", 80, "10.0.0.1", count=5)
    ring = compute_layout(g.build())["ring"]
    order = sorted(ring, key=lambda name: ring[name][2])
    assert sorted([sorted(order[:3]), sorted(order[3:])]) == [["a", "c", "e"], ["b", "d", "f"]], order
    # Evenly spaced on one circle, far enough apart for a label line each.
    radii = {round((x * x + y * y) ** 0.5, 1) for x, y, _ in ring.values()}
    assert len(radii) == 1 and radii.pop() >= 6 * 22 / (2 * 3.1416)
    assert compute_layout(g.build())["ring"] == ring

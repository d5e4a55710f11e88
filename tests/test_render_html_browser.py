"""The HTML map in a real headless Chromium: what it draws, clicks, search, group-by, filters,
no network, no script from names; and a screenshot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from netviz.render.html import render_html
from tests.browser.chromium import PageLog, browser, missing_reason, next_frame, open_page, tap
from tests.browser.geometry import GEOMETRY, crossings
from tests.browser.graphs import HOSTILE_COMMS, GraphBuilder, lab_like_graph

_MISSING = missing_reason()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]

HOSTILE_TITLE = "lab </title><script>window.__pwned=9</script>"

# What the page drew, read from Cytoscape's own model.
DRAWN = """() => {
  const cy = window.netviz.cy;
  const boxes = cy.nodes('.machine');
  const nodes = cy.nodes().filter(n => !n.hasClass('machine') && !n.hasClass('ingress-mark'));
  const edges = cy.edges().filter(e => !e.hasClass('ingress-mark'));
  return {
    machines: boxes.map(n => n.data('machine')),
    nodes: nodes.map(n => ({id: n.id(), machine: boxes.length ? n.data('machine') : null,
                            visible: n.visible()})),
    edges: edges.map(e => ({id: e.id(), source: e.source().id(), target: e.target().id(), label: e.data('label'),
                            arrow: e.style('target-arrow-shape')})),
    ingress: cy.nodes('.ingress-mark').map(n => ({of: n.data('of'), visible: n.visible()})),
  };
}"""


@pytest.fixture
def lab_doc() -> dict[str, Any]:
    return lab_like_graph(hostile=True)


@pytest.fixture
def lab_page(tmp_path: Path, lab_doc: dict[str, Any]) -> Iterator[tuple[Any, PageLog, Path]]:
    html_path = tmp_path / "map.html"
    html_path.write_text(render_html(lab_doc, title=HOSTILE_TITLE), encoding="utf-8")
    with open_page(html_path) as (page, log):
        yield page, log, html_path
        # Whatever the test did, the page never reached out and never ran a name as script.
        assert log.requests == [html_path.resolve().as_uri()]
        assert log.page_errors == [] and log.console_errors == []
        assert page.evaluate("window.__cspViolations") == []
        assert page.evaluate("typeof window.__pwned") == "undefined"


def node_id(doc: dict[str, Any], comm: str, host: str | None = None) -> str:
    return next(n["id"] for n in doc["nodes"] if n["comm"] == comm and (host is None or n["host"] == host))


def click_node(page: Any, element_id: str) -> None:
    """Click where the element is drawn, as a person would."""
    x, y = page.evaluate(
        """(id) => {
          const cy = window.netviz.cy;
          const element = cy.getElementById(id);
          const box = cy.container().getBoundingClientRect();
          const at = element.isEdge() ? element.renderedMidpoint() : element.renderedPosition();
          return [box.left + at.x, box.top + at.y];
        }""",
        element_id,
    )
    page.mouse.click(x, y)


def search(page: Any, text: str) -> dict[str, Any]:
    page.fill("#search", text)
    page.press("#search", "Enter")
    page.wait_for_function("(q) => window.netviz.lastSearch && window.netviz.lastSearch.query === q", arg=text)
    return page.evaluate(
        "() => ({marked: window.netviz.cy.elements('.match').map(e => e.id()).sort(),"
        " count: document.getElementById('search-count').textContent, model: window.netviz.lastSearch})"
    )


def test_draws_every_machine_node_and_flow_of_the_document(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    drawn = page.evaluate(DRAWN)
    assert sorted(drawn["machines"]) == sorted(h["name"] for h in lab_doc["hosts"])
    assert {n["id"]: n["machine"] for n in drawn["nodes"]} == {n["id"]: n["host"] for n in lab_doc["nodes"]}
    assert all(n["visible"] for n in drawn["nodes"])
    edges = {e["id"]: e for e in drawn["edges"]}
    assert {(e["id"], e["source"], e["target"]) for e in drawn["edges"]} == {
        (f["id"], f["client"], f["server"]) for f in lab_doc["flows"]
    }
    # Labels carry transport, port and count; NAT names the translating machine.
    nat = next(f for f in lab_doc["flows"] if f["via"])
    assert edges[nat["id"]]["label"] == "tcp 8000 \u00d712 via gw1"
    undirected = next(f for f in lab_doc["flows"] if not f["directed"])
    assert edges[undirected["id"]]["arrow"] == "none"
    assert edges[nat["id"]]["arrow"] == "triangle"
    # Ingress is marked on the sniffer; outside counts are on web1's box.
    assert drawn["ingress"] == [{"of": node_id(lab_doc, "tcpdump"), "visible": True}]
    web1_label = page.evaluate("() => window.netviz.cy.nodes('.machine').filter(n => n.data('machine') === 'web1').style('label')")
    assert web1_label == "web1 \u00b7 10.0.0.11, fd00::11  \u2014 outside: 3 in, 1 out"
    assert page.title() == HOSTILE_TITLE


def test_click_highlights_flows_and_shows_details(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    api = node_id(lab_doc, "gunicorn")
    click_node(page, api)
    page.wait_for_function("(id) => window.netviz.selected === id", arg=api)
    assert page.text_content("#details-title") == "gunicorn @ app1"
    details = page.text_content("#details-body")
    for expected in ("2001, 2002, 2003", "system_u:system_r:httpd_t:s0", "tcp 0.0.0.0:8000",
                     "10.0.0.12, fd00::12", "gunicorn app:wsgi --bind 0.0.0.0:8000", "Flows out (3)", "Flows in (1)"):
        assert expected in details
    own_flows = {f["id"] for f in lab_doc["flows"] if api in (f["client"], f["server"])}
    highlighted = page.evaluate("() => window.netviz.cy.edges('.highlight').map(e => e.id())")
    assert set(highlighted) == own_flows
    faded = set(page.evaluate("() => window.netviz.cy.elements('.faded').map(e => e.id())"))
    assert node_id(lab_doc, "chronyd", "web1") in faded
    assert api not in faded and node_id(lab_doc, "postgres") not in faded
    # The NAT flow's translating machine stays in view.
    assert "gw1" not in page.evaluate("() => window.netviz.cy.nodes('.machine.faded').map(n => n.data('machine'))")

    # A click on empty canvas clears the selection.
    page.mouse.click(*page.evaluate("() => { const b = window.netviz.cy.container().getBoundingClientRect(); return [b.left + 3, b.bottom - 3]; }"))
    page.wait_for_function("() => window.netviz.selected === null")
    assert page.evaluate("() => window.netviz.cy.elements('.faded').length") == 0


def test_hostile_names_show_as_text(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    evil = node_id(lab_doc, HOSTILE_COMMS[1])
    click_node(page, evil)
    page.wait_for_function("(id) => window.netviz.selected === id", arg=evil)
    assert page.text_content("#details-title") == HOSTILE_COMMS[1] + " @ <b>evil</b>host"
    assert HOSTILE_COMMS[1] in page.text_content("#details-body")
    assert page.evaluate("() => document.querySelectorAll('#details img, #details script, #details b').length") == 0
    found = search(page, "onerror")
    assert found["marked"] == [node_id(lab_doc, HOSTILE_COMMS[0])]


def test_search_by_process_port_address_and_machine(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    postgres = node_id(lab_doc, "postgres")
    found = search(page, "postgres")
    assert found["marked"] == [postgres] and found["count"] == "1 process"

    port_flows = sorted(f["id"] for f in lab_doc["flows"] if f["server_port"] == 5432)
    found = search(page, "5432")
    assert found["marked"] == sorted([postgres] + port_flows)
    assert found["count"] == "1 process, 2 flows"

    found = search(page, "fd00::12")
    assert found["model"]["machines"] == ["app1"]
    assert found["marked"] == ["machine:" + str([h["name"] for h in lab_doc["hosts"]].index("app1"))]

    found = search(page, "redis")
    assert found["marked"] == [node_id(lab_doc, "redis-server")]
    faded = set(page.evaluate("() => window.netviz.cy.elements('.faded').map(e => e.id())"))
    assert postgres in faded

    found = search(page, "no-such-thing")
    assert found["marked"] == [] and found["count"] == "no match"
    found = search(page, "")
    assert found["marked"] == [] and page.evaluate("() => window.netviz.cy.elements('.faded').length") == 0


def test_group_by_host_and_back(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    page.click("#group-host")
    page.wait_for_function("() => window.netviz.groupBy === 'host'")
    drawn = page.evaluate(
        """() => {
          const cy = window.netviz.cy;
          return {
            machines: cy.nodes('.machine-node').map(n => n.data('machine')),
            others: cy.nodes().not('.machine-node').map(n => n.id()),
            edges: cy.edges().map(e => [e.source().data('machine') || e.source().id(),
                                        e.target().data('machine') || e.target().id(), e.data('label')]),
          };
        }"""
    )
    assert sorted(drawn["machines"]) == sorted(h["name"] for h in lab_doc["hosts"])
    # Outside peers are counted in the host's details, not drawn as nodes of the host view.
    assert drawn["others"] == []
    by_id = {n["id"]: n for n in lab_doc["nodes"]}
    # One edge per pair of hosts, direction, and NAT box (direct and translated apart).
    def key(flow: dict[str, Any]) -> tuple[Any, ...]:
        ends = (by_id[flow["client"]]["host"], by_id[flow["server"]]["host"])
        return (ends if flow["directed"] else tuple(sorted(ends))) + (flow["via"], flow["directed"])

    expected = {key(f) for f in lab_doc["flows"] if "outside" not in (by_id[f["client"]]["kind"], by_id[f["server"]]["kind"])}
    assert len(drawn["edges"]) == len(expected)
    assert ["web1", "app1", "tcp 8000 \u00d712 via gw1"] in drawn["edges"]
    found = search(page, "postgres")
    assert found["marked"] == ["machine-node:" + str([h["name"] for h in lab_doc["hosts"]].index("db1"))]

    page.click("#group-process")
    page.wait_for_function("() => window.netviz.groupBy === 'process'")
    drawn = page.evaluate(DRAWN)
    assert {n["id"] for n in drawn["nodes"]} == {n["id"] for n in lab_doc["nodes"]}
    assert {e["id"] for e in drawn["edges"]} == {f["id"] for f in lab_doc["flows"]}


def test_hide_external_and_ingress(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    outside = next(n["id"] for n in lab_doc["nodes"] if n["kind"] == "outside")
    page.uncheck("#show-external")
    page.uncheck("#show-ingress")
    next_frame(page)
    drawn = page.evaluate(DRAWN)
    visible = {n["id"]: n["visible"] for n in drawn["nodes"]}
    assert visible.pop(outside) is False and all(visible.values())
    assert drawn["ingress"][0]["visible"] is False, page.evaluate(
        "() => [document.getElementById('show-ingress').checked,"
        " window.netviz.cy.elements('.ingress-mark').map(e => e.classes().join(' '))]")
    web1_label = page.evaluate("() => window.netviz.cy.nodes('.machine').filter(n => n.data('machine') === 'web1').style('label')")
    assert web1_label == "web1 \u00b7 10.0.0.11, fd00::11"
    page.check("#show-external")
    page.check("#show-ingress")
    next_frame(page)
    drawn = page.evaluate(DRAWN)
    assert all(n["visible"] for n in drawn["nodes"]) and drawn["ingress"][0]["visible"] is True


def test_machine_level_document(tmp_path: Path) -> None:
    g = GraphBuilder(group_by="host")
    a = g.process(g.host("a", ["10.0.0.1"]), "a", [], kind="host")
    b = g.process(g.host("b", ["10.0.0.2"]), "b", [], kind="host")
    flow = g.flow(a, b, "tcp", 22, "10.0.0.2", count=2)
    html_path = tmp_path / "hosts.html"
    html_path.write_text(render_html(g.build()), encoding="utf-8")
    with open_page(html_path) as (page, log):
        drawn = page.evaluate(DRAWN)
        assert {n["id"] for n in drawn["nodes"]} == {a, b} and drawn["machines"] == []
        assert [(e["id"], e["source"], e["target"]) for e in drawn["edges"]] == [(flow, a, b)]
        assert page.is_disabled("#group-process")
        assert search(page, "10.0.0.2")["marked"] == sorted([b, flow])
        assert log.page_errors == []


def test_screenshot(lab_page: Any, tmp_path: Path) -> None:
    page, _, _ = lab_page
    png = tmp_path / "map.png"
    page.screenshot(path=str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # CI can keep it as an artifact.
    keep = os.environ.get("NETVIZ_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "lab-like-map.png").write_bytes(data)


def test_stitched_fleet_through_render_html_graph(tmp_path: Path) -> None:
    """The real path: synthetic snapshots, the stitcher's FlowGraph, render_html_graph, a browser."""
    from benchmarks.synth import make_fleet
    from netviz.render.html import render_html_graph
    from netviz.snapshot import parse_snapshot
    from netviz.stitch import stitch

    snapshots = [parse_snapshot(doc, source=f"synthetic {index}") for index, doc in enumerate(make_fleet(4, 60, seed=2))]
    graph = stitch(snapshots, group_by="process", show_external=True)
    doc = graph.to_json_dict()
    assert any(flow["via"] for flow in doc["flows"]) and any(node["ingress"] for node in doc["nodes"])
    html_path = tmp_path / "fleet.html"
    html_path.write_text(render_html_graph(graph), encoding="utf-8")
    with open_page(html_path, fragment="view=process") as (page, log):
        drawn = page.evaluate(DRAWN)
        assert sorted(drawn["machines"]) == sorted(host["name"] for host in doc["hosts"])
        assert {n["id"]: n["machine"] for n in drawn["nodes"]} == {n["id"]: n["host"] for n in doc["nodes"]}
        assert {(e["id"], e["source"], e["target"]) for e in drawn["edges"]} == {
            (f["id"], f["client"], f["server"]) for f in doc["flows"]
        }
        assert page.evaluate("window.netviz.skippedFlows") == 0
        nat = next(f for f in doc["flows"] if f["via"])
        assert f"via {nat['via']}" in next(e["label"] for e in drawn["edges"] if e["id"] == nat["id"])
        assert log.requests == [html_path.resolve().as_uri()] and log.page_errors == []


def test_notes_stale_and_partial_machines_are_said_above_the_map(tmp_path: Path) -> None:
    """What the map leaves out (filter notes) and which machines are old or partial is written
    on the page, as text (a note may quote a hostile name)."""
    g = GraphBuilder()
    web = g.process(g.host("web", ["10.0.0.1"]), "nginx", [10])
    db = g.process(g.host("db", ["10.0.0.2"], stale=True), "postgres", [20])
    g.process(g.host("cache", ["10.0.0.3"], complete=False), "redis", [30])
    g.flow(web, db, "tcp", 5432, "10.0.0.2")
    document = g.build()
    document["hosts"][1]["captured_at"] -= 3 * 3600
    document["notes"] = ["--exclude sshd hid 4 flows", "<img src=x onerror=window.__pwned=1>"]
    html_path = tmp_path / "notes.html"
    html_path.write_text(render_html(document), encoding="utf-8")
    with open_page(html_path) as (page, log):
        lines = page.evaluate("() => Array.from(document.querySelectorAll('#notices p'), p => p.textContent)")
        assert lines == [
            "--exclude sshd hid 4 flows",
            "<img src=x onerror=window.__pwned=1>",
            "1 host drawn from an earlier snapshot (not reached this run): db (3 h older)",
            "1 host captured partially (not every process or namespace could be read): cache",
        ]
        assert page.is_visible("#notices") and page.evaluate("document.querySelectorAll('#notices img').length") == 0
        assert page.evaluate("typeof window.__pwned") == "undefined" and log.page_errors == []


def test_no_notices_strip_when_there_is_nothing_to_say(tmp_path: Path) -> None:
    g = GraphBuilder()
    g.flow(g.process(g.host("a", ["10.0.0.1"]), "curl", [1]), g.process(g.host("b", ["10.0.0.2"]), "nginx", [2]),
           "tcp", 80, "10.0.0.2")
    html_path = tmp_path / "plain.html"
    html_path.write_text(render_html(g.build()), encoding="utf-8")
    with open_page(html_path) as (page, _):
        assert page.evaluate("document.getElementById('notices').hidden") is True
        assert page.evaluate("document.querySelectorAll('#notices p').length") == 0


def test_clicking_a_machine_lists_its_unresolved_examples(tmp_path: Path) -> None:
    g = GraphBuilder()
    web = g.process(g.host("web", ["10.0.0.1"], unresolved=1), "app", [100])
    g.flow(web, g.process(g.host("db", ["10.0.0.2"]), "postgres", [200]), "tcp", 5432, "10.0.0.2")
    document = g.build()
    (web_host,) = [host for host in document["hosts"] if host["name"] == "web"]
    web_host["unresolved_examples"] = [{
        "proto": "tcp", "local": "10.0.0.1", "local_port": 40000, "remote": "10.0.0.2", "remote_port": 6000,
        "pid": 100, "why": "its peer machine is in the group, but has no such socket nor a listener for it"}]
    html_path = tmp_path / "unresolved.html"
    html_path.write_text(render_html(document), encoding="utf-8")
    with open_page(html_path) as (page, log):
        box = page.evaluate("() => window.netviz.cy.nodes('.machine').filter(n => n.data('machine') === 'web')[0].id()")
        tap(page, box)
        page.wait_for_function("() => document.getElementById('details-title').textContent === 'web'")
        items = page.evaluate("() => Array.from(document.querySelectorAll('#details li'), li => li.textContent)")
        assert ("tcp 10.0.0.1:40000 \u2192 10.0.0.2:6000 pid 100: its peer machine is in the group, but has no such "
                "socket nor a listener for it") in items
        assert log.page_errors == []


# ------------------------------------------------------------------ legend, Esc, focus, fragment, export

VISIBLE_NODES = """() => window.netviz.cy.nodes().filter(n => n.visible() && !n.hasClass('machine')
                         && !n.hasClass('ingress-mark')).map(n => n.id()).sort()"""


def visible_nodes(page: Any) -> list[str]:
    """The ids of the nodes drawn, once the page has drawn its last change."""
    next_frame(page)
    return page.evaluate(VISIBLE_NODES)


def neighbourhood(doc: dict[str, Any], start: str, hops: int) -> set[str]:
    """Node ids within `hops` flows of `start` in the document (the oracle for focus)."""
    peers: dict[str, set[str]] = {}
    for flow in doc["flows"]:
        peers.setdefault(flow["client"], set()).add(flow["server"])
        peers.setdefault(flow["server"], set()).add(flow["client"])
    seen, frontier = {start}, {start}
    for _ in range(hops):
        frontier = {peer for node in frontier for peer in peers.get(node, ())} - seen
        seen |= frontier
    return seen


def test_legend_says_what_the_marks_mean_and_root_is_an_outline(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    page.click("#legend summary")
    legend = page.inner_text("#legend")
    for words in ("root", "ingress", "short-lived", "neither end listens", "inferred", "via", "host"):
        assert words in legend, words
    outline = "(id) => window.netviz.cy.getElementById(id).style('outline-width')"
    # chronyd runs as root (the builder's default user), nginx as www-data: only a mark, same fill.
    assert page.evaluate(outline, node_id(lab_doc, "chronyd", "web1")) != "0px"
    assert page.evaluate(outline, node_id(lab_doc, "nginx")) == "0px"
    fill = "(id) => window.netviz.cy.getElementById(id).style('background-color')"
    assert page.evaluate(fill, node_id(lab_doc, "chronyd", "web1")) == page.evaluate(fill, node_id(lab_doc, "tcpdump"))


def test_focus_shows_the_n_hop_neighbourhood_and_esc_clears_everything(lab_page: Any, lab_doc: dict[str, Any]) -> None:
    page, _, _ = lab_page
    everything = visible_nodes(page)
    postgres = node_id(lab_doc, "postgres")
    click_node(page, postgres)
    page.wait_for_function("(id) => window.netviz.selected === id", arg=postgres)
    page.click("#focus")
    page.wait_for_function("(id) => window.netviz.focused === id", arg=postgres)
    assert set(visible_nodes(page)) == neighbourhood(lab_doc, postgres, 1)
    page.select_option("#hops", "2")
    page.wait_for_function("() => window.location.hash.includes('hops=2')")
    assert set(visible_nodes(page)) == neighbourhood(lab_doc, postgres, 2)
    assert len(neighbourhood(lab_doc, postgres, 2)) > len(neighbourhood(lab_doc, postgres, 1))
    assert page.is_visible("#unfocus")

    search(page, "redis")
    page.keyboard.press("Escape")
    page.wait_for_function("() => window.netviz.focused === null && window.netviz.selected === null")
    assert visible_nodes(page) == everything
    assert page.input_value("#search") == "" and page.evaluate("window.netviz.lastSearch.query") == ""
    assert page.evaluate("() => window.netviz.cy.elements('.faded, .match, .highlight').length") == 0
    assert page.text_content("#details-title") == "Details"


def test_host_view_opens_a_host_on_click_and_keeps_direct_and_nat_apart(tmp_path: Path) -> None:
    g = GraphBuilder()
    a, b, gw = g.host("a", ["10.0.0.1"]), g.host("b", ["10.0.0.2"]), g.host("gw", ["10.0.0.9"])
    curl = g.process(a, "curl", [1])
    nginx = g.process(b, "nginx", [2], listening=[("tcp", "0.0.0.0", 80)])
    g.process(b, "redis", [3], listening=[("tcp", "127.0.0.1", 6379)])
    g.process(gw, "sshd", [4])
    g.flow(curl, nginx, "tcp", 80, "10.0.0.2", count=2)
    g.flow(curl, nginx, "tcp", 80, "10.0.0.9", count=5, via=gw)
    html_path = tmp_path / "nat.html"
    html_path.write_text(render_html(g.build()), encoding="utf-8")
    edges = "() => window.netviz.cy.edges().map(e => [e.source().data('machine'), e.target().data('machine'), e.data('label')]).sort()"
    with open_page(html_path, fragment="view=host") as (page, log):
        assert page.evaluate("window.netviz.groupBy") == "host"
        assert page.evaluate(edges) == [["a", "b", "tcp 80 \u00d72"], ["a", "b", "tcp 80 \u00d75 via gw"]]
        # The two curves are drawn apart, not on top of each other.
        bends = page.evaluate("() => window.netviz.cy.edges().map(e => e.controlPoints()[0])")
        assert abs(bends[0]["x"] - bends[1]["x"]) + abs(bends[0]["y"] - bends[1]["y"]) > 5

        host_b = page.evaluate("() => window.netviz.cy.nodes('.machine-node').filter(n => n.data('machine') === 'b')[0].id()")
        before = len(visible_nodes(page))
        click_node(page, host_b)
        page.wait_for_function("() => window.location.hash.includes('open=b')")
        after = visible_nodes(page)
        assert nginx in after and len(after) == before - 1 + 2  # b gives way to its two processes
        assert page.evaluate(edges) == [["a", "b", "tcp 80 \u00d72"], ["a", "b", "tcp 80 \u00d75 via gw"]]
        assert page.evaluate("() => window.netviz.cy.edges().map(e => e.target().id())") == [nginx, nginx]
        assert page.is_visible("#collapse")
        page.click("#collapse")
        page.wait_for_function("() => !window.location.hash.includes('open=')")
        assert len(visible_nodes(page)) == before
        assert log.page_errors == []


def test_the_url_fragment_reopens_the_view(tmp_path: Path, lab_doc: dict[str, Any]) -> None:
    html_path = tmp_path / "map.html"
    html_path.write_text(render_html(lab_doc), encoding="utf-8")
    with open_page(html_path) as (page, _):
        page.click("#group-host")
        page.uncheck("#show-external")
        app1 = page.evaluate("() => window.netviz.cy.nodes('.machine-node').filter(n => n.data('machine') === 'app1')[0].id()")
        click_node(page, app1)
        page.wait_for_function("() => window.location.hash.includes('open=app1')")
        search(page, "postgres")
        gunicorn = node_id(lab_doc, "gunicorn")
        page.evaluate("(id) => window.netviz.focus(id, 2)", gunicorn)
        fragment = page.evaluate("window.location.hash").lstrip("#")
        shown = visible_nodes(page)
    for part in ("view=host", "q=postgres", "external=0", "open=app1", f"focus={gunicorn}", "hops=2"):
        assert part in fragment, (part, fragment)
    with open_page(html_path, fragment=fragment) as (page, log):
        assert page.evaluate("window.netviz.groupBy") == "host"
        assert page.input_value("#search") == "postgres" and page.evaluate("window.netviz.lastSearch.query") == "postgres"
        assert page.is_checked("#show-external") is False
        assert page.evaluate("window.netviz.focused") == gunicorn and page.input_value("#hops") == "2"
        assert visible_nodes(page) == shown
        assert log.page_errors == []


# What the SVG export must hold, read from Cytoscape: the view's extent, each drawn node's
# centre and label, each drawn edge's ends.
DRAWN_VIEW = """() => {
  const cy = window.netviz.cy;
  const shown = cy.elements(':visible');
  const extent = cy.extent();
  return {
    extent: [extent.x1, extent.y1, extent.w, extent.h],
    labels: shown.nodes().map(n => n.pstyle('label').strValue).filter(Boolean),
    centres: shown.nodes().map(n => [n.position().x, n.position().y]),
    edges: shown.edges().map(e => [e.sourceEndpoint().x, e.sourceEndpoint().y, e.targetEndpoint().x, e.targetEndpoint().y]),
  };
}"""


def shape_centre(element: Any) -> tuple[float, float]:
    tag = element.tag.split("}")[1]
    if tag == "ellipse":
        return float(element.get("cx")), float(element.get("cy"))
    if tag == "rect":
        return float(element.get("x")) + float(element.get("width")) / 2, float(element.get("y")) + float(element.get("height")) / 2
    xs, ys = zip(*(tuple(map(float, corner.split(","))) for corner in element.get("points").split()))
    return (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2


def test_export_the_view_as_svg(tmp_path: Path, lab_doc: dict[str, Any]) -> None:
    import xml.etree.ElementTree as ElementTree

    html_path = tmp_path / "map.html"
    html_path.write_text(render_html(lab_doc), encoding="utf-8")
    with open_page(html_path) as (page, log):
        drawn = page.evaluate(DRAWN_VIEW)  # the first view: host boxes, processes, edges, labels
        with page.expect_download() as svg_download:
            page.click("#export-svg")
        assert svg_download.value.suggested_filename == "netviz-map.svg"
        svg_path = tmp_path / "map.svg"
        svg_path.write_bytes(Path(svg_download.value.path()).read_bytes())
        assert log.page_errors == [] and page.evaluate("window.__cspViolations") == []
    ns = {"svg": "http://www.w3.org/2000/svg"}
    root = ElementTree.parse(svg_path).getroot()  # well-formed XML whatever the names hold
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert [float(v) for v in root.get("viewBox").split()] == pytest.approx(drawn["extent"], abs=0.01)
    texts = ["".join(text.itertext()) for text in root.iter("{http://www.w3.org/2000/svg}text")]
    # Every drawn label is in the file as text, hostile names included (one tspan per line).
    for label in drawn["labels"]:
        assert label.replace("\n", "") in texts, label
    assert any("<" in text for text in texts)  # lab_like_graph(hostile=True) has names with markup
    groups = root.findall("svg:g", ns)
    edge_paths = [g.find("svg:path", ns) for g in groups if g.find("svg:path", ns) is not None]
    assert len(edge_paths) == len(drawn["edges"]) > 0
    for path, (x1, y1, x2, y2) in zip(edge_paths, drawn["edges"]):
        steps = path.get("d").replace("M", "").replace("Q", " ").replace("L", " ").split()
        assert [float(steps[0]), float(steps[1])] == pytest.approx([x1, y1], abs=0.01)
        assert [float(steps[-2]), float(steps[-1])] == pytest.approx([x2, y2], abs=0.01)
    centres = [shape_centre(g[-2] if g[-1].tag.endswith("text") else g[-1]) for g in groups if g.find("svg:path", ns) is None]
    flat = [value for centre in sorted(centres) for value in centre]
    assert len(centres) == len(drawn["centres"]) > 10
    assert flat == pytest.approx([value for centre in sorted(map(tuple, drawn["centres"])) for value in centre], abs=0.01)
    # An independent reader: the browser opens the file as an SVG document, without a parse error.
    with browser() as context:
        page = context.new_page()
        page.goto(svg_path.resolve().as_uri())
        assert page.evaluate("document.documentElement.namespaceURI") == ns["svg"]
        assert page.evaluate("document.getElementsByTagName('parsererror').length") == 0
        assert page.evaluate("document.querySelectorAll('text').length") == len(texts)


def test_export_the_view_as_png_and_the_data_as_json(tmp_path: Path, lab_doc: dict[str, Any]) -> None:
    html_path = tmp_path / "map.html"
    html_path.write_text(render_html(lab_doc), encoding="utf-8")
    with open_page(html_path) as (page, log):
        with page.expect_download() as png_download:
            page.click("#export-png")
        png = Path(png_download.value.path()).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert png_download.value.suggested_filename == "netviz-map.png"
        with page.expect_download() as json_download:
            page.click("#export-json")
        assert json.loads(Path(json_download.value.path()).read_text()) == lab_doc
        # Nothing left the machine: the page and its own blobs only.
        assert all(url.startswith(("file://", "blob:")) for url in log.requests), log.requests
        assert log.page_errors == [] and page.evaluate("window.__cspViolations") == []


def test_process_view_edges_bend_around_the_processes_between_their_ends(tmp_path: Path) -> None:
    """Three processes in a row in one machine, the first talking to the last, and a flow between
    two machines whose straight line runs over a process of a third: every drawn edge keeps clear
    of every node it does not join (machine boxes aside), read from where Cytoscape drew them."""
    builder = GraphBuilder()
    for host, address in (("alpha", "10.0.0.1"), ("beta", "10.0.0.2"), ("gamma", "10.0.0.3")):
        builder.host(host, [address])
    first = builder.process("alpha", "first", [11])
    builder.process("alpha", "middle", [12])
    last = builder.process("alpha", "last", [13], listening=[("tcp", "0.0.0.0", 9000)])
    builder.flow(first, last, "tcp", 9000, "127.0.0.1")
    builder.flow(last, first, "udp", 9001, "127.0.0.1")  # the same pair, the other way
    far = {host: [builder.process(host, f"{host}-{k}", [100 + k]) for k in range(3)] for host in ("beta", "gamma")}
    server = builder.process("gamma", "server", [200], listening=[("tcp", "0.0.0.0", 5432)])
    for client in far["beta"] + [first]:
        builder.flow(client, server, "tcp", 5432, "10.0.0.3")
    doc = builder.build()
    html_path = tmp_path / "rows.html"
    html_path.write_text(render_html(doc, title="rows"), encoding="utf-8")
    with open_page(html_path, fragment="view=process") as (page, log):
        geometry = page.evaluate(GEOMETRY)
        boxes = set(page.evaluate("() => window.netviz.cy.nodes('.machine').map(n => n.id())"))
        assert len(geometry["edges"]) == len(doc["flows"])
        assert crossings(geometry, skip=boxes.__contains__) == []
        # the pair first <-> last is bent (it was a straight line through `middle`), both ways alike
        bent = page.evaluate("() => window.netviz.cy.edges('.detour').map(e => e.source().id() + '>' + e.target().id())")
        assert f"{first}>{last}" in bent and f"{last}>{first}" in bent
        assert log.page_errors == []

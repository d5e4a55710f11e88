"""Short-lived flows (seen by an observation window, not alive through it) in every output format:
dashed with `~N per minute` in DOT/SVG/PNG, two more table columns, JSON keys, and in the HTML map
a dashed edge, its rate, and the "everything seen" toggle (in a real Chromium when one is here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from netviz.graph import SHORT_LIVED
from netviz.render import render
from netviz.render.dot import render_dot
from netviz.render.html import render_html_graph
from netviz.render.table import render_table_text, table_rows
from netviz.stitch import stitch
from snapbuilder import Machine
from test_stitch_window import execs, key, observed, server_machine


def window_graph():
    """web: a persistent app connection and 100 short-lived connections (10 s) to db/server, by uid 1000."""
    web = Machine("web", "10.0.0.1")
    app = web.process(10, "app")
    web.connect(app, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    db = server_machine()
    db.connect(50, "tcp", "10.0.0.2:8080", "10.0.0.1:40000")
    snapshots = [
        # one key for both: the app's connection was sampled, the 100 curl ones only seen closing
        observed(web.build(), [
            key("client", "10.0.0.1", "10.0.0.2", 8080, connections=101, persistent=True,
                holders=[(10, "app", "socket")], evidence={"sample": 1, "destroy": 101}),
        ], [execs(1000, "curl", "http://10.0.0.2:8080/")]),
        observed(db.build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, persistent=True, connections=101,
                                  holders=[(50, "server", "listener")])]),
    ]
    return stitch(snapshots)


def instant_graph():
    web = Machine("web", "10.0.0.1")
    app = web.process(10, "app")
    web.connect(app, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    return stitch([web.build(), server_machine().build()])


def test_the_graph_has_a_persistent_and_a_short_lived_flow():
    graph = window_graph()
    nodes = graph.nodes_by_id()
    kinds = {(nodes[f.client].comm, f.short_lived, f.window.connections) for f in graph.flows}
    assert kinds == {("app", False, 1), (SHORT_LIVED, True, 100)}


def test_dot_draws_short_lived_flows_dashed_with_their_rate():
    text = render_dot(window_graph())
    short = [line for line in text.splitlines() if "per minute" in line]
    assert len(short) == 1 and "~600 per minute" in short[0] and 'style="dashed"' in short[0], text
    persistent = [line for line in text.splitlines() if "->" in line and "per minute" not in line]
    assert len(persistent) == 1 and "dashed" not in persistent[0]
    assert "inferred: curl http://10.0.0.2:8080/" in text  # the short-lived node's inferred command
    assert "per minute" not in render_dot(instant_graph())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_svg_shows_the_rate_and_a_dashed_edge():
    svg = render(window_graph(), "svg").decode()
    assert "~600 per minute" in svg and "stroke-dasharray" in svg


def test_each_format_says_which_event_sources_a_window_lacked():
    """A reader must know that a machine's window had no conntrack events before trusting an
    absent short-lived flow (the snapshots of window_graph say conntrack: missing)."""
    graph = window_graph()
    line = "window 10 s, 5 samples; events not seen: conntrack (missing)"
    assert render_dot(graph).count(line) == 2
    assert f"web: {line}" in render_table_text(graph) and f"db: {line}" in render_table_text(graph)
    assert "events not seen" not in render_table_text(instant_graph())
    assert "window" not in render_dot(instant_graph())


def test_table_adds_seen_and_rate_columns_only_with_a_window():
    headers, rows = table_rows(window_graph())
    assert headers == ("client", "server", "service", "count", "seen", "rate", "notes")
    by_client = {row[0]: row for row in rows}
    assert by_client["web: app[10]"][3:6] == ("1", "1", "persistent")
    short = [row for row in rows if row[0].startswith(f"web: {SHORT_LIVED}")]
    assert len(short) == 1 and short[0][3:6] == ("0", "100", "~600 per minute"), rows
    assert "curl" in short[0][0] and "inferred" in short[0][0]
    assert table_rows(instant_graph())[0] == ("client", "server", "service", "count", "notes")
    assert "per minute" in render_table_text(window_graph())


def test_json_has_the_window_keys():
    document = json.loads(render(window_graph(), "json"))
    flows = {(flow["count"], flow["persistent"], flow["connections"], flow["per_minute"]) for flow in document["flows"]}
    assert flows == {(1, True, 1, 6.0), (0, False, 100, 600.0)}
    short = [node for node in document["nodes"] if node.get("short_lived")]
    assert len(short) == 1 and short[0]["command_inferred"] and short[0]["cmdline"] == "curl http://10.0.0.2:8080/"


def test_html_carries_the_data_and_the_toggle():
    page = render_html_graph(window_graph())
    assert '"per_minute":600.0' in page and '"short_lived":true' in page
    assert 'id="show-short-lived"' in page


# ------------------------------------------------------------------ in a real browser

def _browser_missing() -> Any:
    try:
        from tests.browser.chromium import missing_reason
    except ImportError as error:  # pragma: no cover
        return str(error)
    return missing_reason()


@pytest.mark.browser
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_the_html_toggle_hides_short_lived_flows(tmp_path: Path):
    from tests.browser.chromium import next_frame, open_page

    path = tmp_path / "map.html"
    path.write_text(render_html_graph(window_graph()), encoding="utf-8")
    shown = """() => window.netviz.cy.edges().filter(e => !e.hasClass('ingress-mark') && e.visible())
                  .map(e => ({label: e.data('label'), style: e.style('line-style')}))"""
    with open_page(path) as (page, log):
        assert page.is_visible("#window-filter")
        assert "2 hosts observed without some event sources" in page.inner_text("#notices")
        assert "web (conntrack missing)" in page.inner_text("#notices")
        edges = page.evaluate(shown)
        labels = sorted(edge["label"] for edge in edges)
        assert len(labels) == 2 and any("~600 per minute" in label for label in labels), edges
        assert {edge["style"] for edge in edges if "per minute" in edge["label"]} == {"dashed"}
        page.uncheck("#show-short-lived")
        next_frame(page)
        edges = page.evaluate(shown)
        assert [edge["label"] for edge in edges] == ["tcp 8080"], edges
        assert not page.evaluate(
            "() => window.netviz.cy.nodes('.short-lived').some(n => n.visible())")
        page.check("#show-short-lived")
        next_frame(page)
        assert len(page.evaluate(shown)) == 2
        assert log.page_errors == [] and log.console_errors == []

"""The HTML map of a large fleet: the compact data block (what it holds, that it reads back as the
document, that no name escapes it), the overview by group, and in headless Chromium a 2,000-host
map whose first view draws at once and whose hosts open; edges weighed by bytes."""

from __future__ import annotations

import base64
import json
import re
import zlib
import time
from pathlib import Path
from typing import Any

import pytest

from netviz.render import html as html_module
from netviz.render.html import compact_data, host_groups, is_compact, render_html
from tests.browser.chromium import missing_reason, open_page, tap
from tests.browser.graphs import HOSTILE_COMMS, GraphBuilder, lab_like_graph, synthetic_graph
from tests.test_render_html import parse

_MISSING = missing_reason()
browser = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def split_block(block: str) -> tuple[dict[str, Any], list[Any]]:
    """The head and the decoded lines of a compact data block, read as the page reads them."""
    first, packed_head, packed_body = block.split("\n")
    assert json.loads(first) == {"compact": 1, "packed": "deflate-base64"}
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", packed_head) and re.fullmatch(r"[A-Za-z0-9+/=]+", packed_body)
    head = json.loads(zlib.decompress(base64.b64decode(packed_head)))
    body = zlib.decompress(base64.b64decode(packed_body)).decode("ascii")
    lines = [json.loads(body[start:start + length]) for start, length in head["lines"]]
    return head, lines


def decode(block: str) -> dict[str, Any]:
    """The document back from its compact form (as the page's decodeNodes and decodeLine do)."""
    head, lines = split_block(block)
    text = head["strings"]

    def s(index: int) -> Any:
        return None if index < 0 else text[index]

    def ref(value: Any, prefix: str) -> str:
        return f"{prefix}{value}" if isinstance(value, int) else value

    nodes = []
    # With an overview by group, the nodes are the body's last line (the first view needs none).
    by_host = head["nodes"] if head["nodes"] is not None else lines[head["nodesLine"]]
    for host, rows in zip(head["hosts"], by_host):
        for row in rows:
            node = {"id": ref(row[0], "n"), "host": host["name"], "kind": s(row[1]), "comm": s(row[2]), "pids": row[3],
                    "users": [s(u) for u in row[4]], "contexts": [s(c) for c in row[5]], "cmdline": s(row[6]),
                    "listening": [{"proto": s(p), "address": s(a), "port": port} for p, a, port in row[7]],
                    "ingress": row[8], "sockets": row[9]}
            node.update(row[10] or {})
            nodes.append(node)
    flows = []
    for rows in lines[:len(head["hosts"])]:
        for row in rows:
            flow = {"id": ref(row[0], "f"), "client": ref(row[1], "n"), "server": ref(row[2], "n"), "proto": s(row[3]),
                    "server_port": row[4], "server_address": s(row[5]), "count": row[6],
                    "directed": bool(row[7] & 1), "inferred": bool(row[7] & 2), "via": s(row[8]),
                    "client_pids": row[9], "server_pids": row[10]}
            flow.update(row[11] or {})
            flows.append(flow)
    return {"hosts": head["hosts"], "nodes": nodes, "flows": flows}


def without_keys(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "key"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    # Hand-built flows may leave out the pid lists a stitched graph always has; the page reads
    # a missing list as an empty one, and the compact form writes it so.
    return {item["id"]: {**({"client_pids": [], "server_pids": []} if "client" in item else {}), **strip(item)}
            for item in items}


def traffic(sent: int, received: int, rtt: float = 0.25) -> dict[str, Any]:
    return {"connections": 1, "bytes_sent": sent, "bytes_received": received, "rtt_median_ms": rtt,
            "rtt_max_ms": rtt * 2, "retransmits": 3}


def test_a_large_document_is_compact_and_reads_back_as_the_document() -> None:
    doc = synthetic_graph(300, 9000)
    doc["flows"][0]["traffic"] = traffic(5_000_000, 1_200)
    doc["nodes"][0]["unit"] = "nginx.service"
    assert is_compact(doc)
    block = compact_data(doc, "t")
    back = decode(block)
    assert without_keys(back["nodes"]) == without_keys(doc["nodes"])
    assert without_keys(back["flows"]) == without_keys(doc["flows"])
    head, lines = split_block(block)
    assert head["counts"] == {"nodes": len(doc["nodes"]), "flows": len(doc["flows"])} and head["skipped"] == 0
    # Each host's line holds exactly the flows whose client is on that host.
    host_of = {node["id"]: node["host"] for node in doc["nodes"]}
    for host, rows in zip(head["hosts"], lines[:len(head["hosts"])]):
        assert all(host_of[f"n{row[1]}"] == host["name"] for row in rows)
    # The summed edges count every connection between two hosts once: between groups in the head
    # (this fleet has too many edges between hosts for a first view of hosts), between hosts in
    # the lines of the groups they touch.
    assert head["groups"] and head["edges"] == [] and head["nodes"] is None and head["processLevel"] is True
    assert sum(edge[4] for edge in head["groupEdges"]) == sum(flow["count"] for flow in doc["flows"])
    assert sum(edge[7] for edge in head["groupEdges"]) == 5_001_200
    group_of = {index: g for g, group in enumerate(head["groups"]) for index in group["hosts"]}
    host_edges = {json.dumps(edge) for g, line in enumerate(lines[len(head["hosts"]):len(head["hosts"]) + len(head["groups"])])
                  for edge in line
                  if g == min(group_of[edge[0]], group_of[edge[1]])}
    assert sum(json.loads(edge)[4] for edge in host_edges) == sum(flow["count"] for flow in doc["flows"])
    # Far smaller than the document itself.
    assert len(block) < 0.5 * len(json.dumps(doc))


def test_hostile_names_stay_data_in_the_compact_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_module, "COMPACT_ELEMENTS", 5)
    doc = lab_like_graph(hostile=True)
    page = render_html(doc, title="</title><script>window.__pwned=9</script>")
    # The template's three scripts and the body after them (data the browser never runs).
    assert len(re.findall(r"<script", page, flags=re.IGNORECASE)) == 4
    assert len(re.findall(r"</script", page, flags=re.IGNORECASE)) == 4
    assert "<!--" not in page and "\u2028" not in page
    for comm in HOSTILE_COMMS:
        assert comm not in page
    parts = parse(page)
    assert [attrs.get("type") for attrs, _ in parts.scripts] == ["application/json", None, None, "application/octet-stream"]
    assert parts.scripts[3][0]["id"] == "netviz-body"
    back = decode(parts.scripts[0][1] + "\n" + parts.scripts[3][1])
    assert without_keys(back["nodes"]) == without_keys(doc["nodes"])
    assert without_keys(back["flows"]) == without_keys(doc["flows"])


def test_groups_of_the_overview() -> None:
    hosts = [{"name": f"h{i}"} for i in range(250)] + [{"name": "db1", "group": "db"}, {"name": "db2", "group": "db"}]
    ring = list(range(len(hosts)))
    groups = host_groups(hosts, ring)
    assert groups[0] == {"name": "db", "hosts": [250, 251], "auto": False}
    runs = groups[1:]
    assert [len(group["hosts"]) for group in runs] == [84, 84, 82] and all(group["auto"] for group in runs)
    assert runs[0]["name"] == "h0 +83"
    assert sorted(i for group in groups for i in group["hosts"]) == ring


@browser
def test_traffic_widens_edges_and_shows_in_details(tmp_path: Path) -> None:
    g = GraphBuilder()
    a, b = g.host("a", ["10.0.0.1"]), g.host("b", ["10.0.0.2"])
    client = g.process(a, "curl", [1])
    server = g.process(b, "nginx", [2], listening=[("tcp", "0.0.0.0", 80)])
    quiet = g.process(b, "redis-server", [3], listening=[("tcp", "0.0.0.0", 6379)])
    busy = g.flow(client, server, "tcp", 80, "10.0.0.2")
    idle = g.flow(client, quiet, "tcp", 6379, "10.0.0.2")
    none = g.flow(server, quiet, "tcp", 6379, "10.0.0.2")
    doc = g.build()
    flows = {flow["id"]: flow for flow in doc["flows"]}
    flows[busy]["traffic"] = traffic(50_000_000, 2_000_000, rtt=0.412)
    flows[idle]["traffic"] = traffic(500, 300)
    path = tmp_path / "map.html"
    path.write_text(render_html(doc), encoding="utf-8")
    with open_page(path, fragment="view=process") as (page, log):
        widths = page.evaluate("""(ids) => ids.map(id => parseFloat(window.netviz.cy.getElementById(id).style('width')))""",
                               [busy, idle, none])
        assert widths[0] == pytest.approx(1 + (7.716 - 3) * 0.7, abs=0.05)  # 52 MB, as DOT draws it
        assert widths[1] == pytest.approx(1.0) and widths[0] > widths[2]
        tap(page, busy)
        details = page.inner_text("#details-body")
        assert "50.0 MB sent / 2.0 MB received" in details
        assert "0.412 ms median, 0.824 ms max" in details and "retransmits" in details
        # The host view sums the bytes of the flows it folds into one edge.
        page.evaluate("window.netviz.setGroupBy('host')")
        edge = page.evaluate("() => window.netviz.cy.edges().filter(e => e.data('bytes')).map(e => [e.data('bytes'), e.data('bw')])")
        assert edge == [[52_000_800, pytest.approx(1 + (7.716 - 3) * 0.7, abs=0.05)]]
        assert log.page_errors == []


@browser
def test_a_flow_only_conntrack_counted_weighs_its_ip_bytes(tmp_path: Path) -> None:
    g = GraphBuilder()
    a, b = g.host("a", ["10.0.0.1"]), g.host("b", ["10.0.0.2"])
    client = g.process(a, "statsd-client", [1])
    server = g.process(b, "statsd", [2], listening=[("udp", "0.0.0.0", 8125)])
    counted = g.flow(client, server, "udp", 8125, "10.0.0.2")
    doc = g.build()
    (flow,) = doc["flows"]
    flow["traffic"] = {"connections": 1, "bytes_sent": None, "bytes_received": None, "rtt_median_ms": None,
                       "rtt_max_ms": None, "retransmits": 0, "packets_sent": 20_000, "packets_received": 0,
                       "ip_bytes_sent": 1_760_000, "ip_bytes_received": 0}
    path = tmp_path / "map.html"
    path.write_text(render_html(doc), encoding="utf-8")
    with open_page(path, fragment="view=process") as (page, log):
        width = page.evaluate("(id) => parseFloat(window.netviz.cy.getElementById(id).style('width'))", counted)
        assert width == pytest.approx(1 + (6.246 - 3) * 0.7, abs=0.05)  # 1.76 MB, on DOT's scale
        tap(page, counted)
        details = page.inner_text("#details-body")
        assert "1.8 MB sent / 0 B received (IP packets, headers included; 20000 / 0 packets)" in details
        assert "RTT" not in details.replace("retransmits", "")
        assert log.page_errors == []


@pytest.fixture(scope="module")
def big_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = synthetic_graph(2000, 10000)
    path = tmp_path_factory.mktemp("scale") / "map.html"
    started = time.perf_counter()
    path.write_text(render_html(doc), encoding="utf-8")
    assert time.perf_counter() - started < 30
    return path


@browser
def test_two_thousand_hosts_draw_an_overview_and_open_a_host(big_page: Path) -> None:
    with open_page(big_page, timeout_s=45) as (page, log):
        assert page.evaluate("window.netviz.compact") is True
        # The first view: one node per group of hosts, every host in exactly one of them.
        groups = page.evaluate("window.netviz.groups.map(g => g.hosts.length)")
        assert sum(groups) == 2000 and len(groups) == 20
        drawn = page.evaluate("() => window.netviz.cy.nodes().map(n => n.hasClass('group-node'))")
        assert drawn and all(drawn)
        assert page.evaluate("window.netvizTimings.drawn") < 20_000
        # The process view of everything is not offered.
        assert page.evaluate("document.getElementById('group-process').disabled") is True
        # Open a host: its group opens into hosts, the host into its processes with their flows.
        name = "m0007"
        page.evaluate("(name) => window.netviz.expand(name)", name)
        shown = page.evaluate("""(name) => window.netviz.cy.nodes().filter(n => n.data('machine') === name
            && !n.hasClass('machine') && !n.hasClass('machine-node')).map(n => n.id())""", name)
        assert len(shown) == 5
        edges = page.evaluate("(ids) => window.netviz.cy.edges().filter(e => ids.includes(e.source().id()) || ids.includes(e.target().id())).length", shown)
        assert edges > 0
        # A process's details list its flows, decoded on demand.
        busiest = page.evaluate("(ids) => ids.map(id => window.netviz.cy.getElementById(id)).sort((a, b) => b.degree() - a.degree())[0].id()", shown)
        tap(page, busiest)
        assert "Flows" in page.inner_text("#details-body")
        # Search reaches hosts in closed groups through their group.
        page.evaluate("window.netviz.collapseAll()")
        page.evaluate("window.netviz.search('m1999')")
        assert page.evaluate("() => window.netviz.cy.elements('.match').map(e => e.hasClass('group-node'))") == [True]
        assert log.page_errors == [] and log.console_errors == []
        assert log.requests == [big_page.resolve().as_uri()]

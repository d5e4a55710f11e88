"""`netviz diff` as a map: cached runs (written by the cache's writer and recorded in a real history)
and snapshot files, drawn through the real
command; the marks and the legend read back from the layout the real Graphviz `dot` computed
(`dot -Tjson`), the HTML page's embedded data parsed, and the page drawn in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dot_geometry import run_dot
from history_runs import lab, write_run

from netviz.diff_map import diff_graph
from netviz.render.marks import ADDED_COLOR, NOT_COMPARED_COLOR, REMOVED_COLOR, UNCHANGED_COLOR, UNREACHABLE_COLOR
from netviz.snapshot.writer import dump_snapshot
from netviz.stitch import stitch

NETVIZ = [sys.executable, "-m", "netviz"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")


@pytest.fixture
def cache(tmp_path) -> Path:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    return root


def netviz(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(NETVIZ + list(args), capture_output=True, timeout=120)
    assert done.returncode == code, done.stderr.decode()
    return done


def drawn(source: str) -> tuple[dict, dict, str]:
    """The real dot's layout: edges by label, nodes and clusters by their first label line, the legend's text."""
    layout = run_dot(source)
    objects = layout.get("objects", [])
    edges = {edge["label"]: edge for edge in layout.get("edges", [])}
    named = {}
    legend = ""
    for item in objects:
        if item.get("name") == "legend":
            legend = re.sub(r"<[^>]+>", " ", item["label"])
            continue
        first = re.sub(r"<[^>]+>", "", item.get("label", "").split("<BR/>")[0])
        named[first] = item
    return edges, named, legend


@needs_dot
def test_added_removed_and_unchanged_flows_are_drawn_apart_with_a_legend(cache, tmp_path):
    write_run(cache, lab())
    write_run(cache, lab(extra_flow=True, old_flow=False, cache_listener=True, clients=3))
    target = tmp_path / "diff.dot"
    netviz("diff", "--cache", str(cache), "-o", str(target))  # the format from the extension
    source = target.read_text()
    edges, named, legend = drawn(source)
    added, removed, unchanged = edges["tcp/7000 added"], edges["tcp/6000 removed"], edges["tcp/5432 ×3 (was ×1)"]
    assert (added["color"], added.get("style")) == (ADDED_COLOR, None)
    assert (removed["color"], removed["style"]) == (REMOVED_COLOR, "dashed")
    assert unchanged["color"] == UNCHANGED_COLOR and unchanged.get("style") is None
    assert named["newdb"]["color"] == ADDED_COLOR and named["memcached"]["color"] == ADDED_COLOR
    assert (named["olddb"]["color"], named["olddb"]["style"]) == (REMOVED_COLOR, "rounded,dashed")
    assert named["postgres"]["color"] == named["app"]["color"] == UNCHANGED_COLOR
    for meaning in ("added: in B, not in A", "removed: in A, not in B", "unchanged: in A and B"):
        assert meaning in legend
    assert "not compared" not in legend  # only the styles the map uses
    assert "flows: 1 added, 1 removed" in source


@needs_dot
def test_a_machine_down_in_b_is_marked_unreachable_and_its_flows_not_removed(cache, tmp_path):
    write_run(cache, lab())
    write_run(cache, lab(), failed={"db": "refused"})
    source = netviz("diff", "--cache", str(cache), "--format", "dot").stdout.decode()
    edges, named, legend = drawn(source)
    assert set(edges) == {"tcp/5432 not compared", "tcp/6000 not compared"}
    assert all((edge["color"], edge["style"]) == (NOT_COMPARED_COLOR, "dotted") for edge in edges.values())
    box = named["db"]
    assert (box["color"], box["style"]) == (UNREACHABLE_COLOR, "rounded,dashed")
    assert "unreachable in B (refused): not compared" in box["label"]
    assert "machine unreachable in A or B" in legend and "removed" not in legend
    assert REMOVED_COLOR not in source


def write_snapshots(directory: Path, machines) -> Path:
    directory.mkdir()
    for name, machine in machines.items():
        (directory / f"{name}.json").write_text(dump_snapshot(machine.build(name)))
    return directory


def test_snapshot_files_and_directories_compare_without_any_cache(tmp_path):
    before = write_snapshots(tmp_path / "before", lab())
    after = write_snapshots(tmp_path / "after", lab(extra_flow=True, old_flow=False))
    empty = tmp_path / "no-cache"  # never created: snapshots given by hand need no history
    document = json.loads(netviz("diff", "--cache", str(empty), str(before), str(after), "-f", "json").stdout)
    assert [flow["key"] for flow in document["flows"]["added"]] == ["web|host|app>db|host|newdb|tcp|7000|"]
    assert [flow["key"] for flow in document["flows"]["removed"]] == ["web|host|app>db|host|olddb|tcp|6000|"]
    assert document["a"]["run"] == str(before) and not empty.exists()
    single = json.loads(netviz("diff", "--cache", str(empty), str(before), str(after / "db.json"), "-f", "json").stdout)
    assert single["machines"]["removed"] == ["web"] and single["flows"]["added"] == []
    svg = tmp_path / "diff.svg"
    netviz("diff", "--cache", str(empty), str(before), str(after), "-o", str(svg))
    assert svg.read_bytes().lstrip().startswith(b"<?xml") and b"tcp/7000 added" in svg.read_bytes()


def test_a_snapshot_directory_against_a_recorded_run(cache, tmp_path):
    run = write_run(cache, lab())
    after = write_snapshots(tmp_path / "after", lab(extra_flow=True))
    document = json.loads(netviz("diff", "--cache", str(cache), run.run_id, str(after), "-f", "json").stdout)
    assert document["a"]["run"] == run.run_id
    assert [flow["key"] for flow in document["flows"]["added"]] == ["web|host|app>db|host|newdb|tcp|7000|"]


def test_an_extension_diff_does_not_write_is_a_usage_error(cache, tmp_path):
    write_run(cache, lab())
    write_run(cache, lab(extra_flow=True))
    done = netviz("diff", "--cache", str(cache), "-o", str(tmp_path / "diff.csv"), code=2)
    assert b"diff writes table, json, dot, svg, png, pdf, html" in done.stderr
    png = tmp_path / "diff.png"
    netviz("diff", "--cache", str(cache), "-o", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def embedded(page: str) -> dict:
    """The graph document an HTML page carries."""
    block = re.search(r'<script id="netviz-data" type="application/json">(.*?)</script>', page, re.S)
    assert block is not None
    return json.loads(block.group(1))["graph"]


def test_html_carries_the_marks_and_the_browser_draws_them(cache, tmp_path):
    write_run(cache, lab())
    write_run(cache, lab(extra_flow=True, old_flow=False, clients=2))
    page = tmp_path / "diff.html"
    netviz("diff", "--cache", str(cache), "-o", str(page))
    graph = embedded(page.read_text())
    marks = {flow["server_port"]: (flow["change"], flow.get("count_before")) for flow in graph["flows"]}
    assert marks == {7000: ("added", None), 6000: ("removed", None), 5432: ("unchanged", 1)}
    assert {node["comm"]: node["change"] for node in graph["nodes"]}["olddb"] == "removed"
    assert graph["notes"][-1] == "flows: 1 added, 1 removed"
    from tests.browser.chromium import missing_reason, open_page

    if missing_reason() is not None:
        pytest.skip(missing_reason())
    with open_page(page) as (browser, log):
        seen = browser.evaluate("""() => ({
          edges: window.netviz.cy.edges().map(e => [e.data('label'), e.style('line-color'), e.style('line-style')]),
          legend: Array.from(document.querySelectorAll('#legend li')).map(li => li.textContent)})""")
        assert log.page_errors == [] and log.console_errors == []
    by_label = {label: (color, style) for label, color, style in seen["edges"]}
    assert by_label["tcp 7000 added"] == ("rgb(26,127,55)", "solid")
    assert by_label["tcp 6000 removed"] == ("rgb(207,34,46)", "dashed")
    assert by_label["tcp 5432 \u00d72 (was \u00d71)"][0] == "rgb(160,160,160)"
    assert "green: added (in B, not in A)" in seen["legend"] and "red dashed: removed (in A, not in B)" in seen["legend"]
    assert not any("not compared" in line for line in seen["legend"])


def test_the_union_keeps_every_key_once_and_marks_both_ways():
    first = stitch([machine.build(name) for name, machine in lab().items()])
    second = stitch([machine.build(name) for name, machine in lab(extra_flow=True, old_flow=False).items()])
    graph = diff_graph(first, second, machines_a={"web", "db"}, machines_b={"web", "db"})
    assert len({flow.key for flow in graph.flows}) == len(graph.flows) == 3
    assert [node.id for node in graph.nodes] == [f"n{n}" for n in range(1, len(graph.nodes) + 1)]
    backwards = diff_graph(second, first, machines_a={"web", "db"}, machines_b={"web", "db"})
    flip = {"added": "removed", "removed": "added", "unchanged": "unchanged"}
    assert {flow.key: flip[flow.change] for flow in graph.flows} == {flow.key: flow.change for flow in backwards.flows}


@needs_dot
def test_a_machine_added_in_b_is_boxed_green_and_everything_on_it_added():
    from snapbuilder import Machine

    from netviz.render.dot import render_dot

    before = lab()
    after = lab()
    cache = Machine("cache", "10.0.0.3")
    cache.process(30, "memcached")
    cache.listen(30, "tcp", "0.0.0.0:11211")
    cache.connect(30, "tcp", "10.0.0.3:11211", "10.0.0.1:40000")
    after["web"].connect(10, "tcp", "10.0.0.1:40000", "10.0.0.3:11211")
    after["cache"] = cache
    graph = diff_graph(stitch([m.build(n) for n, m in before.items()]), stitch([m.build(n) for n, m in after.items()]),
                       machines_a=set(before), machines_b=set(after))
    edges, named, legend = drawn(render_dot(graph))
    assert (named["cache"]["color"], named["cache"]["label"].count("added in B")) == (ADDED_COLOR, 1)
    assert named["memcached"]["color"] == ADDED_COLOR and edges["tcp/11211 added"]["color"] == ADDED_COLOR
    assert named["web"]["color"] == "gray50"  # a machine in both runs keeps its usual box

"""The whole chain on the real lab: `netviz run` over SSH to an HTML map, drawn in headless Chromium.

The map must show exactly the flows the lab was built to contain. The screenshot it saves is the
README's picture: `NETVIZ_SCREENSHOT_DIR=docs/img scripts/test.sh tests/test_lab_html.py` refreshes
docs/img/lab-map.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netviz.cli import app
from tests.browser.chromium import missing_reason, open_page
from tests.browser.geometry import GEOMETRY, crossings
from tests.lab.scenario import graph_flow_keys

pytestmark = [pytest.mark.lab, pytest.mark.browser]


def run_netviz(*args: str) -> None:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_lab_map_in_a_real_browser_shows_exactly_the_lab_flows(lab, tmp_path):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cache = tmp_path / "cache"
    page_path = tmp_path / "lab.html"
    graph_path = tmp_path / "lab.json"
    run_netviz("run", "--inventory", str(lab.scenario_inventory), "--cache", str(cache), "--output", str(page_path))
    # The same cached run as JSON: the oracle for what the page must draw.
    run_netviz("stitch", "--cache", str(cache), "--format", "json", "--output", str(graph_path))
    graph = json.loads(graph_path.read_text())
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()

    with open_page(page_path, 1600, 1000) as (page, log):
        drawn = page.evaluate(
            """() => window.netviz.cy.edges().filter(e => e.data('flow')).map(e => [
                   e.data('source'), e.data('target'), e.data('label')])"""
        )
        nodes = {node["id"]: node for node in graph["nodes"]}
        drawn_keys = {
            (nodes[source]["host"], nodes[source]["comm"], nodes[target]["host"], nodes[target]["comm"])
            for source, target, _label in drawn
        }
        expected = {(f.client_host, f.client_comm, f.server_host, f.server_comm) for f in lab.scenario.flows}
        assert drawn_keys == expected
        labels = {label for _s, _t, label in drawn}
        assert any("5432" in label for label in labels) and any("8125" in label for label in labels)
        # no edge runs over a process it does not join (the machines' boxes hold them all)
        boxes = set(page.evaluate("() => window.netviz.cy.nodes('.machine').map(n => n.id())"))
        assert crossings(page.evaluate(GEOMETRY), skip=boxes.__contains__) == []
        # Only the page itself was loaded: no network, no errors.
        assert all(url.startswith("file://") for url in log.requests), log.requests
        assert not log.page_errors, log.page_errors
        keep = os.environ.get("NETVIZ_SCREENSHOT_DIR")
        shot = Path(keep) / "lab-map.png" if keep else tmp_path / "lab-map.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(300)
        page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

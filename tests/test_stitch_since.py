"""`netviz stitch --since SPAN`: the cached runs of a period (written by the cache's writer, as
`netviz collect` writes them) joined in one map, through the real command: each flow's first and
last seen and share of runs in JSON and the table, a flow seen in only some runs drawn dashed with
"seen in N of M runs" in the layout of the real Graphviz `dot`, and in the HTML page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dot_geometry import run_dot
from history_runs import lab, write_run

from netviz.render.marks import SOMETIMES_COLOR

NETVIZ = [sys.executable, "-m", "netviz"]
NIGHTLY = "web|host|app>db|host|newdb|tcp|7000|"
ALWAYS = "web|host|app>db|host|postgres|tcp|5432|"
OLD = "web|host|app>db|host|olddb|tcp|6000|"
DAY = 86400.0


@pytest.fixture
def week(tmp_path) -> tuple[Path, list]:
    """Four runs in the last week, the nightly job's flow (tcp/7000) in one of them, and a run ten
    days ago, outside the week, with a flow (tcp/6000) no run of the week saw."""
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    now = time.time()
    write_run(root, lab(old_flow=True), now=now - 10 * DAY, record=False)
    runs = [write_run(root, lab(old_flow=False, extra_flow=(day == 2)), now=now - day * DAY, record=False)
            for day in (3, 2, 1, 0)]
    return root, runs


def netviz(*args: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(NETVIZ + list(args), capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    return done


def test_json_gives_each_flow_its_first_and_last_seen_and_share_of_runs(week):
    root, runs = week
    document = json.loads(netviz("stitch", "--cache", str(root), "--since", "7d", "-f", "json").stdout)
    periods = {flow["key"]: flow["period"] for flow in document["flows"]}
    assert set(periods) == {NIGHTLY, ALWAYS}  # the run ten days ago is not in the week
    assert periods[NIGHTLY] == {"first_seen": runs[1].started_at, "last_seen": runs[1].started_at, "runs_seen": 1,
                                "runs_taken": 4, "share": 0.25}
    assert periods[ALWAYS] == {"first_seen": runs[0].started_at, "last_seen": runs[3].started_at, "runs_seen": 4,
                               "runs_taken": 4, "share": 1.0}
    assert document["notes"][0].startswith("4 runs, ") and "1 seen in only some runs" in document["notes"][0]
    wider = json.loads(netviz("stitch", "--cache", str(root), "--since", "2w", "-f", "json").stdout)
    assert {flow["key"]: flow["period"]["runs_seen"] for flow in wider["flows"]} == {NIGHTLY: 1, ALWAYS: 5, OLD: 1}


def test_the_table_has_first_seen_last_seen_and_seen_in_columns(week, tmp_path):
    root, runs = week
    netviz("stitch", "--cache", str(root), "--since", "7d", "-o", str(tmp_path / "week.txt"))
    text = (tmp_path / "week.txt").read_text()
    header = text.splitlines()[0]
    assert re.search(r"first seen\s+last seen\s+seen in\s+notes", header)
    nightly = next(line for line in text.splitlines() if "tcp/7000" in line)
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(runs[1].started_at))
    assert nightly.count(day) == 2 and re.search(r"\b1/4\b", nightly)
    assert re.search(r"\ball 4\b", next(line for line in text.splitlines() if "tcp/5432" in line))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_dot_draws_the_nightly_flow_dashed_and_says_in_how_many_runs(week):
    root, _ = week
    layout = run_dot(netviz("stitch", "--cache", str(root), "--since", "7d", "-f", "dot").stdout)
    edges = {edge["label"]: edge for edge in layout["edges"]}
    nightly = edges["tcp/7000 seen in 1 of 4 runs"]
    assert (nightly["color"], nightly["style"]) == (SOMETIMES_COLOR, "dashed")
    always = edges["tcp/5432"]
    assert always.get("style") is None and always.get("color") is None
    legend = next(item["label"] for item in layout["objects"] if item.get("name") == "legend")
    assert "seen in only some runs of the period" in legend


def test_html_carries_the_period_and_the_browser_draws_it(week, tmp_path):
    root, _ = week
    page = tmp_path / "week.html"
    netviz("stitch", "--cache", str(root), "--since", "7d", "-o", str(page))
    block = re.search(r'<script id="netviz-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    graph = json.loads(block.group(1))["graph"]
    assert {flow["server_port"]: flow["period"]["runs_seen"] for flow in graph["flows"]} == {7000: 1, 5432: 4}
    from tests.browser.chromium import missing_reason, open_page

    if missing_reason() is not None:
        pytest.skip(missing_reason())
    with open_page(page) as (browser, log):
        edges = browser.evaluate("() => window.netviz.cy.edges().map(e => [e.data('label'), e.style('line-style')])")
        legend = browser.evaluate("() => Array.from(document.querySelectorAll('#legend li')).map(li => li.textContent)")
        assert log.page_errors == [] and log.console_errors == []
    assert dict(edges) == {"tcp 7000 seen in 1 of 4 runs": "dashed", "tcp 5432": "solid"}
    assert "grey dashed: seen in only some runs of the period" in legend


def test_a_machine_down_in_a_run_does_not_count_its_stale_flows_as_seen(tmp_path):
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    write_run(root, lab(), record=False)
    write_run(root, lab(), failed={"db": "refused"}, record=False)  # db drawn from its last snapshot
    document = json.loads(netviz("stitch", "--cache", str(root), "--since", "1d", "-f", "json").stdout)
    assert {flow["key"]: (flow["period"]["runs_seen"], flow["period"]["runs_taken"]) for flow in document["flows"]} \
        == {ALWAYS: (1, 2), OLD: (1, 2)}


def test_since_with_snapshots_given_is_a_usage_error_and_an_empty_period_an_error(week, tmp_path):
    root, _ = week
    assert "give no SNAPSHOT_OR_DIR" in netviz("stitch", "--cache", str(root), "--since", "7d", str(tmp_path),
                                               code=2).stderr
    assert "no cached run" in netviz("stitch", "--cache", str(tmp_path / "none"), "--since", "7d", code=1).stderr


def test_csv_graphml_and_mermaid_carry_the_period(week):
    """The formats for tools: CSV columns (UTC times), GraphML data keys read back by networkx,
    Mermaid's label and dotted arrow for the flow seen in only some runs."""
    import csv
    import io
    from datetime import datetime, timezone

    root, runs = week
    rows = list(csv.DictReader(io.StringIO(netviz("stitch", "--cache", str(root), "--since", "7d", "-f", "csv").stdout)))
    by_port = {row["server_port"]: row for row in rows}
    utc = [datetime.fromtimestamp(run.started_at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
           for run in runs]
    assert (by_port["7000"]["first_seen"], by_port["7000"]["last_seen"], by_port["7000"]["runs_seen"],
            by_port["7000"]["runs_taken"]) == (utc[1], utc[1], "1", "4")
    assert (by_port["5432"]["first_seen"], by_port["5432"]["last_seen"], by_port["5432"]["runs_seen"]) == (utc[0], utc[3], "4")
    networkx = pytest.importorskip("networkx", reason="networkx reads GraphML (pip install networkx)")
    graph = networkx.parse_graphml(netviz("stitch", "--cache", str(root), "--since", "7d", "-f", "graphml").stdout)
    periods = {data["port"]: (data["period_first_seen"], data["runs_seen"], data["runs_taken"])
               for _, _, data in graph.edges(data=True)}
    assert periods == {7000: (runs[1].started_at, 1, 4), 5432: (runs[0].started_at, 4, 4)}
    mermaid = netviz("stitch", "--cache", str(root), "--since", "7d", "-f", "mermaid").stdout
    nightly = next(line for line in mermaid.splitlines() if "tcp/7000" in line)
    always = next(line for line in mermaid.splitlines() if "tcp/5432" in line)
    assert "-.->" in nightly and "seen in 1 of 4 runs" in nightly
    assert "-->" in always and "seen in" not in always
    # Without a period, none of these columns or keys
    plain = netviz("stitch", "--cache", str(root), "-f", "csv").stdout.splitlines()[0]
    assert "runs_seen" not in plain and "first_seen" not in plain

"""The `history` and `diff` jobs: open the cache's history (mended against the cache first), ask
it, and give back the text to print. Nothing here prints (cli.py does)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from netviz.cache import MANIFEST, default_cache_dir, trusted_cache_dir
from netviz.diff import RunDiff, compare, diff_json, diff_table
from netviz.diff_sides import facts as side_facts
from netviz.history import (
    RunLine,
    Timeline,
    last_two,
    newest_run,
    open_history,
    rebuild,
    recorded_runs,
    resolve,
    run_lines,
    sync,
    timelines,
)
from netviz.history_diff import diff_recorded

HISTORY_SCHEMA = "netviz.history/1"


@dataclass
class Report:
    """Text for stdout, and lines for stderr."""

    text: str
    notes: list[str] = field(default_factory=list)
    diff: Optional[RunDiff] = None
    data: bytes = b""  # what to write (diff: the text, or a map in DIFF_MAP_FORMATS)


def _root(cache_dir: Optional[Path]) -> Path:
    return trusted_cache_dir(Path(cache_dir).expanduser() if cache_dir else default_cache_dir())


def _when(seconds: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds is not None else "-"


def _open_synced(root: Path, notes: list[str]):
    connection = open_history(root)
    report = sync(connection, root)
    if report.recorded:
        notes.append(f"recorded {len(report.recorded)} cached run(s) the history lacked")
    notes.extend(f"run skipped: {why}" for why in report.skipped)
    return connection


def history_job(cache_dir: Optional[Path], *, since: Optional[float] = None, flow: Optional[str] = None,
                node: Optional[str] = None, fmt: str = "table", rebuild_first: bool = False) -> Report:
    """`netviz history`: one line per run, or the timelines of the flows/nodes a term matches."""
    root = _root(cache_dir)
    notes: list[str] = []
    if rebuild_first:
        rebuilt = rebuild(root)
        notes.append(f"history rebuilt from {len(rebuilt.recorded)} cached run(s)")
    connection = _open_synced(root, notes)
    try:
        if flow is not None or node is not None:
            what, term = ("flow", flow) if flow is not None else ("node", node)
            found = timelines(connection, term or "", what, since)
            if not found:
                notes.append(f"no {what} of the history matches {term!r}")
            return Report(_timelines_json(found) if fmt == "json" else _timelines_table(found), notes)
        lines = run_lines(connection, since)
        return Report(_runs_json(lines) if fmt == "json" else _runs_table(lines), notes)
    finally:
        connection.close()


def _runs_table(lines: list[RunLine]) -> str:
    rows = ["when                 run                       ok  failed  flows    new   gone"]
    for line in lines:
        new = "-" if line.flows_new is None else f"+{line.flows_new}"
        gone = "-" if line.flows_gone is None else f"-{line.flows_gone}"
        mark = "  (interrupted)" if line.interrupted else ""
        rows.append(f"{_when(line.started_at)}  {line.run_id}  {line.machines_ok:>4}  {line.machines_failed:>6}  "
                    f"{line.flows:>5}  {new:>5}  {gone:>5}{mark}")
    return "\n".join(rows) + "\n"


def _runs_json(lines: list[RunLine]) -> str:
    return json.dumps({"schema": HISTORY_SCHEMA, "runs": [line.to_json() for line in lines]}, indent=2) + "\n"


def _timelines_table(found: list[Timeline]) -> str:
    rows = []
    for line in found:
        counts = " ".join("." if count is None else str(count) for _, _, count in line.counts[-20:])
        rows.append(f"{line.key}\n  first seen {_when(line.first_seen)}  last seen {_when(line.last_seen)}  "
                    f"seen in {line.seen} of {line.taken} runs\n  counts (oldest first, last 20; . not seen): "
                    f"{counts}")
    return "\n".join(rows) + ("\n" if rows else "")


def _timelines_json(found: list[Timeline]) -> str:
    return json.dumps({"schema": HISTORY_SCHEMA, "timelines": [line.to_json() for line in found]}, indent=2) + "\n"


DIFF_MAP_FORMATS = ("dot", "svg", "png", "pdf", "html")  # the union of the two runs drawn with change marks
DIFF_FORMATS = ("table", "json") + DIFF_MAP_FORMATS


def diff_job(cache_dir: Optional[Path], a: Optional[str] = None, b: Optional[str] = None, *, fmt: str = "table",
             now: Optional[float] = None, timeout: float = 120.0,
             on_notice: Optional[Callable[[str], None]] = None) -> Report:
    """`netviz diff [A] [B]`: by default the last two runs; with A alone, A against the newest.
    A and B may also be snapshot files or directories (stitched here). `fmt`: table, json (the
    netviz.diff/1 document) or a map (DIFF_MAP_FORMATS: the union of both runs, marked)."""
    from netviz.diff_sides import names_snapshots

    if fmt not in DIFF_FORMATS:
        raise ValueError(f"diff cannot write {fmt!r}: use one of {', '.join(DIFF_FORMATS)}")
    root = _root(cache_dir)
    notes: list[str] = []
    by_hand = [spec is not None and names_snapshots(spec) and not (Path(spec) / MANIFEST).is_file() for spec in (a, b)]
    connection = None if all(by_hand) else _open_synced(root, notes)
    try:
        side_a, side_b = _sides(connection, root, a, b, now if now is not None else time.time())
        if fmt in DIFF_MAP_FORMATS:
            return _diff_map(root, connection, side_a, side_b, fmt, notes, timeout, on_notice)
        if side_a.recorded and side_b.recorded and connection is not None:
            assert side_a.run_id is not None and side_b.run_id is not None
            diff = diff_recorded(connection, side_a.run_id, side_b.run_id)
        else:
            diff = compare(side_facts(side_a, root, connection), side_facts(side_b, root, connection))
    finally:
        if connection is not None:
            connection.close()
    text = diff_json(diff) if fmt == "json" else diff_table(diff)
    return Report(text, notes, diff, text.encode("utf-8"))


def _sides(connection, root: Path, a: Optional[str], b: Optional[str], moment: float):
    """The two sides the arguments name (netviz.diff_sides)."""
    from netviz.diff_sides import Side, names_snapshots, snapshot_side

    held = recorded_runs(connection) if connection is not None else None
    newest: list[str] = []
    if connection is not None and (a is None or b is None):
        newest = list(last_two(connection)) if a is None else [newest_run(connection)]

    def side(spec: Optional[str], default: str) -> Side:
        if spec is not None and names_snapshots(spec):
            return snapshot_side(spec, held)
        run_id = resolve(connection, spec, root, moment) if spec is not None else default
        return Side(spec or run_id, run_id=run_id)

    first = side(a, newest[0] if newest else "")
    second = side(b, newest[-1] if newest else "")
    return first, second


def _diff_map(root: Path, connection, side_a, side_b, fmt: str, notes: list[str], timeout: float,
              on_notice: Optional[Callable[[str], None]]) -> Report:
    """The two sides stitched, compared in memory, and drawn as one map with the change marks."""
    from netviz.diff_map import diff_graph
    from netviz.diff_sides import graph_and_facts
    from netviz.render import RenderOptions, render

    graph_a, facts_a = graph_and_facts(side_a, root, connection)
    graph_b, facts_b = graph_and_facts(side_b, root, connection)
    diff = compare(facts_a, facts_b)
    categories = {name: machine.category for facts in (facts_a, facts_b) for name, machine in facts.machines.items()
                  if machine.category}
    title = (f"diff: A = {facts_a.run_id} ({_when(facts_a.started_at)}), "
             f"B = {facts_b.run_id} ({_when(facts_b.started_at)})")
    graph = diff_graph(graph_a, graph_b, machines_a=facts_a.machines, machines_b=facts_b.machines,
                       down_a=facts_a.unreachable(), down_b=facts_b.unreachable(), categories=categories, title=title)
    # every process is drawn: folding them (--detail) would merge added, removed and unchanged flows
    data = render(graph, fmt, on_notice=on_notice, options=RenderOptions(detail="full", timeout=timeout))
    return Report("", notes, diff, data)

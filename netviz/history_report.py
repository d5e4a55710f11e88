"""The `history` and `diff` jobs: open the cache's history (mended against the cache first), ask
it, and give back the text to print. Nothing here prints (cli.py does)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from netviz.cache import default_cache_dir, trusted_cache_dir
from netviz.diff import RunDiff, diff_json, diff_table
from netviz.history import (
    RunLine,
    Timeline,
    last_two,
    open_history,
    rebuild,
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


def diff_job(cache_dir: Optional[Path], a: Optional[str] = None, b: Optional[str] = None, *, fmt: str = "table",
             now: Optional[float] = None) -> Report:
    """`netviz diff [A] [B]`: by default the last two runs; with A alone, A against the newest."""
    root = _root(cache_dir)
    notes: list[str] = []
    connection = _open_synced(root, notes)
    try:
        moment = now if now is not None else time.time()
        newest = last_two(connection)
        first = resolve(connection, a, root, moment) if a is not None else newest[0]
        second = resolve(connection, b, root, moment) if b is not None else newest[1]
        diff = diff_recorded(connection, first, second)
    finally:
        connection.close()
    return Report(diff_json(diff) if fmt == "json" else diff_table(diff), notes, diff)

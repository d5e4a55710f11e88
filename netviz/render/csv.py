"""The flows as CSV or TSV: one row per flow (a class of connections between two processes on
one service), with a header, for spreadsheets and for `grep`/`cut`/`awk` in a pipe.

Names come from untrusted machines, so every cell is made safe twice:
- for the text: control, format (bidi, zero-width) and separator characters are written as
  `\\xNN`/`\\uNNNN` (netviz.textsafe), so a row is always one line and shows no escape sequence;
  the stdlib csv writer quotes commas and quotes;
- for spreadsheets: a cell that would start with `=`, `+`, `-`, `@` (or a tab, a carriage return,
  or their full-width forms) gets a leading `'`, as OWASP advises against formula injection, so
  that Calc, Excel or Sheets show it as text instead of evaluating it.
Exact names are in the JSON format.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import datetime, timezone

from netviz.graph import KIND_HOST, KIND_OUTSIDE, Flow, FlowGraph, Node
from netviz.textsafe import for_terminal

HEADERS = ("client_host", "client_process", "client_pids", "server_host", "server_process", "server_pids",
           "proto", "server_address", "server_port", "state", "count", "directed", "inferred", "via")
# Only when the graph has a window (the same rule as the table and the JSON document)
WINDOW_HEADERS = ("connections", "persistent", "per_minute")
# Only when some flow's window counted bytes (TCP, tcp_info at each sample): inside the window
WINDOW_BYTES_HEADERS = ("window_bytes_sent", "window_bytes_received", "bytes_per_second")
# Only for the union of a period (`stitch --since`, as the JSON `period`): UTC times in ISO 8601
PERIOD_HEADERS = ("first_seen", "last_seen", "runs_seen", "runs_taken")
# Only when some flow has TCP counters (as the JSON `traffic`): numbers, empty where unknown
TRAFFIC_HEADERS = ("bytes_sent", "bytes_received", "rtt_median_ms", "rtt_max_ms", "retransmits")
# Only when conntrack counted some flow (nf_conntrack_acct): packets, and bytes of whole IP packets
CONNTRACK_HEADERS = ("packets_sent", "packets_received", "ip_bytes_sent", "ip_bytes_received")

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection");
# the full-width forms count in some locales.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")

# How each format writes its rows: "\n" ends a row (for pipes; every CSV reader accepts it)
DIALECTS = {"csv": csv.excel, "tsv": csv.excel_tab}


def cell(text: str) -> str:
    """A cell for untrusted text: controls escaped, never read as a formula."""
    safe = for_terminal(text, limit=sys.maxsize)
    return "'" + safe if safe.startswith(FORMULA_PREFIXES) else safe


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _end(node: Node, pids: tuple[int, ...]) -> tuple[str, str, str]:
    """Machine, process and pids of one end of a flow (the flow's own pids, those that held its sockets)."""
    if node.kind == KIND_HOST:
        process = ""
    elif node.kind == KIND_OUTSIDE:
        process = "(outside)"
    else:
        process = node.comm
    return cell(node.host), cell(process), " ".join(str(pid) for pid in pids)


def _state(flow: Flow) -> str:
    """What the graph knows of the connections' state: open at the capture, or over a window."""
    if flow.window is None:
        return "open"
    return "persistent" if flow.window.persistent else "short-lived"


def _window_cells(flow: Flow) -> tuple[str, ...]:
    window = flow.window
    if window is None:
        return ("", "", "")
    return (str(window.connections), _flag(window.persistent), f"{window.per_minute:g}")


def _traffic_cells(flow: Flow) -> tuple[str, ...]:
    traffic = flow.traffic
    if traffic is None:
        return ("",) * len(TRAFFIC_HEADERS)
    timed = bool(traffic.rtts)
    return tuple("" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
                 for value in (traffic.bytes_sent, traffic.bytes_received, traffic.rtt_median_ms if timed else None,
                               traffic.rtt_max_ms if timed else None, traffic.retransmits))


def _conntrack_cells(flow: Flow) -> tuple[str, ...]:
    traffic = flow.traffic
    if traffic is None or traffic.packets_sent is None:
        return ("",) * len(CONNTRACK_HEADERS)
    return tuple(str(value) for value in (traffic.packets_sent, traffic.packets_received,
                                          traffic.ip_bytes_sent, traffic.ip_bytes_received))


def _window_bytes_cells(flow: Flow) -> tuple[str, ...]:
    window = flow.window
    if window is None or window.bytes_sent is None:
        return ("",) * len(WINDOW_BYTES_HEADERS)
    rate = window.bytes_per_second
    return (str(window.bytes_sent), str(window.bytes_received), "" if rate is None else f"{rate:g}")


def _period_cells(flow: Flow) -> tuple[str, ...]:
    period = flow.period
    if period is None:
        return ("",) * len(PERIOD_HEADERS)
    return (_utc(period.first_seen), _utc(period.last_seen), str(period.runs_seen), str(period.runs_taken))


def _utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def has_window(graph: FlowGraph) -> bool:
    """Does the graph carry window facts (then the rows have the window columns)?"""
    return any(host.window is not None for host in graph.hosts) or any(flow.window is not None for flow in graph.flows)


def flow_rows(graph: FlowGraph) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and one row of safe cells per flow, in the graph's order (client, server, service)."""
    nodes = graph.nodes_by_id()
    windowed = has_window(graph)
    moved = any(flow.window is not None and flow.window.bytes_sent is not None for flow in graph.flows)
    periodic = any(flow.period is not None for flow in graph.flows)
    measured = any(flow.traffic is not None for flow in graph.flows)
    counted = any(flow.traffic is not None and flow.traffic.packets_sent is not None for flow in graph.flows)
    rows = []
    for flow in graph.flows:
        row = (*_end(nodes[flow.client], flow.client_pids), *_end(nodes[flow.server], flow.server_pids),
               flow.proto, cell(flow.server_address), str(flow.server_port), _state(flow), str(flow.count),
               _flag(flow.directed), _flag(flow.inferred), cell(flow.via or ""))
        if windowed:
            row += _window_cells(flow)
        if moved:
            row += _window_bytes_cells(flow)
        if periodic:
            row += _period_cells(flow)
        if measured:
            row += _traffic_cells(flow)
        rows.append(row + _conntrack_cells(flow) if counted else row)
    headers = (HEADERS + (WINDOW_HEADERS if windowed else ()) + (WINDOW_BYTES_HEADERS if moved else ())
               + (PERIOD_HEADERS if periodic else ())
               + (TRAFFIC_HEADERS if measured else ()) + (CONNTRACK_HEADERS if counted else ()))
    return headers, rows


def render_rows(graph: FlowGraph, fmt: str = "csv") -> str:
    """The flows as `csv` or `tsv` text, header first, rows ending in "\\n"."""
    out = io.StringIO()
    writer = csv.writer(out, dialect=DIALECTS[fmt], lineterminator="\n")
    headers, rows = flow_rows(graph)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()

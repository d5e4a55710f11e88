"""The flows as a table: rows of plain strings, shown by console.print_table in a terminal, or
written as aligned text to a file or a pipe."""

from __future__ import annotations

from netviz.graph import FlowGraph, Node
from netviz.textsafe import for_terminal

HEADERS = ("client", "server", "service", "count", "notes")


def _endpoint(node: Node) -> str:
    name = for_terminal(node.comm if node.kind != "host" else node.host, limit=40)
    if node.kind == "host":
        return name
    if node.kind == "outside":
        return f"{for_terminal(node.host, limit=40)}: (outside)"
    pids = ""
    if node.pids:
        pids = f"[{node.pids[0]}" + (f" +{len(node.pids) - 1}" if len(node.pids) > 1 else "") + "]"
    return f"{for_terminal(node.host, limit=40)}: {name}{pids}"


def table_rows(graph: FlowGraph) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and one row per flow, in the graph's order."""
    nodes = graph.nodes_by_id()
    rows = []
    for flow in graph.flows:
        notes = []
        if not flow.directed:
            notes.append("undirected")
        if flow.inferred:
            notes.append("inferred")
        if flow.via:
            notes.append(f"via {for_terminal(flow.via, limit=40)}")
        rows.append(
            (
                _endpoint(nodes[flow.client]),
                _endpoint(nodes[flow.server]),
                f"{flow.proto}/{flow.server_port}",
                str(flow.count),
                ", ".join(notes),
            )
        )
    return HEADERS, rows


def table_footer(graph: FlowGraph) -> str:
    summary = graph.summary()
    return (
        f"{summary['hosts']} machines, {summary['flows']} flows ({summary['connections']} connections); "
        f"not drawn: {summary['outside']} outside, {summary['unresolved']} unresolved"
    )


def render_table_text(graph: FlowGraph) -> str:
    """Aligned plain text, for files and pipes."""
    headers, rows = table_rows(graph)
    widths = [max([len(headers[column])] + [len(row[column]) for row in rows]) for column in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    lines.append("")
    lines.append(table_footer(graph))
    return "\n".join(lines) + "\n"

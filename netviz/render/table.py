"""The flows as a table: rows of plain strings, shown by console.print_table in a terminal, or
written as aligned text to a file or a pipe. Flows come busiest first, and a second table names
the busiest machines, so that the top of a long listing answers "who talks most"."""

from __future__ import annotations

import time
from dataclasses import dataclass

from netviz.graph import KIND_HOST, KIND_OUTSIDE, Flow, FlowGraph, FlowWindow, Node
from netviz.textsafe import for_terminal

HEADERS = ("client", "server", "service", "count", "notes")
# With a window: distinct connections it saw, and "persistent" or their rate
WINDOW_HEADERS = ("client", "server", "service", "count", "seen", "rate", "notes")
# With TCP counters: bytes sent / received (client's view), RTT median / max (ms), retransmits
TRAFFIC_HEADERS = ("bytes", "rtt ms", "retrans")
# `stitch --since`: when each flow was first and last seen in the period's runs, in how many of them
PERIOD_HEADERS = ("first seen", "last seen", "seen in")
MACHINE_HEADERS = ("machine", "connections", "flows", "nodes", "outside", "unresolved")
BUSIEST_MACHINES = 10  # rows of the machine table
BUSIEST_SHOWN = 5  # items in the one-line summaries of a run


def _endpoint(node: Node) -> str:
    name = for_terminal(node.comm if node.kind != KIND_HOST else node.host, limit=40)
    if node.kind == KIND_HOST:
        return name
    if node.kind == KIND_OUTSIDE:
        peer = f" {for_terminal(node.address, limit=45)}" if node.address else ""
        if node.peer_name:
            peer = f" {for_terminal(node.peer_name, limit=40)}{peer}"
        return f"{for_terminal(node.host, limit=40)}: (outside{peer})"
    if node.short_lived and node.cmdline:
        name += f" ({for_terminal(node.cmdline, limit=40)}, inferred)"
    pids = ""
    if node.pids:
        pids = f"[{node.pids[0]}" + (f" +{len(node.pids) - 1}" if len(node.pids) > 1 else "") + "]"
    where = for_terminal(node.host, limit=40)
    if node.netns:  # a container's namespace on that machine
        where += f"/{for_terminal(node.netns_name or node.netns, limit=40)}"
    return f"{where}: {name}{pids}"


def busiest_flows(graph: FlowGraph, by_bytes: bool = False) -> list[Flow]:
    """Flows by connection count, largest first, then by connections a window saw (graph order
    among equals); `by_bytes`: by bytes moved both ways first (flows without counters last)."""
    def order(flow: Flow) -> tuple[int, ...]:
        busy = (-flow.count, -(flow.window.connections if flow.window else 0))
        if by_bytes:
            return (-(flow.traffic.total_bytes if flow.traffic else -1),) + busy
        return busy
    return sorted(graph.flows, key=order)


def _window_rate(window: FlowWindow) -> str:
    """`persistent`, `~12 per minute`, and the bytes' rate when the window counted them."""
    moved = window.bytes_rate_text()
    return window.rate_text() if moved is None else f"{window.rate_text()}, {moved}"


def table_rows(graph: FlowGraph, by_bytes: bool = False) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and one row per flow, busiest first (by connections, or by bytes); two more columns
    when a window saw the flows, three when the capture read TCP counters."""
    nodes = graph.nodes_by_id()
    windowed = any(flow.window is not None for flow in graph.flows)
    measured = any(flow.traffic is not None for flow in graph.flows)
    periodic = any(flow.period is not None for flow in graph.flows)
    rows = []
    for flow in busiest_flows(graph, by_bytes):
        notes = []
        if not flow.directed:
            notes.append("undirected")
        if flow.inferred:
            notes.append("inferred")
        if flow.via:
            notes.append(f"via {for_terminal(flow.via, limit=40)}"
                         + (f" (dialled {flow.dialled_text()})" if flow.dialled else ""))
        row: tuple[str, ...] = (_endpoint(nodes[flow.client]), _endpoint(nodes[flow.server]),
                                f"{flow.proto}/{flow.server_port}", str(flow.count))
        if windowed:
            window = flow.window
            row += (str(window.connections), _window_rate(window)) if window is not None else ("", "")
        if measured:
            traffic = flow.traffic
            row += ((traffic.bytes_text(), traffic.rtt_text(), str(traffic.retransmits)) if traffic is not None
                    else ("", "", ""))
        if periodic:
            row += _period_cells(flow)
        rows.append(row + (", ".join(notes),))
    headers = WINDOW_HEADERS if windowed else HEADERS
    if measured:  # the counters' columns before the notes
        headers = headers[:-1] + TRAFFIC_HEADERS + headers[-1:]
    if periodic:
        headers = headers[:-1] + PERIOD_HEADERS + headers[-1:]
    return headers, rows


def _period_cells(flow: Flow) -> tuple[str, str, str]:
    """First seen, last seen (local time, to the minute), `3/1,008` runs (`all 12` when in every run)."""
    period = flow.period
    if period is None:
        return ("", "", "")
    when = [time.strftime("%Y-%m-%d %H:%M", time.localtime(moment)) for moment in (period.first_seen, period.last_seen)]
    share = f"all {period.runs_taken:,}" if period.always else f"{period.runs_seen:,}/{period.runs_taken:,}"
    return (when[0], when[1], share)


@dataclass
class MachineLoad:
    """How much one machine takes part in the drawn flows."""

    name: str
    connections: int = 0
    flows: int = 0
    nodes: int = 0
    outside: int = 0
    unresolved: int = 0


def machine_loads(graph: FlowGraph) -> list[MachineLoad]:
    """Every machine with the flows and connections touching it (a flow inside one machine counts
    once), busiest first: by connections, then flows, then name."""
    loads = {host.name: MachineLoad(host.name, outside=host.outside, unresolved=host.unresolved) for host in graph.hosts}
    host_of = {node.id: node.host for node in graph.nodes}
    for node in graph.nodes:
        if node.kind != KIND_OUTSIDE and node.host in loads:
            loads[node.host].nodes += 1
    for flow in graph.flows:
        for host in {host_of[flow.client], host_of[flow.server]}:
            if host in loads:
                loads[host].connections += flow.count
                loads[host].flows += 1
    return sorted(loads.values(), key=lambda load: (-load.connections, -load.flows, load.name))


def machine_rows(graph: FlowGraph, limit: int = BUSIEST_MACHINES) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and the `limit` busiest machines."""
    rows = [
        (for_terminal(load.name, limit=60), str(load.connections), str(load.flows), str(load.nodes),
         str(load.outside), str(load.unresolved))
        for load in machine_loads(graph)[:limit]
    ]
    return MACHINE_HEADERS, rows


def busiest_lines(graph: FlowGraph, limit: int = BUSIEST_SHOWN) -> list[str]:
    """Two lines for the end of a run: the busiest machines and the busiest flows."""
    if not graph.flows:
        return []
    nodes = graph.nodes_by_id()
    machines = ", ".join(
        f"{for_terminal(load.name, limit=60)} ({_counted(load.connections, 'connection')}, {_counted(load.flows, 'flow')})"
        for load in machine_loads(graph)[:limit] if load.connections
    )
    flows = ", ".join(
        f"{_endpoint(nodes[flow.client])} -> {_endpoint(nodes[flow.server])} {flow.proto}/{flow.server_port} ×{flow.count}"
        for flow in busiest_flows(graph)[:limit]
    )
    return [f"busiest machines: {machines}", f"busiest flows: {flows}"]


def unresolved_lines(graph: FlowGraph, limit: int = BUSIEST_SHOWN) -> list[str]:
    """A few connections left unresolved and why, so that a reader can check them (the graph's
    JSON keeps up to ten per machine)."""
    examples = [(host.name, example) for host in graph.hosts for example in host.unresolved_examples]
    if not examples:
        return []
    lines = [f"unresolved (first {min(limit, len(examples))} of {graph.unresolved}):"]
    for name, example in examples[:limit]:
        local = _address_port(example.local, example.local_port)
        remote = _address_port(example.remote, example.remote_port)
        holder = f" pid {example.pid}" if example.pid is not None else ""
        lines.append(f"  {for_terminal(name, limit=60)}: {example.proto} {local} -> {remote}{holder}: {example.why}")
    return lines


def window_lines(graph: FlowGraph) -> list[str]:
    """One line per machine observed over a window: its length, samples, and the event sources
    it had to do without (what a short-lived flow needs to be seen at all)."""
    return [f"{for_terminal(host.name, limit=60)}: {host.window.describe()}" for host in graph.hosts
            if host.window is not None]


def _address_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _counted(count: int, noun: str) -> str:
    """`1 machine`, `73,000 flows`: thousands separated, a plural past one."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def table_footer(graph: FlowGraph) -> str:
    """One line: what is drawn, and what is not (the notes of a filtered view are said apart)."""
    summary = graph.summary()
    drawn = (f"{_counted(summary['hosts'], 'machine')}, {_counted(summary['flows'], 'flow')} "
             f"({_counted(summary['connections'], 'connection')}); ")
    outside, unresolved = f"{summary['outside']:,} outside", f"{summary['unresolved']:,} unresolved"
    if any(node.kind == KIND_OUTSIDE for node in graph.nodes):  # --show-external draws them
        return drawn + f"{outside} (drawn); not drawn: {unresolved}"
    return drawn + f"not drawn: {outside}, {unresolved}"


def _aligned(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max([len(headers[column])] + [len(row[column]) for row in rows]) for column in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return lines


def render_table_text(graph: FlowGraph, by_bytes: bool = False) -> str:
    """Aligned plain text, for files and pipes: the flows (by connections, or by bytes), then the
    busiest machines, then the footer."""
    lines = _aligned(*table_rows(graph, by_bytes))
    headers, rows = machine_rows(graph)
    if rows:
        lines += ["", f"busiest machines (top {len(rows)} of {len(graph.hosts)}, by connections)"]
        lines += _aligned(headers, rows)
    lines.append("")
    lines.extend(unresolved_lines(graph))
    lines.extend(window_lines(graph))
    lines.extend(for_terminal(note, limit=400) for note in graph.notes)
    lines.append(table_footer(graph))
    return "\n".join(lines) + "\n"

"""Graphviz DOT for a FlowGraph: one cluster per machine, one node per process (or machine),
edges from client to server.

Every name comes from untrusted machines (any user can call a process `"]; evil -> x [`), so DOT
structure never contains them: node and cluster ids are generated, and every label is an HTML-like
label whose text is HTML-escaped after control characters are made visible. Graphviz still
expands \\N, \\G, \\E, \\T, \\H, \\L inside HTML-like labels (even when the backslash is written
as an entity), and turns a doubled backslash into one: so every backslash is doubled.
"""

from __future__ import annotations

import html
import math
import re

from netviz.aggregate import EDGE_LABEL_LIMIT
from netviz.graph import KIND_HOST, KIND_OUTSIDE, UNATTRIBUTED, Flow, FlowGraph, HostEntry, Node, is_unconfined
from netviz.render.legend import LEGEND_ID, legend_node
from netviz.render.marks import attributes_text, flow_mark, flow_words, host_mark, node_mark
from netviz.textsafe import for_terminal

MAX_PIDS_SHOWN = 6
MAX_LISTENING_SHOWN = 4
MAX_FOLDED_SHOWN = 4
MAX_SERVICES_SHOWN = 3
# Colour is kept for what is rare and worth seeing: most processes of a machine run as root, so
# root is only written (`user root`), never coloured.
UNCONFINED_COLOR = "red"
INGRESS_COLOR = "darkorange3"
# Top to bottom, machines side by side, with room between nodes and ranks: measured with the real
# `dot` on a small stack and the golden fleet (tests/test_render_dot_geometry.py), left to right
# stacked the machines and sent their edges, far from their labels, across the other machines.
GRAPH_ATTRIBUTES = 'rankdir=TB, nodesep=0.8, ranksep=1.0, charset="UTF-8", fontname="Helvetica", fontsize=11, newrank=true'


def label_text(text: str, limit: int = 120) -> str:
    """Text made safe for an HTML-like label: controls shown as \\xHH, markup escaped,
    backslashes doubled so that Graphviz shows them instead of expanding \\G and friends.
    Empty text is shown as "": Graphviz refuses an empty <B></B> (any process may have an empty name).
    "]" is written as a character reference: Graphviz's label lexer rejects text made only of "]"."""
    if not text:
        return "&quot;&quot;"
    return html.escape(for_terminal(text, limit=limit), quote=True).replace("\\", "\\\\").replace("]", "&#93;")


def _font(text: str, color: str) -> str:
    return f'<FONT COLOR="{color}">{text}</FONT>'


def _pids(pids: tuple[int, ...]) -> str:
    shown = ", ".join(str(pid) for pid in pids[:MAX_PIDS_SHOWN])
    if len(pids) > MAX_PIDS_SHOWN:
        shown += f" … (+{len(pids) - MAX_PIDS_SHOWN})"
    return ("pid " if len(pids) == 1 else "pids ") + shown


def _listening(node: Node) -> str:
    items = [
        f"{item.proto} {'[' + item.address + ']' if ':' in item.address else item.address}:{item.port}"
        for item in node.listening[:MAX_LISTENING_SHOWN]
    ]
    if len(node.listening) > MAX_LISTENING_SHOWN:
        items.append(f"+{len(node.listening) - MAX_LISTENING_SHOWN}")
    return "listens " + ", ".join(label_text(item) for item in items)


def node_label(node: Node) -> str:
    """The HTML-like label of a node, lines joined with <BR/>."""
    if node.kind == KIND_OUTSIDE:
        if node.address:
            name = f"<B>{label_text(node.peer_name)}</B><BR/>" if node.peer_name else ""
            return f"<<I>outside</I><BR/>{name}{label_text(node.address)}>"
        return "<<I>outside the group</I>>"
    lines = [f"<B>{label_text(node.comm)}</B>"]
    if node.kind == KIND_HOST:
        lines[0] = f"<B>{label_text(node.host)}</B>"
    if node.folded:
        return "<" + "<BR/>".join(lines + _folded(node)) + ">"
    if node.pids:
        lines.append(_pids(node.pids))
    lines.extend(_identity_lines(node))
    if node.short_lived:
        lines.append("<I>no process seen holding it</I>")
        if node.cmdline:
            lines.append("<I>inferred: " + label_text(node.cmdline, limit=60) + "</I>")
    lines.extend("user " + label_text(user) for user in node.users)
    for context in node.contexts:
        text = label_text(context)
        lines.append(_font(text, UNCONFINED_COLOR) if is_unconfined(context) else text)
    if node.listening:
        lines.append(_listening(node))
    for item in node.ingress:
        lines.append(_font("ingress " + label_text(item.describe()), INGRESS_COLOR))
    return "<" + "<BR/>".join(lines) + ">"


def _identity_lines(node: Node) -> list[str]:
    """Who the node's processes are (unit, container and image, pod), unless its name says it."""
    lines = []
    if node.unit and node.unit != node.comm:
        lines.append("unit " + label_text(node.unit))
    if node.container and node.container != node.comm:
        image = f" ({label_text(node.image, limit=40)})" if node.image else ""
        lines.append("container " + label_text(node.container) + image)
    if node.pod and node.pod != node.comm:
        lines.append("pod " + label_text(node.pod))
    return lines


def _folded(node: Node) -> list[str]:
    """The lines of a machine node that stands for several processes in an aggregated view."""
    names = ", ".join(label_text(name, limit=40) for name in node.folded[:MAX_FOLDED_SHOWN])
    if len(node.folded) > MAX_FOLDED_SHOWN:
        names += f", +{len(node.folded) - MAX_FOLDED_SHOWN}"
    lines = [f"<I>{len(node.folded)} folded: {names}</I>"]
    if node.listening:  # ports only: the addresses of a whole machine make the box too wide
        ports: dict[str, list[int]] = {}
        for item in node.listening:
            if item.port not in ports.setdefault(item.proto, []):
                ports[item.proto].append(item.port)
        shown = [f"{proto} " + " ".join(str(port) for port in sorted(numbers)) for proto, numbers in sorted(ports.items())]
        lines.append("listens " + label_text("; ".join(shown)))
    for item in node.ingress[:2]:
        lines.append(_font("ingress " + label_text(item.describe()), INGRESS_COLOR))
    return lines


def namespace_label(netns: str, name: str) -> str:
    """`netns web-1` (the name the snapshot knows), else `netns 4026532281` (its inode)."""
    return f"<<I>netns {label_text(name or netns)}</I>>"


def cluster_label(host: HostEntry) -> str:
    lines = [f"<B>{label_text(host.name)}</B>"]
    if host.hostname != host.name:
        lines.append("hostname " + label_text(host.hostname))
    if host.addresses:
        shown = list(host.addresses[:4]) + ([f"+{len(host.addresses) - 4}"] if len(host.addresses) > 4 else [])
        lines.append(label_text("  ".join(shown)))
    notes = []
    if host.outside:
        notes.append(f"outside: {host.outside_inbound} in, {host.outside_outbound} out")
    if host.unresolved:
        notes.append(f"unresolved: {host.unresolved}")
    if host.stale:
        notes.append("stale snapshot")
    if not host.complete:
        notes.append("partial capture")
    if host.legacy:
        notes.append("legacy snapshot: no direction")
    if host.change_detail:  # a diff map: added, removed, unreachable in A or B
        notes.append(host.change_detail)
    if notes:
        lines.append(label_text("; ".join(notes)))
    if host.window is not None:
        lines.append(label_text(host.window.describe(), limit=200))
    return "<" + "<BR/>".join(lines) + ">"


def edge_label(flow: Flow) -> str:
    text = f"{flow.proto}/{flow.server_port}"
    if flow.count > 1:
        text += f" ×{flow.count}"
    if flow.short_lived:
        assert flow.window is not None
        text += f" {flow.window.rate_text()}"
    if flow.inferred:
        text += " inferred"
    if flow.via:
        text += f" via {flow.via}"
        if flow.dialled:
            text += f" {flow.dialled_text()}"
    if not flow.directed:
        text += " (no listener)"
    if flow.traffic is not None:
        text += f" {flow.traffic.bytes_text()}"
        if flow.traffic.rtts:
            text += f", rtt {flow.traffic.rtt_median_ms:.3g} ms"
    if flow.window is not None and flow.window.bytes_rate_text() is not None:
        text += f" {flow.window.bytes_rate_text()}"
    text += flow_words(flow)  # a diff's or a period's words
    return "<" + label_text(text) + ">"


def _node_attributes(node: Node, used: set[str]) -> str:
    """The node's attributes; the style keys of the legend it needs are added to `used`."""
    attributes = [f"label={node_label(node)}"]
    if node.kind == KIND_OUTSIDE:
        attributes.append('shape=ellipse, style="dashed"')
        used.add("node-outside")
    elif node.kind == KIND_HOST:
        attributes.append("shape=box3d")
        used.add("node-machine")
    elif node.short_lived or (node.comm == UNATTRIBUTED and not node.pids):
        attributes.append('style="rounded,dashed", color=gray40')
        used.add("node-unowned")
    if node.ingress:
        attributes.append(f"peripheries=2, color={INGRESS_COLOR}")
        used.add("node-ingress")
    if node.kind != KIND_HOST and node.is_unconfined:
        used.add("unconfined")
    styles, marked, key = node_mark(node)  # a diff map: added, removed, unchanged
    if key is not None:
        found = re.search(r'style="([^"]*)"', ", ".join(attributes))
        base = found.group(1) if found else "rounded"
        attributes.extend(attributes_text(styles, marked, base))
        used.add(key)
    return ", ".join(attributes)


def _machine_attributes(node: Node, host: HostEntry, used: set[str]) -> str:
    """A machine drawn as one node (one node per machine): the machine's title (name,
    addresses, what was not drawn) and the processes it stands for, in one box; a cluster
    around it would only add a title for edges to cross."""
    attributes = _node_attributes(node, used)
    own = node_label(node)[1:-1].split("<BR/>")[1:]  # all but the name, which the title holds
    title = cluster_label(host)[1:-1]
    return f"label=<{'<BR/>'.join([title] + own)}>" + attributes[len(f"label={node_label(node)}"):]


def _edge_attributes(flow: Flow, used: set[str]) -> str:
    """The flow's edge attributes; the style keys of the legend it needs are added to `used`."""
    attributes = [f"label={edge_label(flow)}"]
    used.add("edge")
    styles = []
    if not flow.directed:
        attributes.append("dir=none")
        styles.append("dashed")
        used.add("edge-undirected")
    elif flow.short_lived:  # a window saw it come and go: dashed like an unproven edge, but with its arrow
        styles.append("dashed")
        used.add("edge-short-lived")
    if flow.inferred:
        styles.append("dotted")
        used.add("edge-inferred")
    mark_styles, marked, key = flow_mark(flow)  # a diff's change, a period's "seen in some runs"
    if key is not None:
        styles.extend(style for style in mark_styles if style not in styles)
        attributes.extend(marked)
        used.add(key)
    if styles:
        attributes.append(f'style="{",".join(styles)}"')
    if flow.traffic is not None and flow.traffic.total_bytes:
        attributes.append(f"penwidth={traffic_width(flow.traffic.total_bytes):.1f}")
        used.add("edge-width-bytes")
    elif flow.count > 1:
        attributes.append(f"penwidth={min(1 + flow.count.bit_length() * 0.5, 6):.1f}")
        used.add("edge-width")
    return ", ".join(attributes)


def traffic_width(total_bytes: int) -> float:
    """Edge width by bytes moved, on a log scale: 1 up to 1 kB, +0.7 per factor of ten, 6 at most
    (1 MB: 3.1, 100 MB: 4.5, 10 GB: 5.9)."""
    return max(1.0, min(1 + (math.log10(max(total_bytes, 1)) - 3) * 0.7, 6.0))


def _bundled_edges(graph: FlowGraph, used: set[str]) -> list[str]:
    """One edge per ordered pair of nodes, labelled with its busiest services (aggregated views:
    the edges, more than the nodes, are what makes a large layout slow and unreadable)."""
    pairs: dict[tuple[str, str], list[Flow]] = {}
    for flow in graph.flows:
        pairs.setdefault((flow.client, flow.server), []).append(flow)
    labelled = len(pairs) <= EDGE_LABEL_LIMIT
    out = []
    for (client, server), flows in pairs.items():
        services: dict[str, int] = {}
        for flow in flows:
            name = f"{flow.proto}/{flow.server_port}"
            services[name] = services.get(name, 0) + flow.count
        ranked = sorted(services.items(), key=lambda item: (-item[1], item[0]))
        items = [f"{name} ×{count}" if count > 1 else name for name, count in ranked[:MAX_SERVICES_SHOWN]]
        if len(ranked) > MAX_SERVICES_SHOWN:
            items.append(f"+{len(ranked) - MAX_SERVICES_SHOWN}")
        total = sum(flow.count for flow in flows)
        text = ", ".join(items)
        attributes = [f"label=<{label_text(text)}>"] if labelled else [f'tooltip="{label_text(text)}"']
        used.add("edge")
        if not any(flow.directed for flow in flows):
            attributes.append('dir=none, style="dashed"')
            used.add("edge-undirected")
        elif all(flow.short_lived for flow in flows):
            attributes.append('style="dashed"')
            used.add("edge-short-lived")
        if total > 1:
            attributes.append(f"penwidth={min(1 + total.bit_length() * 0.5, 6):.1f}")
            used.add("edge-width")
        out.append(f"  {client} -> {server} [{', '.join(attributes)}];")
    return out


def graph_label(graph: FlowGraph) -> str:
    """The label under the whole drawing: what this view leaves out (filters, aggregation)."""
    return "<" + "<BR/>".join(label_text(note, limit=400) for note in graph.notes) + ">"


def render_dot(graph: FlowGraph, *, bundle_edges: bool = False, legend: bool = True) -> str:
    """The whole graph as DOT text (deterministic: hosts, nodes and flows come sorted).

    `bundle_edges` draws parallel flows between two nodes as one edge (aggregated views);
    `legend` adds a node explaining each style the drawing uses (netviz.render.legend)."""
    used: set[str] = set()
    out = [
        "digraph netviz {",
        f"  graph [{GRAPH_ATTRIBUTES}];",
        '  node [shape=box, style="rounded", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    by_host: dict[str, list[Node]] = {host.name: [] for host in graph.hosts}
    for node in graph.nodes:
        by_host.setdefault(node.host, []).append(node)
    for number, host in enumerate(graph.hosts, start=1):
        nodes = by_host.get(host.name, [])
        if len(nodes) == 1 and nodes[0].kind == KIND_HOST:  # the node is the machine: no box around it
            out.append(f"  {nodes[0].id} [{_machine_attributes(nodes[0], host, used)}];")
            continue
        out.append(f"  subgraph cluster_{number} {{")
        out.append(f"    label={cluster_label(host)};")
        out.append('    style="rounded"; color=gray50;')
        styles, marked, key = host_mark(host)  # a diff map: added, removed, unreachable
        if key is not None:
            out.append("    " + "; ".join(attributes_text(styles, marked, "rounded")) + ";")
            used.add(key)
        if not nodes:
            out.append(f'    empty_{number} [label="no flows", shape=plaintext];')
        namespaces: dict[str, list[Node]] = {}
        for node in nodes:
            if node.netns:  # a container's namespace: drawn as a box inside the machine
                namespaces.setdefault(node.netns, []).append(node)
            else:
                out.append(f"    {node.id} [{_node_attributes(node, used)}];")
        for inner, (netns, members) in enumerate(sorted(namespaces.items()), start=1):
            out.append(f"    subgraph cluster_{number}_{inner} {{")
            out.append(f"      label={namespace_label(netns, members[0].netns_name)};")
            out.append('      style="rounded,dashed"; color=gray60; labelloc="b";')
            used.add("namespace")
            out.extend(f"      {node.id} [{_node_attributes(node, used)}];" for node in members)
            out.append("    }")
        out.append("  }")
    if bundle_edges:
        out.extend(_bundled_edges(graph, used))
    else:
        for flow in graph.flows:
            out.append(f"  {flow.client} -> {flow.server} [{_edge_attributes(flow, used)}];")
    key = legend_node(used) if legend else None
    if key is not None:  # below everything else: the last rank, outside every machine
        out.append(key)
        out.append(f"  {{ rank=sink; {LEGEND_ID}; }}")
    if graph.notes:  # set last: clusters declared before do not inherit it
        out.append(f'  graph [label={graph_label(graph)}, labelloc="t", labeljust="l"];')
    out.append("}")
    return "\n".join(out) + "\n"

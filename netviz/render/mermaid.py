"""The graph as a Mermaid flowchart, for Markdown documents (GitHub, GitLab, MkDocs render it):
`flowchart LR`, one subgraph per machine holding its process nodes, an edge per flow labelled
`tcp/5432 ×3`.

Mermaid has no string escape: a `"` ends a label, and `%%{init}%%` directives, `:::class`,
`click` lines, markdown strings (backticks) and HTML in labels all mean something. So the
structure holds only generated ids (n1.., h1..), and every label is a quoted string in which any
ASCII character other than letters, digits and a few plain marks is written as a Mermaid entity
(`#34;` for `"`, `#60;` for `<`), which Mermaid shows as that character, never as syntax or
markup. Control, format and separator characters are first written as `\\xNN` (netviz.textsafe).
"""

from __future__ import annotations

import string
from typing import Callable, Optional

from netviz.graph import KIND_HOST, KIND_OUTSIDE, Flow, FlowGraph, Node
from netviz.textsafe import for_terminal

# Left as they are in labels: they mean nothing inside a quoted Mermaid string.
_PLAIN = frozenset(string.ascii_letters + string.digits + " .,:/_-+=@!?'*~^")
MAX_PIDS_SHOWN = 6
# Mermaid refuses to draw more edges than this, or a longer text, unless its configuration says
# otherwise (maxEdges and maxTextSize, which a diagram cannot raise itself).
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000


def label(text: str, limit: int = 120) -> str:
    """Untrusted text as the inside of a quoted Mermaid label: every ASCII mark that could mean
    something written as `#NN;`; an empty name shown as `""`."""
    if not text:
        return "#34;#34;"
    safe = for_terminal(text, limit=limit)
    return "".join(char if char in _PLAIN or ord(char) > 0x7F else f"#{ord(char)};" for char in safe)


def _node_label(node: Node) -> str:
    """One line: a label of several lines (<br/>) goes through more of Mermaid's text processing,
    where `\\n` breaks the line and `$$...$$` becomes KaTeX even when written as entities."""
    if node.kind == KIND_OUTSIDE:
        return "outside the group"
    if node.kind == KIND_HOST:
        return label(node.host, limit=60)
    if not node.pids:
        return label(node.comm)
    shown = ", ".join(str(pid) for pid in node.pids[:MAX_PIDS_SHOWN])
    more = f" +{len(node.pids) - MAX_PIDS_SHOWN}" if len(node.pids) > MAX_PIDS_SHOWN else ""
    return label(node.comm) + " " + label(f"({'pid' if len(node.pids) == 1 else 'pids'} {shown}{more})")


def _edge_label(flow: Flow) -> str:
    """`tcp/5432 ×3`, as DOT writes it: the count when above one, the rate of a short-lived flow,
    inferred, via the translating machine, (no listener) when undirected."""
    text = f"{flow.proto}/{flow.server_port}"
    if flow.count > 1:
        text += f" ×{flow.count}"
    if flow.short_lived and flow.window is not None:
        text += f" {flow.window.rate_text()}"
    if flow.inferred:
        text += " inferred"
    if flow.via:
        text += f" via {flow.via}"
    if not flow.directed:
        text += " (no listener)"
    if _sometimes(flow):
        text += f" {flow.period.seen_text()}"
    return label(text, limit=200)


def _sometimes(flow: Flow) -> bool:
    """Seen in only some runs of a period (`stitch --since`): drawn dotted, as DOT draws it dashed."""
    return flow.period is not None and not flow.period.always


def _arrow(flow: Flow) -> str:
    """Solid from client to server; dotted when inferred, short-lived or seen in only some runs of
    a period; no head when undirected."""
    dotted = flow.inferred or flow.short_lived or _sometimes(flow)
    if flow.directed:
        return "-.->" if dotted else "-->"
    return "-.-" if dotted else "---"


def _machines(graph: FlowGraph) -> list[tuple[str, list[Node]]]:
    """Each machine that has nodes, in the graph's machine order, with its nodes."""
    order = {host.name: index for index, host in enumerate(graph.hosts)}
    members: dict[str, list[Node]] = {}
    for node in graph.nodes:
        members.setdefault(node.host, []).append(node)
    return sorted(members.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def render_mermaid(graph: FlowGraph, on_notice: Optional[Callable[[str], None]] = None) -> str:
    """The flowchart text, ending with a newline; `on_notice` hears when Mermaid's default limits
    (500 edges, 50,000 characters) are passed, as a reader would then see an error instead."""
    lines = ["flowchart LR"]
    if graph.group_by == "host":  # one node per machine: no box around each
        lines += [f'  {node.id}["{_node_label(node)}"]' for node in graph.nodes]
    else:
        for number, (host, nodes) in enumerate(_machines(graph), start=1):
            lines.append(f'  subgraph h{number}["{label(host, limit=60)}"]')
            lines += [f'    {node.id}["{_node_label(node)}"]' for node in nodes]
            lines.append("  end")
    lines += [f'  {flow.client} {_arrow(flow)}|"{_edge_label(flow)}"| {flow.server}' for flow in graph.flows]
    text = "\n".join(lines) + "\n"
    if on_notice is not None and (len(graph.flows) > MERMAID_MAX_EDGES or len(text) > MERMAID_MAX_TEXT):
        on_notice(f"Mermaid draws at most {MERMAID_MAX_EDGES} edges and {MERMAID_MAX_TEXT:,} characters by default; "
                  f"this diagram has {len(graph.flows)} edges and {len(text):,} characters: narrow it with --only, "
                  "--exclude or --group-by host, or raise maxEdges/maxTextSize where it is drawn")
    return text

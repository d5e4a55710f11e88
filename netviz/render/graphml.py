"""The graph as GraphML, for graph editors and analysis tools (yEd, Gephi, Cytoscape, networkx,
igraph): one directed graph, a node per process (or machine), an edge per flow, every fact a
typed `<data>` declared by a `<key>`.

The document is built with the standard library's ElementTree, which escapes markup in text and
attributes; names come from untrusted machines, so they first go through netviz.textsafe (control,
format and separator characters written as `\\xNN`), which also removes every character XML 1.0
forbids except U+FFFE and U+FFFF, escaped here. Node and edge ids are the graph's own (n1.., f1..).
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from typing import Callable, Optional, Union

from netviz.graph import KIND_HOST, Flow, FlowGraph, Node
from netviz.textsafe import for_terminal

GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{GRAPHML_NS} http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd"

# The characters XML 1.0 forbids that textsafe leaves as they are (its categories cover the rest).
_XML_FORBIDDEN = re.compile("[\ufffe\uffff]")

Value = Union[str, int, float, bool]

# (key id and attribute name, GraphML type, the value of a node)
NODE_KEYS: tuple[tuple[str, str, Callable[[Node], Value]], ...] = (
    ("label", "string", lambda node: node.host if node.kind == KIND_HOST else node.comm),
    ("host", "string", lambda node: node.host),
    ("kind", "string", lambda node: node.kind),
    ("comm", "string", lambda node: node.comm),
    ("pids", "string", lambda node: " ".join(str(pid) for pid in node.pids)),
    ("users", "string", lambda node: " ".join(node.users)),
    ("cmdline", "string", lambda node: node.cmdline),
    ("listening", "string", lambda node: ", ".join(
        f"{item.proto} {_address_port(item.address, item.port)}" for item in node.listening)),
    ("sockets", "int", lambda node: node.sockets),
)

EDGE_KEYS: tuple[tuple[str, str, Callable[[Flow], Value]], ...] = (
    ("label", "string", lambda flow: f"{flow.proto}/{flow.server_port}" + (f" ×{flow.count}" if flow.count > 1 else "")),
    ("proto", "string", lambda flow: flow.proto),
    ("port", "int", lambda flow: flow.server_port),
    ("server_address", "string", lambda flow: flow.server_address),
    ("count", "int", lambda flow: flow.count),
    ("directed", "boolean", lambda flow: flow.directed),
    ("inferred", "boolean", lambda flow: flow.inferred),
    ("via", "string", lambda flow: flow.via or ""),
    ("client_pids", "string", lambda flow: " ".join(str(pid) for pid in flow.client_pids)),
    ("server_pids", "string", lambda flow: " ".join(str(pid) for pid in flow.server_pids)),
)

# Declared only when the graph has a window; a flow the window has no facts for has no such data.
WINDOW_KEYS: tuple[tuple[str, str, Callable[[Flow], Optional[Value]]], ...] = (
    ("connections", "int", lambda flow: flow.window.connections if flow.window else None),
    ("persistent", "boolean", lambda flow: flow.window.persistent if flow.window else None),
    ("per_minute", "double", lambda flow: flow.window.per_minute if flow.window else None),
    ("first_seen", "double", lambda flow: flow.window.first_seen if flow.window else None),
    ("last_seen", "double", lambda flow: flow.window.last_seen if flow.window else None),
)

# Declared only for the union of a period (`stitch --since`); times are Unix seconds, as in the JSON.
PERIOD_KEYS: tuple[tuple[str, str, Callable[[Flow], Optional[Value]]], ...] = (
    ("period_first_seen", "double", lambda flow: flow.period.first_seen if flow.period else None),
    ("period_last_seen", "double", lambda flow: flow.period.last_seen if flow.period else None),
    ("runs_seen", "int", lambda flow: flow.period.runs_seen if flow.period else None),
    ("runs_taken", "int", lambda flow: flow.period.runs_taken if flow.period else None),
)


def xml_text(text: str) -> str:
    """Untrusted text made fit for XML 1.0 and for the eye: controls written as `\\xNN`."""
    return _XML_FORBIDDEN.sub(lambda match: f"\\u{ord(match.group()):04x}", for_terminal(text, limit=sys.maxsize))


def _address_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _value_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return xml_text(value)
    return repr(value)  # int, or a float written back exactly


def _declare(root: ET.Element, domain: str, prefix: str, keys: tuple) -> None:
    for name, kind, _ in keys:
        ET.SubElement(root, "key", {"id": f"{prefix}_{name}", "for": domain, "attr.name": name, "attr.type": kind})


def _add_data(element: ET.Element, prefix: str, keys: tuple, item: object) -> None:
    for name, _, value_of in keys:
        value = value_of(item)
        if value is not None:
            ET.SubElement(element, "data", {"key": f"{prefix}_{name}"}).text = _value_text(value)


def render_graphml(graph: FlowGraph) -> str:
    """The GraphML document, UTF-8 with its XML declaration, nodes and edges in the graph's order."""
    windowed = any(host.window is not None for host in graph.hosts) or any(f.window is not None for f in graph.flows)
    periodic = any(flow.period is not None for flow in graph.flows)
    edge_keys = EDGE_KEYS + (WINDOW_KEYS if windowed else ()) + (PERIOD_KEYS if periodic else ())
    root = ET.Element("graphml", {"xmlns": GRAPHML_NS, "xmlns:xsi": XSI_NS, "xsi:schemaLocation": SCHEMA_LOCATION})
    ET.SubElement(root, "key", {"id": "g_group_by", "for": "graph", "attr.name": "group_by", "attr.type": "string"})
    ET.SubElement(root, "key", {"id": "g_notes", "for": "graph", "attr.name": "notes", "attr.type": "string"})
    _declare(root, "node", "v", NODE_KEYS)
    _declare(root, "edge", "e", edge_keys)
    body = ET.SubElement(root, "graph", {"id": "netviz", "edgedefault": "directed"})
    ET.SubElement(body, "data", {"key": "g_group_by"}).text = graph.group_by
    if graph.notes:
        ET.SubElement(body, "data", {"key": "g_notes"}).text = "\n".join(xml_text(note) for note in graph.notes)
    for node in graph.nodes:
        _add_data(ET.SubElement(body, "node", {"id": node.id}), "v", NODE_KEYS, node)
    for flow in graph.flows:
        edge = ET.SubElement(body, "edge", {"id": flow.id, "source": flow.client, "target": flow.server})
        _add_data(edge, "e", edge_keys, flow)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

"""The graph as `netviz.graph/1` JSON (docs/graph.md)."""

from __future__ import annotations

import json

from netviz.graph import FlowGraph


def render_json(graph: FlowGraph) -> str:
    """Indented, key order fixed by the model, non-ASCII kept readable; ends with a newline."""
    return json.dumps(graph.to_json_dict(), indent=2, ensure_ascii=False) + "\n"

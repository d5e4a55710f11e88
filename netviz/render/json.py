"""The graph as `netviz.graph/1` JSON (docs/graph.md)."""

from __future__ import annotations

import json

from netviz.graph import FlowGraph

# json.dumps escapes C0 controls but, with ensure_ascii=False, writes C1 controls (U+0080-U+009F,
# 0x9B is CSI), line separators and bidi overrides raw; process names carry them to a terminal
# when the JSON goes to stdout. They are written as \uXXXX escapes instead (the same JSON value).
_TERMINAL_UNSAFE = {code: f"\\u{code:04x}" for code in (
    *range(0x7F, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def render_json(graph: FlowGraph) -> str:
    """Indented, key order fixed by the model, non-ASCII kept readable (except characters that
    would steer a terminal); ends with a newline."""
    return json.dumps(graph.to_json_dict(), indent=2, ensure_ascii=False).translate(_TERMINAL_UNSAFE) + "\n"

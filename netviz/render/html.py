"""Render a `netviz.graph/1` document as one self-contained interactive HTML page.

The page inlines everything it needs (the vendored Cytoscape.js library, the page's own script
and style, and the graph itself), so it opens from disk with no network access. Positions are
computed here rather than by a force layout in the browser: machines are packed on shelves and
the processes of a machine sit on a small grid inside it. That costs linear time, gives the same
picture for the same graph, and lets the browser draw thousands of nodes without first simulating.

Safety: every name in the graph comes from machines we do not control (a process may call itself
`</script><script>...`). Names only ever reach the page inside a JSON data block whose `<`, `>`
and `&` are written as JSON escapes, the title is HTML-escaped, the page's script puts text into
the DOM through `textContent` only, and a Content-Security-Policy allows exactly the page's own
inline scripts (by hash) and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

CYTOSCAPE_VERSION = "3.34.4"

# Layout units are Cytoscape model pixels. A process label (a comm is at most 15 characters)
# fits in PROCESS_STEP_X at the default font size.
PROCESS_STEP_X = 120.0
PROCESS_STEP_Y = 64.0
MACHINE_PADDING = 40.0
MACHINE_GAP = 90.0
# The host view (and the first view of a large map) puts hosts on a ring, in an order where hosts
# that talk sit side by side, with radial labels. RING_STEP is the arc between two hosts: a little
# more than a label's line height (the page draws them at font size 16), so neighbouring labels
# never touch.
RING_STEP = 22.0
RING_MIN_RADIUS = 220.0
# How many of the hosts placed last pull on the choice of the next one.
RING_WINDOW = 3

_MARKER = re.compile(r"@@(?:POLICY|TITLE|STYLE|DATA|LIBRARY|APP)@@")


class SupportsGraphJson(Protocol):
    """Anything that can give its `netviz.graph/1` document (netviz.graph.FlowGraph does)."""

    def to_json_dict(self) -> dict[str, Any]: ...


def render_html_graph(graph: SupportsGraphJson, title: str = "netviz") -> str:
    """Render a FlowGraph (or anything with `to_json_dict()`) as a self-contained HTML page."""
    return render_html(graph.to_json_dict(), title=title)


def render_html(graph_doc: dict[str, Any], title: str = "netviz") -> str:
    """Render a `netviz.graph/1` document as one self-contained HTML page and return its text."""
    payload = {"graph": graph_doc, "layout": compute_layout(graph_doc), "title": title}
    template, app_js, style_css, library_js = _assets()
    scripts_hash = " ".join(f"'sha256-{_sha256_b64(text)}'" for text in (library_js, app_js))
    policy = (
        "default-src 'none'; "
        f"script-src {scripts_hash}; "
        "style-src 'unsafe-inline'; "
        "img-src data: blob:; "
        "connect-src 'none'; form-action 'none'; base-uri 'none'"
    )
    # str.replace, not str.format: the inlined JavaScript is full of braces.
    replacements = {
        "@@POLICY@@": html.escape(policy, quote=True),
        "@@TITLE@@": html.escape(title, quote=True),
        "@@STYLE@@": style_css,
        "@@DATA@@": embed_json(payload),
        "@@LIBRARY@@": library_js,
        "@@APP@@": app_js,
    }
    # One pass, so text put in (a process may be called "@@APP@@") is never scanned for markers.
    return _MARKER.sub(lambda match: replacements[match.group(0)], template)


def embed_json(value: Any) -> str:
    """Serialise `value` so it can sit inside a `<script type="application/json">` block.

    ASCII-only output escapes U+2028/U+2029 and anything odd; `<`, `>` and `&` become `\\u003c`,
    `\\u003e`, `\\u0026`, which JSON.parse reads back unchanged but which can never close the
    block (`</script>`) or open a comment (`<!--`).
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def compute_layout(graph_doc: dict[str, Any]) -> dict[str, Any]:
    """Give every node a position and every machine a box, deterministically, in linear time.

    Returns `{"nodes": {node_id: [x, y]}, "machines": {host_name: [x, y, width, height]},
    "ring": {host_name: [x, y, angle]}}` where (x, y) of a machine is the centre of its box. Nodes
    of kind `host` (a graph grouped by machine) sit at their machine's centre; all other nodes are
    laid on a grid inside their machine. `ring` places the hosts for the host view (see
    `ring_layout`).
    """
    members: dict[str, list[dict[str, Any]]] = {}
    for host in graph_doc.get("hosts", []):
        members.setdefault(str(host.get("name")), [])
    for node in graph_doc.get("nodes", []):
        members.setdefault(str(node.get("host")), []).append(node)

    sizes: dict[str, tuple[int, float, float]] = {}
    for name, nodes in members.items():
        inside = [node for node in nodes if node.get("kind") != "host"]
        columns = max(1, math.ceil(math.sqrt(len(inside) * 1.6)))
        rows = max(1, math.ceil(len(inside) / columns))
        width = columns * PROCESS_STEP_X + 2 * MACHINE_PADDING
        height = rows * PROCESS_STEP_Y + 2 * MACHINE_PADDING
        sizes[name] = (columns, width, height)

    # Shelf packing: fill rows left to right up to a width that makes the whole roughly 16:10.
    total_area = sum((w + MACHINE_GAP) * (h + MACHINE_GAP) for _, w, h in sizes.values())
    widest = max((w for _, w, _ in sizes.values()), default=0.0)
    # A fifth wider than the exact 16:10 square root, or a few equal boxes end up one per row.
    shelf_width = max(widest, 1.2 * math.sqrt(total_area * 1.6))
    machines: dict[str, list[float]] = {}
    x = y = shelf_height = 0.0
    for name, (_, width, height) in sizes.items():
        if x > 0 and x + width > shelf_width:
            x, y, shelf_height = 0.0, y + shelf_height + MACHINE_GAP, 0.0
        machines[name] = [x + width / 2, y + height / 2, width, height]
        x += width + MACHINE_GAP
        shelf_height = max(shelf_height, height)

    positions: dict[str, list[float]] = {}
    for name, nodes in members.items():
        columns = sizes[name][0]
        centre_x, centre_y, width, height = machines[name]
        left = centre_x - width / 2 + MACHINE_PADDING + PROCESS_STEP_X / 2
        top = centre_y - height / 2 + MACHINE_PADDING + PROCESS_STEP_Y / 2
        slot = 0
        for node in nodes:
            if node.get("kind") == "host":
                positions[str(node["id"])] = [centre_x, centre_y]
                continue
            row, column = divmod(slot, columns)
            positions[str(node["id"])] = [left + column * PROCESS_STEP_X, top + row * PROCESS_STEP_Y]
            slot += 1
    return {"nodes": positions, "machines": machines, "ring": ring_layout(graph_doc, list(members))}


def ring_layout(graph_doc: dict[str, Any], names: list[str]) -> dict[str, list[float]]:
    """Place hosts on a circle, hosts that talk most next to each other: `{name: [x, y, angle]}`.

    The page draws each flow between two hosts as a curve bent toward the centre, so it leaves
    its host inwards and never crosses another host; the order only decides how long the curves
    are. `angle` is in radians, 0 pointing right, clockwise on screen, the first host at the top.
    """
    order = ring_order(graph_doc, names)
    radius = max(RING_MIN_RADIUS, len(order) * RING_STEP / (2 * math.pi))
    ring: dict[str, list[float]] = {}
    for index, name in enumerate(order):
        angle = -math.pi / 2 + 2 * math.pi * index / max(1, len(order))
        ring[name] = [round(radius * math.cos(angle), 2), round(radius * math.sin(angle), 2), round(angle, 6)]
    return ring


def ring_order(graph_doc: dict[str, Any], names: list[str]) -> list[str]:
    """Order hosts so that each follows the ones it talks to most (greedy, deterministic).

    Starts from the host with the most connections to others; then, each time, takes the host
    with the most connections to the last RING_WINDOW hosts placed (ties and silent hosts: the
    given order). Linear in flows plus quadratic in hosts, with a small constant (a scan per step).
    """
    host_of = {str(node.get("id")): str(node.get("host")) for node in graph_doc.get("nodes", [])}
    weights: dict[str, dict[str, int]] = {name: {} for name in names}
    for flow in graph_doc.get("flows", []):
        a, b = host_of.get(str(flow.get("client"))), host_of.get(str(flow.get("server")))
        if a is None or b is None or a == b or a not in weights or b not in weights:
            continue
        count = int(flow.get("count") or 1)
        weights[a][b] = weights[a].get(b, 0) + count
        weights[b][a] = weights[b].get(a, 0) + count
    if not names:
        return []
    rank = {name: index for index, name in enumerate(names)}
    total = {name: sum(peers.values()) for name, peers in weights.items()}
    first = min(names, key=lambda name: (-total[name], rank[name]))
    order = [first]
    placed = {first}
    # Only hosts that talk to the window have a score; the others wait in the given order.
    score: dict[str, int] = {}
    silent = iter(names)

    def pull(name: str, sign: int) -> None:
        for peer, weight in weights[name].items():
            if peer not in placed:
                score[peer] = score.get(peer, 0) + sign * weight
                if score[peer] <= 0:
                    del score[peer]

    pull(first, 1)
    while len(order) < len(names):
        if score:
            chosen = min(score, key=lambda name: (-score[name], rank[name]))
            del score[chosen]
        else:
            chosen = next(name for name in silent if name not in placed)
        placed.add(chosen)
        order.append(chosen)
        pull(chosen, 1)
        if len(order) > RING_WINDOW:
            pull(order[-RING_WINDOW - 1], -1)
    return order


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str, str, str]:
    """Read the page template, its script and style, and the vendored library (once)."""
    package = resources.files("netviz.render")
    template = package.joinpath("html_template.html").read_text(encoding="utf-8")
    app_js = package.joinpath("html_template.js").read_text(encoding="utf-8")
    style_css = package.joinpath("html_template.css").read_text(encoding="utf-8")
    library_js = package.joinpath("vendor", "cytoscape.min.js").read_text(encoding="utf-8")
    for name, text in (("html_template.js", app_js), ("cytoscape.min.js", library_js)):
        # Inline scripts end at the first "</script" whatever the JavaScript means by it.
        lowered = text.lower()
        if "</script" in lowered or "<!--" in lowered:
            raise RuntimeError(f"{name} cannot be inlined: it contains '</script' or '<!--'")
    return template, app_js, style_css, library_js


def _sha256_b64(text: str) -> str:
    """The base64 SHA-256 a Content-Security-Policy uses to allow one inline script."""
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")

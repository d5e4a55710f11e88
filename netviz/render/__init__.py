"""Renderers: a FlowGraph in, bytes out. No terminal output here: notices go to a callback."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Optional

from netviz.errors import RenderError
from netviz.graph import FlowGraph

FORMATS = ("dot", "svg", "png", "json", "table", "html")


def render(
    graph: FlowGraph,
    fmt: str,
    *,
    timeout: float = 120.0,
    on_notice: Optional[Callable[[str], None]] = None,
    detail: str = "auto",
) -> bytes:
    """Render `graph` as `fmt` (one of FORMATS) and return the bytes to write.

    `timeout` bounds the Graphviz layout for svg/png; `on_notice` receives one-line notices
    (e.g. what an aggregated view folded, a change of layout engine on a large graph).
    `detail` (`auto`, `full`, `aggregate`) applies to dot, svg and png only: past a size they
    fold each machine's quieter processes (netviz.aggregate); json, table and html always hold
    every node and flow.
    """
    if fmt in ("dot", "svg", "png"):
        from netviz.aggregate import drawn_edges, static_view
        from netviz.render.dot import render_dot

        view = static_view(graph, detail)
        if view.notice and on_notice is not None:
            on_notice(view.notice)
        source = render_dot(view.graph, bundle_edges=view.aggregated)
        if fmt == "dot":
            return source.encode("utf-8")
        from netviz.render.image import render_image

        return render_image(
            source, fmt, node_count=len(view.graph.nodes), edge_count=drawn_edges(view.graph) if view.aggregated else len(view.graph.flows),
            timeout=timeout, on_notice=on_notice,
        )
    if fmt == "json":
        from netviz.render.json import render_json

        return render_json(graph).encode("utf-8")
    if fmt == "table":
        from netviz.render.table import render_table_text

        return render_table_text(graph).encode("utf-8")
    if fmt == "html":
        if importlib.util.find_spec("netviz.render.html") is None:
            raise RenderError("the HTML map is not available in this build; use --format svg or json")
        from netviz.render import html

        if hasattr(html, "render_html_graph"):
            return html.render_html_graph(graph).encode("utf-8")
        return html.render_html(graph.to_json_dict()).encode("utf-8")
    raise RenderError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def format_from_suffix(path: Path) -> Optional[str]:
    """The format an output file's extension asks for (`map.svg` -> svg), None if unknown."""
    suffix = path.suffix.lower().lstrip(".")
    aliases = {"gv": "dot", "htm": "html", "txt": "table"}
    suffix = aliases.get(suffix, suffix)
    return suffix if suffix in FORMATS else None

"""Renderers: a FlowGraph in, bytes out. No terminal output here: notices go to a callback.

Every output format is one entry of RENDERERS: its name, the file extensions that ask for it,
whether the static folding of `--detail` applies, and a one-line description. The CLI's
`--format` choices, the extension mapping and the help text are all derived from it, so a new
format is one function and one entry here (docs/architecture.md, "How to extend").
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from netviz.errors import RenderError
from netviz.graph import FlowGraph

Notice = Optional[Callable[[str], None]]


@dataclass(frozen=True)
class RenderOptions:
    """How to draw: built once by the CLI (or a library caller) and passed down as is."""

    detail: str = "auto"  # dot/svg/png: fold quieter processes past a size (auto), always, never (full)
    timeout: float = 120.0  # seconds the Graphviz layout may take (svg/png)
    sort: str = "count"  # table: busiest flows by connections (count) or by bytes moved (bytes)
    # html: the inventory's groups (name -> machine names): a large map's overview is one node per group
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def knowing_groups(self, groups: Mapping[str, Sequence[str]]) -> "RenderOptions":
        """The same options with the inventory's groups, unless some were given already."""
        return self if not groups or self.groups else replace(self, groups=dict(groups))


@dataclass(frozen=True)
class Renderer:
    """One output format."""

    name: str
    suffixes: tuple[str, ...]  # file extensions (without the dot) that choose this format
    folds: bool  # whether --detail folding applies (static pictures); the others keep every flow
    description: str
    draw: Callable[[FlowGraph, RenderOptions, Notice], bytes]


def _static(fmt: str) -> Callable[[FlowGraph, RenderOptions, Notice], bytes]:
    """DOT, and the pictures Graphviz draws from it: folded past a size (netviz.aggregate)."""

    def draw(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
        from netviz.aggregate import drawn_edges, static_view
        from netviz.render.dot import render_dot

        view = static_view(graph, options.detail)
        if view.notice and on_notice is not None:
            on_notice(view.notice)
        source = render_dot(view.graph, bundle_edges=view.aggregated)
        if fmt == "dot":
            return source.encode("utf-8")
        from netviz.render.image import render_image

        edges = drawn_edges(view.graph) if view.aggregated else len(view.graph.flows)
        return render_image(source, fmt, node_count=len(view.graph.nodes), edge_count=edges,
                            timeout=options.timeout, on_notice=on_notice)

    return draw


def _json(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
    from netviz.render.json import render_json

    return render_json(graph).encode("utf-8")


def _table(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
    from netviz.render.table import render_table_text

    return render_table_text(graph, by_bytes=options.sort == "bytes").encode("utf-8")


def _rows(fmt: str) -> Callable[[FlowGraph, RenderOptions, Notice], bytes]:
    """CSV or TSV: one row per flow (netviz.render.csv)."""

    def draw(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
        from netviz.render.csv import render_rows

        return render_rows(graph, fmt).encode("utf-8")

    return draw


def _graphml(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
    from netviz.render.graphml import render_graphml

    return render_graphml(graph).encode("utf-8")


def _mermaid(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
    from netviz.render.mermaid import render_mermaid

    return render_mermaid(graph, on_notice).encode("utf-8")


def _html(graph: FlowGraph, options: RenderOptions, on_notice: Notice) -> bytes:
    if importlib.util.find_spec("netviz.render.html") is None:
        raise RenderError("the HTML map is not available in this build; use --format svg or json")
    from netviz.render import html

    return html.render_html_graph(graph, groups=options.groups).encode("utf-8")


RENDERERS: dict[str, Renderer] = {
    renderer.name: renderer
    for renderer in (
        Renderer("dot", ("dot", "gv"), True, "Graphviz source", _static("dot")),
        Renderer("svg", ("svg",), True, "a picture drawn by Graphviz", _static("svg")),
        Renderer("png", ("png",), True, "a picture drawn by Graphviz", _static("png")),
        Renderer("pdf", ("pdf",), True, "a document drawn by Graphviz", _static("pdf")),
        Renderer("json", ("json",), False, "the graph as netviz.graph/1 JSON", _json),
        Renderer("table", ("txt",), False, "the busiest flows first, as text", _table),
        Renderer("html", ("html", "htm"), False, "an interactive map in one file", _html),
        Renderer("csv", ("csv",), False, "one row per flow, for spreadsheets", _rows("csv")),
        Renderer("tsv", ("tsv",), False, "one row per flow, tab-separated", _rows("tsv")),
        Renderer("graphml", ("graphml",), False, "the graph for yEd, Gephi, networkx", _graphml),
        Renderer("mermaid", ("mmd", "mermaid"), False, "a flowchart for Markdown documents", _mermaid),
    )
}
FORMATS = tuple(RENDERERS)


def render(
    graph: FlowGraph,
    fmt: str,
    *,
    timeout: float = 120.0,
    on_notice: Notice = None,
    detail: str = "auto",
    options: Optional[RenderOptions] = None,
) -> bytes:
    """Render `graph` as `fmt` (one of FORMATS) and return the bytes to write.

    `options` (or `detail` and `timeout` one by one): `detail` (`auto`, `full`, `aggregate`)
    applies to the formats that fold (dot, svg, png): past a size they fold each machine's
    quieter processes (netviz.aggregate); json, table and html always hold every node and flow.
    `timeout` bounds the Graphviz layout. `on_notice` receives one-line notices (what an
    aggregated view folded, a change of layout engine on a large graph).
    """
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise RenderError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderer.draw(graph, options or RenderOptions(detail=detail, timeout=timeout), on_notice)


def format_from_suffix(path: Path) -> Optional[str]:
    """The format an output file's extension asks for (`map.svg` -> svg), None if unknown."""
    suffix = path.suffix.lower().lstrip(".")
    for renderer in RENDERERS.values():
        if suffix in renderer.suffixes:
            return renderer.name
    return None


def formats_help() -> str:
    """`dot (.dot, .gv): Graphviz source; ...`: the --format help, from the registry."""
    return "; ".join(f"{r.name} ({', '.join('.' + s for s in r.suffixes)}): {r.description}" for r in RENDERERS.values())

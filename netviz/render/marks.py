"""How a static map draws the marks of a diff (netviz.diff_map) and of a period
(`stitch --since`, netviz.period): colours, line styles and label words, one place for DOT and
its legend (netviz.render.legend keys). Each function gives the styles to merge into the element's
`style`, the other attributes, and the legend key it needs (None: nothing to draw).
"""

from __future__ import annotations

from typing import Optional

from netviz.graph import (
    CHANGE_ADDED,
    CHANGE_NOT_COMPARED,
    CHANGE_REMOVED,
    CHANGE_UNCHANGED,
    CHANGE_UNREACHABLE,
    Flow,
    HostEntry,
    Node,
)

ADDED_COLOR = "#1a7f37"  # green
REMOVED_COLOR = "#cf222e"  # red
UNCHANGED_COLOR = "gray55"
NOT_COMPARED_COLOR = "gray70"
UNREACHABLE_COLOR = "goldenrod3"
SOMETIMES_COLOR = "gray45"

Mark = tuple[list[str], list[str], Optional[str]]  # styles, attributes, legend key

_FLOWS: dict[str, Mark] = {
    CHANGE_ADDED: ([], [f'color="{ADDED_COLOR}"', f'fontcolor="{ADDED_COLOR}"'], "diff-added"),
    CHANGE_REMOVED: (["dashed"], [f'color="{REMOVED_COLOR}"', f'fontcolor="{REMOVED_COLOR}"'], "diff-removed"),
    CHANGE_UNCHANGED: ([], [f"color={UNCHANGED_COLOR}", "fontcolor=gray35"], "diff-unchanged"),
    CHANGE_NOT_COMPARED: (["dotted"], [f"color={NOT_COMPARED_COLOR}", "fontcolor=gray45"], "diff-not-compared"),
}
_NODES: dict[str, Mark] = {
    CHANGE_ADDED: ([], [f'color="{ADDED_COLOR}"', f'fontcolor="{ADDED_COLOR}"', "penwidth=2"], "diff-added"),
    CHANGE_REMOVED: (["dashed"], [f'color="{REMOVED_COLOR}"', f'fontcolor="{REMOVED_COLOR}"'], "diff-removed"),
    CHANGE_UNCHANGED: ([], [f"color={UNCHANGED_COLOR}", "fontcolor=gray30"], "diff-unchanged"),
    CHANGE_NOT_COMPARED: (["dotted"], [f"color={NOT_COMPARED_COLOR}", "fontcolor=gray45"], "diff-not-compared"),
}
_HOSTS: dict[str, Mark] = {
    CHANGE_ADDED: ([], [f'color="{ADDED_COLOR}"', "penwidth=2"], "diff-added"),
    CHANGE_REMOVED: (["dashed"], [f'color="{REMOVED_COLOR}"'], "diff-removed"),
    CHANGE_UNREACHABLE: (["dashed"], [f"color={UNREACHABLE_COLOR}", "penwidth=2"], "diff-unreachable"),
}
_NONE: Mark = ([], [], None)


def flow_mark(flow: Flow) -> Mark:
    """A flow's diff mark, or its period mark when only some runs of the period saw it."""
    if flow.change:
        return _FLOWS.get(flow.change, _NONE)
    if flow.period is not None and not flow.period.always:
        return (["dashed"], [f"color={SOMETIMES_COLOR}", f"fontcolor={SOMETIMES_COLOR}"], "period-some")
    return _NONE


def flow_words(flow: Flow) -> str:
    """What the flow's label adds: ` (was ×3)`, ` added`, ` removed`, ` seen in 3 of 1,008 runs`."""
    words = ""
    if flow.count_before is not None:
        words += f" (was ×{flow.count_before})"
    if flow.change in (CHANGE_ADDED, CHANGE_REMOVED):
        words += f" {flow.change}"
    elif flow.change == CHANGE_NOT_COMPARED:
        words += " not compared"
    if flow.period is not None and not flow.period.always:
        words += f" {flow.period.seen_text()}"
    return words


def node_mark(node: Node) -> Mark:
    return _NODES.get(node.change, _NONE)


def host_mark(host: HostEntry) -> Mark:
    return _HOSTS.get(host.change, _NONE)


def attributes_text(styles: list[str], attributes: list[str], base_style: str = "") -> list[str]:
    """`style="rounded,dashed"` (the base style kept) and the other attributes, for a DOT list."""
    merged = [part for part in base_style.split(",") if part] + [style for style in styles if style not in base_style]
    return ([f'style="{",".join(merged)}"'] if styles else []) + attributes

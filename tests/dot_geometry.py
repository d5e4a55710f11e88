"""Read a drawing the way a person does, from the layout the real Graphviz `dot` computed.

`dot -Tjson` gives every node's box, every edge's spline (cubic Bézier pieces) and where each
edge label's text lines were placed. `problems()` lists what makes a static map mislead:

- an edge whose spline runs through the box of a node that is not one of its ends (it reads as
  a flow of that node), or through a cluster's title;
- two edge labels whose boxes overlap, an edge label over a node or a cluster's title, or a line
  or arrowhead drawn across an edge label;
- an edge label far from its own edge, or nearer to another edge than to its own (it is read
  as that edge's).

Coordinates are points (1/72 in), as Graphviz writes them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Point = tuple[float, float]

# How far inside a node's box a spline may go before it counts as passing through it: splines
# end on the border of their own nodes, and a grazing curve is not read as a flow of that node.
NODE_MARGIN = 2.0
# A line may graze the edge of a label's box (the box is an estimate from the font size).
LINE_MARGIN = 1.0
# How far (points) an edge label's box may be from its own edge; 9-point text sits within this.
NEAR = 14.0
# Samples per Bézier piece: 40 points a piece keep the gap between samples under a point or two.
SAMPLES = 40


@dataclass(frozen=True)
class Edge:
    index: int
    tail: str
    head: str
    points: tuple[Point, ...]  # the spline, sampled
    arrows: tuple[Point, ...]  # the corners and middles of its arrowheads
    label: Box | None


@dataclass(frozen=True)
class Layout:
    nodes: dict[str, Box]
    edges: tuple[Edge, ...]
    cluster_titles: dict[str, Box]


def run_dot(source: str, timeout: float = 120.0) -> dict:
    """The layout of `source` as `dot -Tjson` computes it."""
    executable = shutil.which("dot")
    if executable is None:
        raise FileNotFoundError("Graphviz dot is not installed (apt-get install graphviz)")
    result = subprocess.run([executable, "-Tjson"], input=source, capture_output=True, text=True,
                            timeout=timeout, check=True)
    return json.loads(result.stdout)


def _bezier(points: list[Point]) -> list[Point]:
    """Sample a Graphviz spline: p0, then three control points per cubic piece."""
    samples = [points[0]]
    for start in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[start:start + 4]
        for step in range(1, SAMPLES + 1):
            t = step / SAMPLES
            u = 1 - t
            samples.append((
                u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0],
                u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1],
            ))
    return samples


def text_box(operations: list[dict]) -> Box | None:
    """The box around the text lines an `_ldraw_`-style list of operations draws."""
    boxes = []
    size = 14.0
    for operation in operations:
        if operation["op"] == "F":
            size = float(operation["size"])
        elif operation["op"] == "T":
            x, y = operation["pt"]
            width = float(operation["width"])
            left = {"l": x, "r": x - width}.get(operation["align"], x - width / 2)
            # pt is the baseline; Helvetica's capitals and ascenders rise 0.72 of the size above it,
            # descenders go 0.21 below (its font metrics): a little more each way
            boxes.append((left, y - size * 0.22, left + width, y + size * 0.75))
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def parse(layout: dict) -> Layout:
    """Nodes' boxes, edges' sampled splines and label boxes, clusters' title boxes."""
    objects = layout.get("objects", [])
    nodes: dict[str, Box] = {}
    titles: dict[str, Box] = {}
    for item in objects:
        if "nodes" in item or "bb" in item:  # a subgraph (cluster)
            title = text_box(item.get("_ldraw_", []))
            if title is not None:
                titles[item["name"]] = title
            continue
        x, y = (float(value) for value in item["pos"].split(","))
        half_w, half_h = float(item["width"]) * 36, float(item["height"]) * 36
        nodes[item["name"]] = (x - half_w, y - half_h, x + half_w, y + half_h)
    edges = []
    for index, item in enumerate(layout.get("edges", [])):
        spline: list[Point] = []
        for operation in item.get("_draw_", []):
            if operation["op"] == "b":
                spline.extend(_bezier([tuple(point) for point in operation["points"]]))
        arrows: list[Point] = []
        for operation in item.get("_hdraw_", []) + item.get("_tdraw_", []):
            if operation["op"] in ("P", "p"):
                corners = [tuple(point) for point in operation["points"]]
                arrows.extend(corners)
                arrows.append((sum(x for x, _ in corners) / len(corners), sum(y for _, y in corners) / len(corners)))
        label_ops = [operation for key in ("_ldraw_", "_xldraw_", "_hldraw_", "_tldraw_") for operation in item.get(key, [])]
        edges.append(Edge(index, objects[item["tail"]]["name"], objects[item["head"]]["name"], tuple(spline), tuple(arrows),
                          text_box(label_ops)))
    return Layout(nodes, tuple(edges), titles)


def _inside(point: Point, box: Box, margin: float) -> bool:
    return box[0] + margin < point[0] < box[2] - margin and box[1] + margin < point[1] < box[3] - margin


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _distance(box: Box, points: tuple[Point, ...]) -> float:
    """Distance from a box to the nearest sampled point of a spline (0 when one is inside)."""
    best = math.inf
    for x, y in points:
        dx = max(box[0] - x, 0.0, x - box[2])
        dy = max(box[1] - y, 0.0, y - box[3])
        best = min(best, math.hypot(dx, dy))
    return best


def crossings(layout: Layout) -> list[str]:
    """(a) Edges whose spline passes through a node that is not one of their ends, or through
    the title of a cluster."""
    found = []
    for edge in layout.edges:
        for name, box in layout.cluster_titles.items():
            if any(_inside(point, box, 0.0) for point in edge.points):
                found.append(f"edge {edge.tail} -> {edge.head} passes through the title of {name}")
        for name, box in layout.nodes.items():
            if name in (edge.tail, edge.head):
                continue
            if any(_inside(point, box, NODE_MARGIN) for point in edge.points):
                found.append(f"edge {edge.tail} -> {edge.head} passes through node {name}")
    return found


def label_overlaps(layout: Layout) -> list[str]:
    """(b) Edge labels over each other, over a node or a cluster's title, or crossed by a line
    or an arrowhead (their own included: text struck through is not read)."""
    found = []
    labelled = [edge for edge in layout.edges if edge.label is not None]
    for number, edge in enumerate(labelled):
        for other in labelled[number + 1:]:
            if _overlap(edge.label, other.label):
                found.append(f"label of {edge.tail} -> {edge.head} overlaps label of {other.tail} -> {other.head}")
        for name, box in layout.nodes.items():
            if _overlap(edge.label, box):
                found.append(f"label of {edge.tail} -> {edge.head} overlaps node {name}")
        for name, box in layout.cluster_titles.items():
            if _overlap(edge.label, box):
                found.append(f"label of {edge.tail} -> {edge.head} overlaps the title of {name}")
        for other in layout.edges:
            if any(_inside(point, edge.label, LINE_MARGIN) for point in other.points + other.arrows):
                found.append(f"label of {edge.tail} -> {edge.head} is crossed by edge {other.tail} -> {other.head}")
    return found


def distant_labels(layout: Layout, near: float = NEAR) -> list[str]:
    """(c) Edge labels farther than `near` from their own edge, or nearer to another edge."""
    found = []
    for edge in layout.edges:
        if edge.label is None:
            continue
        own = _distance(edge.label, edge.points)
        if own > near:
            found.append(f"label of {edge.tail} -> {edge.head} is {own:.0f} pt from its edge")
            continue
        for other in layout.edges:
            if other.index != edge.index and _distance(edge.label, other.points) < own - 0.5:
                found.append(f"label of {edge.tail} -> {edge.head} is nearer to {other.tail} -> {other.head}")
                break
    return found


def problems(source: str) -> list[str]:
    """Everything that misleads in the drawing `dot` makes of `source` (empty: none)."""
    layout = parse(run_dot(source))
    return crossings(layout) + label_overlaps(layout) + distant_labels(layout)

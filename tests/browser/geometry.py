"""Where Cytoscape drew the map's edges and nodes, read back from the page, and the points along
an edge as it is drawn: for tests that no edge passes through a node it does not join."""

from __future__ import annotations

# Each drawn edge as its source point, control points and target point (model coordinates), and
# each drawn node's box.
GEOMETRY = """() => {
  const cy = window.netviz.cy;
  const edges = cy.edges().filter(e => e.visible()).map(e => ({
    source: e.source().id(), target: e.target().id(),
    points: [e.sourceEndpoint()].concat(e.controlPoints() || []).concat([e.targetEndpoint()]) }));
  const nodes = cy.nodes().filter(n => n.visible()).map(n => {
    const b = n.boundingBox({includeLabels: false, includeOverlays: false});
    return {id: n.id(), box: [b.x1, b.y1, b.x2, b.y2]};
  });
  return {edges: edges, nodes: nodes};
}"""


def curve_points(points: list[dict[str, float]], steps: int = 24) -> list[tuple[float, float]]:
    """Points along an edge as Cytoscape draws it: straight, or a chain of quadratic curves whose
    joints are the midpoints between consecutive control points."""
    xy = [(p["x"], p["y"]) for p in points]
    if len(xy) == 2:
        return [(xy[0][0] + (xy[1][0] - xy[0][0]) * t / steps, xy[0][1] + (xy[1][1] - xy[0][1]) * t / steps)
                for t in range(steps + 1)]
    controls = xy[1:-1]
    anchors = [xy[0]] + [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in zip(controls, controls[1:])] + [xy[-1]]
    samples = []
    for (start, control, end) in zip(anchors, controls, anchors[1:]):
        for step in range(steps + 1):
            t = step / steps
            samples.append(((1 - t) ** 2 * start[0] + 2 * t * (1 - t) * control[0] + t * t * end[0],
                            (1 - t) ** 2 * start[1] + 2 * t * (1 - t) * control[1] + t * t * end[1]))
    return samples


def crossings(geometry: dict, skip=lambda node_id: False) -> list[tuple[str, str, str]]:
    """(source, target, node) for every drawn edge that passes through the box of a node other than
    its two ends (nodes `skip` says yes to left out), sorted."""
    cell = 40.0
    grid: dict[tuple[int, int], list[tuple[str, list[float]]]] = {}
    for node in geometry["nodes"]:
        if skip(node["id"]):
            continue
        x1, y1, x2, y2 = node["box"]
        for gx in range(int(x1 // cell), int(x2 // cell) + 1):
            for gy in range(int(y1 // cell), int(y2 // cell) + 1):
                grid.setdefault((gx, gy), []).append((node["id"], node["box"]))
    found = set()
    for edge in geometry["edges"]:
        for x, y in curve_points(edge["points"]):
            for node_id, (x1, y1, x2, y2) in grid.get((int(x // cell), int(y // cell)), ()):
                if node_id not in (edge["source"], edge["target"]) and x1 < x < x2 and y1 < y < y2:
                    found.add((edge["source"], edge["target"], node_id))
    return sorted(found)

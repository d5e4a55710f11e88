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
import zlib
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

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

# Past this many nodes and flows the page carries the compact form (`compact_data`): no process
# view of everything (it could not be drawn anyway), each host's flows decoded when it is opened.
COMPACT_ELEMENTS = 20_000
# Past this many hosts, or this many host-to-host edges, the first view of a compact page is one
# node per group of hosts (the hosts' `group` when the document gives one, else runs of about
# AUTO_GROUP_SIZE hosts along the ring order, so hosts that talk share a group).
GROUP_OVERVIEW_HOSTS = 600
GROUP_OVERVIEW_EDGES = 12_000
AUTO_GROUP_SIZE = 100
# The keys of nodes and flows the compact form writes as array columns; any other key is kept
# as it is in a trailing object (identity, window, traffic...), so nothing is lost but `key`.
NODE_COLUMNS = frozenset(("key", "id", "host", "kind", "comm", "pids", "users", "contexts", "cmdline", "listening",
                          "ingress", "sockets"))
FLOW_COLUMNS = frozenset(("key", "id", "client", "server", "proto", "server_port", "server_address", "count", "directed",
                          "inferred", "via", "client_pids", "server_pids"))
# How many services an edge between two hosts keeps for its label (the busiest).
EDGE_SERVICES = 6

_MARKER = re.compile(r"@@(?:POLICY|TITLE|STYLE|DATA|LIBRARY|APP|BODY)@@")


class SupportsGraphJson(Protocol):
    """Anything that can give its `netviz.graph/1` document (netviz.graph.FlowGraph does)."""

    def to_json_dict(self) -> dict[str, Any]: ...


def render_html_graph(graph: SupportsGraphJson, title: str = "netviz",
                      groups: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """Render a FlowGraph (or anything with `to_json_dict()`) as a self-contained HTML page."""
    return render_html(graph.to_json_dict(), title=title, groups=groups)


def render_html(graph_doc: dict[str, Any], title: str = "netviz",
                groups: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """Render a `netviz.graph/1` document as one self-contained HTML page and return its text.

    Up to COMPACT_ELEMENTS nodes and flows, the page carries the document itself. Past that it
    carries the compact form of `compact_data` (see there): what the first view draws up front,
    each host's flows as a line of their own that the page decodes when the host is opened.
    `groups` (an inventory's: name -> host names) gives the groups of a large map's overview.
    """
    body = ""
    if is_compact(graph_doc):
        data, packed_body = compact_parts(graph_doc, title, groups)
        # After the page's script: the browser runs it, and draws the first view, before it has
        # parsed the body (most of the page); the page reads the body once the document is loaded.
        body = f'<script id="netviz-body" type="application/octet-stream">{packed_body}</script>'
    else:
        data = embed_json({"graph": graph_doc, "layout": compute_layout(graph_doc), "title": title})
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
        "@@DATA@@": data,
        "@@LIBRARY@@": library_js,
        "@@APP@@": app_js,
        "@@BODY@@": body,
    }
    # One pass, so text put in (a process may be called "@@APP@@") is never scanned for markers.
    return _MARKER.sub(lambda match: replacements[match.group(0)], template)


def is_compact(graph_doc: dict[str, Any]) -> bool:
    """Whether the page of this document carries the compact form."""
    return len(graph_doc.get("nodes", [])) + len(graph_doc.get("flows", [])) > COMPACT_ELEMENTS


class _Strings:
    """Interned strings: each distinct text written once, referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.texts: list[str] = []

    def __call__(self, value: Any) -> int:
        """The index of `value` (None: -1)."""
        if value is None:
            return -1
        found = self.index.get(value) if type(value) is str else None
        if found is not None:
            return found
        text = str(value)
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.texts)
            self.texts.append(text)
        return found


def _short_id(value: Any, prefix: str) -> Any:
    """`n123` as 123 (the page adds the prefix back), any other id as its text."""
    text = str(value)
    digits = text[1:]
    if text[:1] == prefix and digits.isascii() and digits.isdigit() and digits[0] != "0" and len(digits) < 16:
        return int(digits)
    return text


def compact_data(graph_doc: dict[str, Any], title: str = "netviz",
                 groups: Optional[Mapping[str, Sequence[str]]] = None) -> str:
    """`compact_parts` as one text: the data block's two lines, then the packed body."""
    return "\n".join(compact_parts(graph_doc, title, groups))


def compact_parts(graph_doc: dict[str, Any], title: str = "netviz",
                  groups: Optional[Mapping[str, Sequence[str]]] = None) -> tuple[str, str]:
    """A large document's data block, a first line `{"compact": 1, "packed": ...}` then the head,
    and its body (the page's last script element), each deflated and in base64 (`_pack`).

    The head (JSON) holds what the first view and search need: the hosts as the document has them
    (without natural keys), every node as an array of columns (strings by index into `strings`),
    grouped by host, the edges between hosts already summed per (client host, server host, via,
    directed) with their busiest services and bytes, the groups of the overview, and the ring
    order. The body's line i holds the flows whose client is on host i, as arrays of columns; `lines`
    gives each line's offset and length, so the page decodes a host's flows only when it shows
    them. With an overview by group, the head holds the edges between groups (`groupEdges`,
    translated flows of a pair summed as one) and the edges between hosts follow the hosts' lines,
    one line per group holding those that touch its hosts. Every line is written by `embed_json`,
    so no name can close the block.
    """
    strings = _Strings()
    hosts, per_host = _hosts_with_their_nodes(graph_doc)
    node_host, node_kind, node_rows = _node_rows(per_host, strings)
    flow_lines, edge_rows, skipped, window = _flow_rows(graph_doc, len(hosts), node_host, node_kind, strings)

    names = [str(host["name"]) for host in hosts]
    order = ring_order({"nodes": [{"id": node_id, "host": names[index]} for node_id, index in node_host.items()],
                        "flows": graph_doc.get("flows", [])}, names)
    position = {name: index for index, name in enumerate(names)}
    ring = [position[name] for name in order]
    overview = []
    if len(hosts) > GROUP_OVERVIEW_HOSTS or len(edge_rows) > GROUP_OVERVIEW_EDGES:
        overview = host_groups(hosts, ring, inventory_group_of(groups or {}, names))

    lines = [embed_json(rows) for rows in flow_lines]
    group_edges: list[list[Any]] = []
    if overview:
        # The first view draws groups: their edges are summed here, and the edges between hosts
        # move to one line per group (those touching its hosts), decoded when the group opens.
        group_edges, touching = _group_edges(edge_rows, overview)
        lines.extend(embed_json(rows) for rows in touching)
        edge_rows = []
        # Nor does it need the nodes: they go last in the body, decoded just after the first view.
        lines.append(embed_json(node_rows))
    offsets = []
    at = 0
    for line in lines:
        offsets.append([at, len(line)])
        at += len(line) + 1
    head = {
        "compact": 1, "title": title,
        "graph": {key: value for key, value in graph_doc.items() if key not in ("hosts", "nodes", "flows")},
        "hosts": hosts, "strings": strings.texts, "nodes": None if overview else node_rows,
        "processLevel": any(kind != "host" for kind in node_kind.values()),
        **({"nodesLine": len(lines) - 1} if overview else {}), "edges": edge_rows, "groupEdges": group_edges,
        "ring": ring,
        "groups": overview, "lines": offsets, "skipped": skipped, "window": window,
        "counts": {"nodes": sum(len(rows) for rows in node_rows), "flows": sum(len(rows) for rows in flow_lines)},
    }
    # Deflated and in base64 (letters, digits, + / =: nothing a script block could mistake), the
    # page a quarter of its size or less; the browser inflates it with DecompressionStream.
    return (embed_json({"compact": 1, "packed": "deflate-base64"}) + "\n" + _pack(embed_json(head)),
            _pack("\n".join(lines)))


def _hosts_with_their_nodes(graph_doc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The document's hosts (without natural keys, each once) and each host's nodes; a node of a
    host the document does not list gets one."""
    hosts: list[dict[str, Any]] = []
    host_index: dict[str, int] = {}
    for host in graph_doc.get("hosts", []):
        name = str(host.get("name"))
        if name in host_index:
            continue
        host_index[name] = len(hosts)
        hosts.append({key: value for key, value in host.items() if key != "key"})
    per_host: list[list[dict[str, Any]]] = [[] for _ in hosts]
    for node in graph_doc.get("nodes", []):
        name = str(node.get("host"))
        if name not in host_index:
            host_index[name] = len(hosts)
            hosts.append({"name": name})
            per_host.append([])
        per_host[host_index[name]].append(node)
    return hosts, per_host


def _node_rows(per_host: list[list[dict[str, Any]]], strings: _Strings) -> tuple[dict[str, int], dict[str, Any], list[list[list[Any]]]]:
    """Each host's nodes as arrays of columns; and each node id's host index and kind."""
    node_host: dict[str, int] = {}
    node_kind: dict[str, Any] = {}
    node_rows: list[list[list[Any]]] = []
    for index, nodes in enumerate(per_host):
        rows = []
        for node in nodes:
            node_id = str(node.get("id"))
            node_host[node_id] = index
            node_kind[node_id] = node.get("kind")
            others = node.keys() - NODE_COLUMNS
            extra = {key: node[key] for key in node if key in others} if others else None
            rows.append([
                _short_id(node_id, "n"), strings(node.get("kind")), strings(node.get("comm")),
                list(node.get("pids") or []), [strings(user) for user in node.get("users") or []],
                [strings(context) for context in node.get("contexts") or []], strings(node.get("cmdline")),
                [[strings(item.get("proto")), strings(item.get("address")), item.get("port")]
                 for item in node.get("listening") or []],
                list(node.get("ingress") or []), node.get("sockets"), extra or 0,
            ])
        node_rows.append(rows)
    return node_host, node_kind, node_rows


def _flow_rows(graph_doc: dict[str, Any], host_count: int, node_host: dict[str, int], node_kind: dict[str, Any],
               strings: _Strings) -> tuple[list[list[list[Any]]], list[list[Any]], int, bool]:
    """The flows as arrays of columns, one line per client host; the edges between hosts summed
    per (client host, server host, via, directed); how many flows named unknown nodes; whether
    the document has a window."""
    flow_lines: list[list[list[Any]]] = [[] for _ in range(host_count)]
    edges: dict[tuple[int, int, int, int], list[Any]] = {}
    skipped = 0
    window = False
    for flow in graph_doc.get("flows", []):
        client, server = str(flow.get("client")), str(flow.get("server"))
        if client not in node_host or server not in node_host:
            skipped += 1
            continue
        window = window or "persistent" in flow
        directed = flow.get("directed") is not False
        via = strings(flow.get("via")) if flow.get("via") else -1
        others = flow.keys() - FLOW_COLUMNS
        extra = {key: flow[key] for key in flow if key in others} if others else None
        flow_lines[node_host[client]].append([
            _short_id(flow.get("id"), "f"), _short_id(client, "n"), _short_id(server, "n"),
            strings(flow.get("proto")), flow.get("server_port"), strings(flow.get("server_address")),
            flow.get("count"), (1 if directed else 0) | (2 if flow.get("inferred") else 0), via,
            list(flow.get("client_pids") or []), list(flow.get("server_pids") or []), extra or 0,
        ])
        if node_kind[client] == "outside" or node_kind[server] == "outside":
            continue  # the host view counts these on the host, it does not draw them
        a, b = node_host[client], node_host[server]
        if not directed and b < a:
            a, b = b, a
        edge = edges.get((a, b, via, directed))
        if edge is None:
            # [client host, server host, via, directed, connections, flows, short-lived flows, bytes, services]
            edge = edges[(a, b, via, directed)] = [a, b, via, 1 if directed else 0, 0, 0, 0, 0, {}]
        count = int(flow.get("count") or 1)
        edge[4] += count
        edge[5] += 1
        edge[6] += 1 if flow.get("persistent") is False else 0
        traffic = flow.get("traffic") or {}
        if traffic.get("bytes_sent") is None and traffic.get("bytes_received") is None:  # conntrack's IP bytes
            edge[7] += int(traffic.get("ip_bytes_sent") or 0) + int(traffic.get("ip_bytes_received") or 0)
        else:
            edge[7] += int(traffic.get("bytes_sent") or 0) + int(traffic.get("bytes_received") or 0)
        port = flow.get("server_port")
        service = str(flow.get("proto") or "") + ("" if port is None else f" {port}")
        edge[8][service] = edge[8].get(service, 0) + count
    edge_rows = []
    for edge in edges.values():
        edge[8] = _busiest_services(edge[8], strings)
        edge_rows.append(edge)
    return flow_lines, edge_rows, skipped, window


def _busiest_services(counts: dict[Any, int], intern: Callable[[Any], Any] = lambda service: service) -> list[list[Any]]:
    """[[service, connections], ...] for the EDGE_SERVICES busiest (ties by service), each service
    through `intern` (its string index), then [-1, the rest's connections] when there are more."""
    busiest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[intern(service), count] for service, count in busiest[:EDGE_SERVICES]] + (
        [[-1, sum(count for _, count in busiest[EDGE_SERVICES:])]] if len(busiest) > EDGE_SERVICES else [])


def _group_edges(edge_rows: list[list[Any]], overview: list[dict[str, Any]]) -> tuple[list[list[Any]], list[list[list[Any]]]]:
    """The edges between groups of the overview, summed (a pair's translated flows as one), and
    for each group the edges between hosts that touch its hosts."""
    group_of = {index: g for g, group in enumerate(overview) for index in group["hosts"]}
    touching: list[list[list[Any]]] = [[] for _ in overview]
    summed: dict[tuple[int, int, int, int], list[Any]] = {}
    for edge in edge_rows:
        ga, gb = group_of[edge[0]], group_of[edge[1]]
        touching[ga].append(edge)
        if gb != ga:
            touching[gb].append(edge)
        if not edge[3] and gb < ga:
            ga, gb = gb, ga
        key = (ga, gb, 1 if edge[2] >= 0 else 0, edge[3])
        row = summed.get(key)
        if row is None:
            row = summed[key] = [ga, gb, key[2], edge[3], 0, 0, 0, 0, {}]
        for column in (4, 5, 6, 7):
            row[column] += edge[column]
        for service, count in edge[8]:
            row[8][service] = row[8].get(service, 0) + count
    group_edges = []
    for row in summed.values():
        row[8] = _busiest_services(row[8])
        group_edges.append(row)
    return group_edges, touching


def _pack(text: str) -> str:
    """`text` (ASCII) deflated (zlib format, fastest level: writing a 10,000-host page stays
    quick) and written in base64."""
    return base64.b64encode(zlib.compress(text.encode("ascii"), 1)).decode("ascii")


def inventory_group_of(groups: Mapping[str, Sequence[str]], names: list[str]) -> dict[str, str]:
    """Each host's group for the overview: the smallest inventory group that names it (the most
    specific; `all` and other groups of everything lose to any smaller one), ties by name. A
    group of every host, or of a single host, says nothing about the map and is not used."""
    known = set(names)
    best: dict[str, tuple[int, str]] = {}
    for group, members in groups.items():
        inside = known.intersection(members)
        if len(inside) < 2 or len(inside) == len(known):
            continue
        for name in inside:
            if name not in best or (len(inside), group) < best[name]:
                best[name] = (len(inside), group)
    return {name: group for name, (_, group) in best.items()}


def host_groups(hosts: list[dict[str, Any]], ring: list[int],
                group_of: Optional[Mapping[str, str]] = None) -> list[dict[str, Any]]:
    """The groups of the overview, in ring order: `[{"name", "hosts": [host index...], "auto"}]`.

    A host's inventory group (`group_of`, else a `group` key on the host) puts it in that group;
    hosts without one go in runs of about AUTO_GROUP_SIZE along the ring order, named by their
    first host.
    """
    group_of = group_of or {}
    named: dict[str, list[int]] = {}
    loose: list[int] = []
    for index in ring:
        group = group_of.get(str(hosts[index].get("name"))) or hosts[index].get("group")
        if isinstance(group, str) and group:
            named.setdefault(group, []).append(index)
        else:
            loose.append(index)
    groups = [{"name": name, "hosts": members, "auto": False} for name, members in named.items()]
    if loose:
        runs = max(1, math.ceil(len(loose) / AUTO_GROUP_SIZE))
        size = math.ceil(len(loose) / runs)
        for start in range(0, len(loose), size):
            members = loose[start:start + size]
            first = str(hosts[members[0]].get("name"))
            groups.append({"name": f"{first} +{len(members) - 1}" if len(members) > 1 else first,
                           "hosts": members, "auto": True})
    return groups


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

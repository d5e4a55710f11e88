"""CSV/TSV, GraphML and Mermaid, each read back by its real consumer: Python's csv reader (in this
process and in a separate `python -c`), networkx and igraph (libxml2) for GraphML, and mermaid-cli
(Mermaid in Chromium) for Mermaid. Each format gets the hostile names every other format is tested
with (tests/test_hardening_outputs.py) and a real graph: processes of this machine, renamed to
hostile names, holding loopback connections, captured by `netviz capture` and stitched by
`netviz stitch` as a user would."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

import pytest

from netviz.graph import KIND_HOST, KIND_OUTSIDE, FlowGraph, Node
from netviz.render import format_from_suffix, render
from netviz.render.csv import FORMULA_PREFIXES, HEADERS, TRAFFIC_HEADERS, WINDOW_HEADERS, cell
from netviz.textsafe import for_terminal
from snapbuilder import Machine
from test_render_window import window_graph
from tests.test_hardening_outputs import NASTY, build_group
from netviz.stitch import stitch

REPO = Path(__file__).resolve().parent.parent
MMDC = REPO / ".venv" / "mermaid" / "node_modules" / ".bin" / "mmdc"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Names a spreadsheet would evaluate (OWASP's examples) and names that end a Mermaid label,
# open a directive or a comment, or add a node, on top of the shared hostile list.
FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=tab", "\r=cr", "＝fullwidth",
            '=HYPERLINK("http://x","y")']
MERMAID_BREAKERS = ['"] --> evil["x', "%%{init: {'theme':'dark'}}%%", "click n1 call alert()", "a:::red",
                    "#quot;", "`**md**`", "$$x^2$$", "end", "subgraph", "a --> b", "|edge|", "(round)", "{rhombus}"]
HOSTILE = NASTY + FORMULAS + MERMAID_BREAKERS


def hostile_graph() -> FlowGraph:
    """Two machines named after hostile names, each name a process with one flow across."""
    return stitch(build_group(HOSTILE))


def small_graph() -> FlowGraph:
    box = Machine("box", "10.0.0.1")
    box.process(1, "app")
    box.process(2, "db")
    box.listen(2, "tcp", "127.0.0.1:5432")
    for port in (40000, 40001, 40002):
        box.connect(1, "tcp", f"127.0.0.1:{port}", "127.0.0.1:5432")
        box.connect(2, "tcp", "127.0.0.1:5432", f"127.0.0.1:{port}")
    return stitch([box.build()])


def process_name(graph: FlowGraph, node_id: str) -> str:
    node = graph.node(node_id)
    return "" if node.kind == KIND_HOST else "(outside)" if node.kind == KIND_OUTSIDE else node.comm


# --------------------------------------------------------------------------------------------
# A real graph: this machine's processes, renamed, captured and stitched through the CLI

SERVER = r"""
import socket, sys
open("/proc/self/comm", "w").write(sys.argv[1])
tcp = socket.socket(); tcp.bind(("127.0.0.1", 0)); tcp.listen(16)
print(tcp.getsockname()[1], flush=True)
held = []
while True:
    connection, _ = tcp.accept(); held.append(connection)
"""

CLIENT = r"""
import socket, sys, time
open("/proc/self/comm", "w").write(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", int(sys.argv[2]))) for _ in range(3)]
print("ready", flush=True)
time.sleep(600)
"""

# /proc/PID/comm keeps 15 bytes: each name fits
LIVE_SERVER = '=1+1"]; x-->y'
LIVE_CLIENT = "@a,\"b\"\n%%<i>"


class Live:
    """A capture of this machine holding 3 connections from LIVE_CLIENT to LIVE_SERVER."""

    def __init__(self, snapshot: Path, port: int, server_pid: int, client_pid: int) -> None:
        self.snapshot, self.port, self.server_pid, self.client_pid = snapshot, port, server_pid, client_pid

    def stitch(self, fmt: str, *options: str) -> bytes:
        """`netviz stitch SNAPSHOT --format FMT`, its stdout."""
        result = subprocess.run([sys.executable, "-m", "netviz", "stitch", str(self.snapshot), "--format", fmt, *options],
                                capture_output=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    def graph_json(self, *options: str) -> dict:
        return json.loads(self.stitch("json", *options))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    started: list[subprocess.Popen] = []

    def start(code: str, *arguments: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code, *arguments], stdout=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True)
        started.append(process)
        return process

    try:
        server = start(SERVER, LIVE_SERVER)
        port = int(server.stdout.readline())
        client = start(CLIENT, LIVE_CLIENT, str(port))
        assert client.stdout.readline().strip() == "ready"
        time.sleep(0.2)  # let the server accept every connection
        snapshot = tmp_path_factory.mktemp("live") / "snapshot.json"
        subprocess.run([sys.executable, "-m", "netviz", "capture", "-o", str(snapshot)], check=True,
                       capture_output=True, timeout=300, cwd=REPO)
        yield Live(snapshot, port, server.pid, client.pid)
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# CSV and TSV


def read_rows(text: str, fmt: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), dialect="excel-tab" if fmt == "tsv" else "excel"))


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_rows_read_back_one_line_per_flow_with_hostile_names(fmt: str) -> None:
    graph = hostile_graph()
    text = render(graph, fmt).decode("utf-8")
    rows = read_rows(text, fmt)
    assert rows[0] == list(HEADERS)
    assert len(rows) == len(graph.flows) + 1 == len(HOSTILE) + 1
    # no name breaks a row: one line per row, every row as wide as the header
    assert text.count("\n") == len(rows) and "\r" not in text
    assert all(len(row) == len(HEADERS) for row in rows)
    column = {name: index for index, name in enumerate(HEADERS)}
    expected = sorted((cell(process_name(graph, flow.client)), cell(process_name(graph, flow.server)),
                       cell(graph.node(flow.client).host), str(flow.server_port), str(flow.count))
                      for flow in graph.flows)
    got = sorted((row[column["client_process"]], row[column["server_process"]], row[column["client_host"]],
                  row[column["server_port"]], row[column["count"]]) for row in rows[1:])
    assert got == expected
    # every name is there, escaped as in the table (controls as \xNN), and none is a formula
    assert {row[column["client_process"]] for row in rows[1:]} == {cell(name) for name in HOSTILE}
    for row in rows[1:]:
        for value in row:
            assert not value.startswith(FORMULA_PREFIXES), value
            assert for_terminal(value, limit=sys.maxsize) == value  # nothing left to escape


def test_formula_names_are_neutralised_and_plain_names_kept() -> None:
    assert [cell(name) for name in FORMULAS] == ["'=1+1", "'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1:A2)",
                                                  "\\x09=tab", "\\x0d=cr", "'＝fullwidth",
                                                  "'=HYPERLINK(\"http://x\",\"y\")"]
    assert cell("nginx") == "nginx" and cell("a=b") == "a=b" and cell("") == ""


def test_csv_with_a_window_has_its_columns() -> None:
    graph = window_graph()
    rows = read_rows(render(graph, "csv").decode("utf-8"), "csv")
    assert rows[0] == list(HEADERS + WINDOW_HEADERS)
    by_client = {row[1]: dict(zip(rows[0], row)) for row in rows[1:]}
    persistent, short = by_client["app"], by_client["(short-lived)"]
    assert (persistent["state"], persistent["connections"], persistent["persistent"]) == ("persistent", "1", "true")
    assert (short["state"], short["connections"], short["persistent"], short["per_minute"]) == \
        ("short-lived", "100", "false", "600")
    # an instant graph has no window columns at all
    assert read_rows(render(small_graph(), "csv").decode(), "csv")[0] == list(HEADERS)


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_live_capture_rows_through_the_cli_and_another_python(live: Live, fmt: str) -> None:
    text = live.stitch(fmt)
    # a separate interpreter reads it with nothing but the stdlib, as a user's script would
    reader = ("import csv, json, sys; "
              f"print(json.dumps(list(csv.DictReader(sys.stdin, dialect={'excel-tab' if fmt == 'tsv' else 'excel'!r}))))")
    records = json.loads(subprocess.run([sys.executable, "-c", reader], input=text, capture_output=True,
                                        timeout=60, check=True).stdout)
    ours = [record for record in records if record["server_port"] == str(live.port)]
    # this machine's own namespace has TCP counters: their columns hold numbers (the 3 bytes sent)
    traffic = {key: ours[0].pop(key) for key in TRAFFIC_HEADERS if key in ours[0]}
    assert traffic == {} or (int(traffic["bytes_sent"]) >= 0 and float(traffic["rtt_max_ms"]) > 0), traffic
    assert ours == [{
        "client_host": ours[0]["client_host"], "client_process": cell(LIVE_CLIENT), "client_pids": str(live.client_pid),
        "server_host": ours[0]["client_host"], "server_process": cell(LIVE_SERVER), "server_pids": str(live.server_pid),
        "proto": "tcp", "server_address": "127.0.0.1", "server_port": str(live.port), "state": "open", "count": "3",
        "directed": "true", "inferred": "false", "via": "",
    }]
    assert ours[0]["server_process"].startswith("'=") and "\\x0a" in ours[0]["client_process"]
    assert len(records) == len(live.graph_json()["flows"])


def test_suffixes_choose_the_new_formats() -> None:
    assert [format_from_suffix(Path(name)) for name in ("a.csv", "a.TSV", "g.graphml", "d.mmd", "d.mermaid")] == \
        ["csv", "tsv", "graphml", "mermaid", "mermaid"]


# --------------------------------------------------------------------------------------------
# GraphML: networkx and igraph (libxml2) are its consumers here


def graphml_consumers(data: bytes, tmp_path: Path):
    networkx = pytest.importorskip("networkx", reason="networkx is in the test extras: pip install -e '.[test]'")
    igraph = pytest.importorskip("igraph", reason="igraph is in the test extras: pip install -e '.[test]'")
    path = tmp_path / "graph.graphml"
    path.write_bytes(data)
    return networkx.read_graphml(path), igraph.Graph.Read_GraphML(str(path))


def assert_graphml_is_the_graph(data: bytes, graph: FlowGraph, tmp_path: Path) -> None:
    """networkx and igraph read the same nodes, edges and attributes as the FlowGraph holds."""
    nx_graph, ig_graph = graphml_consumers(data, tmp_path)
    assert nx_graph.is_directed() and ig_graph.is_directed()
    assert nx_graph.number_of_nodes() == ig_graph.vcount() == len(graph.nodes)
    assert nx_graph.number_of_edges() == ig_graph.ecount() == len(graph.flows)
    safe = lambda text: for_terminal(text, limit=sys.maxsize)  # noqa: E731
    expected_nodes = {node.id: {"host": safe(node.host), "comm": safe(node.comm), "kind": node.kind,
                                "pids": " ".join(map(str, node.pids)), "sockets": node.sockets} for node in graph.nodes}
    got_nodes = {key: {name: attributes[name] for name in ("host", "comm", "kind", "pids", "sockets")}
                 for key, attributes in nx_graph.nodes(data=True)}
    assert got_nodes == expected_nodes
    expected_edges = sorted((flow.client, flow.server, flow.proto, flow.server_port, flow.count, flow.directed)
                            for flow in graph.flows)
    edges = nx_graph.edges(data=True)
    assert sorted((a, b, data["proto"], data["port"], data["count"], data["directed"]) for a, b, data in edges) == \
        expected_edges
    ig_edges = sorted((ig_graph.vs[edge.source]["id"], ig_graph.vs[edge.target]["id"], edge["proto"], int(edge["port"]),
                       int(edge["count"]), bool(edge["directed"])) for edge in ig_graph.es)
    assert ig_edges == expected_edges
    assert sorted(ig_graph.vs["comm"]) == sorted(node["comm"] for node in expected_nodes.values())


def test_graphml_with_hostile_names_is_read_by_networkx_and_igraph(tmp_path: Path) -> None:
    graph = hostile_graph()
    data = render(graph, "graphml")
    assert_graphml_is_the_graph(data, graph, tmp_path)
    # a name is text, never markup: the only elements are GraphML's own
    tags = set(re.findall(rb"<([A-Za-z][\w:.-]*)", data))
    assert tags == {b"graphml", b"key", b"graph", b"node", b"data", b"edge"}


def test_graphml_without_escaping_would_be_invalid_xml(tmp_path: Path) -> None:
    """What the textsafe pass is for: ElementTree alone writes a control character raw, which no
    XML parser accepts; the document netviz writes of the same name is read."""
    import xml.etree.ElementTree as ET

    raw = ET.Element("data")
    raw.text = "bell\x07\ufffe"
    with pytest.raises(ET.ParseError):
        ET.fromstring(ET.tostring(raw))
    graph = stitch(build_group(["bell\x07\ufffe", "\x00nul"]))
    nx_graph, _ = graphml_consumers(render(graph, "graphml"), tmp_path)
    assert {data["comm"] for _, data in nx_graph.nodes(data=True)} == {"bell\\x07\\ufffe", "\\x00nul"}


def test_graphml_window_facts(tmp_path: Path) -> None:
    graph = window_graph()
    nx_graph, _ = graphml_consumers(render(graph, "graphml"), tmp_path)
    windows = sorted((data["connections"], data["persistent"], data["per_minute"]) for *_, data in nx_graph.edges(data=True))
    assert windows == sorted((f.window.connections, f.window.persistent, f.window.per_minute) for f in graph.flows)
    # an instant graph declares no window key
    assert b"connections" not in render(small_graph(), "graphml")


def test_graphml_of_a_live_capture_equals_its_json_graph(live: Live, tmp_path: Path) -> None:
    document = live.graph_json()
    nx_graph, ig_graph = graphml_consumers(live.stitch("graphml"), tmp_path)
    assert nx_graph.number_of_nodes() == ig_graph.vcount() == len(document["nodes"])
    assert nx_graph.number_of_edges() == ig_graph.ecount() == len(document["flows"])
    comm = {node["id"]: node["comm"] for node in document["nodes"]}
    ours = [(a, b, data) for a, b, data in nx_graph.edges(data=True) if data["port"] == live.port]
    assert len(ours) == 1
    client, server, data = ours[0]
    assert (data["count"], data["proto"], data["client_pids"], data["server_pids"]) == \
        (3, "tcp", str(live.client_pid), str(live.server_pid))
    assert (comm[client], comm[server]) == (LIVE_CLIENT, LIVE_SERVER)
    assert (nx_graph.nodes[client]["comm"], nx_graph.nodes[server]["comm"]) == (for_terminal(LIVE_CLIENT), LIVE_SERVER)


# --------------------------------------------------------------------------------------------
# Mermaid: drawn by mermaid-cli in Chromium


def mmdc(source: bytes, tmp_path: Path) -> str:
    """The SVG mermaid-cli draws of `source` (the test skips when mermaid-cli or Chromium is absent)."""
    if not MMDC.exists():
        pytest.skip(f"mermaid-cli is not installed in {MMDC.parent} (scripts/setup.sh --test installs it)")
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/setup.sh --test installs it)")
    config = tmp_path / "puppeteer.json"
    config.write_text(json.dumps({"executablePath": CHROMIUM, "args": ["--no-sandbox"]}))
    (tmp_path / "map.mmd").write_bytes(source)
    result = subprocess.run([str(MMDC), "-p", str(config), "-i", str(tmp_path / "map.mmd"), "-o", str(tmp_path / "map.svg"),
                             "-q"], capture_output=True, timeout=180)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return (tmp_path / "map.svg").read_text(encoding="utf-8")


class DrawnMermaid(HTMLParser):
    """What Mermaid drew: its node, cluster and edge ids, every element name, and the text of each
    node label, in document order."""

    def __init__(self, svg: str) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: list[str] = []
        self.clusters: list[str] = []
        self.edges: list[tuple[str, str]] = []
        self.tags: set[str] = set()
        self.labels: list[list[str]] = []
        self._depth = 0  # >0 inside a nodeLabel span
        self.feed(svg)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.add(tag)
        element_id, classes = attributes.get("id") or "", (attributes.get("class") or "").split()
        if tag == "g" and "node" in classes and (match := re.search(r"-flowchart-(n\d+)-\d+$", element_id)):
            self.nodes.append(match.group(1))
        if tag == "g" and "cluster" in classes:
            self.clusters.append(element_id.rsplit("-", 1)[-1])
        if tag == "path" and (match := re.search(r"(?:^|-)L_(n\d+)_(n\d+)_\d+$", element_id)):
            self.edges.append((match.group(1), match.group(2)))
        if self._depth:
            self._depth += 1
            if tag == "br":
                self._depth -= 1  # void element: no end tag
                self.labels[-1].append("")
        elif tag == "span" and "nodeLabel" in classes:
            self._depth = 1
            self.labels.append([""])

    def handle_endtag(self, tag: str) -> None:
        if self._depth and tag != "br":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.labels[-1][-1] += data


def squeezed(text: str) -> str:
    return " ".join(text.split())


def shown(node: Node) -> str:
    """How a Mermaid node shows a process: its name escaped as in every format ("" for no name),
    then its pids; spaces squeezed as HTML shows them."""
    name = for_terminal(node.comm, limit=120) if node.comm else '""'
    pids = ", ".join(map(str, node.pids))
    return squeezed(f"{name} ({'pid' if len(node.pids) == 1 else 'pids'} {pids})" if node.pids else name)


def assert_drawn_is_the_graph(svg: str, graph: FlowGraph) -> DrawnMermaid:
    drawn = DrawnMermaid(svg)
    assert sorted(drawn.nodes) == sorted(node.id for node in graph.nodes)
    assert sorted(drawn.edges) == sorted((flow.client, flow.server) for flow in graph.flows)
    assert len(drawn.clusters) == len({node.host for node in graph.nodes})
    # nothing a name holds became markup: no script, image, bold, math or nested svg element
    assert not drawn.tags & {"script", "img", "b", "i", "iframe", "a", "math", "br"}, drawn.tags
    assert svg.count("<svg") == 1
    # every label is one line of text: the machines' first (clusters come first), then the processes'
    texts = [squeezed(" ".join(lines)) for lines in drawn.labels]
    assert all(len(lines) == 1 for lines in drawn.labels)
    assert sorted(texts[len(drawn.clusters):]) == sorted(shown(node) for node in graph.nodes)
    return drawn


def test_mermaid_with_hostile_names_is_drawn_by_mermaid_cli(tmp_path: Path) -> None:
    graph = hostile_graph()
    source = render(graph, "mermaid")
    assert source.startswith(b"flowchart LR\n")
    svg = mmdc(source, tmp_path)
    assert_drawn_is_the_graph(svg, graph)
    # the label of every edge is drawn, and the names of the machines head their boxes
    assert len(re.findall(r'class="edgeLabel"><p>tcp/\d+</p>', svg)) == len(graph.flows)
    drawn = DrawnMermaid(svg)
    assert {squeezed(lines[0]) for lines in drawn.labels[:len(drawn.clusters)]} == \
        {squeezed(for_terminal(host.name)) for host in graph.hosts}


def test_mermaid_labels_and_arrows() -> None:
    graph = small_graph()
    assert render(graph, "mermaid").decode() == (
        'flowchart LR\n'
        '  subgraph h1["box"]\n'
        '    n1["app #40;pid 1#41;"]\n'
        '    n2["db #40;pid 2#41;"]\n'
        '  end\n'
        '  n1 -->|"tcp/5432 ×3"| n2\n'
    )
    source = render(window_graph(), "mermaid").decode()
    assert '-.->|"tcp/8080 ~600 per minute"|' in source  # short-lived: dotted, with its rate


def test_mermaid_notices_past_its_default_limits() -> None:
    from netviz.render.mermaid import render_mermaid

    heard: list[str] = []
    render_mermaid(small_graph(), heard.append)
    assert heard == []
    big = Machine("big", "10.0.0.1")
    big.process(1, "db")
    big.listen(1, "tcp", "127.0.0.1:5432")
    for client in range(2, 503):
        big.process(client, f"c{client}")
        big.connect(client, "tcp", f"127.0.0.1:{30000 + client}", "127.0.0.1:5432")
        big.connect(1, "tcp", "127.0.0.1:5432", f"127.0.0.1:{30000 + client}")
    render_mermaid(stitch([big.build()]), heard.append)
    assert len(heard) == 1 and "501 edges" in heard[0]


def test_mermaid_of_a_live_capture_is_drawn_by_mermaid_cli(live: Live, tmp_path: Path) -> None:
    document = live.graph_json("--only", str(live.port))
    source = live.stitch("mermaid", "--only", str(live.port))
    svg = mmdc(source, tmp_path)
    drawn = DrawnMermaid(svg)
    assert len(document["flows"]) == 1 and len(drawn.edges) == 1
    assert sorted(drawn.nodes) == sorted(node["id"] for node in document["nodes"])
    texts = {squeezed(lines[0]) for lines in drawn.labels}
    assert {shown(Node("", "", "process", LIVE_SERVER, pids=(live.server_pid,))),
            shown(Node("", "", "process", LIVE_CLIENT, pids=(live.client_pid,)))} <= texts
    assert "tcp/" + str(live.port) + " ×3" in svg

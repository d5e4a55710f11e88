"""Every output stays well-formed whatever the machines call things.

Any local user names a process (comm, command line) and a compromised machine writes its own
snapshot (hostname, users, contexts, interface names). Hostile names go through the real loader
and stitcher into every format: DOT is read back by the real `dot`, which must see exactly the
graph's nodes and edges (nothing injected, nothing lost); JSON round-trips to the same names;
the terminal table holds no control character; the HTML page keeps only its own scripts and its
data block decodes back to the same names.
"""

from __future__ import annotations

import json
from datetime import timedelta
import re
import shutil
import subprocess
import unicodedata
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from netviz.cli import app
from netviz.errors import SnapshotError
from netviz.render import render
from netviz.render.html import render_html_graph
from netviz.render.table import render_table_text, table_rows
from netviz.snapshot import dump_snapshot, load_snapshot, parse_snapshot
from netviz.stitch import stitch
from tests.snapbuilder import Machine

# One example takes well under a second, and seconds on a very busy machine; far longer means a
# parser that hangs or blows up on its input (the failure the deadline is there to catch).
EXAMPLE_DEADLINE = timedelta(seconds=20)

NASTY = [
    'quote " and \' here', "back\\slash\\", "new\nline", "cr\rlf\r\n", "tab\there", "\\N\\G\\E\\T\\H\\L",
    "\\n\\l\\r", "<b>bold</b>", "</script><script>alert(1)</script>", "<!--", "]]>", "&amp; &lt;",
    "<img src=x onerror=alert(1)>", '"><svg onload=alert(1)>', "\x1b[2J\x1b[31mred", "\x1b]0;title\x07",
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "\x9b31m c1 csi", "\x85nel", "\x00nul", "\x7fdel",
    "bell\x07", "\u202eevil\u202c", "\u2066iso\u2069", "\u2028sep\u2029", "\\xff\\xfe not utf-8",
    "\U0001F4A9", "]", "]]", "[", "{}", "}; digraph x { a -> b", "node [label=x]",
    "@@DATA@@", "@@APP@@", "${IFS}$(id)`id`;id", "-" * 200, "x" * 4096, "", " ", "label=<<b>x</b>>",
]


def _hostile_names() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), st.text(max_size=40),
                     st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Co"]), max_size=12))


def build_group(names: list[str]):
    """Two machines whose processes, users, contexts, command lines, interfaces and host names
    are the hostile `names`, each client on one machine talking to a server on the other; the
    snapshots go through the JSON writer and the loader, as files would."""
    first, second = (names + ["a", "b"])[:2]
    client = Machine("m1", "10.0.0.1", hostname=first)
    server = Machine("m2", "10.0.0.2", hostname=second)
    for index, name in enumerate(names):
        pid = 100 + index
        client.process(pid, name, user=name, context=name, cmdline=[name, name])
        server.process(pid, name, user=name, context=name, cmdline=[name])
        port = 1000 + index
        server.listen(pid, "tcp", f"0.0.0.0:{port}")
        client.connect(pid, "tcp", f"10.0.0.1:{30000 + index}", f"10.0.0.2:{port}")
        server.connect(pid, "tcp", f"10.0.0.2:{port}", f"10.0.0.1:{30000 + index}")
        client.socket(pid, "packet", None, interface=name[:64] or "*", protocol=3, packet_type="raw")
    return [parse_snapshot(json.loads(dump_snapshot(machine.build())), f"{machine.name}.json")
            for machine in (client, server)]


def test_a_lone_surrogate_is_refused_by_the_loader() -> None:
    """JSON can spell "\\ud800", which is not text: no output could be encoded with it."""
    document = json.loads(dump_snapshot(Machine("m1", "10.0.0.1").build()))
    document["host"]["hostname"] = "web\ud800"
    with pytest.raises(SnapshotError, match=r"^m1\.json: host\.hostname: not valid Unicode text"):
        parse_snapshot(document, "m1.json")


def _graph(names: list[str], group_by: str = "process"):
    return stitch(build_group(names), group_by=group_by)


# --------------------------------------------------------------------------------------------
# JSON


@settings(max_examples=60, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hostile_names(), min_size=1, max_size=12, unique=True))
def test_json_round_trips_every_name(names: list[str]) -> None:
    graph = _graph(names)
    document = json.loads(render(graph, "json"))
    assert {node["comm"] for node in document["nodes"] if node["kind"] == "process"} == set(names)
    assert {host["hostname"] for host in document["hosts"]} == set((names + ["a", "b"])[:2])
    assert len(document["flows"]) == len(names)
    # JSON on stdout reaches the terminal too: every control is written as an escape
    _assert_terminal_safe(render(graph, "json").decode("utf-8"))


# --------------------------------------------------------------------------------------------
# Terminal table

# ESC, every C0 and C1 control, DEL, and the bidi overrides/isolates that reorder a line.
_FORBIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _assert_terminal_safe(text: str) -> None:
    found = _FORBIDDEN.search(text)
    assert found is None, f"{found.group()!r} at {found.start()}: {text[max(0, found.start() - 40):found.start() + 40]!r}"
    assert not any(unicodedata.category(char) == "Cs" for char in text)


@settings(max_examples=60, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hostile_names(), min_size=1, max_size=12, unique=True))
def test_table_text_holds_no_control_character(names: list[str]) -> None:
    graph = _graph(names)
    _assert_terminal_safe(render_table_text(graph))
    for group_by in ("pid", "host"):
        _assert_terminal_safe(render_table_text(_graph(names, group_by)))
    headers, rows = table_rows(graph)
    assert len(rows) == len(names)
    for row in rows:
        for cell in row:
            _assert_terminal_safe(cell)


def test_table_through_the_cli_holds_no_control_character(tmp_path) -> None:
    files = []
    for snapshot in build_group(NASTY):
        path = tmp_path / f"{snapshot.source}"
        path.write_text(dump_snapshot(snapshot))
        files.append(str(path))
    for arguments in (["--format", "table"], ["--format", "table", "--group-by", "host"], ["--format", "dot"]):
        result = CliRunner().invoke(app, ["stitch", *files, *arguments], env={"COLUMNS": "300"},
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        # stderr (warnings, footer) always reaches the terminal; stdout does for the table
        _assert_terminal_safe(result.stderr)
        if "table" in arguments:
            _assert_terminal_safe(result.stdout)
            assert "(outside)" not in result.stdout
    # a warning quoting a hostile host name (two snapshots calling themselves the same) is escaped too
    same = tmp_path / "same.json"
    same.write_text(dump_snapshot(load_snapshot(tmp_path / "m2.json")).replace('"id-m2"', '"id-other"', 1))
    result = CliRunner().invoke(app, ["stitch", files[1], str(same), "--format", "table"],
                                env={"COLUMNS": "300"}, catch_exceptions=False)
    assert result.exit_code == 0 and "call themselves" in result.stderr, result.output
    _assert_terminal_safe(result.stderr)


# --------------------------------------------------------------------------------------------
# HTML


class _Page(HTMLParser):
    """The script elements of a page and the text of its JSON data block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict] = []
        self.data: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self._in: "dict | None" = None

    def handle_starttag(self, tag, attrs):
        for name, _ in attrs:
            if name.lower().startswith("on"):
                self.handlers.append((tag, name))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append(self._in)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None and self._in.get("id") == "netviz-data":
            self.data.append(data)


def _page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


EMPTY_PAGE = _page(render_html_graph(_graph(["plain"])))


@settings(max_examples=30, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hostile_names(), min_size=1, max_size=12, unique=True))
def test_html_keeps_only_its_own_scripts_and_the_names_decode_back(names: list[str]) -> None:
    graph = _graph(names)
    text = render(graph, "html").decode("utf-8")
    page = _page(text)
    assert page.scripts == EMPTY_PAGE.scripts  # the same script elements, the same attributes
    assert page.handlers == EMPTY_PAGE.handlers
    payload = json.loads("".join(page.data))
    assert payload["graph"] == json.loads(json.dumps(graph.to_json_dict()))
    assert {n["comm"] for n in payload["graph"]["nodes"] if n["kind"] == "process"} == set(names)


def test_html_title_and_data_with_every_nasty_name() -> None:
    graph = _graph(NASTY)
    page = _page(render_html_graph(graph, title="</title><script>alert(1)</script>"))
    assert page.scripts == EMPTY_PAGE.scripts
    payload = json.loads("".join(page.data))
    assert {n["comm"] for n in payload["graph"]["nodes"] if n["kind"] == "process"} == set(NASTY)


# --------------------------------------------------------------------------------------------
# DOT, read back by Graphviz itself

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")


def _dot_reads(dot_text: str, graph) -> None:
    """`dot -Tjson` parses the text without a warning and finds exactly the graph's nodes and
    edges: no name broke out of its label into the DOT syntax."""
    result = subprocess.run(["dot", "-Tjson"], input=dot_text.encode("utf-8"), capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode(errors="replace")[:2000]
    laid = json.loads(result.stdout)
    nodes = [item for item in laid.get("objects", []) if "nodes" not in item and "subgraphs" not in item
             and item.get("name") != "legend"]  # the legend of the styles used is not a graph node
    assert len(nodes) == len(graph.nodes)
    assert len(laid.get("edges", [])) == len(graph.flows)


def _dot_reads_overview(dot_text: str, graph) -> None:
    """The overview parses without a warning and draws one node per machine (and the legend):
    no machine or service name broke out of its label."""
    result = subprocess.run(["dot", "-Tjson"], input=dot_text.encode("utf-8"), capture_output=True, timeout=120)
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode(errors="replace")[:2000]
    laid = json.loads(result.stdout)
    names = {item["name"] for item in laid.get("objects", []) if "nodes" not in item and "subgraphs" not in item}
    assert len(names - {"legend"}) == len({node.host for node in graph.nodes})


@needs_dot
def test_dot_with_every_nasty_name() -> None:
    for group_by in ("process", "pid"):
        graph = _graph(NASTY, group_by)
        # Every name drawn: past 60 process nodes `--detail auto` would draw one node per machine.
        text = render(graph, "dot", detail="full").decode("utf-8")
        _dot_reads(text, graph)
        _assert_terminal_safe(text)  # DOT is what `netviz stitch` writes to stdout by default
        overview = render(graph, "dot").decode("utf-8")  # the machines' overview, with names in its labels
        _dot_reads_overview(overview, graph)
        _assert_terminal_safe(overview)


@needs_dot
@settings(max_examples=4, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_hostile_names(), min_size=30, max_size=40, unique=True))
def test_dot_with_random_hostile_names(names: list[str]) -> None:
    graph = _graph(names)
    _dot_reads(render(graph, "dot", detail="full").decode("utf-8"), graph)


@needs_dot
def test_svg_of_every_nasty_name_is_well_formed_xml_without_script() -> None:
    import xml.etree.ElementTree as ElementTree

    svg = render(_graph(NASTY), "svg")
    root = ElementTree.fromstring(svg)
    tags = {element.tag.rsplit("}", 1)[-1] for element in root.iter()}
    assert "script" not in tags and "foreignObject" not in tags
    assert not any(name.lower().startswith("on") for element in root.iter() for name in element.attrib)

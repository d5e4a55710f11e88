"""The flow table: one row per flow, untrusted names made harmless for a terminal."""

from __future__ import annotations

from snapbuilder import Machine

from netviz.render import render
from netviz.render.table import table_rows
from netviz.stitch import stitch


def graph_with(name: str):
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, name)
    b.process(2, "server")
    b.listen(2, "udp", "0.0.0.0:53")
    a.connect(1, "udp", "10.0.0.1:40000", "10.0.0.2:53")
    a.connect(1, "udp", "10.0.0.1:40001", "10.0.0.2:53")
    return stitch([a.build(), b.build()])


def test_rows_list_client_server_service_count():
    headers, rows = table_rows(graph_with("dig"))
    assert headers == ("client", "server", "service", "count", "notes")
    assert rows == [("a: dig[1]", "b: server[2]", "udp/53", "2", "")]


def test_escape_sequences_in_names_are_shown_not_run():
    text = render(graph_with("evil\x1b]0;pwned\x07\u202e"), "table").decode()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "evil\\x1b]0;pwned\\x07\\u202e" in text
    assert "1 outside" not in text and "0 unresolved" in text


def test_the_footer_counts_in_the_singular_and_separates_thousands():
    from netviz.render.table import table_footer

    graph = graph_with("dig")  # 2 machines, 1 flow of 2 connections
    assert table_footer(graph).startswith("2 machines, 1 flow (2 connections); not drawn: 0 outside")
    one = Machine("solo", "10.0.0.9")
    one.process(1, "web")
    for port in range(40000, 41234):  # 1,234 connections to servers outside the group
        one.connect(1, "tcp", f"10.0.0.9:{port}", "192.0.2.1:443")
    assert table_footer(stitch([one.build()])) == "1 machine, 0 flows (0 connections); not drawn: 1,234 outside, 0 unresolved"


def test_the_busiest_machines_line_counts_in_the_singular():
    from netviz.render.table import busiest_lines

    machines, _ = busiest_lines(graph_with("dig"))  # 2 machines, 1 flow of 2 connections
    assert "(2 connections, 1 flow)" in machines and "1 flows" not in machines

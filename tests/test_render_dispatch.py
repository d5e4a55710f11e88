"""The render dispatcher: every format name, the HTML map when its module is present, and the
format an output file's extension asks for."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from snapbuilder import Machine

from netviz.render import FORMATS, format_from_suffix, render
from netviz.stitch import stitch


def graph():
    box = Machine("box", "10.0.0.1")
    box.process(1, "app")
    box.process(2, "db")
    box.listen(2, "tcp", "127.0.0.1:5432")
    box.connect(1, "tcp", "127.0.0.1:40000", "127.0.0.1:5432")
    box.connect(2, "tcp", "127.0.0.1:5432", "127.0.0.1:40000")
    return stitch([box.build()])


def test_text_formats():
    g = graph()
    assert render(g, "dot").startswith(b"digraph netviz {")
    assert json.loads(render(g, "json"))["summary"]["flows"] == 1
    assert b"tcp/5432" in render(g, "table")


@pytest.mark.skipif(importlib.util.find_spec("netviz.render.html") is None, reason="the HTML renderer is not in this checkout")
def test_html_goes_to_the_html_renderer():
    page = render(graph(), "html")
    assert page.lstrip().lower().startswith(b"<!doctype html") and b"db" in page


def test_format_from_suffix():
    assert format_from_suffix(Path("map.SVG")) == "svg"
    assert format_from_suffix(Path("g.gv")) == "dot"
    assert format_from_suffix(Path("flows.txt")) == "table"
    assert format_from_suffix(Path("archive.tar")) is None
    assert set(FORMATS) >= {"dot", "svg", "png", "pdf", "json", "table", "html"}


def test_a_format_added_to_the_registry_is_offered_everywhere(monkeypatch):
    """One entry in RENDERERS: render() draws it, its extension chooses it, and the CLI's help
    lists it (the CLI's choices are made from the same table when the module loads)."""
    from netviz import render as registry
    from netviz.cli import OutputFormat

    assert [choice.value for choice in OutputFormat] == list(FORMATS)
    extra = registry.Renderer("count", ("count",), False, "the number of flows",
                              lambda g, options, notice: str(len(g.flows)).encode())
    monkeypatch.setitem(registry.RENDERERS, "count", extra)
    assert render(graph(), "count") == b"1"
    assert format_from_suffix(Path("flows.count")) == "count"
    assert "count (.count): the number of flows" in registry.formats_help()


def test_detail_reaches_only_the_formats_that_fold():
    from netviz.render import RENDERERS, RenderOptions

    assert {name for name, renderer in RENDERERS.items() if renderer.folds} == {"dot", "svg", "png", "pdf"}
    g = graph()
    assert render(g, "json", options=RenderOptions(detail="aggregate")) == render(g, "json")
    with pytest.raises(Exception, match="unknown format 'nope'"):
        render(g, "nope")

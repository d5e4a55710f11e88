"""Render a graph document as the HTML map and save a screenshot of it from headless Chromium.

    python3 -m tests.browser.screenshot GRAPH.json OUT.png [--title TITLE] [--width 1600 --height 1000]

GRAPH.json is a `netviz.graph/1` document (`netviz stitch --format json`). Used for the README's
picture of the test lab (docs/img/lab-map.png).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from netviz.render.html import render_html
from tests.browser.chromium import missing_reason, screenshot_html


def screenshot_graph(graph_doc: dict, png_path: Path, title: str = "netviz", width: int = 1600, height: int = 1000) -> None:
    """Write the map of `graph_doc` to a temporary page and save its screenshot as `png_path`."""
    with tempfile.TemporaryDirectory(prefix="netviz-shot-") as scratch:
        page = Path(scratch) / "map.html"
        page.write_text(render_html(graph_doc, title=title), encoding="utf-8")
        screenshot_html(page, png_path, width, height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("graph", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--title", default="netviz")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    reason = missing_reason()
    if reason:
        print(f"screenshot: {reason}", file=sys.stderr)
        return 2
    screenshot_graph(json.loads(args.graph.read_text(encoding="utf-8")), args.png, args.title, args.width, args.height)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

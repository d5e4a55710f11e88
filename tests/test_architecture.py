"""The shape of the package (docs/architecture.md), checked so that it stays true:

- only cli.py and console.py know typer and rich;
- data flows one way: the pure layers (payload, snapshot, kinds, stitch, graph, render) never
  import the layers that drive them (cli, console, pipeline, collect, transport, cache);
- the payload imports nothing of netviz (it is sent alone to the machines);
- no class over 300 lines and no function over 80 in netviz/, outside the payload's parsers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netviz"
DRIVERS = ("netviz.cli", "netviz.console", "netviz.pipeline", "netviz.collect", "netviz.transport", "netviz.cache")
PURE = ("payload", "snapshot", "kinds", "stitch", "graph", "render", "aggregate", "filters", "options")
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 80


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "vendor" not in path.parts)


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (absolute, at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_only_the_command_line_knows_typer_and_rich():
    for path in modules():
        if path.name in ("cli.py", "console.py") and path.parent == PACKAGE:
            continue
        ui = {name for name in imported(path) if name.split(".")[0] in ("typer", "rich")}
        assert not ui, f"{path.relative_to(PACKAGE)} imports {sorted(ui)}"


@pytest.mark.parametrize("pure", PURE)
def test_pure_layers_never_import_what_drives_them(pure):
    for path in modules():
        if layer(path) != pure:
            continue
        upward = {name for name in imported(path) if name.startswith(DRIVERS)}
        assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"


def test_the_payload_imports_nothing_of_netviz():
    for path in (PACKAGE / "payload").glob("*.py"):
        assert not {name for name in imported(path) if name.startswith("netviz")}, path


def test_no_class_over_300_lines_and_no_function_over_80():
    too_long = []
    for path in modules():
        if layer(path) == "payload":
            continue  # its parsers follow the kernel's formats line by line
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, too_long

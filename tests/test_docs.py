"""The documentation tells the truth: the README's commands exist and run, links resolve, every
command has help, and CI runs the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netviz.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def test_quick_start_has_exactly_the_run_and_test_commands():
    run_command, test_command = shell_blocks(README)[:2]
    # as root, without sudo: a fresh Debian root shell has none
    assert run_command == "scripts/setup.sh && .venv/bin/netviz run --output map.svg"
    assert test_command == "scripts/test.sh"
    for script in ("scripts/setup.sh", "scripts/test.sh"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"
    # CI runs the README's test command, unchanged.
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_run_command_works_here(tmp_path):
    """The netviz half of the quick start, on this machine, with the installed package."""
    output = tmp_path / "map.svg"
    done = subprocess.run(
        [sys.executable, "-m", "netviz", "run", "--cache", str(tmp_path / "cache"), "--output", str(output)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert output.read_text().lstrip().startswith("<?xml") and "<svg" in output.read_text()


def test_every_relative_link_in_the_docs_resolves():
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (document.parent / target).exists(), f"{document.name}: broken link {target}"


@pytest.mark.parametrize("command", ["capture", "collect", "run", "stitch"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 5


def test_top_level_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    for command in ("capture", "collect", "run", "stitch"):
        assert re.search(rf"^  {command}\s", result.output, re.M), result.output

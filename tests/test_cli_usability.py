"""The command line as a user meets it, through real `python -m netviz` processes with pipes for
stdout and stderr (as in a script or a CI log, never a terminal): output formats chosen by the
file's extension, shell completion, help text, `collect` in `$(...)`, `--require-complete`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO / "tests" / "fixtures" / "snapshots" / "web-1.json"  # web-1: nginx listening on :80


def netviz(*arguments: str, env: dict[str, str] | None = None, timeout: float = 120,
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`netviz ARGUMENTS` as a child process, stdout and stderr pipes, COLUMNS unset."""
    environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    environment.update(env or {})
    return subprocess.run([*prefix, sys.executable, "-m", "netviz", *arguments], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------
# the output's extension


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")
def test_a_pdf_output_is_a_pdf_drawn_by_graphviz(tmp_path):
    output = tmp_path / "map.pdf"
    done = netviz("stitch", str(SNAPSHOT), "-o", str(output))
    assert done.returncode == 0, done.stderr
    data = output.read_bytes()
    assert data.startswith(b"%PDF-") and not data.startswith(b"digraph")
    if shutil.which("pdftotext") is None:  # scripts/setup.sh --test installs poppler-utils
        assert len(data) > 1000
        return
    text = subprocess.run(["pdftotext", str(output), "-"], capture_output=True, text=True, timeout=60, check=True)
    assert "nginx" in text.stdout and "web-1" in text.stdout


def test_an_extension_no_format_claims_is_refused_before_any_work(tmp_path):
    output = tmp_path / "map.pdff"
    done = netviz("stitch", str(SNAPSHOT), "-o", str(output))
    assert done.returncode == 2, done.stderr  # a usage error (docs/cli.md, exit codes)
    assert not output.exists()
    message = " ".join(done.stderr.split())
    assert "'.pdff'" in message
    for known in (".dot", ".svg", ".png", ".pdf", ".json", ".html", ".txt"):
        assert known + "," in message or known + ")" in message, message


def test_an_unknown_extension_with_format_and_a_name_without_one_are_written(tmp_path):
    named = netviz("stitch", str(SNAPSHOT), "-o", str(tmp_path / "map.out"), "--format", "json")
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "map.out").read_text().lstrip().startswith("{")
    bare = netviz("stitch", str(SNAPSHOT), "-o", str(tmp_path / "map"))
    assert bare.returncode == 0, bare.stderr
    assert (tmp_path / "map").read_text().startswith("digraph")

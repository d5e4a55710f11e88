"""`netviz capture`: capture_to and the CLI command."""

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netviz.capture_local import CaptureError, capture_to
from netviz.cli import app
from netviz.errors import NetvizError
from netviz.snapshot import load_snapshot


def test_capture_to_file_is_atomic_private_and_loadable(tmp_path):
    target = tmp_path / "snap.json"
    target.write_text("previous snapshot")
    capture_to(target, proc_root=Path("/proc"))
    snapshot = load_snapshot(target)
    assert snapshot.host.hostname == open("/proc/sys/kernel/hostname").read().strip()
    assert snapshot.coverage.processes_seen > 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["snap.json"]  # no temporary file left


def test_capture_to_stdout(capfdbinary):
    capture_to(None)
    doc = json.loads(capfdbinary.readouterr().out)
    assert doc["schema"] == "netviz.snapshot/1"
    assert any(p["pid"] == os.getppid() for p in doc["processes"])


def test_failures_are_netviz_errors(tmp_path):
    with pytest.raises(CaptureError, match="not a directory"):
        capture_to(tmp_path / "out.json", proc_root=tmp_path / "missing")
    assert issubclass(CaptureError, NetvizError)
    with pytest.raises(CaptureError, match="cannot write"):
        capture_to(tmp_path / "no" / "such" / "dir.json")
    assert not (tmp_path / "out.json").exists()


def test_cli_capture_writes_the_file(tmp_path):
    runner = CliRunner()
    target = tmp_path / "cli.json"
    result = runner.invoke(app, ["capture", "--output", str(target)], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert load_snapshot(target).processes


def test_cli_capture_error_exit_code(tmp_path):
    result = CliRunner().invoke(app, ["capture", "--proc-root", str(tmp_path / "nowhere")], terminal_width=100)
    assert result.exit_code == 1
    assert "not a directory" in result.output


def test_cli_help_mentions_capture():
    result = CliRunner().invoke(app, ["capture", "--help"], terminal_width=100)
    assert result.exit_code == 0 and "--output" in result.output


def test_an_error_naming_a_long_path_stays_on_one_line_in_a_pipe(tmp_path):
    """A log grepped for the path must find it: no line break inside the message."""
    import subprocess
    import sys

    deep = tmp_path / ("d" * 60) / ("e" * 60) / "nowhere"
    result = subprocess.run([sys.executable, "-m", "netviz", "capture", "--proc-root", str(deep)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"})
    assert result.returncode == 1
    assert f"{deep}: not a directory" in result.stderr.splitlines()[0]

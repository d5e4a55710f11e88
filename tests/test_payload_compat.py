"""The payload runs unchanged on Python 3.6+ and needs nothing but the standard library."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netviz.payload import capture

PAYLOAD = Path(capture.__file__)


def test_minimum_python_version_is_3_6():
    # vermin is a test dependency, installed beside this interpreter (a venv's bin is not always on PATH).
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    assert vermin, "vermin is missing: scripts/test.sh installs the test extras"
    result = subprocess.run([vermin, "-t=3.6-", "--no-tips", "--violations", str(PAYLOAD)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_imports_are_standard_library_only():
    tree = ast.parse(PAYLOAD.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports cannot work from stdin"
            modules.add(node.module.split(".")[0])
    assert modules and modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def test_no_syntax_newer_than_3_6():
    # f-strings are 3.6; the walrus, positional-only parameters and match need 3.8+.
    source = PAYLOAD.read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    assert not any(isinstance(node, ast.NamedExpr) for node in ast.walk(tree))


def _interpreters() -> dict[str, str]:
    """Other Python 3 interpreters on this machine (PATH, pyenv), by version."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(6, 14)]
    candidates += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    found: dict[str, str] = {}
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            found.setdefault(probe.stdout.strip(), candidate)
    return found


def test_payload_runs_on_every_installed_python():
    import json

    from netviz.snapshot.framing import decode_framed
    from netviz.snapshot import parse_snapshot

    interpreters = _interpreters()
    if "3.6" not in interpreters:
        pytest.skip(f"no Python 3.6 installed (found {sorted(interpreters)})")
    for version, interpreter in sorted(interpreters.items()):
        with open(PAYLOAD, "rb") as source:
            result = subprocess.run([interpreter, "-", "--framed"], stdin=source, capture_output=True,
                                    timeout=120)
        assert result.returncode == 0, (version, result.stderr.decode())
        doc = json.loads(decode_framed(result.stdout))
        assert doc["host"]["python"].startswith(version + ".")
        assert parse_snapshot(doc, f"python {version}").processes

"""Shared pytest configuration."""

import sys
from pathlib import Path

# `tests.lab` must import however pytest is started (`pytest` or `python -m pytest`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The test lab's fixtures (`lab`, `lab_many_sockets`, `lab_factory`): see tests/lab/README.md.
pytest_plugins = ["tests.lab.fixtures"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own default cache: runs kept in ~/.cache/netviz by real use of this
    machine must not change what a test sees, and tests must not add runs there."""
    cache_home = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home / "netviz"

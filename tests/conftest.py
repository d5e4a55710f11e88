"""Shared pytest configuration."""

import sys
from pathlib import Path

# `tests.lab` must import however pytest is started (`pytest` or `python -m pytest`).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The test lab's fixtures (`lab`, `lab_many_sockets`, `lab_factory`): see tests/lab/README.md.
pytest_plugins = ["tests.lab.fixtures"]

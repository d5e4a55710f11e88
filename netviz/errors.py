"""The errors netviz raises on purpose. Only cli.py maps them to exit codes."""

from __future__ import annotations

from typing import Sequence

# Exit codes, documented in README.md and docs/cli.md.
EXIT_OK = 0
EXIT_ERROR = 1  # bad input, missing tool, nothing could be done
EXIT_USAGE = 2  # typer/click usage errors
EXIT_PARTIAL = 3  # some machines failed; the graph was still written
EXIT_NOTHING = 4  # no machine gave a usable snapshot
EXIT_INTERRUPTED = 130  # SIGINT or SIGTERM


class NetvizError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = EXIT_ERROR


class SnapshotError(NetvizError):
    """A snapshot file is missing, unreadable or does not follow the format."""


class InventoryError(NetvizError):
    """The inventory or ssh_config names something impossible."""


class RenderError(NetvizError):
    """An output could not be produced (missing Graphviz, layout timeout)."""


class CacheError(NetvizError):
    """The snapshot cache cannot be read or written."""


class NothingCollected(NetvizError):
    """Every machine failed: there is nothing to stitch."""

    exit_code = EXIT_NOTHING


class Interrupted(NetvizError):
    """The run was stopped by SIGINT or SIGTERM.

    `finished` holds the results (netviz.collect.HostResult) of the machines that had finished
    before the signal, so that they can still be cached.
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted", finished: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.finished = list(finished)

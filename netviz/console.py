"""All terminal output: progress, summaries and error panels (rich lives here and in cli.py only)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from netviz.textsafe import for_terminal

# Diagnostics go to stderr so that stdout stays clean for DOT/JSON piped to other tools.
err_console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One red line naming what went wrong; never a traceback."""
    err_console.print(f"[bold red]error:[/] {escape(for_terminal(message, limit=2000))}")


def warning(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(for_terminal(message, limit=2000))}")


def info(message: str) -> None:
    err_console.print(escape(for_terminal(message, limit=2000)))


def is_terminal() -> bool:
    return sys.stderr.isatty()

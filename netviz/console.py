"""All terminal output: progress, summaries and error panels (rich lives here and in cli.py only)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Optional

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from netviz.textsafe import for_terminal

# Diagnostics go to stderr so that stdout stays clean for DOT/JSON piped to other tools.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def error(message: str) -> None:
    """One red line naming what went wrong; never a traceback."""
    err_console.print(f"[bold red]error:[/] {escape(for_terminal(message, limit=2000))}")


def warning(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(for_terminal(message, limit=2000))}")


def info(message: str) -> None:
    err_console.print(escape(for_terminal(message, limit=2000)))


def is_terminal() -> bool:
    return sys.stderr.isatty()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], footer: Optional[str] = None) -> None:
    """A table on stdout (cells are untrusted: escaped for the terminal, markup disabled)."""
    table = Table(*[Column(header, overflow="fold") for header in headers], box=box.SIMPLE_HEAD)
    for row in rows:
        table.add_row(*[Text(for_terminal(cell, limit=2000)) for cell in row])
    out_console.print(table)
    if footer:
        err_console.print(escape(for_terminal(footer, limit=2000)))


def setup_logging(level: str) -> None:
    """Send library logs (netviz.*) at `level` and above to stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    logger = logging.getLogger("netviz")
    logger.handlers[:] = [handler]
    logger.setLevel(numeric)

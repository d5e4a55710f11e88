"""All terminal output: progress, summaries and error panels (rich lives here and in cli.py only)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Optional

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Column, Table
from rich.text import Text

from netviz.textsafe import for_terminal

# Diagnostics go to stderr so that stdout stays clean for DOT/JSON piped to other tools.
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def safe_text(message: str, limit: int = 2000, style: str = "") -> Text:
    """`message` made safe for the terminal (textsafe.for_terminal) as a rich Text: never read as
    markup. (rich's `escape()` is not enough: a backslash before text in brackets, as in a
    process named `evil\\` followed by `[123]`, is read as an escape and disappears.)"""
    return Text(for_terminal(message, limit=limit), style=style)


def _labelled(label: str, style: str, message: str) -> Text:
    line = Text(label, style=style)
    line.append(" ")
    line.append_text(safe_text(message))
    return line


# Messages are printed as one line each (soft_wrap): rich would otherwise break them at its
# idea of the width (80 columns when stderr is a pipe), in the middle of a path or an address,
# and a grep of a log for the path would miss it. A terminal still wraps them for the eye.


def error(message: str) -> None:
    """One red line naming what went wrong; never a traceback."""
    err_console.print(_labelled("error:", "bold red", message), soft_wrap=True)


def warning(message: str) -> None:
    err_console.print(_labelled("warning:", "yellow", message), soft_wrap=True)


def info(message: str) -> None:
    err_console.print(safe_text(message), soft_wrap=True)


def is_terminal() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner on stderr saying what is being done (loading and stitching a thousand machines
    takes seconds); nothing when stderr is not a terminal."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(safe_text(what, limit=200)):
        yield


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], footer: Optional[str] = None) -> None:
    """A table on stdout (cells are untrusted: escaped for the terminal, markup disabled)."""
    table = Table(*[Column(header, overflow="fold") for header in headers], box=box.SIMPLE_HEAD)
    for row in rows:
        table.add_row(*[safe_text(cell) for cell in row])
    out_console.print(table)
    if footer:
        err_console.print(safe_text(footer))


class _SafeRichHandler(RichHandler):
    """Log records may quote machines (banners, error text): made safe like every other line."""

    def render_message(self, record: logging.LogRecord, message: str):
        return super().render_message(record, for_terminal(message, limit=4000))


def setup_logging(level: str) -> None:
    """Send library logs (netviz.*) at `level` and above to stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")
    handler = _SafeRichHandler(console=err_console, show_path=False, show_time=False, markup=False)
    logger = logging.getLogger("netviz")
    logger.handlers[:] = [handler]
    logger.setLevel(numeric)


# ------------------------------------------------------------------------------------------
# collection: live progress while machines answer, and a summary table at the end


class CollectProgress:
    """A rich progress bar on stderr while machines answer (a Reporter for netviz.pipeline).

    On a terminal it shows one bar with ok/failed counts and the machines still running; when
    stderr is not a terminal it prints nothing until the summary.
    """

    def __init__(self, enabled: Optional[bool] = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = is_terminal() if enabled is None else enabled
        self._window = _window_column()
        self._progress = Progress(
            TextColumn("[bold]collecting[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            self._window,
            TextColumn("{task.fields[running]}", style="dim", markup=False),  # machine names: never markup
            console=err_console,
            transient=True,
            disable=not self.enabled,
        )
        self._task = None
        self._running: dict[str, None] = {}
        self._ok = 0
        self._failed = 0

    def _fields(self) -> dict[str, str]:
        running = list(self._running)
        shown = ", ".join(for_terminal(name, limit=40) for name in running[:3])
        if len(running) > 3:
            shown += f" +{len(running) - 3}"
        counts = f"[green]{self._ok} ok[/] [red]{self._failed} failed[/]" if self._failed else f"[green]{self._ok} ok[/]"
        return {"running": shown, "counts": counts}

    def begin(self, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task("collect", total=total, **self._fields())

    def observing(self, start_at: float, seconds: float) -> None:
        """Say, while the machines observe, how long until the window opens or ends."""
        self._window.window = (start_at, seconds)

    def started(self, name: str) -> None:
        self._running[name] = None
        if self._task is not None:
            self._progress.update(self._task, **self._fields())

    def finished(self, result) -> None:  # result: netviz.collect.HostResult
        self._running.pop(result.name, None)
        if result.ok:
            self._ok += 1
        else:
            self._failed += 1
        if self._task is not None:
            self._progress.update(self._task, advance=1, **self._fields())

    def end(self) -> None:
        self._progress.stop()


def window_status(start_at: float, seconds: float, now: float) -> str:
    """What the machines are doing at `now` with a window of `seconds` from `start_at`."""
    if now < start_at:
        return f"{seconds:g} s window opens in {math.ceil(start_at - now)} s"
    left = start_at + seconds - now
    if left > 0:
        return f"observing {seconds:g} s window, {math.ceil(left)} s left"
    return "window over, collecting"


def _window_column():
    """A progress column with the window's state, worked out at each refresh (the time left
    changes on its own); its `window` is (start_at, seconds), None for an instant capture.
    Built on first use: rich.progress is imported only when progress is shown."""
    from rich.progress import ProgressColumn

    class WindowColumn(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.window: Optional[tuple[float, float]] = None

        def render(self, task) -> Text:
            if self.window is None:
                return Text("")
            return Text(window_status(*self.window, time.time()), style="cyan")

    return WindowColumn()


SUMMARY_ALL_ROWS_UP_TO = 40  # machines; past that the table lists the failed and the slowest only
SUMMARY_SLOWEST_SHOWN = 5


def collect_summary(results, title: Optional[str] = None) -> None:
    """The end-of-run table on stderr: host, status, category, seconds, sockets (and the message).

    A fleet of hundreds would scroll the failures away: past SUMMARY_ALL_ROWS_UP_TO machines the
    table keeps the failed machines and the slowest that answered, says how many it left out, and
    counts the failures per category.
    """
    results = list(results)
    shown = results
    if len(results) > SUMMARY_ALL_ROWS_UP_TO:
        failed_rows = [result for result in results if not result.ok]
        slowest = sorted((result for result in results if result.ok), key=lambda result: -result.seconds)
        keep = {id(result) for result in failed_rows + slowest[:SUMMARY_SLOWEST_SHOWN]}
        shown = [result for result in results if id(result) in keep]
    table = Table(
        Column("host", overflow="fold"),
        Column("status"),
        Column("category"),
        Column("seconds", justify="right"),
        Column("sockets", justify="right"),
        box=box.SIMPLE_HEAD,
        title=safe_text(title, limit=200) if title else None,
    )
    for result in shown:
        status = Text("ok", style="green") if result.ok else Text("failed", style="bold red")
        sockets = result.sockets
        table.add_row(
            safe_text(result.name, limit=200),
            status,
            safe_text(result.kind or ""),
            f"{result.seconds:.1f}",
            "" if sockets is None else str(sockets),
        )
    err_console.print(table)
    if len(shown) < len(results):
        err_console.print(f"{len(results) - len(shown)} more machines answered ok (not listed; the run's "
                          "manifest has every machine)")
    # Messages are long (fingerprints, paths): one line each under the table reads better than a column.
    for result in results:
        if not result.ok:
            line = safe_text(result.name, limit=200, style="bold")
            line.append_text(safe_text(f" ({result.kind}): ", style="red"))
            line.append_text(safe_text(result.message, limit=1000))
            err_console.print(line)
    failed = sum(1 for result in results if not result.ok)
    if failed:
        kinds: dict[str, int] = {}
        for result in results:
            if not result.ok:
                kinds[result.kind or "failed"] = kinds.get(result.kind or "failed", 0) + 1
        by_kind = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
        line = Text(str(failed), style="bold red")
        line.append_text(safe_text(f" of {len(results)} machines failed ({by_kind})"))
        err_console.print(line)
    else:
        err_console.print(f"[green]all {len(results)} machines ok[/]")


def ask_secret(prompt: str) -> Optional[str]:
    """Ask for a secret on the terminal without echo; None when there is no terminal to ask on
    or the answer is EOF (Ctrl-D). Ctrl-C raises KeyboardInterrupt: the user wants to stop, not
    to go on without the secret."""
    import getpass

    if not sys.stdin.isatty():
        return None
    try:
        return getpass.getpass(prompt, stream=sys.stderr)
    except EOFError:
        return None
    except KeyboardInterrupt:
        sys.stderr.write("\n")  # the prompt line was left open: the error goes on a line of its own
        raise

"""All terminal output: progress, summaries and error panels (rich lives here and in cli.py only)."""

from __future__ import annotations

import contextlib
import io
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

from netviz.snapshot.model import unread_text
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


# Wide enough for any table: a table piped to grep keeps each row on one line.
UNWRAPPED_WIDTH = 100_000


def _print_table(console: Console, table: Table) -> None:
    """A table fitted to the terminal; in a pipe or a file, each row whole on one line (rich
    would fold the cells at its idea of the width, 80 columns, and `| grep` would see pieces)."""
    if console.is_terminal:
        console.print(table)
        return
    # console.print(width=...) cannot go past the console's own width: drawn on one as wide as
    # needed, then written out as plain text (no colours off a terminal anyway)
    drawn = io.StringIO()
    Console(file=drawn, width=UNWRAPPED_WIDTH, color_system=None, highlight=False).print(table)
    console.out("\n".join(line.rstrip() for line in drawn.getvalue().splitlines()), highlight=False)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], footer: Optional[str] = None) -> None:
    """A table on stdout (cells are untrusted: escaped for the terminal, markup disabled)."""
    table = Table(*[Column(header, overflow="fold") for header in headers], box=box.SIMPLE_HEAD)
    for row in rows:
        table.add_row(*[safe_text(cell) for cell in row])
    _print_table(out_console, table)
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


def partial_capture(coverage) -> Optional[str]:
    """What a capture could not see, in a few words, or None when it saw everything.

    `coverage` is a snapshot's Coverage or the payload's `coverage` object (docs/snapshot.md):
    a capture is complete only when it ran as root and nothing was denied to it."""
    value = coverage.get if isinstance(coverage, dict) else (lambda key: getattr(coverage, key))
    if value("complete"):
        return None
    unread = unread_text(value("processes_denied"), value("namespaces_denied"))
    if value("euid") != 0:
        what = f": {unread} could not be read" if unread else ""
        return f"ran as uid {value('euid')}, not root{what} (run as root, or sudo: true)"
    return f"ran as root: {unread or 'part of the machine'} could not be read (the snapshot's coverage notes say why)"


def partial_machines(results) -> dict[str, str]:
    """The machines that answered with a partial capture, and what each could not see."""
    partial = {}
    for result in results:
        reason = partial_capture(result.coverage) if result.ok and result.coverage is not None else None
        if reason is not None:
            partial[result.name] = reason
    return partial


SUMMARY_ALL_ROWS_UP_TO = 40  # machines; past that the table lists the failed and the slowest only
SUMMARY_SLOWEST_SHOWN = 5


def collect_summary(results, title: Optional[str] = None, require_complete: bool = False) -> None:
    """The end-of-run table on stderr: host, status, category, seconds, sockets; then one line per
    machine that failed or gave a partial capture, and the totals.

    A machine that answered with a partial capture (not root, or denied: its snapshot's coverage)
    is `partial`, never counted in "all N machines ok"; with `require_complete` it counts as
    failed, category `partial`. A fleet of hundreds would scroll the failures away: past
    SUMMARY_ALL_ROWS_UP_TO machines the table keeps the failed and partial machines and the
    slowest that answered, says how many it left out, and counts the failures per category.
    """
    results = list(results)
    partial = partial_machines(results)
    if require_complete:
        results = [_failed_as_partial(result, partial[result.name]) if result.name in partial else result
                   for result in results]
        partial = {}
    shown = results
    if len(results) > SUMMARY_ALL_ROWS_UP_TO:
        failed_rows = [result for result in results if not result.ok or result.name in partial]
        slowest = sorted((result for result in results if result.ok), key=lambda result: -result.seconds)
        keep = {id(result) for result in failed_rows + slowest[:SUMMARY_SLOWEST_SHOWN]}
        shown = [result for result in results if id(result) in keep]
    _print_table(err_console, _summary_table(shown, partial, title))
    if len(shown) < len(results):
        err_console.print(f"{len(results) - len(shown)} more machines answered ok (not listed; the run's "
                          "manifest has every machine)", soft_wrap=True)
    # Messages are long (fingerprints, paths): one line each under the table reads better than a column.
    for result in results:
        if not result.ok:
            err_console.print(_machine_line(result.name, result.kind or "failed", result.message, "red"), soft_wrap=True)
        elif result.name in partial:
            err_console.print(_machine_line(result.name, "partial", partial[result.name], "yellow"), soft_wrap=True)
    _print_totals(results, partial)


def _summary_table(shown, partial: dict[str, str], title: Optional[str]) -> Table:
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
        if result.name in partial:
            status = Text("partial", style="yellow")
        sockets = result.sockets
        table.add_row(
            safe_text(result.name, limit=200),
            status,
            safe_text(result.kind or ""),
            f"{result.seconds:.1f}",
            "" if sockets is None else str(sockets),
        )
    return table


def _machine_line(name: str, category: str, message: str, style: str) -> Text:
    """`db1 (refused): connection refused by 10.0.0.13:22`."""
    line = safe_text(name, limit=200, style="bold")
    line.append_text(safe_text(f" ({category}): ", style=style))
    line.append_text(safe_text(message, limit=1000))
    return line


def _print_totals(results, partial: dict[str, str]) -> None:
    """`2 of 5 machines failed (1 refused, 1 timeout)`, `1 of 5 machines gave a partial capture`,
    or `all 5 machines ok` (`1 machine ok`)."""
    failed = [result for result in results if not result.ok]
    if failed:
        kinds: dict[str, int] = {}
        for result in failed:
            kinds[result.kind or "failed"] = kinds.get(result.kind or "failed", 0) + 1
        by_kind = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda item: (-item[1], item[0])))
        line = Text(str(len(failed)), style="bold red")
        line.append_text(safe_text(f" of {len(results)} machines failed ({by_kind})"))
        err_console.print(line, soft_wrap=True)
    if partial:
        line = Text(str(len(partial)), style="yellow")
        line.append_text(safe_text(f" of {len(results)} machines gave a partial capture: their map lacks what "
                                   "could not be read (--require-complete makes that a failure)"))
        err_console.print(line, soft_wrap=True)
    if not failed and not partial:
        err_console.print(f"[green]all {len(results)} machines ok[/]" if len(results) != 1 else "[green]1 machine ok[/]")


def _failed_as_partial(result, reason: str):
    """`result` shown as a failure of category `partial` (--require-complete)."""
    import dataclasses

    from netviz.collect import FAILED

    return dataclasses.replace(result, status=FAILED, kind="partial", message=f"partial capture: {reason}")


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

"""The `netviz` command line: parse options, call the library, map NetvizError to exit codes.

No logic lives here. Each command calls plain functions that tests also call directly.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from typer.core import TyperCommand, TyperGroup

from netviz import __version__
from netviz import console
from netviz.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOTHING,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    CacheError,
    NetvizError,
    RenderError,
)
from netviz.options import Detail, GroupBy, SortBy, StitchOptions
from netviz.render import FORMATS, RenderOptions, formats_help

# ------------------------------------------------------------------------------------------
# Exit codes: the one table. Each command's --help lists the codes it can return, and
# docs/cli.md's table says the same words (tests/test_cli_usability.py compares them).

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "every machine gave a snapshot (and the output was written)",
    EXIT_ERROR: "an error: bad inventory or ssh_config, unreadable snapshot, missing tool, cannot write",
    EXIT_USAGE: "wrong usage (unknown option, bad value, an --output extension no format claims)",
    EXIT_PARTIAL: "some machines failed (with --require-complete: or their capture was partial), or (stitch) "
    "some snapshot files were skipped, or (run) the cache could not be written; the output was still "
    "written (with stale snapshots where available)",
    EXIT_NOTHING: "no machine has any snapshot, fresh or stale: nothing was rendered",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM): running machines are cancelled",
}
COMMAND_EXIT_CODES: dict[str, tuple[int, ...]] = {
    "run": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOTHING, EXIT_INTERRUPTED),
    "collect": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOTHING, EXIT_INTERRUPTED),
    "stitch": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED),
    "capture": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED),
    "history": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED),
    "diff": (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED),
}
COMMAND_ORDER = ("run", "collect", "stitch", "capture", "history", "diff")  # the one to start with first
HELP_WIDTH_ON_TERMINAL = 120  # at most; a narrower terminal wraps narrower
UNWRAPPED_HELP_WIDTH = 1_000_000  # in a pipe: never wrapped


class _HelpContext(typer.Context):
    """Help wraps to the terminal; piped or redirected, it is never wrapped, so that a grep of
    `netviz run --help` finds an option and its whole description on one line."""

    def make_formatter(self):
        if sys.stdout.isatty():
            return self.formatter_class(width=self.terminal_width, max_width=HELP_WIDTH_ON_TERMINAL)
        return self.formatter_class(width=UNWRAPPED_HELP_WIDTH, max_width=UNWRAPPED_HELP_WIDTH)


def _first_column(formatter, rows) -> int:
    """The widest first column before a description moves to the next line: click's 30 on a
    terminal; unwrapped, every description stays on its option's line (for grep)."""
    if formatter.width < UNWRAPPED_HELP_WIDTH:
        return 30
    return max(len(first) for first, _ in rows)


class _Command(TyperCommand):
    """A command whose help names arguments by their metavar (typer would add `<list[Path]>`)
    and ends with the exit codes the command can return."""

    context_class = _HelpContext

    def format_options(self, ctx, formatter) -> None:
        arguments = [(param.metavar or param.name.upper(), param.help or "")
                     for param in self.get_params(ctx) if param.param_type_name == "argument"]
        options = [record for param in self.get_params(ctx)
                   if param.param_type_name == "option" and (record := param.get_help_record(ctx))]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows, col_max=_first_column(formatter, rows))

    def format_epilog(self, ctx, formatter) -> None:
        super().format_epilog(ctx, formatter)
        codes = COMMAND_EXIT_CODES.get(self.name or "")
        if codes:
            with formatter.section("Exit codes"):
                formatter.write_dl([(str(code), EXIT_CODES[code]) for code in codes])


class _Group(TyperGroup):
    """The commands in the order a user needs them; Ctrl-C (or SIGTERM) ends any command with 130."""

    context_class = _HelpContext

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(names))

    def invoke(self, ctx):
        _stop_on_sigterm()
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            console.error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    name="netviz",
    help="Map which process talks to which across a group of Linux machines (agentless, over SSH).",
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion
    rich_markup_mode=None,  # plain help: no boxes to cut at 80 columns, greppable in a pipe
    pretty_exceptions_enable=False,
)


def _fail(error: NetvizError) -> None:
    """Print one error panel and exit with the error's code."""
    console.error(str(error))
    raise typer.Exit(error.exit_code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"netviz {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """netviz: capture, collect, stitch and render process-to-process network flows."""


def _output_target(text: str) -> Path:
    """--output: refused at once (usage error, before any work) when it names a directory."""
    if text.endswith("/") or Path(text).is_dir():
        raise typer.BadParameter(f"{text} names a directory: give the path of a file")
    return Path(text)


def _duration(text: str) -> float:
    """--window: a DURATION (30s, 2m, plain seconds), refused at once when malformed."""
    from netviz.duration import parse_duration

    if isinstance(text, (int, float)):
        return float(text)  # the default, passed through the parser by typer
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command(cls=_Command, short_help="This machine's snapshot, as JSON.")
def capture(
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="FILE", parser=_output_target,
                     help="Write the snapshot here (default: stdout)."),
    ] = None,
    proc_root: Annotated[
        Path, typer.Option("--proc-root", metavar="DIR", help="Where /proc is mounted (for tests and chroots).")
    ] = Path("/proc"),
    window: Annotated[
        float,
        typer.Option("--window", metavar="DURATION", parser=_duration,
                     help="Observe the machine this long first (30s, 2m; 0: one instant)."),
    ] = 0.0,
    require_complete: Annotated[
        bool,
        typer.Option("--require-complete", help="Exit 3 when the capture is partial (not root, or processes "
                     "or namespaces it could not read); the snapshot is still written."),
    ] = False,
) -> None:
    """Capture a snapshot of this machine's processes, sockets and addresses as JSON.

    A partial capture (see the snapshot's coverage) is said on stderr.
    """
    from netviz.capture_local import capture_to

    try:
        coverage = capture_to(output, proc_root=proc_root, window=window)
    except NetvizError as error:
        _fail(error)
    partial = console.partial_capture(coverage)
    if partial is not None:
        console.warning(f"partial capture: {partial}; the snapshot lacks what could not be read")
        if require_complete:
            raise typer.Exit(EXIT_PARTIAL)


# The --format choices come from the renderer registry (netviz.render.RENDERERS).
OutputFormat = Enum("OutputFormat", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]




def _write_output(data: bytes, output: Optional[Path]) -> None:
    """Write to stdout, or to the file through netviz.files.write_file: a regular file is
    replaced whole (mode 0600), a device or FIFO written through, anything else refused."""
    from netviz.files import write_file

    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        write_file(output, data)
    except OSError as error:
        raise RenderError(f"{output}: cannot write: {error.strerror or error}") from None




def _choices(choices: type[Enum]) -> str:
    """`[process|pid|host]`: an option's choices as its metavar."""
    return "[" + "|".join(choice.value for choice in choices) + "]"


_FormatOption = Annotated[
    Optional[OutputFormat],
    typer.Option("--format", "-f", metavar="FORMAT", help="Output format (default: from --output's extension, else dot): "
                 + formats_help() + "."),
]
_GroupByOption = Annotated[
    GroupBy,
    typer.Option("--group-by", metavar=_choices(GroupBy), help="One node per command on a machine (process), per pid, per machine (host), or per systemd unit, container or pod of a machine (else the command)."),
]
_ShowExternalOption = Annotated[
    bool, typer.Option("--show-external", help="Draw connections to peers outside the group, one node per machine.")
]
_OnlyOption = Annotated[
    Optional[list[str]],
    typer.Option("--only", metavar="TERM", help="Keep only flows touching TERM: a machine, inventory group, "
                 "command, port, proto/port (udp/8125), address or network; patterns like 'web*' work. Repeatable."),
]
_ExcludeOption = Annotated[
    Optional[list[str]],
    typer.Option("--exclude", metavar="TERM", help="Hide what TERM names (as --only) and its flows, e.g. "
                 "--exclude sshd --exclude prometheus. Repeatable."),
]
_DetailOption = Annotated[
    Detail,
    typer.Option("--detail", metavar=_choices(Detail), help="DOT/SVG/PNG/PDF: fold each machine's quieter processes past a size (auto), "
                 "always (aggregate), or never (full). JSON, table and HTML keep everything."),
]

_SortOption = Annotated[
    SortBy,
    typer.Option("--sort", metavar=_choices(SortBy), help="Table: busiest flows first by connections (count), "
                 "or by bytes moved both ways (bytes; flows without TCP counters last)."),
]


def _filter_spec(only: Optional[list[str]], exclude: Optional[list[str]], groups=None):
    """The parsed --only/--exclude values (a bad term is a usage error, exit 2)."""
    from netviz.filters import FilterSpec

    try:
        return FilterSpec.parse(only or (), exclude or (), groups)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--only/--exclude") from None


def _options(group_by: GroupBy, show_external: bool, only, exclude, detail: Detail,
             sort: SortBy = SortBy.count) -> tuple[StitchOptions, RenderOptions]:
    """The stitch and render options, built once from the command line."""
    return (StitchOptions(group_by=group_by, show_external=show_external, filters=_filter_spec(only, exclude)),
            RenderOptions(detail=detail.value, sort=sort.value))


def _chosen_format(fmt, output: Optional[Path]) -> str:
    """--format, else what --output's extension asks for, else dot (no --output, or a name
    without an extension such as /dev/stdout). An extension no format claims is a usage error:
    writing DOT into `map.pdf` would only fail later, in whatever opens it."""
    from netviz.render import RENDERERS, format_from_suffix

    if fmt:
        return fmt.value
    if output is None or not output.suffix:
        return "dot"
    chosen = format_from_suffix(output)
    if chosen is None:
        known = ", ".join("." + suffix for renderer in RENDERERS.values() for suffix in renderer.suffixes)
        raise typer.BadParameter(f"{output}: no output format has the extension {output.suffix!r} "
                                 f"(known: {known}); or name the format with --format", param_hint="--output")
    return chosen


def _print_flow_table(graph, sort: SortBy = SortBy.count) -> None:
    """The flow table (busiest first) and the busiest machines, in the terminal."""
    from netviz.render.table import machine_rows, table_footer, table_rows, unresolved_lines, window_lines

    headers, rows = table_rows(graph, by_bytes=sort is SortBy.bytes)
    console.print_table(headers, rows)
    machine_headers, machines = machine_rows(graph)
    if machines:
        console.print_table(machine_headers, machines)
    for line in unresolved_lines(graph) + window_lines(graph):
        console.info(line)
    console.info(table_footer(graph))


@app.command(cls=_Command, short_help="Stitch snapshots (by default the latest cached run) and draw the map.")
def stitch(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(
            metavar="SNAPSHOT_OR_DIR",
            help="Snapshot files, directories of *.json snapshots, or cached runs (a run id or run directory); "
            "none: the latest cached run.",
        ),
    ] = None,
    fmt: _FormatOption = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", metavar="FILE", parser=_output_target, help="Write here (default: stdout)."),
    ] = None,
    group_by: _GroupByOption = GroupBy.process,
    show_external: _ShowExternalOption = False,
    log: Annotated[
        str,
        typer.Option("--log", metavar="LEVEL", help="Log level on stderr: debug, info, warning, error."),
    ] = "warning",
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache", metavar="DIR", help="Snapshot cache (default: $XDG_CACHE_HOME/netviz or ~/.cache/netviz)."),
    ] = None,
    only: _OnlyOption = None,
    exclude: _ExcludeOption = None,
    detail: _DetailOption = Detail.auto,
    sort: _SortOption = SortBy.count,
    since: Annotated[Optional[str], typer.Option("--since", metavar="SPAN", help="Every cached run of the last SPAN (7d, 24h) joined in one map, each flow with when it was first and last seen and in how many of the runs (drawn dashed when not in all).")] = None,
) -> None:
    """Stitch snapshots into process-to-process flows and draw them (DOT on stdout by default)."""
    from netviz.pipeline import stitch_snapshots
    from netviz.render.table import table_footer, unresolved_lines

    try:
        console.setup_logging(log)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log") from None
    options, render_options = _options(group_by, show_external, only, exclude, detail, sort)
    chosen = _chosen_format(fmt, output)
    table_on_terminal = chosen == "table" and output is None
    try:
        # No argument: the latest cached run; a run id or run directory: that run (stale included).
        if since is not None:  # every cached run of the period (netviz.period)
            from netviz.period import stitch_period

            if paths:
                raise typer.BadParameter("--since joins the cached runs of a period: give no SNAPSHOT_OR_DIR")
            with console.working("stitching the period's runs"):
                outcome = stitch_period(cache_dir, _since(since), None if table_on_terminal else chosen,
                                        options=options, render_options=render_options, on_notice=console.warning)
        else:
            outcome = stitch_snapshots(paths or [], None if table_on_terminal else chosen, cache_dir=cache_dir,
                                       options=options, render_options=render_options, on_notice=console.warning,
                                       working=console.working)
        drawn = outcome.drawn
        for message in drawn.warnings:
            console.warning(message)
        for message in drawn.notices:
            console.info(message)
        if table_on_terminal:
            _print_flow_table(drawn.graph, sort)
        else:
            _write_output(drawn.data, output)
            for line in unresolved_lines(drawn.graph):
                console.info(line)
            console.info(table_footer(drawn.graph))
    except NetvizError as error:
        _fail(error)
    # exit 3 when drawn without the snapshots that could not be loaded (each warned above)
    raise typer.Exit(outcome.exit_code)


# ------------------------------------------------------------------------------------------
# collect and run: the agentless fan-out over SSH (netviz.pipeline)

_InventoryOption = Annotated[
    Optional[Path],
    typer.Option("--inventory", "-i", metavar="FILE", help="Inventory YAML (see inventory.example.yaml). "
                 "Without it: this machine alone, no SSH."),
]
_LimitOption = Annotated[
    Optional[list[str]],
    typer.Option("--limit", "-l", metavar="NAMES", help="Only these hosts or groups (comma-separated, repeatable)."),
]
_ParallelOption = Annotated[
    int, typer.Option("--parallel", "-p", metavar="N", min=1, max=1024, help="Machines collected at the same time.")
]
_CacheOption = Annotated[
    Optional[Path],
    typer.Option("--cache", metavar="DIR", help="Snapshot cache (default: $XDG_CACHE_HOME/netviz or ~/.cache/netviz)."),
]
_AcceptOption = Annotated[
    bool,
    typer.Option("--accept-new-host-keys", help="Trust and record host keys seen for the first time "
                 "(changed keys are always refused)."),
]
_SshConfigOption = Annotated[
    Optional[Path], typer.Option("--ssh-config", metavar="FILE", help="ssh_config to honour (default: ~/.ssh/config).")
]
_LogOption = Annotated[
    str, typer.Option("--log", metavar="LEVEL", help="Log level on stderr: debug, info, warning, error.")
]


def _setup_logging(level: str) -> None:
    try:
        console.setup_logging(level)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log") from None


_RequireCompleteOption = Annotated[
    bool,
    typer.Option("--require-complete", help="A machine whose capture is partial (not root, or processes or "
                 "namespaces it could not read: the snapshot's coverage) counts as failed (exit 3)."),
]


def _exit_code(code: int, results, require_complete: bool) -> int:
    """The exit code, with --require-complete: a partial capture fails its machine (exit 3)."""
    if require_complete and code == EXIT_OK and console.partial_machines(results):
        return EXIT_PARTIAL
    return code


_WindowOption = Annotated[
    float,
    typer.Option("--window", metavar="DURATION", parser=_duration,
                 help="Every machine observes the same interval this long (30s, 2m; 0: one instant). "
                 "Not charged to connect_timeout or command_timeout."),
]


def _collect_request(inventory, limit, parallel, cache_dir, accept_new_host_keys, ssh_config, window=0.0):
    from netviz.pipeline import CollectRequest

    return CollectRequest(
        inventory=inventory,
        limit=tuple(limit or ()),
        parallel=parallel,
        cache_dir=cache_dir,
        accept_new_host_keys=accept_new_host_keys,
        ssh_config=ssh_config,
        ask_sudo_password=lambda: console.ask_secret("sudo password for the machines with `sudo: password`: "),
        window=window,
    )


def _stop_on_sigterm() -> None:
    """SIGTERM ends a command like Ctrl-C does: machines cancelled, exit code 130. (Only the main
    thread may set a handler: a library caller running the app in a thread keeps its own.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@app.command(cls=_Command, short_help="Collect snapshots into the cache; print the run's directory.")
def collect(
    inventory: _InventoryOption = None,
    limit: _LimitOption = None,
    parallel: _ParallelOption = 32,
    cache_dir: _CacheOption = None,
    accept_new_host_keys: _AcceptOption = False,
    ssh_config: _SshConfigOption = None,
    log: _LogOption = "warning",
    window: _WindowOption = 0.0,
    require_complete: _RequireCompleteOption = False,
    every: Annotated[Optional[str], typer.Option("--every", metavar="SPAN", help="Keep collecting, a run every SPAN (10m, 1h), until interrupted; a run never overlaps another on the same cache.")] = None,
    keep: Annotated[Optional[str], typer.Option("--keep", metavar="SPAN", help="Prune the runs older than SPAN (30d), and their history, instead of keeping the newest 30.")] = None,
) -> None:
    """Collect snapshots from every machine of the inventory into the cache (no stitching).

    Without --inventory, collects this machine alone (no SSH). Prints the run's directory on
    stdout (`run=$(netviz collect ...)`, then `netviz stitch "$run"`); the progress and the
    summary go to stderr. With --every, one line per run until interrupted (exit 0 when stopped
    between runs).
    """
    from netviz.cache import default_cache_dir
    from netviz.schedule import collecting, every as on_schedule

    _setup_logging(log)
    request = _collect_request(inventory, limit, parallel, cache_dir, accept_new_host_keys, ssh_config, window)
    request.keep_for = _span(keep, "--keep")
    interval = _span(every, "--every")
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    def once() -> int:
        with collecting(root, lambda: console.warning("another collection is writing to this cache: waiting")):
            return _collect_once(request, require_complete)

    try:
        if interval is None:
            raise typer.Exit(once())
        on_schedule(interval, once, on_skip=lambda n: console.warning(f"a run outlasted --every: {n} skipped"))
    except KeyboardInterrupt:  # between runs: a scheduled collector stopped as it should
        raise typer.Exit(0) from None
    except NetvizError as error:
        _fail(error)


def _span(text: Optional[str], option: str) -> Optional[float]:
    from netviz.when import parse_span

    if text is None:
        return None
    try:
        seconds = parse_span(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None
    if seconds <= 0:
        raise typer.BadParameter("must be more than 0", param_hint=option)
    return seconds


def _collect_once(request, require_complete: bool) -> int:
    """One collection into the cache, its summary on stderr and its directory on stdout; the
    exit code it earns (a failure to collect at all raises typer.Exit through _fail)."""
    from netviz.errors import EXIT_NOTHING, Interrupted
    from netviz.pipeline import collect_group

    try:
        outcome = collect_group(request, console.CollectProgress())
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted"))
    except NetvizError as error:
        _fail(error)
    console.collect_summary(outcome.results, title=f"run {outcome.run.run_id}", require_complete=require_complete)
    for message in outcome.window_notes + (outcome.warnings if outcome.cache_problem is None else []):
        console.warning(message)  # with the cache written, warnings are the history's
    if outcome.cache_problem is not None:  # collecting is caching: nothing is left of the run
        _fail(CacheError(f"the cache cannot be written ({outcome.cache_problem}): nothing was cached"))
    print(outcome.run.path, flush=True)  # the one line on stdout: run=$(netviz collect ...)
    if not any(host.snapshot for host in outcome.run.hosts):
        return EXIT_NOTHING
    return _exit_code(outcome.exit_code, outcome.results, require_complete)


@app.command(cls=_Command, short_help="Collect, stitch and draw the map, in one go.")
def run(
    inventory: _InventoryOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", metavar="FILE", parser=_output_target,
                                   help="Write the map here (default: DOT on stdout).")
    ] = None,
    fmt: _FormatOption = None,
    limit: _LimitOption = None,
    parallel: _ParallelOption = 32,
    cache_dir: _CacheOption = None,
    accept_new_host_keys: _AcceptOption = False,
    ssh_config: _SshConfigOption = None,
    group_by: _GroupByOption = GroupBy.process,
    show_external: _ShowExternalOption = False,
    log: _LogOption = "warning",
    only: _OnlyOption = None,
    exclude: _ExcludeOption = None,
    detail: _DetailOption = Detail.auto,
    sort: _SortOption = SortBy.count,
    window: _WindowOption = 0.0,
    require_complete: _RequireCompleteOption = False,
) -> None:
    """Collect from every machine in parallel, stitch and render, in one go.

    Without --inventory, maps this machine alone (no SSH).
    """
    from netviz.errors import Interrupted
    from netviz.pipeline import collect_group, stitch_run
    from netviz.render.table import busiest_lines, table_footer, unresolved_lines

    chosen = _chosen_format(fmt, output)
    table_on_terminal = chosen == "table" and output is None
    _setup_logging(log)
    options, render_options = _options(group_by, show_external, only, exclude, detail, sort)
    try:
        collected = collect_group(
            _collect_request(inventory, limit, parallel, cache_dir, accept_new_host_keys, ssh_config, window),
            console.CollectProgress(),
            history_later=True,  # stitch_run records the history from the snapshots it loads for the map
        )
        console.collect_summary(collected.results, title=f"run {collected.run.run_id}",
                                require_complete=require_complete)
        with console.working("stitching and drawing"):
            outcome = stitch_run(collected, None if table_on_terminal else chosen, options=options,
                                 render_options=render_options, on_notice=console.warning)
        for message in outcome.warnings:
            console.warning(message)
        for message in outcome.notices:
            console.info(message)
        if table_on_terminal:
            _print_flow_table(outcome.graph, sort)
        else:
            _write_output(outcome.data, output)
            console.info(table_footer(outcome.graph))
            for line in busiest_lines(outcome.graph) + unresolved_lines(outcome.graph):
                console.info(line)
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted"))
    except NetvizError as error:
        _fail(error)
    raise typer.Exit(_exit_code(outcome.exit_code, collected.results, require_complete))


# ------------------------------------------------------------------------------------------
# the run history (netviz/history.py, docs/history.md)


class _Listing(str, Enum):
    table = "table"
    json = "json"


def _since(text: Optional[str]) -> Optional[float]:
    import time

    from netviz.when import parse_span

    if text is None:
        return None
    try:
        return time.time() - parse_span(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None


@app.command(cls=_Command, short_help="The collected runs, or one flow's or node's timeline.")
def history(
    since: Annotated[Optional[str], typer.Option("--since", metavar="SPAN", help="Only runs of the last SPAN (10m, 2h, 7d).")] = None,
    flow: Annotated[Optional[str], typer.Option("--flow", metavar="TERM", help="Timeline of every flow whose key contains TERM.")] = None,
    node: Annotated[Optional[str], typer.Option("--node", metavar="TERM", help="Timeline of every node whose key contains TERM.")] = None,
    fmt: Annotated[_Listing, typer.Option("--format", "-f", help="table or json.")] = _Listing.table,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Recreate the history database from the cached runs first.")] = False,
    cache_dir: _CacheOption = None,
) -> None:
    """The runs in the cache's history, one line each: when, machines ok and failed, flows, and flows
    new and gone since the previous run. With --flow or --node: first and last seen, runs seen out of
    runs taken, the counts run by run."""
    from netviz.history_report import history_job

    try:
        report = history_job(cache_dir, since=_since(since), flow=flow, node=node, fmt=fmt.value, rebuild_first=rebuild)
    except NetvizError as error:
        _fail(error)
    for note in report.notes:
        console.info(note)
    sys.stdout.write(report.text)


_DiffFormat = Enum("_DiffFormat", {name: name for name in ("table", "json", "dot", "svg", "png", "pdf", "html")},
                   type=str)  # type: ignore[misc]  # netviz.history_report.DIFF_FORMATS


@app.command(cls=_Command, short_help="What changed between two runs (default: the last two).")
def diff(
    first: Annotated[Optional[str], typer.Argument(metavar="A", help="A run id, `latest`, a cached run's directory, a time (-2h, yesterday, 2026-12-01T10:00), or a snapshot file or directory of snapshots.")] = None,
    second: Annotated[Optional[str], typer.Argument(metavar="B", help="The same; default: the newest run.")] = None,
    fmt: Annotated[Optional[_DiffFormat], typer.Option("--format", "-f", metavar="FORMAT", help="table, json (netviz.diff/1), or a map of both runs with what was added (green), removed (red, dashed) and unchanged (gray): dot, svg, png, pdf, html (default: from --output's extension, else table).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", parser=_output_target, help="Write here (default: stdout).")] = None,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit with 1 when machines, flows or listeners changed (counts alone do not), as git diff --exit-code.")] = False,
    cache_dir: _CacheOption = None,
) -> None:
    """Machines added, removed or unreachable; flows added and removed; counts changed; listeners
    opened, closed or held by another process. A machine not captured in one run is reported
    unreachable and its flows are not compared."""
    from netviz.history_report import DIFF_FORMATS, diff_job
    from netviz.render import format_from_suffix

    chosen = fmt.value if fmt else "table"
    if fmt is None and output is not None and output.suffix:
        chosen = format_from_suffix(output) or ""
        if chosen not in DIFF_FORMATS:
            raise typer.BadParameter(f"{output}: diff writes {', '.join(DIFF_FORMATS)}; name one with --format",
                                     param_hint="--output")
    try:
        report = diff_job(cache_dir, first, second, fmt=chosen, on_notice=console.warning)
        for note in report.notes:
            console.info(note)
        _write_output(report.data, output)
    except NetvizError as error:
        _fail(error)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if exit_code and report.diff is not None and report.diff.changed:
        raise typer.Exit(EXIT_ERROR)

"""The `netviz` command line: parse options, call the library, map NetvizError to exit codes.

No logic lives here. Each command calls plain functions that tests also call directly.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from netviz import __version__
from netviz import console
from netviz.errors import EXIT_PARTIAL, CacheError, NetvizError, RenderError
from netviz.options import Detail, GroupBy, StitchOptions
from netviz.render import FORMATS, RenderOptions, formats_help

app = typer.Typer(
    name="netviz",
    help="Map which process talks to which across a group of Linux machines (agentless, over SSH).",
    no_args_is_help=True,
    add_completion=False,
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


@app.command()
def capture(
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", parser=_output_target, help="Write the snapshot here (default: stdout)."),
    ] = None,
    proc_root: Annotated[Path, typer.Option(help="Where /proc is mounted (for tests and chroots).")] = Path("/proc"),
    window: Annotated[
        float,
        typer.Option("--window", metavar="DURATION", parser=_duration,
                     help="Observe the machine this long first (30s, 2m; 0: one instant)."),
    ] = 0.0,
) -> None:
    """Capture a snapshot of this machine's processes, sockets and addresses as JSON."""
    from netviz.capture_local import capture_to

    try:
        capture_to(output, proc_root=proc_root, window=window)
    except NetvizError as error:
        _fail(error)


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




_FormatOption = Annotated[
    Optional[OutputFormat],
    typer.Option("--format", "-f", help="Output format (default: from --output's extension, else dot): "
                 + formats_help() + "."),
]
_GroupByOption = Annotated[
    GroupBy,
    typer.Option("--group-by", help="One node per command on a machine (process), per pid, or per machine (host)."),
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
    typer.Option("--detail", help="DOT/SVG/PNG/PDF: fold each machine's quieter processes past a size (auto), "
                 "always (aggregate), or never (full). JSON, table and HTML keep everything."),
]


def _filter_spec(only: Optional[list[str]], exclude: Optional[list[str]], groups=None):
    """The parsed --only/--exclude values (a bad term is a usage error, exit 2)."""
    from netviz.filters import FilterSpec

    try:
        return FilterSpec.parse(only or (), exclude or (), groups)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--only/--exclude") from None


def _options(group_by: GroupBy, show_external: bool, only, exclude, detail: Detail) -> tuple[StitchOptions, RenderOptions]:
    """The stitch and render options, built once from the command line."""
    return (StitchOptions(group_by=group_by, show_external=show_external, filters=_filter_spec(only, exclude)),
            RenderOptions(detail=detail.value))


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


def _print_flow_table(graph) -> None:
    """The flow table (busiest first) and the busiest machines, in the terminal."""
    from netviz.render.table import machine_rows, table_footer, table_rows, unresolved_lines, window_lines

    headers, rows = table_rows(graph)
    console.print_table(headers, rows)
    machine_headers, machines = machine_rows(graph)
    if machines:
        console.print_table(machine_headers, machines)
    for line in unresolved_lines(graph) + window_lines(graph):
        console.info(line)
    console.info(table_footer(graph))


@app.command()
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
        Optional[Path], typer.Option("--output", "-o", parser=_output_target, help="Write here (default: stdout).")
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
) -> None:
    """Stitch snapshots into process-to-process flows and draw them (DOT on stdout by default)."""
    from netviz.pipeline import stitch_snapshots
    from netviz.render.table import table_footer, unresolved_lines

    try:
        console.setup_logging(log)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log") from None
    options, render_options = _options(group_by, show_external, only, exclude, detail)
    chosen = _chosen_format(fmt, output)
    table_on_terminal = chosen == "table" and output is None
    try:
        # No argument: the latest cached run; a run id or run directory: that run (stale included).
        outcome = stitch_snapshots(paths or [], None if table_on_terminal else chosen, cache_dir=cache_dir,
                                   options=options, render_options=render_options, on_notice=console.warning,
                                   working=console.working)
        drawn = outcome.drawn
        for message in drawn.warnings:
            console.warning(message)
        for message in drawn.notices:
            console.info(message)
        if table_on_terminal:
            _print_flow_table(drawn.graph)
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
    int, typer.Option("--parallel", "-p", min=1, max=1024, help="Machines collected at the same time.")
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
    """SIGTERM ends a run like Ctrl-C does: machines cancelled, exit code 130."""
    import signal

    def interrupt(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@app.command()
def collect(
    inventory: _InventoryOption = None,
    limit: _LimitOption = None,
    parallel: _ParallelOption = 32,
    cache_dir: _CacheOption = None,
    accept_new_host_keys: _AcceptOption = False,
    ssh_config: _SshConfigOption = None,
    log: _LogOption = "warning",
    window: _WindowOption = 0.0,
) -> None:
    """Collect snapshots from every machine of the inventory into the cache (no stitching).

    Exit codes: 0 all machines ok, 3 some failed, 4 none gave a snapshot, 130 interrupted.
    """
    from netviz.errors import EXIT_NOTHING, Interrupted
    from netviz.pipeline import collect_group

    _setup_logging(log)
    _stop_on_sigterm()
    try:
        outcome = collect_group(
            _collect_request(inventory, limit, parallel, cache_dir, accept_new_host_keys, ssh_config, window),
            console.CollectProgress(),
        )
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted"))
    except NetvizError as error:
        _fail(error)
    console.collect_summary(outcome.results, title=f"run {outcome.run.run_id}")
    for message in outcome.window_notes:
        console.warning(message)
    if outcome.cache_problem is not None:  # collecting is caching: nothing is left of the run
        _fail(CacheError(f"the cache cannot be written ({outcome.cache_problem}): nothing was cached"))
    console.info(f"snapshots in {outcome.run.path}")
    if not any(host.snapshot for host in outcome.run.hosts):
        raise typer.Exit(EXIT_NOTHING)
    raise typer.Exit(outcome.exit_code)


@app.command()
def run(
    inventory: _InventoryOption = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", parser=_output_target,
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
    window: _WindowOption = 0.0,
) -> None:
    """Collect from every machine in parallel, stitch and render, in one go.

    Without --inventory, maps this machine alone (no SSH). Exit codes: 0 all machines ok,
    3 some failed (the map was still written), 4 no machine gave a snapshot, 130 interrupted.
    """
    from netviz.errors import Interrupted
    from netviz.pipeline import collect_group, stitch_run
    from netviz.render.table import busiest_lines, table_footer, unresolved_lines

    chosen = _chosen_format(fmt, output)
    table_on_terminal = chosen == "table" and output is None
    _setup_logging(log)
    options, render_options = _options(group_by, show_external, only, exclude, detail)
    _stop_on_sigterm()
    try:
        collected = collect_group(
            _collect_request(inventory, limit, parallel, cache_dir, accept_new_host_keys, ssh_config, window),
            console.CollectProgress(),
        )
        console.collect_summary(collected.results, title=f"run {collected.run.run_id}")
        with console.working("stitching and drawing"):
            outcome = stitch_run(collected, None if table_on_terminal else chosen, options=options,
                                 render_options=render_options, on_notice=console.warning)
        for message in outcome.warnings:
            console.warning(message)
        for message in outcome.notices:
            console.info(message)
        if table_on_terminal:
            _print_flow_table(outcome.graph)
        else:
            _write_output(outcome.data, output)
            console.info(table_footer(outcome.graph))
            for line in busiest_lines(outcome.graph) + unresolved_lines(outcome.graph):
                console.info(line)
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted"))
    except NetvizError as error:
        _fail(error)
    raise typer.Exit(outcome.exit_code)

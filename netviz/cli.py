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
from netviz.errors import NetvizError, RenderError

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


@app.command()
def capture(
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the snapshot here (default: stdout).")
    ] = None,
    proc_root: Annotated[Path, typer.Option(help="Where /proc is mounted (for tests and chroots).")] = Path("/proc"),
) -> None:
    """Capture a snapshot of this machine's processes, sockets and addresses as JSON."""
    from netviz.capture_local import capture_to

    try:
        capture_to(output, proc_root=proc_root)
    except NetvizError as error:
        _fail(error)


class OutputFormat(str, Enum):
    dot = "dot"
    svg = "svg"
    png = "png"
    json = "json"
    table = "table"
    html = "html"


class GroupBy(str, Enum):
    process = "process"
    pid = "pid"
    host = "host"


def _write_output(data: bytes, output: Optional[Path]) -> None:
    """Write to the file (replacing it whole) or to stdout."""
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        temporary = output.with_name(f".{output.name}.tmp")
        temporary.write_bytes(data)
        temporary.replace(output)
    except OSError as error:
        raise RenderError(f"{output}: cannot write: {error.strerror or error}") from None


@app.command()
def stitch(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(metavar="SNAPSHOT_OR_DIR", help="Snapshot files, or directories of *.json snapshots."),
    ] = None,
    fmt: Annotated[
        Optional[OutputFormat],
        typer.Option("--format", "-f", help="Output format (default: from --output's extension, else dot)."),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here (default: stdout).")] = None,
    group_by: Annotated[
        GroupBy,
        typer.Option("--group-by", help="One node per command on a machine (process), per pid, or per machine (host)."),
    ] = GroupBy.process,
    show_external: Annotated[
        bool, typer.Option("--show-external", help="Draw connections to peers outside the group, one node per machine.")
    ] = False,
    log: Annotated[
        str,
        typer.Option("--log", metavar="LEVEL", help="Log level on stderr: debug, info, warning, error."),
    ] = "warning",
) -> None:
    """Stitch snapshots into process-to-process flows and draw them (DOT on stdout by default)."""
    from netviz.group import resolve_inputs
    from netviz.render import format_from_suffix, render
    from netviz.render.table import table_footer, table_rows
    from netviz.stitch import stitch as stitch_group

    try:
        console.setup_logging(log)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--log") from None
    chosen = (fmt.value if fmt else None) or (format_from_suffix(output) if output is not None else None) or "dot"
    try:
        group = resolve_inputs(paths or [])
        for message in group.warnings:
            console.warning(message)
        graph = stitch_group(group.snapshots, group_by=group_by.value, show_external=show_external)
        if chosen == "table" and output is None:
            headers, rows = table_rows(graph)
            console.print_table(headers, rows, footer=table_footer(graph))
            return
        _write_output(render(graph, chosen, on_notice=console.warning), output)
        console.info(table_footer(graph))
    except NetvizError as error:
        _fail(error)

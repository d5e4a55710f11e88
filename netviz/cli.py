"""The `netviz` command line: parse options, call the library, map NetvizError to exit codes.

No logic lives here. Each command calls plain functions that tests also call directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from netviz import __version__
from netviz import console
from netviz.errors import NetvizError

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

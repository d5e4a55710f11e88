"""`netviz capture`: run the capture payload on this machine, in-process.

The payload (netviz/payload/capture.py) is the same code that runs on remote machines; here it
is imported and its document written to a file (atomically) or to stdout.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Optional

from netviz.errors import NetvizError
from netviz.payload import capture as payload


class CaptureError(NetvizError):
    """This machine could not be captured, or the snapshot could not be written."""


def _write(document: dict, stream: BinaryIO) -> None:
    payload.write_plain(document, stream)


def capture_to(output: Optional[Path], proc_root: Path = Path("/proc")) -> None:
    """Capture this machine and write the snapshot JSON to `output`, or to stdout when None.

    The file is written to a temporary sibling and renamed into place, so that a reader never
    sees half a snapshot and a failed capture leaves an existing file untouched. The file is
    readable by its owner only (mode 0600): command lines can hold secrets.
    """
    if not proc_root.is_dir():
        raise CaptureError(f"{proc_root}: not a directory (is procfs mounted there?)")
    try:
        document = payload.collect(str(proc_root), compact=True)
    except OSError as error:
        raise CaptureError(f"{proc_root}: cannot read: {error.strerror or error}") from None

    if output is None:
        try:
            _write(document, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise CaptureError("stdout was closed before the snapshot was written") from None
        return

    directory = output.parent if str(output.parent) else Path(".")
    try:
        handle = tempfile.NamedTemporaryFile(
            mode="wb", dir=directory, prefix=f".{output.name}.", suffix=".tmp", delete=False)
    except OSError as error:
        raise CaptureError(f"{output}: cannot write: {error.strerror or error}") from None
    try:
        with handle:
            _write(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, output)
    except OSError as error:
        try:
            os.unlink(handle.name)
        except OSError:
            pass
        raise CaptureError(f"{output}: cannot write: {error.strerror or error}") from None

"""`netviz capture`: run the capture payload on this machine, in-process.

The payload (netviz/payload/capture.py) is the same code that runs on remote machines; here it
is imported and its document written to a file (netviz.files.write_file) or to stdout.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import BinaryIO, Optional

from netviz.errors import NetvizError
from netviz.files import write_file
from netviz.payload import capture as payload


class CaptureError(NetvizError):
    """This machine could not be captured, or the snapshot could not be written."""


def _write(document: dict, stream: BinaryIO) -> None:
    payload.write_plain(document, stream)


def capture_to(output: Optional[Path], proc_root: Path = Path("/proc"), window: float = 0.0) -> dict:
    """Capture this machine and write the snapshot JSON to `output`, or to stdout when None;
    return the snapshot's `coverage` (what the capture could not see, docs/snapshot.md).

    With `window` seconds (> 0), the payload observes the machine that long first and the
    snapshot gains its `window` section (docs/snapshot.md).

    The file is written by netviz.files.write_file: a regular file is replaced atomically (a
    reader never sees half a snapshot, a failed capture leaves an existing file untouched) and
    readable by its owner only (mode 0600: command lines can hold secrets); a device or a FIFO
    is written through; a directory or a link to a file is refused.
    """
    if not proc_root.is_dir():
        raise CaptureError(f"{proc_root}: not a directory (is procfs mounted there?)")
    try:
        document = payload.capture(str(proc_root), window=window)
    except OSError as error:
        raise CaptureError(f"{proc_root}: cannot read: {error.strerror or error}") from None

    if output is None:
        try:
            _write(document, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise CaptureError("stdout was closed before the snapshot was written") from None
        return document["coverage"]

    buffer = io.BytesIO()
    _write(document, buffer)
    try:
        write_file(output, buffer.getvalue())
    except OSError as error:
        raise CaptureError(f"{output}: cannot write: {error.strerror or error}") from None
    return document["coverage"]

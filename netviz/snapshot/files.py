"""Snapshot files: read safely (no FIFO, device or link; bounded size), parse strictly, load."""

from __future__ import annotations

import errno
import os
import re
import stat as _stat
from pathlib import Path
from typing import Any, Callable, Optional

import orjson

from netviz.budget import MAX_JSON_BYTES, MAX_JSON_VALUES, json_values
from netviz.errors import SnapshotError
from netviz.snapshot.fast import CheckedStrings
from netviz.snapshot.framing import FrameError, decode_framed
from netviz.snapshot.format import FRAME_BEGIN
from netviz.snapshot.limits import MAX_FILE_BYTES
from netviz.snapshot.model import Snapshot
from netviz.snapshot.parse import parse_any
from netviz.snapshot.typed import NotTypedShape, typed_document

_FRAME_BEGIN = FRAME_BEGIN.encode()


class SnapshotTooLarge(SnapshotError):
    """The snapshot is larger than a snapshot may be (netviz/budget.py): refused unread."""


def check_document_size(text: str, source: str) -> None:
    """SnapshotTooLarge when JSON `text` is longer than MAX_JSON_BYTES or holds more than
    MAX_JSON_VALUES values (counted by a linear scan: parsing costs 35-65 bytes per value)."""
    if len(text) > MAX_JSON_BYTES:
        raise SnapshotTooLarge(f"{source}: (top level): more than {MAX_JSON_BYTES:,} bytes of JSON")
    if len(text) < MAX_JSON_VALUES:
        return  # the count is at most one more than the characters: no scan needed (most snapshots)
    values = json_values(text, MAX_JSON_VALUES)
    if values > MAX_JSON_VALUES:
        raise SnapshotTooLarge(f"{source}: (top level): about {values:,} JSON values (counted without parsing), "
                               f"more than a snapshot may hold ({MAX_JSON_VALUES:,}; a machine with 50,000 "
                               "sockets has about 1,000,000)")


def loads_document(text: str, source: str) -> Any:
    """Parse JSON text strictly: no NaN/Infinity, no lone surrogates, nesting bounded (1,024
    levels), numbers that fit a double; a text over the size budget (check_document_size) is
    refused before it is parsed.

    orjson reads a fleet's snapshots several times faster than the standard library (a thousand
    machines' worth in under a second). Like most JSON readers it keeps the last value of a key
    written twice; a machine that controls its snapshot controls every value anyway, and this is
    the only reader of the file.
    """
    check_document_size(text, source)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        message = str(error).splitlines()[0] if str(error) else "invalid JSON"
        if "depth" in message or "recursion" in message:  # worded differently across releases
            raise SnapshotError(f"{source}: (top level): JSON nested too deeply") from None
        near = text[max(0, error.pos - 1):error.pos + 9] if isinstance(text, str) else ""
        constant = next((word for word in ("-Infinity", "Infinity", "NaN") if word in near), None)
        if constant:  # as Python's own json writes them: say so rather than "unexpected character"
            message = f"{constant} is not allowed ({message})"
        raise SnapshotError(f"{source}: (top level): invalid JSON: {message}") from None


_FILE_KINDS = ((_stat.S_ISDIR, "a directory"), (_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a character device"),
               (_stat.S_ISBLK, "a block device"), (_stat.S_ISSOCK, "a socket"), (_stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages ("a FIFO")."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


_LEADING_SPACE = re.compile(rb"\s*")


def _refuse_unless_regular(path: Path, mode: int) -> None:
    if not _stat.S_ISREG(mode):
        raise SnapshotError(f"{path}: is {file_kind(mode)}, not a snapshot file")


def read_snapshot_bytes(path: Path) -> bytes:
    """The content of a snapshot file; SnapshotError when it cannot be read, is not a regular
    file (a FIFO, a device, a symbolic link: never followed) or is larger than MAX_FILE_BYTES.

    The file is opened with O_NOFOLLOW | O_NONBLOCK (a FIFO swapped in never blocks), and its
    type and size are checked on the open file before anything is read.
    """
    try:
        _refuse_unless_regular(path, os.lstat(path).st_mode)  # a device is not even opened
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a link since lstat
            raise SnapshotError(f"{path}: is a symbolic link, not a snapshot file") from None
        raise SnapshotError(f"{path}: cannot read: {error.strerror or error}") from None
    with open(descriptor, "rb", closefd=True) as handle:
        status = os.fstat(descriptor)
        _refuse_unless_regular(path, status.st_mode)
        if status.st_size > MAX_FILE_BYTES:
            raise SnapshotError(f"{path}: (top level): file larger than {MAX_FILE_BYTES} bytes")
        try:
            # as many bytes as fstat said, and one more to see whether it grew since (a buffer of
            # the largest size for every file cost four times the reading itself)
            data = handle.read(status.st_size + 1)
            if len(data) > status.st_size:
                data += handle.read(MAX_FILE_BYTES + 1 - len(data))
        except OSError as error:
            raise SnapshotError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SnapshotError(f"{path}: (top level): file larger than {MAX_FILE_BYTES} bytes")
    return data


def snapshot_from_bytes(data: bytes, source: str, name: Optional[str] = None, *,
                        strings: Optional[CheckedStrings] = None) -> Snapshot:
    """Validate the content of a snapshot file: netviz.snapshot/1 JSON (plain or in the transport
    framing) or the original capture.py JSON. Problems raise SnapshotError naming `source`."""

    first = _LEADING_SPACE.match(data).end()  # (no stripped copy of a large file)
    if data[first:first + 1] != b"{" and _FRAME_BEGIN in data:
        try:
            text = decode_framed(data)
        except FrameError as error:
            raise SnapshotError(f"{source}: (frame): {error}") from None
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SnapshotError(f"{source}: (top level): not UTF-8 text (byte {error.start})") from None
    return read_document(text, source, name, strings=strings)


def read_document(text: str, source: str, name: Optional[str] = None, *,
                  strings: Optional[CheckedStrings] = None) -> Snapshot:
    """Validate the JSON text of a snapshot. The common document is decoded with its sockets as
    records straight away (typed.py); any other, and any document found faulty that way, is read
    value by value, by the readers that name what is wrong."""
    check_document_size(text, source)
    snapshot = typed_snapshot(text, source, name, strings=strings)
    if snapshot is not None:
        return snapshot
    return parse_any(loads_document(text, source), source, name, strings=strings)


def typed_snapshot(text: str, source: str, name: Optional[str] = None, *, strings: Optional[CheckedStrings] = None,
                   parse: Callable[..., Snapshot] = parse_any) -> Optional[Snapshot]:
    """The snapshot of `text` (within check_document_size) read the typed way, with `parse`
    (parse_any or parse_snapshot); None when it is to be read value by value: not the common
    document, or faulty (the ordinary reading then refuses it too, and says where)."""
    document = typed_document(text)
    if document is None:
        return None
    try:
        return parse(document, source, name, strings=strings)
    except (NotTypedShape, SnapshotError):
        return None


def load_snapshot(path: Path, name: Optional[str] = None) -> Snapshot:
    """Read and validate a snapshot file: netviz.snapshot/1 JSON (plain or in the transport
    framing) or the original capture.py JSON. Problems raise SnapshotError naming the file."""
    return snapshot_from_bytes(read_snapshot_bytes(path), str(path), name)

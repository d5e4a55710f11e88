"""Read the payload's transport framing out of a command's raw output.

Over SSH, whatever a login shell prints (banners, motd, warnings) lands on stdout before the
snapshot. The payload therefore wraps it (docs/snapshot.md, "Transport framing"):

    NETVIZ-SNAPSHOT-BEGIN 1 <length> <sha256 hex>
    <base64 of the zlib-compressed JSON, 76 characters a line>
    NETVIZ-SNAPSHOT-END

`decode_framed` finds the last BEGIN line, checks that the frame is whole (length, digest) and
returns the JSON text. Every failure is a FrameError with a `kind` the transport reports.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib

from netviz.budget import MAX_JSON_BYTES
from netviz.errors import NetvizError
from netviz.snapshot.format import FRAME_BEGIN, FRAME_END, FRAME_VERSION

BEGIN = FRAME_BEGIN.encode()
END = FRAME_END.encode()
VERSION = FRAME_VERSION

# MAX_JSON_BYTES (netviz/budget.py): inflating stops there, so a zip bomb costs no more.
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.split() splits on: the frame's line breaks

# Digits are bounded: int() refuses numbers past 4,300 digits with a ValueError, and no real
# version or length needs more than a few.
_HEADER = re.compile(re.escape(BEGIN) + rb" (\d{1,9}) (\d{1,19}) ([0-9a-f]{64})\r?$")


class FrameError(NetvizError):
    """The framed snapshot is missing, cut off or damaged.

    `kind` is one of: "no frame", "truncated", "corrupt", "unsupported", "too large".
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _last_begin(data: bytes) -> int:
    """Offset of the last BEGIN marker that starts a line, or -1."""
    position = len(data)
    while True:
        position = data.rfind(BEGIN, 0, position)
        if position <= 0:
            return position
        if data[position - 1:position] == b"\n":
            return position


def decode_framed(data: bytes) -> str:
    """Return the JSON text of the last complete frame in `data` (noise around it is ignored).

    Raises FrameError("no frame") when there is no BEGIN line, ("truncated") when the frame
    is cut off, ("corrupt") when its bytes do not match the header, ("unsupported") for an
    unknown frame version and ("too large") when it inflates past MAX_JSON_BYTES (inflating
    stops there: a zip bomb costs no more than that).
    """
    start = _last_begin(data)
    if start < 0:
        raise FrameError("no frame", f"the output holds no {FRAME_BEGIN} line")
    header_end = data.find(b"\n", start)
    if header_end < 0:
        raise FrameError("truncated", "the output ends inside the BEGIN line")
    header = _HEADER.match(data[start:header_end])
    if header is None:
        raise FrameError("corrupt", "malformed BEGIN line")
    version, length, digest = int(header.group(1)), int(header.group(2)), header.group(3).decode()
    if version != VERSION:
        raise FrameError("unsupported", f"frame version {version} (this netviz reads {VERSION})")

    end = data.find(b"\n" + END, header_end)
    body = data[header_end + 1:] if end < 0 else data[header_end + 1:end + 1]
    try:
        # translate: one copy of the body (a join of its split lines costs three)
        compressed = base64.b64decode(body.translate(None, _WHITESPACE), validate=True)
    except (binascii.Error, ValueError):
        if end < 0:
            raise FrameError("truncated", f"the output stops before {FRAME_END}") from None
        raise FrameError("corrupt", "the frame body is not base64") from None
    if end < 0 or len(compressed) < length:
        raise FrameError("truncated", f"got {len(compressed)} of {length} bytes "
                                      f"before {FRAME_END}")
    if len(compressed) != length:
        raise FrameError("corrupt", f"frame holds {len(compressed)} bytes, header says {length}")
    if hashlib.sha256(compressed).hexdigest() != digest:
        raise FrameError("corrupt", "SHA-256 of the frame does not match its header")

    raw = _inflate(compressed, MAX_JSON_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("corrupt", "the snapshot is not UTF-8 text") from None


def _inflate(compressed: bytes, limit: int) -> bytes:
    """Inflate at most `limit` bytes; FrameError("too large") when there is more."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, limit)
        # Output that stops exactly at the limit may still have a byte or the end to come.
        beyond = b"" if inflater.eof else inflater.decompress(inflater.unconsumed_tail, 1)
    except zlib.error as error:
        raise FrameError("corrupt", f"zlib: {error}") from None
    if beyond:
        raise FrameError("too large", f"the snapshot inflates past {limit:,} bytes")
    if not inflater.eof:
        raise FrameError("corrupt", "the compressed stream is incomplete")
    return raw


def encode_framed(json_text: str) -> bytes:
    """Frame JSON text exactly as the payload does (for tests and for re-sending snapshots)."""
    compressed = zlib.compress(json_text.encode("utf-8"), 6)
    digest = hashlib.sha256(compressed).hexdigest()
    return (BEGIN + f" {VERSION} {len(compressed)} {digest}\n".encode()
            + base64.encodebytes(compressed) + END + b"\n")

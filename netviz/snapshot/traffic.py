"""A namespace's `tcp_info` section: the traffic counters of its TCP sockets (docs/snapshot.md).

`{"version": 1, "columns": [...], "sockets": {"<inode>": [bytes_acked, bytes_received, rtt,
rttvar, total_retrans, ca_state], ...}}`. A later version may append columns: the first six keep
their meaning, and a reader takes them by position and ignores the rest.
"""

from __future__ import annotations

from typing import Optional

from netviz.snapshot.fields import _Field
from netviz.snapshot.limits import MAX_INODE, MAX_SOCKETS
from netviz.snapshot.model import TcpInfo

TCP_INFO_COLUMNS = 6
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
# per column: (highest value, null allowed)
_LIMITS = ((_U64, True), (_U64, True), (_U32, False), (_U32, False), (_U32, False), (255, False))


def read_tcp_info(node: _Field) -> dict[int, TcpInfo]:
    """The counters of a namespace's sockets: inode -> TcpInfo. Raises SnapshotError naming the
    faulty entry."""
    node.key("version").integer(1, 1 << 31)
    sockets = node.key("sockets")
    rows = sockets.value
    if not isinstance(rows, dict):
        raise sockets.fail(f"expected an object, got {type(rows).__name__}")
    if len(rows) > MAX_SOCKETS:
        raise sockets.fail(f"too many entries ({len(rows)} > {MAX_SOCKETS})")
    out: dict[int, TcpInfo] = {}
    for text, row in rows.items():
        counters = _plain_row(row)
        if counters is None:
            counters = _checked_row(sockets.key(text))
        out[_inode(sockets, text)] = counters
    return out


def _inode(sockets: _Field, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_INODE:
        raise sockets.key(text).fail("not a socket inode")
    return int(text)


def _plain_row(row: object) -> Optional[TcpInfo]:
    """The counters of a row whose first six values are all in range, else None."""
    if type(row) is not list or len(row) < TCP_INFO_COLUMNS:
        return None
    for value, (high, nullable) in zip(row, _LIMITS):
        if not ((type(value) is int and 0 <= value <= high) or (value is None and nullable)):
            return None
    return TcpInfo(*row[:TCP_INFO_COLUMNS])


def _checked_row(node: _Field) -> TcpInfo:
    """The same, field by field: the first fault raises with its path."""
    values = node.entries(1 << 16)
    if len(values) < TCP_INFO_COLUMNS:
        raise node.fail(f"expected at least {TCP_INFO_COLUMNS} values, got {len(values)}")
    return TcpInfo(*(node.at(index).integer(0, high, nullable=nullable)
                     for index, (high, nullable) in enumerate(_LIMITS)))


TCP_INFO_VERSION = 1
COLUMN_NAMES = ("bytes_acked", "bytes_received", "rtt", "rttvar", "total_retrans", "ca_state")


def tcp_info_to_document(counters: dict[int, TcpInfo]) -> dict[str, object]:
    """The `tcp_info` section of a namespace, as the payload writes it."""
    return {"version": TCP_INFO_VERSION, "columns": list(COLUMN_NAMES),
            "sockets": {str(inode): list(counters[inode]) for inode in sorted(counters)}}

"""The reference reader's cursor: one place in an untrusted document, checked field by field.

A _Field holds a value and the path that leads to it (`namespaces[0].sockets[3].local`), so that
any fault raises SnapshotError with one line: "<source>: <field path>: <what is wrong>". The
record readers (readers.py, legacy.py) are written with it; the fast path (fast.py) checks the
same things directly and hands everything else over to them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, TypeVar

from netviz.errors import SnapshotError
from netviz.snapshot.format import canonical_address
from netviz.snapshot.limits import MAX_TEXT

_STATE = re.compile(r"[A-Z][A-Z0-9_]{0,31}\Z")
_HEX = re.compile(r"(?:[0-9a-f]{2})*\Z")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")

T = TypeVar("T")


def _show(value: Any) -> str:
    """A short, single-line rendering of an offending value for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_text(value: object, limit: int = MAX_TEXT) -> bool:
    """A string that _Field.text(limit) accepts."""
    return type(value) is str and len(value) <= limit and (value.isascii() or not _SURROGATE.search(value))


def _are_integers(values: list[Any], low: int, high: int) -> bool:
    """Every entry an integer in [low, high], checked in bulk (a process may hold thousands)."""
    return not values or (set(map(type, values)) == {int} and low <= min(values) and max(values) <= high)


class _Field:
    """One place in the document, for error messages: `namespaces[0].sockets[3].local`.

    The path is spelled out only when a message needs it: a valid document never does.
    """

    __slots__ = ("source", "value", "_path", "_parent", "_step")

    def __init__(self, source: str, path: Optional[str], value: Any,
                 parent: Optional["_Field"] = None, step: "str | int" = "") -> None:
        self.source = source
        self.value = value
        self._path = path  # None: `step` (a key or an index) under `parent`
        self._parent = parent
        self._step = step

    @property
    def path(self) -> str:
        if self._path is None:
            assert self._parent is not None
            base, step = self._parent.path, self._step
            if isinstance(step, int):
                self._path = f"{base}[{step}]"
            elif not _PLAIN_KEY.match(step):
                # Keys of open-ended objects (`unkeyed`, legacy pids) come from the document
                # itself: anything but a plain word is quoted, so the message stays one line.
                self._path = f"{base}[{_show(step)}]"
            else:
                self._path = f"{base}.{step}" if base else step
        return self._path

    def fail(self, what: str) -> SnapshotError:
        return SnapshotError(f"{self.source}: {self.path or '(top level)'}: {what}")

    def key(self, name: str, required: bool = True) -> "_Field":
        if not isinstance(self.value, dict):
            raise self.fail(f"expected an object, got {type(self.value).__name__}")
        if name not in self.value:
            if required:
                raise self.fail(f"missing key {name!r}")
            return _Field(self.source, None, _MISSING, self, name)
        return _Field(self.source, None, self.value[name], self, name)

    @property
    def missing(self) -> bool:
        return self.value is _MISSING

    def entries(self, limit: int) -> list[Any]:
        """The list itself, checked to be one of at most `limit` entries."""
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {type(self.value).__name__}")
        if len(self.value) > limit:
            raise self.fail(f"too many entries ({len(self.value)} > {limit})")
        return self.value

    def at(self, index: int) -> "_Field":
        """Entry `index` of a list already checked by entries()."""
        return _Field(self.source, None, self.value[index], self, index)

    def items(self, limit: int) -> list["_Field"]:
        return [_Field(self.source, None, value, self, index) for index, value in enumerate(self.entries(limit))]

    def integers(self, low: int, high: int, limit: int) -> tuple[int, ...]:
        """A list of integers in [low, high] (socket inodes of a process: thousands at times)."""
        values = self.entries(limit)
        if _are_integers(values, low, high):
            return tuple(values)
        return tuple(item.integer(low, high) for item in self.items(limit))  # names the bad entry

    def texts(self, limit: int, count: int) -> tuple[str, ...]:
        """A list of at most `count` strings of at most `limit` characters each."""
        values = self.entries(count)
        if all(_is_text(value, limit) for value in values):
            return tuple(values)
        return tuple(item.text(limit) for item in self.items(count))  # names the bad entry

    def integer(self, low: int = 0, high: int = (1 << 64) - 1, nullable: bool = False) -> Optional[int]:
        value = self.value
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if type(value) is float and value.is_integer() and abs(value) >= 2**64:
                # the JSON reader gives an integer past 64 bits as a float
                raise self.fail(f"{value:.0f} is out of range [{low}, {high}]")
            raise self.fail(f"expected an integer, got {_show(value)}")
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range [{low}, {high}]")
        return value

    def number(self) -> float:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.fail(f"expected a finite number, got {_show(value)}")
        return float(value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_show(self.value)}")
        return self.value

    def text(self, limit: int = MAX_TEXT, nullable: bool = False, pattern: Optional[re.Pattern[str]] = None) -> Optional[str]:
        value = self.value
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(f"expected a string, got {_show(value)}")
        if len(value) > limit:
            raise self.fail(f"string longer than {limit} characters")
        if not value.isascii() and _SURROGATE.search(value):
            # JSON can spell a lone surrogate (\ud800); it is not text and cannot be written out.
            raise self.fail("not valid Unicode text (lone surrogate)")
        if pattern is not None and not pattern.match(value):
            raise self.fail(f"unexpected value {_show(value)}")
        return value

    def address(self, nullable: bool = False) -> Optional[str]:
        value = self.text(64, nullable=nullable)
        if value is None:
            return None
        canonical = canonical_address(value)
        if canonical is None:
            raise self.fail(f"not an IP address: {_show(value)}")
        return canonical

    def optional(self, name: str, read: Callable[["_Field"], T], default: T) -> T:
        child = self.key(name, required=False)
        return default if child.missing else read(child)


_MISSING = object()

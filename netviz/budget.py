"""What reading snapshots may cost in memory: per snapshot, and across the machines of a run.

A snapshot comes from a machine that may be compromised, and what it costs to read grows much
faster than what it costs to send: a 79 KB frame inflates to 60 MB of `[{},{},...]`, and parsing
that builds 20 million Python objects (1.9 GB). So every step is bounded before it allocates:

- the output of one machine (frame and login noise) while it is read,
- the JSON a frame inflates to (zlib's `max_length`: a bomb is never inflated past it),
- the JSON values, counted by a linear scan before the parser runs (`json_values`),
- the output held by all the machines of a run that are running at once (`OutputBudget`),
  and one snapshot decoded at a time (parsing holds the GIL anyway, so this costs no speed).

The limits are generous multiples of the largest real snapshot: a machine with 50,000 sockets
gives 7.8 MB of JSON, 0.46 MB compressed, a frame of 0.62 MB and 0.97 million JSON values
(benchmarks/bench_budget.py measures it), and `netviz stitch` of it peaks at 110 MiB RSS. A
machine over a limit is a failed machine (`bad_output`); the others are kept.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Optional

from netviz.errors import NetvizError

MIB = 1 << 20

# One machine's standard output (the frame plus whatever its login prints): 100 times the frame
# of a 50,000-socket machine; command lines of random bytes compress badly, hence the margin.
MAX_OUTPUT_BYTES = 64 * MIB
# The JSON of one snapshot, inflated: 16 times the 50,000-socket machine (long command lines
# weigh bytes, not values).
MAX_JSON_BYTES = 128 * MIB
# JSON values of one snapshot: about 10 times the 50,000-socket machine (0.97 million). Parsing
# costs 35 to 65 bytes per value, so this bounds the parse of one snapshot to about 650 MB.
MAX_JSON_VALUES = 10_000_000
# Output held by all the running machines of a run together: 8 machines at MAX_OUTPUT_BYTES,
# 20 times what 32 machines of 50,000 sockets each hold at once.
RUN_OUTPUT_BYTES = 512 * MIB

# A JSON string, escapes included; an unterminated one runs to the end of the text (so the
# scan stays linear: no string is ever scanned twice).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_STRUCTURAL = ("{", "[", ",", ":")


class BudgetExceeded(NetvizError):
    """A machine's output passed its own limit or the run's."""


def json_values(text: str, limit: int = MAX_JSON_VALUES) -> int:
    """How many values the JSON `text` holds, counted without parsing it: one per `{`, `[`, `,`
    and `:` outside strings, plus one (an upper bound on the objects a parser builds: an object
    member is its key and its value, an empty `{}` counts two).

    Exact when the result is above `limit`; at or below it, the count may include those
    characters inside strings (a quick count, a few milliseconds for a large snapshot). Linear
    in the length of the text, whatever it holds.
    """
    quick = 1 + sum(text.count(char) for char in _STRUCTURAL)
    if quick <= limit:
        return quick
    outside = _JSON_STRING.sub("", text)  # strings hold commas and colons of command lines
    return 1 + sum(outside.count(char) for char in _STRUCTURAL)


class OutputBudget:
    """The bytes of output that the running machines of one run may hold together.

    Each machine takes a `share()`, which grows as its output arrives and is released when the
    machine is done. A machine whose output would take the run past `total` (or itself past
    `per_machine`) fails at once: it does not wait for memory, because it would wait holding
    what it has read (every machine could end up waiting for the others), and a paused reader
    only stalls the machine's payload until its command timeout. The limits are far above what
    real snapshots need, so only machines that send far too much meet them.

    `decoding()` lets one snapshot at a time be inflated, counted and parsed: the peak of a
    run is then the output held plus one snapshot's decoding, whatever the machines send.
    """

    def __init__(self, total: Optional[int] = None, per_machine: Optional[int] = None) -> None:
        self.total = RUN_OUTPUT_BYTES if total is None else total
        self.per_machine = MAX_OUTPUT_BYTES if per_machine is None else per_machine
        self._lock = threading.Lock()
        self._held = 0
        self._holders = 0
        self._decoder = threading.Lock()

    @property
    def held(self) -> int:
        """Bytes held by all the shares now."""
        with self._lock:
            return self._held

    def share(self) -> "OutputShare":
        """A new machine's share of the budget (holding nothing yet)."""
        return OutputShare(self)

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Held while one snapshot is inflated, counted and parsed."""
        with self._decoder:
            yield

    def _take(self, share: "OutputShare", count: int) -> None:
        with self._lock:
            if share.released:
                raise BudgetExceeded("the machine was given up; its output is no longer read")
            if share.held + count > self.per_machine:
                raise BudgetExceeded(f"more than {self.per_machine // MIB} MiB of output: not a snapshot")
            if self._held + count > self.total:
                others = self._holders - (1 if share.held else 0)
                raise BudgetExceeded(
                    f"the run's output budget ({self.total // MIB} MiB for the machines collected at once) is "
                    f"spent: {others} other machine(s) hold {(self._held - share.held) / MIB:.0f} MiB; "
                    "this machine's output was dropped (retry it, or collect with a lower --parallel)")
            if not share.held and count:
                self._holders += 1
            self._held += count
            share.held += count

    def _release(self, share: "OutputShare") -> None:
        with self._lock:
            if share.released:
                return
            share.released = True
            self._held -= share.held
            if share.held:
                self._holders -= 1
            share.held = 0


class OutputShare:
    """One machine's part of an OutputBudget."""

    def __init__(self, budget: OutputBudget) -> None:
        self.budget = budget
        self.held = 0
        self.released = False

    def take(self, count: int) -> None:
        """Account for `count` more bytes of output; BudgetExceeded when over a limit (the bytes
        are then not counted, and the caller must drop the output)."""
        self.budget._take(self, count)

    def release(self) -> None:
        """Give everything back (the machine is done); later `take` calls fail."""
        self.budget._release(self)

    def decoding(self) -> "contextlib.AbstractContextManager[None]":
        """The budget's `decoding()`."""
        return self.budget.decoding()

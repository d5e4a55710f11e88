"""What every transport shares: the failure kinds, HostFailure, an attempt's live resources,
the timings, and the Transport interface itself.

A transport takes one machine (a HostSpec) and the payload's source and returns the payload's
raw standard output (a frame, perhaps with login noise around it); every way that can go wrong
ends as a HostFailure(kind, message). collect.py runs one `fetch` per machine on a bounded pool
and turns the bytes into a snapshot; it knows nothing of how they were fetched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional, Protocol, runtime_checkable

from netviz.budget import OutputBudget, OutputShare
from netviz.inventory import HostSpec

# Standard error keeps its last MAX_STDERR bytes (the error is there); standard output is bounded
# by the run's OutputBudget instead (netviz/budget.py: per machine and for all the machines).
MAX_STDERR = 256 * 1024


class FailureKind(str, Enum):
    """Why a machine gave no snapshot, in the order a connection meets them.

    A `str`: a kind equals its text ("dns"), formats as it, and is written to the run's manifest
    as it, so code and files that speak of kinds as text keep working.
    """

    DNS = "dns"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    AUTH = "auth"
    HOST_KEY = "host_key"
    SUDO = "sudo"
    NO_PYTHON = "no_python"
    TIMEOUT = "timeout"
    PAYLOAD_ERROR = "payload_error"
    BAD_OUTPUT = "bad_output"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)  # the same on every Python (3.12 changed the mixin rule)


DNS = FailureKind.DNS
REFUSED = FailureKind.REFUSED
UNREACHABLE = FailureKind.UNREACHABLE
AUTH = FailureKind.AUTH
HOST_KEY = FailureKind.HOST_KEY
SUDO = FailureKind.SUDO
NO_PYTHON = FailureKind.NO_PYTHON
TIMEOUT = FailureKind.TIMEOUT
PAYLOAD_ERROR = FailureKind.PAYLOAD_ERROR
BAD_OUTPUT = FailureKind.BAD_OUTPUT
FAILURE_KINDS = tuple(FailureKind)


class HostFailure(Exception):
    """A machine could not give its snapshot: `kind` says why, `message` says it for people."""

    def __init__(self, kind: FailureKind | str, message: str):
        self.kind = FailureKind(kind)
        super().__init__(f"{self.kind}: {message}")
        self.message = message


# Seconds between choosing a group's window and its start: time for every machine to log in
# before the window opens. Bounded by the group's largest connect_timeout (a group that logs
# in fast does not wait long); a machine that takes longer starts its window late (the payload
# starts at once when the time is past) and its snapshot says so (window.started_at).
WINDOW_START_DELAY = 3.0
WINDOW_START_DELAY_MIN = 0.5


@dataclass(frozen=True)
class WindowPlan:
    """One observation window for a whole group (`--window`): every machine's payload gets
    `--window seconds --start-at start_at`, so all of them observe the same wall-clock
    interval, each by its own clock (clock skew between machines shifts their windows by as
    much). `delay` is how far ahead of the plan's making `start_at` lies.

    The window and the wait for it are not charged to command_timeout: every limit of a
    machine's command (the remote `timeout -k`, the local child's timeout, the run's wait for
    the output and the watchdog's deadline) is extended by `extra`.
    """

    seconds: float
    start_at: float
    delay: float

    @classmethod
    def starting_soon(cls, seconds: float, connect_timeouts: list[float], now: float) -> WindowPlan:
        """A window of `seconds` starting WINDOW_START_DELAY from `now`, or sooner when every
        machine's connect_timeout is shorter (never sooner than WINDOW_START_DELAY_MIN)."""
        delay = min(WINDOW_START_DELAY, max(connect_timeouts, default=WINDOW_START_DELAY))
        delay = max(WINDOW_START_DELAY_MIN, delay)
        return cls(seconds=seconds, start_at=round(now + delay, 3), delay=delay)

    @property
    def extra(self) -> float:
        """Seconds added to a machine's command limits: the wait for the start and the window."""
        return self.delay + self.seconds

    def payload_arguments(self) -> list[str]:
        """The payload's options for this window (docs/snapshot.md, "window")."""
        return ["--window", f"{self.seconds:g}", "--start-at", f"{self.start_at:.3f}"]


def window_extra(window: Optional[WindowPlan]) -> float:
    """Seconds a window adds to a machine's command limits (0 without one)."""
    return window.extra if window is not None else 0.0


@dataclass
class Timings:
    """Seconds spent per phase on one machine (0 for phases not reached)."""

    dns: float = 0.0
    connect: float = 0.0  # TCP + SSH handshake + authentication, jump hosts included
    command: float = 0.0  # payload sent until all output read

    def as_dict(self) -> dict[str, float]:
        return {"dns": round(self.dns, 3), "connect": round(self.connect, 3), "command": round(self.command, 3)}


class Attempt:
    """The live resources of one machine's attempt, so another thread can cut it short.

    A transport `track`s whatever it opens (sockets, connections, child processes) with a
    function that closes it; `cancel()` closes them all, so that a call blocked on one of them
    returns. `output` is the machine's share of the run's output budget (by default a budget of
    its own: the per-machine limit only); `cancel()` gives it back.
    """

    def __init__(self, output: Optional[OutputShare] = None) -> None:
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self.cancelled = False
        self.output = output if output is not None else OutputBudget().share()

    def track(self, closer: Callable[[], None]) -> None:
        """Close with `closer` on cancel; at once (and fail as `timeout`) if already cancelled."""
        with self._lock:
            if self.cancelled:
                closer()
                raise HostFailure(TIMEOUT, "cancelled")
            self._closers.append(closer)

    def cancel(self) -> None:
        """Close every socket, connection and process of the attempt: blocked calls then return."""
        with self._lock:
            self.cancelled = True
            closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception:  # closing is best effort; the thread is being abandoned anyway
                pass
        self.output.release()


@runtime_checkable
class Transport(Protocol):
    """A way to run the payload on one machine and bring its output back.

    Implemented by SSHTransport (netviz/transport/ssh.py) and LocalTransport
    (netviz/transport/local.py); collect.py drives any of them the same way: a bounded pool,
    a watchdog per machine, one output budget for the run.
    """

    def fetch(self, target: HostSpec, payload: bytes, attempt: Attempt, timings: Timings) -> bytes:
        """Run `payload` (the capture script's source, fed on stdin) on `target` with the
        arguments `--framed`, and return its raw standard output.

        Every failure is a HostFailure. Everything opened is tracked on `attempt` (another
        thread may cancel it at any time), standard output counts against `attempt.output`,
        and the phases reached are written into `timings`.
        """
        ...

    def deadline(self, target: HostSpec) -> float:
        """Seconds after which the watchdog gives `target` up whatever it is doing: past every
        limit `fetch` applies itself, so that only a call blocked without one meets it."""
        ...

    def descriptors(self, target: HostSpec) -> int:
        """About how many file descriptors a `fetch` of `target` holds at once (the pool is
        bounded by the open-file limit with it)."""
        ...

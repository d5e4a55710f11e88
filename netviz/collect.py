"""Fan out over the machines of a run: one result per machine, never an exception across threads.

Each machine gets one fabric Connection on a bounded ThreadPoolExecutor (not fabric's
ThreadingGroup: it starts a thread per host without a cap and joins without a timeout). A
watchdog in the calling thread gives every machine a hard deadline derived from its timeouts;
past it the machine's sockets are closed, which unblocks any paramiko call waiting without a
timeout of its own, and the machine is reported as `timeout`.
"""

from __future__ import annotations

import concurrent.futures
import importlib.resources
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from netviz.budget import OutputBudget
from netviz.errors import Interrupted, NetvizError
from netviz.inventory import HostSpec
from netviz.transport import (
    BAD_OUTPUT,
    KILL_GRACE,
    PAYLOAD_ERROR,
    TIMEOUT,
    Attempt,
    HostFailure,
    Timings,
    TransportOptions,
    fetch_framed,
)

if TYPE_CHECKING:
    from netviz.snapshot import Snapshot

DEFAULT_PARALLEL = 32
# Open files: a machine holds a few descriptors per hop at once (its TCP socket or ProxyCommand
# pipes, the session channel's wake-up pipe, a DNS lookup's socket); the rest of netviz (stdio,
# the cache, logs, imports) keeps a reserve. A pool past the limit fails machines with EMFILE.
DESCRIPTORS_PER_HOP = 4
DESCRIPTORS_RESERVED = 32
INTERRUPT_GRACE = 3.0  # seconds the workers get to return once their connections are closed
OK = "ok"
FAILED = "failed"


@dataclass
class HostResult:
    """What one machine gave: a validated snapshot (status ok) or a failure kind and message."""

    name: str
    status: str  # OK or FAILED
    kind: Optional[str] = None  # one of transport.FAILURE_KINDS when failed
    message: str = ""
    timings: Timings = field(default_factory=Timings)
    seconds: float = 0.0  # wall time for this machine, start to result
    snapshot_json: Optional[str] = None
    snapshot: Optional["Snapshot"] = None
    finished_at: float = 0.0  # Unix time

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def sockets(self) -> Optional[int]:
        """How many sockets the snapshot lists (None without a snapshot)."""
        if self.snapshot is None:
            return None
        return sum(len(namespace.sockets) for namespace in self.snapshot.namespaces)


def payload_source() -> bytes:
    """The capture payload's source: the only code that runs on the machines."""
    return importlib.resources.files("netviz.payload").joinpath("capture.py").read_bytes()


def validate_output(name: str, stdout: bytes) -> tuple[str, "Snapshot"]:
    """Decode the frame and validate the snapshot; any problem is a bad_output HostFailure."""
    from netviz.framing import FrameError, decode_framed
    from netviz.snapshot import SnapshotTooLarge, loads_document, parse_snapshot

    try:
        text = decode_framed(stdout)
    except FrameError as error:
        shown = "no output at all" if not stdout.strip() else str(error)
        raise HostFailure(BAD_OUTPUT, f"no usable snapshot in the output ({shown})") from None
    try:
        # The same strict reading as a cached file (no NaN, bounded nesting): what is accepted
        # here loads again later.
        document = loads_document(text, name)
    except SnapshotTooLarge as error:
        raise HostFailure(BAD_OUTPUT, f"the snapshot is too large: {error}") from None
    except NetvizError as error:
        raise HostFailure(BAD_OUTPUT, f"the snapshot is not JSON: {error}") from None
    try:
        snapshot = parse_snapshot(document, source=name, name=name)
    except NetvizError as error:
        raise HostFailure(BAD_OUTPUT, f"the snapshot does not follow the format: {error}") from None
    return text, snapshot


def host_deadline(spec: HostSpec) -> float:
    """Seconds after which a machine is given up, whatever it is doing.

    Each connection phase has its own limit, for the machine and each jump host: DNS, TCP,
    banner + key exchange (twice connect_timeout), authentication, opening the channel; the
    command has its own timeout plus the remote kill grace; a little slack on top.
    """
    hops = 1 + len(spec.jump)
    return spec.connect_timeout * 6 * hops + spec.command_timeout + KILL_GRACE + 10


def collect_one(spec: HostSpec, payload: bytes, options: TransportOptions, attempt: Attempt) -> HostResult:
    """Collect one machine. Returns a result for every outcome; raises nothing."""
    started = time.monotonic()
    timings = Timings()
    try:
        stdout = fetch_framed(spec, payload, options, attempt, timings)
        with attempt.output.decoding():  # one snapshot decoded at a time (see OutputBudget)
            text, snapshot = validate_output(spec.name, stdout)
        result = HostResult(spec.name, OK, timings=timings, snapshot_json=text, snapshot=snapshot)
    except HostFailure as failure:
        result = HostResult(spec.name, FAILED, failure.kind, failure.message, timings=timings)
    except Exception as error:  # a bug of ours must not take the other machines down
        result = HostResult(spec.name, FAILED, PAYLOAD_ERROR, f"internal error: {type(error).__name__}: {error}")
    finally:
        attempt.cancel()  # closes whatever is still open
    result.seconds = time.monotonic() - started
    result.finished_at = time.time()
    return result


Callback = Callable[[HostResult], None]

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (as far as the kernel allows);
    return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if wanted == resource.RLIM_INFINITY:
        try:
            wanted = int(open("/proc/sys/fs/nr_open").read())
        except (OSError, ValueError):
            wanted = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16  # no /proc: a guess at stdio and friends


def _hops(spec: HostSpec) -> int:
    return 1 + sum(_hops(jump) for jump in spec.jump)


def pool_size(hosts: Sequence[HostSpec], parallel: int) -> tuple[int, Optional[str]]:
    """How many machines to collect at once: `parallel`, bounded by the hosts and by the open
    files this process may still hold; with a notice when the open-file limit lowered it."""
    wanted = max(1, min(parallel, len(hosts)))
    limit = raise_open_file_limit()
    if limit == resource.RLIM_INFINITY:
        return wanted, None
    per_machine = DESCRIPTORS_PER_HOP * max((_hops(spec) for spec in hosts), default=1)
    free = limit - _open_descriptors() - DESCRIPTORS_RESERVED
    fits = max(1, free // per_machine)
    if fits >= wanted:
        return wanted, None
    return fits, (
        f"collecting {fits} machines at a time, not {wanted}: the open-file limit is {limit} (ulimit -n) "
        f"and each machine holds about {per_machine} descriptors ({DESCRIPTORS_PER_HOP} per hop); "
        "raise the hard limit to collect more at once"
    )


def collect(
    hosts: Sequence[HostSpec],
    options: TransportOptions,
    *,
    parallel: int = DEFAULT_PARALLEL,
    payload: Optional[bytes] = None,
    on_start: Optional[Callable[[HostSpec], None]] = None,
    on_result: Optional[Callback] = None,
    clock: Callable[[], float] = time.monotonic,
    on_notice: Optional[Callable[[str], None]] = None,
) -> list[HostResult]:
    """Collect every host with at most `parallel` at a time; results in the order of `hosts`.

    `on_start` and `on_result` are called from the calling thread (safe for a progress display).
    The pool is also bounded by the open-file limit (see pool_size); `on_notice` (default: a
    warning in the log) hears when it was lowered. Ctrl-C cancels every machine and raises
    Interrupted.
    """
    if parallel < 1:
        raise NetvizError("--parallel must be at least 1")
    payload = payload if payload is not None else payload_source()
    results: dict[str, HostResult] = {}
    # The output held by the running machines is bounded together, whatever they send
    # (netviz/budget.py); each attempt gives its share back when its machine is done.
    budget = OutputBudget()
    attempts = {spec.name: Attempt(budget.share()) for spec in hosts}
    started: dict[str, float] = {}
    started_lock = threading.Lock()
    pending_starts: list[HostSpec] = []

    def work(spec: HostSpec) -> HostResult:
        with started_lock:
            started[spec.name] = clock()
            pending_starts.append(spec)
        return collect_one(spec, payload, options, attempts[spec.name])

    workers, notice = pool_size(hosts, parallel)
    if notice:
        (on_notice or log.warning)(notice)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netviz-collect")
    futures = {executor.submit(work, spec): spec for spec in hosts}
    waiting = set(futures)

    def report_starts() -> None:
        with started_lock:
            batch, pending_starts[:] = list(pending_starts), []
        if on_start is not None:
            for spec in batch:
                on_start(spec)

    def finish(result: HostResult) -> None:
        if result.name in results:
            return  # already given up by the watchdog
        results[result.name] = result
        if on_result is not None:
            on_result(result)

    try:
        while waiting:
            done, waiting = concurrent.futures.wait(waiting, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
            report_starts()
            for future in done:
                finish(future.result())
            now = clock()
            with started_lock:
                running = dict(started)
            for future in list(waiting):
                spec = futures[future]
                began = running.get(spec.name)
                if began is None or spec.name in results:
                    continue
                limit = host_deadline(spec)
                if now - began > limit:
                    attempts[spec.name].cancel()
                    waiting.discard(future)
                    finish(
                        HostResult(
                            spec.name, FAILED, TIMEOUT, f"gave up after {limit:g} s without an answer",
                            seconds=now - began, finished_at=time.time(),
                        )
                    )
    except KeyboardInterrupt:
        # Close every connection (blocked paramiko calls return; each machine's remote guard ends
        # its payload once the session is gone), drop the machines not started yet, and give the
        # workers a moment to return, so that no thread outlives the call.
        for attempt in attempts.values():
            attempt.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        concurrent.futures.wait(list(futures), timeout=INTERRUPT_GRACE)
        for future, spec in futures.items():
            # Finished just before the signal, not reported yet: a complete result all the same.
            if spec.name not in results and future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if result.status == OK:
                    results[spec.name] = result
        finished = [results[spec.name] for spec in hosts if spec.name in results]
        raise Interrupted(f"interrupted: {len(finished)} of {len(hosts)} machines had finished", finished) from None
    # Workers given up by the watchdog finish on their own (their sockets are closed): no waiting.
    executor.shutdown(wait=False)
    return [results[spec.name] for spec in hosts]


def collect_local(name: str, timeout: float = 60.0, payload: Optional[bytes] = None) -> HostResult:
    """This machine without SSH: the same payload, run by this Python in a child process."""
    payload = payload if payload is not None else payload_source()
    started = time.monotonic()
    timings = Timings()
    try:
        process = subprocess.run(
            [sys.executable, "-", "--framed"], input=payload, capture_output=True, timeout=timeout, check=False
        )
        timings.command = time.monotonic() - started
        if process.returncode != 0:
            lines = [line for line in process.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else "no error message"
            raise HostFailure(PAYLOAD_ERROR, f"payload failed (exit status {process.returncode}): {last[:500]}")
        text, snapshot = validate_output(name, process.stdout)
        result = HostResult(name, OK, timings=timings, snapshot_json=text, snapshot=snapshot)
    except subprocess.TimeoutExpired:
        result = HostResult(name, FAILED, TIMEOUT, f"payload did not finish within {timeout:g} s", timings=timings)
    except OSError as error:  # the interpreter cannot be started (permissions, a broken venv)
        result = HostResult(name, FAILED, PAYLOAD_ERROR,
                            f"cannot start {sys.executable}: {error.strerror or error}", timings=timings)
    except HostFailure as failure:
        result = HostResult(name, FAILED, failure.kind, failure.message, timings=timings)
    result.seconds = time.monotonic() - started
    result.finished_at = time.time()
    return result

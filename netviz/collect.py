"""Fan out over the machines of a run: one result per machine, never an exception across threads.

Every machine goes the same way, whatever its Transport (netviz/transport/: SSH, or this machine
in a child process): a bounded ThreadPoolExecutor (not fabric's ThreadingGroup: it starts a
thread per host without a cap and joins without a timeout) runs one `transport.fetch` per
machine, and the output is validated into a snapshot here. A watchdog in the calling thread
gives every machine a hard deadline (`transport.deadline`); past it the machine's attempt is
cancelled (its sockets closed, its child killed), which unblocks any call waiting without a
timeout of its own, and the machine is reported as `timeout`. The output held by the running
machines is bounded together (netviz/budget.py).
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import importlib.resources
import logging
import multiprocessing
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

from netviz.budget import OutputBudget
from netviz.errors import Interrupted, NetvizError
from netviz.inventory import HostSpec
from netviz.transport import (
    BAD_OUTPUT,
    PAYLOAD_ERROR,
    TIMEOUT,
    Attempt,
    HostFailure,
    LocalTransport,
    SSHTransport,
    Timings,
    Transport,
    TransportOptions,
    local_target,
)

if TYPE_CHECKING:
    from netviz.snapshot import Coverage, Snapshot

DEFAULT_PARALLEL = 32
# Open files: each machine holds what its transport says (Transport.descriptors); the rest of
# netviz (stdio, the cache, logs, imports) keeps a reserve. A pool past the limit fails machines
# with EMFILE.
DESCRIPTORS_RESERVED = 32
INTERRUPT_GRACE = 3.0  # seconds the workers get to return once their connections are closed
# Past this many machines (on a machine with 2 cores or more), a collection that keeps no snapshot
# decodes and validates them in child processes, off the threads that drive SSH: measured at
# 1,000 sockets a machine, that is 16.9 ms of this process's CPU per machine in a thread, 1.3 ms
# with the work in a child (docs/scale.md). Below it, starting the processes costs more than it saves.
VALIDATE_IN_PROCESSES_FROM = 64
MAX_VALIDATORS = 4  # each may hold one snapshot's decoding (netviz/budget.py bounds it)
OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class SnapshotSummary:
    """What is kept of a snapshot once it is written to the cache and dropped from memory:
    what the collect summary, --require-complete and the window notes read."""

    sockets: int
    coverage: "Coverage"
    captured_at: float  # by the machine's clock
    window_started_at: Optional[float] = None  # --window: when the machine's window began

    @classmethod
    def of(cls, snapshot: "Snapshot") -> "SnapshotSummary":
        return cls(sum(len(namespace.sockets) for namespace in snapshot.namespaces), snapshot.coverage,
                   snapshot.host.captured_at, snapshot.window.started_at if snapshot.window is not None else None)


@dataclass
class HostResult:
    """What one machine gave: a validated snapshot (status ok) or a failure kind and message.

    A collection of many machines keeps no snapshot: each is written to the cache as its
    machine answers, then `release()`d, leaving its `summary` (a few hundred bytes).
    """

    name: str
    status: str  # OK or FAILED
    kind: Optional[str] = None  # a transport.FailureKind (a str) when failed
    message: str = ""
    timings: Timings = field(default_factory=Timings)
    seconds: float = 0.0  # wall time for this machine, start to result
    snapshot_json: Optional[str] = None
    snapshot: Optional["Snapshot"] = None
    finished_at: float = 0.0  # Unix time
    summary: Optional[SnapshotSummary] = None  # set from `snapshot` when not given
    validate_cpu: float = 0.0  # CPU seconds this machine's thread spent decoding and validating

    def __post_init__(self) -> None:
        if self.summary is None and self.snapshot is not None:
            self.summary = SnapshotSummary.of(self.snapshot)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def sockets(self) -> Optional[int]:
        """How many sockets the snapshot lists (None without a snapshot)."""
        return None if self.summary is None else self.summary.sockets

    @property
    def coverage(self) -> Optional["Coverage"]:
        """What the capture could read (None without a snapshot)."""
        return None if self.summary is None else self.summary.coverage

    def release(self) -> None:
        """Drop the snapshot and its JSON (once written to the cache); the summary stays."""
        self.snapshot = None
        self.snapshot_json = None


def payload_source() -> bytes:
    """The capture payload's source: the only code that runs on the machines."""
    return importlib.resources.files("netviz.payload").joinpath("capture.py").read_bytes()


def validate_output(name: str, stdout: bytes) -> tuple[str, "Snapshot"]:
    """Decode the frame and validate the snapshot; any problem is a bad_output HostFailure."""
    from netviz.snapshot.framing import FrameError, decode_framed
    from netviz.snapshot import SnapshotTooLarge, loads_document, parse_snapshot
    from netviz.snapshot.files import check_document_size, typed_snapshot

    try:
        text = decode_framed(stdout)
    except FrameError as error:
        shown = "no output at all" if not stdout.strip() else str(error)
        raise HostFailure(BAD_OUTPUT, f"no usable snapshot in the output ({shown})") from None
    try:
        check_document_size(text, name)
    except SnapshotTooLarge as error:
        raise HostFailure(BAD_OUTPUT, f"the snapshot is too large: {error}") from None
    snapshot = typed_snapshot(text, name, name, parse=parse_snapshot)  # the common snapshot, sockets as records
    if snapshot is not None:
        return text, snapshot
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


def as_transport(transport: Union[Transport, TransportOptions]) -> Transport:
    """`transport` itself, or the SSH transport when given only its options."""
    return SSHTransport(transport) if isinstance(transport, TransportOptions) else transport


def collect_one(
    spec: HostSpec, payload: bytes, transport: Union[Transport, TransportOptions], attempt: Attempt,
    validators: Optional[Validators] = None,
) -> HostResult:
    """Collect one machine through `transport`. Returns a result for every outcome; raises nothing.
    With `validators`, the snapshot is validated in a child process and only its JSON text and
    summary come back (no `snapshot`)."""
    started = time.monotonic()
    timings = Timings()
    try:
        stdout = as_transport(transport).fetch(spec, payload, attempt, timings)
        if validators is not None:
            text, snapshot, summary, cpu = validators.validate(spec.name, stdout, attempt)
        else:
            with attempt.output.decoding():  # one snapshot decoded at a time (see OutputBudget)
                cpu = time.thread_time()
                text, snapshot = validate_output(spec.name, stdout)
                cpu = time.thread_time() - cpu
            summary = None
        del stdout  # the frame: only the JSON text and the snapshot are kept until recorded
        result = HostResult(spec.name, OK, timings=timings, snapshot_json=text, snapshot=snapshot, summary=summary,
                            validate_cpu=cpu)
    except HostFailure as failure:
        result = HostResult(spec.name, FAILED, failure.kind, failure.message, timings=timings)
    except Exception as error:  # a bug of ours must not take the other machines down
        result = HostResult(spec.name, FAILED, PAYLOAD_ERROR, f"internal error: {type(error).__name__}: {error}")
    finally:
        attempt.cancel()  # closes whatever is still open
    result.seconds = time.monotonic() - started
    result.finished_at = time.time()
    return result


def _ignore_interrupts() -> None:
    # Ctrl-C reaches the whole process group: the collector decides what stops, not its helpers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _validate_in_child(name: str, stdout: bytes) -> tuple:
    """In a validator process: ("ok", JSON text, summary, CPU seconds) or ("failed", kind,
    message, CPU seconds). The snapshot itself never travels back: only what is kept of it."""
    started = time.thread_time()
    try:
        text, snapshot = validate_output(name, stdout)
    except HostFailure as failure:
        return ("failed", str(failure.kind), failure.message, time.thread_time() - started)
    return ("ok", text, SnapshotSummary.of(snapshot), time.thread_time() - started)


class Validators:
    """Child processes that decode and validate snapshots, so that the threads driving SSH do
    not wait for the GIL while a snapshot is parsed, and a second core does that work.

    Started by a fork server (never a fork of this threaded process). If a child dies (the
    kernel killed it for memory, say), the pool is given up and snapshots are validated in the
    calling thread again, as without it."""

    def __init__(self, processes: int) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(processes, mp_context=context,
                                                            initializer=_ignore_interrupts)
        self.broken = False

    def validate(self, name: str, stdout: bytes, attempt: Attempt) -> tuple[str, Optional["Snapshot"],
                                                                              SnapshotSummary, float]:
        """(JSON text, the snapshot when validated here, its summary, CPU seconds); a bad
        snapshot raises HostFailure(bad_output) as validate_output does."""
        if not self.broken:
            try:
                verdict = self._pool.submit(_validate_in_child, name, stdout).result()
            except concurrent.futures.process.BrokenProcessPool:
                self.broken = True
            except (RuntimeError, concurrent.futures.CancelledError):  # the collection was stopped
                raise HostFailure(TIMEOUT, "cancelled") from None
            else:
                if verdict[0] != OK:
                    raise HostFailure(verdict[1], verdict[2])
                return verdict[1], None, verdict[2], verdict[3]
        with attempt.output.decoding():
            cpu = time.thread_time()
            text, snapshot = validate_output(name, stdout)
            return text, snapshot, SnapshotSummary.of(snapshot), time.thread_time() - cpu

    def close(self, *, wait: bool = True) -> None:
        """Stop the processes (`wait`: for the work under way too)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def validators_for(hosts: Sequence[HostSpec], workers: int) -> Optional[Validators]:
    """Validator processes for a collection this large on this machine, None to validate in
    the threads (few machines, or a single core)."""
    cores = os.cpu_count() or 1
    if len(hosts) < VALIDATE_IN_PROCESSES_FROM or cores < 2:
        return None
    return Validators(max(1, min(MAX_VALIDATORS, cores - 1, workers)))


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


def pool_size(
    hosts: Sequence[HostSpec], parallel: int, transport: Optional[Transport] = None
) -> tuple[int, Optional[str]]:
    """How many machines to collect at once: `parallel`, bounded by the hosts and by the open
    files this process may still hold (each machine holding what `transport`, by default SSH,
    says); with a notice when the open-file limit lowered it."""
    transport = transport if transport is not None else SSHTransport()
    wanted = max(1, min(parallel, len(hosts)))
    limit = raise_open_file_limit()
    if limit == resource.RLIM_INFINITY:
        return wanted, None
    per_machine = max((transport.descriptors(spec) for spec in hosts), default=1)
    free = limit - _open_descriptors() - DESCRIPTORS_RESERVED
    fits = max(1, free // per_machine)
    if fits >= wanted:
        return wanted, None
    return fits, (
        f"collecting {fits} machines at a time, not {wanted}: the open-file limit is {limit} (ulimit -n) "
        f"and each machine holds about {per_machine} descriptors; "
        "raise the hard limit to collect more at once"
    )


def collect(
    hosts: Sequence[HostSpec],
    transport: Union[Transport, TransportOptions],
    *,
    parallel: int = DEFAULT_PARALLEL,
    payload: Optional[bytes] = None,
    on_start: Optional[Callable[[HostSpec], None]] = None,
    on_result: Optional[Callback] = None,
    clock: Callable[[], float] = time.monotonic,
    on_notice: Optional[Callable[[str], None]] = None,
    keep_snapshots: bool = True,
) -> list[HostResult]:
    """Collect every host through `transport` (SSH when given TransportOptions) with at most
    `parallel` at a time; results in the order of `hosts`.

    Without `keep_snapshots` (the caller writes each result's JSON text and drops it, as the
    pipeline does), a large collection validates snapshots in child processes (Validators) and
    its results carry no `snapshot`, only `snapshot_json` and the `summary`.

    `on_start` and `on_result` are called from the calling thread (safe for a progress display).
    The pool is also bounded by the open-file limit (see pool_size); `on_notice` (default: a
    warning in the log) hears when it was lowered. Ctrl-C cancels every machine and raises
    Interrupted.
    """
    if parallel < 1:
        raise NetvizError("--parallel must be at least 1")
    transport = as_transport(transport)
    run = _Collection(hosts, transport, payload if payload is not None else payload_source(), clock)
    workers, notice = pool_size(hosts, parallel, transport)
    if notice:
        (on_notice or log.warning)(notice)
    cpu, wall = os.times(), time.monotonic()
    run.validators = None if keep_snapshots else validators_for(hosts, workers)
    try:
        results = run.run(workers, on_start, on_result)
    finally:
        if run.validators is not None:
            run.validators.close(wait=False)
    if hosts and log.isEnabledFor(logging.DEBUG):
        log.debug(client_cpu_line(results, cpu, os.times(), time.monotonic() - wall))
    return results


def client_cpu_line(results: Sequence[HostResult], before: os.times_result, after: os.times_result,
                    wall: float) -> str:
    """What collecting cost this process (`--log debug`): CPU per machine (user + system, every
    thread: SSH, decoding, validating, writing the cache) and the share spent validating."""
    count = max(1, len(results))
    cpu = (after.user - before.user) + (after.system - before.system)
    validating = sum(result.validate_cpu for result in results)
    machines = f"{len(results)} machine{'' if len(results) == 1 else 's'}"
    return (f"collected {machines} in {wall:.1f} s: client CPU {1000 * cpu / count:.1f} ms per machine "
            f"({cpu:.1f} s in all), of which {1000 * validating / count:.1f} ms decoding and validating snapshots")


class _Collection:
    """One call of collect(): each machine's attempt and start time, the results so far."""

    def __init__(self, hosts: Sequence[HostSpec], transport: Transport, payload: bytes,
                 clock: Callable[[], float]) -> None:
        self.hosts = hosts
        self.transport = transport
        self.payload = payload
        self.clock = clock
        self.results: dict[str, HostResult] = {}
        # The output held by the running machines is bounded together, whatever they send
        # (netviz/budget.py); each attempt gives its share back when its machine is done.
        budget = OutputBudget()
        self.attempts = {spec.name: Attempt(budget.share()) for spec in hosts}
        self._started: dict[str, float] = {}
        self._started_lock = threading.Lock()
        self._pending_starts: list[HostSpec] = []
        # A machine takes a slot before it starts and gives it back once its result is handed to
        # on_result (or it is given up): the results waiting for the calling thread, each with a
        # whole snapshot, stay bounded by the pool even when that thread falls behind.
        self._slots = threading.Semaphore(1)
        self._stopping = False
        self.validators: Optional[Validators] = None

    def work(self, spec: HostSpec) -> HostResult:
        """Collect one machine (in a worker thread)."""
        while not self._slots.acquire(timeout=0.2):
            if self._stopping:
                break
        if self._stopping:
            return HostResult(spec.name, FAILED, TIMEOUT, "cancelled")
        with self._started_lock:
            self._started[spec.name] = self.clock()
            self._pending_starts.append(spec)
        result = collect_one(spec, self.payload, self.transport, self.attempts[spec.name], self.validators)
        if spec.name in self.results:  # given up by the watchdog meanwhile: nobody reads it
            result.release()
        return result

    def run(self, workers: int, on_start: Optional[Callable[[HostSpec], None]],
            on_result: Optional[Callback]) -> list[HostResult]:
        """Every machine on a pool of `workers`, watched from the calling thread."""
        self._slots = threading.Semaphore(workers)
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netviz-collect")
        futures = {executor.submit(self.work, spec): spec for spec in self.hosts}
        waiting = set(futures)
        try:
            while waiting:
                done, waiting = concurrent.futures.wait(
                    waiting, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED
                )
                self._report_starts(on_start)
                for future in done:
                    self._finish(future.result(), on_result)
                for result in self._give_up_overdue(waiting, futures):
                    self._finish(result, on_result)
        except KeyboardInterrupt:
            raise self._interrupted(executor, futures) from None
        except BaseException:  # a callback's error (an unsafe cache): no machine goes on alone
            self._stop(executor)
            raise
        # Workers given up by the watchdog finish on their own (their attempts are cancelled): no waiting.
        executor.shutdown(wait=False)
        return [self.results[spec.name] for spec in self.hosts]

    def _report_starts(self, on_start: Optional[Callable[[HostSpec], None]]) -> None:
        with self._started_lock:
            batch, self._pending_starts[:] = list(self._pending_starts), []
        if on_start is not None:
            for spec in batch:
                on_start(spec)

    def _finish(self, result: HostResult, on_result: Optional[Callback]) -> None:
        if result.name in self.results:
            return  # already given up by the watchdog (its slot went back then)
        self.results[result.name] = result
        try:
            if on_result is not None:
                on_result(result)
        finally:
            self._slots.release()

    def _stop(self, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        """Cancel every machine and let the workers waiting for a slot return."""
        self._stopping = True
        for attempt in self.attempts.values():
            attempt.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
        if self.validators is not None:
            self.validators.close(wait=False)

    def _give_up_overdue(self, waiting: set, futures: dict) -> list[HostResult]:
        """Cancel the machines past their transport's deadline (dropped from `waiting`) and
        return their timeout results."""
        now = self.clock()
        with self._started_lock:
            running = dict(self._started)
        given_up = []
        for future in list(waiting):
            spec = futures[future]
            began = running.get(spec.name)
            if began is None or spec.name in self.results:
                continue
            limit = self.transport.deadline(spec)
            if now - began > limit:
                self.attempts[spec.name].cancel()
                waiting.discard(future)  # its late result, if any, is dropped by its worker
                given_up.append(HostResult(spec.name, FAILED, TIMEOUT, f"gave up after {limit:g} s without an answer",
                                           seconds=now - began, finished_at=time.time()))
        return given_up

    def _interrupted(self, executor: concurrent.futures.ThreadPoolExecutor, futures: dict) -> Interrupted:
        """Close every connection and child (blocked calls return; each machine's remote guard ends
        its payload once the session is gone), drop the machines not started yet, and give the
        workers a moment to return, so that no thread outlives the call."""
        self._stop(executor)
        concurrent.futures.wait(list(futures), timeout=INTERRUPT_GRACE)
        for future, spec in futures.items():
            # Finished just before the signal, not reported yet: a complete result all the same.
            if spec.name not in self.results and future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if result.status == OK:
                    self.results[spec.name] = result
        finished = [self.results[spec.name] for spec in self.hosts if spec.name in self.results]
        return Interrupted(f"interrupted: {len(finished)} of {len(self.hosts)} machines had finished", finished)


def collect_local(name: str, timeout: float = 60.0, payload: Optional[bytes] = None) -> HostResult:
    """This machine without SSH: the same payload, run by this Python in a child process
    (LocalTransport), on the same path as any machine."""
    return collect([local_target(name, timeout)], LocalTransport(), parallel=1, payload=payload)[0]

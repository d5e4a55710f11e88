"""The `run` and `collect` jobs: inventory -> collect -> cache -> snapshots -> stitch -> render.

Without an inventory the group is this machine alone: the payload runs here as a child process,
no SSH involved. Nothing here prints: progress goes to the callbacks of a Reporter, and the
caller (cli.py) writes the rendered bytes and exits with `exit_code`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, ContextManager, Mapping, Optional, Protocol, Sequence

from netviz.cache import (
    INTERRUPTED,
    CachedHost,
    CacheWriteError,
    Run,
    RunWindow,
    RunWriter,
    StitchInputs,
    default_cache_dir,
    host_file_name,
    latest_run,
    new_run_id,
    run_inputs,
    stitch_inputs,
)
from netviz.collect import DEFAULT_PARALLEL, HostResult, collect
from netviz.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    Interrupted,
    InventoryError,
    NothingCollected,
    SnapshotError,
)
from netviz.group import LoadedGroup, load_group
from netviz.inventory import SUDO_PASSWORD, HostSpec, load_inventory, load_ssh_config
from netviz.options import GroupBy, StitchOptions
from netviz.render import RenderOptions
from netviz.transport import (
    SUDO_PASSWORD_ENV,
    KnownHosts,
    LocalTransport,
    SSHTransport,
    Transport,
    TransportOptions,
    WindowPlan,
    local_target,
)

if TYPE_CHECKING:
    from netviz.graph import FlowGraph
    from netviz.snapshot import Snapshot

Working = Callable[[str], ContextManager[None]]  # shows what is being done (a spinner), or nothing


def _not_shown(what: str) -> ContextManager[None]:
    return contextlib.nullcontext()

LOCAL_COMMAND_TIMEOUT = 120.0


class Reporter(Protocol):
    """Receives progress; console.py provides the terminal one."""

    def begin(self, total: int) -> None: ...

    def observing(self, start_at: float, seconds: float) -> None:
        """The machines observe from `start_at` (Unix time) for `seconds` (--window)."""
        ...

    def started(self, name: str) -> None: ...

    def finished(self, result: HostResult) -> None: ...

    def end(self) -> None: ...


class QuietReporter:
    """A Reporter that shows nothing (library use, tests)."""

    def begin(self, total: int) -> None:
        pass

    def observing(self, start_at: float, seconds: float) -> None:
        pass

    def started(self, name: str) -> None:
        pass

    def finished(self, result: HostResult) -> None:
        pass

    def end(self) -> None:
        pass


@dataclass
class CollectRequest:
    """What `netviz collect` and `netviz run` were asked to do."""

    inventory: Optional[Path] = None  # None: this machine alone, without SSH
    limit: Sequence[str] = ()
    parallel: int = DEFAULT_PARALLEL
    cache_dir: Optional[Path] = None
    accept_new_host_keys: bool = False
    ssh_config: Optional[Path] = None
    # Asked once per run, only if a host has `sudo: password` and NETVIZ_SUDO_PASSWORD is unset.
    ask_sudo_password: Optional[Callable[[], Optional[str]]] = None
    window: float = 0.0  # --window: seconds every machine observes (0: one instant, as always)
    keep_for: Optional[float] = None  # --keep: prune runs older than this (seconds), not the newest 30


@dataclass
class CollectOutcome:
    """One collected run: a result per machine and the cached run they were written to."""

    results: list[HostResult]
    run: Run
    warnings: list[str] = field(default_factory=list)
    # the inventory's groups (name -> machine names): --only/--exclude accept group names
    groups: dict[str, list[str]] = field(default_factory=dict)
    # Why the run is not in the cache (a full disk): `run` is then only in memory, and the
    # failed machines' last good snapshots come from `previous`, the cache's latest run.
    cache_problem: Optional[str] = None
    previous: Optional[Run] = None
    # --window: the machines whose window did not cover the group's (late, or a clock ahead)
    window_notes: list[str] = field(default_factory=list)
    # The fresh snapshots, by machine, kept in memory only when the run is not cached (with a
    # cache they are written as their machines answer and dropped: the map is drawn from the cache).
    snapshots: dict[str, "Snapshot"] = field(default_factory=dict)
    # The run's history is left to stitch_run, which records it from the snapshots it loads for
    # the map (collect_group(..., history_later=True): the run is loaded once, not twice).
    history_pending: bool = False
    cache_root: Optional[Path] = None

    @property
    def exit_code(self) -> int:
        whole = self.cache_problem is None and all(result.ok for result in self.results)
        return EXIT_OK if whole else EXIT_PARTIAL


def select_hosts(request: CollectRequest) -> list[HostSpec]:
    """The inventory's hosts named by --limit (all without it)."""
    return load_selection(request)[0]


def load_selection(request: CollectRequest) -> tuple[list[HostSpec], dict[str, list[str]]]:
    """The hosts named by --limit, and every inventory group with the machines it names."""
    assert request.inventory is not None
    ssh_config = load_ssh_config(request.ssh_config)
    inventory = load_inventory(request.inventory, ssh_config)
    hosts = inventory.select(request.limit)
    if not hosts:
        raise InventoryError(f"{request.inventory}: --limit selects no host")
    groups = {name: [host.name for host in inventory.select([name])] for name in inventory.groups}
    return hosts, groups


def sudo_password(hosts: Sequence[HostSpec], ask: Optional[Callable[[], Optional[str]]]) -> Optional[str]:
    """The sudo password, only if some host asks for one: the environment first, else one prompt."""
    if not any(host.sudo == SUDO_PASSWORD for host in hosts):
        return None
    password = os.environ.get(SUDO_PASSWORD_ENV)
    if password is None and ask is not None:
        password = ask()
    if password is not None and ("\n" in password or "\r" in password or "\0" in password):
        raise InventoryError(f"the sudo password (from {SUDO_PASSWORD_ENV} or the prompt) cannot contain a newline")
    return password


class _Recording:
    """The run being written to the cache, one machine at a time.

    Each snapshot is written as its machine answers and then dropped from memory (the result
    keeps a summary): collecting N machines holds about --parallel snapshots at once, not N.

    When the cache cannot be written (a full disk, a read-only file system), the snapshots
    already written are read back into memory, what was written of the run is removed at once
    (a run without a manifest would otherwise stay a day) and the collection goes on with every
    snapshot kept in memory (that fallback holds all of them), so the map is still drawn;
    `problem` says why the run is not cached. An unsafe cache (CacheError) is not caught: it
    stops everything.
    """

    def __init__(self, root: Path, started_at: float, window: Optional[WindowPlan] = None,
                 keep_for: Optional[float] = None) -> None:
        self.started_at = started_at
        self.window = window
        self.keep_for = keep_for
        self.problem: Optional[str] = None
        self.previous: Optional[Run] = None
        self._entries: dict[str, CachedHost] = {}  # what a run only in memory lists
        self.snapshots: dict[str, Snapshot] = {}  # only while the cache cannot be written
        self.lost: list[str] = []  # written snapshots that could not be read back (see _give_up)
        self._writer: Optional[RunWriter] = None
        try:
            self._writer = RunWriter(root, now=started_at)
            self.previous = self._writer.previous
            self.run_id = self._writer.run_id
        except CacheWriteError as error:
            self.problem = str(error)
            self.previous = latest_run(root, missing_ok=True)
            self.run_id = new_run_id(started_at)
        self.root = root

    @property
    def recorded(self) -> set[str]:
        """Names of the machines recorded so far."""
        return set(self._entries)

    def record(self, result: HostResult) -> None:
        """Write one machine's result into the run (its snapshot, atomically, at once), then drop
        the snapshot from the result (kept in memory only when the cache cannot be written)."""
        self._add(result.name, status=result.status, category=result.kind, message=result.message,
                  timings=result.timings.as_dict(), seconds=result.seconds, snapshot_json=result.snapshot_json,
                  collected_at=result.finished_at if result.ok else None)
        if self._writer is None and result.snapshot_json is not None:
            self.snapshots[result.name] = result.snapshot or _parsed(result)
        result.release()

    def record_unfinished(self, name: str) -> None:
        """A machine an interrupted run did not finish."""
        self._add(name, status=INTERRUPTED, category=INTERRUPTED, message="interrupted before it finished",
                  timings={}, seconds=0.0, snapshot_json=None, collected_at=None)

    def _add(self, name: str, *, status: str, category: Optional[str], message: str, timings: dict,
             seconds: float, snapshot_json: Optional[str], collected_at: Optional[float]) -> None:
        fresh = snapshot_json is not None
        self._entries[name] = CachedHost(name, status, category, message, timings, seconds,
                                         host_file_name(name) if fresh else None, False,
                                         self.run_id if fresh else None, collected_at)
        if self._writer is not None:
            try:
                self._writer.add(name, status=status, category=category, message=message, timings=timings,
                                 seconds=seconds, snapshot_json=snapshot_json, collected_at=collected_at)
            except CacheWriteError as error:
                self._give_up(error)

    def finish(self, *, order: Sequence[str] = (), groups: Optional[dict[str, list[str]]] = None,
               interrupted: bool = False) -> Run:
        """The run: written to the cache (manifest, `latest`), else only in memory."""
        if self._writer is not None:
            try:
                return self._writer.finish(order=order, groups=groups, interrupted=interrupted,
                                           window=_manifest_window(self.window), max_age=self.keep_for)
            except CacheWriteError as error:
                self._give_up(error)
        rank = {name: index for index, name in enumerate(order)}
        hosts = sorted(self._entries.values(), key=lambda entry: rank.get(entry.host, len(rank)))
        return Run(self.run_id, self.root / self.run_id, self.started_at, time.time(), tuple(hosts), interrupted,
                   {name: tuple(members) for name, members in (groups or {}).items()},
                   window=_manifest_window(self.window))

    def _give_up(self, error: CacheWriteError) -> None:
        """Stop writing the run: read back what was written (from now on every snapshot is
        kept in memory), then remove the run directory."""
        from netviz.errors import SnapshotError
        from netviz.snapshot import load_snapshot

        self.problem = str(error)
        if self._writer is not None:
            for entry in self._entries.values():
                path = self._writer.path / entry.snapshot if entry.snapshot else None
                if path is None or entry.host in self.snapshots or not os.path.lexists(path):
                    continue  # nothing fresh, or the snapshot whose write just failed (still in memory)
                try:
                    self.snapshots[entry.host] = load_snapshot(path, name=entry.host)
                except SnapshotError as problem:
                    self.lost.append(f"{entry.host}: its snapshot could not be read back ({problem})")
            self._writer.discard()
            self._writer = None

    def outcome(self, results: list[HostResult], run: Run, groups: Optional[dict[str, list[str]]] = None):
        """The CollectOutcome of this run."""
        warnings = []
        if self.problem is not None:
            warnings.append(f"the cache cannot be written ({self.problem}): run {run.run_id} is not cached "
                            "(what was written of it is removed); the map is drawn from the snapshots in memory")
            warnings.extend(self.lost)
        return CollectOutcome(results=results, run=run, warnings=warnings, groups=groups or {},
                              cache_problem=self.problem, previous=self.previous,
                              snapshots=self.snapshots if self.problem is not None else {}, cache_root=self.root)


def _parsed(result: HostResult) -> "Snapshot":
    """The snapshot of a result validated in a child process (only its JSON text came back)."""
    from netviz.snapshot import snapshot_from_bytes

    assert result.snapshot_json is not None
    return snapshot_from_bytes(result.snapshot_json.encode("utf-8"), result.name, result.name)


def _manifest_window(window: Optional[WindowPlan]) -> Optional[RunWindow]:
    """What the run's manifest records of the group's window."""
    return RunWindow(window.seconds, window.start_at) if window is not None else None


def collect_group(request: CollectRequest, reporter: Optional[Reporter] = None, *,
                  history_later: bool = False) -> CollectOutcome:
    """Collect every selected machine (or this machine alone) and write the run to the cache.

    Each snapshot is written as soon as its machine answers, then dropped from memory: the
    collection holds about `request.parallel` snapshots at once, whatever the number of
    machines (without a writable cache they are all kept in memory instead). The run's history
    is then recorded from the cache (a stitch of the run), or, with `history_later`, left to
    stitch_run (`netviz run`: the snapshots loaded for the map serve both).

    On SIGINT/SIGTERM (KeyboardInterrupt in the main thread) every connection is closed, the
    run's manifest is written marked interrupted, naming the machines that finished, and
    Interrupted is raised.
    """
    reporter = reporter or QuietReporter()
    started_at = time.time()
    cache_root = Path(request.cache_dir).expanduser() if request.cache_dir else default_cache_dir()
    hosts, groups, transport, window = _group_and_transport(request)
    recording = _Recording(cache_root, started_at, window, request.keep_for)

    def finished(result: HostResult) -> None:
        reporter.finished(result)
        # Written, then dropped from memory. A cache that cannot be written is given up (the
        # snapshots are then kept in memory), never raised across the pool.
        recording.record(result)

    reporter.begin(len(hosts))
    if window is not None:
        reporter.observing(window.start_at, window.seconds)
    try:
        results = collect(
            hosts,
            transport,
            parallel=request.parallel,
            on_start=lambda spec: reporter.started(spec.name),
            on_result=finished,
            keep_snapshots=False,  # each is written and dropped as it comes (see _Recording)
        )
    except Interrupted as interruption:
        raise _finish_interrupted(recording, hosts, interruption) from None
    finally:
        reporter.end()
    run = recording.finish(order=[spec.name for spec in hosts], groups=groups)
    outcome = recording.outcome(results, run, groups)
    outcome.window_notes = window_notes(results, window) if window is not None else []
    if outcome.cache_problem is None:  # the history follows the cache: a run not cached is not recorded
        if history_later:
            outcome.history_pending = True
        else:
            from netviz.history import record_collected

            problem = record_collected(cache_root, run, {})  # the run is read back from the cache
            if problem is not None:
                outcome.warnings.append(problem)
    return outcome


WINDOW_TOLERANCE = 1.0  # seconds a machine's window may be off the group's before it is said


def window_notes(results: Sequence[HostResult], window: WindowPlan) -> list[str]:
    """What the snapshots show of machines whose window did not cover the group's interval.

    Each machine's payload times its window by its own clock. A window that began more than
    WINDOW_TOLERANCE after the group's start began late (a slow login, a later wave of a pool
    smaller than the group, or a clock ahead of this one). A snapshot captured, by the
    machine's clock, after netviz received it proves a clock ahead by at least the difference
    (a clock behind cannot be told apart from a slow machine and is not reported).
    """
    notes = []
    for result in results:
        summary = result.summary  # what is kept of a snapshot once written to the cache
        if summary is None or summary.window_started_at is None:
            continue
        late = summary.window_started_at - window.start_at
        if late > WINDOW_TOLERANCE:
            notes.append(f"{result.name}: its window began {late:.1f} s after the group's (a slow login, "
                         "or its clock is ahead): flows with the other machines may be missed")
        ahead = summary.captured_at - result.finished_at
        if ahead > WINDOW_TOLERANCE:
            notes.append(f"{result.name}: its clock is at least {ahead:.1f} s ahead of this machine's: "
                         "its window covered an earlier interval by as much")
    return notes


def _group_and_transport(
    request: CollectRequest,
) -> tuple[list[HostSpec], dict[str, list[str]], Transport, Optional[WindowPlan]]:
    """The machines to collect, the inventory's groups, the transport that reaches them, and
    the group's observation window (None for an instant capture).

    Without an inventory the group is this machine alone: a group of one on the local transport
    (the payload in a child process, no SSH), collected on the same path as any inventory.
    The window's start is chosen last (after any sudo password prompt), just before the
    fan-out: see WindowPlan.starting_soon.
    """
    if request.inventory is None:
        if request.limit:
            raise InventoryError("--limit needs --inventory")
        here = local_target(socket.gethostname() or "localhost", LOCAL_COMMAND_TIMEOUT)
        # No login to wait for: the child starts the window at once (the shortest delay).
        window = _window_plan(request.window, [0.0])
        return [here], {}, LocalTransport(window), window
    hosts, groups = load_selection(request)
    password = sudo_password(hosts, request.ask_sudo_password)
    window = _window_plan(request.window, [host.connect_timeout for host in hosts])
    options = TransportOptions(
        known_hosts=KnownHosts(),
        accept_new_host_keys=request.accept_new_host_keys,
        sudo_password=password,
        window=window,
    )
    return hosts, groups, SSHTransport(options), window


def _window_plan(seconds: float, connect_timeouts: list[float]) -> Optional[WindowPlan]:
    """The group's window starting soon (None for an instant capture)."""
    if seconds <= 0:
        return None
    return WindowPlan.starting_soon(seconds, connect_timeouts, time.time())


def _finish_interrupted(recording: _Recording, hosts: Sequence[HostSpec], interruption: Interrupted) -> Interrupted:
    """Record what finished (some results may not be written yet) and what did not, write the
    manifest marked interrupted, and return the error to raise."""
    for result in interruption.finished:
        if result.name not in recording.recorded:
            recording.record(result)
    for spec in hosts:
        if spec.name not in recording.recorded:
            recording.record_unfinished(spec.name)
    run = recording.finish(interrupted=True, order=[spec.name for spec in hosts])
    done = len(interruption.finished)
    where = (f"run {run.run_id} ({run.path}) records what finished" if recording.problem is None
             else f"nothing was cached ({recording.problem})")
    return Interrupted(f"interrupted: {done} of {len(hosts)} machines had finished; {where}", interruption.finished)


def _uncached_inputs(collected: CollectOutcome) -> StitchInputs:
    """What to stitch when the run is not in the cache: its fresh snapshots (in memory: the
    paths are never read) and, for the machines that failed, their snapshot in the cache's
    latest run (if any), stale."""
    files, names = [], {}
    for host, path in collected.run.snapshot_files():
        if host.host not in collected.snapshots:
            continue  # written, then lost with the run (said in the warnings)
        files.append(path)
        names[path] = host.host
    stale: set[str] = set()
    warnings: list[str] = []
    failed = {host.host for host in collected.run.hosts if not host.snapshot}
    if collected.previous is not None and failed:
        earlier = run_inputs(collected.previous)
        for path in earlier.files:
            name = earlier.names[path]
            if name in failed:
                files.append(path)
                names[path] = name
                stale.add(name)
                warnings.append(f"{name}: failed; using its last good snapshot (run {collected.previous.run_id})")
    missing = sorted(failed - stale)
    if missing:
        warnings.append(f"no snapshot at all for: {', '.join(missing)}")
    return StitchInputs(tuple(files), names, frozenset(stale), tuple(warnings), {})


@dataclass
class Drawn:
    """A stitched and rendered group: the graph, the bytes to write (empty when no format was
    asked), and what to tell the user."""

    graph: "FlowGraph"
    data: bytes
    warnings: list[str]
    notices: list[str]  # what filters hid, terms that matched nothing


@dataclass
class RunOutcome:
    """A rendered run: the bytes to write, in `fmt`, and the exit code to leave with."""

    collected: CollectOutcome
    data: bytes
    fmt: Optional[str]
    graph: "FlowGraph"
    warnings: list[str]
    notices: list[str] = field(default_factory=list)  # what filters hid, terms that matched nothing

    @property
    def exit_code(self) -> int:
        return self.collected.exit_code


@dataclass
class StitchOutcome:
    """The `stitch` job's result; exit 3 when some snapshot given could not be loaded."""

    drawn: Drawn
    skipped: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.skipped else EXIT_OK


def draw(
    group: "LoadedGroup",
    fmt: Optional[str],
    *,
    stale: Collection[str] = (),
    groups: Mapping[str, Sequence[str]] = {},
    options: StitchOptions = StitchOptions(),
    render_options: RenderOptions = RenderOptions(),
    on_notice: Optional[Callable[[str], None]] = None,
    working: Working = _not_shown,
    on_stitched: Optional[Callable[["FlowGraph", StitchOptions], None]] = None,
) -> Drawn:
    """Stitch a loaded group with `options` and render it as `fmt` (None: stitch only).
    `on_stitched` sees the graph before it is drawn (the run's history reuses it)."""
    from netviz.filters import stitch_filtered
    from netviz.render import render

    options = options.knowing_groups(groups)
    render_options = render_options.knowing_groups(groups)  # a large HTML map's overview is by group
    with working(f"stitching {len(group.snapshots):,} snapshot{'' if len(group.snapshots) == 1 else 's'}"):
        graph, notices = stitch_filtered(group.snapshots, group_by=options.group_by.value,
                                         show_external=options.show_external, stale=stale, filters=options.filters)
    if on_stitched is not None:
        on_stitched(graph, options)
    data = b""
    if fmt is not None:
        with working(f"drawing {fmt}"):
            data = render(graph, fmt, on_notice=on_notice, options=render_options)
    return Drawn(graph, data, list(group.warnings), notices)


def stitch_snapshots(
    arguments: Sequence[Path],
    fmt: Optional[str],
    *,
    cache_dir: Optional[Path] = None,
    options: StitchOptions = StitchOptions(),
    render_options: RenderOptions = RenderOptions(),
    on_notice: Optional[Callable[[str], None]] = None,
    working: Working = _not_shown,
) -> StitchOutcome:
    """The `stitch` job: snapshot files, directories or cached runs (none: the latest run), loaded,
    stitched and rendered. Cached snapshots keep their inventory names and the run's groups."""
    inputs = stitch_inputs(arguments, cache_dir)
    with working("loading snapshots"):
        group = load_group(list(inputs.files), names=inputs.names)
    group = dataclasses.replace(group, warnings=tuple(inputs.warnings) + tuple(group.warnings))
    drawn = draw(group, fmt, stale=inputs.stale, groups=inputs.groups, options=options,
                 render_options=render_options, on_notice=on_notice, working=working)
    return StitchOutcome(drawn, group.skipped)


def stitch_run(
    collected: CollectOutcome,
    fmt: Optional[str],
    *,
    options: StitchOptions = StitchOptions(),
    render_options: RenderOptions = RenderOptions(),
    on_notice: Optional[Callable[[str], None]] = None,
) -> RunOutcome:
    """Stitch a collected run (fresh snapshots, plus stale ones of failed machines) and render it.

    A cached run is read back from the cache by the same loader as `netviz stitch` (its
    snapshots were dropped from memory as they were written); a run the cache could not take
    is drawn from the snapshots kept in memory, plus the failed machines' last good ones in
    the cache. With `collected.history_pending`, the run's history is recorded from the
    snapshots loaded here. Raises NothingCollected (exit 4) when no machine has any snapshot,
    fresh or stale.
    """
    if collected.cache_problem is None:
        inputs, preloaded = run_inputs(collected.run), {}
    else:
        inputs = _uncached_inputs(collected)
        preloaded = {path: collected.snapshots[name] for path, name in inputs.names.items()
                     if name in collected.snapshots}
    try:
        group = load_group(list(inputs.files), names=inputs.names, preloaded=preloaded)
    except SnapshotError as error:
        failed = ", ".join(f"{r.name} ({r.kind})" for r in collected.results if not r.ok)
        raise NothingCollected(f"no machine gave a usable snapshot: {failed or error}") from None
    history: list[str] = []

    def record_history(graph: Optional["FlowGraph"], used: StitchOptions) -> None:
        if collected.history_pending:
            history.extend(_record_history(collected, group, graph if _as_history_stitches(used) else None))

    if not group.snapshots:
        record_history(None, options)
        failed = ", ".join(f"{r.name} ({r.kind})" for r in collected.results)
        raise NothingCollected(f"no machine gave a usable snapshot: {failed}")
    drawn = draw(group, fmt, stale=inputs.stale, groups=collected.groups, options=options,
                 render_options=render_options, on_notice=on_notice, on_stitched=record_history)
    warnings = (list(collected.warnings) + history + collected.window_notes + list(inputs.warnings)
                + drawn.warnings)
    return RunOutcome(collected, drawn.data, fmt, drawn.graph, warnings, drawn.notices)


def _as_history_stitches(options: StitchOptions) -> bool:
    """Whether a map stitched with `options` is the graph the history records (by process, no
    outside peers, no filters): then the run is recorded from it instead of stitched twice."""
    return options.group_by is GroupBy.process and not options.show_external and not options.filters


def _record_history(collected: CollectOutcome, group: LoadedGroup, graph: Optional["FlowGraph"] = None) -> list[str]:
    """Record a cached run in the history from the graph just stitched for the map (when it is
    stitched as the history's) or from its snapshots just loaded; the warning, if any."""
    from netviz.history import record_collected

    collected.history_pending = False
    root = collected.cache_root if collected.cache_root is not None else collected.run.path.parent
    problem = record_collected(root, collected.run, {snapshot.name: snapshot for snapshot in group.snapshots},
                               stitched=graph)
    return [problem] if problem is not None else []

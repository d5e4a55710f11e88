"""The `run` and `collect` jobs: inventory -> collect -> cache -> snapshots -> stitch -> render.

Without an inventory the group is this machine alone: the payload runs here as a child process,
no SSH involved. Nothing here prints: progress goes to the callbacks of a Reporter, and the
caller (cli.py) writes the rendered bytes and exits with `exit_code`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

from netviz.cache import INTERRUPTED, Run, RunWriter, default_cache_dir, run_inputs
from netviz.collect import DEFAULT_PARALLEL, HostResult, collect, collect_local
from netviz.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    CacheError,
    Interrupted,
    InventoryError,
    NothingCollected,
    SnapshotError,
)
from netviz.inventory import SUDO_PASSWORD, HostSpec, load_inventory, load_ssh_config
from netviz.transport import SUDO_PASSWORD_ENV, KnownHosts, TransportOptions

if TYPE_CHECKING:
    from netviz.filters import FilterSpec
    from netviz.graph import FlowGraph

LOCAL_COMMAND_TIMEOUT = 120.0


class Reporter(Protocol):
    """Receives progress; console.py provides the terminal one."""

    def begin(self, total: int) -> None: ...

    def started(self, name: str) -> None: ...

    def finished(self, result: HostResult) -> None: ...

    def end(self) -> None: ...


class QuietReporter:
    """A Reporter that shows nothing (library use, tests)."""

    def begin(self, total: int) -> None:
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


@dataclass
class CollectOutcome:
    """One collected run: a result per machine and the cached run they were written to."""

    results: list[HostResult]
    run: Run
    warnings: list[str] = field(default_factory=list)
    # the inventory's groups (name -> machine names): --only/--exclude accept group names
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(result.ok for result in self.results) else EXIT_PARTIAL


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


def _record(writer: RunWriter, result: HostResult) -> None:
    """Write one machine's result into the run (its snapshot, atomically, at once)."""
    writer.add(
        result.name,
        status=result.status,
        category=result.kind,
        message=result.message,
        timings=result.timings.as_dict(),
        seconds=result.seconds,
        snapshot_json=result.snapshot_json,
        collected_at=result.finished_at if result.ok else None,
    )


def collect_group(request: CollectRequest, reporter: Optional[Reporter] = None) -> CollectOutcome:
    """Collect every selected machine (or this machine alone) and write the run to the cache.

    Each snapshot is written as soon as its machine answers. On SIGINT/SIGTERM (KeyboardInterrupt
    in the main thread) every connection is closed, the run's manifest is written marked
    interrupted, naming the machines that finished, and Interrupted is raised.
    """
    reporter = reporter or QuietReporter()
    started_at = time.time()
    cache_root = Path(request.cache_dir).expanduser() if request.cache_dir else default_cache_dir()
    if request.inventory is None:
        if request.limit:
            raise InventoryError("--limit needs --inventory")
        name = socket.gethostname() or "localhost"
        reporter.begin(1)
        try:
            reporter.started(name)
            results = [collect_local(name, timeout=LOCAL_COMMAND_TIMEOUT)]
            reporter.finished(results[0])
        finally:
            reporter.end()
        writer = RunWriter(cache_root, now=started_at)
        for result in results:
            _record(writer, result)
        return CollectOutcome(results=results, run=writer.finish())

    hosts, groups = load_selection(request)
    options = TransportOptions(
        known_hosts=KnownHosts(),
        accept_new_host_keys=request.accept_new_host_keys,
        sudo_password=sudo_password(hosts, request.ask_sudo_password),
    )
    writer = RunWriter(cache_root, now=started_at)
    write_errors: list[CacheError] = []

    def finished(result: HostResult) -> None:
        reporter.finished(result)
        if not write_errors:
            try:
                _record(writer, result)
            except CacheError as error:  # raised once the collection is over, not across the pool
                write_errors.append(error)

    reporter.begin(len(hosts))
    try:
        results = collect(
            hosts,
            options,
            parallel=request.parallel,
            on_start=lambda spec: reporter.started(spec.name),
            on_result=finished,
        )
    except Interrupted as interruption:
        raise _finish_interrupted(writer, hosts, interruption) from None
    finally:
        reporter.end()
    if write_errors:
        raise write_errors[0]
    return CollectOutcome(results=results, run=writer.finish(order=[spec.name for spec in hosts], groups=groups),
                          groups=groups)


def _finish_interrupted(writer: RunWriter, hosts: Sequence[HostSpec], interruption: Interrupted) -> Interrupted:
    """Record what finished (some results may not be written yet) and what did not, write the
    manifest marked interrupted, and return the error to raise."""
    for result in interruption.finished:
        if result.name not in writer.recorded:
            _record(writer, result)
    for spec in hosts:
        if spec.name not in writer.recorded:
            writer.add(spec.name, status=INTERRUPTED, category=INTERRUPTED,
                       message="interrupted before it finished", timings={}, seconds=0.0, snapshot_json=None)
    run = writer.finish(interrupted=True, order=[spec.name for spec in hosts])
    done = len(interruption.finished)
    return Interrupted(f"interrupted: {done} of {len(hosts)} machines had finished; run {run.run_id} "
                       f"({run.path}) records what finished", interruption.finished)


@dataclass
class RunOutcome:
    """A rendered run: the bytes to write, in `fmt`, and the exit code to leave with."""

    collected: CollectOutcome
    data: bytes
    fmt: str
    graph: "FlowGraph"
    warnings: list[str]
    notices: list[str] = field(default_factory=list)  # what filters hid, terms that matched nothing

    @property
    def exit_code(self) -> int:
        return self.collected.exit_code


def stitch_run(
    collected: CollectOutcome,
    fmt: str,
    *,
    group_by: str = "process",
    show_external: bool = False,
    on_notice: Optional[Callable[[str], None]] = None,
    filters: Optional["FilterSpec"] = None,
    detail: str = "auto",
) -> RunOutcome:
    """Stitch a collected run (fresh snapshots, plus stale ones of failed machines) and render it.

    Raises NothingCollected (exit 4) when no machine has any snapshot, fresh or stale.
    """
    from netviz.render import render
    from netviz.snapshot import load_snapshot
    from netviz.filters import stitch_filtered
    from netviz.group import one_capture_per_machine

    fresh = {result.name: result.snapshot for result in collected.results if result.snapshot is not None}
    inputs = run_inputs(collected.run)
    snapshots = []
    warnings = list(inputs.warnings)
    for path in inputs.files:
        name = inputs.names[path]
        snapshot = fresh.get(name)
        if snapshot is None:
            try:
                snapshot = load_snapshot(path, name=name)
            except SnapshotError as error:  # one damaged cached snapshot must not hide the others
                warnings.append(f"{error} (skipped)")
                continue
        warnings.extend(snapshot.warnings)
        snapshots.append(snapshot)
    # one machine listed twice in the inventory (an alias, another address) is drawn once
    snapshots = [snapshot for _, snapshot in one_capture_per_machine(
        [(snapshot.name, snapshot) for snapshot in snapshots], warnings)]
    if not snapshots:
        failed = ", ".join(f"{r.name} ({r.kind})" for r in collected.results)
        raise NothingCollected(f"no machine gave a usable snapshot: {failed}")
    if filters and not filters.groups:  # group names come from this run's inventory
        filters = dataclasses.replace(filters, groups=collected.groups)
    graph, notices = stitch_filtered(
        snapshots, group_by=group_by, show_external=show_external, stale=inputs.stale, filters=filters
    )
    data = render(graph, fmt, on_notice=on_notice, detail=detail)
    return RunOutcome(collected, data, fmt, graph, warnings, notices)

"""Runs on disk: `<cache>/<run-id>/<host>.json` plus `manifest.json`, and a `latest` pointer.

Writes are atomic (a temporary file in the same directory, then os.replace), files are 0600 and
directories 0700: snapshots list every command line of a machine. The manifest is written last,
so a run directory without one (a collector that crashed or was killed) is ignored. A run stopped
by SIGINT/SIGTERM writes its manifest marked `interrupted`, naming the machines that finished;
`latest` never points at it. A machine that fails in a run keeps its last good snapshot: it is
carried into the new run directory and marked stale, with the time it was captured, so `netviz
stitch` on the run still sees the whole group.

Several collectors may share a cache at once: each writes its own run directory, and `.lock`
(flock) serialises what they share: moving `latest` (never back to a run that started earlier),
pruning, and linking a previous run's snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from netviz.errors import CacheError

MANIFEST = "manifest.json"
LATEST = "latest"
MANIFEST_SCHEMA = "netviz.run/1"
KEEP_RUNS = 30  # older runs are pruned; stale snapshots are carried forward, so nothing is lost
LOCK = ".lock"
DISCARDED = ".discarded-"  # prefix of a run directory being deleted
ABANDONED_AFTER = 24 * 3600  # a run directory without a manifest this old belongs to a dead collector
INTERRUPTED = "interrupted"  # status and category of a machine a stopped run did not finish
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/netviz, else ~/.cache/netviz."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "netviz"


def host_file_name(name: str) -> str:
    """A file name for a host name that cannot escape the run directory nor hide as a dotfile."""
    safe = "".join(c if (c.isascii() and (c.isalnum() or c in "-_.@+")) else f"%{ord(c):02X}" for c in name)
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    return f"{safe}.json"


@dataclass(frozen=True)
class CachedHost:
    """One machine's line in a run manifest."""

    host: str
    status: str  # "ok" or "failed"
    category: Optional[str]
    message: str
    timings: dict
    seconds: float
    snapshot: Optional[str]  # file name in the run directory, None when nothing is known
    stale: bool  # the snapshot comes from an earlier run
    captured_run: Optional[str]  # the run that captured the snapshot
    collected_at: Optional[float]  # Unix time the snapshot was collected

    def age(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds since the snapshot was collected."""
        if self.collected_at is None:
            return None
        return max(0.0, (now if now is not None else time.time()) - self.collected_at)

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "status": self.status,
            "category": self.category,
            "message": self.message,
            "timings": self.timings,
            "seconds": round(self.seconds, 3),
            "snapshot": self.snapshot,
            "stale": self.stale,
            "captured_run": self.captured_run,
            "collected_at": self.collected_at,
        }


@dataclass(frozen=True)
class Run:
    """A run read back from the cache."""

    run_id: str
    path: Path
    started_at: float
    finished_at: float
    hosts: tuple[CachedHost, ...]
    interrupted: bool = False  # stopped by SIGINT/SIGTERM: only some machines finished
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # inventory groups, for --only/--exclude

    def snapshot_files(self) -> list[tuple[CachedHost, Path]]:
        """Every host that has a snapshot (fresh or stale), with its file."""
        return [(host, self.path / host.snapshot) for host in self.hosts if host.snapshot]

    def host(self, name: str) -> Optional[CachedHost]:
        """The manifest line of one machine, None if the run did not include it."""
        for entry in self.hosts:
            if entry.host == name:
                return entry
        return None


# ------------------------------------------------------------------------------------------
# atomic writes


def _make_dir(path: Path) -> None:
    # Missing parents too are created 0700 (pathlib would give them the umask's mode).
    if not path.parent.is_dir():
        _make_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold the cache's lock (shared by every collector using `root`) for the block."""
    descriptor = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` all at once, mode 0600 (readers see the old file or the new one)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _point_latest(root: Path, run_id: str, started_at: float) -> None:
    """Point `latest` at a run, unless it points at a run that started later (call locked)."""
    current = latest_run(root, missing_ok=True)
    if current is not None and (current.started_at, current.run_id) > (started_at, run_id):
        return  # a concurrent collector started after this one: its snapshots are newer
    temporary = root / f".{LATEST}.{secrets.token_hex(4)}"
    os.symlink(run_id, temporary)
    os.replace(temporary, root / LATEST)


# ------------------------------------------------------------------------------------------
# writing a run


class RunWriter:
    """Writes one run: snapshots as machines answer, then the manifest, then `latest`."""

    def __init__(self, root: Path, *, now: Optional[float] = None) -> None:
        self.root = Path(root).expanduser()
        self.started_at = now if now is not None else time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started_at))
        self.run_id = f"{stamp}-{secrets.token_hex(3)}"
        self.path = self.root / self.run_id
        try:
            _make_dir(self.root)
            self.path.mkdir(mode=0o700)
        except OSError as error:
            raise CacheError(f"cannot create cache directory {self.path}: {error.strerror or error}") from None
        self._previous = latest_run(self.root, missing_ok=True)
        self._hosts: list[CachedHost] = []

    @property
    def recorded(self) -> set[str]:
        """Names of the machines added so far."""
        return {entry.host for entry in self._hosts}

    def add(
        self,
        host: str,
        *,
        status: str,
        category: Optional[str],
        message: str,
        timings: dict,
        seconds: float,
        snapshot_json: Optional[str],
        collected_at: Optional[float] = None,
    ) -> CachedHost:
        """Record one machine. Without a snapshot, its last good one (if any) is carried, stale."""
        file_name = host_file_name(host)
        target = self.path / file_name
        try:
            if snapshot_json is not None:
                atomic_write(target, snapshot_json.encode("utf-8"))
                entry = CachedHost(host, status, category, message, timings, seconds, file_name, False,
                                   self.run_id, collected_at if collected_at is not None else time.time())
            else:
                entry = self._carry_forward(host, status, category, message, timings, seconds, target)
        except OSError as error:
            raise CacheError(f"cannot write {target}: {error.strerror or error}") from None
        self._hosts.append(entry)
        return entry

    def _carry_forward(self, host, status, category, message, timings, seconds, target: Path) -> CachedHost:
        previous = self._previous.host(host) if self._previous is not None else None
        if previous is None or not previous.snapshot:
            return CachedHost(host, status, category, message, timings, seconds, None, False, None, None)
        source = self._previous.path / previous.snapshot
        temporary = self.path / f".{target.name}.{secrets.token_hex(4)}.tmp"
        with _locked(self.root):  # a concurrent collector may be pruning the previous run
            if not source.is_file():
                return CachedHost(host, status, category, message, timings, seconds, None, False, None, None)
            try:
                os.link(source, temporary)  # same bytes, no copy
            except OSError:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle, open(source, "rb") as original:
                    shutil.copyfileobj(original, handle)
        os.replace(temporary, target)
        return CachedHost(host, status, category, message, timings, seconds, target.name, True,
                          previous.captured_run, previous.collected_at)

    def finish(
        self, *, now: Optional[float] = None, keep: int = KEEP_RUNS, interrupted: bool = False,
        order: Sequence[str] = (), groups: Optional[Mapping[str, Sequence[str]]] = None,
    ) -> Run:
        """Write the manifest, point `latest` at this run, prune old runs; return the run.

        Machines are listed in `order` (the inventory's; others after, as added). An
        interrupted run gets its manifest (what finished, what did not) but `latest` stays
        where it was: `netviz stitch RUN` still reads it, with a warning.
        """
        finished = now if now is not None else time.time()
        rank = {name: index for index, name in enumerate(order)}
        self._hosts.sort(key=lambda entry: rank.get(entry.host, len(rank)))
        document = {
            "schema": MANIFEST_SCHEMA,
            "run": self.run_id,
            "started_at": self.started_at,
            "finished_at": finished,
            "interrupted": interrupted,
            "hosts": [entry.as_dict() for entry in self._hosts],
            "groups": {name: list(members) for name, members in sorted((groups or {}).items())},
        }
        try:
            atomic_write(self.path / MANIFEST, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
            with _locked(self.root):
                if not interrupted:
                    _point_latest(self.root, self.run_id, self.started_at)
                prune(self.root, keep=keep)
        except OSError as error:
            raise CacheError(f"cannot write the manifest of {self.path}: {error.strerror or error}") from None
        return Run(self.run_id, self.path, self.started_at, finished, tuple(self._hosts), interrupted,
                   {name: tuple(members) for name, members in (groups or {}).items()})


# ------------------------------------------------------------------------------------------
# reading runs


def _read_groups(value: object) -> dict[str, tuple[str, ...]]:
    """The manifest's inventory groups (absent in older manifests: no groups)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(name, str) and isinstance(members, list) and all(isinstance(m, str) for m in members)
        for name, members in value.items()
    ):
        raise ValueError("groups: expected an object of lists of host names")
    return {name: tuple(members) for name, members in value.items()}


def read_run(path: Path) -> Run:
    """Read a run directory's manifest (validated: it may have been edited by hand)."""
    manifest = path / MANIFEST
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError(f"{path}: not a netviz run (no {MANIFEST}; an interrupted run?)") from None
    except (OSError, ValueError) as error:
        raise CacheError(f"{manifest}: unreadable: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != MANIFEST_SCHEMA:
        raise CacheError(f"{manifest}: not a {MANIFEST_SCHEMA} manifest")
    hosts = []
    try:
        for item in document["hosts"]:
            snapshot = item.get("snapshot")
            if snapshot is not None and (not isinstance(snapshot, str) or "/" in snapshot or snapshot.startswith(".")):
                raise ValueError(f"bad snapshot file name {snapshot!r}")
            hosts.append(
                CachedHost(
                    host=str(item["host"]),
                    status=str(item["status"]),
                    category=item.get("category"),
                    message=str(item.get("message", "")),
                    timings=dict(item.get("timings") or {}),
                    seconds=float(item.get("seconds", 0.0)),
                    snapshot=snapshot,
                    stale=bool(item.get("stale", False)),
                    captured_run=item.get("captured_run"),
                    collected_at=float(item["collected_at"]) if item.get("collected_at") is not None else None,
                )
            )
        return Run(str(document["run"]), path, float(document["started_at"]), float(document["finished_at"]),
                   tuple(hosts), document.get("interrupted") is True, _read_groups(document.get("groups")))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CacheError(f"{manifest}: malformed manifest: {error}") from None


def list_runs(root: Path) -> list[Path]:
    """Complete run directories (with a manifest), oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _RUN_ID.match(p.name) and (p / MANIFEST).is_file())


def latest_run(root: Path, *, missing_ok: bool = False) -> Optional[Run]:
    """The run `latest` points to (else the newest run with a manifest, preferring runs that
    were not interrupted)."""
    root = Path(root).expanduser()
    pointer = root / LATEST
    candidate: Optional[Path] = None
    if pointer.is_symlink() or pointer.exists():
        resolved = root / os.readlink(pointer) if pointer.is_symlink() else pointer
        if (resolved / MANIFEST).is_file():
            candidate = resolved
    if candidate is None:
        runs = list_runs(root)
        whole = [path for path in runs if not _manifest_says_interrupted(path)]
        candidate = (whole or runs or [None])[-1]
    if candidate is None:
        if missing_ok:
            return None
        raise CacheError(f"no collected run in {root}: run `netviz collect --inventory FILE` first")
    try:
        return read_run(candidate)
    except CacheError:
        if missing_ok:
            return None
        raise


def _manifest_says_interrupted(path: Path) -> bool:
    try:
        return read_run(path).interrupted
    except CacheError:
        return False


def find_run(root: Path, name: str) -> Optional[Run]:
    """A run by its id (or `latest`) in the cache, None if there is no such run."""
    if name == LATEST:
        return latest_run(root, missing_ok=True)
    if not _RUN_ID.match(name):
        return None
    path = Path(root).expanduser() / name
    return read_run(path) if (path / MANIFEST).is_file() else None


def prune(root: Path, *, keep: int = KEEP_RUNS, now: Optional[float] = None) -> list[Path]:
    """Delete all but the newest `keep` runs, and run directories without a manifest left by a
    collector that died (untouched for ABANDONED_AFTER seconds); return them."""
    runs = list_runs(root)
    removed = []
    latest = latest_run(root, missing_ok=True)
    for path in runs[: max(0, len(runs) - keep)]:
        if latest is not None and path == latest.path:
            continue
        _discard(root, path)
        removed.append(path)
    limit = (now if now is not None else time.time()) - ABANDONED_AFTER
    for path in root.iterdir():
        if path.name.startswith(DISCARDED):
            shutil.rmtree(path, ignore_errors=True)  # a deletion cut short by a crash
            continue
        if not _RUN_ID.match(path.name) or (path / MANIFEST).exists():
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < limit:
                _discard(root, path)
                removed.append(path)
    return removed


def _discard(root: Path, path: Path) -> None:
    """Delete a run directory. It is renamed out of sight first: a crash in the middle of the
    deletion must not leave a run whose manifest names snapshots that are gone."""
    hidden = root / f"{DISCARDED}{path.name}"
    try:
        os.rename(path, hidden)
    except OSError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# what `netviz stitch` reads


@dataclass(frozen=True)
class StitchInputs:
    """Snapshot files to stitch, the inventory names they carry, and what to tell the user."""

    files: tuple[Path, ...]
    names: dict[Path, str]  # file -> machine name (the inventory name, for cached runs)
    stale: frozenset[str]  # names whose snapshot comes from an earlier run
    warnings: tuple[str, ...]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # inventory groups of the runs read


def describe_age(seconds: float) -> str:
    """`42 s`, `7 min`, `3 h`, `2 d`: a rough age for messages."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def run_inputs(run: Run, *, now: Optional[float] = None) -> StitchInputs:
    """The snapshots of a run: fresh ones and stale ones (each stale one with a warning)."""
    files: list[Path] = []
    names: dict[Path, str] = {}
    stale: set[str] = set()
    warnings: list[str] = []
    for host, path in run.snapshot_files():
        files.append(path)
        names[path] = host.host
        if host.stale:
            stale.add(host.host)
            age = host.age(now)
            when = f"{describe_age(age)} old" if age is not None else "of unknown age"
            warnings.append(f"{host.host}: {host.category or 'failed'} in run {run.run_id}; using its last good "
                            f"snapshot ({when}, run {host.captured_run})")
    if run.interrupted:
        done = sum(1 for host in run.hosts if host.status != INTERRUPTED)
        warnings.append(f"run {run.run_id} was interrupted: {done} of {len(run.hosts)} machines finished; "
                        "the others are drawn from their last good snapshot, if any")
    missing = [host.host for host in run.hosts if not host.snapshot]
    if missing:
        warnings.append(f"no snapshot at all for: {', '.join(missing)}")
    return StitchInputs(tuple(files), names, frozenset(stale), tuple(warnings), dict(run.groups))


def stitch_inputs(arguments: Sequence[Path], cache_dir: Optional[Path] = None) -> StitchInputs:
    """Resolve `netviz stitch` arguments: nothing -> the latest cached run; a run id or a run
    directory -> that run; anything else (snapshot files, plain directories) as given."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if not arguments:
        run = latest_run(root)
        assert run is not None
        return run_inputs(run)
    files: list[Path] = []
    names: dict[Path, str] = {}
    stale: set[str] = set()
    warnings: list[str] = []
    groups: dict[str, tuple[str, ...]] = {}
    for argument in arguments:
        inputs = _one_input(Path(argument), root)
        files.extend(inputs.files)
        names.update(inputs.names)
        stale |= inputs.stale
        warnings.extend(inputs.warnings)
        for name, members in inputs.groups.items():
            groups[name] = tuple(dict.fromkeys(groups.get(name, ()) + members))
    return StitchInputs(tuple(files), names, frozenset(stale), tuple(warnings), groups)


def _one_input(argument: Path, root: Path) -> StitchInputs:
    if argument.is_dir() and (argument / MANIFEST).is_file():
        return run_inputs(read_run(argument))
    if not argument.exists() and len(argument.parts) == 1:
        run = find_run(root, argument.name)
        if run is not None:
            return run_inputs(run)
    return StitchInputs((argument,), {}, frozenset(), ())



def load_stitch_group(arguments: Sequence[Path], cache_dir: Optional[Path] = None):
    """Load what `netviz stitch` was given (see stitch_inputs) as a group.

    Returns (netviz.group.LoadedGroup, names of stale machines, inventory groups of the runs
    read). Cached snapshots keep their inventory names; the warnings say which snapshots are
    stale and how old.
    """
    import dataclasses

    from netviz.group import load_group

    inputs = stitch_inputs(arguments, cache_dir)
    group = load_group(list(inputs.files), names=inputs.names)
    group = dataclasses.replace(group, warnings=tuple(inputs.warnings) + tuple(group.warnings))
    return group, inputs.stale, inputs.groups

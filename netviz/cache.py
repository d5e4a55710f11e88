"""Runs on disk: `<cache>/<run-id>/<host>.json` plus `manifest.json`, and a `latest` pointer.

Snapshots list every command line of a machine, so the cache is private and trusted only while
it stays so. A cache directory that another user owns or can write (or whose parents another
user can write, as OpenSSH checks ~/.ssh) is refused; nothing inside it is reached through a
symbolic link (the `latest` pointer is a link, but only its text is used: a run id, looked up in
the cache). Files are written by netviz.files (a temporary file with an unguessable name, then
a rename), mode 0600, in 0700 directories. The manifest is written last, so a run directory
without one (a collector that crashed or was killed) is ignored. A run stopped by SIGINT/SIGTERM
writes its manifest marked `interrupted`, naming the machines that finished; `latest` never
points at it. A machine that fails in a run keeps its last good snapshot: it is carried into the
new run directory and marked stale, with the time it was captured, so `netviz stitch` on the run
still sees the whole group.

Several collectors may share a cache at once: each writes its own run directory, and `.lock`
(flock) serialises what they share: numbering runs, moving `latest` (never back to a run that
started earlier), pruning, and linking a previous run's snapshot. Runs are ordered by the
number the cache gave each when it started (kept in `.lock`, incremented under the lock), never
by a time a file claims: a run collected while the clock said 2100 does not stay `latest`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Optional, Sequence

from netviz.errors import CacheError
from netviz.files import read_regular_file, write_file

MANIFEST = "manifest.json"
LATEST = "latest"
MANIFEST_SCHEMA = "netviz.run/1"
KEEP_RUNS = 30  # older runs are pruned; stale snapshots are carried forward, so nothing is lost
LOCK = ".lock"
DISCARDED = ".discarded-"  # prefix of a run directory being deleted
ABANDONED_AFTER = 24 * 3600  # a run directory without a manifest this old belongs to a dead collector
INTERRUPTED = "interrupted"  # status and category of a machine a stopped run did not finish
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # 20,000 machines take about 5 MB


class CacheWriteError(CacheError):
    """The cache could not be written (a full disk, a read-only file system). `netviz run`
    still draws its map from the snapshots in memory; an unsafe cache is a plain CacheError."""


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/netviz, else ~/.cache/netviz."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "netviz"


def host_file_name(name: str) -> str:
    """A file name for a host name that cannot escape the run directory, hide as a dotfile nor
    be one of the run's own files (`manifest.json`). One name, one file: `%` is always escaped."""
    safe = "".join(c if (c.isascii() and (c.isalnum() or c in "-_.@+")) else f"%{ord(c):02X}" for c in name)
    if safe.startswith(".") or f"{safe}.json".lower() == MANIFEST:
        safe = f"%{ord(safe[0]):02X}" + safe[1:]
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
class RunWindow:
    """The observation window a run's machines were given (--window): its length and the Unix
    time it started at, by the collector's clock."""

    seconds: float
    start_at: float


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
    sequence: Optional[int] = None  # the cache's number for the run (its order); None in older runs
    window: Optional[RunWindow] = None  # --window; None for an instant capture and in older runs

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
# a cache only its owner can write


def trusted_cache_dir(root: Path, *, create: bool = False) -> Path:
    """The cache directory, resolved (links in its path followed once, here), after checking
    that no other user can write it or replace it, as OpenSSH checks ~/.ssh.

    Refused (CacheError): a cache owned by another user, or that group or others can write; a
    parent (up to the user's home directory, else up to /) that belongs to neither root nor
    the user, or that group or others can write unless it is sticky (/tmp is fine). With
    `create`, missing directories are created 0700 first (a failure: CacheWriteError).
    """
    root = Path(root).expanduser()
    if create:
        try:
            _make_dir(root)
        except OSError as error:
            raise CacheWriteError(f"cannot create the cache directory {root}: {error.strerror or error}") from None
    elif not os.path.lexists(root):
        return root  # nothing to trust yet: readers find no run
    real = Path(os.path.realpath(root))
    problem = _untrusted_because(real)
    if problem:
        raise CacheError(f"refusing the cache {root}: {problem}; another user could plant or swap runs there")
    return real


def _untrusted_because(real: Path) -> Optional[str]:
    """Why another user could change what is in `real` (a resolved path), None if none can."""
    uid = os.geteuid()
    try:
        info = os.stat(real)
        if not stat.S_ISDIR(info.st_mode):
            return f"{real} is not a directory"
        if info.st_uid != uid:
            return f"{real} belongs to uid {info.st_uid}, not to you (uid {uid})"
        if info.st_mode & 0o022:
            return f"{real} can be written by its group or others (mode {stat.S_IMODE(info.st_mode):04o})"
        home = _home()
        for parent in real.parents:
            info = os.stat(parent)
            if info.st_uid not in (0, uid):
                return f"its parent {parent} belongs to uid {info.st_uid}"
            if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
                return (f"its parent {parent} can be written by its group or others and is not sticky "
                        f"(mode {stat.S_IMODE(info.st_mode):04o})")
            if parent == home:
                break
    except OSError as error:
        return f"cannot check {error.filename or real}: {error.strerror or error}"
    return None


def _home() -> Optional[Path]:
    try:
        return Path(os.path.realpath(Path.home()))
    except (KeyError, RuntimeError):
        return None


def _is_directory(path: Path) -> bool:
    """A real directory, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_regular(path: Path) -> bool:
    """A regular file, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# the lock, run numbers, `latest`


def _make_dir(path: Path) -> None:
    # Missing parents too are created 0700 (pathlib would give them the umask's mode).
    if not path.parent.is_dir():
        _make_dir(path.parent)
    path.mkdir(mode=0o700, exist_ok=True)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[int]:
    """Hold the cache's lock (shared by every collector using `root`) for the block; yields
    the lock file's descriptor (it also keeps the last run number). Never opened through a link."""
    path = root / LOCK
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise CacheError(f"{path}: is a symbolic link: refused") from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise CacheError(f"{path}: not a regular file of yours: refused")
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield descriptor
    finally:
        os.close(descriptor)  # releases the lock


def _next_sequence(root: Path, lock: int) -> int:
    """The next run number (call locked). The last one is kept in the lock file; if that was
    lost (an older cache, a crash mid-write), the highest number any manifest records."""
    try:
        last = int(os.pread(lock, 32, 0).decode("ascii").strip())
    except (ValueError, UnicodeDecodeError):
        last = max((run.sequence for _, run in _listed(root) if run is not None and run.sequence is not None),
                   default=0)
    number = max(last, 0) + 1
    text = f"{number}\n".encode()
    if os.pwrite(lock, text, 0) != len(text):
        raise OSError(errno.ENOSPC, "short write")
    os.ftruncate(lock, len(text))
    return number


def _order(run: Optional[Run], path: Path) -> tuple:
    """Runs in the order the cache numbered them when they started; runs written before runs
    were numbered come first, by their start time; unreadable ones before all."""
    if run is None:
        return (-1, 0, 0.0, path.name)
    if run.sequence is None:
        return (0, 0, run.started_at, run.run_id)
    return (1, run.sequence, 0.0, run.run_id)


def _point_latest(root: Path, run: Run) -> None:
    """Point `latest` at a run, unless it points at a run that started later (call locked)."""
    current = _latest(root, missing_ok=True)
    if current is not None and _order(current, current.path) > _order(run, run.path):
        return  # a concurrent collector started after this one: its snapshots are newer
    temporary = root / f".{LATEST}.{secrets.token_hex(8)}"
    os.symlink(run.run_id, temporary)  # fails, never follows, if the name exists
    os.replace(temporary, root / LATEST)


def _pointed_run(root: Path) -> Optional[Path]:
    """The run directory `latest` names: its text must be a run id, the run a real directory
    of the cache with a manifest. Anything else (a directory, a file, a link elsewhere) is ignored."""
    try:
        target = os.readlink(root / LATEST)
    except OSError:
        return None
    path = root / target
    if not _RUN_ID.match(target) or not _is_directory(path) or not _is_regular(path / MANIFEST):
        return None
    return path


# ------------------------------------------------------------------------------------------
# writing a run


def new_run_id(started_at: float) -> str:
    """A run id: the UTC start time and a random suffix (`20261125T142304Z-d64875`)."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started_at))}-{secrets.token_hex(3)}"


class RunWriter:
    """Writes one run: snapshots as machines answer, then the manifest, then `latest`.

    Raises CacheError for a cache another user could change, CacheWriteError when the cache
    cannot be written (then `discard` removes what was written)."""

    def __init__(self, root: Path, *, now: Optional[float] = None) -> None:
        self.root = trusted_cache_dir(root, create=True)
        self.started_at = now if now is not None else time.time()
        self.run_id = new_run_id(self.started_at)
        self.path = self.root / self.run_id
        try:
            with _locked(self.root) as lock:
                self.sequence = _next_sequence(self.root, lock)
            self.path.mkdir(mode=0o700)
        except OSError as error:
            raise CacheWriteError(f"cannot create the run directory {self.path}: {error.strerror or error}") from None
        self.previous = _latest(self.root, missing_ok=True)  # where failed machines' snapshots come from
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
                write_file(target, snapshot_json.encode("utf-8"), special=False)
                entry = CachedHost(host, status, category, message, timings, seconds, file_name, False,
                                   self.run_id, collected_at if collected_at is not None else time.time())
            else:
                entry = self._carry_forward(host, status, category, message, timings, seconds, target)
        except OSError as error:
            raise CacheWriteError(f"cannot write {target}: {error.strerror or error}") from None
        self._hosts.append(entry)
        return entry

    def _carry_forward(self, host, status, category, message, timings, seconds, target: Path) -> CachedHost:
        previous = self.previous.host(host) if self.previous is not None else None
        nothing = CachedHost(host, status, category, message, timings, seconds, None, False, None, None)
        if previous is None or not previous.snapshot:
            return nothing
        source = self.previous.path / previous.snapshot
        temporary = self.path / f".{target.name}.{secrets.token_hex(8)}.tmp"
        with _locked(self.root):  # a concurrent collector may be pruning the previous run
            if not _is_regular(source):  # pruned meanwhile; a link is never followed
                return nothing
            try:
                os.link(source, temporary, follow_symlinks=False)  # same bytes, no copy
            except OSError:
                _copy_regular(source, temporary)
        os.replace(temporary, target)
        return CachedHost(host, status, category, message, timings, seconds, target.name, True,
                          previous.captured_run, previous.collected_at)

    def finish(
        self, *, now: Optional[float] = None, keep: int = KEEP_RUNS, interrupted: bool = False,
        order: Sequence[str] = (), groups: Optional[Mapping[str, Sequence[str]]] = None,
        window: Optional[RunWindow] = None, max_age: Optional[float] = None,
    ) -> Run:
        """Write the manifest, point `latest` at this run, prune old runs; return the run.

        Machines are listed in `order` (the inventory's; others after, as added). An
        interrupted run gets its manifest (what finished, what did not) but `latest` stays
        where it was: `netviz stitch RUN` still reads it, with a warning. `max_age`: prune by
        age (seconds) rather than keep the newest `keep` runs.
        """
        finished = now if now is not None else time.time()
        rank = {name: index for index, name in enumerate(order)}
        self._hosts.sort(key=lambda entry: rank.get(entry.host, len(rank)))
        document = {
            "schema": MANIFEST_SCHEMA,
            "run": self.run_id,
            "sequence": self.sequence,
            "started_at": self.started_at,
            "finished_at": finished,
            "interrupted": interrupted,
            "hosts": [entry.as_dict() for entry in self._hosts],
            "groups": {name: list(members) for name, members in sorted((groups or {}).items())},
        }
        if window is not None:  # optional keys: an instant run's manifest is as before
            document["window_seconds"] = window.seconds
            document["window_start_at"] = window.start_at
        run = Run(self.run_id, self.path, self.started_at, finished, tuple(self._hosts), interrupted,
                  {name: tuple(members) for name, members in (groups or {}).items()}, self.sequence, window)
        try:
            text = json.dumps(document, indent=2, sort_keys=True) + "\n"
            write_file(self.path / MANIFEST, text.encode(), special=False)
            with _locked(self.root):
                if not interrupted:
                    _point_latest(self.root, run)
                prune(self.root, keep=keep, max_age=max_age)
        except OSError as error:
            raise CacheWriteError(f"cannot write the manifest of {self.path}: {error.strerror or error}") from None
        return run

    def discard(self) -> None:
        """Remove the run directory and whatever was written in it (after a CacheWriteError: a
        half-written run must not wait a day to be pruned, nor keep the disk full)."""
        with contextlib.suppress(OSError, CacheError), _locked(self.root):
            if _pointed_run(self.root) == self.path:  # its manifest was written, `latest` moved
                os.unlink(self.root / LATEST)
        _discard(self.root, self.path)


def _copy_regular(source: Path, target: Path) -> None:
    """Copy a regular file (never through a link) into a new file, mode 0600."""
    with open(os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as original:
        if not stat.S_ISREG(os.fstat(original.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(source))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(target, flags, 0o600), "wb") as handle:
            shutil.copyfileobj(original, handle)


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


def _read_sequence(value: object) -> Optional[int]:
    """The run's number (absent in manifests written before runs were numbered)."""
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise ValueError(f"sequence: expected a number, not {type(value).__name__}")
    return value


def _read_window(document: dict) -> Optional[RunWindow]:
    """The run's window (absent for instant runs and in manifests written before windows)."""
    seconds, start_at = document.get("window_seconds"), document.get("window_start_at")
    if seconds is None and start_at is None:
        return None
    if not all(type(value) in (int, float) and math.isfinite(value) and value >= 0 for value in (seconds, start_at)):
        raise ValueError("window_seconds/window_start_at: expected two numbers")
    return RunWindow(float(seconds), float(start_at))


def _snapshot_name(value: object) -> Optional[str]:
    """A snapshot's file name from a manifest: a plain name in the run directory. The run's own
    manifest is no snapshot: an older netviz wrote a host named `manifest` there, and lost it."""
    if value is None or value == MANIFEST:
        return None
    if not isinstance(value, str) or not value or "/" in value or value.startswith(".") or "\0" in value:
        raise ValueError(f"bad snapshot file name {value!r:.80}")
    return value


def read_run(path: Path) -> Run:
    """Read a run directory's manifest (validated: it may have been edited by hand; never read
    through a link)."""
    manifest = path / MANIFEST
    try:
        data = read_regular_file(manifest, MAX_MANIFEST_BYTES)
        if len(data) > MAX_MANIFEST_BYTES:
            raise CacheError(f"{manifest}: larger than {MAX_MANIFEST_BYTES} bytes")
        document = json.loads(data)
    except FileNotFoundError:
        raise CacheError(f"{path}: not a netviz run (no {MANIFEST}; an interrupted run?)") from None
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise CacheError(f"{manifest}: unreadable: {reason}") from None
    if not isinstance(document, dict) or document.get("schema") != MANIFEST_SCHEMA:
        raise CacheError(f"{manifest}: not a {MANIFEST_SCHEMA} manifest")
    hosts = []
    try:
        for item in document["hosts"]:
            hosts.append(
                CachedHost(
                    host=str(item["host"]),
                    status=str(item["status"]),
                    category=item.get("category"),
                    message=str(item.get("message", "")),
                    timings=dict(item.get("timings") or {}),
                    seconds=float(item.get("seconds", 0.0)),
                    snapshot=_snapshot_name(item.get("snapshot")),
                    stale=bool(item.get("stale", False)),
                    captured_run=item.get("captured_run"),
                    collected_at=float(item["collected_at"]) if item.get("collected_at") is not None else None,
                )
            )
        return Run(str(document["run"]), path, float(document["started_at"]), float(document["finished_at"]),
                   tuple(hosts), document.get("interrupted") is True, _read_groups(document.get("groups")),
                   _read_sequence(document.get("sequence")), _read_window(document))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CacheError(f"{manifest}: malformed manifest: {error}") from None


def _listed(root: Path) -> list[tuple[Path, Optional[Run]]]:
    """Complete run directories (real directories with a manifest), each with its run (None if
    the manifest cannot be read), in the order the cache numbered them (oldest first)."""
    if not _is_directory(root):
        return []
    entries = []
    for path in root.iterdir():
        if not _RUN_ID.match(path.name) or not _is_directory(path) or not _is_regular(path / MANIFEST):
            continue
        try:
            entries.append((path, read_run(path)))
        except CacheError:
            entries.append((path, None))
    return sorted(entries, key=lambda entry: _order(entry[1], entry[0]))


def list_runs(root: Path) -> list[Path]:
    """Complete run directories (with a manifest), oldest first (in the order they started)."""
    root = trusted_cache_dir(root)
    return [path for path, _ in _listed(root)]


def latest_run(root: Path, *, missing_ok: bool = False) -> Optional[Run]:
    """The run `latest` points to (else the newest run with a manifest, preferring runs that
    were not interrupted)."""
    return _latest(trusted_cache_dir(root), missing_ok=missing_ok)


def _latest(root: Path, *, missing_ok: bool) -> Optional[Run]:
    pointed = _pointed_run(root)
    if pointed is not None:
        with contextlib.suppress(CacheError):
            return read_run(pointed)
    listed = _listed(root)
    readable = [run for _, run in listed if run is not None]
    whole = [run for run in readable if not run.interrupted]
    if whole or readable:
        return (whole or readable)[-1]
    if missing_ok:
        return None
    if listed:
        read_run(listed[-1][0])  # raises, saying why it cannot be read
    raise CacheError(f"no collected run in {root}: run `netviz collect --inventory FILE` first")


def find_run(root: Path, name: str) -> Optional[Run]:
    """A run by its id (or `latest`) in the cache, None if there is no such run."""
    root = trusted_cache_dir(root)
    if name == LATEST:
        return _latest(root, missing_ok=True)
    if not _RUN_ID.match(name):
        return None
    path = root / name
    return read_run(path) if _is_directory(path) and _is_regular(path / MANIFEST) else None


def prune(root: Path, *, keep: int = KEEP_RUNS, now: Optional[float] = None,
          max_age: Optional[float] = None) -> list[Path]:
    """Delete all but the newest `keep` runs (with `max_age`: the runs started more than that
    many seconds ago instead), and run directories without a manifest left by a collector that
    died (untouched for ABANDONED_AFTER seconds); return them. `latest` is always kept."""
    root = trusted_cache_dir(root)
    listed = _listed(root)
    if max_age is None:
        old = [path for path, _ in listed[: max(0, len(listed) - keep)]]
    else:
        oldest = (now if now is not None else time.time()) - max_age
        old = [path for path, run in listed if run is not None and run.started_at < oldest]
    removed = []
    latest = _latest(root, missing_ok=True)
    for path in old:
        if latest is not None and path == latest.path:
            continue
        _discard(root, path)
        removed.append(path)
    limit = (now if now is not None else time.time()) - ABANDONED_AFTER
    for path in root.iterdir():
        if path.name.startswith(DISCARDED):
            shutil.rmtree(path, ignore_errors=True)  # a deletion cut short by a crash
            continue
        if not _RUN_ID.match(path.name) or os.path.lexists(path / MANIFEST):
            continue
        with contextlib.suppress(OSError):
            if _is_directory(path) and path.stat().st_mtime < limit:
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
    refused: list[str] = []
    for host, path in run.snapshot_files():
        if os.path.lexists(path) and not _is_regular(path):  # a link planted in the run: never followed
            refused.append(f"{host.host}: {path} is not a regular file (a symbolic link?): refused")
            continue
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
    warnings.extend(refused)
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

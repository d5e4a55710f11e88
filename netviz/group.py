"""Load the snapshots of one group from files and directories, each machine under a unique name.

Machines are told apart by name, never merged: two snapshots that share a hostname (cloned VMs,
images that all call themselves `localhost`) stay two machines, named after their files. The
exact same snapshot given twice (the same file, or two files with identical bytes) is kept once,
with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from netviz.errors import SnapshotError
from netviz.snapshot import CheckedStrings, Snapshot, read_snapshot_bytes, snapshot_from_bytes


@dataclass(frozen=True)
class LoadedGroup:
    """The snapshots of a group (names unique, in the order given) and what to tell the user."""

    snapshots: tuple[Snapshot, ...]
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files refused as snapshots (each said in `warnings`)


def snapshot_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories expand to their `*.json` files, sorted (not recursive)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(child for child in path.glob("*.json") if child.is_file())
            if not found:
                raise SnapshotError(f"{path}: directory holds no *.json snapshot")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise SnapshotError(f"{path}: no such snapshot file or directory")
    return files


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a group loads.

    Loading builds millions of objects (JSON trees, then records) and no reference cycle among
    them, so the collector frees nothing; but it runs again and again as they pile up, each full
    pass walking everything loaded so far (1.9 s of 7.1 s for 1,000 machines of 1,000 sockets). The
    collector is process-wide: this is meant for the main thread of the command line.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():  # (unless the program keeps objects frozen on purpose)
            # What was loaded is there to stay: put it in the oldest generation at once, rather
            # than have the next collections walk it again generation by generation.
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def load_group(paths: Sequence[Path], *, names: Optional[Mapping[Path, str]] = None) -> LoadedGroup:
    """Load every snapshot under `paths` and give each machine a unique name.

    `names` gives the name of some files' machines (the inventory names of cached snapshots);
    the others are known by their hostnames. A file that cannot be read or is not a valid
    snapshot is skipped with a warning: a snapshot is untrusted (its machine may be compromised)
    and one bad file must not hide the others. Raises SnapshotError when a path is missing or no
    file gave a snapshot.
    """
    names = names or {}
    strings = CheckedStrings()  # addresses and states recur across the machines of a group
    warnings: list[str] = []
    seen_files: set[Path] = set()
    seen_digests: dict[bytes, Path] = {}
    loaded: list[tuple[Path, Snapshot]] = []
    refused: list[tuple[Path, str]] = []  # (file, why it is not a snapshot)
    with _cyclic_gc_paused():
        for path in snapshot_files(paths):
            resolved = path.resolve()
            if resolved in seen_files:
                warnings.append(f"{path}: given twice; loaded once")
                continue
            seen_files.add(resolved)
            try:
                data = read_snapshot_bytes(path)
                # the same bytes twice are the same snapshot (a copied file)
                digest = hashlib.sha256(data).digest()
                if digest in seen_digests:
                    warnings.append(f"{path}: the same snapshot as {seen_digests[digest]}; loaded once")
                    continue
                seen_digests[digest] = path
                snapshot = snapshot_from_bytes(data, str(path), names.get(path), strings=strings)
            except SnapshotError as error:
                refused.append((path, str(error)))
                warnings.append(f"{error} (skipped)")
                continue
            warnings.extend(
                warning if warning.startswith(str(path)) else f"{path}: {warning}" for warning in snapshot.warnings
            )
            loaded.append((path, snapshot))
    if refused and not loaded:  # nothing to draw: the input itself is wrong
        if len(refused) == 1:
            raise SnapshotError(refused[0][1])
        shown = "; ".join(why for _, why in refused[:3]) + (f"; and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise SnapshotError(f"no usable snapshot: {shown}")
    unique = unique_names([(path, snapshot.name) for path, snapshot in loaded], warnings)
    snapshots = tuple(
        snapshot if snapshot.name == name else dataclasses.replace(snapshot, name=name)
        for (path, snapshot), name in zip(loaded, unique)
    )
    return LoadedGroup(snapshots=snapshots, warnings=tuple(warnings),
                       skipped=tuple(str(path) for path, _ in refused))


def unique_names(entries: Sequence[tuple[Path, str]], warnings: list[str]) -> list[str]:
    """Keep each snapshot's own name when it is unique; snapshots sharing one are named after their
    files (stem, then parent/stem, then a numeric suffix), with a warning."""
    by_name: dict[str, list[int]] = {}
    for index, (_, name) in enumerate(entries):
        by_name.setdefault(name, []).append(index)
    names = [name for _, name in entries]
    for name, indexes in by_name.items():
        if len(indexes) < 2:
            continue
        stems = [entries[index][0].stem for index in indexes]
        if len(set(stems)) < len(stems):
            stems = [f"{entries[index][0].parent.name}/{entries[index][0].stem}" for index in indexes]
        for index, stem in zip(indexes, stems):
            names[index] = stem
        files = ", ".join(str(entries[index][0]) for index in indexes)
        warnings.append(
            f"{len(indexes)} snapshots call themselves {name!r} ({files}): kept apart, named after their files"
        )
    # a file-based name may still meet another snapshot's own name: number the later ones
    taken: set[str] = set()
    for index, name in enumerate(names):
        candidate, number = name, 2
        while candidate in taken:
            candidate = f"{name}-{number}"
            number += 1
        names[index] = candidate
        taken.add(candidate)
    return names


def resolve_inputs(paths: Sequence[Path]) -> LoadedGroup:
    """What `netviz stitch` stitches: the snapshots under `paths`."""
    if not paths:
        raise SnapshotError("no snapshots given: name snapshot files or directories of *.json")
    return load_group(paths)

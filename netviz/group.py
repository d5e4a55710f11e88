"""Load the snapshots of one group from files and directories, each machine under a unique name.

Machines are told apart by name, never merged: two snapshots that share a hostname (cloned VMs,
images that all call themselves `localhost`) stay two machines, named after their files. The
exact same snapshot given twice (the same file, or two files with identical bytes) is kept once,
with a warning, and so is the same running machine captured twice (listed under two names in an
inventory, or snapshots of two runs given together): the capture listed first is kept, never the
one that claims the latest time (see one_capture_per_machine). Left in, the second copy would own
the same addresses as the first, and every flow to it would be unresolved.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypeVar

from netviz.errors import SnapshotError
from netviz.gcpause import cyclic_gc_paused
from netviz.snapshot import CheckedStrings, Snapshot, file_kind, read_snapshot_bytes, snapshot_from_bytes
from netviz.stitch import address_claims


L = TypeVar("L")  # how a caller labels its snapshots (a file, an inventory name)


@dataclass(frozen=True)
class LoadedGroup:
    """The snapshots of a group (names unique, in the order given) and what to tell the user."""

    snapshots: tuple[Snapshot, ...]
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files refused as snapshots (each said in `warnings`)


def snapshot_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories expand to their `*.json` entries, sorted (not recursive).

    A file named on the command line may be a symbolic link (the user chose it): its target is
    returned. Inside a directory, entries other than directories are all returned, links and
    FIFOs too, so that reading refuses each with a message (read_snapshot_bytes follows no link
    and opens nothing but a regular file). Raises SnapshotError for a path that does not exist
    or is not a file or a directory (a FIFO, a device), without opening it.
    """
    files: list[Path] = []
    for path in paths:
        try:
            mode = path.stat().st_mode  # follows a link: what the user named
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                raise SnapshotError(f"{path}: no such snapshot file or directory") from None
            raise SnapshotError(f"{path}: cannot read: {error.strerror or error}") from None
        if stat.S_ISDIR(mode):
            found = sorted(child for child in path.glob("*.json") if not _is_directory(child))
            if not found:
                raise SnapshotError(f"{path}: directory holds no *.json snapshot")
            files.extend(found)
        elif stat.S_ISREG(mode):
            files.append(Path(os.path.realpath(path)) if path.is_symlink() else path)
        else:
            raise SnapshotError(f"{path}: is {file_kind(mode)}, not a snapshot file or directory")
    return files


def _expand(paths: Sequence[Path], preloaded: Mapping[Path, Snapshot]) -> list[Path]:
    """snapshot_files, in the order given, leaving the paths of preloaded snapshots as they are."""
    expanded: list[Path] = []
    for path in paths:
        expanded.extend([path] if path in preloaded else snapshot_files([path]))
    return expanded


def _is_directory(path: Path) -> bool:
    """A directory itself (a link to one is not followed)."""
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def load_group(paths: Sequence[Path], *, names: Optional[Mapping[Path, str]] = None,
               preloaded: Optional[Mapping[Path, Snapshot]] = None) -> LoadedGroup:
    """Load every snapshot under `paths` and give each machine a unique name.

    `names` gives the name of some files' machines (the inventory names of cached snapshots);
    the others are known by their hostnames. `preloaded` gives the snapshots of some paths that
    are already in memory (a run's fresh snapshots: validated as they arrived), which are then
    not read again, nor even looked for. A file that cannot be read or is not a valid snapshot is
    skipped with a warning: a snapshot is untrusted (its machine may be compromised) and one bad
    file must not hide the others. Raises SnapshotError when a path is missing or no file gave a
    snapshot.
    """
    names = names or {}
    preloaded = preloaded or {}
    strings = CheckedStrings()  # addresses and states recur across the machines of a group
    warnings: list[str] = []
    seen_files: set[Path] = set()
    seen_digests: dict[bytes, Path] = {}
    loaded: list[tuple[Path, Snapshot]] = []
    refused: list[tuple[Path, str]] = []  # (file, why it is not a snapshot)
    with cyclic_gc_paused(settle=True):
        for path in _expand(paths, preloaded):
            if path in preloaded:
                warnings.extend(preloaded[path].warnings)
                loaded.append((path, preloaded[path]))
                continue
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
    # Warnings call a capture by its inventory name when it has one, else by its file.
    path_of = {id(snapshot): path for path, snapshot in loaded}
    kept = one_capture_per_machine([(names.get(path, path), snapshot) for path, snapshot in loaded], warnings)
    loaded = [(path_of[id(snapshot)], snapshot) for _, snapshot in kept]
    unique = unique_names([(path, snapshot.name) for path, snapshot in loaded], warnings)
    snapshots = tuple(
        snapshot if snapshot.name == name else dataclasses.replace(snapshot, name=name)
        for (path, snapshot), name in zip(loaded, unique)
    )
    warnings.extend(address_claims(snapshots))
    return LoadedGroup(snapshots=snapshots, warnings=tuple(warnings),
                       skipped=tuple(str(path) for path, _ in refused))


def _same_machine_key(snapshot: Snapshot) -> Optional[tuple[str, str, str]]:
    """What one running machine shares between two captures: machine-id, boot id and hostname.

    Each alone repeats across machines (clones share a machine-id and often a hostname; the
    containers of one host share its kernel's boot id), all three together do not, unless two
    containers of one image also share a hostname: their network namespaces then differ, which
    `one_capture_per_machine` checks as well. Snapshots lacking any of the three are never merged.
    """
    host = snapshot.host
    if snapshot.legacy or not (host.machine_id and host.boot_id and host.hostname):
        return None
    return host.machine_id, host.boot_id, host.hostname


def one_capture_per_machine(loaded: Sequence[tuple[L, Snapshot]], warnings: list[str]) -> list[tuple[L, Snapshot]]:
    """Keep one capture of each running machine captured more than once: the one listed first
    (inventory order in a run, else the order given), whatever time the captures claim.

    Which machine sent a snapshot is only what the snapshot says, and anything it says can be
    copied: a machine that claims another's machine-id, boot id, hostname and a namespace would,
    if the newest capture won, replace that machine in the map by setting its clock ahead. So
    the order netviz was given decides, never a snapshot, and the warning names both entries: a
    machine listed twice (an alias) is drawn once, and one that copies another's identity is seen.
    Each entry is (what a warning calls it, snapshot).
    """
    kept: list[tuple[L, Snapshot]] = []
    first_of: dict[tuple[str, str, str], list[int]] = {}  # identity -> indexes in `kept`
    for label, snapshot in loaded:
        key = _same_machine_key(snapshot)
        if key is None:
            kept.append((label, snapshot))
            continue
        namespaces = {namespace.inode for namespace in snapshot.namespaces}
        earlier = next((index for index in first_of.get(key, ())
                        if namespaces & {namespace.inode for namespace in kept[index][1].namespaces}), None)
        if earlier is None:
            first_of.setdefault(key, []).append(len(kept))
            kept.append((label, snapshot))
            continue
        host = snapshot.host
        warnings.append(
            f"{kept[earlier][0]} and {label} claim to be the same machine (hostname {host.hostname}, machine-id "
            f"{host.machine_id}, boot {host.boot_id}): two captures of the same machine are drawn once, from "
            f"{kept[earlier][0]} (listed first); the "
            f"snapshot of {label} is left out. Expected only when one machine is listed twice; otherwise one of "
            f"them copies the other's identity"
        )
    return kept


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

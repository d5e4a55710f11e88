"""Writing files safely: the one writer for the cache, snapshots and outputs.

netviz often runs as root and may be pointed at a directory other users can write (/tmp, a
shared output directory). A file is therefore never written through a name someone else could
have planted:

- a new or regular target is replaced atomically: the data goes to a temporary file created
  beside it under an unpredictable name with O_CREAT|O_EXCL|O_NOFOLLOW (never through a link),
  mode 0600 whatever the umask, fsync'ed, then renamed over the target. Readers see the old
  file or the new one, never half of one; a failure leaves the target as it was and no
  temporary file behind;
- a target that is a character device or a FIFO (`/dev/null`, `/dev/stdout`, a named pipe with a
  reader) is written through, never replaced (replacing /dev/null as root would turn the
  system's device into a regular file);
- a symbolic link is followed only to a character device or a FIFO, and only when every link on
  the way belongs to root or to the user running netviz (`/dev/stdout` -> `/proc/self/fd/1`). A
  link to anything else (a file, a directory, nothing) is refused: writing through it would
  let whoever planted it choose the file, and replacing it would silently turn the user's link
  into a file;
- a directory (or a name ending in `/`), a block device or a socket is refused.

Refusals raise RefusedTarget (an OSError whose strerror says why); other failures raise the
OSError of the system call. Callers turn both into their own NetvizError.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Union

PRIVATE = 0o600  # snapshots, maps and JSON outputs carry every command line of a machine
_MAX_LINKS = 40  # as the kernel's limit on links followed in one lookup
_NAME_ROOM = 200  # of the target's name kept in the temporary name (NAME_MAX is 255 bytes)

PathLike = Union[str, "os.PathLike[str]"]


class RefusedTarget(OSError):
    """The target is not something netviz writes to (a directory, a link to a file...)."""


def write_file(path: PathLike, data: bytes, *, special: bool = True) -> None:
    """Write `data` to `path` as the module docstring says: replace a regular file (or create
    it) atomically, mode 0600; write through a character device or a FIFO when `special`
    (outputs; the cache passes False and accepts regular files only); refuse anything else."""
    text = os.fspath(path)
    if not text or text.endswith(os.sep):
        raise RefusedTarget(errno.EISDIR, "names a directory, not a file", text)
    try:
        info = os.lstat(text)
    except FileNotFoundError:
        _replace_atomically(text, data)
        return
    kind = info.st_mode
    if stat.S_ISREG(kind):
        _replace_atomically(text, data)
    elif stat.S_ISDIR(kind):
        raise RefusedTarget(errno.EISDIR, "is a directory", text)
    elif special and (stat.S_ISCHR(kind) or stat.S_ISFIFO(kind)):
        _write_through(text, data, follow=False)
    elif special and stat.S_ISLNK(kind):
        _check_link_chain(text)
        _write_through(text, data, follow=True)
    else:
        raise RefusedTarget(errno.EINVAL, f"is {_describe(kind)}: refused (netviz writes regular files"
                            f"{', character devices and FIFOs' if special else ''} only)", text)


def read_regular_file(path: PathLike, limit: int) -> bytes:
    """The content of a regular file opened without following a link (at most `limit` bytes
    plus one, so that the caller can tell a file that is too large)."""
    descriptor = os.open(os.fspath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as handle:
        kind = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(kind):
            raise RefusedTarget(errno.EINVAL, f"is {_describe(kind)}, not a regular file", os.fspath(path))
        return handle.read(limit + 1)


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "of an unknown kind"


def _replace_atomically(target: str, data: bytes) -> None:
    directory, name = os.path.split(target)
    descriptor, temporary = _create_temporary(directory or ".", name)
    try:
        try:
            os.fchmod(descriptor, PRIVATE)  # the umask may have taken bits away; never adds any
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new file beside the target, under a name nobody can guess; O_EXCL|O_NOFOLLOW: a name
    planted in the meantime (a link above all) makes this fail, never write elsewhere."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        temporary = os.path.join(directory, f".{name[:_NAME_ROOM]}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(temporary, flags, PRIVATE), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", directory)


def _check_link_chain(path: str) -> None:
    """Refuse a link that does not lead, through links owned by root or by this user only, to
    a character device or a FIFO."""
    trusted = {0, os.geteuid()}
    current = path
    for _ in range(_MAX_LINKS):
        try:
            info = os.lstat(current)
        except FileNotFoundError:  # a magic link of /proc (`pipe:[1234]`), or a dangling one
            break
        if not stat.S_ISLNK(info.st_mode):
            break
        if info.st_uid not in trusted:
            raise RefusedTarget(errno.EPERM, f"is a symbolic link owned by another user (uid {info.st_uid}): "
                                "refused", path)
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    else:
        raise RefusedTarget(errno.ELOOP, "too many levels of symbolic links", path)
    try:
        kind = os.stat(path).st_mode
    except FileNotFoundError:
        raise RefusedTarget(errno.ENOENT, "is a symbolic link to nothing: refused; name the file itself",
                            path) from None
    if not (stat.S_ISCHR(kind) or stat.S_ISFIFO(kind)):
        raise RefusedTarget(errno.ELOOP, f"is a symbolic link to {_describe(kind)}: netviz neither writes "
                            "through nor replaces such a link; name the file itself", path)


def _write_through(path: str, data: bytes, *, follow: bool) -> None:
    """Write into a character device or a FIFO that exists (no O_CREAT, no O_TRUNC: nothing is
    created or replaced). Opening a FIFO waits for its reader, as a shell's `>` does."""
    flags = os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    descriptor = os.open(path, flags)
    try:
        kind = os.fstat(descriptor).st_mode
        if not (stat.S_ISCHR(kind) or stat.S_ISFIFO(kind)):  # replaced since we looked
            raise RefusedTarget(errno.EINVAL, f"became {_describe(kind)} while being opened: refused", path)
        _write_all(descriptor, data)
    finally:
        os.close(descriptor)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]

"""Collecting on a schedule (`netviz collect --every 10m`): one run at a time per cache.

Every collector that goes through here holds `<cache>/collecting.lock` (flock) for the whole of
its run, so two runs never overlap on one cache: a run whose turn comes while another process
collects into the same cache waits for it (a cron line gets the same with `flock -n`, which skips
instead: docs/history.md). A run that lasts longer than the interval makes the loop skip the ticks
it overlapped rather than queue them. Nothing here prints (cli.py does, through the callbacks).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

from netviz.cache import trusted_cache_dir
from netviz.errors import CacheError

COLLECTING_LOCK = "collecting.lock"


@contextlib.contextmanager
def collecting(cache_root: Path, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Hold the cache's collecting lock for the block; `on_wait` is called once when another
    process holds it (then this one waits its turn). Released when the process dies, too."""
    root = trusted_cache_dir(cache_root, create=True)
    path = root / COLLECTING_LOCK
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise CacheError(f"{path}: not a regular file of yours: refused")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def every(interval: float, collect_once: Callable[[], None], *, on_skip: Callable[[int], None] = lambda n: None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Call `collect_once` now and then every `interval` seconds, until an exception (Ctrl-C:
    KeyboardInterrupt) ends it. Ticks a run overlapped are skipped (`on_skip(how many)`)."""
    due = clock()
    while True:
        collect_once()
        due += interval
        now = clock()
        if now > due:
            missed = int((now - due) // interval) + 1
            due += missed * interval
            on_skip(missed)
        sleep(due - now)

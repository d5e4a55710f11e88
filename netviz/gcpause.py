"""Pausing Python's cyclic garbage collector around work that builds many objects and no cycles.

Loading a group, stitching it and recording it in the history each build hundreds of thousands
to millions of small objects (records, tuples) and no reference cycle among them: the collector
frees nothing, but runs again and again as they pile up, each full pass walking everything alive
(1.9 s of 7.1 s when loading 1,000 machines of 1,000 sockets; 40% of a stitch; a pass of up to
half a second in the middle of recording a run). The collector is process-wide: this is meant for
the main thread of the command line.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def cyclic_gc_paused(*, settle: bool = False) -> Iterator[None]:
    """Pause the cyclic collector for the block. `settle`: what the block built is there to stay,
    so put it in the oldest generation at once rather than have the next collections walk it
    again generation by generation."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if settle and not gc.get_freeze_count():  # (unless the program keeps objects frozen on purpose)
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()

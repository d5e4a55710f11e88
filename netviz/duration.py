"""DURATION values of the command line (`--window 30s`): plain seconds, or a number with s, m or h.

Pure and dependency-free, for every command that takes a duration (capture, collect, run).
"""

from __future__ import annotations

import math
import re

MAX_WINDOW_SECONDS = 3600.0  # the payload refuses longer windows (netviz/payload/capture.py)
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*\Z", re.IGNORECASE)
_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str, maximum: float = MAX_WINDOW_SECONDS) -> float:
    """Seconds of a duration: `30`, `30s`, `2m`, `1.5m`, `1h` (0 allowed); ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 30, 30s, 2m)")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]
    if not math.isfinite(seconds) or seconds > maximum:
        raise ValueError(f"{text!r} is longer than {maximum:g} seconds")
    return seconds

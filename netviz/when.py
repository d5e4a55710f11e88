"""Points in time and spans on the command line: `-2h`, `yesterday`, `2026-12-01T10:00`, `7d`.

Pure: the caller passes `now`.
"""

from __future__ import annotations

import re
from datetime import datetime

_SPAN = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(s|m|min|h|d|w)?\s*\Z", re.IGNORECASE)
_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_span(text: str) -> float:
    """Seconds of a span: `30s`, `10m`, `2h`, `7d`, `1w`, plain seconds; ValueError otherwise."""
    match = _SPAN.match(text)
    if match is None:
        raise ValueError(f"not a span of time: {text!r} (examples: 10m, 2h, 7d)")
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


def parse_when(text: str, now: float) -> float:
    """Unix time of `-2h` or `2h` (before now), `yesterday` (24 h before now), `now`, or an ISO 8601 date
    and time (local time unless it says its zone: `Z`, `+01:00`); ValueError otherwise."""
    spec = text.strip()
    if spec == "now":
        return now
    if spec == "yesterday":
        return now - 86400.0
    if spec.startswith("-"):
        return now - parse_span(spec[1:])
    if _SPAN.match(spec) and not spec.strip().isdigit():  # `2h`: as `-2h`, which a shell line needs after `--`
        return now - parse_span(spec)
    try:
        moment = datetime.fromisoformat(spec.replace("Z", "+00:00") if spec.endswith("Z") else spec)
    except ValueError:
        raise ValueError(f"not a run id, run directory or time: {text!r} (examples: -2h, yesterday, "
                         "2026-12-01T10:00)") from None
    return moment.timestamp()  # a naive time is taken as local, as a user typing it means

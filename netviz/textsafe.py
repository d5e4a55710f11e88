"""Make untrusted text (process names, command lines, hostnames) safe to show.

Any local user can name a process anything, including terminal escape sequences that would
rewrite the operator's screen or title bar. Everything shown in a terminal goes through
`for_terminal` first.
"""

from __future__ import annotations

import unicodedata

# C0 and C1 controls, DEL, line/paragraph separators, and the format characters used for bidi spoofing.
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
         "\u200e", "\u200f", "\u061c"}


def _escape_char(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def for_terminal(text: str, limit: int = 200) -> str:
    """Return `text` with control, bidi and surrogate characters escaped, cut to `limit` chars."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI:  # Zl/Zp: U+2028/9 break lines
            out.append(_escape_char(char))
        else:
            out.append(char)
    safe = "".join(out)
    if len(safe) > limit:
        safe = safe[: limit - 1] + "…"
    return safe

"""Make untrusted text (process names, command lines, hostnames) safe to show.

Any local user of a machine can name a process anything, including terminal escape sequences
that would rewrite the operator's screen or title bar, bidi overrides that show a name reversed
(`\u202e`), and invisible characters that make two different names look alike. Every message
that quotes text from a machine or a file goes through `for_terminal` before it reaches a
terminal, and is then printed as plain text, never as rich markup (netviz.console does both).
"""

from __future__ import annotations

import unicodedata

# Escaped: C0 and C1 controls and DEL (Cc), surrogates (Cs), line and paragraph separators (Zl,
# Zp: they break lines), and every format character (Cf): the bidi embeddings, overrides and
# isolates (U+202A-202E, U+2066-2069), the direction marks (U+200E, U+200F, U+061C), zero-width
# spaces and joiners, the byte order mark, soft hyphen, tag characters. Each is invisible or
# changes how the text around it is shown.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})


def _escape_char(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def for_terminal(text: str, limit: int = 200) -> str:
    """Return `text` with control, format (bidi, zero-width), separator and surrogate characters
    escaped as `\\xNN`/`\\uNNNN`, cut to `limit` characters."""
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category in _ESCAPED_CATEGORIES:
            out.append(_escape_char(char))
        else:
            out.append(char)
    safe = "".join(out)
    if len(safe) > limit:
        safe = safe[: limit - 1] + "…"
    return safe

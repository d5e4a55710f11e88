"""The legend of a static map: one line for each style the map actually uses, none for the others.

The DOT writer records a key of STYLES each time it gives a node, an edge or a box a style; the
legend is then drawn from those keys alone, so it cannot list a style the map does not show nor
miss one it does. It is one HTML-table node (no edges: it adds nothing to the flows a reader or a
script counts), each row a small sample of the style and what it means.
"""

from __future__ import annotations

from typing import Iterable

LEGEND_ID = "legend"

# key -> (sample, meaning); the order here is the order of the rows.
_DASHED_BOX = '<TD BORDER="1" STYLE="dashed" COLOR="gray40">{}</TD>'
STYLES: dict[str, tuple[str, str]] = {
    "edge": ("<TD>——→</TD>", "client to server: proto/port ×connections"),
    "edge-width": ("<TD><B>━━→</B></TD>", "thicker: more connections"),
    "edge-width-bytes": ("<TD><B>━━→</B></TD>", "thicker: more bytes moved"),
    "edge-short-lived": ("<TD>- - →</TD>", "short-lived: seen coming and going in the window"),
    "edge-undirected": ("<TD>- - -</TD>", "no listener seen: direction unknown"),
    "edge-inferred": ("<TD>·····→</TD>", "inferred: the server's socket was not captured"),
    "node-ingress": ('<TD><TABLE BORDER="1" COLOR="darkorange3" CELLSPACING="1" CELLPADDING="0"><TR>'
                     '<TD BORDER="1" COLOR="darkorange3"> </TD></TR></TABLE></TD>',
                     "ingress: raw or packet sockets, see traffic outside any flow"),
    "node-unowned": (_DASHED_BOX.format(" "), "no process seen holding the sockets"),
    "node-machine": ('<TD BORDER="1"><B>host</B></TD>', "a machine: its processes folded into one node"),
    "node-outside": ('<TD BORDER="1" STYLE="dashed"><I>outside</I></TD>', "a peer outside the group"),
    "namespace": (_DASHED_BOX.format("<I>netns</I>"), "a container's network namespace"),
    "diff-added": ('<TD><FONT COLOR="#1a7f37">——→</FONT></TD>', "added: in B, not in A (green)"),
    "diff-removed": ('<TD><FONT COLOR="#cf222e">- - →</FONT></TD>', "removed: in A, not in B (red, dashed)"),
    "diff-unchanged": ('<TD><FONT COLOR="gray55">——→</FONT></TD>', "unchanged: in A and B (gray; ×count, was ×A\'s)"),
    "diff-not-compared": ('<TD><FONT COLOR="gray70">·····→</FONT></TD>',
                          "not compared: a machine unreachable in A or B (dotted)"),
    "diff-unreachable": ('<TD BORDER="1" STYLE="dashed" COLOR="goldenrod3"> </TD>',
                         "machine unreachable in A or B: its flows not compared"),
    "period-some": ('<TD><FONT COLOR="gray45">- - →</FONT></TD>',
                    "seen in only some runs of the period (dashed: seen in N of M runs)"),
    "unconfined": ('<TD><FONT COLOR="red">unconfined</FONT></TD>', "security context without confinement"),
}


def legend_node(used: Iterable[str]) -> str | None:
    """The DOT statement of the legend node for the style keys `used`, None when none is."""
    keys = [key for key in STYLES if key in set(used)]
    if not keys:
        return None
    rows = "".join(f'<TR>{STYLES[key][0]}<TD ALIGN="LEFT">{STYLES[key][1]}</TD></TR>' for key in keys)
    table = f'<TABLE BORDER="1" COLOR="gray60" CELLBORDER="0" CELLSPACING="3"><TR><TD COLSPAN="2"><B>legend</B></TD></TR>{rows}</TABLE>'
    return f"  {LEGEND_ID} [shape=plaintext, fontsize=9, label=<{table}>];"


def legend_meanings(keys: Iterable[str]) -> list[str]:
    """What the legend says for each of `keys`, in its order (for tests and readers)."""
    wanted = set(keys)
    return [meaning for key, (_, meaning) in STYLES.items() if key in wanted]

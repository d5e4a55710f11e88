"""Read an ssh_config file as OpenSSH would, `Include` directives included.

paramiko's parser takes `Include` for an ordinary option and ignores it, so the hosts of
`~/.ssh/config.d/*` (a common layout, and what several tools add to `~/.ssh/config`) would be
unknown: netviz would connect to the wrong address, port or user. The files are expanded here
into one text for paramiko, the way OpenSSH reads them:

- a path that is not absolute is under `~/.ssh` (what OpenSSH does for a user's file and for
  `ssh -F FILE`); `~` is the home directory; wildcards expand in sorted order, and a pattern that
  matches nothing is no error;
- an included file is read where the `Include` stands; the `Host` or `Match` block around the
  `Include` goes on after it (the header is repeated, as the included file may have opened
  blocks of its own);
- at most 16 levels deep, as OpenSSH.

One difference remains, for an `Include` inside a `Host` or `Match` block: the blocks that the
included file opens itself apply to the hosts they name, where OpenSSH applies them only to those
that the enclosing block names too. (Options of the included file outside its own blocks belong to
the enclosing block, as in OpenSSH.)
"""

from __future__ import annotations

import glob
import os
import shlex
from pathlib import Path

import paramiko

MAX_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
USER_DIRECTORY = "~/.ssh"


class SshConfigError(ValueError):
    """An ssh_config file (or one it includes) cannot be read."""


def read_ssh_config(path: os.PathLike | str) -> paramiko.SSHConfig:
    """The configuration of `path` and every file it includes, parsed by paramiko."""
    return paramiko.SSHConfig.from_text(expand_includes(Path(path).expanduser()))


def expand_includes(path: Path, depth: int = 0) -> str:
    """The text of `path` with each `Include` line replaced by the files it names."""
    if depth > MAX_DEPTH:
        raise SshConfigError(f"{path}: Include nested more than {MAX_DEPTH} levels deep")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise SshConfigError(f"cannot read ssh config {path}: {error.strerror or error}") from None
    out: list[str] = []
    block_header = None  # the Host/Match line of the block being read, if any
    for line in lines:
        keyword, arguments = _split(line)
        if keyword in ("host", "match"):
            block_header = line
        if keyword != "include":
            out.append(line)
            continue
        for included in _included_files(arguments, path):
            out.append(expand_includes(included, depth + 1))
        # the enclosing block (or the top level: every host) goes on after the included text
        out.append(block_header if block_header is not None else "Host *")
    return "\n".join(out) + "\n"


def _split(line: str) -> tuple[str, str]:
    """(lower-case keyword, the rest) of a config line; ('', '') for blank lines and comments."""
    text = line.strip()
    if not text or text.startswith("#"):
        return "", ""
    for index, char in enumerate(text):
        if char.isspace() or char == "=":
            return text[:index].lower(), text[index:].lstrip(" \t=")
    return text.lower(), ""


def _included_files(arguments: str, including: Path) -> list[Path]:
    try:
        patterns = shlex.split(arguments)
    except ValueError as error:
        raise SshConfigError(f"{including}: Include {arguments!r}: {error}") from None
    files: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if not os.path.isabs(expanded):
            expanded = os.path.join(os.path.expanduser(USER_DIRECTORY), expanded)
        files.extend(Path(match) for match in sorted(glob.glob(expanded)) if os.path.isfile(match))
    return files

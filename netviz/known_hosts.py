"""known_hosts files, read and matched the way OpenSSH's `ssh` reads and matches them.

paramiko's HostKeys finds only exact and hashed host names, so a fleet's `*.example.com` or
`10.0.0.*` line would make every such machine "unknown"; it cannot load `@cert-authority` or
`@revoked` lines either. This module reads the whole format (sshd(8), "SSH_KNOWN_HOSTS FILE
FORMAT") and answers one question per connection: is this key the machine's, changed, revoked,
or not known? (asyncssh implements the format too, but would bring a second SSH stack along.)

Matching, as OpenSSH does it:
- a line's host field is a comma-separated list of patterns; `*` matches any run of characters,
  `?` exactly one; a pattern starting with `!` is negated: when it matches, the line does not
  apply to that name, whatever its other patterns say;
- names are compared case-insensitively, as `host` for port 22 and `[host]:port` otherwise;
- a host field starting with `|1|` is a hashed name (HMAC-SHA1 of the lower-case name);
- a key is the machine's when any line that applies lists it; a line that applies with another
  key makes it a changed key.

A machine may prove itself with a host certificate instead: when `@cert-authority` lines apply to
its name, the certificate it offers is judged as ssh judges it (netviz/host_certificates.py).

One deliberate difference: a key under `@revoked` is refused for every host, whatever the
line's host patterns (OpenSSH applies it only to the names the patterns match); so is a
certificate whose authority is revoked.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import paramiko

from netviz import host_certificates

CERT_AUTHORITY = "@cert-authority"
REVOKED = "@revoked"
HASHED_PREFIX = "|1|"

# What `check` can say about a key.
KEY_KNOWN = "known"
KEY_REVOKED = "revoked"
KEY_CHANGED = "changed"
KEY_UNKNOWN = "unknown"
KEY_CERTIFICATE_REFUSED = "certificate refused"  # a certificate that no trusted authority vouches for

# The SSH host key algorithms that prove each key type (an RSA key signs with SHA-2 today).
_ALGORITHMS_BY_KEY_TYPE = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH SHA256 fingerprint of a key, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def host_algorithms(key_type: str) -> tuple[str, ...]:
    """The host key algorithm names under which a key of `key_type` can be offered."""
    return _ALGORITHMS_BY_KEY_TYPE.get(key_type, (key_type,))


class HostPatterns:
    """The host field of an unhashed line: comma-separated patterns with `*`, `?` and `!`."""

    def __init__(self, field: str) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for pattern in field.lower().split(","):
            if pattern.startswith("!"):
                negative.append(pattern[1:])
            else:
                positive.append(pattern)
        self.literal = not negative and not any(_is_wildcard(pattern) for pattern in positive)
        self.names = tuple(positive)  # for literal fields: the names themselves
        self._positive = _compile(positive)
        self._negative = _compile(negative)

    def matches(self, name: str) -> bool:
        """Whether the line applies to `name` (already lower-case)."""
        if self._negative is not None and self._negative.fullmatch(name):
            return False
        return self._positive is not None and self._positive.fullmatch(name) is not None


class HashedHost:
    """A `|1|salt|hash` host field: the HMAC-SHA1 of one lower-case name, keyed by the salt."""

    def __init__(self, field: str) -> None:
        parts = field[len(HASHED_PREFIX):].split("|")
        if len(parts) != 2:
            raise ValueError("not a |1|salt|hash field")
        self._salt = base64.b64decode(parts[0], validate=True)
        self._digest = base64.b64decode(parts[1], validate=True)

    def matches(self, name: str) -> bool:
        digest = hmac.digest(self._salt, name.encode("utf-8"), "sha1")
        return hmac.compare_digest(digest, self._digest)


@dataclass(frozen=True)
class Entry:
    """One usable known_hosts line: a host key, or a certificate authority (`marker`)."""

    hosts: Union[HostPatterns, HashedHost]
    key: paramiko.PKey
    marker: str  # "" for a host key, or CERT_AUTHORITY
    where: str  # "FILE:LINE", for messages
    order: int  # position among every line read, so that answers follow file order


@dataclass(frozen=True)
class Verdict:
    """What known_hosts says about the key a machine offers under one name."""

    status: str  # KEY_KNOWN, KEY_REVOKED, KEY_CHANGED, KEY_UNKNOWN or KEY_CERTIFICATE_REFUSED
    recorded: Optional[Entry] = None  # KEY_CHANGED: the line whose key the machine should have had
    certificate_authority: Optional[Entry] = None  # a @cert-authority line that applies to the name
    reason: str = ""  # KEY_CERTIFICATE_REFUSED and KEY_REVOKED: why


class KnownHosts:
    """Host keys from known_hosts files, shared by every connection of a run (thread-safe).

    New keys accepted with `--accept-new-host-keys` are appended to the user's file by `record`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: set[str] = set()
        self._by_name: dict[str, list[Entry]] = {}  # lines whose host field lists plain names only
        self._patterned: list[Entry] = []  # lines with wildcards, negations or a hashed name
        self._revoked: set[bytes] = set()
        self._count = 0
        # Lines found per name: a connection asks twice, and every hashed line costs an HMAC.
        self._found: dict[str, list[Entry]] = {}

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Add the lines of one file (each file once); a missing or unreadable file adds nothing."""
        path = str(Path(path).expanduser())
        with self._lock:
            if path in self._loaded:
                return
            self._loaded.add(path)
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.readlines()
            except OSError:
                return
            for number, line in enumerate(lines, 1):
                self._add_line(line, f"{path}:{number}")
            self._found.clear()

    def _add_line(self, line: str, where: str) -> None:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            return
        marker = ""
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
            if marker not in (CERT_AUTHORITY, REVOKED):
                return  # OpenSSH skips a line with a marker it does not know
        if len(fields) < 3:
            return
        host_field, key_type, data = fields[:3]
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return
        if marker == REVOKED:
            # Kept as bytes: a revoked key stays refused even when paramiko cannot parse its type.
            self._revoked.add(blob)
            return
        try:
            key = paramiko.PKey.from_type_string(key_type, blob)
            hosts: Union[HostPatterns, HashedHost] = (
                HashedHost(host_field) if host_field.startswith(HASHED_PREFIX) else HostPatterns(host_field)
            )
        except Exception:  # any key or field paramiko cannot read: OpenSSH skips such lines, and so do we
            return
        self._count += 1
        entry = Entry(hosts=hosts, key=key, marker=marker, where=where, order=self._count)
        if isinstance(hosts, HostPatterns) and hosts.literal:
            for name in set(hosts.names):
                self._by_name.setdefault(name, []).append(entry)
        else:
            self._patterned.append(entry)

    def entries(self, name: str, revoked: bool = False) -> list[Entry]:
        """Every host key and @cert-authority line that applies to `name` (`host` or
        `[host]:port`), in file order; keys revoked anywhere are left out unless `revoked`."""
        wanted = name.lower()
        with self._lock:
            found = self._found.get(wanted)
            if found is None:
                found = list(self._by_name.get(wanted, ()))
                found += [entry for entry in self._patterned if entry.hosts.matches(wanted)]
                found.sort(key=lambda entry: entry.order)
                self._found[wanted] = found
            return [entry for entry in found if revoked or entry.key.asbytes() not in self._revoked]

    def host_keys(self, name: str) -> list[paramiko.PKey]:
        """The keys known_hosts lists for `name`, in file order (revoked ones left out)."""
        return [entry.key for entry in self.entries(name) if not entry.marker]

    def is_revoked(self, key: paramiko.PKey) -> bool:
        with self._lock:
            return key.asbytes() in self._revoked

    def check(self, name: str, key: paramiko.PKey, now: Optional[float] = None) -> Verdict:
        """Judge the key a machine offers under `name`, as OpenSSH would (see the module notes);
        a certificate is judged at `now` (default: the current time)."""
        if self.is_revoked(key):
            return Verdict(KEY_REVOKED)
        entries = self.entries(name)
        authorities = [entry for entry in entries if entry.marker == CERT_AUTHORITY]
        if host_certificates.is_certificate(key):
            try:
                signer = host_certificates.parse(key.public_blob.key_blob).authority
            except ValueError:
                signer = b""
            with self._lock:
                if signer in self._revoked or key.public_blob.key_blob in self._revoked:
                    return Verdict(KEY_REVOKED, reason="its certificate or the authority that signed it is revoked")
            if authorities:
                reason = host_certificates.problem(key, _host_of(name), [entry.key for entry in authorities],
                                                   time.time() if now is None else now)
                if reason is None:
                    return Verdict(KEY_KNOWN)
                return Verdict(KEY_CERTIFICATE_REFUSED, certificate_authority=authorities[0], reason=reason)
            # no authority for the name: the certified key is judged as a plain key, as ssh does
        authority = authorities[0] if authorities else None
        listed = [entry for entry in entries if not entry.marker]
        offered = key.asbytes()
        if any(entry.key.asbytes() == offered for entry in listed):
            return Verdict(KEY_KNOWN)
        if listed:
            same_type = [entry for entry in listed if entry.key.get_name() == key.get_name()]
            return Verdict(KEY_CHANGED, recorded=(same_type or listed)[0], certificate_authority=authority)
        return Verdict(KEY_UNKNOWN, certificate_authority=authority)

    def record(self, path: str, name: str, key: paramiko.PKey) -> None:
        """Trust `key` for `name` from now on and append it to `path`, with the name in lower
        case as OpenSSH writes it (see append_line for what is refused). Raises OSError."""
        name = name.lower()
        line = f"{name} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            target = Path(path).expanduser()
            append_line(target, line)
            self._count += 1
            entry = Entry(HostPatterns(name), key, "", f"{target}", self._count)
            self._by_name.setdefault(name, []).append(entry)
            self._found.clear()


def _host_of(name: str) -> str:
    """The host of a known_hosts name: `[host]:port` gives host."""
    if name.startswith("[") and "]:" in name:
        return name[1:].rpartition("]:")[0]
    return name


def append_line(path: Path, line: str) -> None:
    """Append `line` to the known_hosts file `path`, on a line of its own.

    - A file that does not end with a newline (edited by hand) gets one first: glued to its
      last line, the new key would spoil both entries.
    - A symbolic link (dotfiles often are) is followed only when no other user could have
      planted or redirected it: the link's directory and the directory of the file it points
      to must not be writable by another user (like ssh's checks on ~/.ssh); the file is then
      opened without following links, and must be a regular file.
    - Missing directories are created 0700 and a new file 0600, whatever the umask; an existing
      file keeps its mode.
    """
    _refuse_shared_directory(path.parent, path)
    real = Path(os.path.realpath(path))
    if real != path.absolute():
        _refuse_shared_directory(real.parent, path)
    _make_private_directories(real.parent)
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(real, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        descriptor = os.open(real, flags | os.O_NONBLOCK)  # no FIFO blocks the open
    with os.fdopen(descriptor, "r+b", buffering=0) as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        ends_open = status.st_size > 0 and os.pread(handle.fileno(), 1, status.st_size - 1) != b"\n"
        handle.write((("\n" if ends_open else "") + line).encode("utf-8"))


def _refuse_shared_directory(directory: Path, path: Path) -> None:
    """OSError when another user could replace what `directory` holds (for `path`'s message)."""
    try:
        status = os.stat(directory)
    except FileNotFoundError:
        return  # created by us, 0700
    others_write = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if status.st_uid not in (0, os.geteuid()) or others_write:
        raise PermissionError(
            errno.EPERM,
            f"{path} is in {directory}, which another user can write (owner uid {status.st_uid}, mode "
            f"{stat.S_IMODE(status.st_mode):o}): not writing host keys there",
        )


def _make_private_directories(directory: Path) -> None:
    """mkdir -p with mode 0700 for every directory it creates (Path.mkdir leaves parents to the umask)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        os.mkdir(created, 0o700)
        os.chmod(created, 0o700)  # a umask such as 0277 would take the owner's own bits


def _is_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _compile(patterns: list[str]) -> Optional[re.Pattern[str]]:
    """One regular expression matching any of `patterns` (`*` and `?` wildcards, all else literal)."""
    if not patterns:
        return None
    parts = ["".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
             for pattern in patterns]
    return re.compile("|".join(f"(?:{part})" for part in parts), re.DOTALL)


__all__ = [
    "CERT_AUTHORITY",
    "KEY_CERTIFICATE_REFUSED",
    "KEY_CHANGED",
    "KEY_KNOWN",
    "KEY_REVOKED",
    "KEY_UNKNOWN",
    "REVOKED",
    "Entry",
    "KnownHosts",
    "Verdict",
    "fingerprint",
    "host_algorithms",
]

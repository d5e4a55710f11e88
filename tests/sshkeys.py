"""Fresh SSH keys for tests, made by the real ssh-keygen."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import paramiko


def keygen(directory: Path, name: str) -> tuple[str, str]:
    """A fresh ed25519 key: (type, base64) as known_hosts writes them."""
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key_type, data = path.with_suffix(".pub").read_text().split()[:2]
    return key_type, data


def pkey(key_type: str, data: str) -> paramiko.PKey:
    """The paramiko key of a (type, base64) pair."""
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(data))

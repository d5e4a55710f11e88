"""OpenSSH host certificates, judged as `ssh` judges them against known_hosts' @cert-authority lines.

A host certificate (the "certkeys" protocol of OpenSSH, `ssh-keygen -s CA -h`) is a machine's
public key signed by a certificate authority, with the names it is valid for (principals) and a
validity window. A fleet that uses one trusts the authority in known_hosts
(`@cert-authority *.example.com KEY`) instead of listing every machine's key. paramiko negotiates a
certificate host key and checks that the machine holds the certified key, but does not judge the
certificate: `problem` does, as ssh(1) does:

- it is a host certificate (not a user one) of a key type paramiko knows;
- an authority that known_hosts trusts for the machine signed it, with a signature that verifies
  (RSA with SHA-2 only: OpenSSH refuses SHA-1 signatures by certificate authorities);
- it is valid now, and one of its principals is the host it was reached by, in lower case (no
  wildcards: OpenSSH 9.2 compares principals literally; a certificate with no principals is
  valid for any host, as for ssh);
- it carries no critical option (none is defined for host certificates: an unknown one must be
  refused).

The certificate comes from the machine, which may be hostile: it is read with every length checked.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import paramiko

CERTIFICATE_SUFFIX = "-cert-v01@openssh.com"
HOST_CERTIFICATE = 2
# What follows the nonce in each certificate type: the certified key's own fields, skipped here
# (paramiko reads the key itself from the same blob).
_KEY_FIELDS = {
    "ssh-ed25519-cert-v01@openssh.com": 1,  # the public key
    "ssh-rsa-cert-v01@openssh.com": 2,  # e, n
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,  # curve, point
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
}
_REFUSED_SIGNATURES = frozenset({"ssh-rsa"})  # RSA with SHA-1
# The certificate host key algorithms paramiko can negotiate, by the plain algorithm they extend.
ALGORITHMS = {plain: plain + CERTIFICATE_SUFFIX for plain in (
    "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256")}


class _Reader:
    """SSH wire fields from untrusted bytes: a field that runs past the end raises ValueError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def uint32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def uint64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def string(self) -> bytes:
        return self._take(self.uint32())

    def text(self) -> str:
        return self.string().decode("utf-8")  # UnicodeDecodeError is a ValueError

    def done(self) -> bool:
        return self.offset == len(self.data)

    def _take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise ValueError("truncated")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk


@dataclass(frozen=True)
class Certificate:
    """The fields of a certificate that are judged, with the bytes its signature covers."""

    key_type: str
    kind: int  # 1 user, 2 host
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    critical_options: tuple[str, ...]
    authority: bytes  # the signing key, as an SSH public key blob
    signature: bytes
    signed: bytes


def is_certificate(key: paramiko.PKey) -> bool:
    """Whether paramiko read `key` from a certificate (the machine offered one)."""
    blob = key.public_blob
    return blob is not None and blob.key_type.endswith(CERTIFICATE_SUFFIX)


def parse(blob: bytes) -> Certificate:
    """A certificate read from its wire form; ValueError when it is not one this module knows."""
    reader = _Reader(blob)
    key_type = reader.text()
    fields = _KEY_FIELDS.get(key_type)
    if fields is None:
        raise ValueError(f"certificate type {key_type!r} is not supported")
    reader.string()  # nonce
    for _ in range(fields):
        reader.string()
    reader.uint64()  # serial
    kind = reader.uint32()
    key_id = reader.text()
    principals = _strings(reader.string())
    valid_after, valid_before = reader.uint64(), reader.uint64()
    critical_options = _strings(reader.string(), pairs=True)
    reader.string()  # extensions (none is defined for host certificates; they may be ignored)
    reader.string()  # reserved
    authority = reader.string()
    signed = blob[:reader.offset]
    signature = reader.string()
    if not reader.done():
        raise ValueError("bytes after the signature")
    return Certificate(key_type, kind, key_id, principals, valid_after, valid_before, critical_options, authority,
                       signature, signed)


def _strings(packed: bytes, pairs: bool = False) -> tuple[str, ...]:
    """The strings packed in one field (for `pairs`, the names of name/data pairs)."""
    reader = _Reader(packed)
    found = []
    while not reader.done():
        found.append(reader.text())
        if pairs:
            reader.string()
    return tuple(found)


def problem(key: paramiko.PKey, host: str, authorities: Sequence[paramiko.PKey], now: float) -> Optional[str]:
    """Why the certificate `key` came with does not vouch for `host` (the name the machine was
    reached by, without a port), or None when one of `authorities` does vouch for it."""
    try:
        certificate = parse(key.public_blob.key_blob)
    except ValueError as error:
        return f"its certificate cannot be read ({error})"
    if certificate.kind != HOST_CERTIFICATE:
        return "its certificate is a user certificate, not a host certificate"
    authority = next((known for known in authorities if known.asbytes() == certificate.authority), None)
    if authority is None:
        return "its certificate is signed by an authority that known_hosts does not trust for it"
    try:
        algorithm = _Reader(certificate.signature).text()
    except ValueError:
        return "its certificate's signature cannot be read"
    if algorithm in _REFUSED_SIGNATURES:
        return f"its certificate is signed with {algorithm} (SHA-1), which OpenSSH refuses for certificate authorities"
    if not authority.verify_ssh_sig(certificate.signed, paramiko.Message(certificate.signature)):
        return "its certificate's signature does not verify"
    if now < certificate.valid_after:
        return "its certificate is not valid yet"
    if now >= certificate.valid_before:
        return "its certificate has expired"
    if certificate.principals and host.lower() not in certificate.principals:
        return f"its certificate is not valid for {host} (it names {', '.join(certificate.principals[:8])})"
    if certificate.critical_options:
        return f"its certificate carries critical options a host certificate cannot have: {', '.join(certificate.critical_options)}"
    return None


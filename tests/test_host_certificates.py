"""Host certificates made by the real `ssh-keygen -s`, judged against known_hosts without a server
(tests/test_hostkeys_lab.py compares with the real ssh over the lab's sshd). The certificate comes
from the machine: a damaged or forged one is refused, never an exception."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from sshkeys import keygen

from netviz import host_certificates
from netviz.known_hosts import KEY_CERTIFICATE_REFUSED, KEY_KNOWN, KEY_REVOKED, KEY_UNKNOWN, KnownHosts

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def certified(directory: Path, *options: str, host: str = "host", ca: str = "ca") -> paramiko.PKey:
    """The public key `host` (made if missing) with the certificate `ssh-keygen -s CA OPTIONS` gives it."""
    if not (directory / host).exists():
        keygen(directory, host)
    if not (directory / ca).exists():
        keygen(directory, ca)
    subprocess.run(["ssh-keygen", "-q", "-s", str(directory / ca), "-I", "test", *options, str(directory / f"{host}.pub")],
                   check=True, capture_output=True)
    key_type, data = (directory / f"{host}.pub").read_text().split()[:2]
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(data))
    key.load_certificate(str(directory / f"{host}-cert.pub"))
    return key


def store(directory: Path, text: str) -> KnownHosts:
    path = directory / "known_hosts"
    path.write_text(text)
    known = KnownHosts()
    known.load(path)
    return known


def authority_line(directory: Path, pattern: str = "*.example", ca: str = "ca") -> str:
    return f"@cert-authority {pattern} {' '.join((directory / f'{ca}.pub').read_text().split()[:2])}\n"


def test_a_valid_host_certificate_is_known_for_its_principals_and_its_window(tmp_path):
    key = certified(tmp_path, "-h", "-n", "web.example,10.0.0.5", "-V", "-5m:+1h")
    known = store(tmp_path, authority_line(tmp_path, "*.example,10.0.0.*,[web.example]:*"))
    now = time.time()
    assert known.check("web.example", key, now).status == KEY_KNOWN
    assert known.check("WEB.example", key, now).status == KEY_KNOWN  # host names compare in lower case
    assert known.check("[web.example]:2222", key, now).status == KEY_KNOWN  # principals name the host, not the port
    assert known.check("10.0.0.5", key, now).status == KEY_KNOWN
    for name, when, reason in (("db.example", now, "not valid for db.example (it names web.example, 10.0.0.5)"),
                               ("web.example", now + 7200, "has expired"),
                               ("web.example", now - 3600, "not valid yet")):
        verdict = known.check(name, key, when)
        assert (verdict.status, verdict.reason) == (KEY_CERTIFICATE_REFUSED, f"its certificate is {reason}"
                                                    if "valid" in reason else f"its certificate {reason}")


def test_what_the_certificate_cannot_vouch_for(tmp_path):
    now = time.time()
    user = certified(tmp_path, "-n", "web.example", host="user")  # no -h: a user certificate
    known = store(tmp_path, authority_line(tmp_path))
    assert known.check("web.example", user, now).reason == "its certificate is a user certificate, not a host certificate"
    anywhere = certified(tmp_path, "-h", host="anywhere")  # no principals: any host, as for ssh
    assert known.check("whatever.example", anywhere, now).status == KEY_KNOWN
    keygen(tmp_path, "other-ca")
    other = store(tmp_path, authority_line(tmp_path, ca="other-ca"))
    assert "does not trust" in other.check("web.example", anywhere, now).reason
    revoked = store(tmp_path, authority_line(tmp_path) + f"@revoked * {' '.join((tmp_path / 'ca.pub').read_text().split()[:2])}\n")
    assert revoked.check("web.example", anywhere, now).status == KEY_REVOKED


def test_a_certificate_with_no_authority_for_the_name_is_judged_as_its_plain_key(tmp_path):
    key = certified(tmp_path, "-h", "-n", "web.example")
    plain = " ".join((tmp_path / "host.pub").read_text().split()[:2])
    assert store(tmp_path, f"web.example {plain}\n").check("web.example", key).status == KEY_KNOWN
    assert store(tmp_path, authority_line(tmp_path, "*.other")).check("web.example", key).status == KEY_UNKNOWN


def _with_blob(key: paramiko.PKey, blob: bytes) -> paramiko.PKey:
    """`key` carrying another certificate blob (what a hostile machine could send)."""
    forged = paramiko.PKey.from_type_string(key.get_name(), key.asbytes())
    forged.public_blob = paramiko.PublicBlob(key.public_blob.key_type, blob)
    return forged


def test_a_damaged_or_forged_certificate_is_refused_saying_why(tmp_path):
    key = certified(tmp_path, "-h", "-n", "web.example")
    known = store(tmp_path, authority_line(tmp_path))
    blob = key.public_blob.key_blob
    flipped = bytearray(blob)
    flipped[-5] ^= 1  # inside the signature
    assert known.check("web.example", _with_blob(key, bytes(flipped))).reason == "its certificate's signature does not verify"
    for damaged in (blob[:-1], blob[:40], blob + b"\0", b"\0\0\0\x05junk"):
        verdict = known.check("web.example", _with_blob(key, damaged))
        assert verdict.status == KEY_CERTIFICATE_REFUSED and "cannot be read" in verdict.reason, damaged[-8:]


def _resigned(certificate: host_certificates.Certificate, ca: paramiko.PKey, critical: bytes) -> bytes:
    """The certificate's fields with `critical` as its critical options, signed again by `ca`."""
    blob = certificate.signed
    reader = host_certificates._Reader(blob)
    reader.text()
    for _ in range(1 + host_certificates._KEY_FIELDS[certificate.key_type]):
        reader.string()
    reader.uint64(), reader.uint32(), reader.string(), reader.string(), reader.uint64(), reader.uint64()
    start = reader.offset
    reader.string()
    message = paramiko.Message()
    message.add_string(critical)
    body = blob[:start] + message.asbytes() + blob[reader.offset:]
    signature = paramiko.Message()
    signature.add_string(ca.sign_ssh_data(body).asbytes())
    return body + signature.asbytes()


def test_a_critical_option_makes_a_host_certificate_refused(tmp_path):
    key = certified(tmp_path, "-h", "-n", "web.example")
    known = store(tmp_path, authority_line(tmp_path))
    certificate = host_certificates.parse(key.public_blob.key_blob)
    ca = paramiko.Ed25519Key(filename=str(tmp_path / "ca"))
    option = paramiko.Message()
    option.add_string("force-command")
    option.add_string(b"\0\0\0\x04true")
    unchanged = _resigned(certificate, ca, b"")
    assert known.check("web.example", _with_blob(key, unchanged)).status == KEY_KNOWN  # the re-signing itself is sound
    verdict = known.check("web.example", _with_blob(key, _resigned(certificate, ca, option.asbytes())))
    assert verdict.reason == "its certificate carries critical options a host certificate cannot have: force-command"

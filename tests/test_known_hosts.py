"""known_hosts reading and matching without an SSH server. `ssh-keygen -F`, which matches names
with OpenSSH's own code, is the oracle for which lines apply to a name; test_hostkeys_lab.py
compares whole decisions with the real `ssh` client against real sshd machines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sshkeys import keygen, pkey

from netviz.known_hosts import (
    KEY_CHANGED,
    KEY_KNOWN,
    KEY_REVOKED,
    KEY_UNKNOWN,
    KnownHosts,
    fingerprint,
)

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def store_of(path: Path, text: str) -> KnownHosts:
    path.write_text(text)
    store = KnownHosts()
    store.load(path)
    return store


def openssh_finds(path: Path, name: str) -> bool:
    """Whether OpenSSH's matcher finds a line of `path` for `name` (ssh-keygen -F)."""
    return subprocess.run(["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True).returncode == 0


# (host field of the line, name looked up, whether the line applies) - every row is also put to
# ssh-keygen -F, so a row that misstates OpenSSH fails too.
PATTERN_CASES = [
    ("web.lab.example", "web.lab.example", True),
    ("web.lab.example", "web.lab.example.org", False),
    ("*.lab.example", "web.lab.example", True),
    ("*.lab.example", "lab.example", False),
    ("*.lab.example", "a.b.lab.example", True),  # `*` crosses dots
    ("*.Lab.EXAMPLE", "Web.lab.Example", True),  # case-insensitive both ways
    ("w?b.lab.example", "web.lab.example", True),
    ("w?b.lab.example", "wb.lab.example", False),  # `?` is exactly one character
    ("w?b.lab.example", "weeb.lab.example", False),
    ("10.0.0.*", "10.0.0.5", True),
    ("10.0.0.?", "10.0.0.15", False),
    ("10.0.0.*,!10.0.0.13", "10.0.0.13", False),  # a negation excludes the whole line
    ("!10.0.0.13,10.0.0.*", "10.0.0.13", False),  # wherever it stands
    ("10.0.0.*,!10.0.0.13", "10.0.0.12", True),
    ("!web.lab.example", "db.lab.example", False),  # a negation alone matches nothing
    ("*,!*.internal", "db.internal", False),
    ("db,web,cache", "web", True),
    ("web,", "web", True),
    ("[web.lab.example]:2222", "[web.lab.example]:2222", True),
    ("[web.lab.example]:2222", "web.lab.example", False),
    ("web.lab.example", "[web.lab.example]:2222", False),  # a port-22 line is not for port 2222
    ("[*.lab.example]:22?2", "[web.lab.example]:2222", True),  # brackets are literal, not a class
    ("[*.lab.example]:*", "[web.lab.example]:2200", True),
    ("*", "[web.lab.example]:2222", True),
    ("[web]", "w", False),
    ("FD77:0:0:1::*", "fd77:0:0:1::5", True),
]


@pytest.mark.parametrize("field, name, applies", PATTERN_CASES)
def test_host_patterns_match_as_openssh_matches_them(tmp_path, field, name, applies):
    key = keygen(tmp_path, "k")
    path = tmp_path / "known_hosts"
    store = store_of(path, f"{field} {key[0]} {key[1]}\n")
    assert openssh_finds(path, name) is applies  # the row says what OpenSSH does
    assert bool(store.host_keys(name)) is applies
    assert store.check(name, pkey(*key)).status == (KEY_KNOWN if applies else KEY_UNKNOWN)


def test_hashed_exact_and_port_entries_are_found_and_names_compare_in_lower_case(tmp_path):
    plain, hashed, ported = keygen(tmp_path, "plain"), keygen(tmp_path, "hashed"), keygen(tmp_path, "ported")
    hashed_file = tmp_path / "hashed_hosts"
    hashed_file.write_text(f"secret.example {hashed[0]} {hashed[1]}\n[secret.example]:2222 {ported[0]} {ported[1]}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed_file)], check=True, capture_output=True)
    hashed_lines = hashed_file.read_text()
    assert "secret" not in hashed_lines and hashed_lines.count("|1|") == 2
    store = store_of(tmp_path / "known_hosts", f"web.example,10.0.0.5 {plain[0]} {plain[1]}\n{hashed_lines}")
    assert store.host_keys("10.0.0.5") == [pkey(*plain)]
    assert store.host_keys("WEB.Example") == [pkey(*plain)]
    # ssh hashes the lower-case name: a machine addressed as Secret.Example finds the line too.
    assert store.host_keys("Secret.Example") == [pkey(*hashed)]
    assert store.host_keys("[secret.example]:2222") == [pkey(*ported)]
    assert store.host_keys("other.example") == []


def test_a_key_listed_by_any_line_that_applies_is_known(tmp_path):
    """Several lines may apply to a name (a fleet-wide pattern and a host's own line, or two
    keys for one pattern): the offered key is the machine's when any of them lists it."""
    first, second, third = keygen(tmp_path, "a"), keygen(tmp_path, "b"), keygen(tmp_path, "c")
    store = store_of(tmp_path / "known_hosts", (
        f"*.lab.example {first[0]} {first[1]}\n"
        f"*.lab.example {second[0]} {second[1]}\n"
        f"special.lab.example {third[0]} {third[1]}\n"
    ))
    for name, key in [("web.lab.example", first), ("web.lab.example", second), ("special.lab.example", third),
                      ("special.lab.example", first)]:
        assert store.check(name, pkey(*key)).status == KEY_KNOWN, (name, key)
    assert store.check("web.lab.example", pkey(*third)).status == KEY_CHANGED


def test_changed_key_names_the_line_it_contradicts(tmp_path):
    old, new = keygen(tmp_path, "old"), keygen(tmp_path, "new")
    path = tmp_path / "known_hosts"
    store = store_of(path, f"# fleet\n10.0.0.*,!10.0.0.9 {old[0]} {old[1]}\n")
    verdict = store.check("10.0.0.7", pkey(*new))
    assert verdict.status == KEY_CHANGED
    assert verdict.recorded is not None and verdict.recorded.key == pkey(*old)
    assert verdict.recorded.where == f"{path}:2"
    assert store.check("10.0.0.9", pkey(*new)).status == KEY_UNKNOWN  # the negated name: no line applies


def test_revoked_key_is_refused_whatever_lists_it(tmp_path):
    good, revoked = keygen(tmp_path, "good"), keygen(tmp_path, "revoked")
    store = store_of(tmp_path / "known_hosts", (
        f"@revoked other.example {revoked[0]} {revoked[1]}\n"
        f"*.example {revoked[0]} {revoked[1]}\n"
        f"*.example {good[0]} {good[1]}\n"
    ))
    # Refused for every host, even one the @revoked line's own pattern does not name.
    assert store.check("web.example", pkey(*revoked)).status == KEY_REVOKED
    assert store.host_keys("web.example") == [pkey(*good)]
    assert store.check("web.example", pkey(*good)).status == KEY_KNOWN


def test_certificate_authority_lines_are_noted_never_taken_as_host_keys(tmp_path):
    authority, host = keygen(tmp_path, "ca"), keygen(tmp_path, "host")
    path = tmp_path / "known_hosts"
    store = store_of(path, f"@cert-authority *.lab.example,!db.lab.example {authority[0]} {authority[1]}\n")
    # The CA's own key offered as a host key is not trusted: the line vouches for certificates.
    verdict = store.check("web.lab.example", pkey(*authority))
    assert verdict.status == KEY_UNKNOWN
    assert verdict.certificate_authority is not None and verdict.certificate_authority.where == f"{path}:1"
    assert store.check("db.lab.example", pkey(*host)).certificate_authority is None  # negated
    assert store.host_keys("web.lab.example") == []


def test_lines_openssh_skips_are_skipped_and_the_rest_still_loads(tmp_path):
    key = keygen(tmp_path, "k")
    store = store_of(tmp_path / "known_hosts", (
        "# comment\n"
        "\n"
        f"@unknown-marker web {key[0]} {key[1]}\n"
        f"web {key[0]} not-base64!\n"
        f"web ssh-unknown-type {key[1]}\n"
        "web\n"
        "this line is not a key\n"
        f"   db   {key[0]}   {key[1]}   comment words\n"
    ))
    assert store.host_keys("web") == []
    assert store.host_keys("db") == [pkey(*key)]


def test_a_missing_file_adds_nothing_and_a_file_is_read_once(tmp_path):
    key = keygen(tmp_path, "k")
    store = KnownHosts()
    store.load(tmp_path / "absent")
    path = tmp_path / "known_hosts"
    path.write_text(f"web {key[0]} {key[1]}\n")
    store.load(path)
    store.load(path)
    assert store.host_keys("web") == [pkey(*key)]


def test_recorded_key_is_appended_in_lower_case_readable_by_openssh_and_found_again(tmp_path):
    key = pkey(*keygen(tmp_path, "new"))
    target = tmp_path / "sub" / "known_hosts"
    store = KnownHosts()
    store.record(str(target), "[Web.Lab.Example]:2200", key)
    assert target.stat().st_mode & 0o777 == 0o600
    assert target.read_text() == f"[web.lab.example]:2200 {key.get_name()} {key.get_base64()}\n"
    assert store.check("[web.lab.example]:2200", key).status == KEY_KNOWN
    assert openssh_finds(target, "[web.lab.example]:2200")


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key_type, data = keygen(tmp_path, "fp")
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "fp.pub")], capture_output=True, text=True, check=True)
    assert fingerprint(pkey(key_type, data)) == listed.stdout.split()[1]

"""Trust between machines, inventory input and untrusted text.

* One machine's snapshot never replaces another's: two inventory entries whose snapshots claim
  one identity are both named in a warning, and the entry listed first is drawn, whatever time
  the snapshots claim.
* A snapshot claiming another machine's address is named in a warning (both machines and the
  address), and the honest machine's flows stay resolved.
* The inventory YAML refuses keys given twice (with both lines) and alias bombs; no error message
  repeats an inventory value whole.
* Text from machines is never read as markup, and the one function that makes text safe for a
  terminal escapes controls, bidi overrides and other invisible format characters.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from netviz.errors import InventoryError
from netviz.inventory import load_inventory

REPO = Path(__file__).resolve().parent.parent


def _run_netviz(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netviz", *arguments], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={"PATH": "/usr/bin:/bin", "COLUMNS": "300",
                                                          "HOME": str(REPO)})


# ------------------------------------------------------------------ inventory: duplicate keys


@pytest.mark.parametrize("text, key, lines", [
    ("hosts:\n  web: {address: 10.0.0.1}\n  db: {}\n  web: {address: 10.0.0.2}\n", "web", (2, 4)),
    ("defaults:\n  user: a\ndefaults:\n  user: b\nhosts: [web]\n", "defaults", (1, 3)),
    ("hosts:\n  web:\n    address: 10.0.0.1\n    port: 22\n    port: 2222\n", "port", (4, 5)),
    ("hosts: [web]\ngroups:\n  g: [web]\n  g: [web]\n", "g", (3, 4)),
], ids=["host", "defaults", "port", "group"])
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    message = str(caught.value)
    assert f"'{key}' appears twice" in message
    assert f"line {lines[0]} and at line {lines[1]}" in message
    assert message.startswith(str(path))


def test_merge_keys_and_equal_keys_in_different_mappings_are_not_duplicates(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("x-base: &base {port: 2222, user: ops}\n"
                    "hosts:\n  web: {<<: *base, address: 10.0.0.1, port: 22}\n  db: {<<: *base, address: 10.0.0.2}\n")
    path.write_text(path.read_text().replace("x-base", "defaults"))
    inventory = load_inventory(path, paramiko.SSHConfig())
    assert [(host.name, host.port, host.user) for host in inventory.hosts] == [("web", 22, "ops"), ("db", 2222, "ops")]


def test_the_cli_refuses_a_duplicate_host_with_both_lines_and_exit_1(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web: {address: 10.0.0.1}\n  web: {address: 10.0.0.2}\n")
    result = _run_netviz("collect", "-i", str(path), "--cache", str(tmp_path / "cache"))
    assert result.returncode == 1, result.stderr
    assert "'web' appears twice" in result.stderr and "line 2" in result.stderr and "line 3" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ inventory: alias bombs


def _flow_laughs(levels: int) -> str:
    """One YAML flow value holding 9**levels strings through nested anchors and aliases."""
    value = '&l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
    for level in range(1, levels + 1):
        value = f"&l{level} [{value}, " + ", ".join([f"*l{level - 1}"] * 8) + "]"
    return value


def test_a_billion_laughs_is_refused_at_once_without_a_traceback(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web:\n    port: " + _flow_laughs(9) + "\n")
    started = time.monotonic()
    result = _run_netviz("collect", "-i", str(path), "--cache", str(tmp_path / "cache"), timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 1, result.stderr
    assert "aliases expand to more than" in result.stderr
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr) < 1000


@pytest.mark.parametrize("key", ["port", "user", "address", "sudo", "connect_timeout", "python", "jump",
                                 "identity_file", "known_hosts"])
def test_a_large_value_is_never_repeated_whole_in_an_error(tmp_path, key):
    """Under the expansion limit (9**5 values), but far too much to print."""
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web:\n    " + key + ": " + _flow_laughs(5) + "\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    assert len(str(caught.value)) < 400, str(caught.value)[:500]


def test_a_long_unknown_key_or_name_is_cut_in_the_error(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web:\n    " + "k" * 1000 + ": 1\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    assert "unknown key" in str(caught.value) and len(str(caught.value)) < 400
    path.write_text("hosts:\n  - " + "é" * 100_000 + "\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    assert "is not usable" in str(caught.value) and len(str(caught.value)) < 400

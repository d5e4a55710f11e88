"""Host keys against the lab's real sshd keys: unknown keys refused by default and changed keys
always refused, each naming the fingerprints `ssh-keygen -l` gives; hashed entries
(`ssh-keygen -H`) and `[host]:port` entries found; a file with `@cert-authority` and `@revoked`
lines still loads, and a revoked key is refused even where a plain line lists it.
(test_transport.py reads such files without a server; test_lab_collect.py has the basic cases.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netviz.cli import app

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def fingerprint_of(public_key_line: str, tmp_path: Path) -> str:
    """The SHA256 fingerprint as OpenSSH prints it (an independent oracle)."""
    path = tmp_path / "key.pub"
    path.write_text(public_key_line + "\n")
    listed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True)
    return listed.stdout.split()[1]


def key_of(machine) -> str:
    """`type base64` of a machine's real host key."""
    return " ".join(machine.host_public_key.split()[:2])


def collect(lab, tmp_path: Path, hosts: list[str], known_hosts: Path, *extra: str) -> dict[str, dict]:
    inventory = lab.inventory_for(hosts, path=tmp_path / "hosts.yaml", known_hosts=str(known_hosts), connect_timeout=3)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["collect", "-i", str(inventory), "--cache", str(cache), *extra],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code in (0, 3, 4), result.output
    manifest = json.loads(max(cache.glob("2*/manifest.json")).read_text())
    return {entry["host"]: entry for entry in manifest["hosts"]}


def test_hashed_entries_plain_and_with_a_port_are_found(lab, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(lab.known_hosts, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    lines = [line for line in known.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("|1|") for line in lines)  # no host name left in clear
    altport = lab.machines["altport"]
    assert subprocess.run(["ssh-keygen", "-F", f"[{altport.ipv4}]:{altport.port}", "-f", str(known)],
                          capture_output=True).returncode == 0  # OpenSSH finds the hashed [host]:port line
    hosts = collect(lab, tmp_path, ["web", "altport"], known)
    assert hosts["web"]["status"] == "ok", hosts["web"]
    assert hosts["altport"]["status"] == "ok", hosts["altport"]


def test_unknown_key_is_refused_naming_its_fingerprint(lab, tmp_path):
    web = lab.machines["web"]
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in lab.known_hosts.read_text().splitlines()
                             if not line.startswith((web.ipv4 + " ", web.ipv6 + " "))))
    entry = collect(lab, tmp_path, ["web"], known)["web"]
    assert entry["category"] == "host_key", entry
    assert fingerprint_of(web.host_public_key, tmp_path) in entry["message"]
    assert "unknown host key" in entry["message"] and web.ipv4 in entry["message"]
    assert known.read_text().count(key_of(web)) == 0  # refused means not recorded either


@pytest.mark.parametrize("accept_new", [False, True], ids=["default", "accept-new"])
def test_changed_key_is_always_refused_naming_both_fingerprints(lab, tmp_path, accept_new):
    web, db = lab.machines["web"], lab.machines["db"]
    known = tmp_path / "known_hosts"
    known.write_text(f"{web.ipv4} {key_of(db)}\n")  # another machine's real key filed under web's address
    before = known.read_text()
    entry = collect(lab, tmp_path, ["web"], known, *(["--accept-new-host-keys"] if accept_new else []))["web"]
    assert entry["category"] == "host_key", entry
    message = entry["message"]
    assert "CHANGED" in message
    assert fingerprint_of(db.host_public_key, tmp_path) in message  # what known_hosts has
    assert fingerprint_of(web.host_public_key, tmp_path) in message  # what the machine offers
    assert known.read_text() == before  # never overwritten


def test_marker_lines_load_and_a_revoked_key_is_refused_even_when_listed(lab, tmp_path):
    web, db, cache = lab.machines["web"], lab.machines["db"], lab.machines["cache"]
    known = tmp_path / "known_hosts"
    known.write_text(
        "# a real-world file: markers, comments, a hashed line, plain lines\n"
        f"@cert-authority *.example.com {key_of(cache)}\n"
        f"@revoked * {key_of(db)}\n"
        f"{web.ipv4} {key_of(web)}\n"
        f"{db.ipv4} {key_of(db)}\n"
        f"{cache.ipv4} {key_of(cache)}\n"
    )
    hosts = collect(lab, tmp_path, ["web", "db", "cache"], known, "--accept-new-host-keys")
    assert hosts["web"]["status"] == "ok" and hosts["cache"]["status"] == "ok"  # the file loaded
    assert hosts["db"]["category"] == "host_key", hosts["db"]
    assert "revoked" in hosts["db"]["message"]
    assert fingerprint_of(db.host_public_key, tmp_path) in hosts["db"]["message"]

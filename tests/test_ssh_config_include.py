"""ssh_config `Include` read as OpenSSH reads it; the real `ssh -G` is the oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netviz.inventory import load_inventory, load_ssh_config
from netviz.errors import InventoryError

SSH = shutil.which("ssh")
needs_ssh = pytest.mark.skipif(SSH is None, reason="needs the OpenSSH client (ssh -G is the oracle)")

HOSTS = ("web1", "web2", "db1", "db-east", "cache1", "other")


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A home directory whose ~/.ssh/config includes files in several ways."""
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh_dir = tmp_path / ".ssh"
    (ssh_dir / "config.d").mkdir(parents=True)
    (tmp_path / "abs").mkdir()
    (ssh_dir / "config").write_text(
        "# relative to ~/.ssh, sorted wildcard matches, a pattern matching nothing\n"
        "Include config.d/*.conf nothing-here/*.conf\n"
        "Include ~/.ssh/extra.conf\n"
        "Host db*\n"
        "  User dbadmin\n"
        f"  Include {tmp_path / 'abs' / 'db.conf'}\n"
        "  Port 2200\n"
        "Host *\n"
        "  User fallback\n"
    )
    (ssh_dir / "config.d" / "10-web.conf").write_text("Host web1\n  HostName 10.1.0.1\n  Port 2222\n")
    (ssh_dir / "config.d" / "20-web.conf").write_text(
        "Host web1 web2\n  HostName 10.1.0.99\n  User webops\nHost web2\n  Port 2022\n")
    (tmp_path / "abs" / "db.conf").write_text("HostName db.internal\n")
    (ssh_dir / "extra.conf").write_text("Host cache*\n  HostName 10.3.0.1\n  Include nested.conf\n")
    (ssh_dir / "nested.conf").write_text("Port 6000\n")
    return tmp_path


def ssh_effective(home: Path, host: str) -> dict[str, str]:
    output = subprocess.run([SSH, "-G", "-F", str(home / ".ssh" / "config"), host], capture_output=True, text=True,
                            env={**os.environ, "HOME": str(home)}, check=True, timeout=30).stdout
    values = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    return {"hostname": values["hostname"], "port": values["port"], "user": values["user"]}


@needs_ssh
def test_included_hosts_resolve_as_ssh_resolves_them(home):
    config = load_ssh_config(home / ".ssh" / "config")
    for host in HOSTS:
        ours = config.lookup(host)
        expected = ssh_effective(home, host)
        assert {"hostname": ours["hostname"], "port": ours.get("port", "22"), "user": ours["user"]} == expected, host


@needs_ssh
def test_the_inventory_takes_address_port_and_user_from_included_files(home):
    inventory = home / "hosts.yaml"
    inventory.write_text("hosts: [web1, web2, db-east, cache1]\n")
    hosts = {spec.name: spec for spec in load_inventory(inventory, load_ssh_config(home / ".ssh" / "config")).hosts}
    for name, spec in hosts.items():
        expected = ssh_effective(home, name)
        assert (spec.address, str(spec.port), spec.user) == (expected["hostname"], expected["port"], expected["user"])
    assert (hosts["web1"].address, hosts["web1"].port) == ("10.1.0.1", 2222)  # not the name, not 22


def test_include_loops_end_with_a_message_naming_the_file(home):
    loop = home / ".ssh" / "loop.conf"
    loop.write_text("Include loop.conf\n")
    with pytest.raises(InventoryError, match=r"loop\.conf: Include nested more than 16 levels"):
        load_ssh_config(loop)

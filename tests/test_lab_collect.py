"""End to end on the lab: `netviz run` / `collect` / `stitch` against real OpenSSH machines.

The session's `lab` fixture (tests/lab/fixtures.py; it skips, saying why, without root or a
tool): the standard scenario (web, db, cache holding real connections) plus one machine per
fault. Every fault must get its category within its timeout while the scenario
still renders exactly its flows.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from netviz.cli import app
from tests.lab.lab import SUDO_PASSWORD, Lab
from tests.lab.scenario import graph_flow_keys

CONNECT_TIMEOUT = 3
COMMAND_TIMEOUT = 10  # above the lab's slow machine (4 s), far below the hanging one
# The lab's names for categories -> netviz's failure kinds.
KIND = {
    "refused": "refused",
    "unreachable": "unreachable",
    "auth": "auth",
    "host key": "host_key",
    "no python": "no_python",
    "timeout": "timeout",
    "sudo": "sudo",
    "bad output": "bad_output",
    "disconnected": "payload_error",
}


def invoke(*args: str, env: dict | None = None):
    runner = CliRunner()
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)


def inventory(lab: Lab, path: Path, hosts=None, **defaults) -> Path:
    values = {"connect_timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT, **defaults}
    return lab.write_inventory(path, hosts=hosts, **values)


def manifest(cache: Path) -> dict:
    return json.loads((cache / "latest" / "manifest.json").read_text())


def test_run_renders_exact_flows_while_every_fault_gets_its_category(lab, tmp_path):
    inv = inventory(lab, tmp_path / "hosts.yaml")
    document = yaml.safe_load(inv.read_text())
    document["hosts"]["ghost"] = {"address": "ghost.invalid"}  # a name no resolver knows
    inv.write_text(yaml.safe_dump(document, sort_keys=False))
    cache = tmp_path / "cache"
    output = tmp_path / "map.json"
    started = time.monotonic()
    result = invoke("run", "--inventory", str(inv), "--cache", str(cache), "--output", str(output))
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.output  # some machines failed, the map was written

    hosts = {entry["host"]: entry for entry in manifest(cache)["hosts"]}
    for fault in lab.faults:
        entry = hosts[fault.name]
        if fault.category == "ok":
            assert entry["status"] == "ok", (fault.name, entry)
            continue
        assert entry["status"] == "failed", (fault.name, entry)
        assert entry["category"] == KIND[fault.category], (fault.name, fault.what, entry)
    # Each fault ends within its own timeout, not the run's.
    connect_phase = CONNECT_TIMEOUT * 4 + 1
    for name in ("closed", "wrongkey", "changedkey", "unknownkey", "nopython", "nosudo", "sudopass"):
        assert hosts[name]["seconds"] < 3, hosts[name]
    assert hosts["ghost"]["category"] == "dns"
    for name in ("blackhole", "unreachable", "ghost"):
        assert hosts[name]["seconds"] < connect_phase, hosts[name]
    assert COMMAND_TIMEOUT <= hosts["hang"]["seconds"] < COMMAND_TIMEOUT + 7, hosts["hang"]
    assert elapsed < COMMAND_TIMEOUT + 25

    graph = json.loads(output.read_text())
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()
    # Messages say what went wrong in words a user can act on.
    assert "SHA256:" in hosts["unknownkey"]["message"] and "--accept-new-host-keys" in hosts["unknownkey"]["message"]
    assert "CHANGED" in hosts["changedkey"]["message"]
    assert "password is required" in hosts["sudopass"]["message"]


def test_hung_payload_is_killed_on_the_machine(lab, tmp_path):
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["hang"], command_timeout=2)
    result = invoke("collect", "--inventory", str(inv), "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 4, result.output
    assert manifest(tmp_path / "cache")["hosts"][0]["category"] == "timeout"
    deadline = time.monotonic() + 10
    # `timeout -k` on the machine ends the payload: no python3 left behind on it.
    while any("python" in comm for _, _, comm in lab.machines["hang"].processes()):
        assert time.monotonic() < deadline, lab.machines["hang"].processes()
        time.sleep(0.2)


def test_sudo_password_from_the_environment_never_lands_anywhere(lab, tmp_path):
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["sudopass"])
    document = yaml.safe_load(inv.read_text())
    document["hosts"]["sudopass"]["sudo"] = "password"
    inv.write_text(yaml.safe_dump(document))
    cache = tmp_path / "cache"
    result = invoke("run", "-i", str(inv), "--cache", str(cache), "-f", "json",
                    env={"NETVIZ_SUDO_PASSWORD": SUDO_PASSWORD})
    assert result.exit_code == 0, result.output
    snapshot = json.loads((cache / "latest" / "sudopass.json").read_text())
    assert snapshot["coverage"]["euid"] == 0  # the payload ran as root through sudo
    for path in cache.rglob("*"):
        if path.is_file():
            assert SUDO_PASSWORD.encode() not in path.read_bytes()
    assert SUDO_PASSWORD not in result.output

    wrong = invoke("run", "-i", str(inv), "--cache", str(cache), env={"NETVIZ_SUDO_PASSWORD": "not-it"})
    assert wrong.exit_code == 3, wrong.output  # failed, but its last snapshot (stale) is still drawn
    entry = manifest(cache)["hosts"][0]
    assert entry["category"] == "sudo" and entry["stale"] is True
    assert "incorrect password" in entry["message"] and "not-it" not in entry["message"]
    assert entry["seconds"] < 10  # a wrong password is not retried with payload lines


def test_accept_new_host_keys_records_the_key_and_changed_keys_stay_refused(lab, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(lab.known_hosts, known)
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["unknownkey", "changedkey"], known_hosts=str(known))
    cache = str(tmp_path / "cache")
    first = invoke("collect", "-i", str(inv), "--cache", cache, "--accept-new-host-keys")
    assert first.exit_code == 3, first.output
    hosts = {entry["host"]: entry for entry in manifest(Path(cache))["hosts"]}
    assert hosts["unknownkey"]["status"] == "ok"
    assert hosts["changedkey"]["category"] == "host_key"
    assert lab.machines["unknownkey"].ipv4 in known.read_text()

    # Recorded: the next run trusts it without the flag.
    second = invoke("collect", "-i", str(inv), "--cache", cache, "--limit", "unknownkey")
    assert second.exit_code == 0, second.output


def test_revoked_key_is_refused_even_with_accept_new(lab, tmp_path):
    machine = lab.machines["web"]
    known = tmp_path / "known_hosts"
    key_type, key_data = machine.host_public_key.split()[:2]
    known.write_text(f"@cert-authority *.example.com {key_type} {key_data}\n@revoked * {key_type} {key_data}\n")
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["web"], known_hosts=str(known))
    result = invoke("collect", "-i", str(inv), "--cache", str(tmp_path / "cache"), "--accept-new-host-keys")
    assert result.exit_code == 4, result.output
    entry = manifest(tmp_path / "cache")["hosts"][0]
    assert entry["category"] == "host_key" and "revoked" in entry["message"]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat missing (the ProxyCommand host uses it)")
def test_ssh_config_alias_proxyjump_and_proxycommand(lab, tmp_path):
    web, db, cache_machine = lab.machines["web"], lab.machines["db"], lab.machines["cache"]
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host webalias\n  HostName {web.ipv4}\n  User root\n  IdentityFile {lab.client_key}\n"
        f"Host cachejump\n  HostName {cache_machine.ipv4}\n  ProxyJump root@{db.ipv4}\n"
        f"  IdentityFile {lab.client_key}\n"
        f"Host dbproxied\n  HostName {db.ipv4}\n  ProxyCommand socat - TCP:%h:%p\n"
    )
    inv = tmp_path / "hosts.yaml"
    inv.write_text(yaml.safe_dump({
        # The hop has no ssh_config entry: like OpenSSH, it uses the default key (defaults here).
        "defaults": {"known_hosts": str(lab.known_hosts), "connect_timeout": CONNECT_TIMEOUT, "user": "root",
                     "identity_file": str(lab.client_key)},
        "hosts": {"webalias": None, "cachejump": None, "dbproxied": None},
    }))
    cache = tmp_path / "cache"
    log_size = cache_machine.sshd_log.stat().st_size
    result = invoke("collect", "-i", str(inv), "--ssh-config", str(ssh_config), "--cache", str(cache))
    assert result.exit_code == 0, result.output
    hostnames = {entry["host"]: json.loads((cache / "latest" / entry["snapshot"]).read_text())["host"]["hostname"]
                 for entry in manifest(cache)["hosts"]}
    assert hostnames == {"webalias": "web", "cachejump": "cache", "dbproxied": "db"}
    # cache's sshd saw the login come from db: the jump was taken.
    with open(cache_machine.sshd_log) as log:
        log.seek(log_size)
        logins = [line for line in log if "Accepted publickey for root" in line]
    assert logins and all(f"from {db.ipv4} " in line for line in logins), logins


def test_failed_machine_keeps_its_last_snapshot_as_stale_and_stitch_uses_it(lab, tmp_path):
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["web", "db", "cache"])
    cache = tmp_path / "cache"
    assert invoke("collect", "-i", str(inv), "--cache", str(cache)).exit_code == 0
    # The next run cannot reach db (nothing listens on port 2): its last snapshot stands in, stale.
    document = yaml.safe_load(inv.read_text())
    document["hosts"]["db"]["port"] = 2
    inv.write_text(yaml.safe_dump(document))
    rerun = invoke("collect", "-i", str(inv), "--cache", str(cache))
    assert rerun.exit_code == 3, rerun.output
    entry = {e["host"]: e for e in manifest(cache)["hosts"]}["db"]
    assert entry["status"] == "failed" and entry["category"] == "refused"
    assert entry["stale"] is True and entry["snapshot"] == "db.json"
    stitched = invoke("stitch", "--cache", str(cache), "--format", "json")
    assert stitched.exit_code == 0, stitched.output
    graph = json.loads(stitched.stdout)
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()
    assert [h["name"] for h in graph["hosts"] if h.get("stale")] == ["db"]
    assert "last good snapshot" in stitched.stderr


def test_large_snapshot_streams_through_without_stalling(lab, lab_many_sockets, tmp_path):
    """100,000 sockets make a framed snapshot of several MiB: far past the ~2 MiB at which
    paramiko stalls when the exit status is awaited before the output is read."""
    name = lab_many_sockets.machine.name
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=[name], command_timeout=120)
    cache = tmp_path / "cache"
    result = invoke("collect", "-i", str(inv), "--cache", str(cache))
    assert result.exit_code == 0, result.output
    snapshot_file = cache / "latest" / f"{name}.json"
    assert snapshot_file.stat().st_size > 4 * 1024 * 1024
    snapshot = json.loads(snapshot_file.read_text())
    sockets = sum(len(namespace["sockets"]) for namespace in snapshot["namespaces"])
    assert sockets >= lab_many_sockets.sockets


def test_ipv6_addresses_and_a_non_default_port(lab, tmp_path):
    web, altport = lab.machines["web"], lab.machines["altport"]
    inv = tmp_path / "hosts.yaml"
    inv.write_text(yaml.safe_dump({
        "defaults": {"known_hosts": str(lab.known_hosts), "identity_file": str(lab.client_key), "user": "root",
                     "connect_timeout": CONNECT_TIMEOUT},
        "hosts": {"web6": {"address": web.ipv6}, "alt6": {"address": altport.ipv6, "port": altport.port}},
    }))
    cache = tmp_path / "cache"
    result = invoke("collect", "-i", str(inv), "--cache", str(cache))
    assert result.exit_code == 0, result.output
    assert {entry["host"]: entry["status"] for entry in manifest(cache)["hosts"]} == {"web6": "ok", "alt6": "ok"}


def test_failures_behind_a_jump_host_keep_their_category(lab, tmp_path):
    db = lab.machines["db"]
    inv = inventory(lab, tmp_path / "hosts.yaml", hosts=["web"])
    document = yaml.safe_load(inv.read_text())
    hop = f"root@{db.ipv4}"
    document["hosts"] = {
        "closed-via-db": {"address": lab.machines["closed"].ipv4, "jump": hop},
        "hole-via-db": {"address": lab.phantoms["blackhole"].ipv4, "jump": hop},
        "web-via-db": {"address": lab.machines["web"].ipv4, "jump": hop},
    }
    document.pop("groups", None)
    inv.write_text(yaml.safe_dump(document))
    cache = tmp_path / "cache"
    result = invoke("collect", "-i", str(inv), "--cache", str(cache))
    assert result.exit_code == 3, result.output
    hosts = {entry["host"]: entry for entry in manifest(cache)["hosts"]}
    assert {name: entry["category"] for name, entry in hosts.items()} == {
        "closed-via-db": "refused", "hole-via-db": "unreachable", "web-via-db": None,
    }
    assert "Connection refused" in hosts["closed-via-db"]["message"]
    assert hosts["hole-via-db"]["seconds"] < CONNECT_TIMEOUT * 3

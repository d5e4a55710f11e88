"""The inventory: YAML + ssh_config -> HostSpec, with errors that name the host and the key."""

from __future__ import annotations

import getpass
from pathlib import Path

import paramiko
import pytest

from netviz.errors import InventoryError
from netviz.inventory import (
    SUDO_NO,
    SUDO_NOPASSWD,
    SUDO_PASSWORD,
    load_inventory,
    load_ssh_config,
    parse_inventory,
)

ROOT = Path(__file__).resolve().parent.parent


def parse(document, ssh_config_text: str = ""):
    return parse_inventory(document, "hosts.yaml", paramiko.SSHConfig.from_text(ssh_config_text))


def test_example_inventory_loads_and_documents_every_key():
    inventory = load_inventory(ROOT / "inventory.example.yaml", paramiko.SSHConfig())
    by_name = {host.name: host for host in inventory.hosts}
    assert list(by_name) == ["web1", "web2", "db1", "cache1"]
    db1 = by_name["db1"]
    assert (db1.address, db1.user, db1.sudo, db1.port) == ("10.0.0.13", "admin", SUDO_NOPASSWD, 22)
    assert [hop.address for hop in db1.jump] == ["bastion.example.com"]
    assert by_name["web1"].command_timeout == 60 and by_name["web1"].connect_timeout == 10
    assert [h.name for h in inventory.select(["backend"])] == ["db1", "cache1"]
    # Every key a host may carry is explained in the example (as a key or in a comment).
    text = (ROOT / "inventory.example.yaml").read_text()
    from netviz.inventory import HOST_KEYS, TOP_KEYS

    for key in HOST_KEYS + TOP_KEYS:
        assert f"{key}:" in text, key


def test_precedence_host_then_defaults_then_ssh_config_then_builtin():
    ssh_config = "Host web\n  HostName 192.0.2.7\n  User configuser\n  Port 2200\n  IdentityFile /keys/web\n"
    inventory = parse(
        {"defaults": {"user": "deploy"}, "hosts": {"web": None, "db": {"user": "admin", "port": 2022}}},
        ssh_config,
    )
    web, db = inventory.hosts
    assert (web.address, web.user, web.port) == ("192.0.2.7", "deploy", 2200)  # defaults beat ssh_config
    assert web.identity_files == ("/keys/web",)
    assert (db.address, db.user, db.port) == ("db", "admin", 2022)
    bare = parse({"hosts": ["solo"]}).hosts[0]
    assert (bare.address, bare.user, bare.port, bare.sudo) == ("solo", getpass.getuser(), 22, SUDO_NO)
    assert bare.known_hosts == str(Path("~/.ssh/known_hosts").expanduser())


def test_ssh_config_proxyjump_and_inventory_jump_hops():
    ssh_config = "Host inner\n  HostName 10.9.9.9\n  ProxyJump ops@bastion:2222,relay\nHost relay\n  User relayuser\n"
    inventory = parse(
        {"hosts": {"inner": None, "gw": {"address": "198.51.100.1", "user": "gwuser"},
                   "deep": {"address": "10.1.1.1", "jump": "gw"}}},
        ssh_config,
    )
    inner, gw, deep = inventory.hosts
    assert [(h.address, h.user, h.port) for h in inner.jump] == [("bastion", "ops", 2222), ("relay", "relayuser", 22)]
    assert deep.jump == (gw,)  # a hop may be another inventory host, with its own settings
    assert deep.known_hosts_key == "10.1.1.1" and parse({"hosts": {"x": {"port": 2222}}}).hosts[0].known_hosts_key == "[x]:2222"
    assert parse({"hosts": {"inner": {"jump": "none"}}}, ssh_config).hosts[0].jump == ()


def test_sudo_modes():
    hosts = parse({"hosts": {"a": {"sudo": True}, "b": {"sudo": "password"}, "c": {"sudo": False}}}).hosts
    assert [h.sudo for h in hosts] == [SUDO_NOPASSWD, SUDO_PASSWORD, SUDO_NO]


@pytest.mark.parametrize(
    "document, expected",
    [
        ({"hosts": {"web": {"prot": 22}}}, "host 'web': unknown key 'prot' (did you mean 'port'?)"),
        ({"hosts": {"web": {"port": "ssh"}}}, "host 'web': key 'port': expected a number 1-65535"),
        ({"hosts": {"web": {"port": 70000}}}, "host 'web': key 'port'"),
        ({"hosts": {"web": {"sudo": "maybe"}}}, "host 'web': key 'sudo'"),
        ({"hosts": {"web": {"command_timeout": -1}}}, "host 'web': key 'command_timeout'"),
        ({"hosts": {"web": {"address": "10.0.0.1:2222"}}}, "put the port in 'port'"),
        ({"hosts": {"web": {"address": "root@10.0.0.1"}}}, "host 'web': key 'address'"),
        ({"hosts": {"../etc": {}}}, "name '../etc' is not usable"),
        ({"hosts": {"web": {"jump": "a b"}}}, "host 'web': key 'jump'"),
        ({"defaults": {"address": "x"}, "hosts": ["web"]}, "defaults: unknown key 'address'"),
        ({"hosts": ["web"], "groups": {"g": ["nope"]}}, "group 'g': no host or group named 'nope'"),
        ({"hosts": ["web"], "grups": {}}, "unknown key 'grups' (did you mean 'groups'?)"),
        ({"defaults": {}}, "'hosts' is missing or empty"),
        ({"hosts": {"a": {"jump": "b"}, "b": {"jump": "a"}}}, "jump hosts refer to each other in a loop"),
    ],
)
def test_mistakes_name_the_host_and_key(document, expected):
    with pytest.raises(InventoryError) as raised:
        parse(document)
    assert expected in str(raised.value)
    assert str(raised.value).startswith("hosts.yaml")


def test_limit_by_host_and_nested_groups_in_file_order():
    inventory = parse({"hosts": ["a", "b", "c", "d"], "groups": {"front": ["c", "a"], "all-but-d": ["front", "b"]}})
    assert [h.name for h in inventory.select(["all-but-d"])] == ["a", "b", "c"]
    assert [h.name for h in inventory.select(["d,front"])] == ["a", "c", "d"]
    assert [h.name for h in inventory.select(None)] == ["a", "b", "c", "d"]
    with pytest.raises(InventoryError, match="no host or group named 'fornt' \\(did you mean 'front'\\?\\)"):
        inventory.select(["fornt"])
    looping = parse({"hosts": ["a"], "groups": {"x": ["y"], "y": ["x"]}})
    with pytest.raises(InventoryError, match="loop"):
        looping.select(["x"])


def test_file_errors_are_one_line(tmp_path):
    broken = tmp_path / "hosts.yaml"
    broken.write_text("hosts:\n  web: {address: [\n")
    with pytest.raises(InventoryError, match=r"hosts.yaml: invalid YAML at line \d+"):
        load_inventory(broken)
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")
    bad_config = tmp_path / "ssh_config"
    bad_config.write_text("Host x\n  =broken\n")
    with pytest.raises(InventoryError, match="ssh_config"):
        load_ssh_config(bad_config)
    with pytest.raises(InventoryError, match="cannot read ssh config .*: No such file"):
        load_ssh_config(tmp_path / "missing_config")  # named explicitly: its absence is an error


def test_ssh_config_file_is_read(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host alias\n  HostName 203.0.113.5\n  Port 2201\n  IdentitiesOnly yes\n")
    host = load_inventory(_write(tmp_path / "h.yaml", "hosts: [alias]\n"), load_ssh_config(config)).hosts[0]
    assert (host.address, host.port, host.identities_only) == ("203.0.113.5", 2201, True)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path

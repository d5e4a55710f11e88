"""Ansible inventories (INI and YAML) read as netviz inventories.

The oracle is Ansible itself: `ansible-inventory --list` resolves the same files (ranges,
children, variable precedence), and netviz must agree with it host by host and group by group.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
import yaml

from netviz.errors import InventoryError
from netviz.inventory import SUDO_NOPASSWD, SUDO_PASSWORD, load_inventory
from netviz.inventory_ansible import (
    expand_host_pattern,
    looks_like_ansible_yaml,
    parse_ansible_ini,
    parse_ansible_yaml,
    to_netviz_document,
)

ANSIBLE_INVENTORY = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")

INI = """\
mail.example.com ansible_host=10.0.0.5   # outside any group: ungrouped

[web]
www[01:03].example.com ansible_user=deploy
web-[a:c] ansible_port=2222
edge[1:9:4]

[db]
db1 ansible_host=10.0.0.1 ansible_become=yes ansible_python_interpreter=/usr/bin/python3
db2:2200 ansible_host=10.0.0.2 ansible_become=true ansible_become_pass=hunter2

[web:vars]
ansible_user=webadmin
ansible_port=22

[prod:children]
web
db

[prod:vars]
ansible_ssh_private_key_file=~/.ssh/prod
ansible_user=produser

[edge_only:children]
web

[edge_only:vars]
ansible_user=edgeuser
"""

YAML = """\
all:
  vars:
    ansible_user: everyone
  hosts:
    bastion:
      ansible_host: 192.0.2.1
  children:
    app:
      vars:
        ansible_port: 2022
      hosts:
        app[1:3]:
        app9:
          ansible_port: 22
          ansible_user: nine
      children:
        app_canary:
          hosts:
            app1:
          vars:
            ansible_user: canary
            ansible_become: true
    store:
      hosts:
        pg-[a:b].lan:
          ansible_ssh_host: 10.1.0.1
"""


def ansible_list(path: Path) -> dict:
    if not Path(ANSIBLE_INVENTORY).exists():
        pytest.skip("ansible-inventory is not installed (scripts/setup.sh --test installs ansible-core)")
    output = subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list"], check=True, capture_output=True,
                            text=True, env={"ANSIBLE_LOCAL_TEMP": str(path.parent / "ansible-tmp"),
                                            "ANSIBLE_HOME": str(path.parent / "ansible-home"), "PATH": "/usr/bin:/bin"})
    return json.loads(output.stdout)


def ansible_members(listing: dict, group: str) -> set[str]:
    entry = listing.get(group, {})
    found = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        found |= ansible_members(listing, child)
    return found


@pytest.mark.parametrize("suffix,text", [(".ini", INI), (".yaml", YAML)])
def test_netviz_reads_hosts_groups_and_variables_as_ansible_does(tmp_path, suffix, text):
    path = tmp_path / f"hosts{suffix}"
    path.write_text(text)
    listing = ansible_list(path)
    hostvars = listing["_meta"]["hostvars"]
    inventory = load_inventory(path, paramiko.SSHConfig())

    assert {host.name for host in inventory.hosts} == ansible_members(listing, "all")
    for host in inventory.hosts:
        seen = hostvars.get(host.name, {})
        address = seen.get("ansible_host") or seen.get("ansible_ssh_host") or host.name
        assert host.address == address, host.name
        assert host.port == int(seen.get("ansible_port") or seen.get("ansible_ssh_port") or 22), host.name
        if "ansible_user" in seen:
            assert host.user == seen["ansible_user"], host.name
        if "ansible_python_interpreter" in seen:
            assert host.python == seen["ansible_python_interpreter"]
        if "ansible_ssh_private_key_file" in seen:
            assert host.identity_files[0] == str(Path(seen["ansible_ssh_private_key_file"]).expanduser())
        become = str(seen.get("ansible_become", "no")).lower() in ("yes", "true")
        assert (host.sudo != "no") == become, host.name
    for group in listing:
        if group in ("_meta", "all") or not ansible_members(listing, group):
            continue
        assert {host.name for host in inventory.select([group])} == ansible_members(listing, group), group


def test_ini_details_a_user_relies_on(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    inventory = load_inventory(path, paramiko.SSHConfig())
    hosts = {host.name: host for host in inventory.hosts}
    # zero-padded ranges keep their width; strides; letters
    assert {"www01.example.com", "www03.example.com", "web-b", "edge1", "edge5", "edge9"} <= set(hosts)
    assert "edge2" not in hosts
    # a deeper group's variable wins over its parent's, the host's own over both
    assert hosts["web-a"].user == "webadmin"
    assert hosts["www02.example.com"].user == "deploy"
    assert hosts["db1"].user == "produser" and hosts["db1"].sudo == SUDO_NOPASSWD
    # a port after the name; a become password in the file means "ask for it", never "use it"
    assert hosts["db2"].port == 2200 and hosts["db2"].sudo == SUDO_PASSWORD
    assert "hunter2" not in repr(to_netviz_document(parse_ansible_ini(INI, "x")))
    assert hosts["mail.example.com"].address == "10.0.0.5"
    assert {host.name for host in inventory.select(["ungrouped"])} == {"mail.example.com"}


@pytest.mark.parametrize("pattern,expected", [
    ("web[01:03]", ["web01", "web02", "web03"]),
    ("db-[a:c].lan", ["db-a.lan", "db-b.lan", "db-c.lan"]),
    ("n[1:10:3]", ["n1", "n4", "n7", "n10"]),
    ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
    ("plain", ["plain"]),
])
def test_host_ranges(pattern, expected):
    assert expand_host_pattern(pattern, "test") == expected


@pytest.mark.parametrize("text,message", [
    ("[web]\nweb[1:99999999]\n", "more than"),
    ("[web]\nweb[9:1]\n", "ends before it starts"),
    ("[web:nonsense]\nx\n", "expected :vars or :children"),
    ("[web:vars]\njust-a-word\n", "expected key=value"),
    ("[web]\nweb1 ansible_become=perhaps\n", "neither true nor false"),
    ("[web]\nweb1 ansible_become=yes ansible_become_method=su\n", "sudo only"),
    ("[web]\nweb\n", "same name as a host"),
])
def test_mistakes_are_refused_with_the_line(tmp_path, text, message):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(InventoryError, match=message):
        load_inventory(path, paramiko.SSHConfig())


def test_the_netviz_layout_is_not_taken_for_ansible():
    assert not looks_like_ansible_yaml({"hosts": {"web1": {"address": "10.0.0.1"}}, "groups": {"web": ["web1"]}})
    assert not looks_like_ansible_yaml({"defaults": {"user": "root"}, "hosts": ["a"]})
    assert looks_like_ansible_yaml(yaml.safe_load(YAML))
    assert looks_like_ansible_yaml({"web": {"hosts": {"w1": None}}})
    document = to_netviz_document(parse_ansible_yaml(yaml.safe_load(YAML), "x"))
    assert document["hosts"]["app1"] == {"port": 2022, "user": "canary", "sudo": True}


def test_a_host_of_the_ungrouped_section_that_a_group_also_lists_is_not_ungrouped(tmp_path):
    path = tmp_path / "hosts"  # Ansible's own file name, no suffix
    path.write_text("lonely\nshared\n\n[db]\nshared\n")
    listing = ansible_list(path)
    inventory = load_inventory(path, paramiko.SSHConfig())
    assert {host.name for host in inventory.select(["ungrouped"])} == ansible_members(listing, "ungrouped") == {"lonely"}


@pytest.mark.lab
def test_netviz_run_maps_the_lab_from_an_ansible_ini_inventory(lab, tmp_path):
    """The same lab machines the YAML inventory reaches, listed as an Ansible team would list
    them: a sudo user with ansible_become on one, host keys through ssh_config."""
    from typer.testing import CliRunner

    from netviz.cli import app
    from tests.lab.lab import SUDO_NOPASSWD_USER
    from tests.lab.scenario import graph_flow_keys

    machines = lab.machines
    (tmp_path / "hosts.ini").write_text(
        f"[front]\nweb ansible_host={machines['web'].ipv4}\n\n"
        f"[back]\ndb ansible_host={machines['db'].ipv4} ansible_user={SUDO_NOPASSWD_USER} ansible_become=yes\n"
        f"cache ansible_host={machines['cache'].ipv4}\n\n"
        f"[all:vars]\nansible_user=root\nansible_ssh_private_key_file={lab.client_key}\n")
    (tmp_path / "ssh_config").write_text(f"Host *\n  UserKnownHostsFile {lab.known_hosts}\n  ConnectTimeout 5\n")
    output = tmp_path / "map.json"
    result = CliRunner().invoke(app, ["run", "-i", str(tmp_path / "hosts.ini"), "--ssh-config", str(tmp_path / "ssh_config"),
                                      "--cache", str(tmp_path / "cache"), "-o", str(output)],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    graph = json.loads(output.read_text())
    assert sorted(host["name"] for host in graph["hosts"]) == ["cache", "db", "web"]
    assert graph_flow_keys(graph) == lab.scenario.flow_keys()
    # Ansible's groups work with --limit
    result = CliRunner().invoke(app, ["collect", "-i", str(tmp_path / "hosts.ini"), "--ssh-config",
                                      str(tmp_path / "ssh_config"), "--cache", str(tmp_path / "cache2"), "--limit", "back"],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cache2" / "latest" / "manifest.json").read_text())
    assert [host["host"] for host in manifest["hosts"]] == ["db", "cache"]


def test_an_inventory_exported_by_ansible_reads_as_the_original(tmp_path):
    """The way to use a dynamic inventory: `ansible-inventory --list -y` into a file."""
    (tmp_path / "hosts.ini").write_text(INI)
    ansible_list(tmp_path / "hosts.ini")  # skips without Ansible
    exported = subprocess.run([ANSIBLE_INVENTORY, "-i", str(tmp_path / "hosts.ini"), "--list", "-y"], check=True,
                              capture_output=True, text=True, env={"ANSIBLE_HOME": str(tmp_path / "ah"), "PATH": "/usr/bin:/bin"})
    (tmp_path / "exported.yaml").write_text(exported.stdout)
    original = load_inventory(tmp_path / "hosts.ini", paramiko.SSHConfig())
    again = load_inventory(tmp_path / "exported.yaml", paramiko.SSHConfig())
    assert sorted(original.hosts, key=lambda h: h.name) == sorted(again.hosts, key=lambda h: h.name)
    assert {k: set(v) for k, v in original.groups.items()} == {k: set(v) for k, v in again.groups.items()}

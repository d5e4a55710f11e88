"""Ansible inventories (INI and YAML) read as netviz inventories.

A fleet that is run with Ansible already lists its machines, groups and how to log in. This
module reads that list as Ansible does and turns it into a netviz inventory document (the
mapping `parse_inventory` validates), so `netviz run --inventory hosts.ini` works as is:

- groups, `children` and `vars`; hosts outside any group belong to `ungrouped`;
- host ranges: `web[01:20]` (zero-padded as written), `db-[a:f]`, strides `[1:9:2]`;
- a port after the host name (`db1:2222`);
- variables resolved with Ansible's precedence: the host's own over its groups', a child group's
  over its parents', groups of one depth in name order, `all` first.

Variables netviz uses (the `ansible_ssh_*` spellings too): `ansible_host`, `ansible_port`,
`ansible_user`, `ansible_ssh_private_key_file`, `ansible_python_interpreter`, `ansible_become`
(true: `sudo: true`; with `ansible_become_password` or `ansible_become_pass` set: `sudo:
password`, asked once per run as for any netviz inventory: the password in the file is not read).
Everything else is ignored. Parsing is pure: text or a YAML document in, a document out.
"""

from __future__ import annotations

import ast
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from netviz.errors import InventoryError

ALL = "all"
UNGROUPED = "ungrouped"

# Ansible variable -> netviz host key; the later spelling in each pair is Ansible's older one.
_SETTINGS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity_file",
    "ansible_private_key_file": "identity_file",
    "ansible_python_interpreter": "python",
}
_BECOME = ("ansible_become", "ansible_sudo")
_BECOME_METHOD = "ansible_become_method"
_BECOME_PASSWORDS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f", ""}

_SECTION = re.compile(r"^\[([^\]]+)\]\s*(?:[#;].*)?$")
_RANGE = re.compile(r"\[([^\[\]:]*):([^\[\]:]*)(?::([^\[\]:]*))?\]")
_MAX_EXPANDED = 100_000  # hosts one pattern may name: a typo like [1:99999999] is not a fleet


@dataclass
class _Group:
    hosts: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    children: dict[str, None] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnsibleInventory:
    """An Ansible inventory as written: hosts with their own variables, and groups."""

    source: str
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)

    def group(self, name: str) -> _Group:
        return self.groups.setdefault(name, _Group())

    def add_host(self, pattern: str, variables: dict[str, Any], group: str, where: str) -> None:
        name, port = _split_port(pattern, where)
        for host in expand_host_pattern(name, where):
            own = self.hosts.setdefault(host, {})
            if port is not None:
                own["ansible_port"] = port
            own.update(variables)
            self.group(group).hosts[host] = None

    def host_vars(self, host: str) -> dict[str, Any]:
        """The host's variables after Ansible's precedence (groups by depth, then the host)."""
        depth = self._depths()
        merged: dict[str, Any] = {}
        for group in sorted(self._groups_of(host), key=lambda name: (depth.get(name, 0), name)):
            merged.update(self.groups[group].vars)
        merged.update(self.hosts[host])
        return merged

    def _groups_of(self, host: str) -> set[str]:
        parents: dict[str, set[str]] = {}
        for name, group in self.groups.items():
            for child in group.children:
                parents.setdefault(child, set()).add(name)
        found = {name for name, group in self.groups.items() if host in group.hosts} | {ALL}
        pending = list(found)
        while pending:
            for parent in parents.get(pending.pop(), ()):
                if parent not in found:
                    found.add(parent)
                    pending.append(parent)
        return found & set(self.groups) | {ALL}

    def _depths(self) -> dict[str, int]:
        """A group's depth below `all`: the longest chain of parents above it (as Ansible counts)."""
        depth = {ALL: 0}
        changed = True
        rounds = 0
        while changed and rounds <= len(self.groups) + 1:
            changed, rounds = False, rounds + 1
            for name, group in self.groups.items():
                for child in group.children:
                    wanted = depth.get(name, 1) + 1 if name != ALL else 1
                    if child != ALL and depth.get(child, 1) < wanted:
                        depth[child] = wanted
                        changed = True
        return depth


def expand_host_pattern(pattern: str, where: str) -> list[str]:
    """`web[01:03].lan` -> web01.lan, web02.lan, web03.lan (letters and strides too)."""
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    start, end, stride = match.group(1), match.group(2), match.group(3)
    head, tail = pattern[: match.start()], pattern[match.end():]
    values = _range_values(start, end, stride, pattern, where)
    expanded: list[str] = []
    for value in values:
        expanded.extend(expand_host_pattern(head + value + tail, where))
        if len(expanded) > _MAX_EXPANDED:
            raise InventoryError(f"{where}: host range {pattern[:80]!r} names more than {_MAX_EXPANDED:,} hosts")
    return expanded


def _range_values(start: str, end: str, stride: Optional[str], pattern: str, where: str) -> list[str]:
    step = 1
    if stride:
        if not stride.isdigit() or int(stride) < 1:
            raise InventoryError(f"{where}: host range {pattern[:80]!r}: the stride must be a positive number")
        step = int(stride)
    if (start == "" or start.isdigit()) and end.isdigit():
        first, last = int(start or "0"), int(end)
        if last < first:
            raise InventoryError(f"{where}: host range {pattern[:80]!r} ends before it starts")
        if (last - first) // step > _MAX_EXPANDED:
            raise InventoryError(f"{where}: host range {pattern[:80]!r} names more than {_MAX_EXPANDED:,} hosts")
        width = len(start) if start.startswith("0") else 0
        return [str(number).zfill(width) for number in range(first, last + 1, step)]
    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        first, last = letters.index(start), letters.index(end)
        if last < first:
            raise InventoryError(f"{where}: host range {pattern[:80]!r} ends before it starts")
        return list(letters[first: last + 1: step])
    raise InventoryError(f"{where}: host range {pattern[:80]!r}: use [01:20] or [a:f]")


def _split_port(pattern: str, where: str) -> tuple[str, Optional[int]]:
    """`db1:2222` -> ('db1', 2222); an IPv6 address or a range keeps its colons."""
    if pattern.count(":") == 1 and "[" not in pattern:
        name, port = pattern.split(":")
        if not port.isdigit():
            raise InventoryError(f"{where}: {pattern[:80]!r}: the part after ':' must be a port number")
        return name, int(port)
    if pattern.count(":") > 1 and "]:" in pattern and pattern.startswith("["):
        name, _, port = pattern[1:].rpartition("]:")
        if port.isdigit():
            return name, int(port)
    return pattern, None


def _ini_value(text: str) -> Any:
    """A value as Ansible's INI reader takes it: a Python literal when it is one, else text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


# ------------------------------------------------------------------------------------------
# INI


def is_ansible_ini(path: Path, text: str) -> bool:
    """An INI inventory: named so (`.ini`, `.cfg`), or, without a YAML or JSON suffix (Ansible's
    own `hosts` file has none), a file with a `[group]` section line."""
    suffix = path.suffix.lower()
    if suffix in (".ini", ".cfg"):
        return True
    if suffix in (".yaml", ".yml", ".json"):
        return False
    return any(_SECTION.match(line.strip()) for line in text.splitlines())


def parse_ansible_ini(text: str, source: str) -> AnsibleInventory:
    """Read an INI inventory (Ansible's `ini` plugin format)."""
    inventory = AnsibleInventory(source)
    inventory.group(ALL)
    section, kind = UNGROUPED, "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}: line {number}"
        if not line or line[0] in "#;":
            continue
        header = _SECTION.match(line)
        if header is not None:
            section, _, kind = header.group(1).strip().partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(f"{where}: section [{header.group(1)[:80]}]: expected :vars or :children")
            inventory.group(section)
            continue
        if kind == "vars":
            key, equals, value = line.partition("=")
            if not equals or not key.strip():
                raise InventoryError(f"{where}: expected key=value in [{section}:vars]")
            inventory.group(section).vars[key.strip()] = _ini_value(value.strip())
        elif kind == "children":
            child = _words(line, where)[0]
            inventory.group(child)
            inventory.group(section).children[child] = None
        else:
            words = _words(line, where)
            inventory.add_host(words[0], _host_line_vars(words[1:], where), section, where)
    _link_top_groups(inventory)
    return inventory


def _words(line: str, where: str) -> list[str]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:
        raise InventoryError(f"{where}: {error}") from None
    if not words:
        raise InventoryError(f"{where}: nothing but a comment where a name was expected")
    return words


def _host_line_vars(words: Iterable[str], where: str) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise InventoryError(f"{where}: expected key=value after the host name, got {word[:80]!r}")
        variables[key] = _ini_value(value)
    return variables


def _link_top_groups(inventory: AnsibleInventory) -> None:
    """Groups nobody names as a child hang under `all`, and hosts in no group but `all` are in
    `ungrouped`, as in Ansible."""
    grouped = {host for name, group in inventory.groups.items() if name not in (ALL, UNGROUPED) for host in group.hosts}
    ungrouped = inventory.group(UNGROUPED)
    ungrouped.hosts = {host: None for host in inventory.hosts if host not in grouped}
    named = {child for group in inventory.groups.values() for child in group.children}
    for name in inventory.groups:
        if name != ALL and name not in named:
            inventory.groups[ALL].children[name] = None


# ------------------------------------------------------------------------------------------
# YAML


def looks_like_ansible_yaml(document: Any) -> bool:
    """True for a YAML inventory in Ansible's layout (top-level groups with hosts/children/vars)."""
    if not isinstance(document, dict) or not document:
        return False
    if ALL in document:
        return True
    return all(isinstance(value, dict) and value and set(value) <= {"hosts", "children", "vars"}
               for value in document.values()) and not set(document) <= {"defaults", "hosts", "groups"}


def parse_ansible_yaml(document: Any, source: str) -> AnsibleInventory:
    """Read a YAML inventory (Ansible's `yaml` plugin format), already parsed."""
    if not isinstance(document, dict):
        raise InventoryError(f"{source}: expected a mapping of group names")
    inventory = AnsibleInventory(source)
    inventory.group(ALL)
    for name, body in document.items():
        _yaml_group(inventory, name, body, f"{source}: group {str(name)[:80]!r}")
    _link_top_groups(inventory)
    return inventory


def _yaml_group(inventory: AnsibleInventory, name: Any, body: Any, where: str) -> None:
    if not isinstance(name, str):
        raise InventoryError(f"{where}: a group name must be text")
    group = inventory.group(name)
    if body is None:
        return
    if not isinstance(body, dict):
        raise InventoryError(f"{where}: expected a mapping with hosts, children or vars")
    unknown = set(body) - {"hosts", "children", "vars"}
    if unknown:
        raise InventoryError(f"{where}: unknown key {str(sorted(map(str, unknown))[0])[:80]!r}; expected hosts, children or vars")
    variables = body.get("vars") or {}
    if not isinstance(variables, dict):
        raise InventoryError(f"{where}: vars must be a mapping")
    group.vars.update(variables)
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise InventoryError(f"{where}: hosts must be a mapping of host name -> variables")
    for pattern, own in hosts.items():
        if not isinstance(pattern, str) or not (own is None or isinstance(own, dict)):
            raise InventoryError(f"{where}: host {str(pattern)[:80]!r}: expected a mapping of variables")
        inventory.add_host(pattern, dict(own or {}), name, where)
    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(f"{where}: children must be a mapping of group names")
    for child, child_body in children.items():
        group.children[str(child)] = None
        _yaml_group(inventory, child, child_body, f"{where} > {str(child)[:80]!r}")


# ------------------------------------------------------------------------------------------
# to netviz


def to_netviz_document(inventory: AnsibleInventory) -> dict[str, Any]:
    """The netviz inventory document (hosts with their settings, groups) of an Ansible one."""
    hosts: dict[str, dict[str, Any]] = {}
    for name in inventory.hosts:
        hosts[name] = _netviz_settings(inventory.host_vars(name), f"{inventory.source}: host {name[:80]!r}")
    if not hosts:
        raise InventoryError(f"{inventory.source}: the Ansible inventory lists no host")
    groups: dict[str, list[str]] = {}
    for name, group in inventory.groups.items():
        members = list(group.hosts) + [child for child in group.children if _has_hosts(inventory, child)]
        if name in hosts:
            raise InventoryError(f"{inventory.source}: group {name[:80]!r} has the same name as a host; "
                                 "netviz's --limit could not tell them apart")
        if members and name != ALL:
            groups[name] = members
    for name in groups:
        groups[name] = [member for member in groups[name] if member in hosts or member in groups]
    return {"hosts": hosts, "groups": groups}


def _has_hosts(inventory: AnsibleInventory, name: str, seen: Optional[set[str]] = None) -> bool:
    seen = seen if seen is not None else set()
    if name in seen or name not in inventory.groups:
        return False
    seen.add(name)
    group = inventory.groups[name]
    return bool(group.hosts) or any(_has_hosts(inventory, child, seen) for child in group.children)


def _netviz_settings(variables: dict[str, Any], where: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for ansible_name, key in _SETTINGS.items():
        value = variables.get(ansible_name)
        if value is not None and key not in settings:
            settings[key] = value
    if "port" in settings and isinstance(settings["port"], str) and settings["port"].isdigit():
        settings["port"] = int(settings["port"])
    become = next((variables[name] for name in _BECOME if name in variables), False)
    if _truth(become, where):
        method = str(variables.get(_BECOME_METHOD, "sudo"))
        if method != "sudo":
            raise InventoryError(f"{where}: ansible_become_method {method[:40]!r}: netviz can use sudo only")
        has_password = any(variables.get(name) not in (None, "") for name in _BECOME_PASSWORDS)
        settings["sudo"] = "password" if has_password else True
    return settings


def _truth(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InventoryError(f"{where}: ansible_become {str(value)[:40]!r} is neither true nor false")

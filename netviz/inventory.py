"""The host inventory: a YAML file (plus ssh_config) turned into a list of HostSpec.

The file has three sections, all documented key by key in inventory.example.yaml:
`defaults` (inherited by every host), `hosts` (name -> settings) and `groups` (name -> list of
host or group names, for `--limit`). Settings are resolved in this order, first wins:
the host's own entry, the inventory's `defaults`, the user's ssh_config for that host, built-in
defaults. Every mistake raises InventoryError naming the file, the host and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import getpass
import os
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import paramiko
import yaml

from netviz.errors import InventoryError
from netviz.inventory_ansible import (
    is_ansible_ini,
    looks_like_ansible_yaml,
    parse_ansible_ini,
    parse_ansible_yaml,
    to_netviz_document,
)
from netviz.ssh_config import SshConfigError, read_ssh_config

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 60.0
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
DEFAULT_SSH_CONFIG = "~/.ssh/config"

# sudo modes: never, `sudo -n` (passwordless rule), or with a password given once per run.
SUDO_NO = "no"
SUDO_NOPASSWD = "nopasswd"
SUDO_PASSWORD = "password"

# Keys a host entry (and `defaults`) may carry. `address` makes no sense in defaults.
HOST_KEYS = (
    "address",
    "user",
    "port",
    "identity_file",
    "known_hosts",
    "sudo",
    "connect_timeout",
    "command_timeout",
    "jump",
    "python",
)
DEFAULT_KEYS = tuple(key for key in HOST_KEYS if key != "address")
TOP_KEYS = ("defaults", "hosts", "groups")

# Host names become cache file names and progress labels: keep them to a safe, readable set.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,252}$")
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9_.:%-]{1,253}$")
_HOP_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class HostSpec:
    """Everything needed to reach one machine and run the payload there."""

    name: str  # the inventory name: cache file name, label in the graph
    address: str  # what to connect to (after ssh_config HostName)
    port: int = DEFAULT_PORT
    user: str = field(default_factory=getpass.getuser)
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    sudo: str = SUDO_NO
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    jump: tuple["HostSpec", ...] = ()  # ProxyJump hops, first hop first
    proxy_command: Optional[str] = None
    python: Optional[str] = None  # an explicit interpreter instead of the python3 fallbacks

    @property
    def known_hosts_key(self) -> str:
        """The name this machine's key is filed under in known_hosts, as OpenSSH writes it."""
        return self.address if self.port == DEFAULT_PORT else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Inventory:
    """The resolved inventory: hosts in file order and the groups that name them."""

    hosts: tuple[HostSpec, ...]
    groups: Mapping[str, tuple[str, ...]]
    source: str

    def select(self, limit: Optional[Sequence[str]]) -> list[HostSpec]:
        """The hosts named by `limit` (host or group names, comma-separated allowed), in file order.

        No limit selects every host. An unknown name raises InventoryError with a suggestion.
        """
        if not limit:
            return list(self.hosts)
        names = [part.strip() for item in limit for part in item.split(",") if part.strip()]
        by_name = {host.name: host for host in self.hosts}
        wanted: set[str] = set()
        for name in names:
            wanted.update(self._expand(name, by_name, ()))
        return [host for host in self.hosts if host.name in wanted]

    def _expand(self, name: str, by_name: Mapping[str, HostSpec], seen: tuple[str, ...]) -> set[str]:
        if name in by_name:
            return {name}
        if name in self.groups:
            if name in seen:
                chain = " -> ".join(seen + (name,))
                raise InventoryError(f"{self.source}: groups refer to each other in a loop: {chain}")
            result: set[str] = set()
            for member in self.groups[name]:
                result.update(self._expand(member, by_name, seen + (name,)))
            return result
        known = sorted(set(by_name) | set(self.groups))
        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        where = f" (in group '{seen[-1]}')" if seen else ""
        raise InventoryError(f"{self.source}: no host or group named '{name}'{where}{suggestion}")


def load_ssh_config(path: Optional[os.PathLike | str]) -> paramiko.SSHConfig:
    """Parse an ssh_config file; None means ~/.ssh/config if it exists (an empty config if not)."""
    if path is None:
        default = Path(DEFAULT_SSH_CONFIG).expanduser()
        if not default.is_file():
            return paramiko.SSHConfig()
        path = default
    path = Path(path).expanduser()
    try:
        return read_ssh_config(path)
    except SshConfigError as error:
        raise InventoryError(str(error)) from None
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as error:
        raise InventoryError(f"{path}: {error}") from None


def load_inventory(path: os.PathLike | str, ssh_config: Optional[paramiko.SSHConfig] = None) -> Inventory:
    """Read and validate an inventory file; ssh_config fills what the inventory leaves unset."""
    source = str(path)
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as error:
        raise InventoryError(f"cannot read inventory {source}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{source}: not UTF-8 text") from None
    ssh_config = ssh_config if ssh_config is not None else paramiko.SSHConfig()
    if is_ansible_ini(Path(path), text):
        return parse_inventory(to_netviz_document(parse_ansible_ini(text, source)), source, ssh_config)
    try:
        document = _load_yaml(text)
    except RecursionError:  # nesting deeper than the parser's recursion allows
        raise InventoryError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError as error:  # a value YAML reads as a date that does not exist (2001-13-45)
        raise InventoryError(f"{source}: invalid YAML value: {_cut(str(error).splitlines()[0], 300) if str(error) else type(error).__name__}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InventoryError(f"{source}: invalid YAML{where}: {_cut(problem, 300)}") from None
    if looks_like_ansible_yaml(document):
        document = to_netviz_document(parse_ansible_yaml(document, source))
    return parse_inventory(document, source, ssh_config)


# An inventory of thousands of hosts is some tens of thousands of YAML nodes; an alias repeats
# the node it names, and aliases of aliases multiply ("billion laughs"): a few hundred bytes can
# stand for billions of values. The document is refused past this many nodes once expanded.
MAX_EXPANDED_NODES = 1_000_000


class _InventoryLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing what the inventory must not silently accept: a key given twice
    in one mapping (YAML would keep the last: two hosts of one name, two `defaults`, `port`
    twice) and aliases that expand past MAX_EXPANDED_NODES."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        _refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    """The document of an inventory's text (see _InventoryLoader)."""
    loader = _InventoryLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        # merge keys (`<<: *base`) may repeat and are overridden on purpose; compare scalars only
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {_shown(key_node.value)} appears twice in one mapping, at line {first_line[key]} and at "
                f"line {line}: YAML would silently keep the last one",
                key_node.start_mark,
            )
        first_line[key] = line


def _check_expansion(root: Optional[yaml.Node]) -> None:
    """Refuse a document whose aliases expand past MAX_EXPANDED_NODES, or into themselves
    (`&a [*a]`), counted without expanding: each distinct node's size is computed once."""
    if root is None:
        return
    sizes: dict[int, int] = {}
    visiting: set[int] = set()  # nodes whose descendants are being counted
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:  # iterative: nesting depth must not cost recursion
        node, children_counted = pending.pop()
        children = _children(node)
        if children_counted:
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_EXPANDED_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?)",
                    node.start_mark)
            sizes[id(node)] = size
            visiting.discard(id(node))
            continue
        if id(node) in sizes:
            continue
        if id(node) in visiting:  # met again below itself: an alias inside its own anchor
            raise yaml.composer.ComposerError(None, None, "an alias refers to the value that contains it",
                                              node.start_mark)
        visiting.add(id(node))
        pending.append((node, True))
        pending.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any, limit: int = 80) -> str:
    """A bounded repr of a value from the inventory, for error messages: the value may be huge
    (a long string, a deep structure) and repr() of it whole costs what it expands to."""
    if isinstance(value, str):
        return repr(_cut(value, limit))
    shower = reprlib.Repr()
    shower.maxlevel, shower.maxlist, shower.maxdict, shower.maxset = 2, 4, 4, 4
    shower.maxstring, shower.maxother, shower.maxlong = limit, limit, limit
    return _cut(shower.repr(value), limit)


def parse_inventory(document: Any, source: str, ssh_config: paramiko.SSHConfig) -> Inventory:
    """Validate an already-parsed inventory document (see load_inventory)."""
    if not isinstance(document, dict):
        raise InventoryError(f"{source}: expected a mapping with 'hosts' (and optional 'defaults', 'groups')")
    _reject_unknown(document, TOP_KEYS, f"{source}: top level")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InventoryError(f"{source}: 'defaults' must be a mapping of settings")
    _reject_unknown(defaults, DEFAULT_KEYS, f"{source}: defaults")
    raw_hosts = document.get("hosts")
    if not raw_hosts:
        raise InventoryError(f"{source}: 'hosts' is missing or empty")
    if isinstance(raw_hosts, list):
        # A bare list of names is allowed: every host then takes defaults and ssh_config.
        raw_hosts = {_name(item, source, "hosts"): None for item in raw_hosts}
    if not isinstance(raw_hosts, dict):
        raise InventoryError(f"{source}: 'hosts' must be a mapping of name -> settings")

    resolver = _Resolver(source, defaults, raw_hosts, ssh_config)
    hosts = tuple(resolver.host(_name(name, source, "hosts")) for name in raw_hosts)
    groups = _groups(document.get("groups"), source, {host.name for host in hosts})
    return Inventory(hosts=hosts, groups=groups, source=source)


def _name(value: Any, source: str, section: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise InventoryError(
            f"{source}: {section}: name {_shown(value)} is not usable: use letters, digits and . _ - : @ +"
        )
    return value


def _reject_unknown(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(_cut(str(key), 100), allowed, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            # repr: the key comes from the file and may hold a newline or a terminal escape
            raise InventoryError(f"{where}: unknown key {_shown(key)}{suggestion}; known keys: {', '.join(allowed)}")


def _groups(raw: Any, source: str, host_names: set[str]) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InventoryError(f"{source}: 'groups' must be a mapping of name -> list of host or group names")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in raw.items():
        name = _name(name, source, "groups")
        if name in host_names:
            raise InventoryError(f"{source}: group '{name}' has the same name as a host")
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InventoryError(f"{source}: group '{name}': expected a list of host or group names")
        groups[name] = tuple(members)
    for name, members in groups.items():
        for member in members:
            if member not in host_names and member not in groups:
                raise InventoryError(f"{source}: group '{name}': no host or group named {_shown(member)}")
    return groups


class _Resolver:
    """Merges host entry, defaults and ssh_config for one host (and its jump hops)."""

    def __init__(self, source: str, defaults: dict, hosts: dict, ssh_config: paramiko.SSHConfig):
        self.source = source
        self.defaults = defaults
        self.hosts = hosts
        self.ssh_config = ssh_config
        self._resolving: list[str] = []

    def host(self, name: str) -> HostSpec:
        entry = self.hosts.get(name)
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise InventoryError(f"{self.source}: host '{name}': expected a mapping of settings, got {_shown(entry)}")
        _reject_unknown(entry, HOST_KEYS, f"{self.source}: host '{name}'")
        if name in self._resolving:
            chain = " -> ".join(self._resolving + [name])
            raise InventoryError(f"{self.source}: jump hosts refer to each other in a loop: {chain}")
        self._resolving.append(name)
        try:
            return self._build(name, entry)
        finally:
            self._resolving.pop()

    def _setting(self, entry: dict, key: str) -> Any:
        if entry.get(key) is not None:
            return entry[key]
        return self.defaults.get(key)

    def _build(self, name: str, entry: dict) -> HostSpec:
        where = f"{self.source}: host '{name}'"
        address = entry.get("address")
        if address is not None:
            _check_address(address, where)
        # ssh_config is matched against what one would type after `ssh`: the address, else the name.
        config = self._lookup(address or name, where)
        hostname = address or config.get("hostname") or name
        user = _text(self._setting(entry, "user"), where, "user") or config.get("user") or getpass.getuser()
        port = _port(self._setting(entry, "port"), where) or _port(config.get("port"), where + " (ssh_config)")
        identities = _identity_files(self._setting(entry, "identity_file"), where)
        identities += tuple(str(Path(p).expanduser()) for p in config.get("identityfile", []))
        known_hosts = _text(self._setting(entry, "known_hosts"), where, "known_hosts")
        if known_hosts is None and config.get("userknownhostsfile"):
            known_hosts = config["userknownhostsfile"].split()[0]
        jump_value = self._setting(entry, "jump")
        if jump_value is None:
            jump_value = config.get("proxyjump")
        return HostSpec(
            name=name,
            address=hostname,
            port=port or DEFAULT_PORT,
            user=user,
            identity_files=_unique(identities),
            identities_only=str(config.get("identitiesonly", "no")).lower() == "yes",
            known_hosts=str(Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()),
            sudo=_sudo(self._setting(entry, "sudo"), where),
            connect_timeout=_seconds(self._setting(entry, "connect_timeout"), where, "connect_timeout")
            or _seconds(config.get("connecttimeout"), where + " (ssh_config)", "ConnectTimeout")
            or DEFAULT_CONNECT_TIMEOUT,
            command_timeout=_seconds(self._setting(entry, "command_timeout"), where, "command_timeout")
            or DEFAULT_COMMAND_TIMEOUT,
            jump=self._hops(jump_value, where),
            proxy_command=None if jump_value else _proxy_command(config.get("proxycommand")),
            python=_python(self._setting(entry, "python"), where),
        )

    def _lookup(self, target: str, where: str) -> dict:
        try:
            return dict(self.ssh_config.lookup(target))
        except Exception as error:  # paramiko raises several types for odd configs (Match exec, canonicalization)
            raise InventoryError(f"{where}: ssh_config lookup failed: {error}") from None

    def _hops(self, value: Any, where: str) -> tuple[HostSpec, ...]:
        if value is None or value is False or value == "none":
            return ()
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise InventoryError(f"{where}: key 'jump': expected 'host', 'user@host:port' or a list of them")
        return tuple(self._hop(item, where) for item in items)

    def _hop(self, text: str, where: str) -> HostSpec:
        if text in self.hosts:
            # A hop may be another inventory host: it brings its own user, key and known_hosts.
            spec = self.host(text)
            return dataclasses.replace(spec, sudo=SUDO_NO)
        match = _HOP_RE.match(text)
        if not match:
            raise InventoryError(f"{where}: key 'jump': cannot read hop {_shown(text)} (expected [user@]host[:port])")
        host = match["host"].strip("[]")
        _check_address(host, where, "jump")
        config = self._lookup(host, where + f" (jump {text})")
        identities = _identity_files(self.defaults.get("identity_file"), where)
        identities += tuple(str(Path(p).expanduser()) for p in config.get("identityfile", []))
        # checked as the host's own known_hosts is: a number or NaN in defaults is text or an error
        known_hosts = _text(self.defaults.get("known_hosts"), where, "known_hosts")
        if known_hosts is None and config.get("userknownhostsfile"):
            known_hosts = config["userknownhostsfile"].split()[0]
        return HostSpec(
            name=text,
            address=config.get("hostname") or host,
            port=_port(match["port"], where) or _port(config.get("port"), where) or DEFAULT_PORT,
            user=match["user"] or config.get("user") or _text(self.defaults.get("user"), where, "user")
            or getpass.getuser(),
            identity_files=_unique(identities),
            identities_only=str(config.get("identitiesonly", "no")).lower() == "yes",
            known_hosts=str(Path(known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()),
            connect_timeout=_seconds(self.defaults.get("connect_timeout"), where, "connect_timeout")
            or DEFAULT_CONNECT_TIMEOUT,
        )


def _check_address(address: Any, where: str, key: str = "address") -> None:
    # Only what host names and IP addresses are made of (OpenSSH refuses shell characters in
    # host names too: a ProxyCommand may expand %h inside a shell).
    if not isinstance(address, str) or address.startswith("-") or not _ADDRESS_RE.match(address):
        raise InventoryError(f"{where}: key '{key}': expected a host name or IP address, got {_shown(address)}")
    if address.count(":") == 1:
        raise InventoryError(f"{where}: key 'address': {_shown(address)} looks like host:port; put the port in 'port'")


def _text(value: Any, where: str, key: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InventoryError(f"{where}: key '{key}': expected text, got {_shown(value)}")
    return value


def _python(value: Any, where: str) -> Optional[str]:
    """An interpreter path: any characters are quoted in the remote command, but the command
    must stay one line without `!` (csh-family login shells mangle both even inside quotes)."""
    path = _text(value, where, "python")
    if path is not None and (path.isprintable() is False or "!" in path):
        raise InventoryError(f"{where}: key 'python': control characters and '!' cannot be sent, got {_shown(path)}")
    return path


def _port(value: Any, where: str) -> Optional[int]:
    if value is None:
        return None
    try:
        port = int(value)
        if isinstance(value, bool) or str(port) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise InventoryError(f"{where}: key 'port': expected a number 1-65535, got {_shown(value)}") from None
    if not 1 <= port <= 65535:
        raise InventoryError(f"{where}: key 'port': expected a number 1-65535, got {port}")
    return port


def _seconds(value: Any, where: str, key: str) -> Optional[float]:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
    except (TypeError, ValueError):
        raise InventoryError(f"{where}: key '{key}': expected a number of seconds, got {_shown(value)}") from None
    if not 0 < seconds <= 86400:
        raise InventoryError(f"{where}: key '{key}': expected seconds between 0 and 86400, got {_shown(value)}")
    return seconds


def _sudo(value: Any, where: str) -> str:
    if value is None or value is False or value == "no":
        return SUDO_NO
    if value is True or value == "yes":
        return SUDO_NOPASSWD
    if value == "password":
        return SUDO_PASSWORD
    raise InventoryError(f"{where}: key 'sudo': expected true, false or 'password', got {_shown(value)}")


def _identity_files(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InventoryError(f"{where}: key 'identity_file': expected a path or a list of paths")
    return tuple(str(Path(v).expanduser()) for v in value)


def _proxy_command(value: Optional[str]) -> Optional[str]:
    if not value or value.strip().lower() == "none":
        return None
    return value


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


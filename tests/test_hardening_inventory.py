"""Inventory values never reach a shell unquoted, locally or remotely.

Host names, addresses, users, paths and the python path full of spaces, quotes, `;`, `$( )`,
backticks and newlines are either refused by the loader (one line naming the host and the key)
or passed safely: the exact remote command is split back into its words, then run by real
shells (sh, and bash/dash when present) with an interpreter whose path holds all of it; on the
lab, a machine runs it for real. Every hostile value would create a marker file if a shell ever
read it unquoted; no marker may exist afterwards. The loader itself is fuzzed with arbitrary
YAML-ish text.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import paramiko
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from netviz.collect import payload_source, validate_output
from netviz.errors import InventoryError
from netviz.inventory import HostSpec, load_inventory, parse_inventory
from netviz.transport import remote_command

# One example takes well under a second, and seconds on a very busy machine; far longer means a
# parser that hangs or blows up on its input (the failure the deadline is there to catch).
EXAMPLE_DEADLINE = timedelta(seconds=20)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = (REPO / "inventory.example.yaml").read_text()


def _hostile(marker: Path) -> list[str]:
    """Values that create `marker` wherever a shell reads them unquoted."""
    m = str(marker)
    return [
        f"x; touch {m}", f"$(touch {m})", f"`touch {m}`", f"x\ntouch {m}", f"x' ; touch {m}; echo '",
        f'x" ; touch {m}; echo "', f"x && touch {m}", f"x | touch {m}", f"x\rtouch {m}",
        f"x$(touch${{IFS}}{m})", "with space", "-oProxyCommand=touch " + m, f"x\\'; touch {m} #",
    ]


def _one_line(error: InventoryError, *words: str) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1, repr(message)
    for word in words:
        assert word in message, (word, message)


def _load(tmp_path: Path, document: dict) -> object:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_inventory(path, paramiko.SSHConfig())


# --------------------------------------------------------------------------------------------
# Each key with hostile values: refused naming the host and the key, or kept exactly

KEYS = ("address", "user", "python", "identity_file", "known_hosts", "sudo", "jump", "port",
        "connect_timeout", "command_timeout")


@pytest.mark.parametrize("key", KEYS)
def test_hostile_values_are_refused_naming_host_and_key_or_kept_exactly(tmp_path, key) -> None:
    marker = tmp_path / "marker"
    for value in _hostile(marker):
        try:
            inventory = _load(tmp_path, {"hosts": {"web1": {"address": "10.0.0.1", key: value}}})
        except InventoryError as error:
            _one_line(error, "web1", key)
            continue
        spec = inventory.hosts[0]
        kept = {"address": spec.address, "user": spec.user, "python": spec.python,
                "identity_file": spec.identity_files[0] if spec.identity_files else None,
                "known_hosts": spec.known_hosts, "jump": spec.jump[0].name if spec.jump else None}.get(key)
        assert kept == value, (key, value, spec)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["web 1", "web;1", "$(id)", "`id`", "web\n1", "-web", ".web", "", "x" * 300,
                                   "../etc", "web/1"])
def test_hostile_host_names_are_refused(tmp_path, value) -> None:
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, {"hosts": {value: {"address": "10.0.0.1"}}})
    _one_line(caught.value, "hosts", "name")


def test_addresses_and_jump_hosts_hold_no_shell_syntax(tmp_path) -> None:
    """OpenSSH refuses host names with shell characters (a ProxyCommand may expand %h into a
    shell); the inventory refuses them first, for the host and for each jump hop."""
    for value in ("a;b", "$(id)", "`id`", "a|b", "a&b", "a'b", 'a"b', "a$b", "a\\b", "a<b", "a>b", "a*b",
                  "a(b)", "a{b}", "a!b", "a~b"):
        with pytest.raises(InventoryError) as caught:
            _load(tmp_path, {"hosts": {"web1": {"address": value}}})
        _one_line(caught.value, "web1", "address")
        with pytest.raises(InventoryError) as caught:
            _load(tmp_path, {"hosts": {"web1": {"address": "10.0.0.1", "jump": f"root@{value}:22"}}})
        _one_line(caught.value, "web1", "jump")
    # what host names and addresses really look like stays accepted
    for value in ("10.0.0.1", "fd77::12", "fe80::1%eth0", "web-1.example.com", "WEB_1", "xn--bcher-kva.example"):
        assert _load(tmp_path, {"hosts": {"web1": {"address": value}}}).hosts[0].address == value


def test_paths_with_spaces_and_quotes_are_kept_exactly(tmp_path) -> None:
    odd = str(tmp_path / "my keys" / "it's \"the\" key $(x) `y`")
    inventory = _load(tmp_path, {"hosts": {"web1": {"address": "10.0.0.1", "identity_file": odd,
                                                    "known_hosts": odd + ".hosts", "python": "/opt/py thon/bin/python3"}}})
    spec = inventory.hosts[0]
    assert spec.identity_files == (odd,) and spec.known_hosts == odd + ".hosts"
    assert spec.python == "/opt/py thon/bin/python3"


# --------------------------------------------------------------------------------------------
# The exact remote command

def _shell_words(script: str) -> list[str]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    return list(lexer)


def _interpreters_tried(command: str) -> list[str]:
    """The words of the `for c in ...; do` list inside the command sent to the machine."""
    outer = shlex.split(command)
    assert outer[:3] == ["exec", "sh", "-c"] and len(outer) == 4, outer
    words = _shell_words(outer[3])
    start = words.index("for") + 3
    assert words[start - 2:start] == ["c", "in"]
    return words[start:words.index(";", start)]


PYTHONS = ["/opt/py thon/bin/python3", "/x/it's/python3", '/x/"q"/python3', "/x/$(touch M)/py", "/x/`touch M`/py",
           "/x/a;touch M/py", "/x/a&&b|c/py", "/x/${IFS}/py", "/x/%s/py", "/x/\\n/py", "/x/-c/py"]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("sudo", ["no", "nopasswd", "password"])
def test_remote_command_passes_the_python_path_as_one_word(python, sudo) -> None:
    spec = HostSpec(name="web1", address="10.0.0.1", python=python, sudo=sudo)
    command = remote_command(spec, with_password=sudo == "password")
    assert _interpreters_tried(command) == [python]
    assert "\n" not in command and "!" not in command  # one line, nothing a csh would expand


def test_a_python_path_with_a_newline_or_bang_is_refused(tmp_path) -> None:
    """The command must stay on one line without `!` (csh-family login shells mangle both, even
    quoted), so such an interpreter path cannot be sent: the loader says so."""
    for value in ("/usr/bin/python3\ntouch /tmp/x", "/usr/bin/py!thon3", "/usr/bin/python3\r"):
        with pytest.raises(InventoryError) as caught:
            _load(tmp_path, {"hosts": {"web1": {"address": "10.0.0.1", "python": value}}})
        _one_line(caught.value, "web1", "python")


SHELLS = [shell for shell in ("sh", "bash", "dash", "zsh", "ksh") if shutil.which(shell)]


@pytest.mark.parametrize("shell", SHELLS)
def test_real_shells_run_the_payload_through_a_hostile_interpreter_path(tmp_path, shell) -> None:
    """The remote command as the machine's login shell gets it (`shell -c COMMAND`, payload on
    stdin), with an interpreter whose path is full of shell syntax: the payload runs, gives a
    valid snapshot, and no marker appears."""
    marker = tmp_path / "marker"  # the shell runs in tmp_path: a relative `touch marker` lands there
    directory = tmp_path / "it's a \"dir\" $(touch marker) `touch marker` ; touch marker &"
    directory.mkdir()
    python = directory / "py$(touch ${IFS}x)3"
    python.symlink_to(sys.executable)
    spec = HostSpec(name="local", address="127.0.0.1", python=str(python), command_timeout=60)
    command = remote_command(spec, with_password=False)
    assert _interpreters_tried(command) == [str(python)]
    result = subprocess.run([shell, "-c", command], input=payload_source(), capture_output=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    _, snapshot = validate_output("local", result.stdout)
    assert snapshot.processes
    assert not marker.exists() and not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [directory.name]


@pytest.mark.parametrize("shell", SHELLS[:1])
def test_a_missing_hostile_interpreter_is_reported_not_run(tmp_path, shell) -> None:
    marker = tmp_path / "marker"
    for python in _hostile(marker):
        if "\n" in python or "\r" in python:
            continue  # refused by the loader (see above)
        command = remote_command(HostSpec(name="h", address="10.0.0.1", python=python), with_password=False)
        result = subprocess.run([shell, "-c", command], input=b"", capture_output=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 127, (python, result.stderr)
        assert b"no Python 3.6+ found" in result.stderr
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# The loader over arbitrary and mutated text


def _check_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_inventory(path, paramiko.SSHConfig())
    except InventoryError as error:
        assert len(str(error).splitlines()) == 1, repr(str(error))


EXAMPLE_LINES = EXAMPLE.splitlines()
YAMLISH = st.text(alphabet=st.sampled_from(list(":-[]{},'\"&*!|>#%@` \n\t?") + list("abc01")), max_size=80)
VALUES = st.sampled_from(["", "~", "null", "[]", "{}", "[a, [b]]", "{a: {b: c}}", "*x", "&x a", "!!binary aGk=",
                          "!!python/object:os.system", "2001-13-45", "1e999", ".nan", "0x1F", "0o17", "-1",
                          "99999999999999999999999999", "yes", "'", '"', "|", ">-", "a: b: c", "- - -",
                          "%YAML 1.1", "---", "...", "${IFS}", "$(id)", "\t", "\x00", "\x1b[2J"])


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    lines = list(EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 5))):
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        action = draw(st.sampled_from(("value", "delete", "duplicate", "indent", "insert")))
        if action == "value" and ":" in line:
            key, _, _ = line.partition(":")
            lines[index] = f"{key}: {draw(VALUES | YAMLISH)}"
        elif action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, line)
        elif action == "indent":
            lines[index] = " " * draw(st.integers(0, 6)) + line.lstrip()
        else:
            lines.insert(index, draw(YAMLISH))
        if not lines:
            lines = [""]
    return "\n".join(lines)


@settings(max_examples=250, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.one_of(mutated_example(), YAMLISH, st.text(max_size=120)))
def test_any_inventory_text_loads_or_is_one_line_error(tmp_path, text) -> None:
    _check_load(tmp_path, text)


def test_deeply_nested_yaml_is_an_inventory_error(tmp_path) -> None:
    for text in ("hosts: " + "[" * 100_000 + "]" * 100_000, "hosts:\n" + "".join("  " * i + "- \n" for i in range(3000)),
                 "a: &a [*a]\nhosts: [web1]\n"):
        _check_load(tmp_path, text)


def test_a_date_that_does_not_exist_is_an_inventory_error(tmp_path) -> None:
    """YAML reads 2001-13-45 as a timestamp and the datetime constructor raises ValueError."""
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web1:\n    user: 2001-13-45\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    _one_line(caught.value, str(path), "month")


def test_yaml_bomb_is_bounded(tmp_path) -> None:
    """Aliases that expand exponentially (a "billion laughs") must not hang the loader."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("hosts: *a11")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, paramiko.SSHConfig())
    _one_line(caught.value, str(path))


def test_parse_inventory_on_arbitrary_documents() -> None:
    @settings(max_examples=200, deadline=EXAMPLE_DEADLINE)
    @given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                            st.sampled_from(["hosts", "defaults", "groups", "web1", "address", "user", "jump",
                                             "python", "port", "sudo"]) | st.text(max_size=5), inner, max_size=4),
                        max_leaves=12))
    def check(document) -> None:
        try:
            parse_inventory(document, "doc.yaml", paramiko.SSHConfig())
        except InventoryError as error:
            assert len(str(error).splitlines()) == 1, repr(str(error))

    check()


# --------------------------------------------------------------------------------------------
# On the lab: a real OpenSSH machine, whose login shell gets the command


def _markers(machine) -> list[str]:
    """Marker files anywhere on the machine's own file systems (its /, /root, /tmp, /home, /run)."""
    found = machine.exec(["find", "/", "/root", "/tmp", "/home", "/run", "-xdev", "-name", "nv-m*"], timeout=60)
    return sorted(set(found.stdout.split()))


def test_lab_machine_runs_a_hostile_interpreter_path_without_a_shell_reading_it(lab_factory, tmp_path) -> None:
    from typer.testing import CliRunner

    from netviz.cli import app

    lab = lab_factory(1)
    machine = lab.machines["m00"]
    # Relative markers land in the login directory; the find below looks everywhere local.
    directory = "/tmp/it's a \"d\" $(touch nv-m1) `touch nv-m2` ; touch nv-m3 & x"
    python = f"{directory}/py$(touch nv-m4)3"
    machine.exec(["mkdir", "-p", directory], check=True)
    machine.exec(["ln", "-s", "/usr/bin/python3", python], check=True)
    base = yaml.safe_load(lab.write_inventory(tmp_path / "lab.yaml", hosts=["m00"]).read_text())
    entry = base["hosts"]["m00"]
    base["hosts"] = {
        "m00": {**entry, "python": python},
        "m00-missing": {**entry, "python": "$(touch nv-m5)`touch nv-m6`;touch nv-m7;python3"},
    }
    hosts_file = tmp_path / "hosts.yaml"
    hosts_file.write_text(yaml.safe_dump(base))
    result = CliRunner().invoke(app, ["collect", "--inventory", str(hosts_file), "--cache", str(tmp_path / "cache")],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 3, result.output  # one ok, one without python: partial
    manifest = json.loads(next((tmp_path / "cache").glob("*/manifest.json")).read_text())
    status = {host["host"]: (host["status"], host["category"]) for host in manifest["hosts"]}
    assert status == {"m00": ("ok", None), "m00-missing": ("failed", "no_python")}, manifest
    found = _markers(machine)
    assert found == [], found
    # the search does see a marker a shell would have made in the login directory
    machine.exec(["sh", "-c", "cd ~root && touch nv-m0"], check=True)
    assert _markers(machine) == ["/root/nv-m0"]
    assert not list(Path.home().glob("nv-m*")) and not list(tmp_path.glob("nv-m*"))


def test_a_jump_hop_checks_the_known_hosts_of_defaults_like_a_host_does(tmp_path):
    """Found by the property test above: `known_hosts: .nan` (a float to YAML) reached a jump hop
    unchecked and ended in a TypeError from pathlib instead of one line naming the key."""
    path = tmp_path / "hosts.yaml"
    path.write_text("defaults:\n  known_hosts: [a, b]\nhosts:\n  db1:\n    address: 10.0.0.13\n    jump: bastion.example.com\n")
    with pytest.raises(InventoryError, match="known_hosts"):
        load_inventory(path, paramiko.SSHConfig())
    path.write_text("defaults:\n  known_hosts: .nan\nhosts:\n  db1:\n    address: 10.0.0.13\n    jump: bastion.example.com\n")
    assert load_inventory(path, paramiko.SSHConfig()).hosts[0].jump[0].known_hosts.endswith("nan")

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
import resource
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

from netviz.errors import InventoryError
from netviz.inventory import load_inventory

REPO = Path(__file__).resolve().parent.parent


MEMORY_LIMIT = 2 * 1024**3  # address space of a netviz subprocess: a bomb fails fast, not the test machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run_netviz(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netviz", *arguments], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, preexec_fn=_limit_memory,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(REPO)})


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


@pytest.mark.parametrize("value, said", [
    (_flow_laughs(9), "aliases expand to more than"),
    ("&a [x, *a]", "an alias refers to the value that contains it"),
], ids=["billion-laughs", "self-reference"])
def test_an_alias_bomb_is_refused_at_once_without_a_traceback(tmp_path, value, said):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  web:\n    port: " + value + "\n")
    started = time.monotonic()
    result = _run_netviz("collect", "-i", str(path), "--cache", str(tmp_path / "cache"), timeout=30)
    assert time.monotonic() - started < 15
    assert result.returncode == 1, result.stderr
    assert said in result.stderr
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


# ------------------------------------------------------------------ text from machines on the terminal

_CONSOLE_SCRIPT = r"""
import logging, sys
sys.path.insert(0, {repo!r})
from tests.snapbuilder import Machine
from netviz import console
from netviz.render.table import busiest_lines
from netviz.stitch import stitch

web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
web.process(100, {comm!r})
db.process(200, "[bold]postgres[/]\\")
db.listen(200, "tcp", "0.0.0.0:5432")
web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
graph = stitch([web.build(), db.build()])
for line in busiest_lines(graph):
    console.info(line)
console.warning({comm!r} + "[123]")
console.error({comm!r} + "[/]")
console.print_table(["a"], [[{comm!r} + "[1]"]], footer={comm!r} + "[2]")
console.setup_logging("warning")
logging.getLogger("netviz.test").warning("from a machine: %s", {comm!r} + "[3]\x1b[2J")
"""


def test_text_from_machines_is_never_read_as_markup():
    """A process named `evil\\` (then `[pid]`) keeps its backslash, and `[bold]...[/]` is shown as
    is, in every kind of line the console prints (a real process, its real stderr)."""
    comm = "evil\\"
    script = _CONSOLE_SCRIPT.format(repo=str(REPO), comm=comm)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "TERM": "dumb"})
    assert result.returncode == 0, result.stderr
    output = result.stderr + result.stdout
    assert "busiest flows: web: evil\\[100] -> db: [bold]postgres[/]\\[200] tcp/5432" in output, output
    assert "warning: evil\\[123]" in output
    assert "error: evil\\[/]" in output
    assert "evil\\[1]" in result.stdout and "evil\\[2]" in output
    assert "from a machine: evil\\[3]\\x1b[2J" in output and "\x1b" not in output


@pytest.mark.parametrize("char", [
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # bidi embeddings and overrides
    "\u2066", "\u2067", "\u2068", "\u2069",  # bidi isolates
    "\u200e", "\u200f", "\u061c",  # direction marks
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",  # zero-width and invisible
    "\U000e0041",  # a tag character
    "\u2028", "\u2029", "\x85", "\x1b", "\x7f",
])
def test_for_terminal_escapes_bidi_and_every_other_invisible_format_character(char):
    from netviz.textsafe import for_terminal

    shown = for_terminal(f"a{char}b")
    assert char not in shown and shown.startswith("a\\") and shown.endswith("b")
    assert shown.isprintable()


# ------------------------------------------------------------------ one machine cannot replace another


def _write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _impostor_of(victim: dict) -> dict:
    """A machine that copies `victim`'s machine-id, boot id, hostname and network namespace,
    claims a capture ten years later, and shows nothing of its own: if trusted, it erases the
    victim from the map."""
    impostor = copy.deepcopy(victim)
    impostor["host"]["captured_at"] += 10 * 365 * 86400
    for namespace in impostor["namespaces"]:
        namespace["sockets"] = []
        namespace["conntrack"] = None
    impostor["processes"] = [process for process in impostor["processes"] if process["pid"] == 1]
    for process in impostor["processes"]:
        process["sockets"] = []
    return impostor


def test_a_machine_claiming_anothers_identity_never_replaces_it(tmp_path):
    from benchmarks.synth import make_fleet
    from netviz.group import load_group
    from netviz.stitch import stitch

    fleet = make_fleet(3, 80, seed=5)
    files = [_write(tmp_path / "fleet" / f"{document['host']['hostname']}.json", document) for document in fleet]
    honest = stitch(load_group(files).snapshots)
    impostor = _write(tmp_path / "evil.json", _impostor_of(fleet[1]))
    group = load_group([*files, impostor])
    assert [snapshot.source for snapshot in group.snapshots] == [str(path) for path in files]
    assert stitch(group.snapshots).summary() == honest.summary()
    (warning,) = [warning for warning in group.warnings if "same machine" in warning]
    assert str(files[1]) in warning and str(impostor) in warning and "left out" in warning


def test_in_a_run_the_inventory_order_decides_and_the_warning_names_both_entries(tmp_path):
    """`netviz run`: the snapshots a run received, stitched in inventory order. The impostor's
    claimed time, far in the future, changes nothing; a snapshot of a run given on the command
    line of `netviz stitch` keeps its inventory name and order too."""
    from benchmarks.synth import make_fleet
    from netviz.cache import RunWriter
    from netviz.collect import HostResult
    from netviz.pipeline import CollectOutcome, stitch_run
    from netviz.snapshot import parse_snapshot

    fleet = make_fleet(3, 80, seed=7)
    names = ["web", "db", "cache", "db-evil"]
    documents = [*fleet, _impostor_of(fleet[1])]
    writer = RunWriter(tmp_path / "cache")
    results = []
    for name, document in zip(names, documents):
        text = json.dumps(document)
        result = HostResult(name, "ok", snapshot_json=text, snapshot=parse_snapshot(json.loads(text), name, name),
                            finished_at=time.time())
        writer.add(name, status="ok", category=None, message="", timings={}, seconds=0.1, snapshot_json=text,
                   collected_at=result.finished_at)
        results.append(result)
    run = writer.finish(order=names)
    outcome = stitch_run(CollectOutcome(results=results, run=run), "json")
    graph = json.loads(outcome.data)
    assert [host["name"] for host in graph["hosts"]] == ["cache", "db", "web"]
    assert all(host["unresolved"] == 0 for host in graph["hosts"]) and graph["summary"]["flows"] > 0
    db_nodes = [node for node in graph["nodes"] if node["host"] == "db"]
    assert len(db_nodes) > 1  # db's own processes, not the impostor's empty capture
    (warning,) = [warning for warning in outcome.warnings if "same machine" in warning]
    assert "db and db-evil claim to be the same machine" in warning and "from db (listed first)" in warning

    stitched = _run_netviz("stitch", "--cache", str(tmp_path / "cache"), "-f", "json")
    assert stitched.returncode == 0, stitched.stderr
    assert json.loads(stitched.stdout)["summary"] == graph["summary"]
    assert "claim to be the same machine" in stitched.stderr and "db-evil" in stitched.stderr


# ------------------------------------------------------------------ address claims


def _web_db_and_a_claimant(claim: bool):
    from tests.snapbuilder import Machine

    web, db, evil = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2"), Machine("evil", "10.0.0.66")
    if claim:
        evil.namespace(4026531840, "10.0.0.2")  # db's address, claimed by another machine
    web.process(100, "app")
    db.process(200, "postgres")
    db.listen(200, "tcp", "0.0.0.0:5432")
    for port in range(40000, 40026):
        web.connect(100, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
        db.connect(200, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
    web.connect(100, "tcp", "10.0.0.1:41000", "10.0.0.2:5432")  # db's side not captured: a listener
    evil.process(300, "sshd")
    return [web.build(), db.build(), evil.build()]


def test_a_machine_claiming_anothers_address_leaves_its_flows_resolved_and_is_named():
    from netviz.stitch import address_claims, stitch
    from tests.snapbuilder import edges

    honest, claimed = stitch(_web_db_and_a_claimant(False)), stitch(_web_db_and_a_claimant(True))
    assert edges(honest) == {("web/app", "db/postgres", "tcp", 5432, 26), ("web/app", "db/postgres", "tcp", 5432, 1,
                                                                               "inferred")}
    # the 26 exact pairs stay; only the inference from db's listener is given up (who listens at an
    # address two machines claim is not known): one unresolved connection, said to be ambiguous
    assert edges(claimed) == {("web/app", "db/postgres", "tcp", 5432, 26)}
    assert claimed.unresolved == 1 and honest.unresolved == 0
    assert address_claims(_web_db_and_a_claimant(False)) == []
    (warning,) = address_claims(_web_db_and_a_claimant(True))
    assert "10.0.0.2" in warning and "(db, evil)" in warning


def test_a_shared_docker_bridge_address_stays_each_machines_own_without_a_warning():
    """docker0's 172.17.0.1 on two hosts, a container on each calling it: each flow stays on its
    own machine, and nothing is said."""
    from netviz.stitch import address_claims, stitch
    from tests.snapbuilder import Machine, edges

    snapshots = []
    for name, address in (("one", "10.0.0.1"), ("two", "10.0.0.2")):
        host = Machine(name, address, "172.17.0.1")
        host.namespace(4026532000, "172.17.0.2")
        host.process(10, "dockerd")
        host.process(20, "app", netns=4026532000)
        host.listen(10, "tcp", "172.17.0.1:2375")
        host.connect(20, "tcp", "172.17.0.2:50000", "172.17.0.1:2375", netns=4026532000)
        host.connect(10, "tcp", "172.17.0.1:2375", "172.17.0.2:50000")
        snapshots.append(host.build())
    graph = stitch(snapshots)
    assert edges(graph) == {("one/app", "one/dockerd", "tcp", 2375, 1), ("two/app", "two/dockerd", "tcp", 2375, 1)}
    assert graph.unresolved == 0 and address_claims(snapshots) == []


def _flows(graph: dict) -> set[tuple]:
    """(client host/comm, server host/comm, proto/port, via, count, inferred) of a graph's JSON."""
    nodes = {node["id"]: f"{node['host']}/{node['comm']}" for node in graph["nodes"]}
    return {(nodes[flow["client"]], nodes[flow["server"]], f"{flow['proto']}/{flow['server_port']}", flow["via"],
             flow["count"], flow["inferred"]) for flow in graph["flows"]}


def test_stitch_and_run_warn_about_a_claimed_address_naming_both_machines(tmp_path):
    """A fleet's machine m0001 and a newcomer claiming all of m0001's addresses: `netviz stitch`
    names them, and m0001's flows stay what they were."""
    from benchmarks.synth import make_fleet

    fleet = make_fleet(3, 80, seed=5)
    files = [_write(tmp_path / "fleet" / f"{document['host']['hostname']}.json", document) for document in fleet]
    claimant = copy.deepcopy(fleet[2])
    claimant["host"].update(hostname="claimant", machine_id="f" * 32, boot_id="e" * 32)
    for namespace in claimant["namespaces"]:
        namespace["sockets"] = []
        namespace["conntrack"] = None
    claimant["namespaces"][0]["addresses"] = copy.deepcopy(fleet[1]["namespaces"][0]["addresses"])
    for process in claimant["processes"]:
        process["sockets"] = []
    honest = _run_netviz("stitch", "-f", "json", *map(str, files))
    claimed = _run_netviz("stitch", "-f", "json", *map(str, files), str(_write(tmp_path / "claimant.json", claimant)))
    assert honest.returncode == 0 and claimed.returncode == 0, claimed.stderr
    before, after = _flows(json.loads(honest.stdout)), _flows(json.loads(claimed.stdout))
    # every flow seen from both ends stays; only what was attached to a listener at m0001's
    # claimed addresses (TCP inferred, UDP to a bound socket) is given up, as for any address
    # several machines claim (which claimant listens is not known), each counted unresolved
    lost = before - after
    assert lost and all(flow[1].startswith("m0001/") and (flow[-1] or flow[2].startswith("udp/")) for flow in lost)
    assert after - before == set()
    unresolved = json.loads(claimed.stdout)["summary"]["unresolved"] - json.loads(honest.stdout)["summary"]["unresolved"]
    assert unresolved == sum(flow[4] for flow in lost)
    claims = [line for line in claimed.stderr.splitlines() if "is claimed by 2 machines (m0001, claimant)" in line]
    assert claims, claimed.stderr
    assert "claimed by" not in honest.stderr


# ------------------------------------------------------------------ a snapshot cannot make the stitch hang


def test_a_tuple_repeated_thousands_of_times_is_ambiguous_at_linear_cost(mocker):
    """A compromised machine may tell one four-tuple thousands of times (and its peer the
    reverse): every such socket is ambiguous, never guessed, and the exact join looks at a few
    candidates of each, not at all of them (2,000 such sockets took 51 s, growing with the cube)."""
    from netviz.stitch.addresses import AddressBook
    from tests.snapbuilder import Machine
    from netviz.stitch import stitch

    repeated = 2000
    a, b = Machine("a", "10.0.0.1"), Machine("b", "10.0.0.2")
    a.process(1, "client")
    b.process(2, "server")
    for _ in range(repeated):
        a.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:80")
        b.connect(2, "tcp", "10.0.0.2:80", "10.0.0.1:40000")
    checks = mocker.spy(AddressBook, "reachable")
    graph = stitch([a.build(), b.build()])
    assert graph.flows == [] and [host.unresolved for host in graph.hosts] == [repeated, repeated]
    assert checks.call_count < 10 * 2 * repeated, checks.call_count  # all pairs: 8,000,000


def test_a_translation_listed_thousands_of_times_is_not_followed_for_every_connection(mocker):
    """A compromised gateway may list thousands of translations of one tuple, which every
    connection it translates leads to: each connection follows a bounded number of them (it is
    then ambiguous, never guessed), instead of all of them (2,000 x 2,000 took 5.9 s, growing
    with the square)."""
    from netviz.stitch import nat, stitch
    from tests.snapbuilder import Machine

    connections, hub = 300, 3000
    client, gateway = Machine("client", "10.0.0.1"), Machine("gateway", "10.0.0.9")
    client.process(1, "app")
    for number in range(connections):
        client.connect(1, "tcp", f"10.0.0.1:{20000 + number}", "10.0.0.50:80")
        gateway.conntrack("tcp", (f"10.0.0.1:{20000 + number}", "10.0.0.50:80"), ("10.0.0.60:80", "10.0.0.9:1"))
    for number in range(hub):  # the tuple each of them leaves the gateway with, translated again and again
        gateway.conntrack("tcp", ("10.0.0.9:1", "10.0.0.60:80"), (f"10.0.1.{number % 250}:{1000 + number}", "10.0.0.9:1"))
    looked_up = mocker.spy(nat, "_translated_targets")
    graph = stitch([client.build(), gateway.build()])
    host = next(entry for entry in graph.hosts if entry.name == "client")
    assert host.unresolved == connections and graph.flows == []
    assert {example.why for example in host.unresolved_examples} == {"several sockets or namespaces could be its peer"}
    assert looked_up.call_count <= connections * (nat.MAX_TRANSLATIONS_FOLLOWED + 1), looked_up.call_count


def test_thousands_of_listeners_on_one_port_are_looked_through_once_per_service(mocker):
    """A machine may hold thousands of listening sockets on one port (SO_REUSEPORT, or a
    compromised machine's say-so): the clients of that service find their listener once, not
    each by going through all of them."""
    from netviz.stitch import stitch
    from netviz.stitch.index import SocketIndex
    from tests.snapbuilder import Machine

    client, server = Machine("client", "10.0.0.1"), Machine("server", "10.0.0.2")
    client.process(1, "app")
    server.process(2, "web")
    for _ in range(4000):
        server.listen(2, "tcp", "0.0.0.0:80")
    for number in range(1000):  # their peer sockets were not captured: each goes to the listener
        client.connect(1, "tcp", f"10.0.0.1:{20000 + number}", "10.0.0.2:80")
    looked_through = mocker.spy(SocketIndex, "_listeners_for")
    (flow,) = stitch([client.build(), server.build()]).flows
    assert (flow.count, flow.inferred, flow.server_port) == (1000, True, 80)
    assert looked_through.call_count <= 2, looked_through.call_count


def test_window_keys_of_one_tuple_in_many_namespaces_look_at_its_translations_once(mocker):
    """A machine's window may report one service's key in thousands of namespaces, and a
    gateway thousands of translations of it: what the translations say is worked out once per
    machine and tuple, not once per key (2,000 keys x 2,000 translations took 0.44 s, growing
    with the square)."""
    from netviz.stitch import stitch, window
    from tests.snapbuilder import Machine
    from tests.test_stitch_window import key, observed

    client, gateway = Machine("client", "10.0.0.1"), Machine("gateway", "10.0.0.9")
    client.process(1, "app")
    for number in range(500):
        gateway.conntrack("tcp", (f"10.0.0.1:{10000 + number}", "10.0.0.50:80"),
                          (f"10.0.1.{number % 250}:80", f"10.0.0.1:{10000 + number}"))
    keys = [key("client", "10.0.0.1", "10.0.0.50", 80, netns=4026532000 + number, holders=[(1, "app", "socket")])
            for number in range(500)]
    worked_out = mocker.spy(window, "_translation_target")
    graph = stitch([observed(client.build(), keys), gateway.build()])
    assert graph.flows == []  # translated to 250 servers: never guessed
    assert worked_out.call_count == 1


def test_short_lived_window_keys_look_through_the_exec_groups_once_per_namespace_and_uid(mocker):
    """Hundreds of keys without a holder, on a window with hundreds of exec groups: the command
    of a namespace's and uid's one exec group is looked up once, not for every key."""
    from netviz.stitch import stitch, window
    from tests.snapbuilder import Machine
    from tests.test_stitch_window import execs, key, observed, server_machine

    addresses = [f"10.0.2.{number}" for number in range(1, 201)]
    web = Machine("web", "10.0.0.1", *addresses)
    keys = [key("client", address, "10.0.0.2", 8080, uids=(1000,)) for address in addresses]
    groups = [execs(1000, "worker")] + [execs(2000 + number, f"other{number}") for number in range(200)]
    looked_through = mocker.spy(window, "_exec_command")
    graph = stitch([observed(web.build(), keys, groups), server_machine().build()])
    (client,) = [node for node in graph.nodes if node.short_lived]
    assert client.cmdline == "worker"
    assert looked_through.call_count == 1


def test_thousands_of_listeners_bound_elsewhere_are_looked_through_once_per_address(mocker):
    """Whether a connection's own port listens is asked twice for each pair: with thousands of
    listeners on the port, bound to another address, each address is looked through once."""
    from netviz.stitch import index, stitch
    from tests.snapbuilder import Machine

    client, server = Machine("client", "10.0.0.1"), Machine("server", "10.0.0.2", "10.0.0.99")
    client.process(1, "app")
    server.process(2, "web")
    for _ in range(2000):
        server.listen(2, "tcp", "10.0.0.99:80")
    for number in range(1000):
        client.connect(1, "tcp", f"10.0.0.1:{20000 + number}", "10.0.0.2:80")
        server.connect(2, "tcp", "10.0.0.2:80", f"10.0.0.1:{20000 + number}")
    looked_through = mocker.spy(index, "_accepts_any")
    (flow,) = stitch([client.build(), server.build()]).flows
    assert flow.count == 1000 and not flow.directed  # nothing listens on 10.0.0.2:80
    assert looked_through.call_count <= 4, looked_through.call_count

"""The window phase of the stitch (netviz/stitch/window.py): window flow keys joined across the
group, each end named only from evidence, and the flows' window facts.

Snapshots are made with tests/snapbuilder.py and given a window section written by hand, in the
shape the payload writes (docs/snapshot.md, "window").
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence

from netviz.graph import SHORT_LIVED
from netviz.snapshot import Snapshot
from netviz.snapshot.window import Window, WindowFlow, WindowHolder, WindowProcess, WindowSource
from netviz.stitch import stitch
from snapbuilder import HOST_NETNS, Machine, edges

START = 1764079200.0
SECONDS = 10.0


def key(role: str, local: str, remote: str, port: int, *, proto: str = "tcp", connections: int = 1,
        persistent: bool = False, holders: Sequence[tuple[int, str, str]] = (), uids: Sequence[int] = (1000,),
        netns: Optional[int] = HOST_NETNS, first: float = 1.0, last: float = 9.0,
        evidence: Optional[dict[str, int]] = None) -> WindowFlow:
    """A window flow key: `port` is the server's port (remote for a client key, local for a server key).
    Its evidence: by default sampled when a holder was seen, else destroy notifications."""
    if evidence is None:
        evidence = {"sample" if any(via == "socket" for *_, via in holders) else "destroy": connections}
    return WindowFlow(
        netns=netns, proto=proto, role=role, local=local, local_port=port if role == "server" else None,
        remote=remote, remote_port=port if role == "client" else None, first_seen=START + first,
        last_seen=START + last, connections=connections, evidence=evidence,
        samples=5 if persistent else 0, persistent=persistent,
        holders=tuple(WindowHolder(pid, comm, via) for pid, comm, via in holders), uids=tuple(uids))


def execs(uid: int, *cmdline: str, netns: Optional[int] = HOST_NETNS) -> WindowProcess:
    return WindowProcess(netns=netns, uid=uid, comm=cmdline[0], cmdline=tuple(cmdline), execs=10,
                         first_seen=START + 1, last_seen=START + 9, pids=(4000, 4001))


def observed(snapshot: Snapshot, flows: Sequence[WindowFlow], processes: Sequence[WindowProcess] = ()) -> Snapshot:
    """The snapshot with a 10 s window that saw `flows` and `processes`."""
    window = Window(
        version=1, requested=SECONDS, start_at=START, started_at=START, ended_at=START + SECONDS, interval=0.5,
        samples=5, first_sample_cpu=0.01, cpu_seconds=0.05, cpu_share=0.05,
        sources=(WindowSource("conntrack", "missing", 0, 0, "no conntrack"), WindowSource("sock_destroy", "used", 40, 0)),
        max_flows=20000, flows_overflow=0, flows=tuple(flows), max_processes=4096, processes_overflow=0,
        processes=tuple(processes))
    return dataclasses.replace(snapshot, window=window)


def server_machine() -> Machine:
    db = Machine("db", "10.0.0.2")
    server = db.process(50, "server", user="app", uid=1001)
    db.listen(server, "tcp", "0.0.0.0:8080")
    return db


def node_named(graph, host: str, comm: str):
    found = [node for node in graph.nodes if node.host == host and node.comm == comm]
    assert len(found) == 1, [(node.host, node.comm) for node in graph.nodes]
    return found[0]


# ------------------------------------------------------------------ short-lived, between machines

def test_short_lived_clients_are_drawn_to_the_server_process_with_their_rate():
    """100 connections in 10 s that no sample caught: the machine's short-lived node, with the uid
    and the command of the one exec group of that uid, to the server process that listens."""
    web = Machine("web", "10.0.0.1")
    db = server_machine()
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=100)],
                 [execs(1000, "curl", "-s", "http://10.0.0.2:8080/")]),
        observed(db.build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, connections=98,
                                  holders=[(50, "server", "listener")], uids=(1001,))]),
    ]
    graph = stitch(snapshots)
    assert edges(graph) == {("web/" + SHORT_LIVED, "db/server", "tcp", 8080, 0)}
    (flow,) = graph.flows
    assert flow.window is not None
    assert (flow.window.connections, flow.window.persistent, flow.window.per_minute) == (100, False, 600.0)
    assert flow.window.first_seen == START + 1 and flow.window.last_seen == START + 9
    assert flow.directed and not flow.inferred and flow.server_pids == (50,) and flow.client_pids == ()
    client = node_named(graph, "web", SHORT_LIVED)
    assert client.short_lived and client.command_inferred and client.pids == ()
    assert client.cmdline == "curl -s http://10.0.0.2:8080/" and client.users == ("1000",)
    document = graph.to_json_dict()
    assert {k: document["flows"][0][k] for k in ("connections", "persistent", "per_minute", "count")} == \
        {"connections": 100, "persistent": False, "per_minute": 600.0, "count": 0}
    assert document["hosts"][0]["window"]["sources"] == {"conntrack": "missing", "sock_destroy": "used"}


def test_two_exec_groups_of_the_uid_name_no_command():
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=20)],
                 [execs(1000, "curl", "a"), execs(1000, "wget", "b")]),
        observed(server_machine().build(), []),
    ]
    graph = stitch(snapshots)
    client = node_named(graph, "web", SHORT_LIVED)
    assert client.cmdline == "" and not client.command_inferred
    # no server key: attached to the listener that accepts 10.0.0.2:8080, marked inferred
    assert edges(graph) == {("web/" + SHORT_LIVED, "db/server", "tcp", 8080, 0, "inferred")}


def test_a_client_without_a_uid_named_by_an_exec_group_of_another_netns_names_no_command():
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=20)],
                 [execs(1000, "curl", "a", netns=999)]),
        observed(server_machine().build(), []),
    ]
    assert node_named(stitch(snapshots), "web", SHORT_LIVED).cmdline == ""


# ------------------------------------------------------------------ holders: evidence only

def test_a_holder_seen_names_the_client_even_when_it_is_gone():
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=7,
                                   holders=[(77, "fetcher", "socket"), (78, "fetcher", "socket")])]),
        observed(server_machine().build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, connections=9,
                                                holders=[(50, "server", "listener")])]),
    ]
    graph = stitch(snapshots)
    assert edges(graph) == {("web/fetcher", "db/server", "tcp", 8080, 0)}
    assert node_named(graph, "web", "fetcher").pids == (77, 78)
    assert graph.flows[0].window.connections == 9  # the larger count of the two ends
    assert graph.flows[0].client_pids == (77, 78)


def test_holders_of_two_commands_or_a_reused_pid_never_name_a_process():
    web = Machine("web", "10.0.0.1")
    web.process(77, "bash")  # pid 77 runs another command now
    snapshots = [
        observed(web.build(), [
            key("client", "10.0.0.1", "10.0.0.2", 8080, holders=[(60, "curl", "socket"), (61, "wget", "socket")]),
            key("client", "10.0.0.1", "10.0.0.3", 8080, holders=[(77, "curl", "socket")]),
        ]),
        observed(server_machine().build(), []),
    ]
    graph = stitch(snapshots)
    assert {(n.host, n.comm) for n in graph.nodes} == {("web", SHORT_LIVED), ("db", "server")}


def test_group_by_pid_and_host():
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, holders=[(77, "fetcher", "socket")]),
                               key("client", "10.0.0.1", "10.0.0.2", 8080, uids=(5,), proto="udp")]),
        observed(server_machine().build(), []),
    ]
    by_pid = stitch(snapshots, group_by="pid")
    assert node_named(by_pid, "web", "fetcher").pids == (77,)
    assert {(f.proto, f.server_port) for f in by_pid.flows} == {("tcp", 8080)}  # nothing listens on udp/8080
    by_host = stitch(snapshots, group_by="host")
    assert edges(by_host) == {("web/web", "db/db", "tcp", 8080, 0, "inferred")}


def test_connections_no_sample_caught_are_not_given_to_the_holder_of_the_key():
    """One key for a long-lived client and a one-shot one of another command: only the sampled
    connection is the holder's; the 40 that only destroy events saw go to the machine."""
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=40, persistent=True,
                                   holders=[(10, "app", "socket")], evidence={"sample": 1, "destroy": 40})]),
        observed(server_machine().build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, connections=41,
                                                persistent=True, holders=[(50, "server", "listener")])]),
    ]
    graph = stitch(snapshots)
    assert edges(graph) == {("web/app", "db/server", "tcp", 8080, 0),
                            ("web/" + SHORT_LIVED, "db/server", "tcp", 8080, 0)}
    facts = {graph.node(flow.client).comm: flow.window for flow in graph.flows}
    assert (facts["app"].connections, facts["app"].persistent) == (1, True)
    assert (facts[SHORT_LIVED].connections, facts[SHORT_LIVED].persistent) == (39, False)


def test_a_holder_without_sampled_connections_still_holds_one():
    web = Machine("web", "10.0.0.1")
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, connections=5,
                                   holders=[(10, "app", "socket")], evidence={"time_wait": 5})]),
        observed(server_machine().build(), []),
    ]
    graph = stitch(snapshots)
    facts = {graph.node(flow.client).comm: flow.window.connections for flow in graph.flows}
    assert facts == {"app": 1, SHORT_LIVED: 4}


# ------------------------------------------------------------------ persistent: the instant flow enriched

def test_a_persistent_connection_enriches_the_instant_flow():
    web = Machine("web", "10.0.0.1")
    app = web.process(10, "app")
    web.connect(app, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    db = server_machine()
    db.connect(50, "tcp", "10.0.0.2:8080", "10.0.0.1:40000")
    instant = stitch([web.build(), db.build()])
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.2", 8080, persistent=True,
                                   holders=[(10, "app", "socket")], first=0.0, last=10.0)]),
        observed(db.build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, persistent=True,
                                  holders=[(50, "server", "socket")], first=0.0, last=10.0)]),
    ]
    graph = stitch(snapshots)
    assert edges(graph) == edges(instant) == {("web/app", "db/server", "tcp", 8080, 1)}
    (flow,) = graph.flows
    assert flow.window.persistent and flow.window.connections == 1 and not flow.short_lived
    assert flow.window.rate_text() == "persistent"


def test_a_connection_only_the_closing_capture_saw_is_short_lived_not_persistent():
    """A one-shot client that began after the window's last sample is in the closing capture only:
    its flow is drawn short-lived, seen at that capture, with its live connections counted."""
    web = Machine("web", "10.0.0.1")
    query = web.process(10, "python3")
    web.connect(query, "udp", "10.0.0.1:40000", "10.0.0.2:53")
    db = Machine("db", "10.0.0.2")
    resolver = db.process(50, "resolver")
    db.listen(resolver, "udp", "0.0.0.0:53")
    graph = stitch([observed(web.build(), []), observed(db.build(), [])])
    (flow,) = graph.flows
    assert flow.window is not None and flow.short_lived, flow
    assert (flow.window.connections, flow.window.persistent) == (1, False)
    assert flow.window.first_seen == flow.window.last_seen == web.build().host.captured_at
    assert flow.to_json()["persistent"] is False


def test_a_machine_whose_window_overflowed_leaves_the_instant_flow_without_window_facts():
    """Past the payload's cap on flow keys the window may have dropped a long-lived key: whether the
    connection lasted is then unknown, and nothing is claimed."""
    web = Machine("web", "10.0.0.1")
    app = web.process(10, "app")
    web.connect(app, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    db = server_machine()
    db.connect(50, "tcp", "10.0.0.2:8080", "10.0.0.1:40000")
    web_snapshot = observed(web.build(), [])
    web_snapshot = dataclasses.replace(web_snapshot, window=dataclasses.replace(web_snapshot.window, flows_overflow=3))
    (flow,) = stitch([web_snapshot, observed(db.build(), [])]).flows
    assert flow.window is None and not flow.short_lived


# ------------------------------------------------------------------ scoping

def test_loopback_keys_join_only_inside_their_machine_and_namespace():
    a, b = Machine("a", "10.0.0.1"), Machine("b", "10.0.0.2")
    a.listen(a.process(5, "redis"), "tcp", "127.0.0.1:6379")
    b.listen(b.process(6, "redis"), "tcp", "127.0.0.1:6379")
    snapshots = [
        observed(a.build(), [key("client", "127.0.0.1", "127.0.0.1", 6379, connections=30),
                             key("server", "127.0.0.1", "127.0.0.1", 6379, connections=30,
                                 holders=[(5, "redis", "listener")])]),
        observed(b.build(), [key("server", "127.0.0.1", "127.0.0.1", 6379, connections=3,
                                 holders=[(6, "redis", "listener")])]),
    ]
    assert edges(stitch(snapshots)) == {("a/" + SHORT_LIVED, "a/redis", "tcp", 6379, 0)}


def test_a_client_key_whose_server_is_outside_the_group_is_not_drawn():
    web = Machine("web", "10.0.0.1")
    snapshots = [observed(web.build(), [key("client", "10.0.0.1", "93.184.216.34", 443, connections=50)]),
                 observed(server_machine().build(), [])]
    assert stitch(snapshots).flows == []


def test_a_key_translated_by_conntrack_reaches_the_real_server_via_the_translating_machine():
    """web dials a virtual address; lb's conntrack (its entry outlives the short connections)
    sends it to db:8080. The flow goes to db's server process, via lb."""
    web, lb = Machine("web", "10.0.0.1"), Machine("lb", "10.0.0.9")
    lb.conntrack("tcp", ("10.0.0.1:40001", "10.0.0.100:80"), ("10.0.0.2:8080", "10.0.0.1:40001"))
    snapshots = [
        observed(web.build(), [key("client", "10.0.0.1", "10.0.0.100", 80, connections=30)]),
        lb.build(),
        observed(server_machine().build(), [key("server", "10.0.0.2", "10.0.0.1", 8080, connections=30,
                                                holders=[(50, "server", "listener")])]),
    ]
    assert edges(stitch(snapshots)) == {("web/" + SHORT_LIVED, "db/server", "tcp", 8080, 0, "via=lb")}


def test_a_key_translated_to_two_servers_is_not_drawn():
    web, lb = Machine("web", "10.0.0.1"), Machine("lb", "10.0.0.9")
    lb.conntrack("tcp", ("10.0.0.1:40001", "10.0.0.100:80"), ("10.0.0.2:8080", "10.0.0.1:40001"))
    lb.conntrack("tcp", ("10.0.0.1:40002", "10.0.0.100:80"), ("10.0.0.3:8080", "10.0.0.1:40002"))
    snapshots = [observed(web.build(), [key("client", "10.0.0.1", "10.0.0.100", 80, connections=30)]),
                 lb.build(), observed(server_machine().build(), [])]
    assert stitch(snapshots).flows == []


def test_link_local_keys_join_across_machines_when_one_server_key_of_the_group_matches():
    a, b, c = Machine("a", "10.0.0.1", "fe80::1"), Machine("b", "10.0.0.2", "fe80::2"), Machine("c", "10.0.0.3")
    b.listen(b.process(22, "sshd"), "tcp", "[::]:22")
    c.listen(c.process(23, "sshd"), "tcp", "[::]:22")
    client = key("client", "fe80::1", "fe80::2", 22, holders=[(7, "ssh", "socket")], connections=3)
    server_b = key("server", "fe80::2", "fe80::1", 22, holders=[(22, "sshd", "listener")], connections=3)
    server_c = key("server", "fe80::2", "fe80::1", 22, holders=[(23, "sshd", "listener")], connections=3)
    graph = stitch([observed(a.build(), [client]), observed(b.build(), [server_b]), observed(c.build(), [])])
    assert edges(graph) == {("a/ssh", "b/sshd", "tcp", 22, 0)}
    # the same reversed tuple on two machines: never guessed
    graph = stitch([observed(a.build(), [client]), observed(b.build(), [server_b]), observed(c.build(), [server_c])])
    assert graph.flows == []


def test_a_live_link_local_connection_the_window_joins_is_drawn_with_its_count_not_unresolved():
    """The instant counts a live link-local connection unresolved at both ends when another
    machine claims the server's address too (rule 2); once the window joins it between the two
    machines (one server key in the group), it is drawn with its count and counted nowhere else."""
    a, b = Machine("a", "10.0.0.1", "fe80::1"), Machine("b", "10.0.0.2", "fe80::2")
    ssh, sshd = a.process(7, "ssh"), b.process(22, "sshd")
    b.listen(sshd, "tcp", "[::]:22")
    a.connect(ssh, "tcp", "[fe80::1]:40000", "[fe80::2]:22")
    b.connect(sshd, "tcp", "[fe80::2]:22", "[fe80::1]:40000")
    c = Machine("c", "10.0.0.3", "fe80::2")  # the same link-local address on another link
    instant = stitch([a.build(), b.build(), c.build()])
    assert [host.unresolved for host in instant.hosts] == [1, 1, 0]  # the instant alone
    # with one owner to each address, the instant joins it itself, and the window agrees
    instant = stitch([a.build(), b.build()])
    assert edges(instant) == {("a/ssh", "b/sshd", "tcp", 22, 1)}
    assert [host.unresolved for host in instant.hosts] == [0, 0]
    client = key("client", "fe80::1", "fe80::2", 22, holders=[(7, "ssh", "socket")], persistent=True)
    server = key("server", "fe80::2", "fe80::1", 22, holders=[(22, "sshd", "socket")], persistent=True)
    for others in ([c.build()], []):
        graph = stitch([observed(a.build(), [client]), observed(b.build(), [server]), *others])
        assert edges(graph) == {("a/ssh", "b/sshd", "tcp", 22, 1)}
        assert [(host.unresolved, host.unresolved_examples) for host in graph.hosts][:2] == [(0, ()), (0, ())]
        assert graph.flows[0].window is not None and graph.flows[0].window.persistent


def test_a_window_settles_a_live_link_local_connection_only_between_one_client_end_and_one_server_end():
    """Two client sockets of one machine with the same tuple (two namespaces holding one
    link-local address) facing one server socket: which one it serves is not known, so both stay
    unresolved (a tuple told twice used to stop the stitch)."""
    a, b = Machine("a", "10.0.0.1", "fe80::1"), Machine("b", "10.0.0.2", "fe80::2")
    a.namespace(7001, "fe80::1")
    ssh, sshd = a.process(7, "ssh"), b.process(22, "sshd")
    b.listen(sshd, "tcp", "[::]:22")
    a.connect(ssh, "tcp", "[fe80::1]:40000", "[fe80::2]:22")
    a.connect(ssh, "tcp", "[fe80::1]:40000", "[fe80::2]:22", netns=7001)  # (a socket made in the other namespace)
    b.connect(sshd, "tcp", "[fe80::2]:22", "[fe80::1]:40000")
    c = Machine("c", "10.0.0.3", "fe80::2")  # the instant does not join it (fe80::2 has two owners)
    client = key("client", "fe80::1", "fe80::2", 22, holders=[(7, "ssh", "socket")], persistent=True)
    server = key("server", "fe80::2", "fe80::1", 22, holders=[(22, "sshd", "socket")], persistent=True)
    graph = stitch([observed(a.build(), [client]), observed(b.build(), [server]), c.build()])
    assert [host.unresolved for host in graph.hosts] == [2, 1, 0]
    assert all(flow.count == 0 for flow in graph.flows)


# ------------------------------------------------------------------ instant mode unchanged

def test_without_a_window_the_document_has_no_window_keys():
    web = Machine("web", "10.0.0.1")
    app = web.process(10, "app")
    web.connect(app, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    text = json.dumps(stitch([web.build(), server_machine().build()]).to_json_dict())
    for word in ("first_seen", "persistent", "per_minute", "short_lived", "window", "command_inferred"):
        assert word not in text

"""The stitching rules of issue 3, one section per rule, expected flows written by hand.

Each machine is a few lines of tests/snapbuilder.py; `edges(graph)` lists flows as
(client "host/comm", server "host/comm", proto, server port, count[, markers]).
"""

from __future__ import annotations

import dataclasses

import pytest
from snapbuilder import Machine, edges, host

from netviz.stitch import normalize_address, stitch


def web_and_db() -> tuple[Machine, Machine]:
    web = Machine("web", "10.0.0.1")
    db = Machine("db", "10.0.0.2")
    web.process(100, "app", user="www-data")
    db.process(200, "postgres", user="postgres")
    db.listen(200, "tcp", "0.0.0.0:5432")
    return web, db


# ---------------------------------------------------------------- rule 1: both ends in the group


def test_flow_between_two_machines_of_the_group():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    assert edges(stitch([web.build(), db.build()])) == {("web/app", "db/postgres", "tcp", 5432, 1)}


def test_peer_outside_the_group_is_counted_not_drawn():
    web, db = web_and_db()
    web.listen(100, "tcp", "0.0.0.0:443")
    web.connect(100, "tcp", "10.0.0.1:443", "203.0.113.9:51000")  # an internet client
    web.connect(100, "tcp", "10.0.0.1:40001", "198.51.100.7:443")  # an API the app calls
    web.connect(100, "tcp", "10.0.0.1:40002", "198.51.100.7:443")
    db.connect(200, "tcp", "10.0.0.2:22", "192.0.2.1:60000")  # the orchestrator's ssh session, no listener seen
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == set()
    assert (host(graph, "web").outside_inbound, host(graph, "web").outside_outbound) == (1, 2)
    assert (host(graph, "db").outside_inbound, host(graph, "db").outside_outbound) == (0, 1)
    assert graph.to_json_dict()["summary"]["outside"] == 4
    assert graph.unresolved == 0


def _outside_edges(graph) -> set[tuple]:
    """(client, server, proto, port, count, directed), an outside end named `host/outside ADDRESS`."""
    def name(node_id: str) -> str:
        node = graph.node(node_id)
        return f"{node.host}/outside {node.address}".rstrip() if node.kind == "outside" else f"{node.host}/{node.comm}"
    return {(name(f.client), name(f.server), f.proto, f.server_port, f.count, f.directed) for f in graph.flows}


def test_show_external_draws_each_outside_peer_by_address_with_its_direction():
    """Inbound: from the peer to the listening process. Outbound: from the process to the peer's
    port, directed (a socket on a port nothing listens on was made by connect())."""
    web, db = web_and_db()
    web.listen(100, "tcp", "0.0.0.0:443")
    web.connect(100, "tcp", "10.0.0.1:443", "203.0.113.9:51000")
    web.connect(100, "tcp", "10.0.0.1:443", "203.0.113.10:51000")
    web.connect(100, "tcp", "10.0.0.1:40001", "198.51.100.7:443")
    db.connect(200, "tcp", "10.0.0.2:5432", "203.0.113.9:50000")
    graph = stitch([web.build(), db.build()], show_external=True)
    assert _outside_edges(graph) == {
        ("web/outside 203.0.113.9", "web/app", "tcp", 443, 1, True),
        ("web/outside 203.0.113.10", "web/app", "tcp", 443, 1, True),
        ("web/app", "web/outside 198.51.100.7", "tcp", 443, 1, True),
        ("db/outside 203.0.113.9", "db/postgres", "tcp", 5432, 1, True),
    }
    outbound = next(f for f in graph.flows if graph.node(f.server).kind == "outside")
    assert outbound.server_address == "198.51.100.7"
    assert graph.node(outbound.server).to_json()["address"] == "198.51.100.7"
    assert edges(stitch([web.build(), db.build()])) == set()


def test_outside_peers_past_the_cap_share_one_node_the_busiest_keep_their_address():
    from netviz.stitch.links import MAX_OUTSIDE_PEERS

    web, db = web_and_db()
    web.listen(100, "tcp", "0.0.0.0:443")
    for peer in range(MAX_OUTSIDE_PEERS + 5):
        web.connect(100, "tcp", "10.0.0.1:443", f"203.0.113.{peer + 1}:51000")
    for port in (51001, 51002, 51003):  # the busiest peer: three connections
        web.connect(100, "tcp", "10.0.0.1:443", f"203.0.113.{MAX_OUTSIDE_PEERS + 5}:{port}")
    graph = stitch([web.build(), db.build()], show_external=True)
    outside = [node for node in graph.nodes if node.kind == "outside"]
    assert len(outside) == MAX_OUTSIDE_PEERS + 1 and sum(1 for node in outside if not node.address) == 1
    counts = {graph.node(f.client).address: f.count for f in graph.flows if graph.node(f.client).kind == "outside"}
    assert counts[f"203.0.113.{MAX_OUTSIDE_PEERS + 5}"] == 4
    assert sum(counts.values()) == MAX_OUTSIDE_PEERS + 5 + 3
    assert counts[""] == 5  # the quietest peers


# ---------------------------------------------------------------- rule 2: scoped addresses


def test_loopback_stays_inside_each_machine_even_with_identical_tuples():
    machines = []
    for name, address in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
        machine = Machine(name, address)
        machine.process(1, f"client-{name}")
        machine.process(2, f"redis-{name}")
        machine.listen(2, "tcp", "127.0.0.1:6379")
        machine.connect(1, "tcp", "127.0.0.1:45000", "127.0.0.1:6379")
        machine.connect(2, "tcp", "127.0.0.1:6379", "127.0.0.1:45000")
        machines.append(machine.build())
    assert edges(stitch(machines)) == {
        ("a/client-a", "a/redis-a", "tcp", 6379, 1),
        ("b/client-b", "b/redis-b", "tcp", 6379, 1),
    }


def test_loopback_stays_inside_its_network_namespace():
    box = Machine("box", "10.0.0.1")
    box.namespace(7001, "172.17.0.2")
    box.process(1, "host-client")
    box.process(2, "host-server")
    box.process(3, "ctr-client", netns=7001)
    box.process(4, "ctr-server", netns=7001)
    for client, server, netns in ((1, 2, None), (3, 4, 7001)):
        extra = {} if netns is None else {"netns": netns}
        box.listen(server, "tcp", "127.0.0.1:8080", **extra)
        box.connect(client, "tcp", "127.0.0.1:50000", "127.0.0.1:8080", **extra)
        box.connect(server, "tcp", "127.0.0.1:8080", "127.0.0.1:50000", **extra)
    assert edges(stitch([box.build()])) == {
        ("box/host-client", "box/host-server", "tcp", 8080, 1),
        ("box/ctr-client", "box/ctr-server", "tcp", 8080, 1),
    }


def test_docker0_address_on_every_host_resolves_inside_the_same_machine():
    machines = []
    for name, address in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
        machine = Machine(name, address, "172.17.0.1")
        machine.namespace(7001, "172.17.0.2")
        machine.process(1, f"registry-{name}")
        machine.process(2, f"job-{name}", netns=7001)
        machine.listen(1, "tcp", "0.0.0.0:5000")
        # the same tuple on both machines: each container talks to its own host's docker0
        machine.connect(2, "tcp", "172.17.0.2:41000", "172.17.0.1:5000", netns=7001)
        machine.connect(1, "tcp", "172.17.0.1:5000", "172.17.0.2:41000")
        machines.append(machine.build())
    graph = stitch(machines)
    assert edges(graph) == {
        ("a/job-a", "a/registry-a", "tcp", 5000, 1),
        ("b/job-b", "b/registry-b", "tcp", 5000, 1),
    }
    assert graph.unresolved == 0


def test_address_owned_by_two_machines_is_unresolved_from_a_third():
    machines = []
    for name, address in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
        machine = Machine(name, address)
        machine.namespace(7001, "172.17.0.2")
        machine.process(2, f"api-{name}", netns=7001)
        machine.listen(2, "tcp", "0.0.0.0:80", netns=7001)
        machine.connect(2, "tcp", "172.17.0.2:80", "10.0.0.3:50000", netns=7001)
        machines.append(machine)
    caller = Machine("c", "10.0.0.3")
    caller.process(3, "curl")
    caller.connect(3, "tcp", "10.0.0.3:50000", "172.17.0.2:80")
    graph = stitch([machine.build() for machine in machines] + [caller.build()])
    assert edges(graph) == set()  # never guessed
    assert host(graph, "c").unresolved == 1
    assert host(graph, "a").unresolved == 1 and host(graph, "b").unresolved == 1
    assert graph.outside == 0


def _link_local_session(*claimed_by_c: str) -> tuple[Machine, Machine, Machine]:
    """a (fe80::1) dials b (fe80::2) on one link; c claims `claimed_by_c` too."""
    a = Machine("a", "10.0.0.1", "fe80::1")
    b = Machine("b", "10.0.0.2", "fe80::2")
    c = Machine("c", "10.0.0.3", *claimed_by_c)
    a.process(1, "bgpd")
    b.process(2, "bgpd")
    b.listen(2, "tcp6", "[::]:179")
    a.connect(1, "tcp6", "[fe80::1]:40000", "[fe80::2]:179")
    b.connect(2, "tcp6", "[fe80::2]:179", "[fe80::1]:40000")
    return a, b, c


def test_link_local_joins_across_machines_only_between_the_single_owners_of_its_two_addresses():
    # two routers of the group on one link: a BGP session between their link-local addresses
    a, b, c = _link_local_session()
    graph = stitch([a.build(), b.build(), c.build()])
    assert edges(graph) == {("a/bgpd", "b/bgpd", "tcp", 179, 1)}
    assert graph.flows[0].server_address == "fe80::2"
    assert host(graph, "a").unresolved == host(graph, "b").unresolved == 0

    # the kernel may choose a's global address as the source for b's link-local one
    a, b, c = Machine("a", "fd00::1", "fe80::1"), Machine("b", "fd00::2", "fe80::2"), Machine("c", "fd00::3")
    a.process(1, "ssh")
    b.listen(b.process(2, "sshd"), "tcp6", "[::]:22")
    a.connect(1, "tcp6", "[fd00::1]:40000", "[fe80::2]:22")
    b.connect(2, "tcp6", "[fe80::2]:22", "[fd00::1]:40000")
    assert edges(stitch([a.build(), b.build(), c.build()])) == {("a/ssh", "b/sshd", "tcp", 22, 1)}
    c.namespace(7001, "fd00::1")  # a's global address claimed elsewhere too: not told apart
    graph = stitch([a.build(), b.build(), c.build()])
    assert edges(graph) == set() and host(graph, "a").unresolved == host(graph, "b").unresolved == 1

    # fe80::2 is also c's (the same gateway address on many links): which machine a reached is
    # not known, so nothing is drawn, and a's socket is never attached to b's listener
    a, b, c = _link_local_session("fe80::2")
    graph = stitch([a.build(), b.build(), c.build()])
    assert edges(graph) == set()
    assert host(graph, "a").unresolved == 1 and host(graph, "b").unresolved == 1
    assert "link-local" in host(graph, "a").unresolved_examples[0].why


def test_link_local_resolves_inside_the_same_machine():
    same = Machine("s", "10.0.0.9", "fe80::9")
    same.namespace(7001, "fe80::10")
    same.process(1, "ll-client")
    same.process(2, "ll-server", netns=7001)
    same.listen(2, "tcp6", "[::]:9000", netns=7001)
    same.connect(1, "tcp6", "[fe80::9]:40000", "[fe80::10]:9000")
    same.connect(2, "tcp6", "[fe80::10]:9000", "[fe80::9]:40000", netns=7001)
    assert edges(stitch([same.build()])) == {("s/ll-client", "s/ll-server", "tcp", 9000, 1)}


def test_a_link_local_peer_no_machine_owns_is_outside_unless_the_capture_missed_a_namespace():
    # a host's BGP session to its top-of-rack switch, which is not in the group
    def host_to_switch() -> Machine:
        machine = Machine("h", "10.0.0.1", "fe80::1")
        machine.process(1, "bgpd")
        machine.connect(1, "tcp6", "[fe80::1]:40000", "[fe80::ff]:179")
        return machine

    graph = stitch([host_to_switch().build()])
    assert (host(graph, "h").outside_outbound, host(graph, "h").unresolved) == (1, 0)

    # the capture could not read a namespace: the peer may be its end of a veth pair
    partial = host_to_switch().build()
    partial = dataclasses.replace(partial, coverage=dataclasses.replace(partial.coverage, namespaces_denied=1))
    graph = stitch([partial])
    assert (host(graph, "h").outside_outbound, host(graph, "h").unresolved) == (0, 1)
    assert host(graph, "h").unresolved_examples[0].why == "no socket of its own machine has the reversed address and port"


def _transparent_proxy(upstream_port: int) -> list:
    """web dials db:5432; db's proxy accepts it (TPROXY) and connects to the local postgres from
    web's address and `upstream_port`."""
    web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
    web.process(100, "app")
    db.process(200, "envoy")
    db.process(300, "postgres")
    db.listen(300, "tcp", "0.0.0.0:5432")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")  # accepted by the proxy
    db.connect(200, "tcp", f"10.0.0.1:{upstream_port}", "10.0.0.2:5432")  # its upstream, from web's address
    db.connect(300, "tcp", "10.0.0.2:5432", f"10.0.0.1:{upstream_port}")
    return [web.build(), db.build()]


def test_a_transparent_proxy_connecting_from_its_clients_address_is_joined_inside_its_namespace():
    """A sidecar in TPROXY mode (IP_TRANSPARENT) accepts web's connection to db:5432 and connects
    to the local postgres from web's own address: that socket's local address is another
    machine's, and its peer, in the same namespace, holds the reversed tuple."""
    graph = stitch(_transparent_proxy(40000))
    # upstream from web's very port: the same tuple on two sockets of db, never guessed
    assert host(graph, "web").unresolved == 1

    graph = stitch(_transparent_proxy(51000))
    assert edges(graph) == {("web/app", "db/envoy", "tcp", 5432, 1), ("db/envoy", "db/postgres", "tcp", 5432, 1)}
    assert host(graph, "web").unresolved == host(graph, "db").unresolved == 0


# ---------------------------------------------------------------- rule 3: IPv4-mapped IPv6


def test_ipv4_mapped_listener_accepts_an_ipv4_client():
    web, db = web_and_db()
    db.listen(200, "tcp6", "[::]:8443")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:8443")
    db.connect(200, "tcp6", "[::ffff:10.0.0.2]:8443", "[::ffff:10.0.0.1]:40000")
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == {("web/app", "db/postgres", "tcp", 8443, 1)}
    assert graph.flows[0].server_address == "10.0.0.2"


def test_normalize_address():
    assert normalize_address("::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize_address("::ffff:a00:1") == "::ffff:a00:1"  # not dotted: not produced by inet_ntop
    assert normalize_address("fd00::1") == "fd00::1"


# ---------------------------------------------------------------- rule 4: exact join, inferred peer


def test_parallel_connections_join_each_with_its_own_peer():
    web, db = web_and_db()
    db.process(201, "pgbouncer")
    db.listen(201, "tcp", "0.0.0.0:6432")
    for port in range(40000, 40005):
        web.connect(100, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
        db.connect(200, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
    web.connect(100, "tcp", "10.0.0.1:41000", "10.0.0.2:6432")
    db.connect(201, "tcp", "10.0.0.2:6432", "10.0.0.1:41000")
    assert edges(stitch([web.build(), db.build()])) == {
        ("web/app", "db/postgres", "tcp", 5432, 5),
        ("web/app", "db/pgbouncer", "tcp", 6432, 1),
    }


def test_missing_peer_socket_attaches_to_the_listener_and_is_marked_inferred():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")  # db's accepted socket was not captured
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == {("web/app", "db/postgres", "tcp", 5432, 1, "inferred")}


def test_missing_peer_without_a_listener_is_unresolved():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:6000")
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == set()
    assert host(graph, "web").unresolved == 1


def test_server_side_socket_whose_client_is_missing_is_not_attached_anywhere():
    web, db = web_and_db()
    web.listen(100, "tcp", "0.0.0.0:8080")
    db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:8080")  # db's accepted socket; the client on web is gone
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == set()
    assert host(graph, "db").unresolved == 1


def test_unattributed_accepted_socket_goes_to_the_listeners_holder_inferred():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(None, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")  # no visible holder (non-root capture)
    graph = stitch([web.build(), db.build()])
    assert edges(graph) == {("web/app", "db/postgres", "tcp", 5432, 1, "inferred")}


def test_unattributed_sockets_without_a_listener_holder_show_as_unattributed():
    web, db = web_and_db()
    db.listen(None, "tcp", "0.0.0.0:2049")  # kernel nfsd: no process
    web.connect(100, "tcp", "10.0.0.1:800", "10.0.0.2:2049")
    db.connect(None, "tcp", "10.0.0.2:2049", "10.0.0.1:800")
    assert edges(stitch([web.build(), db.build()])) == {("web/app", "db/(unattributed)", "tcp", 2049, 1)}


def test_the_unattributed_node_counts_the_sockets_no_process_holds():
    web, db = web_and_db()
    db.listen(None, "tcp", "0.0.0.0:2049")
    db.listen(None, "udp", "0.0.0.0:111")
    web.connect(100, "tcp", "10.0.0.1:800", "10.0.0.2:2049")
    db.connect(None, "tcp", "10.0.0.2:2049", "10.0.0.1:800")
    graph = stitch([web.build(), db.build()])
    (node,) = [node for node in graph.nodes if node.host == "db" and node.comm == "(unattributed)"]
    assert node.sockets == 3


# ---------------------------------------------------------------- rule 5: direction


def test_direction_comes_from_the_listener_not_from_port_numbers():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, "oddclient")
    b.process(2, "highserver")
    b.listen(2, "tcp", "0.0.0.0:50000")
    a.connect(1, "tcp", "10.0.0.1:80", "10.0.0.2:50000")  # the client happens to use port 80
    b.connect(2, "tcp", "10.0.0.2:50000", "10.0.0.1:80")
    assert edges(stitch([a.build(), b.build()])) == {("a/oddclient", "b/highserver", "tcp", 50000, 1)}


def test_neither_end_listening_gives_an_undirected_marked_flow():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, "peer-a")
    b.process(2, "peer-b")
    a.connect(1, "tcp", "10.0.0.1:80", "10.0.0.2:50000")
    b.connect(2, "tcp", "10.0.0.2:50000", "10.0.0.1:80")
    graph = stitch([a.build(), b.build()])
    assert edges(graph) == {("a/peer-a", "b/peer-b", "tcp", 50000, 1, "undirected")}
    # stable: the same whichever order the snapshots come in
    assert edges(stitch([b.build(), a.build()])) == edges(graph)


# ---------------------------------------------------------------- rule 6: UDP


def test_connected_udp_reaches_the_bound_wildcard_socket():
    web = Machine("web", "10.0.0.1")
    dns = Machine("dns", "10.0.0.53")
    web.process(1, "resolver")
    dns.process(2, "unbound")
    dns.listen(2, "udp", "0.0.0.0:53")
    web.connect(1, "udp", "10.0.0.1:33000", "10.0.0.53:53")
    web.connect(1, "udp", "10.0.0.1:33001", "10.0.0.53:53")
    graph = stitch([web.build(), dns.build()])
    assert edges(graph) == {("web/resolver", "dns/unbound", "udp", 53, 2)}
    assert graph.flows[0].server_address == "10.0.0.53"


def test_connected_udp_prefers_the_exact_bound_address_over_the_wildcard():
    web = Machine("web", "10.0.0.1")
    ntp = Machine("ntp", "10.0.0.2", "10.0.0.3")
    web.process(1, "chronyd")
    ntp.process(2, "ntpd-any")
    ntp.process(3, "ntpd-three")
    ntp.listen(2, "udp", "0.0.0.0:123")
    ntp.listen(3, "udp", "10.0.0.3:123")
    web.connect(1, "udp", "10.0.0.1:40000", "10.0.0.3:123")
    web.connect(1, "udp", "10.0.0.1:40001", "10.0.0.2:123")
    assert edges(stitch([web.build(), ntp.build()])) == {
        ("web/chronyd", "ntp/ntpd-three", "udp", 123, 1),
        ("web/chronyd", "ntp/ntpd-any", "udp", 123, 1),
    }


def test_udp6_connected_to_udp6_bound():
    a = Machine("a", "fd00::1")
    b = Machine("b", "fd00::2")
    a.process(1, "client")
    b.process(2, "server")
    b.listen(2, "udp6", "[::]:5353")
    a.connect(1, "udp6", "[fd00::1]:40000", "[fd00::2]:5353")
    assert edges(stitch([a.build(), b.build()])) == {("a/client", "b/server", "udp", 5353, 1)}


def test_udp_to_a_port_nobody_binds_is_unresolved():
    a = Machine("a", "10.0.0.1")
    b = Machine("b", "10.0.0.2")
    a.process(1, "client")
    a.connect(1, "udp", "10.0.0.1:40000", "10.0.0.2:9999")
    graph = stitch([a.build(), b.build()])
    assert edges(graph) == set() and host(graph, "a").unresolved == 1


# ---------------------------------------------------------------- rule 7: SCTP


def test_sctp_association_matches_over_all_addresses():
    a = Machine("a", "10.0.0.1", "10.1.0.1")
    b = Machine("b", "10.0.0.2", "10.1.0.2")
    a.process(1, "diameter-client")
    b.process(2, "diameter-server")
    b.listen(2, "sctp", "10.0.0.2:3868", local_all=["10.0.0.2", "10.1.0.2"])
    # primary paths differ: a sees b's second address, b sees a's first
    a.connect(1, "sctp", "10.1.0.1:50000", "10.1.0.2:3868", local_all=["10.0.0.1", "10.1.0.1"],
              remote_all=["10.1.0.2", "10.0.0.2"])
    b.connect(2, "sctp", "10.0.0.2:3868", "10.0.0.1:50000", local_all=["10.0.0.2", "10.1.0.2"],
              remote_all=["10.0.0.1", "10.1.0.1"])
    assert edges(stitch([a.build(), b.build()])) == {("a/diameter-client", "b/diameter-server", "sctp", 3868, 1)}


# ---------------------------------------------------------------- rule 8: NAT through conntrack


def docker_host() -> Machine:
    """A Docker host publishing container port 80 as 10.0.0.2:8080 (DNAT), docker-proxy listening."""
    nat = Machine("dockerhost", "10.0.0.2", "172.17.0.1")
    nat.namespace(7001, "172.17.0.2")
    nat.process(50, "docker-proxy")
    nat.process(60, "nginx", netns=7001)
    nat.listen(50, "tcp", "0.0.0.0:8080")
    nat.listen(60, "tcp", "0.0.0.0:80", netns=7001)
    return nat


def test_nat_flow_goes_to_the_translated_server_via_the_nat_machine():
    client = Machine("client", "10.0.0.1")
    client.process(1, "curl")
    client.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:8080")
    nat = docker_host()
    nat.connect(60, "tcp", "172.17.0.2:80", "10.0.0.1:40000", netns=7001)
    nat.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.2:8080"), ("172.17.0.2:80", "10.0.0.1:40000"))
    graph = stitch([client.build(), nat.build()])
    # not the phantom client -> docker-proxy that the listener on 8080 would suggest
    assert edges(graph) == {("client/curl", "dockerhost/nginx", "tcp", 80, 1, "via=dockerhost")}
    assert graph.unresolved == 0 and graph.outside == 0


def test_nat_on_a_gateway_machine_with_masquerade():
    client = Machine("client", "10.0.0.1")
    gateway = Machine("gw", "10.0.0.254", "192.168.1.254")
    server = Machine("server", "192.168.1.10")
    client.process(1, "psql")
    server.process(2, "postgres")
    server.listen(2, "tcp", "0.0.0.0:5432")
    client.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.254:15432")
    server.connect(2, "tcp", "192.168.1.10:5432", "192.168.1.254:61000")
    gateway.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.254:15432"), ("192.168.1.10:5432", "192.168.1.254:61000"))
    graph = stitch([client.build(), gateway.build(), server.build()])
    assert edges(graph) == {("client/psql", "server/postgres", "tcp", 5432, 1, "via=gw")}
    assert graph.unresolved == 0
    # the front the client dialled, on the gateway, is kept: the server end only shows 5432
    (flow,) = graph.flows
    assert flow.dialled == (("10.0.0.254", 15432),) and flow.server_address == "192.168.1.10"
    assert flow.to_json()["dialled"] == [{"address": "10.0.0.254", "port": 15432}]


def _gateways_tracking_one_tuple(servers_reached: tuple[str, ...]) -> list:
    """A client dialling a front that several gateways all track (an HA group whose conntrack is
    replicated): gateway N's entry sends the connection to server `servers_reached[N - 1]`; every
    server holds a socket with the translated tuple."""
    client = Machine("client", "10.0.0.1")
    client.process(1, "psql")
    client.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.254:15432")
    machines = [client]
    for number, server_address in enumerate(sorted(set(servers_reached)), 1):
        server = Machine(f"server{number}", server_address)
        server.process(2, "postgres")
        server.listen(2, "tcp", "0.0.0.0:5432")
        server.connect(2, "tcp", f"{server_address}:5432", "192.168.1.254:61000")
        machines.append(server)
    for number, server_address in enumerate(servers_reached, 1):
        gateway = Machine(f"gw{number}", f"10.0.0.{255 - number}", f"192.168.1.{255 - number}")
        gateway.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.254:15432"), (f"{server_address}:5432", "192.168.1.254:61000"))
        machines.append(gateway)
    return [machine.build() for machine in machines]


def test_a_tuple_gateways_translate_alike_is_one_flow_via_the_first():
    graph = stitch(_gateways_tracking_one_tuple(("192.168.1.10",) * 3))
    assert edges(graph) == {("client/psql", "server1/postgres", "tcp", 5432, 1, "via=gw1")}
    assert graph.unresolved == 0


@pytest.mark.parametrize("servers_reached", [
    ("192.168.1.10", "192.168.1.11"),
    ("192.168.1.10", "192.168.1.10", "192.168.1.11"),  # the third entry alone disagrees
])
def test_a_tuple_gateways_translate_to_different_servers_is_never_guessed(servers_reached):
    graph = stitch(_gateways_tracking_one_tuple(servers_reached))
    assert not any(edge[0] == "client/psql" for edge in edges(graph)), edges(graph)
    (example,) = host(graph, "client").unresolved_examples
    assert (example.remote, example.why) == ("10.0.0.254", "several sockets or namespaces could be its peer")


def test_a_translated_flow_is_found_by_its_front_and_its_translating_machine():
    """`--only 15432`, `--only 10.0.0.254` and `--only gw` find the flow the gateway translated,
    though neither end is on gw nor serves 15432; an untranslated flow keeps no front."""
    from netviz.filters import FilterSpec, apply_filters
    from netviz.render.table import table_rows

    client = Machine("client", "10.0.0.1")
    gateway = Machine("gw", "10.0.0.254", "192.168.1.254")
    server = Machine("server", "192.168.1.10")
    client.process(1, "psql")
    server.process(2, "postgres")
    server.listen(2, "tcp", "0.0.0.0:5432")
    client.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.254:15432")
    server.connect(2, "tcp", "192.168.1.10:5432", "192.168.1.254:61000")
    gateway.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.254:15432"), ("192.168.1.10:5432", "192.168.1.254:61000"))
    client.process(3, "curl")
    server.process(4, "nginx")
    server.listen(4, "tcp", "0.0.0.0:80")
    client.connect(3, "tcp", "10.0.0.1:40001", "192.168.1.10:80")
    server.connect(4, "tcp", "192.168.1.10:80", "10.0.0.1:40001")
    graph = stitch([client.build(), gateway.build(), server.build()])
    assert {flow.server_port: flow.dialled for flow in graph.flows} == {5432: (("10.0.0.254", 15432),), 80: ()}
    for term in ("15432", "tcp/15432", "10.0.0.254", "gw"):
        kept = apply_filters(graph, FilterSpec.parse([term], [])).graph
        assert [flow.server_port for flow in kept.flows] == [5432], term
    dropped = apply_filters(graph, FilterSpec.parse([], ["gw"])).graph
    assert [flow.server_port for flow in dropped.flows] == [80]
    _, rows = table_rows(graph)
    assert any("via gw (dialled 10.0.0.254:15432)" in row[-1] for row in rows), rows


def test_a_command_in_a_container_namespace_is_a_node_apart_named_by_its_namespace():
    """socat on the machine talking to socat in a container of the same machine: two nodes (not a
    socat -> socat loop), the container's carrying its namespace and the name the snapshot knows."""
    import dataclasses

    box = Machine("box", "10.0.0.2", "172.17.0.1")
    box.namespace(7001, "172.17.0.2")
    box.process(1, "systemd")  # pid 1's namespace is the machine's own
    box.process(50, "socat")
    box.process(60, "socat", netns=7001)
    box.listen(60, "tcp", "0.0.0.0:80", netns=7001)
    box.connect(50, "tcp", "172.17.0.1:40000", "172.17.0.2:80")
    box.connect(60, "tcp", "172.17.0.2:80", "172.17.0.1:40000", netns=7001)
    snapshot = box.build()
    named = dataclasses.replace(snapshot, namespaces=tuple(
        dataclasses.replace(ns, name="web-1") if ns.inode == 7001 else ns for ns in snapshot.namespaces))
    graph = stitch([named])
    (flow,) = graph.flows
    client, server = graph.node(flow.client), graph.node(flow.server)
    assert flow.client != flow.server and client.comm == server.comm == "socat"
    assert (client.netns, server.netns, server.netns_name) == ("", "7001", "web-1")
    assert server.to_json()["netns"] == 7001 and "netns" not in client.to_json()
    # grouped by pid, the two were always apart; the namespace is said the same way
    by_pid = stitch([named], group_by="pid")
    assert {graph_node.netns for graph_node in by_pid.nodes} == {"", "7001"}


def test_nat_for_udp_reaches_the_bound_socket_behind_it():
    client = Machine("client", "10.0.0.1")
    client.process(1, "dig")
    client.connect(1, "udp", "10.0.0.1:40000", "10.0.0.2:5353")
    nat = docker_host()
    nat.process(61, "coredns", netns=7001)
    nat.listen(61, "udp", "0.0.0.0:53", netns=7001)
    nat.conntrack("udp", ("10.0.0.1:40000", "10.0.0.2:5353"), ("172.17.0.2:53", "10.0.0.1:40000"))
    assert edges(stitch([client.build(), nat.build()])) == {
        ("client/dig", "dockerhost/coredns", "udp", 53, 1, "via=dockerhost")
    }


def test_untranslated_conntrack_entries_change_nothing():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    db.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.2:5432"), ("10.0.0.2:5432", "10.0.0.1:40000"))
    assert edges(stitch([web.build(), db.build()])) == {("web/app", "db/postgres", "tcp", 5432, 1)}


# ---------------------------------------------------------------- rule 9: ingress


def test_raw_packet_and_icmp_sockets_are_ingress_on_the_holder_not_flows():
    box = Machine("box", "10.0.0.1")
    box.process(1, "dhclient")
    box.process(2, "tcpdump")
    box.process(3, "ping")
    box.socket(1, "packet", None, local_port=0, protocol=0x0800, interface="eth0", packet_type="raw")
    box.socket(2, "packet", None, local_port=0, protocol=0x0003, interface="*", packet_type="raw")
    box.socket(3, "icmp", "0.0.0.0:0", None, state="CLOSE")
    box.socket(3, "raw6", "[::]:58", None, state="CLOSE")
    graph = stitch([box.build()])
    assert graph.flows == []
    ingress = {node.comm: [(item.kind, item.protocol, item.interface) for item in node.ingress] for node in graph.nodes}
    assert ingress == {
        "dhclient": [("packet", 0x0800, "eth0")],
        "tcpdump": [("packet", 3, "*")],
        "ping": [("icmp", None, None), ("raw6", 58, None)],
    }


# ---------------------------------------------------------------- rule 10: shared sockets


def test_socket_held_by_several_processes_goes_to_the_lowest_pid_once():
    web, db = web_and_db()
    db.process(300, "pgworker")
    db.process(301, "pgworker")
    db.process(299, "pgmaster")
    db.listen([301, 300, 299], "tcp", "0.0.0.0:6000")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:6000")
    db.connect([301, 300], "tcp", "10.0.0.2:6000", "10.0.0.1:40000")  # inherited by a forked worker
    graph = stitch([web.build(), db.build()], group_by="pid")
    assert len(graph.flows) == 1
    flow = graph.flows[0]
    server = graph.node(flow.server)
    assert (server.comm, server.pids, flow.count) == ("pgworker", (300,), 1)
    assert flow.server_pids == (300, 301)
    listeners = {node.pids: [item.port for item in node.listening] for node in graph.nodes if node.listening}
    assert listeners == {(299,): [6000], (200,): [5432]}


# ---------------------------------------------------------------- rule 11: same machine


def test_same_machine_flows_stay_inside_the_machine():
    box = Machine("box", "10.0.0.1")
    box.process(1, "app")
    box.process(2, "memcached")
    box.listen(2, "tcp6", "[::]:11211")  # dual stack: accepts ::1 and 10.0.0.1
    box.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.1:11211")
    box.connect(2, "tcp", "10.0.0.1:11211", "10.0.0.1:40000")
    box.connect(1, "tcp6", "[::1]:40001", "[::1]:11211")
    box.connect(2, "tcp6", "[::1]:11211", "[::1]:40001")
    graph = stitch([box.build()])
    assert edges(graph) == {("box/app", "box/memcached", "tcp", 11211, 2)}


# ---------------------------------------------------------------- rule 12: granularity


def pool() -> tuple[Machine, Machine]:
    web, db = web_and_db()
    web.process(101, "app", user="www-data")
    db.process(201, "postgres", user="postgres")
    for pid, port in ((100, 40000), (100, 40001), (101, 40002)):
        web.connect(pid, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
    for pid, port in ((200, 40000), (201, 40001), (201, 40002)):
        db.connect(pid, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
    return web, db


def test_group_by_process_collapses_parallel_connections_with_a_count():
    web, db = pool()
    graph = stitch([web.build(), db.build()], group_by="process")
    assert edges(graph) == {("web/app", "db/postgres", "tcp", 5432, 3)}
    assert graph.node(graph.flows[0].client).pids == (100, 101)
    assert graph.flows[0].client_pids == (100, 101) and graph.flows[0].server_pids == (200, 201)


def test_group_by_pid_gives_one_node_per_process():
    web, db = pool()
    graph = stitch([web.build(), db.build()], group_by="pid")
    pairs = {
        (graph.node(flow.client).pids, graph.node(flow.server).pids, flow.count) for flow in graph.flows
    }
    assert pairs == {((100,), (200,), 1), ((100,), (201,), 1), ((101,), (201,), 1)}


def test_group_by_host_gives_machines_only():
    web, db = pool()
    graph = stitch([web.build(), db.build()], group_by="host")
    assert [(node.kind, node.comm) for node in graph.nodes] == [("host", "db"), ("host", "web")]
    assert edges(graph) == {("web/web", "db/db", "tcp", 5432, 3)}


def test_unknown_group_by_is_refused():
    with pytest.raises(ValueError):
        stitch([], group_by="user")


# ---------------------------------------------------------------- rule 13: machines told apart


def test_two_machines_sharing_hostname_and_machine_id_stay_two():
    one = Machine("clone", "10.0.0.1", machine_id="same")
    two = Machine("clone", "10.0.0.2", machine_id="same")
    for machine, address, peer in ((one, "10.0.0.1", "10.0.0.2"), (two, "10.0.0.2", "10.0.0.1")):
        machine.process(1, "agent")
        machine.listen(1, "tcp", "0.0.0.0:7000")
    one.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:7000")
    two.connect(1, "tcp", "10.0.0.2:7000", "10.0.0.1:40000")
    graph = stitch([one.build("clone-1"), two.build("clone-2")])
    assert [entry.name for entry in graph.hosts] == ["clone-1", "clone-2"]
    assert [entry.hostname for entry in graph.hosts] == ["clone", "clone"]
    assert edges(graph) == {("clone-1/agent", "clone-2/agent", "tcp", 7000, 1)}


def test_duplicate_names_are_refused_by_stitch():
    with pytest.raises(ValueError):
        stitch([Machine("a").build(), Machine("a").build()])


# ---------------------------------------------------------------- rule 14: legacy snapshots


def test_legacy_snapshots_join_by_tuple_and_stay_undirected_without_listeners():
    a = Machine("old-a", "10.0.0.1", legacy=True)
    b = Machine("old-b", "10.0.0.2", legacy=True)
    a.process(1, "client")
    b.process(2, "server")
    a.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    b.connect(2, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    a.connect(1, "tcp", "10.0.0.1:40001", "203.0.113.1:443")
    graph = stitch([a.build(), b.build()])
    assert edges(graph) == {("old-a/client", "old-b/server", "tcp", 5432, 1, "undirected")}
    assert [entry.legacy for entry in graph.hosts] == [True, True]
    assert host(graph, "old-a").outside_outbound == 1


def test_unclaimed_address_with_two_candidate_peers_is_unresolved():
    a = Machine("a", legacy=True)
    b = Machine("b", legacy=True)
    c = Machine("c", legacy=True)
    a.process(1, "client")
    b.process(2, "server")
    c.process(3, "server")
    a.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    b.connect(2, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    c.connect(3, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")  # a cloned lab with the same addresses
    graph = stitch([a.build(), b.build(), c.build()])
    assert edges(graph) == set()
    assert host(graph, "a").unresolved == 1


def test_container_egress_masquerade_joins_through_the_docker_hosts_conntrack():
    host = Machine("dockerhost", "10.0.0.2", "172.17.0.1")
    host.namespace(7001, "172.17.0.2")
    host.process(60, "worker", netns=7001)
    host.connect(60, "tcp", "172.17.0.2:40000", "10.0.0.3:5432", netns=7001)
    host.conntrack("tcp", ("172.17.0.2:40000", "10.0.0.3:5432"), ("10.0.0.3:5432", "10.0.0.2:61000"))
    other = Machine("otherdocker", "10.0.0.4", "172.17.0.1")
    other.namespace(7001, "172.17.0.2")  # the same container address on another Docker host
    other.process(70, "idle", netns=7001)
    db = Machine("db", "10.0.0.3")
    db.process(2, "postgres")
    db.listen(2, "tcp", "0.0.0.0:5432")
    db.connect(2, "tcp", "10.0.0.3:5432", "10.0.0.2:61000")  # the server sees the docker host's address
    graph = stitch([host.build(), other.build(), db.build()])
    assert edges(graph) == {("dockerhost/worker", "db/postgres", "tcp", 5432, 1, "via=dockerhost")}
    assert graph.unresolved == 0 and graph.outside == 0


def two_docker_hosts() -> tuple[Machine, Machine]:
    """appbox's container (172.17.0.2) calls dockerhost:8080, published to dockerhost's own
    container (172.17.0.2 too) where an idle docker-proxy also listens: masqueraded by appbox,
    then DNATed by dockerhost."""
    app = Machine("appbox", "10.0.0.1", "172.17.0.1")
    app.namespace(7001, "172.17.0.2")
    app.process(10, "curl", netns=7001)
    app.connect(10, "tcp", "172.17.0.2:40000", "10.0.0.2:8080", netns=7001)
    app.conntrack("tcp", ("172.17.0.2:40000", "10.0.0.2:8080"), ("10.0.0.2:8080", "10.0.0.1:61000"))
    return app, docker_host()


def test_a_connection_translated_twice_is_followed_to_its_server_via_the_last_translator():
    app, nat = two_docker_hosts()
    nat.connect(60, "tcp", "172.17.0.2:80", "10.0.0.1:61000", netns=7001)
    nat.conntrack("tcp", ("10.0.0.1:61000", "10.0.0.2:8080"), ("172.17.0.2:80", "10.0.0.1:61000"))
    graph = stitch([app.build(), nat.build()])
    assert edges(graph) == {("appbox/curl", "dockerhost/nginx", "tcp", 80, 1, "via=dockerhost")}
    assert graph.unresolved == 0 and graph.outside == 0


def test_a_translated_connection_is_never_attached_to_the_listener_it_dialled():
    app, nat = two_docker_hosts()
    nat.connect(60, "tcp", "172.17.0.2:80", "10.0.0.1:61000", netns=7001)
    # dockerhost's conntrack is unreadable: the chain stops after appbox's masquerade
    graph = stitch([app.build(), nat.build()])
    assert edges(graph) == set()  # not appbox/curl -> dockerhost/docker-proxy (inferred)
    assert host(graph, "appbox").unresolved == 1 and host(graph, "dockerhost").unresolved == 1


def test_a_connection_a_group_machine_translates_to_an_outside_server_counts_outside():
    client = Machine("client", "10.0.0.1")
    gateway = Machine("gw", "10.0.0.254")
    client.process(1, "psql")
    client.connect(1, "tcp", "10.0.0.1:40000", "10.0.0.254:15432")
    # the server 192.168.1.10 is in no snapshot of the group
    gateway.conntrack("tcp", ("10.0.0.1:40000", "10.0.0.254:15432"), ("192.168.1.10:5432", "10.0.0.254:61000"))
    graph = stitch([client.build(), gateway.build()])
    assert edges(graph) == set()
    assert host(graph, "client").outside_outbound == 1 and graph.unresolved == 0


# ---------------------------------------------------------------- netviz's own SSH sessions


def fleet_seen_by_netviz(mark_sessions: bool):
    """admin runs netviz (a python process) and is itself in the group; it reaches web directly
    and db through the jump host bastion. web also has an operator's ssh login from bastion."""
    admin, bastion = Machine("admin", "10.0.0.9"), Machine("bastion", "10.0.0.5")
    web, db = web_and_db()
    admin.process(50, "python3")
    admin.connect(50, "tcp", "10.0.0.9:50001", "10.0.0.1:22")  # netviz -> web
    admin.connect(50, "tcp", "10.0.0.9:50002", "10.0.0.5:22")  # netviz -> bastion (the jump)
    bastion.process(400, "sshd")
    bastion.listen(400, "tcp", "0.0.0.0:22")
    bastion.connect(400, "tcp", "10.0.0.5:22", "10.0.0.9:50002")
    bastion.connect(400, "tcp", "10.0.0.5:41000", "10.0.0.2:22")  # forwarded on to db
    bastion.process(410, "ssh", user="alice")
    bastion.connect(410, "tcp", "10.0.0.5:42000", "10.0.0.1:22")  # alice's own login to web
    web.process(300, "sshd")
    web.listen(300, "tcp", "0.0.0.0:22")
    web.process(301, "sshd")  # netviz's session: the privileged monitor and its child
    web.process(302, "sshd")
    web.connect([301, 302], "tcp", "10.0.0.1:22", "10.0.0.9:50001")
    web.process(303, "sshd")  # alice's session
    web.connect(303, "tcp", "10.0.0.1:22", "10.0.0.5:42000")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(200, "tcp", "10.0.0.2:5432", "10.0.0.1:40000")
    db.process(500, "sshd")
    db.listen(500, "tcp", "0.0.0.0:22")
    db.process(501, "sshd")
    db.connect(501, "tcp", "10.0.0.2:22", "10.0.0.5:41000")
    snapshots = [admin.build(), bastion.build(), web.build(), db.build()]
    if mark_sessions:
        sessions = {"web": (301, 302), "db": (501,)}
        snapshots = [dataclasses.replace(s, ssh_session_pids=sessions.get(s.name, ())) for s in snapshots]
    return snapshots


def test_netvizs_own_sessions_are_outside_even_through_a_jump_host_of_the_group():
    graph = stitch(fleet_seen_by_netviz(mark_sessions=True))
    assert edges(graph) == {
        ("web/app", "db/postgres", "tcp", 5432, 1),
        ("bastion/ssh", "web/sshd", "tcp", 22, 1),  # a person's login is a real flow
        ("admin/python3", "bastion/sshd", "tcp", 22, 1),  # the jump's own session is not marked
    }
    assert (host(graph, "admin").outside_outbound, host(graph, "bastion").outside_outbound) == (1, 1)
    assert (host(graph, "web").outside_inbound, host(graph, "db").outside_inbound) == (1, 1)
    assert graph.unresolved == 0


def test_without_the_session_marks_the_same_fleet_draws_netvizs_sessions():
    """The control: what the marks take away is exactly netviz's two sessions."""
    graph = stitch(fleet_seen_by_netviz(mark_sessions=False))
    assert {("admin/python3", "web/sshd", "tcp", 22, 1), ("bastion/sshd", "db/sshd", "tcp", 22, 1)} <= edges(graph)
    assert len(edges(graph)) == 5


def test_session_marks_count_as_outside_nodes_with_show_external():
    graph = stitch(fleet_seen_by_netviz(mark_sessions=True), show_external=True)
    assert ("web/outside", "web/sshd", "tcp", 22, 1) in edges(graph)
    assert ("db/outside", "db/sshd", "tcp", 22, 1) in edges(graph)


def test_a_session_whose_other_end_was_not_captured_is_outside_not_unresolved():
    """bastion was captured before it opened the forwarded connection to db: db's end of
    netviz's session has its peer in the group but no socket there; still outside."""
    snapshots = fleet_seen_by_netviz(mark_sessions=True)
    bastion = next(s for s in snapshots if s.name == "bastion")
    (namespace,) = bastion.namespaces
    kept = tuple(sock for sock in namespace.sockets if sock.local_port != 41000)
    snapshots = [dataclasses.replace(bastion, namespaces=(dataclasses.replace(namespace, sockets=kept),))
                 if s is bastion else s for s in snapshots]
    graph = stitch(snapshots)
    assert host(graph, "db").outside_inbound == 1 and graph.unresolved == 0
    assert not any("db/sshd" in flow[:2] for flow in edges(graph))


# ---------------------------------------------------------------- datagrams only conntrack shows


def statsd_fleet() -> tuple[Machine, Machine]:
    """app sends metrics with sendto from an unconnected socket (bound 0.0.0.0:45000, no peer
    in /proc); metrics listens on udp 8125."""
    app, metrics = Machine("app", "10.0.0.1"), Machine("metrics", "10.0.0.2")
    app.process(100, "python3")
    app.listen(100, "udp", "0.0.0.0:45000")
    metrics.process(200, "statsd")
    metrics.listen(200, "udp", "0.0.0.0:8125")
    return app, metrics


def test_an_unconnected_sender_is_joined_through_conntrack_on_either_machine():
    for tracked_on in ("app", "metrics"):
        app, metrics = statsd_fleet()
        machine = app if tracked_on == "app" else metrics
        machine.conntrack("udp", ("10.0.0.1:45000", "10.0.0.2:8125"), ("10.0.0.2:8125", "10.0.0.1:45000"))
        graph = stitch([app.build(), metrics.build()])
        assert edges(graph) == {("app/python3", "metrics/statsd", "udp", 8125, 1, "inferred")}, tracked_on
        assert graph.unresolved == 0


def test_without_conntrack_the_sendto_flow_is_invisible():
    """The control: /proc alone shows two bound sockets and no flow."""
    app, metrics = statsd_fleet()
    assert edges(stitch([app.build(), metrics.build()])) == set()


def test_tracked_datagrams_need_both_bound_sockets_in_the_group_and_skip_connected_ones():
    app, metrics = statsd_fleet()
    # to an address outside the group, to a port nobody binds, from a port nobody binds,
    # and multicast: nothing to draw
    app.conntrack("udp", ("10.0.0.1:45000", "198.51.100.7:8125"), ("198.51.100.7:8125", "10.0.0.1:45000"))
    app.conntrack("udp", ("10.0.0.1:45000", "10.0.0.2:9999"), ("10.0.0.2:9999", "10.0.0.1:45000"))
    app.conntrack("udp", ("10.0.0.1:46000", "10.0.0.2:8125"), ("10.0.0.2:8125", "10.0.0.1:46000"))
    app.conntrack("udp", ("10.0.0.1:45000", "224.0.0.251:5353"), ("224.0.0.251:5353", "10.0.0.1:45000"))
    # a connected client: joined from its own socket, once, not again from conntrack
    app.process(101, "collector")
    app.connect(101, "udp", "10.0.0.1:47000", "10.0.0.2:8125")
    app.conntrack("udp", ("10.0.0.1:47000", "10.0.0.2:8125"), ("10.0.0.2:8125", "10.0.0.1:47000"))
    metrics.conntrack("udp", ("10.0.0.1:47000", "10.0.0.2:8125"), ("10.0.0.2:8125", "10.0.0.1:47000"))
    graph = stitch([app.build(), metrics.build()])
    assert edges(graph) == {("app/collector", "metrics/statsd", "udp", 8125, 1)}


def test_a_connected_socket_sharing_a_port_with_a_bound_one_is_not_drawn_twice():
    """A connected client on the port of a bound socket (SO_REUSEPORT): the exact join draws it
    from its own socket; its conntrack entry must not add a second, inferred flow."""
    app, metrics = statsd_fleet()
    app.process(102, "relay")
    app.connect(102, "udp", "10.0.0.1:45000", "10.0.0.2:8125")
    metrics.connect(200, "udp", "10.0.0.2:8125", "10.0.0.1:45000")
    app.conntrack("udp", ("10.0.0.1:45000", "10.0.0.2:8125"), ("10.0.0.2:8125", "10.0.0.1:45000"))
    # (both ends have a bound socket on their port: rule 5 leaves the direction open)
    assert edges(stitch([app.build(), metrics.build()])) == {("app/relay", "metrics/statsd", "udp", 8125, 1, "undirected")}


# ---------------------------------------------------------------- what stayed unresolved, and why


def test_unresolved_connections_are_listed_with_the_reason():
    web, db = web_and_db()
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:6000")  # db is in the group: nothing there
    web.connect(100, "tcp", "127.0.0.1:40001", "127.0.0.1:7000")  # loopback with no peer
    graph = stitch([web.build(), db.build()])
    web_entry = host(graph, "web")
    assert web_entry.unresolved == 2 and graph.unresolved == 2
    examples = [example.to_json() for example in web_entry.unresolved_examples]
    assert examples == [
        {"proto": "tcp", "local": "10.0.0.1", "local_port": 40000, "remote": "10.0.0.2", "remote_port": 6000,
         "pid": 100, "why": "its peer machine is in the group, but has no such socket nor a listener for it"},
        {"proto": "tcp", "local": "127.0.0.1", "local_port": 40001, "remote": "127.0.0.1", "remote_port": 7000,
         "pid": 100, "why": "no socket of its own machine has the reversed address and port"},
    ]
    document = graph.to_json_dict()
    assert [h["unresolved_examples"] for h in document["hosts"] if h["name"] == "web"] == [examples]
    assert all("unresolved_examples" not in h for h in document["hosts"] if h["name"] == "db")


def test_an_ambiguous_peer_is_said_to_be_ambiguous():
    web, db = web_and_db()
    cache = Machine("cache", "10.0.0.3")
    cache.process(300, "redis")
    # two machines own 10.0.0.9 (a moved address, a clone): seen from web, which one is meant?
    db.namespace(4026531840, "10.0.0.9")
    cache.namespace(4026531840, "10.0.0.9")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.9:5432")
    graph = stitch([web.build(), db.build(), cache.build()])
    (example,) = host(graph, "web").unresolved_examples
    assert (example.remote, example.why) == ("10.0.0.9", "several sockets or namespaces could be its peer")


def test_a_forward_of_netvizs_session_attached_to_a_listener_counts_once():
    """bastion's session forwards to db:22, and db was captured without that connection: the
    forward is netviz's own, counted outside on bastion only (db's listener is no connection)."""
    snapshots = fleet_seen_by_netviz(mark_sessions=True)
    by_name = {s.name: s for s in snapshots}
    db = by_name["db"]
    (namespace,) = db.namespaces
    kept = tuple(sock for sock in namespace.sockets if sock.remote_port != 41000)
    by_name["db"] = dataclasses.replace(db, namespaces=(dataclasses.replace(namespace, sockets=kept),))
    by_name["bastion"] = dataclasses.replace(by_name["bastion"], ssh_session_pids=(400,))
    graph = stitch(list(by_name.values()))
    assert (host(graph, "db").outside_inbound, host(graph, "db").outside_outbound) == (0, 0)
    assert host(graph, "bastion").outside_outbound == 1 and graph.unresolved == 0
    assert not any(flow[1] == "db/sshd" for flow in edges(graph))

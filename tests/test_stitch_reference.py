"""The stitch's fast joins against a plain reference, on random groups.

The stitch pairs sockets with a hash join keyed by zone, marks ends as the joins go and
attaches what is left to listeners. The reference below does the same job the obvious way:
nested loops over every pair of sockets, written from the rules in the stitch's docstring and
sharing no code with netviz.stitch. Both must agree on every drawn flow (who, to whom, which
port, directed or not, inferred or not, how many) and on what each machine counts as outside
or unresolved.

The random groups (hypothesis) cover what these joins decide: TCP and UDP, IPv4 and
IPv4-mapped IPv6 spellings of one address, loopback in several namespaces of several machines
(the same 127.0.0.1 tuple everywhere), link-local addresses (one machine's own, or one several
machines hold; between machines, to one outside, from a global source address), an address
owned by two namespaces of one machine,
listeners bound to a wildcard, to loopback or to one address, clients whose peer socket is
missing, peers outside the group, and tuples that several sockets share (ambiguous: never
guessed). Every socket has a holder; NAT, SCTP and shared addresses have their own tests
(tests/test_stitch_rules.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from snapbuilder import HOST_NETNS, Machine

from netviz.stitch import stitch

CONTAINER_NETNS = 4026532100
SERVER_PORTS = (80, 80, 53)  # few, port 80 most: listeners compete for the same clients
CLIENT_PORTS = (40000, 40001, 53)  # few: identical tuples happen; 53: a service talking to a service
OUTSIDE = "203.0.113.7"
LOOPBACKS = ("127.0.0.1", "::1")
OUTSIDE_LINK = "fe80::ff"  # a neighbour on the link outside the group (a switch, a router)


def link_local(address: Optional[str]) -> bool:
    return address is not None and address.startswith("fe80:")


# ---------------------------------------------------------------------------- the reference


def plain(address: str) -> str:
    return address[7:] if address.startswith("::ffff:") and "." in address else address


@dataclass
class Sock:
    """One socket as the reference sees it."""

    host: str
    netns: int
    kind: str  # tcp or udp
    local: str
    local_port: int
    remote: Optional[str]
    remote_port: int
    comm: str
    pid: int
    inode: int


def read_group(snapshots):
    """Connected sockets, listening sockets, and address -> {(host, netns)} owning it."""
    connected, listening, owners = [], [], {}
    for snapshot in snapshots:
        holder = {}
        for process in sorted(snapshot.processes, key=lambda p: p.pid, reverse=True):
            for inode in process.sockets:
                holder[inode] = process  # the lowest pid wins
        for namespace in snapshot.namespaces:
            for address in namespace.addresses:
                owners.setdefault(plain(address.address), set()).add((snapshot.name, namespace.inode))
            for s in namespace.sockets:
                process = holder[s.inode]
                sock = Sock(snapshot.name, namespace.inode, s.proto.rstrip("6"), plain(s.local), s.local_port,
                            None if s.remote is None else plain(s.remote), s.remote_port or 0, process.comm,
                            process.pid, s.inode)
                if s.state == "LISTEN" or sock.remote in (None, "0.0.0.0", "::"):
                    listening.append(sock)
                else:
                    connected.append(sock)
    return connected, listening, owners


def owning_hosts(owners, address: str) -> set[str]:
    return {host for host, _ in owners.get(address, ())}


def may_pair(a: Sock, b: Sock, owners) -> bool:
    """Could b be a's peer: reversed four-tuple, and each address where the other end can use it?"""
    if a is b or a.kind != b.kind:
        return False
    if (b.local, b.local_port, b.remote, b.remote_port) != (a.remote, a.remote_port, a.local, a.local_port):
        return False
    if a.local in LOOPBACKS or a.remote in LOOPBACKS:
        return (a.host, a.netns) == (b.host, b.netns)  # every namespace has its own loopback
    if link_local(a.local) or link_local(a.remote):
        # its machine's own, unless each address has one owner, two machines: machines on one link
        local_owners, remote_owners = owning_hosts(owners, a.local), owning_hosts(owners, a.remote)
        if len(local_owners) == 1 and len(remote_owners) == 1 and local_owners != remote_owners:
            return local_owners == {a.host} and remote_owners == {b.host}
        return a.host == b.host
    return b.host in owning_hosts(owners, a.remote) and a.host in owning_hosts(owners, b.remote)


def accepts(listener: Sock, address: str) -> bool:
    return listener.local == address or listener.local == "::" or (listener.local == "0.0.0.0" and ":" not in address)


def listens(sock: Sock, listening) -> bool:
    """Is the socket's own address and port served by a listener in its namespace?"""
    return any(
        (other.host, other.netns, other.kind, other.local_port) == (sock.host, sock.netns, sock.kind, sock.local_port)
        and accepts(other, sock.local)
        for other in listening
    )


def listener_for(sock: Sock, listening, owners):
    """(listener, ambiguous): the listener that accepts the socket's remote address and port."""
    if sock.remote in LOOPBACKS:
        places = {(sock.host, sock.netns)}
    elif link_local(sock.remote):  # a listener of its own machine only
        places = {(host, netns) for host, netns in owners.get(sock.remote, set()) if host == sock.host}
    else:
        places = owners.get(sock.remote, set())
    serving = [other for other in listening if (other.host, other.netns) in places
               and other.kind == sock.kind and other.local_port == sock.remote_port]
    exact = [other for other in serving if other.local == sock.remote]
    found = exact or [other for other in serving if accepts(other, sock.remote)]
    if not found:
        return None, False
    if len({(other.host, other.netns) for other in found}) > 1:
        return None, True
    return min(found, key=lambda other: (other.pid, other.inode)), False


def reference(snapshots):
    """(flows, counts): flows as a Counter of readable keys, counts per host
    (outside inbound, outside outbound, unresolved)."""
    connected, listening, owners = read_group(snapshots)
    flows: Counter = Counter()
    counts = {snapshot.name: [0, 0, 0] for snapshot in snapshots}
    peers = {id(sock): [other for other in connected if may_pair(sock, other, owners)] for sock in connected}
    for sock in connected:
        candidates = peers[id(sock)]
        if len(candidates) == 1 and [id(sock)] == [id(other) for other in peers[id(candidates[0])]]:
            if id(sock) < id(candidates[0]):  # each pair once
                add_pair(flows, sock, candidates[0], listening)
            continue
        if candidates:  # several sockets could be its peer
            counts[sock.host][2] += 1
            continue
        listener, ambiguous = (None, False) if listens(sock, listening) else listener_for(sock, listening, owners)
        if listener is not None:
            flows[directed(sock, listener, inferred=sock.kind == "tcp")] += 1
        elif ambiguous or sock.remote in LOOPBACKS or sock.remote in owners:
            counts[sock.host][2] += 1  # its peer should be in the group (a link-local one unowned: outside)
        else:
            counts[sock.host][0 if listens(sock, listening) else 1] += 1
    return flows, {host: tuple(values) for host, values in counts.items()}


def add_pair(flows: Counter, a: Sock, b: Sock, listening) -> None:
    a_listens, b_listens = listens(a, listening), listens(b, listening)
    if b_listens and not a_listens:
        flows[directed(a, b, inferred=False)] += 1
    elif a_listens and not b_listens:
        flows[directed(b, a, inferred=False)] += 1
    else:
        flows[("undirected", frozenset({(a.host, a.comm), (b.host, b.comm)}), a.kind)] += 1


def directed(client: Sock, server: Sock, inferred: bool) -> tuple:
    return ("directed", (client.host, client.comm), (server.host, server.comm), server.kind, server.local_port,
            inferred)


def observed(graph):
    """The stitch's graph in the reference's terms."""
    nodes = graph.nodes_by_id()
    flows: Counter = Counter()
    for flow in graph.flows:
        client, server = nodes[flow.client], nodes[flow.server]
        if flow.directed:
            key = ("directed", (client.host, client.comm), (server.host, server.comm), flow.proto, flow.server_port,
                   flow.inferred)
        else:
            assert not flow.inferred
            key = ("undirected", frozenset({(client.host, client.comm), (server.host, server.comm)}), flow.proto)
        flows[key] += flow.count
    counts = {entry.name: (entry.outside_inbound, entry.outside_outbound, entry.unresolved) for entry in graph.hosts}
    return flows, counts


# ---------------------------------------------------------------------------- random groups


@dataclass
class Place:
    """A namespace of a machine under construction: its addresses and its processes."""

    machine: Machine
    netns: int
    addresses: tuple[str, ...]
    pids: tuple[int, ...]


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def spelled(proto: str, address: str, mapped: bool) -> tuple[str, str]:
    """The socket's table and address: a dual-stack socket shows an IPv4 peer as ::ffff:a.b.c.d."""
    if ":" in address:
        return proto + "6", address
    return (proto + "6", "::ffff:" + address) if mapped else (proto, address)


SIDES = st.sampled_from(["both", "client", "server"])


@st.composite
def groups(draw, sides=SIDES, shared_containers: bool = False):
    """Up to three machines, some with a container, with listeners and connections at random.

    `sides`: which sockets of a connection inside the group are captured; `shared_containers`:
    every machine has a container that owns the host's address too (listeners in two namespaces).
    """
    machines, places = [], []
    for number in range(1, draw(st.integers(1, 3)) + 1):
        own = f"10.0.0.{number}"
        # its link-local address: its own, or one that another machine holds too (the same fe80::1
        # on gateways of several links)
        link = draw(st.sampled_from([f"fe80::{number}", "fe80::1"]))
        machine = Machine(f"m{number}", own, link)
        layout = [(HOST_NETNS, (own, link))]
        if shared_containers or draw(st.booleans()):
            # a container: its own address, or (a misconfiguration) the host's too
            container = draw(st.sampled_from([(own,), (f"10.0.1.{number}", own)] if shared_containers else
                                             [(f"10.0.1.{number}",), (f"10.0.1.{number}", own), (own,)]))
            machine.namespace(CONTAINER_NETNS, "127.0.0.1", "::1", *container)
            layout.append((CONTAINER_NETNS, container))
        pid = 100
        for netns, addresses in layout:
            pids = []
            for _ in range(draw(st.integers(1, 2))):
                machine.process(pid, f"p{pid}", netns=netns)
                pids.append(pid)
                pid += 1
            places.append(Place(machine, netns, addresses, tuple(pids)))
        machines.append(machine)
    for _ in range(draw(st.integers(0, 6))):
        place = draw(st.sampled_from(places))
        proto, port = draw(st.sampled_from(["tcp", "udp"])), draw(st.sampled_from(SERVER_PORTS))
        add_listener(draw, place, proto, port)
        if draw(st.booleans()):  # the same service in another namespace of the machine, or twice in one
            add_listener(draw, draw(st.sampled_from([other for other in places if other.machine is place.machine])),
                         proto, port)
    for _ in range(draw(st.integers(0, 14))):
        add_connection(draw, places, sides)
    for _ in range(draw(st.integers(0, 2))):
        # one loopback tuple in two namespaces (or twice in one): each namespace has its own 127.0.0.1
        proto, address, ports = draw(st.sampled_from(["tcp", "udp"])), draw(st.sampled_from(LOOPBACKS)), draw(PORTS)
        for place in (draw(st.sampled_from(places)), draw(st.sampled_from(places))):
            add_sides(draw, sides, proto, place, place, (address, ports[0]), (address, ports[1]))
    return [machine.build() for machine in machines]


def add_listener(draw, place: Place, proto: str, port: int) -> None:
    address = draw(st.sampled_from(["0.0.0.0", "::", "127.0.0.1", "::1", *place.addresses]))
    table, address = spelled(proto, address, draw(st.booleans()))
    if address == "0.0.0.0" and table.endswith("6"):
        address = "::"
    place.machine.listen(draw(st.sampled_from(place.pids)), table, endpoint(address, port), netns=place.netns)


PORTS = st.tuples(st.sampled_from(CLIENT_PORTS), st.sampled_from(SERVER_PORTS))


def add_connection(draw, places: list[Place], sides) -> None:
    """A connection seen from both ends, from one end only, or with a peer outside the group."""
    proto = draw(st.sampled_from(["tcp", "udp"]))
    client = draw(st.sampled_from(places))
    target = draw(st.sampled_from(["loopback", "group", "outside", "link", "link outside"]))
    client_port, server_port = draw(PORTS)
    if target == "link":  # to a link-local address, from the client's link-local or global one
        server = draw(st.sampled_from(places))
        server_links = [address for address in server.addresses if link_local(address)]
        if server_links:
            add_sides(draw, sides, proto, client, server, (draw(st.sampled_from(client.addresses)), client_port),
                      (draw(st.sampled_from(server_links)), server_port))
    elif target == "link outside":
        links = [address for address in client.addresses if link_local(address)]
        if links:
            add_socket(draw, client, proto, (draw(st.sampled_from(links)), client_port), (OUTSIDE_LINK, server_port))
    elif target == "loopback":
        address = draw(st.sampled_from(LOOPBACKS))
        add_sides(draw, sides, proto, client, client, (address, client_port), (address, server_port))
    elif target == "group":
        server = draw(st.sampled_from(places))
        add_sides(draw, sides, proto, client, server, (draw(st.sampled_from(client.addresses)), client_port),
                  (draw(st.sampled_from(server.addresses)), server_port))
    else:  # one socket here: a call out, or a call in from outside
        here = draw(st.sampled_from(client.addresses))
        if draw(st.booleans()):
            add_socket(draw, client, proto, (here, client_port), (OUTSIDE, server_port))
        else:
            add_socket(draw, client, proto, (here, server_port), (OUTSIDE, client_port))


def add_sides(draw, sides, proto: str, client: Place, server: Place, client_end: tuple[str, int],
              server_end: tuple[str, int]) -> None:
    """Both sockets of a connection, or only the client's, or only the server's."""
    captured = draw(sides)
    if captured in ("both", "client"):
        add_socket(draw, client, proto, client_end, server_end)
    if captured in ("both", "server"):
        add_socket(draw, server, proto, server_end, client_end)


def add_socket(draw, place: Place, proto: str, local: tuple[str, int], remote: tuple[str, int]) -> None:
    mapped = draw(st.booleans())
    table, local_address = spelled(proto, local[0], mapped)
    remote_address = spelled(proto, remote[0], mapped)[1] if table.endswith("6") else remote[0]
    place.machine.connect(draw(st.sampled_from(place.pids)), table, endpoint(local_address, local[1]),
                          endpoint(remote_address, remote[1]), netns=place.netns)


# ---------------------------------------------------------------------------- the test


@settings(max_examples=300, deadline=None)
@given(groups())
def test_the_joins_agree_with_nested_loops_over_every_pair_of_sockets(snapshots):
    assert observed(stitch(snapshots)) == reference(snapshots)


@settings(max_examples=200, deadline=None)
@given(groups(sides=st.just("client"), shared_containers=True))
def test_clients_without_a_peer_socket_reach_the_same_listener_as_in_the_reference(snapshots):
    """Listener attribution, where it is hardest: one address in two namespaces of a machine,
    services in both or one, bound to the address, to a wildcard or to loopback."""
    assert observed(stitch(snapshots)) == reference(snapshots)


def test_the_reference_sees_what_the_rules_say():
    """The reference itself, on a group written by hand: one pair, one client attached to a
    listener, one ambiguous tuple, one call out, one loopback pair per machine."""
    web, db = Machine("web", "10.0.0.1"), Machine("db", "10.0.0.2")
    web.process(100, "app")
    db.process(200, "postgres")
    db.listen(200, "tcp", "0.0.0.0:5432")
    web.connect(100, "tcp", "10.0.0.1:40000", "10.0.0.2:5432")
    db.connect(200, "tcp6", "[::ffff:10.0.0.2]:5432", "[::ffff:10.0.0.1]:40000")
    web.connect(100, "tcp", "10.0.0.1:40001", "10.0.0.2:5432")  # its peer socket was not captured
    web.connect(100, "tcp", "10.0.0.1:40002", "10.0.0.2:22")  # neither a peer nor a listener
    web.connect(100, "tcp", "10.0.0.1:40003", "198.51.100.1:443")
    for machine, pid in ((web, 100), (db, 200)):
        machine.connect(pid, "udp", "127.0.0.1:40000", "127.0.0.1:53")
        machine.connect(pid, "udp", "127.0.0.1:53", "127.0.0.1:40000")
    snapshots = [web.build(), db.build()]
    flows, counts = reference(snapshots)
    assert flows == Counter({
        ("directed", ("web", "app"), ("db", "postgres"), "tcp", 5432, False): 1,
        ("directed", ("web", "app"), ("db", "postgres"), "tcp", 5432, True): 1,
        ("undirected", frozenset({("web", "app")}), "udp"): 1,
        ("undirected", frozenset({("db", "postgres")}), "udp"): 1,
    })
    assert counts == {"web": (0, 1, 1), "db": (0, 0, 0)}
    assert observed(stitch(snapshots)) == (flows, counts)

"""Links: the pairs the joins found, and the leftovers, folded into flows and per-machine counts.

A link is keyed by (client node, server node, kind, server port, directed, inferred, via) and
counts the connections it stands for. Direction comes only from listening sockets (see
`add_pair`); a socket nobody visibly holds is drawn from its listener's holder when it can be.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from netviz.graph import NodeKey, UnresolvedConnection, outside_key
from netviz.stitch.addresses import address_sort_key
from netviz.stitch.index import End, SocketIndex
from netviz.stitch.joins import Evidence
from netviz.stitch.machines import Machine
from netviz.stitch.traffic import LinkTraffic


@dataclass
class Tally:
    """What one machine's connections that are not drawn add up to."""

    outside_inbound: int = 0
    outside_outbound: int = 0
    unresolved: int = 0
    unresolved_examples: list[UnresolvedConnection] = field(default_factory=list)


# link key -> [count, server address, client pids, server pids, fronts dialled through NAT]
LinkKey = tuple

# outside peers drawn by address per machine (--show-external); the rest share one node
MAX_OUTSIDE_PEERS = 16


class Links:
    """The flows being drawn and the connections being counted, as the joins report them."""

    def __init__(self, machines: Sequence[Machine], index: SocketIndex, group_by: str, show_external: bool) -> None:
        self.machines = machines
        self.index = index
        self.group_by = group_by
        self.show_external = show_external
        self.links: dict[LinkKey, list] = {}
        self.tallies = [Tally() for _ in machines]
        self.traffic = LinkTraffic(machines)  # the connections' TCP counters, per link
        # outside connections to draw (--show-external): (end, inbound, inside node, pids)
        self._outside: list[tuple[End, bool, NodeKey, tuple[int, ...]]] = []

    def add_pair(self, end: End, other: End, server_address: Optional[str], evidence: Evidence) -> None:
        """Record the connection between `end` and `other` (a peer socket or a listener) that the
        client reached at `server_address` (None: the server socket's own address).

        Direction comes from the listeners in each end's namespace; when neither or both listen,
        from `evidence.initiator` (NAT, a socket attached to a listener), else it is undirected.
        """
        if end.collector or other.collector:
            self._count_collector_session(end, other)
            return
        listens = self.index.listens
        end_listens = listens(end)
        other_listens = listens(other)
        if other_listens and not end_listens:
            client, server, directed = end, other, True
        elif end_listens and not other_listens:
            client, server, directed = other, end, True
        else:
            client, server, directed = end, other, evidence.initiator
        # a translated connection keeps the front its client dialled (the NAT machine's address and
        # port), which neither end's socket on the server side shows
        dialled = (end.remotes[0], end.remote_port) if evidence.via and client is end else None
        self._add_link(client, server, server_address, directed, evidence.inferred, evidence.via, dialled,
                       evidence.track)

    def add_unresolved(self, end: End, why: str) -> None:
        """A connection whose peer should be in the group but could not be told apart."""
        tally = self.tallies[end.machine]
        tally.unresolved += 1
        tally.unresolved_examples.append(UnresolvedConnection(
            end.kind, end.locals_[0], end.local_port, end.remotes[0], end.remote_port, end.owner, why))

    def add_outside(self, end: End) -> None:
        """A connection whose far side is not drawn: inbound when the end's port listens."""
        machine = self.machines[end.machine]
        tally = self.tallies[end.machine]
        inbound = self.index.listens(end)
        if inbound:
            tally.outside_inbound += 1
        else:
            tally.outside_outbound += 1
        if not self.show_external:
            return
        self._outside.append((end, inbound, machine.key(end.owner), tuple(machine.holders(end.inode, end.owner))))

    def draw_outside(self) -> None:
        """Draw the outside connections kept by add_outside (with --show-external): one node per
        peer address, the MAX_OUTSIDE_PEERS busiest of each machine, the others on one node.

        An inbound connection goes from the peer to the listening process. An outbound one goes
        from the process to the peer's port, directed: its local port has no listener, so its
        socket was made by connect(), not accepted (a listener closed since is the exception)."""
        busiest: dict[tuple[int, str], int] = {}
        for end, _, _, _ in self._outside:
            busiest[(end.machine, end.remotes[0])] = busiest.get((end.machine, end.remotes[0]), 0) + 1
        ranked: dict[int, list[tuple[int, str]]] = {}
        for (machine, address), count in busiest.items():
            ranked.setdefault(machine, []).append((-count, address))
        named = {(machine, address) for machine, peers in ranked.items()
                 for _, address in sorted(peers, key=lambda peer: (peer[0], address_sort_key(peer[1])))[:MAX_OUTSIDE_PEERS]}
        for end, inbound, inside, pids in self._outside:
            peer = end.remotes[0] if (end.machine, end.remotes[0]) in named else ""
            outside = outside_key(self.group_by, end.machine, peer)
            if inbound:
                key = (outside, inside, end.kind, end.local_port, True, False, None)
                self._accumulate(key, end.locals_[0], (), pids)
            else:
                key = (inside, outside, end.kind, end.remote_port, True, False, None)
                self._accumulate(key, end.remotes[0], pids, ())
            if self.traffic.any:
                self.traffic.add_end(key, end, is_client=not inbound)
        self._outside.clear()

    def settle_link_local(self, key: tuple, server_address: str, client_pids: set[int], inferred: bool) -> int:
        """Draw the live connections of a link-local flow the window joined between two machines.

        The instant joins keep a link-local address to its own machine, so each live socket of
        such a connection was counted unresolved at both ends. `key` is the window link's
        (client node, server node, proto, port, via); a client end is settled only with the one
        server end holding its reversed tuple. Returns how many connections were settled."""
        client_key, server_key, proto, port, via = key
        client_tally, server_tally = self.tallies[client_key[0]], self.tallies[server_key[0]]
        clients = [u for u in client_tally.unresolved_examples
                   if (u.proto, u.remote, u.remote_port) == (proto, server_address, port)
                   and (u.pid in client_pids if client_pids else u.pid is None)]
        # the server's ends by the client end they face (in one pass: a machine may count
        # thousands of unresolved connections)
        servers: dict[tuple, list[UnresolvedConnection]] = {}
        for u in server_tally.unresolved_examples:
            if (u.proto, u.local, u.local_port) == (proto, server_address, port):
                servers.setdefault((u.remote, u.remote_port), []).append(u)
        facing: dict[tuple, int] = {}
        for client in clients:
            facing[(client.local, client.local_port)] = facing.get((client.local, client.local_port), 0) + 1
        # one client end and one server end for the tuple: anything else is never guessed
        settled = [(client, servers[(client.local, client.local_port)][0]) for client in clients
                   if len(servers.get((client.local, client.local_port), ())) == 1
                   and facing[(client.local, client.local_port)] == 1]
        if settled:
            gone = {id(end) for pair in settled for end in pair}
            for tally in (client_tally, server_tally):
                tally.unresolved_examples[:] = [u for u in tally.unresolved_examples if id(u) not in gone]
            client_tally.unresolved -= len(settled)
            server_tally.unresolved -= len(settled)
        for client, server in settled:
            pids = () if client.pid is None else (client.pid,)
            server_pids = () if server.pid is None else (server.pid,)
            self._accumulate((client_key, server_key, proto, port, True, inferred, via), server_address, pids,
                             server_pids)
        return len(settled)

    def _count_collector_session(self, *ends: End) -> None:
        """netviz's own SSH session to a machine, seen from both ends (netviz ran on a machine of
        the group, or reached it through a jump host of the group): the connection exists only
        because the map is being made, so it is counted as outside at each end, never drawn (a
        listener it was attached to is no connection: nothing to count there)."""
        for end in ends:
            if not end.listener:
                self.add_outside(end)

    def _server_owner(self, server: End) -> tuple[Optional[int], bool]:
        """The owner of a server-side socket; an accepted socket nobody visibly holds falls back to the
        holder of the listener that accepted it (inferred)."""
        if server.owner is not None or server.listener:
            return server.owner, False
        for local in server.locals_:
            listeners = self.index.listeners_for(server.machine, server.netns, local, server.local_port, server.kind)
            if listeners and listeners[0].owner is not None:
                return listeners[0].owner, True
        return None, False

    def _add_link(
        self, client: End, server: End, server_address: Optional[str], directed: bool, inferred: bool, via: Optional[str],
        dialled: Optional[tuple[str, int]] = None, track: Optional[tuple] = None,
    ) -> None:
        client_machine = self.machines[client.machine]
        server_machine = self.machines[server.machine]
        server_owner = server.owner
        fallback = False
        if directed and server_owner is None:
            server_owner, fallback = self._server_owner(server)
            inferred = inferred or fallback
        client_key = client_machine.keys.get(client.owner) or client_machine.key(client.owner)
        server_key = server_machine.keys.get(server_owner) or server_machine.key(server_owner)
        if client_machine.shared:
            client_pids = client_machine.holders(client.inode, client.owner)
        else:
            client_pids = () if client.owner is None else (client.owner,)
        if fallback:
            server_pids: Iterable[int] = (server_owner,)
        elif server_machine.shared:
            server_pids = server_machine.holders(server.inode, server_owner)
        else:
            server_pids = () if server_owner is None else (server_owner,)
        server_port = server.local_port
        if server_address is None:
            server_address = server.locals_[0]
        if not directed and (client_key, client.local_port) > (server_key, server_port):
            # an undirected edge: put its two ends in a stable order
            client_key, server_key = server_key, client_key
            client_pids, server_pids = server_pids, client_pids
            server_port, server_address = client.local_port, client.locals_[0]
            client, server = server, client
        key = (client_key, server_key, server.kind, server_port, directed, inferred, via)
        self._accumulate(key, server_address, client_pids, server_pids, dialled)
        if self.traffic.any:
            self.traffic.add_pair(key, client, server, track)

    def _accumulate(self, key: LinkKey, server_address: str, client_pids: Iterable[int], server_pids: Iterable[int],
                    dialled: Optional[tuple[str, int]] = None) -> None:
        """One more connection on the link: [count, lowest server address, client pids, server pids,
        the fronts dialled through NAT].

        Most links see the same holders on every connection and no NAT front: the pids stay the
        sequence first given (never changed here: it may be a Machine's own list) until another
        one comes (see _merged); the fronts stay an empty tuple until one comes. A link costs a
        few hundred bytes less (730,000 links for 10,000 synthetic machines)."""
        link = self.links.get(key)
        if link is None:
            self.links[key] = [1, server_address, client_pids, server_pids, {dialled} if dialled else ()]
            return
        link[0] += 1
        if server_address < link[1]:
            link[1] = server_address
        pids = link[2]
        if pids.__class__ is set:
            pids.update(client_pids)
        elif pids != client_pids:
            link[2] = _merged(pids, client_pids)
        pids = link[3]
        if pids.__class__ is set:
            pids.update(server_pids)
        elif pids != server_pids:
            link[3] = _merged(pids, server_pids)
        if dialled:
            if link[4]:
                link[4].add(dialled)
            else:
                link[4] = {dialled}


# Holders of one link kept as a tuple up to this many: a pre-fork server's workers
MAX_TUPLE_PIDS = 16


def _merged(pids: Iterable[int], more: Iterable[int]) -> Iterable[int]:
    """The holders `pids` of a link with `more` added: a new tuple while there are few (40 + 8n
    bytes, where a set takes 216 bytes up to 4 and 728 up to 18), a set past MAX_TUPLE_PIDS.
    `pids` itself is never changed (it may be a Machine's own list)."""
    new = [pid for pid in more if pid not in pids]
    if not new:
        return pids
    if len(pids) + len(new) > MAX_TUPLE_PIDS:
        return {*pids, *new}
    return (*pids, *new)

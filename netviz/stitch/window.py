"""The window phase: the group's window observations (docs/snapshot.md, "window") joined into flows.

A machine observed over a window reports flow keys: connections of one namespace grouped by
(proto, role, local, local port, remote, remote port), the ephemeral port left out. A client key
(local L, remote R:P) on one machine is the other end of a server key (local R:P, remote L) on the
machine that owns R, where R:P listens, exactly as the instant exact join pairs sockets: loopback
only inside one namespace of one machine, link-local inside one machine (AddressBook.locations).
When the server's machine has no such key (no window, or no evidence reached it), the client key
is attached to the listener that accepts R:P in the instant snapshot, marked inferred. A key whose
tuple a closing capture's conntrack shows translated (its entry outlives a short connection) is
followed through that one translation to the real server (`via` the translating machine); two
different translations draw nothing. A link-local R with no key on the client's machine joins
the one server key of the group that holds the reversed tuple (machines on one link).

Each end is attributed to a process only from evidence: a holder the payload saw for that key (its
socket among the process's fds at a sample, or, on the server side, the listener of the port). A
key seen only by events (a connection that lived between two samples) goes to a "(short-lived)"
node of its machine, keyed by the socket owner's uid; when exactly one group of exec events of
that uid and namespace is known, its command is named on the node, marked inferred. A wrong
process is never named: a key whose holders are several nodes, or a pid that now runs another
command, goes to the short-lived node too.

What this phase produces, `WindowLinks`, the build phase turns into flow fields (first_seen,
last_seen, connections, persistent, per_minute) on the flows the instant joins drew, or into
flows of their own with `count` 0 (nothing of them was alive at the closing capture).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

from netviz.graph import RANK_SHORT_LIVED, NodeKey, node_key
from netviz.snapshot.window import Window, WindowBytes, WindowFlow, WindowHolder
from netviz.stitch.addresses import AddressBook, Scope, normalize_address, scope
from netviz.stitch.index import SocketIndex
from netviz.stitch.links import Links
from netviz.stitch.machines import Machine


@dataclass
class Seen:
    """What a window says about the connections of one link."""

    first_seen: float
    last_seen: float
    connections: int
    persistent: bool
    seconds: float  # the length of the window that saw them (the longest, when several did)
    moved: Optional[WindowBytes] = None  # bytes from the client's view, when a machine counted them

    def merge(self, other: "Seen") -> None:
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.connections += other.connections
        self.persistent = self.persistent or other.persistent
        self.seconds = max(self.seconds, other.seconds)
        if other.moved is not None:
            self.moved = other.moved.merged(self.moved)


@dataclass
class WindowLink:
    """A link the window saw: its facts, the address reached, the pids known at each end."""

    seen: Seen
    server_address: str
    inferred: bool
    client_pids: set[int] = field(default_factory=set)
    server_pids: set[int] = field(default_factory=set)


@dataclass
class ShortLived:
    """The machine-level end of connections no process was seen holding."""

    uids: set[int] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)  # inferred from exec events, when unambiguous
    unknown_command: bool = False  # some connection of it has no command to name


@dataclass
class Holder:
    """A process seen holding a key's socket that is gone from the closing capture."""

    comm: str
    pids: set[int] = field(default_factory=set)


# (client node, server node, proto, server port, via: the translating machine or None)
WindowKey = tuple[NodeKey, NodeKey, str, int, Optional[str]]


@dataclass
class WindowLinks:
    """Everything the window phase learned, for build_graph."""

    links: dict[WindowKey, WindowLink] = field(default_factory=dict)
    short_lived: dict[NodeKey, ShortLived] = field(default_factory=dict)
    holders: dict[NodeKey, Holder] = field(default_factory=dict)


def _seen(flow: WindowFlow, window: Window) -> Seen:
    return Seen(flow.first_seen, flow.last_seen, flow.connections, flow.persistent,
                window.ended_at - window.started_at)


class _Ends:
    """Turns a key's evidence into the node of one end (process, or the machine's short-lived node)."""

    def __init__(self, machines: Sequence[Machine], group_by: str, result: WindowLinks) -> None:
        self.machines = machines
        self.group_by = group_by
        self.result = result
        # (machine, namespace, uid) -> its one exec group's command (a window has thousands of
        # keys and of exec groups: each looked through once)
        self.commands: dict[tuple[int, Optional[int], Optional[int]], Optional[str]] = {}

    def holder_node(self, machine: Machine, holders: Sequence[WindowHolder],
                    netns: Optional[int]) -> tuple[Optional[NodeKey], set[int]]:
        """The one node of the holders of a key of namespace `netns`, and their pids; (None, ())
        when there is no single one."""
        keys: set[NodeKey] = set()
        pids: set[int] = set()
        for holder in holders:
            alive = machine.process.get(holder.pid)
            if alive is not None and alive.comm != holder.comm:
                return None, set()  # the pid now runs another command: never name the wrong one
            key = (machine.key(holder.pid) if alive is not None
                   else node_key(self.group_by, machine.index, holder.pid, holder.comm, machine.netns_tag(netns)))
            keys.add(key)
            pids.add(holder.pid)
            if alive is None or not alive.sockets:
                self.result.holders.setdefault(key, Holder(holder.comm)).pids.add(holder.pid)
        if len(keys) != 1:
            return None, set()
        return keys.pop(), pids

    def short_lived(self, machine: Machine, flow: WindowFlow, window: Window) -> NodeKey:
        """The machine-level node of a key with no holder: one per uid when the uid is known."""
        uid = flow.uids[0] if len(flow.uids) == 1 else None
        if self.group_by == "host":
            return node_key("host", machine.index, None, "")
        identity: object = (-1 if uid is None else uid) if self.group_by == "pid" else ("" if uid is None else str(uid))
        key: NodeKey = (machine.index, RANK_SHORT_LIVED, identity)  # type: ignore[assignment]
        entry = self.result.short_lived.setdefault(key, ShortLived())
        entry.uids.update(flow.uids)
        asked = (machine.index, flow.netns, uid)
        if asked not in self.commands:
            self.commands[asked] = _exec_command(window, flow.netns, uid)
        command = self.commands[asked]
        if command is None:
            entry.unknown_command = True
        else:
            entry.commands.add(command)
        return key


def _exec_command(window: Window, netns: Optional[int], uid: Optional[int]) -> Optional[str]:
    """The command of the one exec group of that uid and namespace, when exactly one matches."""
    if uid is None:
        return None
    matches = [p for p in window.processes if p.uid == uid and (p.netns is None or p.netns == netns)]
    if len(matches) != 1:
        return None
    found = matches[0]
    return " ".join(found.cmdline) if found.cmdline else found.comm


def _client_parts(flow: WindowFlow) -> list[tuple[tuple[WindowHolder, ...], int, bool]]:
    """A client key's connections split by what names them: (holders, connections, persistent).

    A key is a class of connections (every process of the machine dialling one service from one
    address shares it), and a holder was seen only for the sockets a sample caught (`evidence`
    kind `sample`). So the sampled connections go to the holders, and the rest (seen by
    TIME_WAIT rows and events only) to no process: a long-lived client and a one-shot one of
    another command sharing the key are never both given to the first.
    """
    holders = tuple(holder for holder in flow.holders if holder.via == "socket")
    if not holders:
        return [((), flow.connections, flow.persistent)]
    # a holder seen is at least one connection of the key, even one the payload counted under
    # another kind (a tuple seen again after it closed)
    sampled = min(max(flow.evidence.get("sample", 0), 1), flow.connections)
    rest = flow.connections - sampled
    if rest <= 0:
        return [(holders, flow.connections, flow.persistent)]
    return [(holders, sampled, flow.persistent), ((), rest, False)]


@dataclass(frozen=True)
class _Target:
    """Where a client key's connections arrive, seen from (machine, netns): the client's own
    namespace, or the one whose conntrack translated them (`via`, its machine's name)."""

    machine: int
    netns: int
    client: str  # the client's address as the server sees it (after SNAT)
    address: str
    port: int
    via: Optional[str]


# (proto, client address, dialled address, dialled port) -> (zone, machine, netns, reply tuple)
Translated = dict[tuple[str, str, str, int], list[tuple[object, int, int, tuple[str, int, str, int]]]]


def _translated(index: SocketIndex) -> Translated:
    """The closing captures' conntrack translations by tuple without the client's port: a
    short-lived connection's entry outlives it (conntrack keeps it in TIME_WAIT)."""
    found: Translated = {}
    for (kind, src, _sport, dst, dport, zone), entries in index.translations.items():
        for machine, netns, *reply in entries:
            found.setdefault((kind, src, dst, dport), []).append((zone, machine, netns, tuple(reply)))
    return found


def join_windows(machines: Sequence[Machine], book: AddressBook, index: SocketIndex, group_by: str) -> WindowLinks:
    """Join every client key of the group to its server key (or listener); see the module docstring."""
    result = WindowLinks()
    ends = _Ends(machines, group_by, result)
    # server keys by where they are and the client address they face (looked up, never scanned:
    # a machine may report thousands of keys of one service)
    servers: dict[tuple, list[tuple[Machine, WindowFlow]]] = {}
    by_tuple: dict[tuple, list[tuple[Machine, WindowFlow]]] = {}  # (proto, local, port, remote): link-local joins
    for machine in machines:
        window = machine.snapshot.window
        if window is None:
            continue
        for flow in window.flows:
            if flow.role == "server":
                local, remote = normalize_address(flow.local), normalize_address(flow.remote)
                servers.setdefault((machine.index, flow.netns, flow.proto, local, flow.local_port, remote), []).append(
                    (machine, flow))
                by_tuple.setdefault((flow.proto, local, flow.local_port, remote), []).append((machine, flow))
    translated = _translated(index) if index.translations else {}
    found: list[tuple[Machine, Window, WindowFlow, _Target, Optional[tuple[Machine, WindowFlow]]]] = []
    uses: dict[int, int] = {}  # id of a server key -> client keys that reached it
    through: dict[tuple, object] = {}  # see _target
    for machine in machines:
        window = machine.snapshot.window
        if window is None:
            continue
        for flow in window.flows:
            if flow.role != "client":
                continue
            target = _target(machines, translated, machine, flow, through)
            if target is None:
                continue  # translated to several places: never guessed
            server = _server_key(book, servers, by_tuple, target, flow.proto)
            if server is False:
                continue  # several namespaces hold the tuple, or the address is outside the group
            found.append((machine, window, flow, target, server or None))
            if server:
                uses[id(server[1])] = uses.get(id(server[1]), 0) + 1
    for machine, window, flow, target, server in found:
        # the server key's facts are the client's own only when no other client key shares it
        alone = server is not None and uses[id(server[1])] == 1
        _link_client(machines, index, ends, machine, window, flow, target, server, alone)
    return result


def _target(machines: Sequence[Machine], translated: Translated, machine: Machine, flow: WindowFlow,
            through: dict) -> Optional[_Target]:
    """Where the key's connections arrive: through the one translation conntrack shows for its
    tuple (DNAT, SNAT), else at the address dialled. None: translated to several places.
    `through` keeps what the translations of a tuple say, per machine: the keys of one service
    in many namespaces share them (and a gateway may list thousands)."""
    local, remote, port = normalize_address(flow.local), normalize_address(flow.remote), flow.remote_port
    assert port is not None
    netns = flow.netns if flow.netns is not None else 0
    asked = (machine.index, flow.proto, local, remote, port)
    found = through.get(asked, through)  # (through: not asked yet)
    if found is through:
        found = through[asked] = _translation_target(machines, translated, machine, flow.proto, local, remote, port)
    if found is False:
        return _Target(machine.index, netns, local, remote, port, None)
    return found


def _translation_target(machines: Sequence[Machine], translated: Translated, machine: Machine, proto: str,
                        local: str, remote: str, port: int):
    """The _Target of the one translation of a tuple, None for several, False for none."""
    entries = [entry for entry in translated.get((proto, local, remote, port), ())
               if entry[0] is None or entry[0] == machine.index]
    if not entries:
        return False
    replies = {(reply[0], reply[1], reply[2]) for _, _, _, reply in entries}
    if len(replies) != 1:
        return None
    (server_address, server_port, client_address), = replies
    _, via_machine, via_netns, _ = min(entries, key=lambda entry: machines[entry[1]].snapshot.name)
    return _Target(via_machine, via_netns, client_address, server_address, server_port,
                   machines[via_machine].snapshot.name)


def _server_key(book: AddressBook, servers: dict, by_tuple: dict, target: _Target, proto: str):
    """The server key at the target: (machine, key), None when no machine of the group has one
    (a listener may still accept it), False when it cannot be told.

    A link-local address is each machine's own, but on one link, between machines of the group,
    it is ordinary traffic: with no key on the client's machine, exactly one server key of the
    group holding the reversed tuple joins it."""
    locations = book.locations(target.machine, target.netns, target.address)
    matches = [
        match
        for server_machine, server_netns in locations or ()
        for match in servers.get((server_machine, server_netns, proto, target.address, target.port, target.client), ())
    ]
    if not matches and scope(target.address) is Scope.LINK:
        matches = by_tuple.get((proto, target.address, target.port, target.client), [])
        return matches[0] if len(matches) == 1 else False
    if len(matches) > 1 or (not matches and not locations):
        return False  # two namespaces claim the tuple; outside the group; claimed by several others
    return matches[0] if matches else None


def _link_client(machines: Sequence[Machine], index: SocketIndex, ends: _Ends, machine: Machine, window: Window,
                 flow: WindowFlow, target: _Target, server: Optional[tuple[Machine, WindowFlow]], alone: bool) -> None:
    """Record the links of one client key: its server end, then one link per part (_client_parts)."""
    inferred = False
    server_pids: set[int] = set()
    server_key: Optional[NodeKey] = None
    if server is not None:
        server_machine, server_flow = server
        server_key, server_pids = ends.holder_node(
            server_machine, [h for h in server_flow.holders if h.via == "socket"], server_flow.netns)
        if server_key is None:  # the process that accepts is the server of every connection
            server_key, server_pids = ends.holder_node(
                server_machine, [h for h in server_flow.holders if h.via == "listener"], server_flow.netns)
    if server_key is None:
        listeners = index.listeners_for(target.machine, target.netns, target.address, target.port, flow.proto)
        if listeners:
            listener = listeners[0]
            server_key = machines[listener.machine].key(listener.owner)
            server_pids = set() if listener.owner is None else {listener.owner}
            inferred = server is None  # only the client's side says the connection reached it
        elif server is not None:
            server_machine, server_flow = server
            server_window = server_machine.snapshot.window
            assert server_window is not None
            server_key = ends.short_lived(server_machine, server_flow, server_window)
        else:
            return  # nothing in the group accepts it: outside, or unresolved
    parts = _client_parts(flow)
    for holders, connections, persistent in parts:
        seen = Seen(flow.first_seen, flow.last_seen, connections, persistent, window.ended_at - window.started_at,
                    _client_bytes(flow, server if alone else None) if len(parts) == 1 else None)
        if server is not None and alone and len(parts) == 1:
            other = _seen(server[1], window)
            seen.first_seen = min(seen.first_seen, other.first_seen)
            seen.last_seen = max(seen.last_seen, other.last_seen)
            seen.connections = max(seen.connections, other.connections)
            seen.persistent = seen.persistent or other.persistent
        client_key, client_pids = ends.holder_node(machine, holders, flow.netns) if holders else (None, set())
        if client_key is None:
            client_key = ends.short_lived(machine, flow, window)
        _add(ends.result, (client_key, server_key, flow.proto, target.port, target.via), seen, target.address,
             inferred, client_pids, server_pids)


def _client_bytes(flow: WindowFlow, server: Optional[tuple[Machine, WindowFlow]]) -> Optional[WindowBytes]:
    """The bytes of a client key's connections from the client's view: its own counts, else its
    server key's with the directions swapped (`server` only when that key holds no other client's
    connections). Only for a key whose connections go to one part:
    bytes are counted per key, and splitting them among holders would be a guess."""
    if flow.moved is not None:
        return flow.moved
    if server is not None and server[1].moved is not None:
        moved = server[1].moved
        return WindowBytes(moved.received, moved.sent, moved.since, moved.until)
    return None


def _add(result: WindowLinks, key: WindowKey, seen: Seen, address: str, inferred: bool,
         client_pids: set[int], server_pids: set[int]) -> None:
    link = result.links.get(key)
    if link is None:
        result.links[key] = WindowLink(seen, address, inferred, set(client_pids), set(server_pids))
        return
    link.seen.merge(seen)
    link.server_address = min(link.server_address, address)
    link.inferred = link.inferred and inferred
    link.client_pids.update(client_pids)
    link.server_pids.update(server_pids)


def settle_link_local(links: Links, window: WindowLinks) -> None:
    """The window's link-local joins take their live connections out of the instant's unresolved
    counts, and the flow is drawn with them (its `count`), as any joined connection is."""
    for key, link in window.links.items():
        if scope(link.server_address) is Scope.LINK and key[0][0] != key[1][0]:
            links.settle_link_local(key, link.server_address, link.client_pids, link.inferred)

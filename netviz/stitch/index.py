"""The socket index: every socket of the group filed where the joins look for it.

* connections: connected sockets (TCP, connected UDP, SCTP associations) by join key
  (kind, local, local port, remote, remote port, zone), a key and its reverse filed together
  under the one of the two in canonical order (`canonical_key`): the two ends of a connection
  meet in one entry, which the exact join reads without a lookup. The dict is keyed by the
  key's hash, an int a third the size of the key; the entry's own ends say which key it is
  (`_entry_key`), and a key whose hash another key took goes to `collided`.
* listeners: LISTEN sockets and bound unconnected datagram sockets by (machine, namespace, kind, port).
* translations: conntrack entries that NAT changed, by their original tuple.
* datagram tracks: untranslated datagram conntrack entries (a client sending with sendto).
* ingress: raw, packet and ping sockets, by (machine, holder).

Each socket becomes an End: what it is never changes; what the joins learn about it is its
`state`, one EndState, replaced as the phases go.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import ClassVar, Optional

import msgspec

from netviz.graph import Ingress
from netviz.kinds import DATAGRAM_PROTOCOLS, INGRESS_KINDS, JOIN_PROTOCOL, RAW_KINDS
from netviz.stitch.addresses import AddressBook, Locality, Zone, normalize_address
from netviz.stitch.machines import Machine

WILDCARDS = frozenset({"0.0.0.0", "::"})
MAX_ANSWERS_KEPT = 65536  # listeners_for's answers kept at once
MANY_LISTENERS = 16  # an answer that looked at more listeners than this is kept


class EndState(enum.Enum):
    """What the joins have learned about a connected socket; listeners stay OPEN."""

    OPEN = "open"  # not placed (yet): a later join may pair it, else it is a leftover
    PAIRED = "paired"  # joined with its peer socket or a listener
    AMBIGUOUS = "ambiguous"  # several sockets or namespaces could be its peer: never guessed
    TRANSLATED = "translated"  # NATed in the group, to no socket that was captured: unresolved
    TRANSLATED_OUT = "translated out"  # NATed, and every translation leaves the group: outside


# Members as module constants: looking a member up on its Enum class is slow in a hot loop.
_OPEN = EndState.OPEN


class End(msgspec.Struct, gc=False, eq=False):
    """One socket of one machine, reduced to what the joins need.

    `locals_`/`remotes` hold every address of the end (one for TCP/UDP, all of an SCTP
    association), canonical. `listener` is true for a ListeningEnd (a LISTEN socket or a bound
    unconnected datagram socket), `collector` for a SessionEnd (the machine's end of netviz's own
    SSH session to it). `zone` is the zone of its first (local, remote) pair (see
    AddressBook.zone). Only `state` changes (and `peer`, while the sockets are filed).

    A msgspec struct, for its constructor in C (a million ends are made per million sockets):
    compared and hashed by identity (`eq=False`, as a plain object), and not tracked by the
    cyclic garbage collector (`gc=False`: it refers to no container that could lead back to it).
    """

    machine: int
    netns: int
    kind: str
    inode: int
    local_port: int
    remote_port: int
    locals_: tuple[str, ...]
    remotes: tuple[str, ...]
    owner: Optional[int]
    zone: Zone = None
    state: EndState = _OPEN
    # the other end of a plain pair, on the pair's first end (see SocketIndex.connections)
    peer: Optional[End] = None
    # what a few ends are, told by their class (no slot in each of millions of ends)
    listener: ClassVar[bool] = False
    collector: ClassVar[bool] = False


class ListeningEnd(End):
    """A listener: a LISTEN socket, or a bound unconnected datagram socket."""

    listener: ClassVar[bool] = True


class SessionEnd(End):
    """The machine's end of netviz's own SSH session to it."""

    collector: ClassVar[bool] = True


class Crowd:
    """The ends filed under one canonical key when they are not one plain pair: `forward` holds
    those whose own key is the canonical key, `backward` those whose key is its reverse (a key
    that is its own reverse, a socket connected to itself, files its ends in `forward`)."""

    __slots__ = ("key", "forward", "backward")

    def __init__(self, key: tuple) -> None:
        self.key = key  # the canonical key
        self.forward: list[End] = []
        self.backward: list[End] = []


def _accepts_any(listeners: Sequence[End], addresses: Sequence[str]) -> bool:
    """Does one of `listeners` accept one of `addresses` (its own address, or a wildcard)?"""
    for listener in listeners:
        for local in addresses:
            if local in listener.locals_ or "::" in listener.locals_ or (
                "0.0.0.0" in listener.locals_ and ":" not in local
            ):
                return True
    return False


def canonical_key(key: tuple) -> tuple[tuple, bool]:
    """The canonical one of a join key and its reverse, and whether it is `key` itself: the
    side with the lower port first, the lower address on equal ports (a key equal to its
    reverse is canonical)."""
    kind, local, local_port, remote, remote_port, zone = key
    if local_port < remote_port or (local_port == remote_port and local <= remote):
        return key, True
    return (kind, remote, remote_port, local, local_port, zone), False


def _entry_key(entry: object) -> tuple:
    """The canonical key an entry of SocketIndex.connections is filed under."""
    if entry.__class__ is Crowd:
        return entry.key
    # a single-address end, alone or with its peer
    return canonical_key((entry.kind, entry.locals_[0], entry.local_port, entry.remotes[0], entry.remote_port,
                          entry.zone))[0]


# Translation: (translating machine, its namespace, then its reply tuple: src, sport, dst, dport),
# flat: a NAT gateway or a Kubernetes node keeps tens of thousands of them.
Translation = tuple[int, int, str, int, str, int]


class SocketIndex:
    """The group's sockets filed by join key; see the module docstring."""

    key_hash = staticmethod(hash)  # what `connections` is keyed by (tests make keys collide)

    def __init__(self, machines: Sequence[Machine], book: AddressBook) -> None:
        self.book = book
        # hash of a canonical join key -> the connected ends filed under it or its reverse: one
        # End alone; a plain pair of single-address ends keyed each other's reverse, as the first
        # one filed with the other as its `peer`; else a Crowd
        self.connections: dict[int, object] = {}
        self.collided: dict[tuple, Crowd] = {}  # canonical key -> its ends, when another key has its hash
        self.crowded: set[End] = set()  # the ends that share a join key with another end
        self.in_crowds: set[End] = set()  # the ends filed in a Crowd (the exact join's slow path)
        self.listeners: dict[tuple[int, int, str, int], list[End]] = {}
        self._accepting: dict[tuple, object] = {}  # listeners_for's answers (see MANY_LISTENERS)
        self._listening: dict[tuple, bool] = {}  # listens' answers, likewise
        # original tuple -> its translations: nearly always one, in a 1-tuple (40 bytes less than a list)
        self.translations: dict[tuple, Sequence[Translation]] = {}
        # (kind, src, sport, dst, dport) -> the first (machine, netns) that tracked it
        self.datagram_tracks: dict[tuple[str, str, int, str, int], tuple[int, int]] = {}
        self.ends: list[End] = []  # the connected ends, in the order of the snapshots
        self.ingress: dict[tuple[int, Optional[int]], set[Ingress]] = {}
        for machine in machines:
            owner = machine.owners()  # (one machine's at a time)
            for namespace in machine.snapshot.namespaces:
                for entry in namespace.conntrack or ():
                    self._add_translation(machine.index, namespace.inode, entry)
                self._add_sockets(machine, owner, namespace.inode, namespace.sockets)

    # ----------------------------------------------------------------- filing

    def _add_sockets(self, machine: Machine, owner: dict[int, int], netns: int, sockets: Sequence) -> None:
        """File one namespace's sockets (`owner`: Machine.owners). This loop runs a million times:
        the TCP/UDP case is inlined."""
        index = machine.index
        owner_of = owner.get
        session_sockets = machine.session_sockets
        connections, key_hash = self.connections, self.key_hash
        add_end = self.ends.append
        book = self.book
        singles, locality, zone_of, anywhere = book.singles, book.locality, book.zone, Locality.GLOBAL
        for socket in sockets:
            kind = JOIN_PROTOCOL.get(socket.proto)
            if kind is None:
                if socket.proto in INGRESS_KINDS:
                    self._add_ingress(machine, owner_of(socket.inode), socket)
                continue
            local_port = socket.local_port
            if not local_port:
                continue
            remote = socket.remote
            remote_port = socket.remote_port
            unconnected = not remote_port or remote is None or remote in WILDCARDS
            if socket.state == "LISTEN" or (unconnected and kind in DATAGRAM_PROTOCOLS):
                self._add_listener(machine, owner_of(socket.inode), netns, kind, socket)
                continue
            if unconnected:
                continue  # bound but neither listening nor connected: no flow
            if socket.extra is not None and (socket.local_all or socket.remote_all):  # SCTP: every address
                self._add_multihomed(machine, owner_of(socket.inode), netns, kind, socket)
                continue
            local = socket.local
            if local is None:
                continue
            locals_ = singles.get(local) or book.single(local)
            remotes = singles.get(remote) or book.single(remote)
            local, remote = locals_[0], remotes[0]
            # most pairs are two addresses usable anywhere: their zone is None (AddressBook.zone)
            zone = None if locality[local] is anywhere and locality[remote] is anywhere \
                else zone_of(index, netns, local, remote)
            inode = socket.inode
            end = (End if inode not in session_sockets else SessionEnd)(
                index, netns, kind, inode, local_port, remote_port, locals_, remotes, owner_of(inode), zone)
            add_end(end)
            if local_port == remote_port and local == remote:  # connected to itself: its key is its own reverse
                self._file_in_crowd((kind, local, local_port, remote, remote_port, zone), True, end)
                continue
            # (canonical_key, inlined)
            if local_port < remote_port or (local_port == remote_port and local < remote):
                key, forward = (kind, local, local_port, remote, remote_port, zone), True
            else:
                key, forward = (kind, remote, remote_port, local, local_port, zone), False
            hashed = key_hash(key)
            entry = connections.get(hashed)
            if entry is None:
                connections[hashed] = end  # a lone end is stored bare: most tuples are unique
            elif (entry.__class__ is not Crowd and entry.peer is None
                  and entry.local_port == remote_port and entry.remote_port == local_port
                  and entry.locals_[0] == remote and entry.remotes[0] == local
                  and entry.kind == kind and entry.zone == zone):
                entry.peer = end  # the other end of the connection: the common pair
            else:  # an end with the same key, or another key with the same hash: sorted out there
                self._file_in_crowd(key, forward, end)

    def _add_listener(self, machine: Machine, owner: Optional[int], netns: int, kind: str, socket) -> None:
        end = ListeningEnd(machine.index, netns, kind, socket.inode, socket.local_port, 0,
                           self.book.addresses(socket.local, socket.local_all), (), owner)
        self.listeners.setdefault((machine.index, netns, kind, socket.local_port), []).append(end)

    def _add_multihomed(self, machine: Machine, owner: Optional[int], netns: int, kind: str, socket) -> None:
        """A socket with several addresses a side (SCTP): filed under every (local, remote) pair."""
        book = self.book
        locals_ = book.addresses(socket.local, socket.local_all)
        remotes = book.addresses(socket.remote, socket.remote_all)
        pairs = [(local, far, book.zone(machine.index, netns, local, far)) for local in locals_ for far in remotes]
        end = End(machine.index, netns, kind, socket.inode, socket.local_port, socket.remote_port, locals_, remotes,
                  owner, pairs[0][2] if pairs else None)
        self.ends.append(end)
        for local, far, zone in pairs:
            key, forward = canonical_key((kind, local, end.local_port, far, end.remote_port, zone))
            self._file_in_crowd(key, forward, end)

    def _crowd(self, key: tuple) -> Crowd:
        """The Crowd under canonical `key`, made from what is filed there (a lone end or a pair)."""
        hashed = self.key_hash(key)
        entry = self.connections.get(hashed)
        if entry is not None and _entry_key(entry) != key:  # another key has its hash
            crowd = self.collided.get(key)
            if crowd is None:
                crowd = self.collided[key] = Crowd(key)
            return crowd
        if entry.__class__ is Crowd:
            return entry
        crowd = self.connections[hashed] = Crowd(key)
        for filed in (() if entry is None else (entry,) if entry.peer is None else (entry, entry.peer)):
            # (only single-address ends are filed alone or in pairs)
            (crowd.forward if self._is_forward(filed, key) else crowd.backward).append(filed)
            self.in_crowds.add(filed)
        if entry is not None:
            entry.peer = None
        return crowd

    def _file_in_crowd(self, key: tuple, forward: bool, end: End) -> None:
        """File `end` under canonical `key` in a Crowd: `forward` when its own key is `key`."""
        crowd = self._crowd(key)
        ends = crowd.forward if forward else crowd.backward
        ends.append(end)
        self.in_crowds.add(end)
        self._mark_crowded(ends)

    def _mark_crowded(self, ends: list[End]) -> None:
        """The ends of one key are crowded once there are two (each end added once: linear)."""
        if len(ends) == 2:
            self.crowded.update(ends)
        elif len(ends) > 2:
            self.crowded.add(ends[-1])

    @staticmethod
    def _is_forward(end: End, key: tuple) -> bool:
        """Is a single-address end's own key the canonical `key` (not its reverse)?"""
        return end.local_port == key[2] and end.locals_[0] == key[1]

    def _add_translation(self, machine: int, netns: int, entry) -> None:
        original, reply = entry.original, entry.reply
        if original.sport is None or original.dport is None or reply.sport is None or reply.dport is None:
            return
        kind = JOIN_PROTOCOL.get(entry.proto)
        if kind is None:
            return
        normal = normalize_address
        src, dst = normal(original.src), normal(original.dst)
        reply_src, reply_dst = normal(reply.src), normal(reply.dst)
        if (reply_src, reply.sport, reply_dst, reply.dport) == (dst, original.dport, src, original.sport):
            # tracked but not translated: the plain join covers connected sockets
            if kind in DATAGRAM_PROTOCOLS:
                self.datagram_tracks.setdefault((kind, src, original.sport, dst, original.dport), (machine, netns))
            return
        zone = self.book.translation_zone(machine, netns, src, dst)
        key = (kind, src, original.sport, dst, original.dport, zone)
        translation = (machine, netns, reply_src, reply.sport, reply_dst, reply.dport)
        entries = self.translations.get(key)
        if entries is None:
            self.translations[key] = (translation,)
        elif entries.__class__ is tuple:
            self.translations[key] = [*entries, translation]
        else:  # (a list from the second on: a snapshot repeating one tuple must not cost quadratic time)
            entries.append(translation)

    def _add_ingress(self, machine: Machine, owner: Optional[int], socket) -> None:
        protocol = socket.protocol
        if protocol is None and socket.proto in RAW_KINDS:
            protocol = socket.local_port  # the format keeps a raw socket's IP protocol there
        item = Ingress(kind=socket.proto, protocol=protocol, interface=socket.interface)
        self.ingress.setdefault((machine.index, owner), set()).add(item)

    def forget_connections(self) -> None:
        """Let the connected ends go once the joins that look them up are done (the exact and NAT
        joins): the ends still open are the caller's, the paired ones are in the links already,
        and the graph is then built in the memory they held."""
        self.connections = {}
        self.collided = {}
        self.crowded = set()
        self.in_crowds = set()
        self.ends = []

    # ----------------------------------------------------------------- lookups

    def bucket(self, key: tuple) -> Sequence[End]:
        """The connected ends filed under a join key, in the order they were filed."""
        canonical, forward = canonical_key(key)
        entry = self.connections.get(self.key_hash(canonical))
        if entry is not None and _entry_key(entry) != canonical:
            entry = self.collided.get(canonical)
        if entry is None:
            return ()
        if entry.__class__ is Crowd:
            return entry.forward if forward else entry.backward
        if entry.peer is not None:
            return (entry,) if self._is_forward(entry, canonical) is forward else (entry.peer,)
        return (entry,) if self._is_forward(entry, canonical) is forward else ()

    def listeners_for(self, machine: int, netns: int, address: str, port: int, kind: str) -> Optional[list[End]]:
        """The listening socket that accepts `address`:`port` seen from (machine, netns).

        The kernel prefers a socket bound to the exact address over a wildcard one. Several
        sockets in one namespace (SO_REUSEPORT workers) are one service: the lowest owner pid
        wins. Candidates in several namespaces are ambiguous: None. An answer that took going
        through many listeners is kept: every client of the service asks the same (and a machine
        may hold thousands of listeners on one port).
        """
        asked = (machine, netns, address, port, kind)
        answer = self._accepting.get(asked, self)  # (self: not kept)
        if answer is self:
            answer, looked_at = self._listeners_for(machine, netns, address, port, kind)
            if looked_at > MANY_LISTENERS:
                if len(self._accepting) >= MAX_ANSWERS_KEPT:
                    self._accepting.clear()  # (bounded memory)
                self._accepting[asked] = answer
        return answer

    def _listeners_for(self, machine: int, netns: int, address: str, port: int,
                       kind: str) -> tuple[Optional[list[End]], int]:
        """listeners_for's answer, and how many listeners it looked at."""
        locations = self.book.locations(machine, netns, address)
        if locations is None:
            return None, 0
        exact: list[End] = []
        wildcard: list[End] = []
        ipv6 = ":" in address
        looked_at = 0
        for owner_machine, ns in locations:
            serving = self.listeners.get((owner_machine, ns, kind, port), ())
            looked_at += len(serving)
            for listener in serving:
                if address in listener.locals_:
                    exact.append(listener)
                elif "::" in listener.locals_ or ("0.0.0.0" in listener.locals_ and not ipv6):
                    wildcard.append(listener)
        found = exact or wildcard
        if not found:
            return [], looked_at
        if len({(end.machine, end.netns) for end in found}) > 1:
            return None, looked_at
        return [min(found, key=lambda end: (end.owner is None, end.owner or 0, end.inode))], looked_at

    def listens(self, end: End) -> bool:
        """Does a listening socket in the end's namespace accept the end's local address and port?"""
        if end.listener:
            return True
        bucket = self.listeners.get((end.machine, end.netns, end.kind, end.local_port))
        if not bucket:
            return False
        if len(bucket) > MANY_LISTENERS:
            return self._listens_among_many(end, bucket)
        for listener in bucket:  # (inlined: asked twice for each of a million pairs)
            for local in end.locals_:
                if local in listener.locals_ or "::" in listener.locals_ or (
                    "0.0.0.0" in listener.locals_ and ":" not in local
                ):
                    return True
        return False

    def _listens_among_many(self, end: End, bucket: Sequence[End]) -> bool:
        """listens, for a port with thousands of listeners: each address asked about is looked
        through once."""
        asked = (end.machine, end.netns, end.kind, end.local_port, end.locals_)
        answer = self._listening.get(asked)
        if answer is None:
            if len(self._listening) >= MAX_ANSWERS_KEPT:
                self._listening.clear()
            answer = self._listening[asked] = _accepts_any(bucket, end.locals_)
        return answer

"""The joins that follow conntrack: translated connections (NAT) and datagrams only conntrack saw.

Like netviz.stitch.joins, each join replaces the state of the ends it settles and yields pairs
`(end, other, server address, Evidence)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Optional

from netviz.kinds import DATAGRAM_PROTOCOLS
from netviz.stitch.index import End, EndState, SocketIndex, Translation
from netviz.stitch.joins import AMBIGUOUS, OPEN, PAIRED, TRACKED, Evidence, Pair, settle

# Translations followed one after another for one connection (masquerade, then DNAT, ...).
MAX_TRANSLATION_HOPS = 4
# Translations looked at for one connection, all hops together: a real one has a few (HA
# gateways tracking it alike); a snapshot listing thousands is not followed (never guessed)
MAX_TRANSLATIONS_FOLLOWED = 64

# what a translation led to: id(server end) -> (server end, translating machine, address reached)
Found = dict[int, tuple[End, int, str]]


def join_translated(index: SocketIndex, ends: Iterable[End], names: Sequence[str]) -> Iterator[Pair]:
    """Pair a connection that conntrack shows translated with the socket its translation reaches.

    The flow records the translating machine in `via` (`names`: the machines' names by index).
    A translated connection that reaches no socket is TRANSLATED (unresolved), or TRANSLATED_OUT
    (outside) when every translation sends it to an address no machine of the group owns.
    """
    if not index.translations:
        return
    book = index.book
    through = [Evidence(via=name, initiator=True) for name in names]  # by translating machine
    for end in ends:
        if end.state is not OPEN:
            continue
        found: Found = {}
        translated = False
        leaves_group = True
        too_many = False
        for local in end.locals_:
            for far in end.remotes:
                zone = book.translation_zone(end.machine, end.netns, local, far)
                entries = index.translations.get((end.kind, local, end.local_port, far, end.remote_port, zone))
                if entries:
                    translated = True
                    outside = _follow_translations(index, end, entries, found)
                    too_many = too_many or outside is None
                    leaves_group = bool(outside) and leaves_group
        if len(found) == 1 and not too_many:
            ((target, nat_machine, address),) = found.values()
            settle(end, target)
            yield end, target, address, through[nat_machine]
        elif found or too_many:
            end.state = AMBIGUOUS
        elif translated:
            end.state = EndState.TRANSLATED_OUT if leaves_group else EndState.TRANSLATED


def _follow_translations(index: SocketIndex, end: End, entries: Sequence[Translation], found: Found) -> Optional[bool]:
    """Collect into `found` the server sockets that `entries` (translations of `end`'s tuple) lead
    to, two at most (one, or several: all the caller needs); return True when they lead nowhere
    in the group (every last translation sends the connection to an address that no machine of
    the group owns), None when there were more than MAX_TRANSLATIONS_FOLLOWED to follow.

    A connection can be translated more than once: a container's call to a port published on
    another Docker host is masqueraded by its own host, then DNATed by the other one. When no
    socket has a translated tuple, the tuple as it leaves the translating machine is looked up
    again as the original tuple of another translation, a few hops at most. The flow's `via`
    is the last translating machine, the one nearest the server.
    """
    book = index.book
    pending = list(entries)
    seen: set[tuple] = set()
    outside = True
    for _hop in range(MAX_TRANSLATION_HOPS):
        following: list[Translation] = []
        for translation in pending:
            nat_machine, nat_netns, server, server_port, client, client_port = translation
            followed = (nat_machine, server, server_port, client, client_port)  # a reply once per machine
            if followed in seen:
                continue
            if len(seen) >= MAX_TRANSLATIONS_FOLLOWED:
                return None
            seen.add(followed)
            targets = _translated_targets(index, end, translation)
            if not targets:
                # on the wire after this machine: from the reply's destination to its source
                zone = book.translation_zone(nat_machine, nat_netns, client, server)
                further = index.translations.get((end.kind, client, client_port, server, server_port, zone))
                if further:
                    following.extend(further)
                    continue
                if end.kind in DATAGRAM_PROTOCOLS:
                    # the last translation: a connected UDP client reaches the bound socket there
                    targets = index.listeners_for(nat_machine, nat_netns, server, server_port, end.kind) or []
                if not targets and book.in_group(server, nat_machine):
                    outside = False
            else:
                outside = False
            for target in targets:
                found.setdefault(id(target), (target, nat_machine, server))
            if len(found) > 1:
                return False  # several: the caller never guesses among them
        if not following:
            return outside and not found
        pending = following
    return False


def _translated_targets(index: SocketIndex, end: End, translation: Translation) -> list[End]:
    """The server side of a translated connection, resolved from the translating namespace."""
    machine, netns, server, server_port, client, client_port = translation
    # the server socket's own zone, computed from the translating machine's point of view
    zone = index.book.zone(machine, netns, server, client)
    reachable = index.book.reachable
    targets: list[End] = []
    for candidate in index.bucket((end.kind, server, server_port, client, client_port, zone)):
        if candidate is not end and candidate.state is not PAIRED \
                and reachable(machine, netns, server, candidate.machine, candidate.netns):
            targets.append(candidate)
            if len(targets) == 2:
                break  # (one, or several: a crowd of thousands is not listed)
    return targets


def connected_datagram_tuples(ends: Iterable[End]) -> set[tuple[str, str, int, str, int]]:
    """The four-tuples of every connected datagram socket, both ways round."""
    connected = set()
    for end in ends:
        if end.kind in DATAGRAM_PROTOCOLS:
            for local in end.locals_:
                for far in end.remotes:
                    connected.add((end.kind, local, end.local_port, far, end.remote_port))
                    connected.add((end.kind, far, end.remote_port, local, end.local_port))
    return connected


def join_tracked_datagrams(index: SocketIndex, connected: set[tuple[str, str, int, str, int]]) -> Iterator[Pair]:
    """Datagram flows that only conntrack shows: a client sending from an unconnected socket
    (statsd, syslog, SNMP, NTP) leaves a bound socket with no peer in /proc. When an entry
    leads from exactly one bound socket of the group (at its source address and port) to
    exactly one bound socket (at its destination), that is an `inferred` flow between them.
    Tuples of connected sockets (`connected`) are left to the other joins: they saw the socket."""
    for track, (machine, netns) in index.datagram_tracks.items():
        if track in connected:
            continue
        kind, src, sport, dst, dport = track
        senders = index.listeners_for(machine, netns, src, sport, kind)
        receivers = index.listeners_for(machine, netns, dst, dport, kind)
        if not senders or not receivers or senders[0] is receivers[0]:
            continue  # not both ends in the group, or not told apart: nothing to draw
        yield senders[0], receivers[0], dst, TRACKED._replace(track=((machine, netns), track))

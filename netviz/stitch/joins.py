"""The joins that need no conntrack: exact four-tuples, listeners, and what is left over.

Each join walks the ends still OPEN, replaces the state of those it settles (EndState) and
yields what it learned: pairs `(end, other, server address, Evidence)`, the first end being the
one the join started from. netviz.stitch.links turns pairs into flows; netviz.stitch.nat holds
the joins that follow conntrack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Optional

from netviz.kinds import DATAGRAM_PROTOCOLS
from netviz.stitch.addresses import AddressBook, Scope, scope
from netviz.stitch.index import Crowd, End, EndState, SocketIndex

# Members as module constants: looking a member up on its Enum class is slow in a hot loop.
OPEN, PAIRED, AMBIGUOUS = EndState.OPEN, EndState.PAIRED, EndState.AMBIGUOUS
TRANSLATED, TRANSLATED_OUT = EndState.TRANSLATED, EndState.TRANSLATED_OUT
_LINK = Scope.LINK


class Evidence(NamedTuple):
    """How a join knows that two ends are one connection. A handful of values serve every pair
    (EXACT, TO_LISTENER, ...): nothing is built per pair."""

    inferred: bool = False  # no server socket seen: attached to a listener (TCP, SCTP), or seen in conntrack only
    via: Optional[str] = None  # the machine whose NAT translated the connection
    initiator: bool = False  # the first end is known to have opened the connection
    # a datagram flow only conntrack shows: where it was tracked and its original tuple
    # ((machine, netns), (kind, src, sport, dst, dport)), for its counters
    track: Optional[tuple[tuple[int, int], tuple[str, str, int, str, int]]] = None


EXACT = Evidence()  # two sockets whose four-tuples are each other's reversed
TO_LISTENER = Evidence(inferred=True, initiator=True)  # a client attached to the listener accepting it
TO_BOUND = Evidence(initiator=True)  # a connected datagram client and the bound socket it sends to
TRACKED = Evidence(inferred=True, initiator=True)  # two bound datagram sockets that only conntrack links

# (end, other, the address the client reached (None: the server end's own), evidence)
Pair = tuple[End, End, Optional[str], Evidence]


def settle(end: End, other: End) -> None:
    """Mark two ends paired (a listener serves many clients: it stays open)."""
    end.state = PAIRED
    if not other.listener:
        other.state = PAIRED


def mark_ambiguous(ends: Iterable[End]) -> None:
    for end in ends:
        end.state = AMBIGUOUS


# ----------------------------------------------------------------- exact four-tuples


def join_exact(index: SocketIndex) -> Iterator[Pair]:
    """Pair the connected sockets whose four-tuples are each other's reversed (a hash join).

    An end with several candidates, or whose candidate has several, is ambiguous: never guessed.
    """
    reachable = index.book.reachable
    # the common case, a million times: the index filed the two ends of a connection together as
    # a plain pair (one address each side, keys nobody else has); they are each other's only candidates
    for end in index.connections.values():
        other = end.peer if end.__class__ is not Crowd else None
        if other is not None:
            if (
                reachable(end.machine, end.netns, end.remotes[0], other.machine, other.netns)
                and reachable(other.machine, other.netns, end.locals_[0], end.machine, end.netns)
            ):
                end.state = other.state = PAIRED
                yield end, other, None, EXACT
    # the rest, in the order of the snapshots: only ends filed in a Crowd can have a candidate
    crowded, in_crowds = index.crowded, index.in_crowds
    for end in index.ends:
        if end.state is not OPEN or end not in in_crowds:
            continue
        found = exact_candidates(index, end)
        if len(found) == 1:
            other = found[0]
            # the match must hold both ways; only checked when a tuple is shared, so it stays cheap
            if (end in crowded or other in crowded) and exact_candidates(index, other) != [end]:
                mark_ambiguous((end, other))
                continue
            settle(end, other)
            yield end, other, None, EXACT
        elif found:
            # (its other candidates, found in their own turn, have it among theirs: ambiguous too)
            mark_ambiguous((end, *found))


def exact_candidates(index: SocketIndex, end: End) -> list[End]:
    """Unpaired sockets whose four-tuple is `end`'s reversed and that each end can reach: the
    first two found, which is all the joins need to know (one, or several). A snapshot may repeat
    one tuple thousands of times (nothing stops a compromised machine): listing every candidate
    of every such end would take cubic time."""
    reachable = index.book.reachable
    single = len(end.locals_) == 1 and len(end.remotes) == 1
    found: list[End] = []
    for far in end.remotes:
        for local in end.locals_:
            zone = end.zone if single else index.book.zone(end.machine, end.netns, local, far)
            for candidate in index.bucket((end.kind, far, end.remote_port, local, end.local_port, zone)):
                if (
                    candidate is not end
                    and candidate.state is not PAIRED
                    and candidate not in found
                    and reachable(end.machine, end.netns, far, candidate.machine, candidate.netns)
                    and reachable(candidate.machine, candidate.netns, local, end.machine, end.netns)
                ):
                    found.append(candidate)
                    if len(found) == 2:
                        return found
    return found


# ----------------------------------------------------------------- listeners


def join_listeners(index: SocketIndex, ends: Iterable[End]) -> Iterator[Pair]:
    """Attach a client whose peer socket was not seen to the listener that accepts it.

    A connected UDP socket reaches the bound socket at its destination; a TCP/SCTP socket whose
    peer machine is in the group is attached to the listener there and marked inferred.
    """
    for end in ends:
        if end.state is not OPEN or index.listens(end):
            # settled, or NAT took it elsewhere (TRANSLATED: whatever listens at the address it
            # dialled, an idle docker-proxy on a published port, is not its peer), or a
            # server-side socket whose client is missing: no listener to attach to
            continue
        found: list[tuple[End, str]] = []
        ambiguous = False
        for far in end.remotes:
            listeners = index.listeners_for(end.machine, end.netns, far, end.remote_port, end.kind)
            if listeners is None:
                ambiguous = True
                continue
            for listener in listeners:
                if all(listener is not other for other, _ in found):
                    found.append((listener, far))
        if len(found) == 1 and not ambiguous:
            listener, far = found[0]
            settle(end, listener)
            yield end, listener, far, TO_BOUND if end.kind in DATAGRAM_PROTOCOLS else TO_LISTENER
        elif found or ambiguous:
            end.state = AMBIGUOUS


# ----------------------------------------------------------------- leftovers


def leftovers(ends: Iterable[End], book: AddressBook) -> Iterator[tuple[End, Optional[str]]]:
    """The ends no join placed, each with the reason it is unresolved, or None when its peer is
    outside the group."""
    for end in ends:
        state = end.state
        if state is PAIRED:
            continue
        if end.collector:
            # netviz's own session, from a machine of the group that was captured when the
            # connection was not open yet (or no more): outside, as if seen from both ends
            yield end, None
        elif state is AMBIGUOUS:
            yield end, "several sockets or namespaces could be its peer"
        elif state is TRANSLATED:
            yield end, "NAT in the group translated it, to no socket that was captured"
        elif state is TRANSLATED_OUT:
            yield end, None  # NAT decided where it went: outside
        elif not any(book.in_group(far, end.machine) for far in end.remotes):
            yield end, None
        elif all(book.local_to(far, end.machine) for far in end.remotes):
            yield end, "no socket of its own machine has the reversed address and port"
        elif any(scope(far) is _LINK for far in end.remotes):
            yield end, ("its link-local peer is another machine's: joined only when each address has one owner "
                         "and that machine has the reversed address and port")
        else:
            yield end, "its peer machine is in the group, but has no such socket nor a listener for it"

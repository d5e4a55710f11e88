"""Join the snapshots of a group into process-to-process flows (pure: no I/O, no printing).

The rules, each with its own tests (tests/test_stitch_*.py):

* A flow is drawn only when both of its ends are sockets of machines in the group. Connections
  whose far end is outside are counted per machine (inbound when the local port listens, else
  outbound); connections whose far end should be in the group but cannot be told apart are
  counted as unresolved. Nothing is ever guessed.
* Address ownership comes from the snapshots' own addresses, per machine and namespace.
  Loopback addresses resolve only inside the same namespace of the same machine; link-local
  addresses and addresses owned by more than one machine (docker0's 172.17.0.1) only inside the
  same machine, except that a connection pairing an address several machines claim with an
  address of exactly one other machine joins across machines by its exact four-tuple (a machine
  claiming another's address must not hide that machine's flows; `address_claims` warns).
  A link-local connection between two machines joins the same way when each of its two
  addresses has exactly one owner (machines on one link); a link-local peer no machine owns is
  outside, unless the machine's capture missed a namespace. `::ffff:a.b.c.d` is `a.b.c.d`.
* Connected sockets (TCP, connected UDP, SCTP associations over all their addresses) are matched
  by a hash join on the reversed four-tuple: linear in the number of sockets. An address that no
  machine of the group claims (legacy snapshots carry no addresses) still joins when exactly one
  socket of the group has the reversed tuple: both ends saw the same four numbers. So does a
  socket holding another machine's address (a transparent proxy) with the socket of its own
  namespace that has its reversed tuple.
* What is left is tried, in order, against conntrack translations of any machine (NAT: the flow
  records the translating machine in `via`; a connection translated several times, such as a
  container's call masqueraded by its host then DNATed by another, is followed from one
  translation to the next and `via` names the last), then against listening sockets: a connected UDP
  socket reaches the bound socket that accepts its destination (exact address first, then the
  wildcard); a TCP/SCTP socket whose peer machine is in the group but whose peer socket is not in
  the snapshot is attached to the listener that accepts it and marked inferred. A connection that
  conntrack shows translated is never attached to a listener at the address it dialled (an idle
  docker-proxy on a published port): when its translations lead to no socket it is unresolved,
  or outside when they send it to an address that no machine of the group owns.
* Direction comes only from listening sockets (LISTEN; for UDP an unconnected bound socket) in the
  namespace of each end. When neither or both ends listen the flow is undirected, except after a
  NAT translation whose conntrack entry names the initiator.
* A socket held by several processes (pre-fork servers, inherited descriptors) belongs to the
  holder with the lowest pid; every holder is listed in the flow's `client_pids`/`server_pids`.
  When an accepted socket has no visible holder but the listener that accepted it has one, the
  flow goes to the listener's holder and is marked inferred.
* raw, raw6, packet, icmp and icmp6 sockets are ingress points of the process holding them.

The phases, one module each (docs/architecture.md, "The stitch"):

1. addresses.AddressBook: who owns each address; locality and zones.
2. index.SocketIndex: every socket filed by join key (connections, listeners, translations,
   datagram tracks, ingress); each connected socket an End whose state starts OPEN.
3. The joins, in order, each settling ends and yielding the pairs it found: joins.join_exact,
   nat.join_translated, joins.join_listeners, nat.join_tracked_datagrams; then joins.leftovers
   says which ends are outside and which unresolved, and why.
4. links.Links folds pairs and leftovers into links and per-machine counts.
5. window.join_windows (only when a snapshot has a window): the window's flow keys joined
   across the group, each end attributed to a process only from a holder seen for its key.
6. build.build_graph makes the FlowGraph.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence

from netviz.gcpause import cyclic_gc_paused
from netviz.graph import GROUP_BY_CHOICES, FlowGraph
from netviz.snapshot import Snapshot
from netviz.stitch.addresses import AddressBook, address_claims, normalize_address
from netviz.stitch.build import MAX_UNRESOLVED_EXAMPLES, build_graph
from netviz.stitch.index import WILDCARDS, EndState, SocketIndex
from netviz.stitch.joins import Pair, join_exact, join_listeners, leftovers
from netviz.stitch.links import Links
from netviz.stitch.machines import Machine
from netviz.stitch.nat import connected_datagram_tuples, join_tracked_datagrams, join_translated
from netviz.stitch.window import join_windows, settle_link_local

__all__ = ["MAX_UNRESOLVED_EXAMPLES", "WILDCARDS", "address_claims", "normalize_address", "stitch"]

log = logging.getLogger(__name__)


def stitch(
    snapshots: Sequence[Snapshot],
    *,
    group_by: str = "process",
    show_external: bool = False,
    stale: Collection[str] = (),
) -> FlowGraph:
    """Join the snapshots of one group into a FlowGraph.

    `snapshots` must have distinct names (netviz.group.load_group makes them so). `stale` names
    machines whose snapshot comes from an earlier run (shown as such, stitched as usual).
    """
    if group_by not in GROUP_BY_CHOICES:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}, not {group_by!r}")
    names = [snapshot.name for snapshot in snapshots]
    if len(set(names)) != len(names):
        raise ValueError("two snapshots share a name; load them with netviz.group.load_group")
    with cyclic_gc_paused():  # millions of small objects and no garbage (netviz.gcpause)
        return _stitch(sorted(snapshots, key=lambda item: item.name), group_by, show_external, frozenset(stale))


def _stitch(snapshots: list[Snapshot], group_by: str, show_external: bool, stale: frozenset[str]) -> FlowGraph:
    """The phases in order; each join settles ends (EndState) and reports the pairs it found."""
    machines = [Machine(number, snapshot, group_by) for number, snapshot in enumerate(snapshots)]
    book = AddressBook(snapshots)
    index = SocketIndex(machines, book)
    links = Links(machines, index, group_by, show_external)
    _join(index, links, [snapshot.name for snapshot in snapshots])  # (the ends are let go on return)
    # the window phase only when a machine was observed over a window: instant graphs stay as they were
    links.draw_outside()
    window = join_windows(machines, book, index, group_by) if any(s.window for s in snapshots) else None
    if window is not None:
        settle_link_local(links, window)
    return build_graph(machines, index, links, stale, window)


def _join(index: SocketIndex, links: Links, names: list[str]) -> None:
    """The joins in order, their pairs and leftovers folded into `links`. The connected ends live
    only as long as this call: the graph is built in the memory they held."""
    counts = {"exact pairs": _draw(join_exact(index), links)}
    connected = connected_datagram_tuples(index.ends) if index.datagram_tracks else set()
    # the later joins only look at what the exact join left (a few percent of the sockets)
    paired = EndState.PAIRED
    rest = [end for end in index.ends if end.state is not paired]
    counts["through NAT"] = _draw(join_translated(index, rest, names), links)
    index.forget_connections()  # the joins after NAT need listeners only
    counts["to listeners"] = _draw(join_listeners(index, rest), links)
    counts["datagram flows from conntrack"] = _draw(join_tracked_datagrams(index, connected), links)

    unmatched = 0
    for end, why in leftovers(rest, index.book):
        unmatched += 1
        if why is None:
            links.add_outside(end)
        else:
            links.add_unresolved(end, why)
    log.debug("stitch: %s, %d left unmatched", ", ".join(f"{n} {phase}" for phase, n in counts.items()), unmatched)


def _draw(pairs: Iterable[Pair], links: Links) -> int:
    """Fold the pairs a join yields into links as they come (the join's next step may depend on
    the ends it just settled, never on the links); returns how many."""
    count = 0
    add_pair = links.add_pair
    for end, other, server_address, evidence in pairs:
        add_pair(end, other, server_address, evidence)
        count += 1
    return count

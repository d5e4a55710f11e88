"""Traffic: the kernel's TCP counters (a snapshot's `tcp_info`) summed per link.

Bytes sent are the kernel's `bytes_acked` less one: the kernel counts the acknowledged SYN (and
SYN-ACK) as a byte, so an idle connection would show "1 B" sent. A FIN, once acknowledged, is
still counted as one byte. A connection's counters are read from its client end (bytes sent and received, RTT); when only the
server end's are known (its namespace was read through netlink, the client's was not), from the
server's, mirrored. Retransmits are those of both ends (each counts what it resent). A connection
whose two ends both lack counters adds nothing, and the flow says how many connections it summed.

A connection without tcp_info (UDP, UDP-Lite, and TCP or SCTP in a namespace read without it) is
counted from conntrack when the kernel keeps accounting (nf_conntrack_acct): packets and bytes of
whole IP packets each way, from the entry of its tuple in the client's namespace, else the
server's, else any machine that translated it (NAT). Each connection is counted from one entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from netviz.graph import FlowTraffic
from netviz.kinds import JOIN_PROTOCOL
from netviz.snapshot.model import TcpInfo
from netviz.stitch.addresses import normalize_address
from netviz.stitch.index import End
from netviz.stitch.machines import Machine

# (kind, src, sport, dst, dport): a connection's original tuple in conntrack
Tuple = tuple[str, str, int, str, int]
Counts = tuple[int, int, int, int]  # original packets, original bytes, reply packets, reply bytes


class LinkTraffic:
    """Counters per link key: [connections measured, sent, received, retransmits, RTTs (µs),
    conntrack's counts (original packets, bytes, reply packets, bytes) or None]."""

    def __init__(self, machines: Sequence[Machine]) -> None:
        # per machine, every namespace's counters by inode (inodes are unique on a machine);
        # None for a machine without any, so that groups without counters pay nothing
        self.counters: list[Optional[dict[int, TcpInfo]]] = [_machine_counters(machine) for machine in machines]
        # conntrack's accounting: (machine, netns) -> original tuple -> counts; and the translated
        # entries' counts by original tuple (the NAT machine counts what it forwards)
        self.tracked, self.forwarded = _conntrack_counts(machines)
        self.counted = bool(self.tracked or self.forwarded)
        self.any = self.counted or any(found is not None for found in self.counters)
        self.links: dict[tuple, list] = {}

    def _of(self, end: End) -> Optional[TcpInfo]:
        found = self.counters[end.machine]
        return None if found is None else found.get(end.inode)

    def add_pair(self, key: tuple, client: End, server: End, track: Optional[tuple] = None) -> None:
        """One connection of the link `key`, from `client` to `server` (a peer or a listener);
        `track`: where conntrack alone saw it and its tuple (Evidence.track)."""
        mine, theirs = self._of(client), self._of(server)
        if mine is not None:
            self._add(key, _data(mine.bytes_acked), mine.bytes_received, mine.rtt,
                      mine.total_retrans + (theirs.total_retrans if theirs is not None else 0))
        elif theirs is not None:
            self._add(key, theirs.bytes_received, _data(theirs.bytes_acked), theirs.rtt, theirs.total_retrans)
        elif self.counted:
            if track is not None:
                counts = self._lookup(track[0], track[1])
            else:
                counts = self._pair_counts(client, server)
            if counts is not None:
                self._add_counts(key, counts)

    def add_end(self, key: tuple, end: End, is_client: bool) -> None:
        """One connection of which only `end` is captured (a peer outside the group)."""
        found = self._of(end)
        if found is not None:
            if is_client:
                self._add(key, _data(found.bytes_acked), found.bytes_received, found.rtt, found.total_retrans)
            else:
                self._add(key, found.bytes_received, _data(found.bytes_acked), found.rtt, found.total_retrans)
        elif self.counted and end.remote_port:
            seen = _outbound(end)
            counts = self._lookup((end.machine, end.netns), seen if is_client else _reversed(seen))
            if counts is None and is_client:
                counts = self.forwarded.get(seen)
            if counts is not None:
                self._add_counts(key, counts)

    def _pair_counts(self, client: End, server: End) -> Optional[Counts]:
        """Conntrack's counts of the connection from `client` to `server`: from the entry in the
        client's namespace, else in the server's (each looked up by the tuple its own socket shows,
        a listener by the client's), else from a machine that translated it."""
        dialled = _outbound(client) if client.remote_port else None
        answered = _reversed(_outbound(server)) if server.remote_port else dialled
        if dialled is not None:
            counts = self._lookup((client.machine, client.netns), dialled)
            if counts is not None:
                return counts
        if answered is not None:
            counts = self._lookup((server.machine, server.netns), answered)
            if counts is not None:
                return counts
        return None if dialled is None else self.forwarded.get(dialled)

    def _lookup(self, place: tuple[int, int], outbound: Tuple) -> Optional[Counts]:
        """The counts, sent first, of the entry for `outbound` (a client's view of its connection)
        in one namespace; the entry may have been opened by the other side (undirected datagrams)."""
        table = self.tracked.get(place)
        if table is None:
            return None
        counts = table.get(outbound)
        if counts is not None:
            return counts
        counts = table.get(_reversed(outbound))
        return None if counts is None else (counts[2], counts[3], counts[0], counts[1])

    def _add(self, key: tuple, sent: Optional[int], received: Optional[int], rtt: int, retransmits: int) -> None:
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = [0, None, None, 0, [], None]
        link[0] += 1
        if sent is not None:
            link[1] = (link[1] or 0) + sent
        if received is not None:
            link[2] = (link[2] or 0) + received
        link[3] += retransmits
        link[4].append(rtt)

    def _add_counts(self, key: tuple, counts: Counts) -> None:
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = [0, None, None, 0, [], None]
        link[0] += 1
        link[5] = counts if link[5] is None else tuple(a + b for a, b in zip(link[5], counts))

    def facts(self, key: tuple) -> Optional[FlowTraffic]:
        """The FlowTraffic of a link, or None when none of its connections had counters."""
        link = self.links.get(key)
        if link is None:
            return None
        measured, sent, received, retransmits, rtts, counts = link
        if counts is None:
            return FlowTraffic(connections=measured, bytes_sent=sent, bytes_received=received,
                               retransmits=retransmits, rtts=tuple(sorted(rtts)))
        return FlowTraffic(connections=measured, bytes_sent=sent, bytes_received=received,
                           retransmits=retransmits, rtts=tuple(sorted(rtts)),
                           packets_sent=counts[0], ip_bytes_sent=counts[1],
                           packets_received=counts[2], ip_bytes_received=counts[3])


def _outbound(end: End) -> Tuple:
    """The tuple of `end`'s connection as its own socket shows it, from it to its peer."""
    return (end.kind, end.locals_[0], end.local_port, end.remotes[0], end.remote_port)


def _reversed(seen: Tuple) -> Tuple:
    return (seen[0], seen[3], seen[4], seen[1], seen[2])


def _data(bytes_acked: Optional[int]) -> Optional[int]:
    """Data bytes sent and acknowledged: `bytes_acked` without the SYN's (None stays unknown)."""
    return None if bytes_acked is None else max(0, bytes_acked - 1)


def _machine_counters(machine: Machine) -> Optional[dict[int, TcpInfo]]:
    tables = [namespace.tcp_info for namespace in machine.snapshot.namespaces if namespace.tcp_info]
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    merged: dict[int, TcpInfo] = {}
    for table in tables:
        merged.update(table)
    return merged


def _conntrack_counts(machines: Sequence[Machine]) -> tuple[dict[tuple[int, int], dict[Tuple, Counts]], dict[Tuple, Counts]]:
    """The counted conntrack entries of the group: untranslated ones per (machine, namespace) by
    original tuple, translated ones by original tuple (the first machine's, when several NAT it)."""
    tracked: dict[tuple[int, int], dict[Tuple, Counts]] = {}
    forwarded: dict[Tuple, Counts] = {}
    normal = normalize_address
    for machine in machines:
        for namespace in machine.snapshot.namespaces:
            for entry in namespace.conntrack or ():
                counts = entry.counters
                if counts is None:
                    continue
                original, reply = entry.original, entry.reply
                kind = JOIN_PROTOCOL.get(entry.proto)
                if kind is None or original.sport is None or original.dport is None:
                    continue
                src, dst = normal(original.src), normal(original.dst)
                key = (kind, src, original.sport, dst, original.dport)
                if (normal(reply.src), reply.sport, normal(reply.dst), reply.dport) == (dst, original.dport, src,
                                                                                       original.sport):
                    tracked.setdefault((machine.index, namespace.inode), {}).setdefault(key, counts)
                else:
                    forwarded.setdefault(key, counts)
    return tracked, forwarded

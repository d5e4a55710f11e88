"""Traffic: the kernel's TCP counters (a snapshot's `tcp_info`) summed per link.

Bytes sent are the kernel's `bytes_acked` less one: the kernel counts the acknowledged SYN (and
SYN-ACK) as a byte, so an idle connection would show "1 B" sent. A FIN, once acknowledged, is
still counted as one byte. A connection's counters are read from its client end (bytes sent and received, RTT); when only the
server end's are known (its namespace was read through netlink, the client's was not), from the
server's, mirrored. Retransmits are those of both ends (each counts what it resent). A connection
whose two ends both lack counters adds nothing, and the flow says how many connections it summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from netviz.graph import FlowTraffic
from netviz.snapshot.model import TcpInfo
from netviz.stitch.index import End
from netviz.stitch.machines import Machine


class LinkTraffic:
    """Counters per link key: [connections measured, sent, received, retransmits, RTTs (µs)]."""

    def __init__(self, machines: Sequence[Machine]) -> None:
        # per machine, every namespace's counters by inode (inodes are unique on a machine);
        # None for a machine without any, so that groups without counters pay nothing
        self.counters: list[Optional[dict[int, TcpInfo]]] = [_machine_counters(machine) for machine in machines]
        self.any = any(found is not None for found in self.counters)
        self.links: dict[tuple, list] = {}

    def _of(self, end: End) -> Optional[TcpInfo]:
        found = self.counters[end.machine]
        return None if found is None else found.get(end.inode)

    def add_pair(self, key: tuple, client: End, server: End) -> None:
        """One connection of the link `key`, from `client` to `server` (a peer or a listener)."""
        mine, theirs = self._of(client), self._of(server)
        if mine is not None:
            self._add(key, _data(mine.bytes_acked), mine.bytes_received, mine.rtt,
                      mine.total_retrans + (theirs.total_retrans if theirs is not None else 0))
        elif theirs is not None:
            self._add(key, theirs.bytes_received, _data(theirs.bytes_acked), theirs.rtt, theirs.total_retrans)

    def add_end(self, key: tuple, end: End, is_client: bool) -> None:
        """One connection of which only `end` is captured (a peer outside the group)."""
        found = self._of(end)
        if found is None:
            return
        if is_client:
            self._add(key, _data(found.bytes_acked), found.bytes_received, found.rtt, found.total_retrans)
        else:
            self._add(key, found.bytes_received, _data(found.bytes_acked), found.rtt, found.total_retrans)

    def _add(self, key: tuple, sent: Optional[int], received: Optional[int], rtt: int, retransmits: int) -> None:
        link = self.links.get(key)
        if link is None:
            link = self.links[key] = [0, None, None, 0, []]
        link[0] += 1
        if sent is not None:
            link[1] = (link[1] or 0) + sent
        if received is not None:
            link[2] = (link[2] or 0) + received
        link[3] += retransmits
        link[4].append(rtt)

    def facts(self, key: tuple) -> Optional[FlowTraffic]:
        """The FlowTraffic of a link, or None when none of its connections had counters."""
        link = self.links.get(key)
        if link is None:
            return None
        measured, sent, received, retransmits, rtts = link
        return FlowTraffic(connections=measured, bytes_sent=sent, bytes_received=received,
                           retransmits=retransmits, rtts=tuple(sorted(rtts)))


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

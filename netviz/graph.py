"""The stitched graph: machines, nodes (processes or machines), flows between them, ingress points,
and per-machine counts of what could not be drawn (outside peers, unresolved addresses).

`netviz.stitch` builds a FlowGraph; the renderers read it; `to_json_dict()` is the public
`netviz.graph/1` format documented in docs/graph.md. Everything here is plain data, sorted, so the
same snapshots always give the same bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional, Union

GRAPH_SCHEMA = "netviz.graph/1"

GROUP_BY_CHOICES = ("process", "pid", "host", "unit", "container", "pod")
# Groupings by what a process is (netviz.identity): a process the field does not name falls back
# to its command, as under group-by process, so nothing leaves the map.
IDENTITY_GROUPS = ("unit", "container", "pod")

# Kinds of node.
KIND_PROCESS = "process"
KIND_HOST = "host"
KIND_OUTSIDE = "outside"

# The comm shown for sockets that no visible process holds (non-root capture, kernel sockets).
UNATTRIBUTED = "(unattributed)"
# The comm shown for a machine's end of connections a window saw that no process was seen holding.
SHORT_LIVED = "(short-lived)"

# A node key: (machine index, rank, identity). rank 0 = a process or a machine, 1 = sockets without a
# visible owner, 2 = the outside world seen from that machine. identity is the comm (group-by
# process), the pid (group-by pid) or 0 (group-by host): always of one type for one group_by, so keys
# sort without mixed-type comparisons.
NodeKey = tuple[int, int, Union[str, int]]

RANK_OWNED = 0
RANK_UNATTRIBUTED = 1
RANK_OUTSIDE = 2
RANK_SHORT_LIVED = 3  # a window's connections with no holder seen (netviz.stitch.window)


# Between a command and its network namespace in a group-by-process node key (a byte no comm holds).
NETNS_SEPARATOR = "\x00"


def node_key(group_by: str, machine: int, pid: Optional[int], comm: str, netns: str = "") -> NodeKey:
    """The node a socket end belongs to, for one granularity.

    `pid` is None for a socket no visible process holds; under group-by host every socket of a
    machine belongs to the machine node. `netns` names a network namespace other than the
    machine's own (a container's): under group-by process, a command there is a node of its own.
    """
    if group_by == "host":
        return (machine, RANK_OWNED, 0)
    if pid is None:
        return (machine, RANK_UNATTRIBUTED, 0 if group_by == "pid" else "")
    if group_by == "pid":
        return (machine, RANK_OWNED, pid)
    return (machine, RANK_OWNED, f"{comm}{NETNS_SEPARATOR}{netns}" if netns else comm)


def outside_key(group_by: str, machine: int, address: str = "") -> NodeKey:
    """A peer outside the group as seen from one machine: one node per peer address, and the
    node with no address standing for the peers past the per-machine cap."""
    return (machine, RANK_OUTSIDE, address)


@dataclass(frozen=True, order=True)
class Listening:
    """A listening TCP/SCTP socket or a bound, unconnected UDP socket."""

    proto: str  # tcp, udp, udplite, sctp (the address tells the family)
    address: str
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"proto": self.proto, "address": self.address, "port": self.port}


@dataclass(frozen=True, order=True)
class Ingress:
    """A socket that sees traffic outside any flow: raw, raw6, packet, icmp, icmp6."""

    kind: str
    protocol: Optional[int] = None  # raw: IP protocol; packet: ethertype
    interface: Optional[str] = None  # packet: bound interface, "*" for all

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "protocol": self.protocol, "interface": self.interface}

    def describe(self) -> str:
        parts = [self.kind]
        if self.interface is not None:
            parts.append(self.interface)
        if self.protocol is not None:
            parts.append(f"proto {self.protocol}")
        return " ".join(parts)


@dataclass(frozen=True)
class UnresolvedConnection:
    """One connection whose peer should be in the group but was not told apart, and why."""

    proto: str
    local: str
    local_port: int
    remote: str
    remote_port: int
    pid: Optional[int]  # the socket's holder (None: no visible holder)
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"proto": self.proto, "local": self.local, "local_port": self.local_port, "remote": self.remote,
                "remote_port": self.remote_port, "pid": self.pid, "why": self.why}


@dataclass(frozen=True)
class HostWindow:
    """A machine's observation window, and what it could not see (its coverage)."""

    started_at: float
    ended_at: float
    samples: int
    sources: tuple[tuple[str, str], ...]  # (event source, used/missing/denied/untracked), by name
    flows_overflow: int  # observations dropped past the payload's cap on flow keys

    def describe(self) -> str:
        """`window 10 s, 20 samples; events not seen: conntrack (missing)`: what a reader must know
        before trusting an absent short-lived flow."""
        text = f"window {self.ended_at - self.started_at:.0f} s, {self.samples} samples"
        unused = [f"{name} ({state})" for name, state in self.sources if state != "used"]
        if unused:
            text += "; events not seen: " + ", ".join(unused)
        if self.flows_overflow:
            text += f"; {self.flows_overflow} observations past the cap"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "ended_at": self.ended_at, "samples": self.samples,
                "sources": dict(self.sources), "flows_overflow": self.flows_overflow}


@dataclass
class HostEntry:
    """One machine of the group, with what could not be drawn from it."""

    name: str
    hostname: str
    machine_id: Optional[str]
    addresses: tuple[str, ...]
    captured_at: float
    stale: bool
    complete: bool
    legacy: bool
    outside_inbound: int = 0
    outside_outbound: int = 0
    unresolved: int = 0
    unresolved_examples: tuple[UnresolvedConnection, ...] = ()  # the first few, for a reader to check
    window: Optional[HostWindow] = None  # only when the machine's snapshot has a window
    key: str = ""  # the natural key (machine_key), the same in every run: set by with_natural_keys
    # A diff map only (netviz.diff_map): added, removed, unreachable (and in which run, why)
    change: str = ""
    change_detail: str = ""

    @property
    def outside(self) -> int:
        return self.outside_inbound + self.outside_outbound

    def to_json(self) -> dict[str, Any]:
        return {
            **({"key": self.key} if self.key else {}),
            "name": self.name,
            "hostname": self.hostname,
            "machine_id": self.machine_id,
            "addresses": list(self.addresses),
            "captured_at": self.captured_at,
            "stale": self.stale,
            "complete": self.complete,
            "legacy": self.legacy,
            "outside": {"inbound": self.outside_inbound, "outbound": self.outside_outbound},
            "unresolved": self.unresolved,
            **({"unresolved_examples": [example.to_json() for example in self.unresolved_examples]}
               if self.unresolved_examples else {}),
            **({"window": self.window.to_json()} if self.window is not None else {}),
            **({"change": self.change} if self.change else {}),
            **({"change_detail": self.change_detail} if self.change_detail else {}),
        }


@dataclass
class Node:
    """A process (group-by pid), a command on one machine (group-by process), a machine
    (group-by host), or the outside world as seen from one machine."""

    id: str
    host: str
    kind: str
    comm: str
    pids: tuple[int, ...] = ()
    users: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    cmdline: str = ""
    listening: tuple[Listening, ...] = ()
    ingress: tuple[Ingress, ...] = ()
    sockets: int = 0
    # In an aggregated view (netviz.aggregate): the commands of the nodes this one stands for,
    # busiest first; empty in a stitched graph. Only static formats aggregate, so the JSON
    # document never carries it.
    folded: tuple[str, ...] = ()
    # Window views only: the machine's end of connections no process was seen holding (comm
    # SHORT_LIVED), and whether `cmdline` was inferred from an exec event rather than seen.
    short_lived: bool = False
    command_inferred: bool = False
    # Outside nodes only: the peer's address ("" for the node standing for the peers past the cap),
    # and the first name the observing machine's /etc/hosts gives it ("" when none).
    address: str = ""
    peer_name: str = ""
    # A network namespace other than the machine's own (a container's): its inode, and its name
    # when the snapshot knows one (`ip netns`, Docker); empty for the machine's own namespace.
    netns: str = ""
    netns_name: str = ""
    # Who the processes are (netviz.identity), when all of the node's processes agree: the
    # systemd unit, the container (name, else short id) and its image, the pod (`namespace/name`).
    unit: str = ""
    container: str = ""
    image: str = ""
    pod: str = ""
    key: str = ""  # the natural key (node_natural_key), the same in every run: set by with_natural_keys
    change: str = ""  # a diff map only (netviz.diff_map): added, removed, unchanged, not_compared

    @property
    def is_root(self) -> bool:
        return "root" in self.users

    @property
    def is_unconfined(self) -> bool:
        return any(is_unconfined(context) for context in self.contexts)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **({"key": self.key} if self.key else {}),
            "host": self.host,
            "kind": self.kind,
            "comm": self.comm,
            "pids": list(self.pids),
            "users": list(self.users),
            "contexts": list(self.contexts),
            "cmdline": self.cmdline,
            "listening": [{**({"key": listener_key(self, item)} if self.key else {}), **item.to_json()}
                          for item in self.listening],
            "ingress": [item.to_json() for item in self.ingress],
            "sockets": self.sockets,
            # only in graphs with a window: instant documents keep their exact bytes
            **({"short_lived": True} if self.short_lived else {}),
            **({"command_inferred": True} if self.command_inferred else {}),
            **({"address": self.address} if self.address else {}),
            **({"peer_name": self.peer_name} if self.peer_name else {}),
            **({"netns": int(self.netns)} if self.netns else {}),
            **({"netns_name": self.netns_name} if self.netns_name else {}),
            **{name: getattr(self, name) for name in ("unit", "container", "image", "pod") if getattr(self, name)},
            **({"change": self.change} if self.change else {}),
        }


def is_unconfined(context: str) -> bool:
    """Is this security context unconfined? AppArmor writes "unconfined", SELinux
    "unconfined_u:unconfined_r:unconfined_t:s0"."""
    return context == "unconfined" or "unconfined_t" in context


@dataclass(frozen=True)
class FlowWindow:
    """What the machines' observation windows saw of a flow's connections (absent in instant mode)."""

    first_seen: float  # Unix seconds, the earliest evidence at either end
    last_seen: float
    connections: int  # distinct connections during the window (a lower bound), not samples
    persistent: bool  # alive in every sample of the window
    seconds: float  # the length of the window
    # TCP, when a machine read tcp_info through the window: bytes the client sent and received
    # inside it, and the span they moved in (Unix seconds); None when not counted
    bytes_sent: Optional[int] = None
    bytes_received: Optional[int] = None
    bytes_since: Optional[float] = None
    bytes_until: Optional[float] = None

    @property
    def bytes_per_second(self) -> Optional[float]:
        """Bytes both ways per second of the span they moved in (None when not counted)."""
        if self.bytes_sent is None or self.bytes_received is None or self.bytes_since is None or self.bytes_until is None:
            return None
        span = self.bytes_until - self.bytes_since
        return round((self.bytes_sent + self.bytes_received) / span, 1) if span > 0 else None

    @property
    def per_minute(self) -> float:
        """Connections per minute over the window (0 for a window of no length)."""
        return round(self.connections * 60.0 / self.seconds, 1) if self.seconds > 0 else 0.0

    def rate_text(self) -> str:
        """`~N per minute` for short-lived flows, `persistent` for the others."""
        if self.persistent:
            return "persistent"
        rate = self.per_minute
        return f"~{rate:.0f} per minute" if rate >= 1 else f"~{rate:g} per minute"

    def merged(self, other: Optional["FlowWindow"]) -> "FlowWindow":
        """The facts of two flows drawn as one (an aggregated view)."""
        if other is None:
            return self
        counted = [window for window in (self, other) if window.bytes_sent is not None]
        return FlowWindow(first_seen=min(self.first_seen, other.first_seen), last_seen=max(self.last_seen, other.last_seen),
                          connections=self.connections + other.connections,
                          persistent=self.persistent or other.persistent, seconds=max(self.seconds, other.seconds),
                          bytes_sent=sum(w.bytes_sent or 0 for w in counted) if counted else None,
                          bytes_received=sum(w.bytes_received or 0 for w in counted) if counted else None,
                          bytes_since=min(w.bytes_since or 0.0 for w in counted) if counted else None,
                          bytes_until=max(w.bytes_until or 0.0 for w in counted) if counted else None)

    def to_json(self) -> dict[str, Any]:
        out = {"first_seen": self.first_seen, "last_seen": self.last_seen, "connections": self.connections,
               "persistent": self.persistent, "per_minute": self.per_minute}
        if self.bytes_sent is not None:  # only when counted, so the JSON of an uncounted window is unchanged
            out.update(window_bytes_sent=self.bytes_sent, window_bytes_received=self.bytes_received,
                       bytes_per_second=self.bytes_per_second)
        return out

    def bytes_rate_text(self) -> Optional[str]:
        """`2.0 MB/s`: bytes both ways per second while they moved; None when not counted."""
        rate = self.bytes_per_second
        return None if rate is None else f"{human_bytes(round(rate))}/s"


def human_bytes(count: Optional[int]) -> str:
    """`950 B`, `5.2 MB` (decimal units, as `ss` and most tools print rates); "?" for unknown."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class FlowTraffic:
    """What the kernel's counters say about a flow's connections, from the client's view: TCP's
    tcp_info, else conntrack's accounting (UDP, and TCP whose tcp_info was not read); absent when
    no connection of the flow had either (docs/graph.md, "Traffic")."""

    connections: int  # connections whose counters were read (at most the flow's count)
    bytes_sent: Optional[int]  # client -> server, acknowledged, summed; None: no counter read had bytes
    bytes_received: Optional[int]  # server -> client, summed
    retransmits: int  # segments retransmitted, both directions, summed
    rtts: tuple[int, ...] = field(default=(), repr=False)  # each connection's smoothed RTT (µs), sorted
    # conntrack's accounting (nf_conntrack_acct), for connections without tcp_info: packets, and
    # bytes of whole IP packets (headers included, so not comparable with bytes_sent)
    packets_sent: Optional[int] = None
    packets_received: Optional[int] = None
    ip_bytes_sent: Optional[int] = None
    ip_bytes_received: Optional[int] = None

    @property
    def rtt_median_ms(self) -> float:
        """The median of the connections' RTTs, milliseconds (the lower middle for an even count)."""
        return self.rtts[(len(self.rtts) - 1) // 2] / 1000.0 if self.rtts else 0.0

    @property
    def rtt_max_ms(self) -> float:
        return self.rtts[-1] / 1000.0 if self.rtts else 0.0

    @property
    def total_bytes(self) -> int:
        """Bytes both ways (0 when unknown): what edge widths and `--sort bytes` weigh. Data bytes
        when tcp_info counted any, else conntrack's IP bytes."""
        if self.bytes_sent is None and self.bytes_received is None:
            return (self.ip_bytes_sent or 0) + (self.ip_bytes_received or 0)
        return (self.bytes_sent or 0) + (self.bytes_received or 0)

    def bytes_text(self) -> str:
        """`5.2 MB / 1.1 kB`: bytes sent and received from the client's view ("?" when unknown);
        `1.2 kB / 640 B IP` when only conntrack counted them."""
        if self.bytes_sent is None and self.bytes_received is None and self.ip_bytes_sent is not None:
            return f"{human_bytes(self.ip_bytes_sent)} / {human_bytes(self.ip_bytes_received)} IP"
        return f"{human_bytes(self.bytes_sent)} / {human_bytes(self.bytes_received)}"

    def rtt_text(self) -> str:
        """`0.41 / 2.3`: the median and the largest RTT, milliseconds ("-" without any)."""
        if not self.rtts:
            return "-"
        return f"{self.rtt_median_ms:.3g} / {self.rtt_max_ms:.3g}"

    def merged(self, other: Optional["FlowTraffic"]) -> "FlowTraffic":
        """The counters of two flows drawn as one (an aggregated view)."""
        if other is None:
            return self

        def total(a: Optional[int], b: Optional[int]) -> Optional[int]:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return FlowTraffic(connections=self.connections + other.connections,
                           bytes_sent=total(self.bytes_sent, other.bytes_sent),
                           bytes_received=total(self.bytes_received, other.bytes_received),
                           retransmits=self.retransmits + other.retransmits,
                           rtts=tuple(sorted(self.rtts + other.rtts)),
                           packets_sent=total(self.packets_sent, other.packets_sent),
                           packets_received=total(self.packets_received, other.packets_received),
                           ip_bytes_sent=total(self.ip_bytes_sent, other.ip_bytes_sent),
                           ip_bytes_received=total(self.ip_bytes_received, other.ip_bytes_received))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connections": self.connections, "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
            "rtt_median_ms": self.rtt_median_ms if self.rtts else None,
            "rtt_max_ms": self.rtt_max_ms if self.rtts else None, "retransmits": self.retransmits}
        if self.packets_sent is not None:  # only when conntrack counted, so TCP-only JSON is unchanged
            out.update(packets_sent=self.packets_sent, packets_received=self.packets_received,
                       ip_bytes_sent=self.ip_bytes_sent, ip_bytes_received=self.ip_bytes_received)
        return out


@dataclass(frozen=True)
class FlowPeriod:
    """A flow across the cached runs of a period (`netviz stitch --since`, netviz.period): when it was
    first and last seen (the runs' start times) and in how many of the period's runs."""

    first_seen: float
    last_seen: float
    runs_seen: int
    runs_taken: int

    @property
    def always(self) -> bool:
        """Seen in every run of the period."""
        return self.runs_seen >= self.runs_taken

    def seen_text(self) -> str:
        """`seen in 3 of 1,008 runs`."""
        return f"seen in {self.runs_seen:,} of {self.runs_taken:,} runs"

    def to_json(self) -> dict[str, Any]:
        return {"first_seen": self.first_seen, "last_seen": self.last_seen, "runs_seen": self.runs_seen,
                "runs_taken": self.runs_taken, "share": round(self.runs_seen / self.runs_taken, 4)
                if self.runs_taken else 0.0}


# The change marks of a diff map (netviz.diff_map) on hosts, nodes and flows.
CHANGE_ADDED = "added"
CHANGE_REMOVED = "removed"
CHANGE_UNCHANGED = "unchanged"
CHANGE_NOT_COMPARED = "not_compared"  # a flow or node of a machine unreachable in one of the runs
CHANGE_UNREACHABLE = "unreachable"  # a machine not captured in one of the runs


@dataclass
class Flow:
    """Connections between two nodes on one service, collapsed into one edge with a count."""

    id: str
    client: str
    server: str
    proto: str
    server_port: int
    server_address: str
    count: int
    directed: bool = True
    inferred: bool = False
    via: Optional[str] = None
    client_pids: tuple[int, ...] = ()
    server_pids: tuple[int, ...] = ()
    window: Optional[FlowWindow] = None  # only when a snapshot of the group has a window
    # the fronts the clients dialled when `via` translated them: (address, port) on the NAT machine
    dialled: tuple[tuple[str, int], ...] = ()
    key: str = ""  # the natural key (flow_natural_key), the same in every run: set by with_natural_keys
    traffic: Optional[FlowTraffic] = None  # only when some connection's tcp_info was captured
    change: str = ""  # a diff map only (netviz.diff_map): added, removed, unchanged, not_compared
    count_before: Optional[int] = None  # a diff map: the count in run A when it changed
    period: Optional[FlowPeriod] = None  # `stitch --since` only: the runs of the period that saw it

    def dialled_text(self) -> str:
        """`10.0.0.254:15432`, `[fd00::1]:80`: the fronts dialled, comma-separated."""
        return ", ".join(f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                         for address, port in self.dialled)

    @property
    def short_lived(self) -> bool:
        """Seen by a window and not alive through all of it."""
        return self.window is not None and not self.window.persistent

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **({"key": self.key} if self.key else {}),
            "client": self.client,
            "server": self.server,
            "proto": self.proto,
            "server_port": self.server_port,
            "server_address": self.server_address,
            "count": self.count,
            "directed": self.directed,
            "inferred": self.inferred,
            "via": self.via,
            "client_pids": list(self.client_pids),
            "server_pids": list(self.server_pids),
            **(self.window.to_json() if self.window is not None else {}),
            **({"dialled": [{"address": address, "port": port} for address, port in self.dialled]}
               if self.dialled else {}),
            # only where counters were captured: documents without them keep their exact bytes
            **({"traffic": self.traffic.to_json()} if self.traffic is not None else {}),
            **({"change": self.change} if self.change else {}),
            **({"count_before": self.count_before} if self.count_before is not None else {}),
            **({"period": self.period.to_json()} if self.period is not None else {}),
        }


@dataclass
class FlowGraph:
    """The stitched group: hosts in name order, nodes and flows in a stable order with ids n1.., f1.."""

    group_by: str
    hosts: list[HostEntry] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    # What this view leaves out compared with the stitched group (filters, aggregation), one
    # sentence each; shown in the DOT label and the table footer, written as `notes` in JSON.
    notes: list[str] = field(default_factory=list)

    @property
    def outside(self) -> int:
        return sum(host.outside for host in self.hosts)

    @property
    def unresolved(self) -> int:
        return sum(host.unresolved for host in self.hosts)

    def node(self, node_id: str) -> Node:
        """The node with that id (KeyError when absent)."""
        for candidate in self.nodes:
            if candidate.id == node_id:
                return candidate
        raise KeyError(node_id)

    def nodes_by_id(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    def summary(self) -> dict[str, int]:
        return {
            "hosts": len(self.hosts),
            "nodes": len(self.nodes),
            "flows": len(self.flows),
            "connections": sum(flow.count for flow in self.flows),
            "outside": self.outside,
            "unresolved": self.unresolved,
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The `netviz.graph/1` document (docs/graph.md)."""
        document: dict[str, Any] = {
            "schema": GRAPH_SCHEMA,
            "group_by": self.group_by,
            "hosts": [host.to_json() for host in self.hosts],
            "nodes": [node.to_json() for node in self.nodes],
            "flows": [flow.to_json() for flow in self.flows],
            "summary": self.summary(),
        }
        if self.notes:  # only in filtered views: unfiltered documents keep their exact bytes
            document["notes"] = list(self.notes)
        return document

    def connections_by_node(self) -> dict[str, int]:
        """Connections touching each node id (a loopback flow between two processes counts for both)."""
        totals = {node.id: 0 for node in self.nodes}
        for flow in self.flows:
            totals[flow.client] = totals.get(flow.client, 0) + flow.count
            if flow.server != flow.client:
                totals[flow.server] = totals.get(flow.server, 0) + flow.count
        return totals


# ------------------------------------------------------------------------------------------
# natural keys: the same text in every run where it is the same thing (ids are positional)

HOST_NAMESPACE = "host"  # how a key names the machine's own network namespace
_KEY_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", ">": "\\>"})


def _part(text: object) -> str:
    """One part of a key, its separators escaped, so that a comm holding `|` cannot make two
    different things share a key."""
    return str(text).translate(_KEY_ESCAPES)


def machine_key(name: str) -> str:
    """A machine's key: its name in the group (the inventory name)."""
    return _part(name)


def namespace_key(node: Node) -> str:
    """`machine|namespace` of a node: the namespace's name when the snapshot knows one, else its
    inode; `host` for the machine's own."""
    return f"{machine_key(node.host)}|{_part(node.netns_name or node.netns or HOST_NAMESPACE)}"


def node_natural_key(node: Node, group_by: str) -> str:
    """`web1` (group-by host), `web1|host|nginx` (process), `web1|host|nginx|812` (pid),
    `web1|outside|203.0.113.9` (an outside peer; `*` for the peers past the cap)."""
    if node.kind == KIND_HOST:
        return machine_key(node.host)
    if node.kind == KIND_OUTSIDE:
        return f"{machine_key(node.host)}|outside|{_part(node.address or '*')}"
    named = getattr(node, group_by, "") if group_by in IDENTITY_GROUPS else ""
    key = f"{namespace_key(node)}|{_part(f'{group_by}={named}' if named else node.comm)}"
    if group_by == "pid" and len(node.pids) == 1 and not node.short_lived:
        key += f"|{node.pids[0]}"
    return key


def flow_natural_key(flow: Flow, client_key: str, server_key: str) -> str:
    """`client>server|proto|port|via`: the two node keys, the service and the NAT machine."""
    return f"{client_key}>{server_key}|{flow.proto}|{flow.server_port}|{_part(flow.via or '')}"


def listener_key(node: Node, item: Listening) -> str:
    """`machine|namespace|proto|address|port`: a port open on a machine, whoever holds it."""
    return f"{namespace_key(node)}|{item.proto}|{item.address}|{item.port}"


def with_natural_keys(graph: FlowGraph) -> FlowGraph:
    """Set the natural key of every machine, node and flow of a stitched graph (in place)."""
    for host in graph.hosts:
        host.key = machine_key(host.name)
    for node in graph.nodes:
        node.key = node_natural_key(node, graph.group_by)
    keys = {node.id: node.key for node in graph.nodes}
    for flow in graph.flows:
        flow.key = flow_natural_key(flow, keys[flow.client], keys[flow.server])
    return graph


def renumbered(graph: FlowGraph, hosts: list[HostEntry], nodes: list[Node], flows: list[Flow],
               notes: list[str]) -> FlowGraph:
    """A new graph of a subset (or a folding) of `graph`, its ids made dense again (n1.., f1..) in
    the given order, so that a view follows the same contract as a stitched graph."""
    new_ids = {node.id: f"n{number}" for number, node in enumerate(nodes, start=1)}
    return FlowGraph(
        group_by=graph.group_by,
        hosts=hosts,
        nodes=[dataclasses.replace(node, id=new_ids[node.id]) for node in nodes],
        flows=[
            dataclasses.replace(flow, id=f"f{number}", client=new_ids[flow.client], server=new_ids[flow.server])
            for number, flow in enumerate(flows, start=1)
        ],
        notes=notes,
    )

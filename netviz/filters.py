"""`--only` and `--exclude`: a smaller view of a FlowGraph, the same for every output format.

A term names a machine (its name, hostname, an inventory group, or one of its addresses), a
command, or a service (a port, `proto/port`, an address or network the server listens on).
Names may be shell-style patterns (`web*`, `kworker/*`). The rules, documented in docs/graph.md:

- `unit=NAME`, `container=NAME`, `image=NAME`, `pod=NAMESPACE/NAME` (patterns allowed) name the
  processes whose identity (netviz.identity) has it, and nothing else;
- a flow *matches* a term when either end is on a machine or runs a command the term names, or
  when its service does (port, `proto/port`, server address in the network), or, translated, its
  front (the address and port dialled) or the machine that translated it (`via`);
- a node *matches* when its machine or command is named, or it listens on the service;
- `--only`: keep the flows that match some term, the nodes they touch, and the nodes that match
  some term themselves (an idle listener of `--only 5432` stays);
- `--exclude` (after `--only`): drop the flows that match some term and the nodes whose machine or
  command is named; then drop the nodes left without a flow that had one, or that listen on an
  excluded service, unless they hold an ingress socket (they see traffic outside any flow);
- machines keep their outside and unresolved counts (they describe the machine, not the drawing);
  a machine named by `--exclude`, or left without nodes by `--only` (and not named by it), is
  not drawn. What was hidden is said in the graph's notes.

Pure: no I/O, nothing printed.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from netviz.graph import KIND_OUTSIDE, Flow, FlowGraph, HostEntry, Node, renumbered
from netviz.kinds import PROTOCOLS  # what `proto/port` may name: tcp, udp, udplite, sctp
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

_PROTO_PORT = re.compile(r"^(?P<proto>[a-z]+)/(?P<port>[0-9]{1,5})$")
_GLOB_CHARACTERS = set("*?[")
# `FIELD=NAME` terms: what a process is (netviz.identity), matched against the nodes' fields
IDENTITY_FIELDS = ("unit", "container", "image", "pod")


@dataclass(frozen=True)
class Term:
    """One `--only`/`--exclude` value, parsed once."""

    text: str
    port: Optional[int] = None  # a bare number or proto/port
    proto: Optional[str] = None  # only with proto/port
    network: Optional[Network] = None  # an address (a /32 or /128) or a network
    field: Optional[str] = None  # `unit=...`, `container=...`, `image=...`, `pod=...`: what it names
    value: str = ""  # with `field`: the name or pattern after the `=`

    @property
    def is_pattern(self) -> bool:
        return any(char in _GLOB_CHARACTERS for char in (self.value if self.field else self.text))

    def names(self, name: str) -> bool:
        """Does the term name `name` (exactly, or as a shell-style pattern)?"""
        wanted = self.value if self.field else self.text
        if self.is_pattern:
            return fnmatch.fnmatchcase(name, wanted)
        return name == wanted

    def serves(self, proto: str, port: int) -> bool:
        """Is `proto` `port` the service this term names?"""
        return self.port is not None and port == self.port and (self.proto is None or proto == self.proto)

    def contains(self, address: Optional[str]) -> bool:
        """Is `address` in the term's network?"""
        if self.network is None or not address:
            return False
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        return parsed.version == self.network.version and parsed in self.network


def parse_term(text: str) -> Term:
    """Parse one value; raises ValueError with a message for the user when it cannot be a term."""
    text = text.strip()
    if not text:
        raise ValueError("an empty filter term matches nothing")
    field, equals, value = text.partition("=")
    if equals and field in IDENTITY_FIELDS:
        if not value:
            raise ValueError(f"{text!r}: name a {field} after the '='")
        return Term(text, field=field, value=value)
    if text.isdigit():
        port = int(text)
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: a port is between 1 and 65535")
        return Term(text, port=port)
    found = _PROTO_PORT.match(text.lower())
    if found:
        proto, port = found["proto"], int(found["port"])
        if proto not in PROTOCOLS:
            raise ValueError(f"{text!r}: the protocol is one of {', '.join(PROTOCOLS)}")
        if not 0 < port < 65536:
            raise ValueError(f"{text!r}: a port is between 1 and 65535")
        return Term(text, port=port, proto=proto)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return Term(text)
    return Term(text, network=network)


@dataclass(frozen=True)
class FilterSpec:
    """What to keep and what to hide; `groups` maps inventory group names to their machines."""

    only: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, only: Sequence[str] = (), exclude: Sequence[str] = (),
              groups: Optional[Mapping[str, Sequence[str]]] = None) -> "FilterSpec":
        """Parse the raw option values (commas separate several terms in one value)."""
        return cls(
            only=tuple(parse_term(part) for value in only for part in _split(value)),
            exclude=tuple(parse_term(part) for value in exclude for part in _split(value)),
            groups=dict(groups or {}),
        )

    def __bool__(self) -> bool:
        return bool(self.only or self.exclude)

    def describe(self) -> str:
        """The options as the user would write them again."""
        words = [f"--only {term.text}" for term in self.only] + [f"--exclude {term.text}" for term in self.exclude]
        return " ".join(words)


def _split(value: str) -> list[str]:
    return [part for part in value.split(",") if part.strip()] or [value]


@dataclass(frozen=True)
class FilterResult:
    """The filtered graph, plus the terms that matched nothing (likely typos, said to the user)."""

    graph: FlowGraph
    unmatched: tuple[str, ...] = ()


class _Matcher:
    """Answers "does this term name that node / flow" against one graph. What a term names among
    machines and nodes is worked out once per term; flows then only look up their two ends."""

    def __init__(self, graph: FlowGraph, groups: Mapping[str, Sequence[str]]) -> None:
        self.graph = graph
        self.groups = {name: frozenset(members) for name, members in groups.items()}
        self._machines: dict[Term, frozenset[str]] = {}
        self._identified: dict[Term, frozenset[str]] = {}
        self._listening: dict[Term, frozenset[str]] = {}

    def machines(self, term: Term) -> frozenset[str]:
        """Names of the machines the term names (by name, hostname, group or address)."""
        if term.field is not None:
            return frozenset()  # `unit=...` and the like name processes, never machines
        if term not in self._machines:
            in_groups = set().union(*(members for group, members in self.groups.items() if term.names(group)))
            self._machines[term] = frozenset(
                host.name for host in self.graph.hosts
                if term.names(host.name) or term.names(host.hostname) or host.name in in_groups
                or any(term.contains(address) for address in host.addresses)
            )
        return self._machines[term]

    def identified(self, term: Term) -> frozenset[str]:
        """Ids of the nodes on a named machine or running a named command (outside nodes have none)."""
        if term not in self._identified:
            machines = self.machines(term)
            if term.field is not None:
                self._identified[term] = frozenset(
                    node.id for node in self.graph.nodes if _names_field(term, getattr(node, term.field, "")))
                return self._identified[term]
            self._identified[term] = frozenset(
                node.id for node in self.graph.nodes
                if node.host in machines or (node.kind != KIND_OUTSIDE and term.names(node.comm))
            )
        return self._identified[term]

    def listening(self, term: Term) -> frozenset[str]:
        """Ids of the nodes listening on the term's service or address."""
        if term not in self._listening:
            self._listening[term] = frozenset(
                node.id for node in self.graph.nodes
                if any(term.serves(item.proto, item.port) or (term.port is None and term.contains(item.address))
                       for item in node.listening)
            )
        return self._listening[term]

    def node(self, term: Term, node: Node) -> bool:
        return node.id in self.identified(term) or node.id in self.listening(term)

    def flow(self, term: Term, flow: Flow) -> bool:
        if term.serves(flow.proto, flow.server_port) or (term.port is None and term.contains(flow.server_address)):
            return True
        # a translated flow is also the service its clients dialled, on the machine that translated it
        if any(term.serves(flow.proto, port) or (term.port is None and term.contains(address))
               for address, port in flow.dialled):
            return True
        if flow.via is not None and flow.via in self.machines(term):
            return True
        named = self.identified(term)
        return flow.client in named or flow.server in named


def _names_field(term: Term, value: str) -> bool:
    """A `FIELD=` term against a node's field; a pod is named with or without its namespace."""
    if not value:
        return False
    return term.names(value) or (term.field == "pod" and term.names(value.rpartition("/")[2]))


def apply_filters(graph: FlowGraph, spec: FilterSpec) -> FilterResult:
    """The view of `graph` that `spec` asks for (the graph itself when the spec is empty)."""
    if not spec:
        return FilterResult(graph)
    match = _Matcher(graph, spec.groups)

    def any_flow(terms: Sequence[Term], flow: Flow) -> bool:
        return any(match.flow(term, flow) for term in terms)

    had_flows = {end for flow in graph.flows for end in (flow.client, flow.server)}
    flows = list(graph.flows)
    nodes = list(graph.nodes)
    named_hosts: set[str] = set()
    if spec.only:
        flows = [flow for flow in flows if any_flow(spec.only, flow)]
        touched = {end for flow in flows for end in (flow.client, flow.server)}
        nodes = [node for node in nodes if node.id in touched or any(match.node(term, node) for term in spec.only)]
        named_hosts = set().union(*(match.machines(term) for term in spec.only))
    dropped_hosts: set[str] = set()
    if spec.exclude:
        flows = [flow for flow in flows if not any_flow(spec.exclude, flow)]
        nodes = [node for node in nodes if not any(node.id in match.identified(term) for term in spec.exclude)]
        kept_ids = {node.id for node in nodes}
        flows = [flow for flow in flows if flow.client in kept_ids and flow.server in kept_ids]
        still = {end for flow in flows for end in (flow.client, flow.server)}
        nodes = [
            node for node in nodes
            if node.id in still or node.ingress or not (
                node.id in had_flows or any(node.id in match.listening(term) for term in spec.exclude)
            )
        ]
        dropped_hosts = set().union(*(match.machines(term) for term in spec.exclude))
    with_nodes = {node.host for node in nodes}
    hosts = [
        host for host in graph.hosts
        if host.name not in dropped_hosts and (not spec.only or host.name in with_nodes or host.name in named_hosts)
    ]
    shown = {host.name for host in hosts}
    nodes = [node for node in nodes if node.host in shown]
    kept_ids = {node.id for node in nodes}
    flows = [flow for flow in flows if flow.client in kept_ids and flow.server in kept_ids]
    note = _note(graph, spec, hosts, nodes, flows)
    view = renumbered(graph, hosts, nodes, flows, list(graph.notes) + [note])
    return FilterResult(view, _unmatched(graph, spec, match))


def _unmatched(graph: FlowGraph, spec: FilterSpec, match: _Matcher) -> tuple[str, ...]:
    """Terms that name nothing in the whole group (typos, most likely)."""
    def names_something(term: Term) -> bool:
        return bool(
            match.machines(term) or match.identified(term) or match.listening(term)
            or any(match.flow(term, flow) for flow in graph.flows)
        )

    return tuple(term.text for term in spec.only + spec.exclude if not names_something(term))


def _note(graph: FlowGraph, spec: FilterSpec, hosts: list[HostEntry], nodes: list[Node], flows: list[Flow]) -> str:
    """One sentence: which filters, and how much of the group they hide."""
    before = sum(flow.count for flow in graph.flows)
    after = sum(flow.count for flow in flows)
    parts = [
        f"{len(graph.hosts) - len(hosts)} of {len(graph.hosts)} machines",
        f"{len(graph.nodes) - len(nodes)} of {len(graph.nodes)} nodes",
        f"{len(graph.flows) - len(flows)} of {len(graph.flows)} flows ({before - after} of {before} connections)",
    ]
    return f"filtered by {spec.describe()}: hidden " + ", ".join(parts)


def stitch_filtered(
    snapshots: Sequence[object],
    *,
    group_by: str = "process",
    show_external: bool = False,
    stale: Collection[str] = (),
    filters: Optional[FilterSpec] = None,
) -> tuple[FlowGraph, list[str]]:
    """Stitch `snapshots` and apply `filters`: (graph, notices for the user).

    Filters see processes even under `--group-by host` (`--exclude sshd` must hide sshd's flows
    from the machine view too): the group is then stitched by process, filtered, and each
    machine's nodes merged into one.
    """
    from netviz.aggregate import by_machine
    from netviz.stitch import stitch

    filters = filters or FilterSpec()
    if not filters:
        return stitch(snapshots, group_by=group_by, show_external=show_external, stale=stale), []
    stitched_by = "process" if group_by == "host" else group_by
    graph = stitch(snapshots, group_by=stitched_by, show_external=show_external, stale=stale)
    result = apply_filters(graph, filters)
    view = by_machine(result.graph) if group_by == "host" else result.graph
    notices = [f"filter term {text!r} matched nothing in this group" for text in result.unmatched]
    notices.extend(view.notes[-1:])
    return view, notices

"""The FlowGraph: nodes for every process in a flow, a listener or an ingress point, the flows
in a stable order, and one entry per machine with its counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from netviz.graph import (
    KIND_HOST,
    KIND_OUTSIDE,
    NETNS_SEPARATOR,
    KIND_PROCESS,
    RANK_OUTSIDE,
    RANK_SHORT_LIVED,
    RANK_UNATTRIBUTED,
    SHORT_LIVED,
    UNATTRIBUTED,
    Flow,
    FlowGraph,
    FlowWindow,
    HostEntry,
    HostWindow,
    Ingress,
    Listening,
    Node,
    NodeKey,
    UnresolvedConnection,
    node_key,
    with_natural_keys,
)
from netviz.snapshot import Snapshot
from netviz.stitch.addresses import Scope, address_sort_key, normalize_address, scope
from netviz.stitch.index import SocketIndex
from netviz.stitch.links import Links, Tally
from netviz.stitch.machines import Machine, main_namespace
from netviz.stitch.window import Holder, ShortLived, WindowLink, WindowLinks

MAX_UNRESOLVED_EXAMPLES = 10  # per machine, in the graph's `unresolved_examples`


def build_graph(machines: Sequence[Machine], index: SocketIndex, links: Links, stale: frozenset[str],
                window: Optional[WindowLinks] = None) -> FlowGraph:
    """The FlowGraph of the group; node ids and flow ids follow the sorted natural keys.

    `window` (None in instant mode) adds what the observation windows saw: its facts on the
    flows drawn, flows of their own for the others, and their short-lived nodes."""
    group_by = links.group_by
    listening = _listening(machines, index)
    ingress: dict[NodeKey, set[Ingress]] = {}
    for (machine_index, pid), items in index.ingress.items():
        ingress.setdefault(machines[machine_index].key(pid), set()).update(items)
    wanted: set[NodeKey] = set()
    for client_key, server_key, *_ in links.links:
        wanted.add(client_key)
        wanted.add(server_key)
    if window is not None:
        for client_key, server_key, *_ in window.links:
            wanted.add(client_key)
            wanted.add(server_key)
    wanted.update(listening)
    wanted.update(ingress)
    if group_by == "host":
        wanted.update(node_key("host", machine.index, None, "") for machine in machines)

    members = _members(machines, group_by, wanted)
    ordered = sorted(wanted)
    ids = {key: f"n{number}" for number, key in enumerate(ordered, start=1)}
    nodes = [
        _node(machines, group_by, key, ids[key], members.get(key, []), listening.get(key, set()), ingress.get(key, set()),
              window)
        for key in ordered
    ]
    hosts = [_host(machine, links.tallies[machine.index], stale) for machine in machines]
    graph = FlowGraph(group_by=group_by, hosts=hosts, nodes=nodes, flows=_flows(machines, links, ordered, ids, window))
    return with_natural_keys(graph)


def _listening(machines: Sequence[Machine], index: SocketIndex) -> dict[NodeKey, set[Listening]]:
    listening: dict[NodeKey, set[Listening]] = {}
    for bucket in index.listeners.values():
        for listener in bucket:
            items = listening.setdefault(machines[listener.machine].key(listener.owner), set())
            for address in listener.locals_:
                items.add(Listening(listener.kind, address, listener.local_port))
    return listening


def _flows(machines: Sequence[Machine], links: Links, ordered: list[NodeKey], ids: dict[NodeKey, str],
           window: Optional[WindowLinks] = None) -> list[Flow]:
    rank_of = {key: rank for rank, key in enumerate(ordered)}

    def flow_order(item: tuple[tuple, list]) -> tuple:
        (client_key, server_key, kind, port, directed, inferred, via), _ = item
        return (rank_of[client_key], rank_of[server_key], kind, port, not directed, inferred, via or "")

    items = sorted(links.links.items(), key=flow_order)
    seen: dict[tuple, FlowWindow] = {}
    if window is not None:
        items, seen = _with_window(machines, items, window)
        items.sort(key=flow_order)
    flows = []
    for number, (key, link) in enumerate(items, start=1):
        client_key, server_key, kind, port, directed, inferred, via = key
        count, address, client_pids, server_pids, dialled = link
        flows.append(
            Flow(
                id=f"f{number}", client=ids[client_key], server=ids[server_key], proto=kind,
                server_port=port, server_address=address, count=count, directed=directed,
                inferred=inferred, via=via, client_pids=tuple(sorted(client_pids)),
                server_pids=tuple(sorted(server_pids)), window=seen.get(key),
                dialled=tuple(sorted(dialled, key=lambda front: (address_sort_key(front[0]), front[1]))),
                traffic=links.traffic.facts(key) if links.traffic.any else None,
            )
        )
    return flows


def _with_window(machines: Sequence[Machine], items: list[tuple[tuple, list]],
                 window: WindowLinks) -> tuple[list[tuple[tuple, list]], dict]:
    """The instant links (in flow order) and the window's: a window link goes to the first directed
    instant link between the same nodes on the same service, else it becomes a link of its own
    with count 0 (none of its connections was alive at the closing capture).

    An instant link no window link reached, from a machine that was observed, began after the
    window's last sample (a one-shot client caught only by the closing capture): it is drawn
    short-lived, seen at that capture, never as if it had lasted the whole window."""
    first: dict[tuple, tuple] = {}
    for key, _ in items:
        client_key, server_key, kind, port, directed, _inferred, via = key
        if directed:
            first.setdefault((client_key, server_key, kind, port, via), key)
    items = [(key, [link[0], link[1], set(link[2]), set(link[3]), set(link[4])]) for key, link in items]
    by_key = dict(items)
    seen: dict[tuple, FlowWindow] = {}
    for short_key, found in window.links.items():
        facts = _flow_window(found)
        key = first.get(short_key)
        if key is None:
            client_key, server_key, kind, port, via = short_key
            key = (client_key, server_key, kind, port, True, found.inferred, via)
            link = [0, found.server_address, set(), set(), set()]
            items.append((key, link))
            by_key[key] = link
        link = by_key[key]
        link[2].update(found.client_pids)
        link[3].update(found.server_pids)
        seen[key] = facts
    for key, link in items:
        observed = machines[key[0][0]].snapshot
        if key not in seen and observed.window is not None and not observed.window.flows_overflow:
            length = observed.window.ended_at - observed.window.started_at
            seen[key] = FlowWindow(first_seen=observed.host.captured_at, last_seen=observed.host.captured_at,
                                   connections=link[0], persistent=False, seconds=length)
    return items, seen


def _flow_window(link: WindowLink) -> FlowWindow:
    facts = link.seen
    moved = facts.moved
    return FlowWindow(first_seen=facts.first_seen, last_seen=facts.last_seen, connections=facts.connections,
                      persistent=facts.persistent, seconds=facts.seconds,
                      bytes_sent=None if moved is None else moved.sent,
                      bytes_received=None if moved is None else moved.received,
                      bytes_since=None if moved is None else moved.since,
                      bytes_until=None if moved is None else moved.until)


def _members(machines: Sequence[Machine], group_by: str, wanted: set[NodeKey]) -> dict[NodeKey, list]:
    """The processes behind each wanted node (only processes holding at least one socket)."""
    members: dict[NodeKey, list] = {}
    for machine in machines:
        for process in machine.snapshot.processes:
            if not process.sockets:
                continue
            key = machine.key(process.pid)
            if key in wanted:
                members.setdefault(key, []).append(process)
    return members


def _node(machines: Sequence[Machine], group_by: str, key: NodeKey, node_id: str, processes: list,
          listening: set[Listening], ingress: set[Ingress], window: Optional[WindowLinks] = None) -> Node:
    machine_index, rank, identity = key
    machine = machines[machine_index]
    host = machine.snapshot.name
    if rank == RANK_OUTSIDE:
        names = machine.snapshot.hosts_names.get(str(identity)) if identity else None
        return Node(id=node_id, host=host, kind=KIND_OUTSIDE, comm="outside", address=str(identity),
                    peer_name=names[0] if names else "")
    if rank == RANK_SHORT_LIVED:
        assert window is not None
        return _short_lived_node(machine, node_id, window.short_lived[key])
    if rank == RANK_UNATTRIBUTED:
        return Node(
            id=node_id, host=host, kind=KIND_PROCESS, comm=UNATTRIBUTED,
            listening=tuple(sorted(listening)), ingress=tuple(sorted(ingress)), sockets=machine.unattributed,
        )
    processes = sorted(processes, key=lambda process: process.pid)
    inodes: set[int] = set()
    for process in processes:
        inodes.update(process.sockets)
    if group_by == "host":
        return Node(
            id=node_id, host=host, kind=KIND_HOST, comm=host,
            listening=tuple(sorted(listening)), ingress=tuple(sorted(ingress)),
            sockets=sum(len(ns.sockets) for ns in machine.snapshot.namespaces),
        )
    first = processes[0] if processes else None
    gone: Optional[Holder] = window.holders.get(key) if window is not None else None
    pids = tuple(process.pid for process in processes)
    if not pids and gone is not None:  # seen holding the key's sockets during the window only
        pids = tuple(sorted(gone.pids))
    netns = machine.netns_tag(first.netns) if first else str(key[2]).partition(NETNS_SEPARATOR)[2]
    who = _shared_identity(machine, processes)
    return Node(
        id=node_id,
        host=host,
        kind=KIND_PROCESS,
        comm=(machine.name(first.pid) if first else gone.comm if gone is not None
              else str(key[2]).partition(NETNS_SEPARATOR)[0]),
        **who,
        netns=netns,
        netns_name=machine.netns_names.get(int(netns), "") if netns else "",
        pids=pids,
        users=tuple(sorted({process.user if process.user is not None else str(process.uid) for process in processes})),
        contexts=tuple(sorted({process.context for process in processes if process.context is not None})),
        cmdline=(" ".join(first.cmdline) if first and first.cmdline else (first.comm if first else "")),
        listening=tuple(sorted(listening)),
        ingress=tuple(sorted(ingress)),
        sockets=len(inodes),
    )


def _shared_identity(machine: Machine, processes: list) -> dict[str, str]:
    """The unit, container, image and pod the node's processes all share (absent when they differ)."""
    shared: dict[str, str] = {}
    identities = [machine.identity(process.pid) for process in processes]
    for field, value_of in (("unit", lambda i: i.unit), ("container", lambda i: i.container),
                            ("image", lambda i: i.image), ("pod", lambda i: i.pod or i.pod_uid)):
        values = {value_of(identity) for identity in identities}
        if len(values) == 1 and None not in values:
            shared[field] = values.pop()
    return shared


def _short_lived_node(machine: Machine, node_id: str, entry: ShortLived) -> Node:
    """A machine's end of connections no process was seen holding: its uids, and the command of
    the one exec group that matches them all, marked inferred."""
    names = {process.uid: process.user for process in machine.snapshot.processes if process.user is not None}
    command = next(iter(entry.commands)) if len(entry.commands) == 1 and not entry.unknown_command else ""
    return Node(
        id=node_id, host=machine.snapshot.name, kind=KIND_PROCESS, comm=SHORT_LIVED,
        users=tuple(sorted(names.get(uid, str(uid)) for uid in entry.uids)), cmdline=command,
        short_lived=True, command_inferred=bool(command),
    )


def _host_window(snapshot: Snapshot) -> Optional[HostWindow]:
    window = snapshot.window
    if window is None:
        return None
    return HostWindow(started_at=window.started_at, ended_at=window.ended_at, samples=window.samples,
                      sources=tuple((source.name, source.state) for source in window.sources),
                      flows_overflow=window.flows_overflow)


def _host(machine: Machine, tally: Tally, stale: frozenset[str]) -> HostEntry:
    snapshot = machine.snapshot
    main = main_namespace(snapshot)
    addresses: set[str] = set()
    for namespace in snapshot.namespaces:
        if namespace.inode != main:
            continue
        for address in namespace.addresses:
            text = normalize_address(address.address)
            if scope(text) is Scope.GLOBAL:
                addresses.add(text)
    return HostEntry(
        name=snapshot.name,
        hostname=snapshot.host.hostname,
        machine_id=snapshot.host.machine_id,
        addresses=tuple(sorted(addresses, key=address_sort_key)),
        captured_at=snapshot.host.captured_at,
        stale=snapshot.name in stale,
        complete=snapshot.coverage.complete,
        legacy=snapshot.legacy,
        outside_inbound=tally.outside_inbound,
        outside_outbound=tally.outside_outbound,
        unresolved=tally.unresolved,
        # the same few whatever the order of the input: the first in sorted order
        unresolved_examples=tuple(sorted(tally.unresolved_examples, key=_example_order)[:MAX_UNRESOLVED_EXAMPLES]),
        window=_host_window(snapshot),
    )


def _example_order(example: UnresolvedConnection) -> tuple:
    return (example.proto, address_sort_key(example.local), example.local_port, address_sort_key(example.remote),
            example.remote_port, example.pid is None, example.pid or 0, example.why)




"""A simulation, on cached snapshots, of mapping a fleet in shards (docs/scale.md, "Beyond one machine").

    python3 benchmarks/shards.py FLEET_DIR [--shards 4] [--check]

A fleet too large for one control machine is collected in shards (inventory groups, one control
machine each) writing to shared storage. Each shard is then stitched on its own, and the
connections that cross shards are joined in a second pass over much less data: every machine's
"boundary", that is its connected sockets whose peer address another shard's machine owns, all
its listeners and bound datagram sockets (to attach and orient cross-shard connections), its
conntrack table (NAT across shards) and its processes and addresses (small). The flows of the
shards and of the boundary pass together are the flows of the whole fleet: `--check` stitches
the whole fleet as well and compares them flow by flow (natural key, direction, inference and
count), and tests/test_stitch_scale.py does so on a small synthetic fleet.

What it leaves out, and why it is only a simulation: the per-machine `outside` and `unresolved`
counts are those of each pass (a cross-shard connection is `outside` in its shard); a real
deployment would take them from the boundary pass. Addresses that several machines own
(docker0's 172.17.0.1) are never a reason to cross shards: they resolve inside their machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from netviz.graph import FlowGraph  # noqa: E402
from netviz.kinds import DATAGRAM_PROTOCOLS, JOIN_PROTOCOL  # noqa: E402
from netviz.snapshot import Snapshot  # noqa: E402
from netviz.stitch import normalize_address, stitch  # noqa: E402
from netviz.stitch.addresses import Scope, scope  # noqa: E402

FlowCounts = Counter  # (flow natural key, directed, inferred) -> connections


def flow_counts(graph: FlowGraph) -> FlowCounts:
    """The flows of a graph by natural key, direction and inference, with their connection counts."""
    counts: FlowCounts = Counter()
    for flow in graph.flows:
        counts[(flow.key, flow.directed, flow.inferred)] += flow.count
    return counts


def shards_of(snapshots: Sequence[Snapshot], count: int) -> list[list[Snapshot]]:
    """`count` contiguous shards of the machines in name order (as inventory groups would be)."""
    ordered = sorted(snapshots, key=lambda snapshot: snapshot.name)
    size = -(-len(ordered) // count)
    return [ordered[start:start + size] for start in range(0, len(ordered), size)]


def owners(snapshots: Sequence[Snapshot]) -> dict[str, set[int]]:
    """Global address -> the shards whose machines own it (the fleet's small address directory)."""
    found: dict[str, set[int]] = {}
    for snapshot in snapshots:
        for namespace in snapshot.namespaces:
            for address in namespace.addresses:
                text = normalize_address(address.address)
                if scope(text) is Scope.GLOBAL:
                    found.setdefault(text, set()).add(id(snapshot))
    return found


def boundary(snapshot: Snapshot, foreign: frozenset[str]) -> Snapshot:
    """What the cross-shard pass needs of one machine: connected sockets whose peer address is
    owned by another shard, every listener and bound datagram socket, conntrack, processes."""
    namespaces = []
    for namespace in snapshot.namespaces:
        kept = []
        for socket in namespace.sockets:
            kind = JOIN_PROTOCOL.get(socket.proto)
            if kind is None:
                continue
            remotes = {normalize_address(address) for address in (socket.remote, *socket.remote_all) if address}
            unconnected = not socket.remote_port or socket.remote is None or socket.remote in ("0.0.0.0", "::")
            if socket.state == "LISTEN" or (unconnected and kind in DATAGRAM_PROTOCOLS) or remotes & foreign:
                kept.append(socket)
        namespaces.append(dataclasses.replace(namespace, sockets=tuple(kept)))
    return dataclasses.replace(snapshot, namespaces=tuple(namespaces))


def sharded_stitch(snapshots: Sequence[Snapshot], count: int, report: bool = False) -> tuple[FlowCounts, dict]:
    """Stitch each shard alone, then the boundary of every machine together: the fleet's flows,
    and figures (seconds per shard, boundary sockets)."""
    shards = shards_of(snapshots, count)
    figures: dict = {"shards": [], "sockets": 0, "boundary_sockets": 0}
    total: FlowCounts = Counter()
    for number, shard in enumerate(shards):
        started = time.process_time()
        total.update(flow_counts(stitch(shard)))
        figures["shards"].append(time.process_time() - started)
        if report:
            print(f"  shard {number + 1}/{len(shards)}: {len(shard):,} machines, stitched in "
                  f"{figures['shards'][-1]:.2f} s CPU", flush=True)
    started = time.process_time()
    owned = owners(snapshots)
    shard_of = {id(snapshot): number for number, shard in enumerate(shards) for snapshot in shard}
    edges = []
    for number, shard in enumerate(shards):
        # the addresses owned by exactly one machine, of another shard
        foreign = frozenset(address for address, machines in owned.items()
                            if len(machines) == 1 and shard_of[next(iter(machines))] != number)
        for snapshot in shard:
            edges.append(boundary(snapshot, foreign))
    figures["sockets"] = sum(len(ns.sockets) for snapshot in snapshots for ns in snapshot.namespaces)
    figures["boundary_sockets"] = sum(len(ns.sockets) for snapshot in edges for ns in snapshot.namespaces)
    figures["boundary_cut"] = time.process_time() - started
    started = time.process_time()
    crossing = flow_counts(stitch(edges))
    figures["boundary_stitch"] = time.process_time() - started
    # the boundary pass also sees connections inside one shard (both ends kept as listeners,
    # bound datagram sockets): keep only the flows between machines of different shards
    host_shard = {snapshot.name: shard_of[id(snapshot)] for snapshot in snapshots}
    for (key, directed, inferred), connections in crossing.items():
        client, _, server = key.partition(">")
        if host_shard[_host_of(client)] != host_shard[_host_of(server)]:
            total[(key, directed, inferred)] += connections
    return total, figures


def _host_of(node_key: str) -> str:
    """The machine name at the start of a node's natural key (`|` inside a name is escaped)."""
    name, escaped = [], False
    for char in node_key:
        if escaped:
            name.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            break
        else:
            name.append(char)
    return "".join(name)


def main(argv: list[str] | None = None) -> int:
    from netviz.group import load_group

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fleet", type=Path, help="a directory of snapshots (benchmarks/synth.py writes one)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--check", action="store_true", help="stitch the whole fleet too and compare the flows")
    arguments = parser.parse_args(argv)
    started = time.process_time()
    group = load_group([arguments.fleet])
    print(f"loaded {len(group.snapshots):,} machines in {time.process_time() - started:.1f} s CPU", flush=True)
    flows, figures = sharded_stitch(group.snapshots, arguments.shards, report=True)
    share = figures["boundary_sockets"] / max(1, figures["sockets"])
    print(f"boundary: {figures['boundary_sockets']:,} of {figures['sockets']:,} sockets ({share:.1%}), cut in "
          f"{figures['boundary_cut']:.2f} s, stitched in {figures['boundary_stitch']:.2f} s CPU")
    print(f"sharded: {len(flows):,} flows, {sum(flows.values()):,} connections; slowest shard "
          f"{max(figures['shards']):.2f} s, all shards {sum(figures['shards']):.2f} s CPU")
    if arguments.check:
        started = time.process_time()
        whole = flow_counts(stitch(group.snapshots))
        print(f"whole fleet: {len(whole):,} flows, {sum(whole.values()):,} connections, "
              f"stitched in {time.process_time() - started:.2f} s CPU")
        if whole != flows:
            missing, extra = whole - flows, flows - whole
            print(f"DIFFERENT: {len(missing)} flows short, {len(extra)} in excess, e.g. "
                  f"{next(iter(missing or extra))}")
            return 1
        print("the same flows, flow by flow")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the exact join costs per socket in three representations, on the same cached fleet.

    python3 benchmarks/bench_representation.py FLEET_DIR [--machines 200]

The stitch spends its memory on one object per socket and its time on building and indexing them
(docs/scale.md, "Stitch"). This measures, on the first `--machines` snapshots of a fleet written by
benchmarks/synth.py, only the part every representation must do: read the sockets and pair the
connected ones whose four-tuples are each other's reversed (the exact join, rule 4). Each variant
runs in a fresh child; the figures are CPU time and bytes per socket (tracemalloc: what the
structures hold once joined, the JSON trees freed; CPU time includes tracemalloc's own overhead,
which weighs on both variants alike):

- objects: today's path: netviz's loader (Snapshot, slotted Socket records), then a dict from a
  6-tuple key to a small slotted object per connected socket (as netviz.stitch.index does);
- columns: the same JSON read into array-module columns (address strings interned to ids), then
  a dict from one packed int key to the row number;
- (DuckDB: benchmarks/bench_decoders.py measures its JSON reading and its exact join when it is
  installed; issue 15 measured a DuckDB prototype at 0.55x the memory and 1.9x less CPU than the
  object path, with JSON parsing its largest cost.)

It is a measurement of representations, not a second stitcher: it checks only that each variant
pairs the same number of sockets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from array import array
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = ("objects", "columns")


def _objects(files: list[Path]) -> tuple[int, int, object]:
    from netviz.group import load_group

    class End:
        __slots__ = ("machine", "inode", "key", "state")

        def __init__(self, machine: int, inode: int, key: tuple) -> None:
            self.machine, self.inode, self.key, self.state = machine, inode, key, 0

    group = load_group(files)
    index: dict[tuple, object] = {}
    ends = []
    for number, snapshot in enumerate(group.snapshots):
        for namespace in snapshot.namespaces:
            for socket in namespace.sockets:
                if not socket.remote_port or socket.state == "LISTEN" or socket.remote in ("0.0.0.0", "::"):
                    continue
                local, remote = socket.local.removeprefix("::ffff:"), socket.remote.removeprefix("::ffff:")
                key = (socket.proto.rstrip("6"), local, socket.local_port, remote, socket.remote_port, None)
                end = End(number, socket.inode, key)
                ends.append(end)
                index[key] = end
    paired = 0
    for end in ends:
        kind, local, local_port, remote, remote_port, zone = end.key
        other = index.get((kind, remote, remote_port, local, local_port, zone))
        if other is not None and other is not end:
            paired += 1
    return sum(len(ns.sockets) for snapshot in group.snapshots for ns in snapshot.namespaces), paired, (group, index, ends)


def _columns(files: list[Path]) -> tuple[int, int, object]:
    import orjson

    ids: dict[str, int] = {}
    kinds = {"tcp": 0, "tcp6": 0, "udp": 1, "udp6": 1}
    machine, inode, kind, local, local_port, remote, remote_port = (
        array("I"), array("Q"), array("B"), array("I"), array("H"), array("I"), array("H"))
    sockets = 0
    for number, path in enumerate(files):
        document = orjson.loads(path.read_bytes())
        for namespace in document["namespaces"]:
            for socket in namespace["sockets"]:
                sockets += 1
                code = kinds.get(socket["proto"])
                if (code is None or not socket["remote_port"] or socket["state"] == "LISTEN"
                        or socket["remote"] in ("0.0.0.0", "::")):
                    continue
                near, far = socket["local"].removeprefix("::ffff:"), socket["remote"].removeprefix("::ffff:")
                machine.append(number)
                inode.append(socket["inode"])
                kind.append(code)
                local.append(ids.setdefault(near, len(ids)))
                local_port.append(socket["local_port"])
                remote.append(ids.setdefault(far, len(ids)))
                remote_port.append(socket["remote_port"])
        del document
    rows = len(kind)
    index = {}
    for row in range(rows):
        index[(((kind[row] << 24 | local[row]) << 16 | local_port[row]) << 24 | remote[row]) << 16 | remote_port[row]] = row
    paired = 0
    for row in range(rows):
        other = index.get((((kind[row] << 24 | remote[row]) << 16 | remote_port[row]) << 24 | local[row]) << 16
                          | local_port[row])
        if other is not None and other != row:
            paired += 1
    return sockets, paired, (ids, machine, inode, kind, local, local_port, remote, remote_port, index)


def measure_here(variant: str, fleet: Path, machines: int) -> dict:
    files = sorted(fleet.glob("*.json"))[:machines]
    tracemalloc.start()
    started = time.process_time()
    sockets, paired, held = (_objects if variant == "objects" else _columns)(files)
    seconds = time.process_time() - started
    held_bytes = tracemalloc.get_traced_memory()[0]  # what the variant holds once joined
    del held
    return {"variant": variant, "sockets": sockets, "paired": paired, "cpu": seconds, "held": held_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fleet", type=Path)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child's job
    arguments = parser.parse_args(argv)
    if arguments.variant:
        print(json.dumps(measure_here(arguments.variant, arguments.fleet, arguments.machines)))
        return 0
    results = []
    for variant in VARIANTS:
        output = subprocess.run([sys.executable, __file__, str(arguments.fleet), "--machines", str(arguments.machines),
                                 "--variant", variant], check=True, capture_output=True, text=True).stdout
        result = json.loads(output)
        results.append(result)
        print(f"{variant:<8} {result['sockets']:>10,} sockets, {result['paired']:>9,} paired: "
              f"{result['cpu'] / result['sockets'] * 1e6:6.2f} µs CPU and {result['held'] / result['sockets']:6.0f} "
              f"bytes held (tracemalloc) per socket", flush=True)
    if len({result["paired"] for result in results}) != 1:
        print("DIFFERENT: the variants paired different numbers of sockets")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic snapshot documents (docs/snapshot.md) for a fleet of machines that talk to each other.

    from benchmarks.synth import make_fleet
    documents = make_fleet(machines=100, sockets_per_machine=1000, seed=1)

or, to write one JSON file per machine:

    python3 benchmarks/synth.py --machines 100 --sockets 1000 --seed 1 OUTDIR

Every machine has an address of its own (10.x.y.1 and fd00::x:y:1), docker0's 172.17.0.1 (owned by
every machine, as on real Docker hosts) and a container namespace at 172.17.0.2 whose `api`
listens on port 80, published on the host's 8080 by DNAT. Its services: sshd (22, with an SSH
session from outside), a pre-forked nginx (one listening socket held by the master and four
workers, dual-stack tcp6), postgres (5432 on IPv4 and IPv6), redis on loopback, unbound (UDP 53),
dhclient (a packet socket). Its `app` workers open the connections, cycling through:
cross-machine TCP to postgres or nginx, loopback to redis, connected UDP to another machine's
unbound, NAT to another machine's container, IPv6 to postgres, an outside HTTPS peer, and a
connection whose server-side socket is missing (a partial capture). Targets go round-robin over
the next PEERS machines, so every machine accepts as many connections as it opens: each machine
ends up close to `sockets_per_machine` sockets.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
from pathlib import Path
from typing import Any

SCHEMA = "netviz.snapshot/1"
HOST_NETNS = 4026531840
CONTAINER_NETNS = 4026532200
EPHEMERAL_FIRST = 32768
EPHEMERAL_LAST = 60999

# Slot kinds, repeated in this order (20 slots per cycle).
PATTERN = (
    ["tcp-postgres"] * 4 + ["tcp-nginx"] * 6 + ["tcp6-postgres"] * 2
    + ["loopback-redis"] * 2 + ["udp-dns"] + ["nat-api"] * 2 + ["outside-https"] + ["partial-postgres"]
    + ["tcp-postgres"]
)
PEERS = 24  # how many other machines each machine connects to
FIXED_SOCKETS = 12  # listeners, the packet socket, the ssh session
SINGLE_SOCKET = frozenset({"udp-dns", "outside-https", "partial-postgres"})


def machine_name(index: int) -> str:
    return f"m{index:04d}"


def ipv4(index: int) -> str:
    return f"10.{(index >> 8) & 255}.{index & 255}.1"


def ipv6(index: int) -> str:
    # canonical text, as inet_ntop writes it (fd00::1 for machine 0)
    return str(ipaddress.IPv6Address(f"fd00::{(index >> 8) & 255:x}:{index & 255:x}:1"))


class _Machine:
    """Sockets and processes of one machine while the fleet is being wired."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.index = index
        self.rng = rng
        self.next_inode = 10_000 + rng.randrange(1_000)
        self.next_port = EPHEMERAL_FIRST
        self.sockets: dict[int, list[dict[str, Any]]] = {HOST_NETNS: [], CONTAINER_NETNS: []}
        self.held: dict[int, list[int]] = {}
        self.conntrack: list[dict[str, Any]] = []
        self.workers = [201, 202, 203, 204]
        self.apps = list(range(500, 508))

    def port(self) -> int:
        port = self.next_port
        self.next_port = port + 1 if port < EPHEMERAL_LAST else EPHEMERAL_FIRST
        return port

    def add(
        self, holders: list[int], proto: str, local: str, local_port: int, remote: str, remote_port: int,
        state: str, netns: int = HOST_NETNS, **extra: Any,
    ) -> int:
        inode = self.next_inode
        self.next_inode += 1
        socket = {
            "proto": proto, "inode": inode, "local": local, "local_port": local_port, "remote": remote,
            "remote_port": remote_port, "state": state, "uid": 0,
        }
        socket.update(extra)
        self.sockets[netns].append(socket)
        for pid in holders:
            self.held.setdefault(pid, []).append(inode)
        return inode

    def app(self) -> list[int]:
        return [self.rng.choice(self.apps)]

    def worker(self) -> list[int]:
        return [self.rng.choice(self.workers)]


def _fixed_sockets(machine: _Machine) -> None:
    add = machine.add
    add([100], "tcp", "0.0.0.0", 22, "0.0.0.0", 0, "LISTEN")
    add([100], "tcp6", "::", 22, "::", 0, "LISTEN")
    add([200, 201, 202, 203, 204], "tcp6", "::", 80, "::", 0, "LISTEN")
    add([300], "tcp", "0.0.0.0", 5432, "0.0.0.0", 0, "LISTEN")
    add([300], "tcp6", "::", 5432, "::", 0, "LISTEN")
    add([400], "tcp", "127.0.0.1", 6379, "0.0.0.0", 0, "LISTEN")
    add([600], "udp", "0.0.0.0", 53, "0.0.0.0", 0, "CLOSE")
    add([600], "udp6", "::", 53, "::", 0, "CLOSE")
    add([800], "packet", None, 0, None, None, "CLOSE", protocol=3, interface="eth0", packet_type="raw")
    add([101], "tcp", ipv4(machine.index), 22, "192.0.2.10", 50022, "ESTABLISHED")
    add([900], "tcp", "0.0.0.0", 80, "0.0.0.0", 0, "LISTEN", netns=CONTAINER_NETNS)
    add([], "tcp", "0.0.0.0", 9100, "0.0.0.0", 0, "LISTEN")  # a kernel-held socket: unattributed


def _connect(kind: str, client: _Machine, server: _Machine) -> None:
    """One connection of `kind` from `client` to `server` (the same machine for loopback)."""
    i, j = client.index, server.index
    port = client.port()
    if kind == "tcp-postgres":
        client.add(client.app(), "tcp", ipv4(i), port, ipv4(j), 5432, "ESTABLISHED")
        server.add([300], "tcp", ipv4(j), 5432, ipv4(i), port, "ESTABLISHED")
    elif kind == "tcp-nginx":
        client.add(client.app(), "tcp", ipv4(i), port, ipv4(j), 80, "ESTABLISHED")
        # the dual-stack listener sees the IPv4 client as an IPv4-mapped address
        server.add(server.worker(), "tcp6", f"::ffff:{ipv4(j)}", 80, f"::ffff:{ipv4(i)}", port, "ESTABLISHED")
    elif kind == "tcp6-postgres":
        client.add(client.app(), "tcp6", ipv6(i), port, ipv6(j), 5432, "ESTABLISHED")
        server.add([300], "tcp6", ipv6(j), 5432, ipv6(i), port, "ESTABLISHED")
    elif kind == "loopback-redis":
        client.add(client.app(), "tcp", "127.0.0.1", port, "127.0.0.1", 6379, "ESTABLISHED")
        client.add([400], "tcp", "127.0.0.1", 6379, "127.0.0.1", port, "ESTABLISHED")
    elif kind == "udp-dns":
        client.add(client.app(), "udp", ipv4(i), port, ipv4(j), 53, "ESTABLISHED")
    elif kind == "nat-api":
        client.add(client.app(), "tcp", ipv4(i), port, ipv4(j), 8080, "ESTABLISHED")
        server.add([900], "tcp", "172.17.0.2", 80, ipv4(i), port, "ESTABLISHED", netns=CONTAINER_NETNS)
        server.conntrack.append({
            "proto": "tcp", "state": "ESTABLISHED",
            "original": {"src": ipv4(i), "dst": ipv4(j), "sport": port, "dport": 8080},
            "reply": {"src": "172.17.0.2", "dst": ipv4(i), "sport": 80, "dport": port},
        })
    elif kind == "outside-https":
        client.add(client.app(), "tcp", ipv4(i), port, f"198.51.100.{client.rng.randrange(1, 255)}", 443, "ESTABLISHED")
    elif kind == "partial-postgres":
        client.add(client.app(), "tcp", ipv4(i), port, ipv4(j), 5432, "ESTABLISHED")
    else:
        raise ValueError(kind)


def _processes(machine: _Machine) -> list[dict[str, Any]]:
    table = [
        (1, 0, "systemd", ["/sbin/init"], "root", HOST_NETNS),
        (100, 1, "sshd", ["/usr/sbin/sshd", "-D"], "root", HOST_NETNS),
        (101, 100, "sshd", ["sshd: admin@pts/0"], "root", HOST_NETNS),
        (200, 1, "nginx", ["nginx: master process /usr/sbin/nginx"], "root", HOST_NETNS),
        (300, 1, "postgres", ["/usr/lib/postgresql/15/bin/postgres"], "postgres", HOST_NETNS),
        (400, 1, "redis-server", ["/usr/bin/redis-server 127.0.0.1:6379"], "redis", HOST_NETNS),
        (600, 1, "unbound", ["/usr/sbin/unbound", "-d"], "unbound", HOST_NETNS),
        (800, 1, "dhclient", ["/sbin/dhclient", "eth0"], "root", HOST_NETNS),
        (900, 1, "api", ["/srv/api", "--listen", ":80"], "nobody", CONTAINER_NETNS),
    ]
    table += [(pid, 200, "nginx", ["nginx: worker process"], "www-data", HOST_NETNS) for pid in machine.workers]
    table += [(pid, 1, "app", ["/srv/app/bin/app", f"--worker={pid - 500}"], "app", HOST_NETNS) for pid in machine.apps]
    uids = {"root": 0, "postgres": 106, "redis": 107, "unbound": 108, "nobody": 65534, "www-data": 33, "app": 1001}
    return [
        {
            "pid": pid, "ppid": ppid, "comm": comm, "cmdline": cmdline, "uid": uids[user], "euid": uids[user],
            "user": user, "context": "unconfined", "netns": netns, "sockets": sorted(set(machine.held.get(pid, []))),
        }
        for pid, ppid, comm, cmdline, user, netns in sorted(table)
    ]


def _document(machine: _Machine) -> dict[str, Any]:
    i = machine.index
    name = machine_name(i)
    host_sockets = machine.sockets[HOST_NETNS]
    container_sockets = machine.sockets[CONTAINER_NETNS]
    held = {inode for inodes in machine.held.values() for inode in inodes}
    unattributed = sum(1 for socket in host_sockets + container_sockets if socket["inode"] not in held)
    return {
        "schema": SCHEMA,
        "payload_version": "synthetic",
        "host": {
            "hostname": name, "machine_id": f"{i:032x}", "boot_id": f"boot-{i:08d}", "kernel": "6.1.0-synthetic",
            "captured_at": 1764079200.0 + i / 1000, "python": "3.11.2",
        },
        "coverage": {
            "euid": 0, "complete": True, "processes_seen": 9 + len(machine.workers) + len(machine.apps),
            "processes_vanished": 0, "processes_denied": 0, "namespaces_denied": 0,
            "unattributed_sockets": unattributed, "notes": [],
        },
        "namespaces": [
            {
                "inode": HOST_NETNS, "pids": 8 + len(machine.workers) + len(machine.apps),
                "addresses": [
                    {"interface": "lo", "family": 4, "address": "127.0.0.1", "prefix": 8},
                    {"interface": "lo", "family": 6, "address": "::1", "prefix": 128},
                    {"interface": "eth0", "family": 4, "address": ipv4(i), "prefix": 8},
                    {"interface": "eth0", "family": 6, "address": ipv6(i), "prefix": 64},
                    {"interface": "docker0", "family": 4, "address": "172.17.0.1", "prefix": 16},
                ],
                "sockets": host_sockets,
                "unkeyed": {"tcp": {"TIME_WAIT": machine.rng.randrange(20)}},
                "conntrack": machine.conntrack,
            },
            {
                "inode": CONTAINER_NETNS, "pids": 1,
                "addresses": [
                    {"interface": "lo", "family": 4, "address": "127.0.0.1", "prefix": 8},
                    {"interface": "eth0", "family": 4, "address": "172.17.0.2", "prefix": 16},
                ],
                "sockets": container_sockets,
                "unkeyed": {},
                "conntrack": None,
            },
        ],
        "processes": _processes(machine),
    }


def connection_slots(sockets_per_machine: int) -> int:
    """How many connections each machine opens so that it ends up with about that many sockets
    (most connections put one socket on each side; udp-dns, outside-https and partial-postgres
    only one on the client)."""
    per_cycle = sum(1 if kind in SINGLE_SOCKET else 2 for kind in PATTERN)
    return max(0, round((sockets_per_machine - FIXED_SOCKETS) * len(PATTERN) / per_cycle))


def make_fleet(machines: int, sockets_per_machine: int, seed: int) -> list[dict[str, Any]]:
    """Snapshot documents for `machines` machines of about `sockets_per_machine` sockets each."""
    if machines < 1:
        raise ValueError("machines must be at least 1")
    rng = random.Random(seed)
    fleet = [_Machine(index, random.Random(rng.random())) for index in range(machines)]
    for machine in fleet:
        _fixed_sockets(machine)
    slots = connection_slots(sockets_per_machine)
    for machine in fleet:
        for slot in range(slots):
            kind = PATTERN[slot % len(PATTERN)]
            if machines == 1 or kind == "loopback-redis":
                target = machine
                if kind != "loopback-redis" and kind != "outside-https":
                    kind = "loopback-redis"
            else:
                # round-robin over a bounded set of peers (a service talks to a few others, not to
                # the whole fleet): everyone accepts as much as it opens, and the graph grows
                # linearly with the fleet
                peers = min(machines - 1, PEERS)
                target = fleet[(machine.index + 1 + slot % peers) % machines]
            _connect(kind, machine, target)
    return [_document(machine) for machine in fleet]


def write_fleet(directory: Path, machines: int, sockets_per_machine: int, seed: int) -> list[Path]:
    """Write one `<name>.json` per machine into `directory`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for document in make_fleet(machines, sockets_per_machine, seed):
        path = directory / f"{document['host']['hostname']}.json"
        path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic netviz snapshots, one JSON file per machine.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--sockets", type=int, default=200, help="sockets per machine (about)")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args(argv)
    paths = write_fleet(arguments.directory, arguments.machines, arguments.sockets, arguments.seed)
    print(f"wrote {len(paths)} snapshots to {arguments.directory}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Graph documents (`netviz.graph/1`, see docs/graph.md) built by hand for the HTML tests.

`GraphBuilder` writes documents the way the contract describes them, so the page can be tested
without the stitcher; `lab_like_graph()` is a small fleet with every feature the page draws, and
`synthetic_graph()` a large deterministic one for benchmarks.
"""

from __future__ import annotations

import random
from typing import Any, Optional

# Names a hostile machine could give its processes: none of them may run as script in the page.
HOSTILE_COMMS = (
    "<img src=x onerror=window.__pwned=1>",
    "</script><script>window.__pwned=2</script>",
    "<!--<script>window.__pwned=3</script>",
    "\u2028x\u2029</SCRIPT >&amp;",
)


class GraphBuilder:
    """Collects hosts, nodes and flows and returns a sorted `netviz.graph/1` document."""

    def __init__(self, group_by: str = "process") -> None:
        self.group_by = group_by
        self.hosts: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        self.flows: list[dict[str, Any]] = []

    def host(self, name: str, addresses: list[str], *, outside: tuple[int, int] = (0, 0),
             stale: bool = False, complete: bool = True, unresolved: int = 0) -> str:
        """Add a machine; returns its name."""
        self.hosts.append({
            "name": name, "hostname": name, "machine_id": f"{len(self.hosts):032x}",
            "addresses": addresses, "captured_at": 1764079200.0 + len(self.hosts), "stale": stale,
            "complete": complete, "legacy": False,
            "outside": {"inbound": outside[0], "outbound": outside[1]}, "unresolved": unresolved,
        })
        return name

    def process(self, host: str, comm: str, pids: list[int], *, users: Optional[list[str]] = None,
                contexts: Optional[list[str]] = None, cmdline: Optional[str] = None,
                listening: Optional[list[tuple[str, str, int]]] = None,
                ingress: Optional[list[dict[str, Any]]] = None, kind: str = "process") -> str:
        """Add a node; returns its id. `listening` holds (proto, address, port)."""
        node_id = f"n{len(self.nodes) + 1}"
        self.nodes.append({
            "id": node_id, "host": host, "kind": kind, "comm": comm, "pids": pids,
            "users": users or ["root"], "contexts": contexts or ["unconfined"],
            "cmdline": cmdline if cmdline is not None else comm,
            "listening": [{"proto": p, "address": a, "port": port} for p, a, port in listening or []],
            "ingress": ingress or [], "sockets": len(listening or []) + 2,
        })
        return node_id

    def flow(self, client: str, server: str, proto: str, port: Optional[int], address: Optional[str],
             *, count: int = 1, directed: bool = True, inferred: bool = False, via: Optional[str] = None) -> str:
        """Add a flow from node `client` to node `server`; returns its id."""
        flow_id = f"f{len(self.flows) + 1}"
        self.flows.append({
            "id": flow_id, "client": client, "server": server, "proto": proto, "server_port": port,
            "server_address": address, "count": count, "directed": directed, "inferred": inferred, "via": via,
        })
        return flow_id

    def build(self) -> dict[str, Any]:
        """The document, hosts sorted by name (nodes and flows keep their creation order)."""
        hosts = sorted(self.hosts, key=lambda host: host["name"])
        return {
            "schema": "netviz.graph/1",
            "group_by": self.group_by,
            "hosts": hosts,
            "nodes": list(self.nodes),
            "flows": list(self.flows),
            "summary": {
                "hosts": len(hosts), "nodes": len(self.nodes), "flows": len(self.flows),
                "outside": sum(h["outside"]["inbound"] + h["outside"]["outbound"] for h in hosts),
                "unresolved": sum(h["unresolved"] for h in hosts),
            },
        }


def lab_like_graph(hostile: bool = True) -> dict[str, Any]:
    """A small fleet: web, app, db, a NAT gateway, ingress, an outside node, an undirected and an
    inferred flow, a loopback flow, and (with `hostile`) processes named to inject script."""
    g = GraphBuilder()
    web = g.host("web1", ["10.0.0.11", "fd00::11"], outside=(3, 1))
    app = g.host("app1", ["10.0.0.12", "fd00::12"])
    db = g.host("db1", ["10.0.0.13"], stale=True)
    gw = g.host("gw1", ["10.0.0.1", "192.0.2.1"], complete=False, unresolved=2)
    nginx = g.process(web, "nginx", [812, 813], users=["www-data"], cmdline="nginx: worker process",
                      listening=[("tcp", "0.0.0.0", 80), ("tcp6", "::", 443)])
    sniffer = g.process(web, "tcpdump", [900], ingress=[{"kind": "packet", "interface": "eth0", "protocol": 3}])
    api = g.process(app, "gunicorn", [2001, 2002, 2003], users=["app"], contexts=["system_u:system_r:httpd_t:s0"],
                    cmdline="gunicorn app:wsgi --bind 0.0.0.0:8000", listening=[("tcp", "0.0.0.0", 8000)])
    cache = g.process(app, "redis-server", [2100], users=["redis"], listening=[("tcp", "127.0.0.1", 6379)])
    postgres = g.process(db, "postgres", [3001], users=["postgres"], listening=[("tcp", "10.0.0.13", 5432)])
    dns = g.process(gw, "dnsmasq", [41], listening=[("udp", "10.0.0.1", 53)])
    chrony_a = g.process(web, "chronyd", [77])
    chrony_b = g.process(db, "chronyd", [78])
    outside_web = g.process(web, "outside", [], users=[], contexts=[], kind="outside", cmdline="")
    g.flow(nginx, api, "tcp", 8000, "10.0.0.1", count=12, via=gw)
    g.flow(api, cache, "tcp", 6379, "127.0.0.1", count=4)
    g.flow(api, postgres, "tcp", 5432, "10.0.0.13", count=3)
    g.flow(api, dns, "udp", 53, "10.0.0.1", inferred=True)
    g.flow(chrony_a, chrony_b, "udp", None, None, directed=False)
    g.flow(outside_web, nginx, "tcp", 443, "10.0.0.11", count=3)
    if hostile:
        evil_host = g.host("<b>evil</b>host", ["10.0.0.66"])
        previous = None
        for index, comm in enumerate(HOSTILE_COMMS):
            node = g.process(evil_host, comm, [6600 + index], users=[comm], contexts=[comm], cmdline=comm,
                             listening=[("tcp", "0.0.0.0", 9000 + index)])
            if previous:
                g.flow(previous, node, "tcp", 9000 + index, "10.0.0.66")
            previous = node
    g.flow(sniffer, postgres, "tcp", 5432, "10.0.0.13")
    return g.build()


def synthetic_graph(machines: int, processes: int, flows_per_process: float = 1.5, seed: int = 7) -> dict[str, Any]:
    """A deterministic fleet of `machines` machines holding `processes` processes in total.

    About a fifth of the processes are servers; each flow goes from a random process to a random
    server, mostly on another machine, so the edges cross the whole map as in a real fleet.
    """
    rng = random.Random(seed)
    g = GraphBuilder()
    names = [g.host(f"m{index:04d}", [f"10.{index // 250}.{index % 250}.10", f"fd00::{index:x}"],
                    outside=(rng.randrange(0, 5), rng.randrange(0, 3))) for index in range(machines)]
    services = [("postgres", 5432), ("redis-server", 6379), ("nginx", 80), ("java", 8080), ("node", 3000)]
    clients = ["python3", "curl", "java", "node", "ruby", "sshd", "prometheus", "envoy"]
    servers: list[tuple[str, int]] = []
    all_nodes: list[str] = []
    for index in range(processes):
        host = names[index % machines]
        pid = 1000 + index
        if rng.random() < 0.2:
            comm, port = rng.choice(services)
            node = g.process(host, comm, [pid], users=["svc"], listening=[("tcp", "0.0.0.0", port)])
            servers.append((node, port))
        else:
            ingress = [{"kind": "packet", "interface": "eth0", "protocol": 3}] if rng.random() < 0.01 else None
            node = g.process(host, rng.choice(clients), [pid, pid + 100000], users=["app"], ingress=ingress)
        all_nodes.append(node)
    host_of = {node["id"]: node["host"] for node in g.nodes}
    address_of = {host["name"]: host["addresses"][0] for host in g.hosts}
    for _ in range(int(processes * flows_per_process)):
        client = rng.choice(all_nodes)
        server, port = rng.choice(servers)
        if client == server:
            continue
        via = names[rng.randrange(machines)] if rng.random() < 0.02 else None
        g.flow(client, server, "tcp", port, address_of[host_of[server]], count=rng.randrange(1, 20), via=via)
    return g.build()

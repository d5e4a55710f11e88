"""Lab situations that real fleets have and the standard scenario does not: NAT and containers.

Each builder takes a started ``Lab`` (tests/lab/lab.py), adds the machines it needs and returns
a ``Situation``: the machines, the container namespaces, and the flows netviz must draw, each
with the machine that translated it (``via``) when NAT is involved.

- ``build_nat_gateway``: web and cache -> gw:8080 (IPv4, and IPv6 from web), gw DNATs it to
  db:5432 and masquerades it (a load balancer without a proxy process); web -> a service address that web itself DNATs to db
  (kube-proxy); plus a direct web -> db connection as a control.
- ``build_docker_hosts``: web, db and cache are Docker-like hosts: a ``docker0`` bridge at
  172.17.0.1/16 and a container at 172.17.0.2 on each, db publishing tcp 15432 and udp 15353 to
  its container by DNAT (with an idle docker-proxy bound to both, as Docker runs one); clients
  on web and in web's container (masquerade, then DNAT: two translations) use them; hosts and
  sibling containers of db and cache talk to their own container over docker0 with the very same
  four-tuples; a container of cache calls a server on web (egress masquerade); and a loopback
  flow runs inside cache's container.
- ``build_loopback_namespaces``: one machine, three network namespaces (its own and two
  containers), each holding the same 127.0.0.1 connection (same ports on both sides).
- ``build_sidecar``: a pod whose own NAT table redirects its application's connections to a
  service-mesh sidecar (Istio-style), the sidecar's connection masqueraded by the pod's host.

Containers are network namespaces created from the root side (``ip netns add``; a namespace
bind-mounted after a machine's ``unshare`` is invisible inside it) and entered together with
the machine's PID and mount namespaces, so their processes belong to that machine and its
payload reads their sockets through ``/proc/PID/net``. The namespaces are recorded in the lab's
state: ``Lab.stop()`` (and ``python3 -m tests.lab.lab cleanup PREFIX`` after a crash) deletes
them with the machines.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .lab import CLEAN_ENV, LAB_USERS, SYSTEM_PYTHON, UNPRIVILEGED_USER, Lab, LabError, Machine, _children, parse_ss

# (client machine, client comm, server machine, server comm, proto, server port, via)
FlowKey = tuple[str, str, str, str, str, int, Optional[str]]

DOCKER_BRIDGE_ADDRESS = "172.17.0.1"
CONTAINER_ADDRESS = "172.17.0.2"
SIBLING_ADDRESS = "172.17.0.3"
DOCKER_SUBNET = "172.17.0.0/16"

GATEWAY_PORT = 8080
SERVICE_ADDRESS = "10.96.0.10"  # a ClusterIP: a virtual address that no machine owns
SERVICE_PORT = 80
DB_PORT = 5432
PUBLISHED_PORT = 15432
REDIS_PORT = 6379
API_PORT = 8000
DNS_PORT = 53
PUBLISHED_DNS_PORT = 15353
LOOPBACK_PORT = 7000
# Clients pinned to one source port make the same four-tuple appear in several namespaces or on
# several machines, the case where a stitcher keyed by address alone crosses the wires.
PINNED_DOCKER_SOURCE_PORT = 41000
PINNED_LOOPBACK_SOURCE_PORT = 42000
PINNED_SIBLING_SOURCE_PORT = 43000
PINNED_GATEWAY_SOURCE_PORT = 45000

POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
POD_ADDRESS = "10.244.0.2"
SIDECAR_PORT = 15001
SIDECAR_USER = UNPRIVILEGED_USER  # the pod's redirect spares the sidecar's own connections by uid
SIDECAR_UID = LAB_USERS[SIDECAR_USER]

# A stdlib program that listens, connects (optionally from a fixed source address and port) and
# holds every socket until it is killed. Written into the lab directory, which every machine sees.
ENDPOINT_PROGRAM = r'''
import json, select, socket, sys, time

spec = json.load(open(sys.argv[1]))
with open("/proc/self/comm", "w") as comm:
    comm.write(spec["comm"][:15])
listeners, held, datagram_clients = [], [], []
for item in spec.get("listen", []):
    udp = item.get("proto") == "udp"
    family = socket.AF_INET6 if ":" in item["address"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((item["address"], item["port"]))
    if not udp:
        sock.listen(64)
    listeners.append(sock)
for item in spec.get("connect", []):
    udp = item.get("proto") == "udp"
    deadline = time.monotonic() + 30
    while True:
        family = socket.AF_INET6 if ":" in item["address"] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if item.get("source_port"):
            sock.bind((item.get("source_address", "::" if family == socket.AF_INET6 else "0.0.0.0"),
                       item["source_port"]))
        try:
            sock.connect((item["address"], item["port"]))
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    held.append(sock)
    if udp:
        datagram_clients.append(sock)
print("READY", flush=True)
while True:
    # a datagram every few seconds keeps the conntrack entries of UDP clients alive (30 s unreplied)
    for sock in datagram_clients:
        try:
            sock.send(b"lab datagram\n")
        except OSError:
            pass
    if not listeners:
        time.sleep(5)
        continue
    for sock in select.select(listeners, [], [], 5)[0]:
        if sock.type == socket.SOCK_STREAM:
            held.append(sock.accept()[0])
        else:
            sock.recv(65536)
'''


@dataclass
class Container:
    """A network namespace inside a lab machine, standing for one container."""

    machine: Machine
    name: str
    netns: str  # its name under /run/netns (root side)
    address: Optional[str] = None

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"


@dataclass
class Expected:
    """One edge the graph must hold, and how many connections it stands for."""

    key: FlowKey
    count: int
    what: str


@dataclass
class Situation:
    """Machines and containers built for one situation, and the flows netviz must draw."""

    lab: Lab
    machines: dict[str, Machine]
    containers: dict[str, Container] = field(default_factory=dict)
    flows: list[Expected] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # program name -> root pid

    def flow_keys(self, hosts: Optional[Sequence[str]] = None) -> set[FlowKey]:
        """The expected flows whose two ends, and translating machine, are on ``hosts``
        (default: every machine): without the NAT machine's conntrack nothing links the ends."""
        wanted = set(hosts) if hosts is not None else set(self.machines)
        return {flow.key for flow in self.flows
                if flow.key[0] in wanted and flow.key[2] in wanted and flow.key[6] in wanted | {None}}


def graph_flow_keys_with_via(graph: dict[str, Any]) -> dict[FlowKey, int]:
    """The flows of a ``netviz.graph/1`` document (group-by process) -> their connection counts."""
    nodes = {node["id"]: node for node in graph["nodes"]}
    found: dict[FlowKey, int] = {}
    for flow in graph["flows"]:
        client, server = nodes[flow["client"]], nodes[flow["server"]]
        key = (client["host"], client["comm"], server["host"], server["comm"], flow["proto"], flow["server_port"],
               flow["via"])
        found[key] = found.get(key, 0) + flow["count"]
    return found


# --------------------------------------------------------------------------- low-level helpers


def _root(argv: Sequence[str]) -> None:
    result = subprocess.run(list(argv), capture_output=True, text=True, env=CLEAN_ENV, timeout=30)
    if result.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")


def _enter(machine: Machine, container: Optional[Container]) -> list[str]:
    """nsenter into ``machine`` (PID, mount, UTS namespaces), its own network namespace or the
    container's. nsenter opens every namespace file before it switches, so the container's path
    is resolved on the root side."""
    if not machine.running:
        raise LabError(f"machine {machine.name} is not running")
    net = f"--net={container.path}" if container is not None else "--net"
    return ["nsenter", f"--target={machine.init_pid}", net, "--pid", "--mount", "--uts", "--wd=/", "--"]


def exec_in(machine: Machine, argv: Sequence[str], container: Optional[Container] = None, *,
            input: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a one-shot command in the machine (or in one of its containers)."""
    result = subprocess.run([*_enter(machine, container), *argv], capture_output=True, text=True, env=CLEAN_ENV,
                            timeout=30, input=input, cwd="/")
    if check and result.returncode != 0:
        where = machine.name + (f"/{container.name}" if container else "")
        raise LabError(f"on {where}: `{shlex.join(argv)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _program_path(lab: Lab) -> Path:
    path = lab.root_dir / "extra" / "endpoint.py"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ENDPOINT_PROGRAM)
    return path


def start_endpoint(machine: Machine, spec: dict[str, Any], container: Optional[Container] = None,
                   user: Optional[str] = None) -> int:
    """Start the endpoint program (see ENDPOINT_PROGRAM) with ``spec`` inside the machine or one
    of its containers (as ``user``: one of the lab's users); return its pid as the root
    namespace numbers it."""
    lab = machine.lab
    name = spec["comm"]
    where = machine.name + (f"-{container.name}" if container else "")
    spec_path = lab.root_dir / "extra" / f"{where}-{name}.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    log_path = machine.dir / "logs" / f"{where}-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [*_enter(machine, container), "setsid",
             *(["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] if user else []),
             SYSTEM_PYTHON, str(_program_path(lab)), str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=CLEAN_ENV,
            start_new_session=True, cwd="/",
        )
    machine._popens.append(popen)  # Lab.stop() waits for it
    lab._record_pid(popen.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = _children(popen.pid)  # nsenter forks once to enter the PID namespace
        if children:
            return children[0]
        if popen.poll() is not None:
            break
        time.sleep(0.01)
    raise LabError(f"{name} did not start on {where}: see {log_path}")


def add_container(machine: Machine, name: str, *, address: Optional[str] = None, bridge: str = "docker0",
                  gateway: str = DOCKER_BRIDGE_ADDRESS, prefix: int = 16) -> Container:
    """A network namespace for machine ``machine`` with loopback up; with ``address``, a veth
    whose host end joins ``bridge`` (which must exist in the machine) and a default route via
    ``gateway`` (the bridge's address), as Docker or a CNI plugin wires a container."""
    lab = machine.lab
    netns = f"{lab.prefix}-{machine.name}-{name}"[:40]
    container = Container(machine=machine, name=name, netns=netns, address=address)
    _root(["ip", "netns", "add", netns])
    # Recorded with the machines' namespaces: Lab.stop() and cleanup_stale delete it too.
    lab._state["netns"].append(netns)
    lab._save_state()
    _root(["ip", "-n", netns, "link", "set", "lo", "up"])
    if address is not None:
        host_end = f"veth{name}"[:15]
        _root(["ip", "-n", machine.netns, "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns])
        _root(["ip", "-n", machine.netns, "link", "set", host_end, "master", bridge, "up"])
        _root(["ip", "-n", netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0"])
        _root(["ip", "-n", netns, "link", "set", "eth0", "up"])
        _root(["ip", "-n", netns, "route", "add", "default", "via", gateway])
    return container


def enable_forwarding(machine: Machine, ipv6: bool = False) -> None:
    """Routing on: forward IPv4 (and IPv6), and send no ICMP redirects (a gateway on the same
    segment as its clients would otherwise tell them to bypass it)."""
    keys = ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"]
    if ipv6:
        keys.append("net.ipv6.conf.all.forwarding=1")
    for key in keys:
        exec_in(machine, ["sysctl", "-q", "-w", key])


def docker_bridge(machine: Machine) -> None:
    """What Docker sets up on a host: docker0 at 172.17.0.1/16, forwarding, and masquerade of
    what containers send out of any other interface."""
    exec_in(machine, ["ip", "link", "add", "docker0", "type", "bridge"])
    exec_in(machine, ["ip", "addr", "add", f"{DOCKER_BRIDGE_ADDRESS}/16", "dev", "docker0"])
    exec_in(machine, ["ip", "link", "set", "docker0", "up"])
    enable_forwarding(machine)
    exec_in(machine, ["nft", "-f", "-"], input=(
        "table ip nat {\n"
        "  chain docker { }\n"
        "  chain prerouting { type nat hook prerouting priority dstnat;\n"
        "    fib daddr type local jump docker\n"
        "  }\n"
        "  chain output { type nat hook output priority -100;\n"
        "    ip daddr != 127.0.0.0/8 fib daddr type local jump docker\n"
        "  }\n"
        "  chain postrouting { type nat hook postrouting priority srcnat;\n"
        f'    ip saddr {DOCKER_SUBNET} oifname != "docker0" masquerade\n'
        "  }\n"
        "}\n"
    ))


def publish(machine: Machine, host_port: int, address: str, port: int, proto: str = "tcp") -> None:
    """``docker run -p host_port:port[/udp]``: DNAT of the host's port to the container (on a
    machine set up by docker_bridge)."""
    exec_in(machine, ["nft", "add", "rule", "ip", "nat", "docker", "iifname", "!=", "docker0",
                      proto, "dport", str(host_port), "dnat", "to", f"{address}:{port}"])


def nat_gateway(machine: Machine, port: int, target: str, target_port: int, target6: Optional[str] = None) -> None:
    """A NAT load balancer: DNAT of machine:port to target:target_port, and masquerade of what it
    forwards that way, so that the replies come back through it. With ``target6``, the same for
    IPv6 (machine's IPv6 address:port to [target6]:target_port)."""
    enable_forwarding(machine, ipv6=target6 is not None)
    tables = [("ip", machine.ipv4, target)] + ([("ip6", machine.ipv6, f"[{target6}]")] if target6 else [])
    for family, own, backend in tables:
        exec_in(machine, ["nft", "-f", "-"], input=(
            f"table {family} nat {{\n"
            "  chain prerouting { type nat hook prerouting priority dstnat;\n"
            f"    {family} daddr {own} tcp dport {port} dnat to {backend}:{target_port}\n"
            "  }\n"
            "  chain postrouting { type nat hook postrouting priority srcnat;\n"
            "    ct status dnat masquerade\n"
            "  }\n"
            "}\n"
        ))


def publish_on_localhost(machine: Machine, host_port: int, address: str, port: int) -> None:
    """Docker's ``userland-proxy: false``: 127.0.0.1:host_port is DNATed to the container too
    (route_localnet lets a loopback source leave through docker0, masquerade rewrites it)."""
    exec_in(machine, ["sysctl", "-q", "-w", "net.ipv4.conf.docker0.route_localnet=1"])
    exec_in(machine, ["nft", "add", "rule", "ip", "nat", "output", "ip", "daddr", "127.0.0.1",
                      "tcp", "dport", str(host_port), "dnat", "to", f"{address}:{port}"])
    exec_in(machine, ["nft", "add", "rule", "ip", "nat", "postrouting", "oifname", "docker0",
                      "fib", "saddr", "type", "local", "masquerade"])


def service_address(machine: Machine, address: str, port: int, target: str, target_port: int) -> None:
    """A Kubernetes-style ClusterIP (kube-proxy, iptables mode): the machine's own connections
    to the virtual ``address``:``port``, which no machine owns, are DNATed to a backend as they
    leave (output hook)."""
    exec_in(machine, ["nft", "-f", "-"], input=(
        "table ip nat {\n"
        "  chain output { type nat hook output priority -100;\n"
        f"    ip daddr {address} tcp dport {port} dnat to {target}:{target_port}\n"
        "  }\n"
        "}\n"
    ))


def wait_established(machine: Machine, container: Optional[Container], comm: str, local_port: Optional[int] = None,
                     peer_port: Optional[int] = None, count: int = 1, timeout: float = 30) -> None:
    """Wait until ss in that namespace shows ``count`` established TCP sockets held by ``comm``
    (with that local or peer port): accepted by the server, not just queued."""
    deadline = time.monotonic() + timeout
    while True:
        rows = parse_ss(exec_in(machine, ["ss", "-H", "-t", "-a", "-n", "-p"], container).stdout, "tcp")
        matching = [
            row for row in rows
            if row.state == "ESTAB" and comm in row.comms
            and (local_port is None or row.local_port == str(local_port))
            and (peer_port is None or row.peer_port == str(peer_port))
        ]
        if len(matching) >= count:
            return
        if time.monotonic() > deadline:
            where = machine.name + (f"/{container.name}" if container else "")
            raise LabError(f"{where}: {len(matching)} of {count} established sockets of {comm}")
        time.sleep(0.1)


def conntrack_entries(machine: Machine, container: Optional[Container] = None) -> str:
    """The conntrack table of the machine's own network namespace (or of one of its
    containers), as the kernel prints it."""
    return exec_in(machine, ["cat", "/proc/net/nf_conntrack"], container, check=False).stdout


def wait_conntrack(machine: Machine, needle: str, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` conntrack entries of the machine contain ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        found = sum(1 for line in conntrack_entries(machine).splitlines() if needle in line)
        if found >= count:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{machine.name}: {found} of {count} conntrack entries with {needle!r}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- situations


def build_nat_gateway(lab: Lab) -> Situation:
    """web, gw, db, cache. db/lab-pg listens on 5432; web/nat-client and cache/nat-client, both
    from source port 45000, connect to gw:8080, which gw translates to db:5432 (DNAT + masquerade:
    db sees gw as the client, from two different ports); web/svc-client connects
    to the service address 10.96.0.10:80, which web itself DNATs to db:5432 (kube-proxy);
    web/direct-client connects to db:5432 directly (a control)."""
    lab.start()
    machines = {name: lab.add_machine(name, groups=("nat",)) for name in ("web", "gw", "db", "cache")}
    web, gw, db, cache = machines["web"], machines["gw"], machines["db"], machines["cache"]
    situation = Situation(lab=lab, machines=machines)
    nat_gateway(gw, GATEWAY_PORT, db.ipv4, DB_PORT, target6=db.ipv6)
    situation.pids["lab-pg"] = start_endpoint(db, {"comm": "lab-pg", "listen": [{"address": "0.0.0.0", "port": DB_PORT},
                                                                                {"address": "::", "port": DB_PORT}]})
    # the same gateway over IPv6 (ip6 nat table)
    situation.pids["web/nat6-client"] = start_endpoint(web, {"comm": "nat6-client", "connect": [{
        "address": gw.ipv6, "port": GATEWAY_PORT}]})
    # two clients on two machines from the same source port: gw's masquerade must give one of
    # them another port (both would leave as gw:45000 -> db:5432), so each reply tuple differs
    for client in (web, cache):
        situation.pids[f"{client.name}/nat-client"] = start_endpoint(client, {"comm": "nat-client", "connect": [{
            "address": gw.ipv4, "port": GATEWAY_PORT, "source_port": PINNED_GATEWAY_SOURCE_PORT}]})
    situation.pids["direct-client"] = start_endpoint(web, {"comm": "direct-client",
                                                           "connect": [{"address": db.ipv4, "port": DB_PORT}]})
    service_address(web, SERVICE_ADDRESS, SERVICE_PORT, db.ipv4, DB_PORT)
    situation.pids["svc-client"] = start_endpoint(web, {"comm": "svc-client",
                                                        "connect": [{"address": SERVICE_ADDRESS, "port": SERVICE_PORT}]})
    wait_established(web, None, "svc-client", peer_port=SERVICE_PORT)
    wait_established(web, None, "nat-client", peer_port=GATEWAY_PORT)
    wait_established(cache, None, "nat-client", peer_port=GATEWAY_PORT)
    wait_established(web, None, "direct-client", peer_port=DB_PORT)
    wait_established(web, None, "nat6-client", peer_port=GATEWAY_PORT)
    wait_established(db, None, "lab-pg", local_port=DB_PORT, count=5)
    situation.flows = [
        Expected(("web", "nat-client", "db", "lab-pg", "tcp", DB_PORT, "gw"), 1,
                 "client -> NAT gateway -> server: drawn to the server, via the gateway"),
        Expected(("cache", "nat-client", "db", "lab-pg", "tcp", DB_PORT, "gw"), 1,
                 "a second client through the gateway, from the same source port"),
        Expected(("web", "nat6-client", "db", "lab-pg", "tcp", DB_PORT, "gw"), 1, "the gateway over IPv6"),
        Expected(("web", "svc-client", "db", "lab-pg", "tcp", DB_PORT, "web"), 1,
                 "service address DNATed by the client's own machine (kube-proxy)"),
        Expected(("web", "direct-client", "db", "lab-pg", "tcp", DB_PORT, None), 1, "direct control flow"),
    ]
    return situation


def build_docker_hosts(lab: Lab) -> Situation:
    """web, db, cache; db and cache are Docker-like hosts with the same docker0 and container
    addresses.

    Flows: web/nat-client -> db:15432 (TCP) and db:15353 (UDP), published (DNAT) to db's
    container (ctr-pg on 5432, ctr-dns on udp 53); the same from web's own container (ctr-client:
    masqueraded by web, then DNATed by db); db/self-client -> db's own address:15432 and
    db/local-client -> 127.0.0.1:15432 (DNAT in the output hook); on db and cache, host-client (from 172.17.0.1:41000) and a sibling container's
    ctr-web (from 172.17.0.3:43000) -> their own container's ctr-pg on 172.17.0.2:5432: the same
    four-tuples on two machines; cache/ctr-worker (in a container) -> web/lab-api:8000,
    masqueraded by cache; cache/ctr-app -> cache/ctr-redis on 127.0.0.1:6379 inside cache's
    container. db/docker-proxy listens on 15432 and udp 15353 and carries nothing (DNAT takes the
    connections before they reach it)."""
    lab.start()
    machines = {name: lab.add_machine(name, groups=("docker",)) for name in ("web", "db", "cache")}
    web, db, cache = machines["web"], machines["db"], machines["cache"]
    situation = Situation(lab=lab, machines=machines)
    for host in (db, cache):
        docker_bridge(host)
        container = situation.containers[host.name] = add_container(host, "pg", address=CONTAINER_ADDRESS)
        situation.pids[f"{host.name}/ctr-pg"] = start_endpoint(
            host, {"comm": "ctr-pg", "listen": [{"address": "0.0.0.0", "port": DB_PORT}]}, container)
    situation.pids["db/ctr-dns"] = start_endpoint(
        db, {"comm": "ctr-dns", "listen": [{"proto": "udp", "address": "0.0.0.0", "port": DNS_PORT}]},
        situation.containers["db"])
    publish(db, PUBLISHED_PORT, CONTAINER_ADDRESS, DB_PORT)
    publish(db, PUBLISHED_DNS_PORT, CONTAINER_ADDRESS, DNS_PORT, "udp")
    publish_on_localhost(db, PUBLISHED_PORT, CONTAINER_ADDRESS, DB_PORT)
    situation.pids["db/docker-proxy"] = start_endpoint(db, {"comm": "docker-proxy", "listen": [
        {"address": "0.0.0.0", "port": PUBLISHED_PORT},
        {"proto": "udp", "address": "0.0.0.0", "port": PUBLISHED_DNS_PORT}]})
    cache_container = situation.containers["cache"]
    situation.pids["cache/ctr-redis"] = start_endpoint(
        cache, {"comm": "ctr-redis", "listen": [{"address": "127.0.0.1", "port": REDIS_PORT}]}, cache_container)
    situation.pids["cache/ctr-app"] = start_endpoint(
        cache, {"comm": "ctr-app", "connect": [{"address": "127.0.0.1", "port": REDIS_PORT}]}, cache_container)
    for host in (db, cache):
        situation.pids[f"{host.name}/host-client"] = start_endpoint(host, {"comm": "host-client", "connect": [{
            "address": CONTAINER_ADDRESS, "port": DB_PORT,
            "source_address": DOCKER_BRIDGE_ADDRESS, "source_port": PINNED_DOCKER_SOURCE_PORT}]})
        # container to container over docker0: 172.17.0.3:43000 -> 172.17.0.2:5432 on both hosts
        sibling = situation.containers[f"{host.name}-web"] = add_container(host, "web", address=SIBLING_ADDRESS)
        situation.pids[f"{host.name}/ctr-web"] = start_endpoint(host, {"comm": "ctr-web", "connect": [{
            "address": CONTAINER_ADDRESS, "port": DB_PORT,
            "source_address": SIBLING_ADDRESS, "source_port": PINNED_SIBLING_SOURCE_PORT}]}, sibling)
    # a plain server on web, called from cache's container: masqueraded by cache on the way out
    situation.pids["web/lab-api"] = start_endpoint(web, {"comm": "lab-api",
                                                         "listen": [{"address": "0.0.0.0", "port": API_PORT}]})
    situation.pids["cache/ctr-worker"] = start_endpoint(
        cache, {"comm": "ctr-worker", "connect": [{"address": web.ipv4, "port": API_PORT}]}, cache_container)
    to_published = [{"address": db.ipv4, "port": PUBLISHED_PORT},
                    {"proto": "udp", "address": db.ipv4, "port": PUBLISHED_DNS_PORT}]
    situation.pids["web/nat-client"] = start_endpoint(web, {"comm": "nat-client", "connect": to_published})
    # web runs containers too: its container (the same 172.17.0.2 again) calls db's published
    # port, translated twice: masqueraded by web, then DNATed by db.
    docker_bridge(web)
    web_container = situation.containers["web"] = add_container(web, "app", address=CONTAINER_ADDRESS)
    situation.pids["web/ctr-client"] = start_endpoint(
        web, {"comm": "ctr-client", "connect": to_published}, web_container)
    # a process of db calling its own published port through db's address (DNAT in output)
    situation.pids["db/self-client"] = start_endpoint(
        db, {"comm": "self-client", "connect": [{"address": db.ipv4, "port": PUBLISHED_PORT}]})
    # and one calling it through 127.0.0.1 (loopback source and destination, both translated)
    situation.pids["db/local-client"] = start_endpoint(
        db, {"comm": "local-client", "connect": [{"address": "127.0.0.1", "port": PUBLISHED_PORT}]})
    wait_established(db, None, "local-client", peer_port=PUBLISHED_PORT)
    wait_established(web, web_container, "ctr-client", peer_port=PUBLISHED_PORT)
    wait_established(db, None, "self-client", peer_port=PUBLISHED_PORT)
    wait_established(web, None, "nat-client", peer_port=PUBLISHED_PORT)
    wait_established(db, situation.containers["db"], "ctr-pg", local_port=DB_PORT, count=6)
    wait_established(cache, cache_container, "ctr-pg", local_port=DB_PORT, count=2)
    wait_established(web, None, "lab-api", local_port=API_PORT)
    wait_established(cache, cache_container, "ctr-redis", local_port=REDIS_PORT)
    for host in (db, cache):
        wait_established(host, None, "host-client", local_port=PINNED_DOCKER_SOURCE_PORT)
    wait_conntrack(db, f"dport={PUBLISHED_DNS_PORT} ", 2)  # both datagram clients went through db's DNAT
    situation.flows = [
        Expected(("web", "nat-client", "db", "ctr-pg", "tcp", DB_PORT, "db"), 1,
                 "published container port (DNAT on the container's host)"),
        Expected(("web", "ctr-client", "db", "ctr-pg", "tcp", DB_PORT, "db"), 1,
                 "container to a port published on another host: masqueraded by web, DNATed by db"),
        Expected(("web", "nat-client", "db", "ctr-dns", "udp", DNS_PORT, "db"), 1,
                 "connected UDP client of a published UDP port (an unconnected bound socket behind DNAT)"),
        Expected(("web", "ctr-client", "db", "ctr-dns", "udp", DNS_PORT, "db"), 1,
                 "the same from web's container: masquerade, then DNAT"),
        Expected(("db", "self-client", "db", "ctr-pg", "tcp", DB_PORT, "db"), 1,
                 "a host calling its own published port (DNAT in the output hook)"),
        Expected(("db", "local-client", "db", "ctr-pg", "tcp", DB_PORT, "db"), 1,
                 "a host calling its published port on 127.0.0.1 (userland-proxy off)"),
        Expected(("db", "host-client", "db", "ctr-pg", "tcp", DB_PORT, None), 1,
                 "host to its own container over docker0"),
        Expected(("cache", "host-client", "cache", "ctr-pg", "tcp", DB_PORT, None), 1,
                 "the same four-tuple on another Docker host"),
        Expected(("db", "ctr-web", "db", "ctr-pg", "tcp", DB_PORT, None), 1, "container to container over docker0"),
        Expected(("cache", "ctr-web", "cache", "ctr-pg", "tcp", DB_PORT, None), 1,
                 "the same container-to-container four-tuple on another Docker host"),
        Expected(("cache", "ctr-worker", "web", "lab-api", "tcp", API_PORT, "cache"), 1,
                 "container egress to a plain server, masqueraded by its host"),
        Expected(("cache", "ctr-app", "cache", "ctr-redis", "tcp", REDIS_PORT, None), 1,
                 "loopback inside a container"),
    ]
    return situation


def build_loopback_namespaces(lab: Lab) -> Situation:
    """One machine, multi: in its own namespace and in two containers (a, b), a client connects
    from 127.0.0.1:42000 to a server on 127.0.0.1:7000, so the three namespaces hold the very
    same pair of four-tuples. Comms tell them apart: app-root/srv-root, app-a/srv-a, app-b/srv-b."""
    lab.start()
    multi = lab.add_machine("multi", groups=("loopback",))
    situation = Situation(lab=lab, machines={"multi": multi})
    places: dict[str, Optional[Container]] = {"root": None}
    for name in ("a", "b"):
        places[name] = situation.containers[name] = add_container(multi, name)
    for name, container in places.items():
        situation.pids[f"srv-{name}"] = start_endpoint(
            multi, {"comm": f"srv-{name}", "listen": [{"address": "127.0.0.1", "port": LOOPBACK_PORT}]}, container)
        situation.pids[f"app-{name}"] = start_endpoint(multi, {"comm": f"app-{name}", "connect": [{
            "address": "127.0.0.1", "port": LOOPBACK_PORT,
            "source_address": "127.0.0.1", "source_port": PINNED_LOOPBACK_SOURCE_PORT}]}, container)
    for name, container in places.items():
        wait_established(multi, container, f"srv-{name}", local_port=LOOPBACK_PORT)
        wait_established(multi, container, f"app-{name}", local_port=PINNED_LOOPBACK_SOURCE_PORT)
        situation.flows.append(Expected(("multi", f"app-{name}", "multi", f"srv-{name}", "tcp", LOOPBACK_PORT, None), 1,
                                        f"loopback in namespace {name}"))
    return situation


def build_sidecar(lab: Lab) -> Situation:
    """web, db. web runs a Kubernetes-style pod: a namespace on a ``cni0`` bridge (10.244.0.2,
    masqueraded by web on the way out) holding an application and a service-mesh sidecar. The
    pod's own NAT table redirects every outbound TCP connection of the application to the
    sidecar on 127.0.0.1:15001 (as Istio does); the sidecar (another uid, which the redirect
    spares) holds its own connection to db/lab-pg on 5432.

    Flows: web/app -> web/sidecar tcp 15001 via web (the application dialled db:5432; the pod's
    conntrack says where it went); web/sidecar -> db/lab-pg tcp 5432 via web (masquerade)."""
    lab.start()
    machines = {name: lab.add_machine(name, groups=("mesh",)) for name in ("web", "db")}
    web, db = machines["web"], machines["db"]
    situation = Situation(lab=lab, machines=machines)
    exec_in(web, ["ip", "link", "add", "cni0", "type", "bridge"])
    exec_in(web, ["ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", "cni0"])
    exec_in(web, ["ip", "link", "set", "cni0", "up"])
    enable_forwarding(web)
    exec_in(web, ["nft", "-f", "-"], input=(
        "table ip nat {\n"
        "  chain postrouting { type nat hook postrouting priority srcnat;\n"
        f'    ip saddr {POD_SUBNET} oifname != "cni0" masquerade\n'
        "  }\n"
        "}\n"
    ))
    pod = situation.containers["pod"] = add_container(web, "pod", address=POD_ADDRESS, bridge="cni0",
                                                      gateway=POD_GATEWAY, prefix=24)
    sidecar_uid = str(SIDECAR_UID)
    exec_in(web, ["nft", "-f", "-"], pod, input=(
        "table ip nat {\n"
        "  chain output { type nat hook output priority -100;\n"
        f"    meta skuid != {sidecar_uid} ip daddr != 127.0.0.0/8 tcp dport != {SIDECAR_PORT} redirect to :{SIDECAR_PORT}\n"
        "  }\n"
        "}\n"
    ))
    situation.pids["db/lab-pg"] = start_endpoint(db, {"comm": "lab-pg", "listen": [{"address": "0.0.0.0", "port": DB_PORT}]})
    situation.pids["web/sidecar"] = start_endpoint(web, {
        "comm": "sidecar", "listen": [{"address": "0.0.0.0", "port": SIDECAR_PORT}],
        "connect": [{"address": db.ipv4, "port": DB_PORT}]}, pod, user=SIDECAR_USER)
    situation.pids["web/app"] = start_endpoint(web, {"comm": "app", "connect": [{"address": db.ipv4, "port": DB_PORT}]},
                                               pod)
    wait_established(web, pod, "sidecar", local_port=SIDECAR_PORT)
    wait_established(web, pod, "sidecar", peer_port=DB_PORT)
    wait_established(db, None, "lab-pg", local_port=DB_PORT)
    situation.flows = [
        Expected(("web", "app", "web", "sidecar", "tcp", SIDECAR_PORT, "web"), 1,
                 "application to its sidecar: redirected inside the pod"),
        Expected(("web", "sidecar", "db", "lab-pg", "tcp", DB_PORT, "web"), 1, "sidecar to the server, masqueraded by web"),
    ]
    return situation

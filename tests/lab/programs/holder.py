"""A lab program that holds real sockets open until it is killed.

Run inside a lab machine as ``python3 holder.py SPEC.json``. The spec says which name the process
takes (its comm, so flows are recognisable), which sockets it listens on, which connections it
opens, and which raw or packet sockets it holds. Once every connection is established it writes
``READY`` on stdout, then accepts and holds incoming connections forever.

Stdlib only: the machines run the system interpreter, nothing else is installed in them.
"""

import json
import os
import resource
import select
import socket
import sys
import time

CONNECT_DEADLINE_SECONDS = 30.0
ETH_P_ALL = 0x0003


def set_comm(name):
    """Give this process a recognisable comm (what ps and /proc/PID/comm show)."""
    with open("/proc/self/comm", "w") as comm:
        comm.write(name[:15])


def family_of(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def listen(spec):
    """Open one listening (TCP) or bound (UDP) socket described by ``spec``."""
    proto = spec["proto"]
    family = family_of(spec["address"])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # dual_stack: one tcp6 socket on [::] that also accepts IPv4 clients (as ::ffff:a.b.c.d).
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if spec.get("dual_stack") else 1)
    sock.bind((spec["address"], spec["port"]))
    if proto == "tcp":
        sock.listen(spec.get("backlog", 128))
    return sock


def connect(spec):
    """Open ``count`` connections described by ``spec``, retrying while the server starts."""
    proto = spec["proto"]
    family = family_of(spec["address"])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    opened = []
    deadline = time.monotonic() + CONNECT_DEADLINE_SECONDS
    for _ in range(spec.get("count", 1)):
        while True:
            sock = socket.socket(family, kind)
            try:
                sock.connect((spec["address"], spec["port"]))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        if proto == "udp":
            # A connected UDP socket has a remote address; send one datagram so it is real traffic.
            sock.send(b"lab datagram\n")
        opened.append(sock)
    return opened


def raw_socket(protocol):
    """A raw IPv4 socket for one IP protocol (1 = ICMP): it receives every such packet."""
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, protocol)


def packet_socket(interface):
    """A packet socket bound to ``interface`` that sees every frame (ETH_P_ALL)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, ETH_P_ALL))
    return sock


def loopback_pairs(count, first_port, per_port=20000):
    """Open ``count`` established loopback TCP connections (2 * count sockets) inside this process.

    Spread over several server ports (``per_port`` connections each) so the ephemeral port
    range of one (address, port) pair is never exhausted.
    """
    per_port = min(per_port, 20000)
    held = []
    servers = []
    made = 0
    port = first_port
    while made < count:
        server = listen({"proto": "tcp", "address": "127.0.0.1", "port": port, "backlog": 4096})
        servers.append(server)
        for _ in range(min(per_port, count - made)):
            client = socket.create_connection(("127.0.0.1", port))
            accepted, _ = server.accept()
            held.append(client)
            held.append(accepted)
            made += 1
        port += 1
    return servers, held


def raise_fd_limit(wanted):
    """Raise the open-files limit to ``wanted``; past the hard limit only with CAP_SYS_RESOURCE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve_forever(listeners, held):
    """Accept every incoming TCP connection and keep it; drain whatever arrives."""
    tcp_listeners = [s for s in listeners if s.type == socket.SOCK_STREAM]
    readable = list(tcp_listeners) + [s for s in listeners if s.type == socket.SOCK_DGRAM]
    while True:
        ready, _, _ = select.select(readable, [], [], 60)
        for sock in ready:
            if sock in tcp_listeners:
                accepted, _ = sock.accept()
                held.append(accepted)
                readable.append(accepted)
            else:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data and sock.type == socket.SOCK_STREAM:
                    readable.remove(sock)


def main():
    with open(sys.argv[1]) as spec_file:
        spec = json.load(spec_file)
    set_comm(spec["comm"])
    raise_fd_limit(spec.get("fd_limit", 1024))

    listeners = [listen(item) for item in spec.get("listen", [])]
    # Pre-forked workers inherit the listening sockets, like a pre-forking server's workers.
    for _ in range(spec.get("workers", 0)):
        if os.fork() == 0:
            while True:
                time.sleep(3600)

    held = []
    for item in spec.get("connect", []):
        held.extend(connect(item))
    held.extend(raw_socket(protocol) for protocol in spec.get("raw", []))
    held.extend(packet_socket(interface) for interface in spec.get("packet", []))
    if spec.get("loopback_pairs"):
        servers, pairs = loopback_pairs(spec["loopback_pairs"], spec.get("loopback_first_port", 20000),
                                        spec.get("loopback_per_port", 20000))
        held.extend(servers)
        held.extend(pairs)

    sys.stdout.write("READY\n")
    sys.stdout.flush()
    serve_forever(listeners, held)


if __name__ == "__main__":
    main()

"""Real Debian daemons on lab machines: the services netviz meets on real fleets.

``build_services(lab)`` adds four machines to a lab and starts inside them the daemons as Debian
packages them, each in the foreground, with its configuration, pid and log files named on its
command line and everything it writes kept in the machine's private /tmp (never the box's /var
or /etc):

- ``front``: nginx, a master and two workers sharing the listeners on 0.0.0.0:80 and [::]:80,
  proxying to ``app`` over a pool of upstream keepalive connections;
- ``app``: gunicorn, a master and two gthread workers sharing the listener on 0.0.0.0:8000,
  serving a WSGI app that increments a redis counter on every request, over a connection each
  worker opens to ``store`` (IPv6) as it starts; and psql holding a session on ``store``'s
  PostgreSQL (IPv4);
- ``store``: redis-server (no persistence), with redis-cli pinging it over 127.0.0.1 once a
  second on one connection; PostgreSQL (``initdb`` into /tmp, then ``postgres`` as the postgres
  user);
- ``edge``: two curl processes requesting pages through nginx at a steady rate, one over IPv4
  and one over IPv6, each on one keepalive connection.

Every connection is long-lived (keepalive on both HTTP hops with limits far above what a test
sends, sessions that stay open), so a capture taken at any moment finds the same flows.
``build_services`` returns once ``ss`` inside the machines shows every one of them established.
"""

from __future__ import annotations

import pwd
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from .lab import CLEAN_ENV, SYSTEM_PYTHON, Lab, LabError, Machine, SsSocket, _alive, parse_ss
from .scenario import FlowEnds, FlowKey

HTTP_PORT = 80
APP_PORT = 8000
REDIS_PORT = 6379
POSTGRES_PORT = 5432

NGINX_WORKERS = 2
GUNICORN_WORKERS = 2
# Requests per second of each curl: steady traffic on its keepalive connection, little load.
CURL_RATE = "4/s"
# Far above anything a test run reaches, so that no connection is closed and reopened while
# the machines are captured (nginx closes a keepalive connection after 1000 requests by default).
KEEPALIVE_SECONDS = 3600
KEEPALIVE_REQUESTS = 1_000_000

NGINX_USER = "www-data"  # the user Debian's nginx.conf gives the workers
POSTGRES_USER = "postgres"  # created by Debian's postgresql-common; postgres refuses to run as root

# Where each daemon keeps its files inside its machine (the machine's own tmpfs /tmp).
NGINX_DIR = "/tmp/nginx"
APP_DIR = "/tmp/app"
REDIS_DIR = "/tmp/redis"
POSTGRES_DIR = "/tmp/postgres"

# The WSGI application gunicorn serves on app. Each worker imports it after the fork, so each
# opens its own redis connection at start (a pool: a second connection only under concurrency).
APP_MODULE = '''\
"""A small web app: counts its hits in redis."""
import os

import redis

store = redis.Redis(host=os.environ["STORE_ADDRESS"], port=int(os.environ["STORE_PORT"]), socket_keepalive=True)
store.ping()


def application(environ, start_response):
    hits = store.incr("hits")
    body = ("hit %d\\n" % hits).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


# --------------------------------------------------------------------------- what is needed


def postgres_bin_dir() -> Optional[Path]:
    """The bin directory of the newest PostgreSQL server installed the Debian way, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0)
    return candidates[-1].parent if candidates else None


def binaries() -> dict[str, Optional[str]]:
    """Every program the services need -> its path (None when missing)."""
    found = {name: shutil.which(name, path=CLEAN_ENV["PATH"])
             for name in ("nginx", "redis-server", "redis-cli", "gunicorn", "curl")}
    pg = postgres_bin_dir()
    for name in ("postgres", "initdb", "psql"):
        found[name] = str(pg / name) if pg is not None and (pg / name).exists() else None
    return found


DEBIAN_PACKAGES = {
    "nginx": "nginx", "redis-server": "redis-server", "redis-cli": "redis-tools", "gunicorn": "gunicorn",
    "curl": "curl", "postgres": "postgresql", "initdb": "postgresql", "psql": "postgresql",
}


def missing_daemons() -> list[str]:
    """Why the services cannot run here (a program, module or user missing); empty when they can."""
    reasons = [f"`{name}` is not installed (Debian package {DEBIAN_PACKAGES[name]})"
               for name, path in binaries().items() if path is None]
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import redis"], capture_output=True, env=CLEAN_ENV)
    if probe.returncode != 0:
        reasons.append(f"{SYSTEM_PYTHON} cannot import redis (Debian package python3-redis)")
    for user in (NGINX_USER, POSTGRES_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            reasons.append(f"no user {user!r} on this box (Debian creates it with the package)")
    return reasons


# --------------------------------------------------------------------------- the scenario


@dataclass(frozen=True, order=True)
class ServiceFlow(FlowEnds):
    """One edge the map must hold, and what it stands for."""

    what: str


@dataclass
class Services:
    """The machines, the daemons started on them (name -> root pid) and the flows they make."""

    lab: Lab
    machines: dict[str, Machine]
    flows: list[ServiceFlow] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return list(self.machines)

    def flow_keys(self) -> set[FlowKey]:
        return {flow.key() for flow in self.flows}

    def machine_of(self, address: str, seen_from: str) -> Optional[str]:
        """The lab machine that owns ``address``, as machine ``seen_from`` would reach it
        (loopback stays on ``seen_from``); None for an address outside the group."""
        if address in ("127.0.0.1", "::1"):
            return seen_from
        for name, machine in self.machines.items():
            if address in (machine.ipv4, machine.ipv6):
                return name
        return None

    def inner_pid(self, name: str) -> int:
        """The pid, as its machine numbers it, of the daemon or client started as ``name``."""
        root_pid = self.pids[name]
        for machine in self.machines.values():
            for outer, inner, _ in machine.processes():
                if outer == root_pid:
                    return inner
        raise LabError(f"{name} (pid {root_pid}) is not running")

    def pids_named(self, machine: str, comm: str) -> list[int]:
        """Pids (as the machine numbers them) of every process named ``comm`` on ``machine``."""
        return sorted(inner for _, inner, name in self.machines[machine].processes() if name == comm)


def _as_user(user: str, argv: Sequence[str]) -> list[str]:
    return ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--", *argv]


def tcp_sockets(machine: Machine) -> list[SsSocket]:
    """The machine's TCP sockets, as ``ss -tanpH`` inside it lists them."""
    return parse_ss(machine.exec(["ss", "-tanpH"], check=True).stdout, "tcp")


class _Starter:
    """Starts daemons on the machines and waits for what ss must show, with useful failures."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.logs: list[tuple[Machine, str]] = []  # (machine, log path inside it)

    def run(self, machine: Machine, name: str, argv: Sequence[str], *, logs: Sequence[str] = (),
            env: Optional[dict[str, str]] = None) -> int:
        pid = machine.run(argv, log_name=name, env=env)
        self.services.pids[name] = pid
        self.logs += [(machine, path) for path in logs]
        return pid

    def prepare(self, machine: Machine, script: str) -> None:
        machine.exec(["sh", "-ec", script], check=True)

    def diagnosis(self) -> str:
        """What the daemons said: their log files inside the machines and their stdout/stderr."""
        parts = []
        for name, pid in self.services.pids.items():
            state = "running" if _alive(pid) else "EXITED"
            parts.append(f"{name} (pid {pid}): {state}")
        for machine, path in self.logs:
            if machine.running:
                tail = machine.exec(["tail", "-n", "15", path]).stdout.strip()
                parts.append(f"--- {machine.name}:{path}\n{tail}")
        for machine in self.services.machines.values():
            for log in sorted((machine.dir / "logs").glob("*.log")):
                parts.append(f"--- {machine.name} {log.name}\n{log.read_text()[-1500:].strip()}")
        return "\n".join(parts)

    def wait(self, what: str, probe: Callable[[], bool], timeout: float = 30) -> None:
        """Poll ``probe`` (which asks ss) until it holds; fail at once if a daemon died."""
        deadline = time.monotonic() + timeout
        while not probe():
            dead = [name for name, pid in self.services.pids.items() if not _alive(pid)]
            if dead or time.monotonic() > deadline:
                reason = f"{', '.join(dead)} exited" if dead else f"not within {timeout} s"
                raise LabError(f"{what}: {reason}\n{self.diagnosis()}")
            time.sleep(0.1)


def listening(machine: Machine, comm: str, port: int, addresses: Sequence[str]) -> Callable[[], bool]:
    """A probe: ``comm`` listens on ``port`` at every one of ``addresses`` on ``machine``."""
    def probe() -> bool:
        bound = {row.local_address for row in tcp_sockets(machine)
                 if row.state == "LISTEN" and row.local_port == str(port) and comm in row.comms}
        return set(addresses) <= bound
    return probe


def connected(machine: Machine, comm: str, address: str, port: int, count: int = 1) -> Callable[[], bool]:
    """A probe: ``comm`` on ``machine`` holds ``count`` established connections to address:port."""
    def probe() -> bool:
        rows = [row for row in tcp_sockets(machine)
                if row.state == "ESTAB" and comm in row.comms and row.peer_address == address
                and row.peer_port == str(port)]
        return len(rows) >= count
    return probe


def nginx_config(upstream: str) -> str:
    """nginx.conf for front: every path it writes under NGINX_DIR, the compiled-in /var ones
    (temp paths, access log) overridden."""
    return f"""\
# nginx of lab machine front: a reverse proxy in front of app, as a Debian host runs one.
daemon off;
master_process on;
worker_processes {NGINX_WORKERS};
user {NGINX_USER};
pid {NGINX_DIR}/nginx.pid;
error_log {NGINX_DIR}/error.log notice;

events {{
    worker_connections 256;
}}

http {{
    access_log {NGINX_DIR}/access.log;
    client_body_temp_path {NGINX_DIR}/body;
    proxy_temp_path {NGINX_DIR}/proxy;
    fastcgi_temp_path {NGINX_DIR}/fastcgi;
    uwsgi_temp_path {NGINX_DIR}/uwsgi;
    scgi_temp_path {NGINX_DIR}/scgi;
    keepalive_timeout {KEEPALIVE_SECONDS}s;
    keepalive_requests {KEEPALIVE_REQUESTS};

    upstream app {{
        server {upstream}:{APP_PORT};
        keepalive 16;
        keepalive_timeout {KEEPALIVE_SECONDS}s;
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}

    server {{
        listen 0.0.0.0:{HTTP_PORT};
        listen [::]:{HTTP_PORT} ipv6only=on;
        location / {{
            proxy_pass http://app;
            # HTTP/1.1 without "Connection: close": what upstream keepalive needs
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def build_services(lab: Lab, timeout: float = 30) -> Services:
    """Add edge, front, app and store to ``lab`` (starting it), start the daemons (servers
    first) and return once ss shows every flow of ``Services.flows`` established."""
    for name in ("edge", "front", "app", "store"):
        lab.add_machine(name, groups=("services",))
    lab.start()
    machines = {name: lab.machines[name] for name in ("edge", "front", "app", "store")}
    services = Services(lab=lab, machines=machines)
    edge, front, app, store = (machines[name] for name in ("edge", "front", "app", "store"))
    paths = binaries()
    start = _Starter(services)
    q = shlex.quote

    # store: redis (no persistence at all) and its loopback client
    start.prepare(store, f"mkdir -p {REDIS_DIR}")
    start.run(store, "redis-server", [
        paths["redis-server"], "--port", str(REDIS_PORT), "--bind", "0.0.0.0", "::", "--protected-mode", "no",
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--supervised", "no", "--dir", REDIS_DIR,
        "--pidfile", f"{REDIS_DIR}/redis.pid", "--logfile", f"{REDIS_DIR}/redis.log",
    ], logs=[f"{REDIS_DIR}/redis.log"])
    start.wait("redis-server listening", listening(store, "redis-server", REDIS_PORT, ["0.0.0.0", "::"]), timeout)
    start.run(store, "redis-cli", [paths["redis-cli"], "-h", "127.0.0.1", "-p", str(REDIS_PORT), "-r", "-1", "-i", "1",
                                   "PING"])

    # store: PostgreSQL, a cluster of its own in /tmp, run by the postgres user
    data = f"{POSTGRES_DIR}/data"
    start.prepare(store, f"install -d -o {POSTGRES_USER} -g {POSTGRES_USER} -m 700 {POSTGRES_DIR} {POSTGRES_DIR}/log")
    store.exec(_as_user(POSTGRES_USER, [paths["initdb"], "-D", data, "-A", "trust", "-U", "postgres", "--no-sync",
                                        "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]), check=True)
    # initdb trusts local connections only; the lab's machines may connect too
    hba = f"local all all trust\nhost all all {lab.network_v4} trust\nhost all all {lab.network_v6} trust\n"
    store.exec(["sh", "-ec", f"cat > {POSTGRES_DIR}/pg_hba.conf"], input=hba, check=True)
    start.run(store, "postgres", _as_user(POSTGRES_USER, [
        paths["postgres"], "-D", data, "-k", POSTGRES_DIR, "-c", "listen_addresses=*", "-c", f"port={POSTGRES_PORT}",
        "-c", f"hba_file={POSTGRES_DIR}/pg_hba.conf",
        "-c", "logging_collector=on", "-c", f"log_directory={POSTGRES_DIR}/log", "-c", "log_filename=postgres.log",
    ]), logs=[f"{POSTGRES_DIR}/log/postgres.log"])
    start.wait("postgres listening", listening(store, "postgres", POSTGRES_PORT, ["0.0.0.0", "::"]), timeout)

    # app: gunicorn serving the WSGI app, and a psql session held open on store
    app.exec(["sh", "-ec", f"mkdir -p {q(APP_DIR)} && cat > {q(APP_DIR + '/app.py')}"], input=APP_MODULE, check=True)
    start.run(app, "gunicorn", [
        paths["gunicorn"], "--bind", f"0.0.0.0:{APP_PORT}", "--workers", str(GUNICORN_WORKERS),
        "--worker-class", "gthread", "--threads", "4", "--keep-alive", str(KEEPALIVE_SECONDS),
        "--chdir", APP_DIR, "--worker-tmp-dir", APP_DIR, "--pid", f"{APP_DIR}/gunicorn.pid",
        "--error-logfile", f"{APP_DIR}/gunicorn.log", "app:application",
    ], logs=[f"{APP_DIR}/gunicorn.log"],
        env={"STORE_ADDRESS": store.ipv6, "STORE_PORT": str(REDIS_PORT), "PYTHONDONTWRITEBYTECODE": "1"})
    start.wait("gunicorn listening", listening(app, "gunicorn", APP_PORT, ["0.0.0.0"]), timeout)
    start.wait("each gunicorn worker connected to redis",
               connected(app, "gunicorn", store.ipv6, REDIS_PORT, GUNICORN_WORKERS), timeout)
    start.run(app, "psql", [paths["psql"], "-X", "-q", "-h", store.ipv4, "-p", str(POSTGRES_PORT), "-U", "postgres",
                            "-d", "postgres", "-c", "SELECT pg_sleep(86400)"])

    # front: nginx, proxying to app
    config = front.dir / "nginx.conf"
    config.write_text(nginx_config(app.ipv4))
    start.prepare(front, f"mkdir -p {NGINX_DIR}")
    # -e: the error log nginx opens before it reads its configuration (Debian builds it as stderr)
    start.run(front, "nginx", [paths["nginx"], "-p", f"{NGINX_DIR}/", "-c", str(config),
                               "-e", f"{NGINX_DIR}/error.log"], logs=[f"{NGINX_DIR}/error.log"])
    start.wait("nginx listening", listening(front, "nginx", HTTP_PORT, ["0.0.0.0", "::"]), timeout)

    # edge: two clients on keepalive connections, one per address family. The URL range makes
    # one curl fetch page after page on the same connection.
    for family, host in (("ipv4", front.ipv4), ("ipv6", f"[{front.ipv6}]")):
        start.run(edge, f"curl-{family}", [paths["curl"], "-sS", "--rate", CURL_RATE, "-o", "/dev/null",
                                           f"http://{host}:{HTTP_PORT}/hit/[1-100000000]"])

    start.wait("curl connected to nginx over IPv4", connected(edge, "curl", front.ipv4, HTTP_PORT), timeout)
    start.wait("curl connected to nginx over IPv6", connected(edge, "curl", front.ipv6, HTTP_PORT), timeout)
    start.wait("nginx connected to gunicorn", connected(front, "nginx", app.ipv4, APP_PORT), timeout)
    start.wait("redis-cli connected over loopback", connected(store, "redis-cli", "127.0.0.1", REDIS_PORT), timeout)
    start.wait("psql connected to postgres", connected(app, "psql", store.ipv4, POSTGRES_PORT), timeout)

    services.flows = [
        ServiceFlow("edge", "curl", "front", "nginx", "tcp", HTTP_PORT,
                    "HTTP clients on keepalive connections, IPv4 and IPv6, to a pre-forked nginx"),
        ServiceFlow("front", "nginx", "app", "gunicorn", "tcp", APP_PORT,
                    "nginx workers' upstream keepalive pool to a pre-forked gunicorn"),
        ServiceFlow("app", "gunicorn", "store", "redis-server", "tcp", REDIS_PORT,
                    "each gunicorn worker's redis connection (IPv6)"),
        ServiceFlow("store", "redis-cli", "store", "redis-server", "tcp", REDIS_PORT, "loopback redis client"),
        ServiceFlow("app", "psql", "store", "postgres", "tcp", POSTGRES_PORT,
                    "a psql session, served by a forked postgres backend"),
    ]
    return services

"""The payload on this machine, against real processes holding real sockets.

`ss -tuanpwe` from iproute2 is the independent oracle for socket-to-process attribution, and
`ip -j addr` for the addresses of a namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netviz.snapshot.framing import decode_framed
from netviz.payload import capture
from netviz.snapshot import parse_snapshot

PAYLOAD = Path(capture.__file__)
IS_ROOT = os.geteuid() == 0
needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")

HOLDER = r"""
import socket, sys
role, host = sys.argv[1], sys.argv[2]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
held = []
if role == "tcp-server":
    listener = socket.socket(family)
    if family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(sys.argv[4]))
    listener.bind((host, 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)
    for _ in range(int(sys.argv[3])):
        held.append(listener.accept()[0])
elif role == "tcp-client":
    for _ in range(int(sys.argv[4])):
        held.append(socket.create_connection((host, int(sys.argv[3]))))
elif role == "udp-server":
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    held.append(server)
    print(server.getsockname()[1], flush=True)
elif role == "udp-client":
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.connect((host, int(sys.argv[3])))
    held.append(client)
print("ready", flush=True)
sys.stdin.read()
"""


class Holders:
    """Real processes holding sockets until their stdin closes."""

    def __init__(self, prefix: tuple[str, ...] = ()) -> None:
        self.prefix = prefix
        self.processes: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        process = subprocess.Popen([*self.prefix, sys.executable, "-c", HOLDER, *args],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.processes.append(process)
        return process

    @staticmethod
    def line(process: subprocess.Popen) -> str:
        text = process.stdout.readline().strip()
        assert text, f"holder {process.args[3:]} died"
        return text

    def tcp_pair(self, server_host: str, client_host: str, connections: int = 2, v6only: int = 1):
        server = self.start("tcp-server", server_host, str(connections), str(v6only))
        port = self.line(server)
        client = self.start("tcp-client", client_host, port, str(connections))
        assert self.line(client) == "ready" and self.line(server) == "ready"
        return server, client, int(port)

    def udp_pair(self, host: str):
        server = self.start("udp-server", host)
        port = self.line(server)
        assert self.line(server) == "ready"
        client = self.start("udp-client", host, port)
        assert self.line(client) == "ready"
        return server, client, int(port)

    def stop(self) -> None:
        for process in self.processes:
            try:
                process.stdin.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def load():
    """tcp, tcp6, a dual-stack listener with a v4 client, udp, udp6 and a socat pair."""
    holders = Holders()
    extra: list[subprocess.Popen] = []
    try:
        pairs = {
            "tcp": holders.tcp_pair("127.0.0.1", "127.0.0.1"),
            "tcp6": holders.tcp_pair("::1", "::1"),
            "dual": holders.tcp_pair("::", "127.0.0.1", v6only=0),
            "udp": holders.udp_pair("127.0.0.1"),
            "udp6": holders.udp_pair("::1"),
        }
        if shutil.which("socat"):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            probe.close()
            server = subprocess.Popen(["socat", f"TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr",
                                       "EXEC:sleep 120"], stdin=subprocess.DEVNULL)
            extra.append(server)
            for _ in range(50):
                if f":{port} " in subprocess.run(["ss", "-tlnH"], capture_output=True, text=True).stdout:
                    break
                subprocess.run(["sleep", "0.1"])
            client = subprocess.Popen(["socat", f"TCP4:127.0.0.1:{port}", "EXEC:sleep 120"],
                                      stdin=subprocess.DEVNULL)
            extra.append(client)
            subprocess.run(["sleep", "0.5"])
            pairs["socat"] = (server, client, port)
        yield pairs
    finally:
        holders.stop()
        for process in extra:
            process.kill()
            process.wait()


def run_payload(*args: str, prefix: tuple[str, ...] = ()) -> dict:
    """The payload as a target runs it: source on stdin, JSON on stdout."""
    with open(PAYLOAD, "rb") as source:
        result = subprocess.run([*prefix, sys.executable, "-", *args], stdin=source,
                                capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def ss_owners() -> dict[int, frozenset[int]]:
    """inode -> pids holding it, for every tcp/udp/raw socket `ss` shows (inode 0 excluded)."""
    output = subprocess.run(["ss", "-tuanpweH"], capture_output=True, text=True, check=True).stdout
    owners: dict[int, frozenset[int]] = {}
    for line in output.splitlines():
        inode = re.search(r"\bino:(\d+)", line)
        if inode is None or inode.group(1) == "0":
            continue
        users = re.search(r"users:\((.*?)\)\)", line)
        pids = frozenset(int(p) for p in re.findall(r"pid=(\d+)", users.group(1))) if users else frozenset()
        owners[int(inode.group(1))] = pids
    return owners


def capture_owners(doc: dict, netns: int, protos: set[str]) -> dict[int, frozenset[int]]:
    """inode -> pids holding it, per the snapshot, for one namespace's sockets of `protos`."""
    holders: dict[int, set[int]] = {}
    for process in doc["processes"]:
        for inode in process["sockets"]:
            holders.setdefault(inode, set()).add(process["pid"])
    (namespace,) = [ns for ns in doc["namespaces"] if ns["inode"] == netns]
    return {s["inode"]: frozenset(holders.get(s["inode"], ())) for s in namespace["sockets"]
            if s["proto"] in protos}


def own_netns() -> int:
    return os.stat("/proc/self/ns/net").st_ino


@needs_ss
def test_every_socket_owner_matches_ss(load):
    """Every socket ss shows (before and after the capture, unchanged) has the same owners."""
    before = ss_owners()
    doc = run_payload()
    after = ss_owners()
    stable = {inode: pids for inode, pids in before.items() if after.get(inode) == pids}
    ours = capture_owners(doc, own_netns(), {"tcp", "tcp6", "udp", "udp6", "raw", "raw6"})
    assert len(stable) >= 12
    mismatches = {inode: (pids, ours.get(inode)) for inode, pids in stable.items() if ours.get(inode) != pids}
    assert mismatches == {}

    # The load itself, socket by socket: every process of a pair holds what it opened.
    pids_of = {pid for pair in load.values() for pid in (pair[0].pid, pair[1].pid)}
    held = {p["pid"]: p["sockets"] for p in doc["processes"] if p["pid"] in pids_of}
    for name, (server, client, _port) in load.items():
        assert held[server.pid] or name == "socat", name
        assert held[client.pid] or name == "socat", name
    if "socat" in load:
        assert held[load["socat"][0].pid] and held[load["socat"][1].pid]


@needs_ss
def test_dual_stack_listener_sees_v4_client_as_mapped_address(load):
    server, client, port = load["dual"]
    doc = run_payload()
    by_inode = {s["inode"]: s for ns in doc["namespaces"] for s in ns["sockets"]}
    procs = {p["pid"]: p for p in doc["processes"]}
    server_sockets = [by_inode[i] for i in procs[server.pid]["sockets"]]
    accepted = [s for s in server_sockets if s["state"] == "ESTABLISHED"]
    assert {(s["proto"], s["local"], s["local_port"]) for s in accepted} == {("tcp6", "::ffff:127.0.0.1", port)}
    listener = [s for s in server_sockets if s["state"] == "LISTEN"]
    assert [(s["proto"], s["local"]) for s in listener] == [("tcp6", "::")]
    client_sockets = [by_inode[i] for i in procs[client.pid]["sockets"]]
    assert {(s["proto"], s["remote"], s["remote_port"]) for s in client_sockets} == {("tcp", "127.0.0.1", port)}
    # The two ends name the same connection once the mapped address is read as IPv4.
    assert {s["remote_port"] for s in accepted} == {s["local_port"] for s in client_sockets}


def test_netlink_and_proc_text_give_identical_records(load):
    tables = {"tcp": (socket.AF_INET, socket.IPPROTO_TCP), "tcp6": (socket.AF_INET6, socket.IPPROTO_TCP),
              "udp": (socket.AF_INET, socket.IPPROTO_UDP), "udp6": (socket.AF_INET6, socket.IPPROTO_UDP)}
    for name, (family, protocol) in tables.items():
        try:
            via_netlink, _ = capture.netlink_inet_sockets(family, protocol, name)
        except OSError as error:
            pytest.skip(f"sock_diag unavailable for {name}: {error}")
        with open(f"/proc/net/{name}") as handle:
            via_text, _ = capture.parse_inet_table(handle, name)
        a = {r[1]: r for r in via_netlink}
        b = {r[1]: r for r in via_text}
        common = set(a) & set(b)
        assert {i: a[i] for i in common} == {i: b[i] for i in common}, name
        # Sockets that appeared or vanished between the two reads are few.
        assert len(common) >= 0.9 * max(len(a), len(b)), name
    # The load's sockets are all there on both paths, in whole documents too.
    with_netlink = run_payload()
    without = run_payload("--no-netlink")
    pids = {pid for pair in load.values() for pid in (pair[0].pid, pair[1].pid)}

    def load_sockets(doc):
        inodes = {i for p in doc["processes"] if p["pid"] in pids for i in p["sockets"]}
        return sorted((s["proto"], s["inode"], s["local"], s["local_port"], s["remote"],
                       s["remote_port"], s["state"], s["uid"])
                      for ns in doc["namespaces"] for s in ns["sockets"] if s["inode"] in inodes)

    assert load_sockets(with_netlink) == load_sockets(without) != []


def test_contract_real_capture_through_the_loader(load):
    doc = capture.collect()
    snapshot = parse_snapshot(doc, "this machine")
    assert snapshot.name == socket.gethostname() or snapshot.name == doc["host"]["hostname"]
    assert snapshot.coverage.processes_seen == len(snapshot.processes) > 0
    own = [ns for ns in snapshot.namespaces if ns.inode == own_netns()]
    assert own and any(a.address == "127.0.0.1" and a.interface == "lo" for a in own[0].addresses)
    mine = {p.pid: p for p in snapshot.processes}
    server = load["tcp"][0]
    assert mine[server.pid].sockets and mine[server.pid].netns == own_netns()


def test_framed_payload_from_stdin_decodes():
    with open(PAYLOAD, "rb") as source:
        result = subprocess.run(["sh", "-c", f"echo 'Last login: banner'; {sys.executable} - --framed; echo bye"],
                                stdin=source, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"Last login: banner\nNETVIZ-SNAPSHOT-BEGIN 1 ")
    doc = json.loads(decode_framed(result.stdout))
    assert parse_snapshot(doc, "framed").host.hostname == doc["host"]["hostname"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_payload_writes_nothing(tmp_path):
    """strace every file-changing system call of a whole run: only stdout is written, and the
    pipes the payload makes to hear from its children (one per network namespace it enters)."""
    log = tmp_path / "trace"
    calls = ("pipe,pipe2,open,openat,openat2,creat,mkdir,mkdirat,unlink,unlinkat,rmdir,rename,renameat,renameat2,"
             "link,linkat,symlink,symlinkat,truncate,ftruncate,chmod,fchmod,fchmodat,chown,fchown,"
             "fchownat,lchown,write,pwrite64,writev,setxattr,lsetxattr,fsetxattr,utimensat,mknod,mknodat")
    with open(PAYLOAD, "rb") as source:
        result = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", f"trace={calls}",
                                 sys.executable, "-", "--framed"], stdin=source, capture_output=True, timeout=120)
    if result.returncode != 0 and b"ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.decode()[:200]}")
    assert result.returncode == 0, result.stderr.decode()
    decode_framed(result.stdout)
    bad = []
    pipes = set()  # write ends of the pipes the payload made (fd numbers, inherited by its children)
    for line in log.read_text().splitlines():
        call = re.sub(r"^\d+\s+", "", line)
        if call.startswith("<... "):
            continue  # the end of a call interrupted by another process's: its start was checked
        name = call.split("(", 1)[0]
        if name in ("pipe", "pipe2"):
            created = re.match(r"pipe2?\(\[(\d+), (\d+)\]", call)
            assert created, call
            pipes.add(created.group(2))
        elif name in ("open", "openat", "openat2"):
            if re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND", call):
                bad.append(call)
        elif name in ("write", "writev", "pwrite64"):
            fd = call[len(name) + 1:].split(",", 1)[0]
            if fd != "1" and fd not in pipes:
                bad.append(call)
        elif name and not name.startswith(("+++", "---")):
            bad.append(call)
    assert bad == []


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_unprivileged_run_counts_what_it_cannot_see(load):
    doc = run_payload(prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
    coverage = doc["coverage"]
    assert coverage["euid"] == 65534 and coverage["complete"] is False
    assert coverage["processes_denied"] > 0
    procs = {p["pid"]: p for p in doc["processes"]}
    server = load["tcp"][0]
    assert procs[server.pid].get("fd_denied") is True and procs[server.pid]["sockets"] == []
    snapshot = parse_snapshot(doc, "unprivileged", name="here")
    # The user is told the map is partial, and why.
    assert any(w.startswith("here: partial capture (payload ran as uid 65534)") for w in snapshot.warnings)
    # As root, the advice is never "run as root": what root was refused is in the notes.
    as_root = run_payload()
    assert all("run as root" not in w for w in parse_snapshot(as_root, "root").warnings)
    assert as_root["coverage"]["complete"] or any("pid" in note for note in as_root["coverage"]["notes"])


def ip_addresses(netns: str | None) -> set[tuple[str, int, str, int]]:
    """(interface, family, address, prefix) of the UP interfaces, per `ip -j addr`."""
    command = ["ip", "-j", "addr"] if netns is None else ["ip", "-n", netns, "-j", "addr"]
    out = set()
    for link in json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout):
        if "UP" not in link.get("flags", []):
            continue  # a down interface's IPv4 addresses leave the routing tables
        for info in link.get("addr_info", []):
            family = 4 if info["family"] == "inet" else 6
            out.add((link["ifname"], family, info["local"], info["prefixlen"]))
    return out


@needs_root
@pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (iproute2)")
def test_other_namespace_sockets_and_addresses():
    name = f"nvcap-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    holders = Holders(prefix=("ip", "netns", "exec", name))
    try:
        for command in (["link", "set", "lo", "up"], ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                        ["addr", "add", "10.201.0.1/24", "dev", "d0"],
                        ["addr", "add", "10.202.0.7/16", "dev", "d0"],
                        ["addr", "add", "fd99::1/64", "dev", "d0", "nodad"],
                        ["link", "set", "d1", "up"], ["link", "set", "d0", "up"]):
            subprocess.run(["ip", "-n", name, *command], check=True)
        server, client, port = holders.tcp_pair("10.201.0.1", "10.201.0.1")
        doc = run_payload()
        netns = os.stat(f"/proc/{server.pid}/ns/net").st_ino
        assert netns != own_netns()
        (namespace,) = [ns for ns in doc["namespaces"] if ns["inode"] == netns]
        assert {(a["interface"], a["family"], a["address"], a["prefix"]) for a in namespace["addresses"]} \
            == ip_addresses(name)
        procs = {p["pid"]: p for p in doc["processes"]}
        sockets = {s["inode"]: s for s in namespace["sockets"]}
        assert {sockets[i]["state"] for i in procs[server.pid]["sockets"]} == {"LISTEN", "ESTABLISHED"}
        assert {(sockets[i]["remote"], sockets[i]["remote_port"]) for i in procs[client.pid]["sockets"]} \
            == {("10.201.0.1", port)}
        # Its 127.0.0.1 is not this namespace's: the sockets are keyed by their own namespace.
        assert all(i not in {s["inode"] for ns in doc["namespaces"] if ns["inode"] != netns for s in ns["sockets"]}
                   for i in sockets)
    finally:
        holders.stop()
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (iproute2)")
def test_own_namespace_addresses_match_ip():
    # Other programs may add or remove interfaces meanwhile: compare on a quiet moment, when
    # `ip` gives the same answer just before and just after the capture.
    for _ in range(10):
        before = ip_addresses(None)
        doc = capture.collect()
        after = ip_addresses(None)
        if before == after:
            break
    else:
        pytest.skip("the interfaces of this namespace kept changing during the test")
    (namespace,) = [ns for ns in doc["namespaces"] if ns["inode"] == own_netns()]
    ours = {(a["interface"], a["family"], a["address"], a["prefix"]) for a in namespace["addresses"]}
    assert ours == before


def test_odd_process_names_survive_exactly():
    """A real process renames itself with bytes that are not UTF-8, a newline, quotes and ')'."""
    name = b'o\xff"q")\nx y'
    code = ("import sys\nopen('/proc/self/comm', 'wb').write(%r)\nprint('ready', flush=True)\nsys.stdin.read()" % name)
    process = subprocess.Popen([sys.executable, "-c", code, "arg\xe9", "two words"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"ready\n"
        doc = run_payload()
    finally:
        process.stdin.close()
        process.wait(timeout=10)
    (mine,) = [p for p in doc["processes"] if p["pid"] == process.pid]
    assert bytes.fromhex(mine["comm_hex"]) == name
    assert mine["comm"] == 'o\\xff"q")\nx y'
    assert mine["cmdline"][-2:] == ["arg\xe9", "two words"] and "cmdline_hex" not in mine
    parse_snapshot(doc, "odd names")


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_own_namespace_is_captured_even_when_no_other_process_is_visible(load):
    """In a fresh pid namespace the payload is alone: its network namespace is still read."""
    doc = run_payload(prefix=("unshare", "--mount", "--pid", "--fork", "--mount-proc"))
    assert doc["processes"] == []
    (namespace,) = doc["namespaces"]
    assert namespace["inode"] == own_netns() and namespace["pids"] == 0
    ports = {s["local_port"] for s in namespace["sockets"] if s["state"] == "LISTEN"}
    assert load["tcp"][2] in ports
    assert doc["coverage"]["unattributed_sockets"] == len(namespace["sockets"])


@needs_root
def test_a_named_network_namespace_carries_its_name_and_a_stale_file_does_not():
    """`ip netns add NAME`: the namespace a process lives in is named in the snapshot (from the
    bind mount under /run/netns, checked against ss inside it); a regular file under /run/netns is
    not a namespace and names nothing."""
    name = "nvname" + uuid.uuid4().hex[:8]
    stale = Path("/run/netns") / ("nvstale" + uuid.uuid4().hex[:8])
    subprocess.run(["ip", "netns", "add", name], check=True)
    holder = None
    try:
        stale.write_text("")  # not a bind mount: its inode is a file's, on another filesystem
        holder = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c",
                                   "import socket, time\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\n"
                                   "s.listen()\nprint('ready', flush=True)\ntime.sleep(60)"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        inode = os.stat(f"/run/netns/{name}").st_ino
        assert os.stat(f"/proc/{holder.pid}/ns/net").st_ino == inode
        assert "LISTEN" in subprocess.run(["ip", "netns", "exec", name, "ss", "-tlnH"], capture_output=True,
                                          text=True, check=True).stdout
        with open(PAYLOAD, "rb") as source:
            result = subprocess.run([sys.executable, "-"], stdin=source, capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode()
        document = json.loads(result.stdout)
        names = {entry["inode"]: entry.get("name") for entry in document["namespaces"]}
        assert names[inode] == name
        assert stale.name not in names.values()
        assert parse_snapshot(document, "live").namespaces[[e["inode"] for e in document["namespaces"]].index(inode)].name == name
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        stale.unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "del", name], check=False)

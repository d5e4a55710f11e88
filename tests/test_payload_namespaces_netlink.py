"""The payload reads every network namespace through netlink, from a child that enters it.

Real namespaces (`ip netns add`) hold real sockets: TCP over 127.0.0.1 and ::1, a dual-stack
listener with an IPv4 client, bound and connected UDP and UDP6. The payload runs twice on them,
through netlink (a child per namespace) and with `--no-netlink` (the /proc/PID/net text): the
namespaces' sockets, addresses, counts and conntrack, and the processes' sockets, must be the
same. `ss -tanp` and `ss -uanp` run inside each namespace (`ip netns exec`) are the independent
oracle for the sockets and their holders.

Everything runs in a pid namespace of its own (`unshare --pid --fork --mount-proc`), so that the
payload sees only the test's processes and its runs take a fraction of a second on a busy machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from netviz.payload import capture
from netviz.snapshot import parse_snapshot

PAYLOAD = Path(capture.__file__)
needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("ip", "ss", "unshare")),
    reason="needs root, ip and ss (iproute2) and unshare (util-linux) to build network namespaces")

HOLDER = r"""
import socket, sys
held = []
def pair(family, listen_host, connect_host, count, v6only=1):
    listener = socket.socket(family)
    if family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    listener.bind((listen_host, 0))
    listener.listen(16)
    held.append(listener)
    for _ in range(count):
        held.append(socket.create_connection((connect_host, listener.getsockname()[1])))
        held.append(listener.accept()[0])
kinds = sys.argv[1].split(",")
if "tcp" in kinds:
    pair(socket.AF_INET, "127.0.0.1", "127.0.0.1", 3)
if "tcp6" in kinds:
    pair(socket.AF_INET6, "::1", "::1", 2)
    pair(socket.AF_INET6, "::", "127.0.0.1", 2, v6only=0)  # a v4 client of a dual-stack listener
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    if ("udp" if family == socket.AF_INET else "udp6") in kinds:
        server = socket.socket(family, socket.SOCK_DGRAM)
        server.bind((host, 0))
        client = socket.socket(family, socket.SOCK_DGRAM)
        client.connect(server.getsockname()[:2])
        held += [server, client]
print("ready", flush=True)
sys.stdin.read()
"""

# Run as pid 1 of a new pid namespace: start the holders, then the payload both ways and ss in
# each namespace, and print all of it as one JSON document. The kernel ends every process of the
# pid namespace when this script exits.
LAB = r"""
import json, subprocess, sys
payload, spec = sys.argv[1], json.loads(sys.argv[2])
holders = {}
for name, kinds in spec.items():
    holders[name] = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", spec_holder, kinds],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
for name, process in holders.items():
    assert process.stdout.readline() == "ready\n", name
out = {"pids": {name: process.pid for name, process in holders.items()}, "ss": {}}
for label, args in (("netlink", []), ("text", ["--no-netlink"])):
    with open(payload, "rb") as source:
        run = subprocess.run([sys.executable, "-", *args], stdin=source, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    out[label] = json.loads(run.stdout)
out["variants"] = {}
for label, patch in (("refused", REFUSED), ("hung", HUNG)):
    run = subprocess.run([sys.executable, "-c", RUNNER, payload, patch], capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    out["variants"][label] = json.loads(run.stdout)
import signal
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # inherited by the payload below
run = subprocess.run([sys.executable, "-c", RUNNER, payload, ""], capture_output=True, timeout=300)
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
assert run.returncode == 0, run.stderr.decode()
variant = json.loads(run.stdout)
out["sigchld_ignored"] = {"children": variant["children"],
                          "entered": all("tcp_info" in entry for entry in variant["document"]["namespaces"]
                                         if entry.get("name") in spec and "tcp" in spec[entry["name"]])}
for name in spec:
    out["ss"][name] = [subprocess.run(["ip", "netns", "exec", name, "ss", option], capture_output=True,
                                      text=True, check=True).stdout for option in ("-tanpH", "-uanpH")]
print(json.dumps(out))
"""

# The payload imported, patched, and run in-process (collect): its document, how long it took and
# the children it has left (none, ever).
RUNNER = r'''
import json, os, sys, time
path, patch = sys.argv[1], sys.argv[2]
module = {"__name__": "payload"}
with open(path) as handle:
    exec(compile(handle.read(), path, "exec"), module)
exec(patch, module)
started = time.monotonic()
document = module["collect"](compact=False, namespace_timeout=1.0)
seconds = time.monotonic() - started
children = []
for task in os.listdir("/proc/self/task"):
    with open("/proc/self/task/%s/children" % task) as handle:
        children += handle.read().split()
print(json.dumps({"document": document, "seconds": seconds, "children": children}))
'''
# setns fails with EPERM, as without CAP_SYS_ADMIN.
REFUSED = "_LIBC[:] = [(lambda fd, kind: -1, lambda *args: 0, lambda: 1)]"
# Every child hangs in its dumps (the parent's own dumps do not).
HUNG = """
_real, _parent = netlink_tables, os.getpid()
def netlink_tables(tables, counters=None):
    if os.getpid() != _parent:
        time.sleep(60)
    return _real(tables, counters)
"""

# Which sockets each namespace holds: IPv4 TCP only (one dump of one family), both families
# (the single dump of TCPDIAG_GETSOCK), UDP only (no TCP table walked at all).
SPEC = {"v4": "tcp,udp", "both": "tcp,tcp6,udp,udp6", "udp": "udp,udp6"}


@pytest.fixture(scope="module")
def lab():
    prefix = f"nvnl{uuid.uuid4().hex[:6]}"
    names = {key: f"{prefix}-{key}" for key in SPEC}
    created = []
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
            created.append(name)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"], check=True)
            subprocess.run(["ip", "-n", name, "addr", "add", "10.203.0.1/24", "dev", "d0"], check=True)
            subprocess.run(["ip", "-n", name, "addr", "add", "fd98::1/64", "dev", "d0", "nodad"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "d1", "up"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "d0", "up"], check=True)
        spec = json.dumps({names[key]: kinds for key, kinds in SPEC.items()})
        script = (LAB.replace("spec_holder", repr(HOLDER)).replace("RUNNER", repr(RUNNER))
                  .replace("REFUSED", repr(REFUSED)).replace("HUNG", repr(HUNG)))
        result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script,
                                 str(PAYLOAD), spec], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        data["names"] = names
        data["inodes"] = {key: os.stat(f"/run/netns/{name}").st_ino for key, name in names.items()}
        yield data
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], check=False)


def _namespace(document: dict, inode: int) -> dict:
    (entry,) = [entry for entry in document["namespaces"] if entry["inode"] == inode]
    return entry


def _held(document: dict, pid: int) -> list[int]:
    (process,) = [process for process in document["processes"] if process["pid"] == pid]
    return process["sockets"]


@needs_root_tools
def test_netlink_and_text_give_the_same_snapshot(lab):
    netlink, text = lab["netlink"], lab["text"]
    for key, inode in lab["inodes"].items():
        a, b = _namespace(netlink, inode), _namespace(text, inode)
        assert a["name"] == b["name"] == lab["names"][key]
        for field in ("sockets", "unkeyed", "addresses", "conntrack", "pids"):
            assert a[field] == b[field], (key, field)
        assert a["sockets"], key
        pid = lab["pids"][lab["names"][key]]
        assert _held(netlink, pid) == _held(text, pid) == sorted(s["inode"] for s in a["sockets"])
        # Counters come only through netlink: every TCP connection of the namespace has its own.
        connected = {s["inode"] for s in a["sockets"] if s["proto"].startswith("tcp") and s["state"] != "LISTEN"}
        assert set(map(int, a.get("tcp_info", {}).get("sockets", {}))) == connected, key
        assert "tcp_info" not in b
    assert not any("read from /proc/PID/net text" in note for note in netlink["coverage"]["notes"])
    for document in (netlink, text):
        parse_snapshot(document, "namespaces")


def _ss_endpoint(text: str) -> tuple:
    """`127.0.0.1:80`, `[::1]:80`, `*:80`, `0.0.0.0:*` -> (address or None, port or 0)."""
    address, _, port = text.rpartition(":")
    address = address.strip("[]").split("%")[0]
    if address in ("*", "0.0.0.0", "::"):
        address = None
    return address, 0 if port == "*" else int(port)


SS_STATES = {"ESTAB": "ESTABLISHED", "UNCONN": "CLOSE", "LISTEN": "LISTEN"}


@needs_root_tools
def test_every_socket_and_holder_matches_ss_inside_the_namespace(lab):
    document = lab["netlink"]
    for key, inode in lab["inodes"].items():
        name = lab["names"][key]
        pid = lab["pids"][name]
        oracle = set()
        for kind, output in zip(("tcp", "udp"), lab["ss"][name]):
            for line in output.splitlines():
                fields = line.split()
                local, remote = _ss_endpoint(fields[3]), _ss_endpoint(fields[4])
                holders = frozenset(int(p) for p in re.findall(r"pid=(\d+)", line))
                oracle.add((kind, SS_STATES[fields[0]]) + local + remote + (holders,))
        ours = set()
        for s in _namespace(document, inode)["sockets"]:
            local = (None if s["local"] in ("0.0.0.0", "::") else s["local"], s["local_port"])
            remote = (None if s["remote"] in ("0.0.0.0", "::") else s["remote"], s["remote_port"])
            holders = frozenset(p["pid"] for p in document["processes"] if s["inode"] in p["sockets"])
            ours.add((s["proto"].rstrip("6"), s["state"]) + local + remote + (holders,))
        assert ours == oracle, key
        assert all(entry[-1] == {pid} for entry in ours)
        assert {s["proto"] for s in _namespace(document, inode)["sockets"]} == set(SPEC[key].split(","))


def test_one_dump_of_both_tcp_families_equals_one_dump_each():
    """TCPDIAG_GETSOCK lists IPv4 and IPv6 in one walk; the records are those of a dump per family."""
    import socket

    listeners = [socket.socket(family) for family in (socket.AF_INET, socket.AF_INET6)]
    try:
        for listener, host in zip(listeners, ("127.0.0.1", "::1")):
            listener.bind((host, 0))
            listener.listen(1)
        for _ in range(5):  # other processes of the machine open and close sockets meanwhile
            both = capture.netlink_tcp_sockets({})
            separate = {name: capture.netlink_inet_sockets(family, socket.IPPROTO_TCP, name, counters={})
                        for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6))}
            if all(sorted(both[name][0]) == sorted(separate[name][0]) for name in both):
                break
        else:
            pytest.fail("the single dump never matched the dumps per family")
        ours = {(record[0], record[3]) for name in both for record in both[name][0]}
        assert {("tcp", listeners[0].getsockname()[1]), ("tcp6", listeners[1].getsockname()[1])} <= ours
        assert all(record[0] == name for name in both for record in both[name][0])
    finally:
        for listener in listeners:
            listener.close()


def _variant(lab: dict, label: str) -> dict:
    return lab["variants"][label]


@needs_root_tools
def test_a_namespace_that_cannot_be_entered_is_read_from_text(lab):
    """setns refused (no CAP_SYS_ADMIN, seccomp): every namespace is read from its text, with the
    same records and a note; no child is left."""
    refused = _variant(lab, "refused")
    for inode in lab["inodes"].values():
        a, b = _namespace(lab["netlink"], inode), _namespace(refused["document"], inode)
        assert (a["sockets"], a["unkeyed"], a["addresses"]) == (b["sockets"], b["unkeyed"], b["addresses"])
        assert "tcp_info" not in b
    assert any("setns: Operation not permitted" in note for note in refused["document"]["coverage"]["notes"])
    assert refused["children"] == []


@needs_root_tools
def test_a_child_that_hangs_is_killed_and_its_namespace_read_from_text(lab):
    """The first child hangs: it is killed at its deadline (1 s here), its namespace and the
    others are read from text (no more children), and the capture ends with no child left."""
    hung = _variant(lab, "hung")
    assert hung["seconds"] < 10
    for inode in lab["inodes"].values():
        a, b = _namespace(lab["netlink"], inode), _namespace(hung["document"], inode)
        assert (a["sockets"], a["unkeyed"], a["addresses"]) == (b["sockets"], b["unkeyed"], b["addresses"])
    assert any("a child took more than 1 s" in note for note in hung["document"]["coverage"]["notes"])
    assert hung["children"] == []


CONNTRACK_LINE = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 "
                  "src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1\n")


@pytest.mark.parametrize("entries, expected", [(0, 0), (1, 1), (None, 1)])
def test_a_namespace_counting_no_conntrack_entry_is_not_walked(tmp_path, entries, expected):
    """Reading a namespace's nf_conntrack walks the machine's whole table: its own count (the
    `entries` column of stat/nf_conntrack) says when there is nothing to read. Unknown: read it."""
    net = tmp_path / "net"
    (net / "stat").mkdir(parents=True)
    (net / "nf_conntrack").write_text(CONNTRACK_LINE)
    if entries is not None:
        (net / "stat" / "nf_conntrack").write_text(
            "entries  clashres found new invalid\n%08x  00000000 00000000 00000000 00000000\n" % entries)
    assert capture.conntrack_count(str(net)) == entries
    table = capture.read_namespace(str(net), capture.Coverage())
    assert len(table["conntrack"]) == expected


def test_a_child_enters_only_the_namespace_it_was_given(tmp_path):
    """The child opens the ns/net file itself and checks it is still the namespace listed (the
    process may have exited and its pid gone to a process elsewhere): if not, no setns, and the
    parent reads that namespace's text."""
    def setns(fd, kind):
        raise AssertionError("setns on a namespace that is not the one listed")

    key = capture._netns_key("/proc/self/ns/net")
    assert capture._enter(setns, lambda: 0, "/proc/self/ns/net", (key[0], key[1] + 1)) == ("gone", 0)
    assert capture._enter(setns, lambda: 0, str(tmp_path / "missing"), key)[0] == "gone"
    with pytest.raises(OSError) as raised:
        capture._reply(__import__("marshal").dumps(("gone", 3)))
    assert raised.value.systemic is False  # that namespace only: the others are still entered


@needs_root_tools
def test_children_are_reaped_even_when_sigchld_was_ignored(lab):
    """A payload started with SIGCHLD ignored (inherited across exec) still waits for its own
    children: the namespaces are entered, no pid is killed blindly, the capture succeeds."""
    assert lab["sigchld_ignored"]["entered"] and lab["sigchld_ignored"]["children"] == []

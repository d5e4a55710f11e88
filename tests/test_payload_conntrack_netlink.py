"""The conntrack table over ctnetlink, for kernels built without /proc/net/nf_conntrack.

Real connections are tracked in a throwaway network namespace (TCP and UDP through DNAT rules,
so that reply tuples differ from original ones, plus ICMP, SCTP, GRE, UDP-Lite and protocols
the kernel has no tracker for). Two independent oracles read the same table: the kernel's own
/proc/net/nf_conntrack text through parse_nf_conntrack, and `conntrack -L` (conntrack-tools,
its own netlink client). The table changes while it is read, so each oracle reads it before
and after the reader under test: every record read over netlink must be in one of the two
oracle reads, and every record in both of them must have been read over netlink.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings, strategies as st

from netviz.payload import capture

PAYLOAD = Path(capture.__file__)
REPO = PAYLOAD.parents[2]
NFT_TABLE = "netviz_ct_test"

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None
    or not os.path.exists("/proc/net/nf_conntrack"),
    reason="needs root, nft, ip and /proc/net/nf_conntrack (the text oracle)")

# Runs inside the namespace: tracked exchanges held open until stdin closes. Each "round N" line
# refreshes them (UDP and ICMP entries expire after 30 s), adds a closed TCP connection
# (TIME_WAIT) and one packet of each raw protocol from new ports (SCTP entries expire within
# seconds), then prints the records its TCP, UDP and ICMP exchanges must have produced.
TRAFFIC = r"""
import json, socket, struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def inet_checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def pair(src, sport, dst, dport):
    return {"src": src, "dst": dst, "sport": sport, "dport": dport}

def record(proto, state, host, port, dialled, answering):
    return {"proto": proto, "state": state, "original": pair(host, port, host, dialled),
            "reply": pair(host, answering, host, port)}

HOSTS = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
held = {}
for family, host in HOSTS:
    server = socket.socket(family)
    server.bind((host, 7002))
    server.listen(8)
    client = socket.create_connection((host, 7001))  # DNAT to 7002
    responder = socket.socket(family, socket.SOCK_DGRAM)
    responder.bind((host, 7004))
    asker = socket.socket(family, socket.SOCK_DGRAM)
    asker.bind((host, 0))
    lone = socket.socket(family, socket.SOCK_DGRAM)
    lone.bind((host, 0))
    if family == socket.AF_INET:
        echo = struct.pack("!BBHHH", 8, 0, 0, 4242, 1) + b"netviz"
        echo = echo[:2] + struct.pack("!H", inet_checksum(echo)) + echo[4:]
        icmp = (socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMP), "icmp", echo)
    else:  # the kernel computes ICMPv6 checksums itself
        echo = struct.pack("!BBHHH", 128, 0, 0, 4242, 1) + b"netviz"
        icmp = (socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6), "icmpv6", echo)
    held[host] = (server, client, server.accept()[0], responder, asker, lone, icmp)

for line in sys.stdin:
    number = int(line.split()[1])
    expected = []
    for family, host in HOSTS:
        server, client, accepted, responder, asker, lone, (icmp, name, echo) = held[host]
        expected.append(record("tcp", "ESTABLISHED", host, client.getsockname()[1], 7001, 7002))
        closing = socket.create_connection((host, 7002))
        closed = server.accept()[0]
        expected.append(record("tcp", "TIME_WAIT", host, closing.getsockname()[1], 7002, 7002))
        closing.close()
        closed.close()
        asker.sendto(b"question", (host, 7003))  # DNAT to 7004
        _, peer = responder.recvfrom(64)
        responder.sendto(b"answer", peer)
        asker.recvfrom(64)
        expected.append(record("udp", None, host, asker.getsockname()[1], 7003, 7004))
        lone.sendto(b"nobody", (host, 7005))
        expected.append(record("udp", None, host, lone.getsockname()[1], 7005, 7005))
        icmp.sendto(echo, (host, 0))
        expected.append(record(name, None, host, None, None, None))
        base = 7100 + 10 * number
        init = struct.pack("!BBHIIHHI", 1, 0, 20, 0x6E76, 65535, 1, 1, 1)
        sctp = struct.pack("!HHII", base, base + 1, 0, 0) + init
        sctp = sctp[:8] + struct.pack("<I", crc32c(sctp)) + sctp[12:]
        for protocol, packet in ((132, sctp), (47, struct.pack("!HH", 0, 0x0800) + bytes(20)),
                                 (136, struct.pack("!HHHH", base + 2, base + 3, 0, 0xFFFF) + b"lite"),
                                 (33, struct.pack("!HH", base + 4, base + 5) + bytes(12)),
                                 (253, b"experimental")):
            raw = socket.socket(family, socket.SOCK_RAW, protocol)
            raw.sendto(packet, (host, 0))
            raw.close()
    print(json.dumps(expected), flush=True)
"""

# Runs inside the namespace: the table as the oracle text, over netlink, and the oracle again.
READ = r"""
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from netviz.payload import capture
if sys.argv[2] == "general":
    capture._PORT_TUPLE_LAYOUTS.clear()  # every tuple through the general attribute walk

def oracle():
    if sys.argv[3] == "conntrack-tool":
        text = subprocess.run(["conntrack", "-L"], capture_output=True, text=True, check=True).stdout
        return capture.parse_nf_conntrack(text, limit=10 ** 9)[0]
    with open("/proc/net/nf_conntrack") as handle:
        return capture.parse_nf_conntrack(handle)[0]

before = oracle()
netlink, truncated = capture.netlink_conntrack()
after = oracle()
print(json.dumps({"before": before, "netlink": netlink, "truncated": truncated, "after": after}))
"""

# Runs inside the namespace: the entry messages of one ctnetlink dump, raw, in hex.
RAW_DUMP = r"""
import json, socket, sys
sys.path.insert(0, sys.argv[1])
from netviz.payload import capture as c
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, c.NETLINK_NETFILTER)
request = c._NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
sock.sendto(c._NLMSGHDR.pack(20, (1 << 8) | 1, c.NLM_F_REQUEST | c.NLM_F_DUMP, 7, 0) + request, (0, 0))
messages = []
done = False
while not done:
    data = sock.recv(1 << 16)
    offset = 0
    while offset < len(data):
        length, kind = c._NLMSGHDR.unpack_from(data, offset)[:2]
        if kind == 0x100:
            messages.append(data[offset + 20:offset + length].hex())
        done = done or kind in (c.NLMSG_DONE, c.NLMSG_ERROR)
        offset += (length + 3) & ~3
print(json.dumps(messages))
"""

# Runs inside the namespace: a proc root where nf_conntrack is missing but everything else of
# this process is the real thing (symbolic links), then the payload itself, same pid, on it.
WITHOUT_PROC_FILE = r"""
import os, sys
parent = sys.argv[1]
pid = str(os.getpid())
root = os.path.join(parent, "proc-" + pid)
os.makedirs(os.path.join(root, pid, "net"))
os.symlink(pid, os.path.join(root, "self"))
os.symlink("/proc/%s/ns" % pid, os.path.join(root, pid, "ns"))
for name in os.listdir("/proc/%s/net" % pid):
    if name not in ("nf_conntrack", "ip_conntrack"):
        os.symlink("/proc/%s/net/%s" % (pid, name), os.path.join(root, pid, "net", name))
for name in ("sys", "modules"):
    os.symlink("/proc/" + name, os.path.join(root, name))
os.execv(sys.executable, [sys.executable, "-", "--proc-root", root] + sys.argv[2:])
"""


class Namespace:
    """A throwaway network namespace with tracked traffic in it."""

    def __init__(self) -> None:
        self.name = "nvct-" + uuid.uuid4().hex[:8]
        self.traffic: subprocess.Popen | None = None
        self.rounds = 0

    def run(self, *command: str, **options) -> subprocess.CompletedProcess:
        options.setdefault("check", True)
        options.setdefault("text", True)
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True,
                              timeout=60, **options)

    def python(self, code: str, *args: str) -> dict | list:
        return json.loads(self.run(sys.executable, "-c", code, *args).stdout)

    def refresh(self) -> list[dict]:
        """One more round of traffic, just before a read: the records it must have produced."""
        self.rounds += 1
        self.traffic.stdin.write("round %d\n" % self.rounds)
        self.traffic.stdin.flush()
        line = self.traffic.stdout.readline()
        assert line, "the traffic process died"
        return json.loads(line)


@pytest.fixture(scope="module")
def tracked() -> Iterator[Namespace]:
    namespace = Namespace()
    subprocess.run(["ip", "netns", "add", namespace.name], check=True)
    try:
        namespace.run("ip", "link", "set", "lo", "up")
        # `ct state` makes the kernel track every connection of the namespace; the DNAT rules
        # give TCP and UDP reply tuples that differ from the original ones.
        namespace.run("nft", "-f", "-", input=f"""
table inet {NFT_TABLE} {{
  chain track {{ type filter hook output priority 0; ct state new counter; }}
  chain translate {{
    type nat hook output priority -100;
    tcp dport 7001 dnat ip to 127.0.0.1:7002
    tcp dport 7001 dnat ip6 to [::1]:7002
    udp dport 7003 dnat ip to 127.0.0.1:7004
    udp dport 7003 dnat ip6 to [::1]:7004
  }}
}}
""")
        namespace.traffic = subprocess.Popen(
            ["ip", "netns", "exec", namespace.name, sys.executable, "-c", TRAFFIC],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            namespace.run(sys.executable, "-c", "import socket; socket.socket(16, 3, 12)")
        except subprocess.CalledProcessError as error:
            pytest.skip(f"no NETLINK_NETFILTER socket in this kernel: {error.stderr.strip()}")
        yield namespace
    finally:
        if namespace.traffic is not None:
            namespace.traffic.stdin.close()
            try:
                namespace.traffic.wait(timeout=10)
            except subprocess.TimeoutExpired:
                namespace.traffic.kill()
                namespace.traffic.wait()
        subprocess.run(["ip", "netns", "exec", namespace.name, "nft", "delete", "table", "inet", NFT_TABLE],
                       capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace.name], check=True)


def records(entries: list[dict]) -> Counter:
    """Entries as a multiset of hashable records (two portless entries can be equal)."""
    return Counter(json.dumps(entry, sort_keys=True) for entry in entries)


def assert_read_between(netlink: list[dict], before: list[dict], after: list[dict]) -> int:
    """Each record read over netlink was in an oracle read around it, and each record present in
    both oracle reads was read over netlink. Returns how many records the three reads share."""
    got, first, second = records(netlink), records(before), records(after)
    assert got <= first | second, sorted((got - (first | second)).elements())
    assert first & second <= got, sorted(((first & second) - got).elements())
    return sum((got & first & second).values())


def assert_expected(entries: list[dict], expected: list[dict]) -> None:
    have = records(entries)
    for entry in expected:
        assert have[json.dumps(entry, sort_keys=True)] == 1, entry


@needs_lab
@pytest.mark.parametrize("walk", ["fast", "general"])
def test_netlink_records_are_the_proc_text_records(tracked: Namespace, walk: str) -> None:
    expected = tracked.refresh()
    read = tracked.python(READ, str(REPO), walk, "proc")
    shared = assert_read_between(read["netlink"], read["before"], read["after"])
    assert not read["truncated"]
    assert_expected(read["netlink"], expected)
    # the raw protocols too, portless ones and those without a tracker ("unknown") included
    protocols = Counter(entry["proto"] for entry in read["netlink"])
    assert protocols["unknown"] >= 2 and protocols["icmp"] == protocols["icmpv6"] == 1
    assert shared >= len(expected) + 8  # raw protocols: SCTP, GRE, UDP-Lite, 253 in both families
    # the DNAT translations are there: the reply comes from the port the rule chose
    translated = [e for e in read["netlink"] if e["original"]["dport"] in (7001, 7003)]
    assert sorted((e["proto"], e["reply"]["sport"]) for e in translated) == [
        ("tcp", 7002), ("tcp", 7002), ("udp", 7004), ("udp", 7004)]


@needs_lab
@pytest.mark.skipif(shutil.which("conntrack") is None, reason="needs conntrack (Debian conntrack)")
def test_netlink_records_agree_with_the_conntrack_tool(tracked: Namespace) -> None:
    expected = tracked.refresh()
    read = tracked.python(READ, str(REPO), "fast", "conntrack-tool")
    # The tool names protocols itself (it calls an untracked DCCP "dccp" and prints ports for
    # it); compare the protocols whose trackers every kernel of interest has.
    named = ("tcp", "udp", "icmp", "icmpv6", "sctp", "udplite", "gre")

    def kept(entries: list[dict]) -> list[dict]:
        return [entry for entry in entries if entry["proto"] in named]

    shared = assert_read_between(kept(read["netlink"]), kept(read["before"]), kept(read["after"]))
    assert shared >= len(expected)
    assert_expected(read["before"], expected)


@needs_lab
def test_limit_cuts_the_table_and_says_so(tracked: Namespace) -> None:
    tracked.refresh()
    outcome = tracked.python(r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from netviz.payload import capture
whole = capture.netlink_conntrack()
cut = capture.netlink_conntrack(limit=3)
capture.netlink_conntrack.__defaults__ = (3,) + capture.netlink_conntrack.__defaults__[1:]
coverage = capture.Coverage()
noted = capture.conntrack_without_procfs("/proc", coverage, True)
print(json.dumps({"whole": whole, "cut": cut, "noted": noted, "notes": coverage.notes}))
""", str(REPO))
    entries, truncated = outcome["whole"]
    assert not truncated and len(entries) > 3
    assert outcome["cut"] == [entries[:3], True]
    assert len(outcome["noted"]) == 3
    assert outcome["notes"] == ["conntrack table cut at %d entries" % capture.MAX_CONNTRACK_ENTRIES]


def _as_user(user: int) -> list[str]:
    """The command prefix that runs a Python interpreter as `user` (one the user may execute:
    this interpreter may live under a home directory closed to others)."""
    for interpreter in (sys.executable, "/usr/bin/python3"):
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", interpreter]
        probe = "import os, sys; os.execv(sys.executable, [sys.executable, '-c', 'pass'])"
        if subprocess.run([*prefix, "-c", probe], capture_output=True).returncode == 0:
            return prefix
    pytest.skip(f"no Python interpreter that uid {user} may run")


def _oldest_python() -> str | None:
    """A Python 3.6 interpreter on this machine (PATH or pyenv), the payload's oldest target."""
    candidates = [shutil.which("python3.6")]
    candidates += [str(path) for path in sorted(Path.home().glob(".pyenv/versions/3.6*/bin/python3"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 6)"],
                               capture_output=True)
        if probe.returncode == 0:  # a pyenv shim without that version selected fails here
            return candidate
    return None


def _payload_without_proc_file(namespace: Namespace, *options: str, user: int | None = None,
                               interpreter: str = sys.executable) -> dict:
    """Run the payload in the namespace on a proc root without nf_conntrack; its snapshot."""
    command = _as_user(user) if user is not None else [interpreter]
    parent = tempfile.mkdtemp(prefix="netviz-ct-")
    os.chmod(parent, 0o777)  # the unprivileged run builds its proc root in there
    try:
        with open(PAYLOAD, "rb") as source:
            result = namespace.run(*command, "-c", WITHOUT_PROC_FILE, parent, *options,
                                   stdin=source, text=False)
        return json.loads(result.stdout)
    finally:
        shutil.rmtree(parent)


def _own_namespace(document: dict) -> dict:
    (own,) = document["namespaces"]  # the fake proc root shows the payload's process only
    return own


@needs_lab
@pytest.mark.parametrize("python", ["this", "3.6"])
def test_capture_reads_conntrack_over_netlink_when_the_proc_file_is_absent(tracked: Namespace, python: str) -> None:
    interpreter = sys.executable if python == "this" else _oldest_python()
    if interpreter is None:
        pytest.skip("no Python 3.6 installed (the payload's oldest target)")
    expected = tracked.refresh()
    before = tracked.python(READ, str(REPO), "fast", "proc")["before"]
    document = _payload_without_proc_file(tracked, interpreter=interpreter)
    assert document["host"]["python"].startswith("3.6." if python == "3.6" else "3.")
    after = tracked.python(READ, str(REPO), "fast", "proc")["before"]
    conntrack = _own_namespace(document)["conntrack"]
    assert conntrack is not None, document["coverage"]["notes"]
    assert_read_between(conntrack, before, after)
    assert_expected(conntrack, expected)
    assert not [note for note in document["coverage"]["notes"] if "conntrack" in note]


# The payload, on the live /proc, told that the conntrack text has other names (so it finds
# none, as on a kernel built without CONFIG_NF_CONNTRACK_PROCFS); its snapshot on stdout.
WITHOUT_TEXT_ANYWHERE = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("capture", sys.argv[1])
capture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capture)
capture.CONNTRACK_FILES = ("netviz-no-such-conntrack-file",)
print(json.dumps(capture.collect()))
"""


@needs_lab
@pytest.mark.parametrize("python", ["this", "3.6"])
def test_other_namespaces_conntrack_is_dumped_by_the_child_that_enters_them(tracked: Namespace, python: str) -> None:
    """Without the text, the payload runs in the machine's namespace, and the traffic in another:
    the child that enters that namespace for its sockets dumps its conntrack table too."""
    interpreter = sys.executable if python == "this" else _oldest_python()
    if interpreter is None:
        pytest.skip("no Python 3.6 installed (the payload's oldest target)")
    inode = os.stat(f"/run/netns/{tracked.name}").st_ino
    expected = tracked.refresh()
    before = tracked.python(READ, str(REPO), "fast", "proc")["before"]
    result = subprocess.run([interpreter, "-c", WITHOUT_TEXT_ANYWHERE, str(PAYLOAD)], capture_output=True, text=True,
                            timeout=120, check=True)
    document = json.loads(result.stdout)
    after = tracked.python(READ, str(REPO), "fast", "proc")["before"]
    (namespace,) = [ns for ns in document["namespaces"] if ns["inode"] == inode]
    notes = document["coverage"]["notes"]
    assert namespace["conntrack"] is not None, notes
    assert_read_between(namespace["conntrack"], before, after)
    assert_expected(namespace["conntrack"], expected)
    assert not [note for note in notes if "conntrack unknown" in note], notes


@needs_lab
def test_capture_without_netlink_says_conntrack_is_unknown(tracked: Namespace) -> None:
    document = _payload_without_proc_file(tracked, "--no-netlink")
    assert _own_namespace(document)["conntrack"] is None
    assert any(note.startswith("conntrack unknown where netlink cannot be used")
               for note in document["coverage"]["notes"]), document["coverage"]["notes"]


@needs_lab
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_unprivileged_capture_says_why_conntrack_is_unknown(tracked: Namespace) -> None:
    document = _payload_without_proc_file(tracked, user=65534)  # nobody
    assert document["coverage"]["euid"] != 0
    assert _own_namespace(document)["conntrack"] is None
    assert ("conntrack unknown: no /proc/net/nf_conntrack and its netlink dump failed: "
            "Operation not permitted (needs root)") in document["coverage"]["notes"]


@needs_lab
def test_entry_parser_survives_every_cut_and_damage_of_real_messages(tracked: Namespace) -> None:
    expected = tracked.refresh()
    messages = [bytes.fromhex(text) for text in tracked.python(RAW_DUMP, str(REPO))]
    assert len(messages) >= len(expected)
    parsed = [capture.parse_ctnetlink_entry(message, 0, len(message)) for message in messages]
    assert None not in parsed
    assert_expected(parsed, expected)
    for message in messages[:12]:
        for cut in range(len(message)):
            entry = capture.parse_ctnetlink_entry(message, 0, cut)
            assert entry is None or set(entry) == {"proto", "state", "original", "reply"}
        for index in range(0, len(message), 3):
            damaged = bytearray(message)
            damaged[index] ^= 0xA5
            capture.parse_ctnetlink_entry(bytes(damaged), 0, len(damaged))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_entry_parser_never_raises_on_noise(data: bytes) -> None:
    entry = capture.parse_ctnetlink_entry(data, 0, len(data))
    assert entry is None or entry["proto"] in set(capture.CONNTRACK_PROTOCOLS.values()) | {"unknown"}


def _attribute(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + bytes(-len(payload) % 4)


def test_entry_parser_general_walk_on_a_hand_built_message() -> None:
    """A layout the fast path does not take (a zone inside the tuple) reads the same."""
    def tuple_of(src: str, sport: int, dst: str, dport: int) -> bytes:
        ip = _attribute(capture.CTA_IP_V4_SRC, socket.inet_aton(src)) + \
            _attribute(capture.CTA_IP_V4_DST, socket.inet_aton(dst))
        proto = _attribute(capture.CTA_PROTO_NUM, bytes([6])) + \
            _attribute(capture.CTA_PROTO_SRC_PORT, struct.pack("!H", sport)) + \
            _attribute(capture.CTA_PROTO_DST_PORT, struct.pack("!H", dport))
        return (_attribute(capture.CTA_TUPLE_IP | 0x8000, ip) + _attribute(capture.CTA_TUPLE_PROTO | 0x8000, proto)
                + _attribute(3, struct.pack("!H", 7)))  # CTA_TUPLE_ZONE
    info = _attribute(capture.CTA_PROTOINFO_TCP | 0x8000, _attribute(capture.CTA_PROTOINFO_STATE, bytes([7])))
    message = (_attribute(capture.CTA_TUPLE_ORIG | 0x8000, tuple_of("10.0.0.2", 41000, "10.0.0.3", 8080))
               + _attribute(capture.CTA_TUPLE_REPLY | 0x8000, tuple_of("172.17.0.2", 80, "10.0.0.2", 41000))
               + _attribute(3, struct.pack("!I", 0x18E))  # CTA_STATUS
               + _attribute(capture.CTA_PROTOINFO | 0x8000, info))
    text = ("ipv4     2 tcp      6 117 TIME_WAIT src=10.0.0.2 dst=10.0.0.3 sport=41000 dport=8080 "
            "src=172.17.0.2 dst=10.0.0.2 sport=80 dport=41000 [ASSURED] mark=0 zone=7 use=1\n")
    assert capture.parse_ctnetlink_entry(message, 0, len(message)) == capture.parse_nf_conntrack(text)[0][0]


def test_offloaded_entries_keep_their_tuples_in_the_text() -> None:
    """A flow-table offloaded connection has no timeout (and TCP no state) in the kernel's text;
    over netlink it has no protocol info either, so both paths give the state as null."""
    lines = ("ipv4     2 udp      17 src=10.0.0.2 dst=10.0.0.3 sport=5000 dport=53 src=10.0.0.3 "
             "dst=10.0.0.2 sport=53 dport=5000 [OFFLOAD] mark=0 zone=0 use=2\n"
             "ipv4     2 tcp      6 src=10.0.0.2 dst=10.0.0.3 sport=5001 dport=80 src=10.0.0.3 "
             "dst=10.0.0.2 sport=80 dport=5001 [HW_OFFLOAD] mark=0 zone=0 use=2\n")
    udp, tcp = capture.parse_nf_conntrack(lines)[0]
    assert udp["original"] == {"src": "10.0.0.2", "dst": "10.0.0.3", "sport": 5000, "dport": 53}
    assert udp["reply"]["sport"] == 53 and udp["state"] is None
    assert tcp["original"]["dport"] == 80 and tcp["state"] is None


@pytest.mark.parametrize("modules, builtin, obstacle", [
    (None, None, None),  # a kernel without loadable modules loads none
    ("nf_conntrack_netlink 57344 0 - Live 0x0\nnf_conntrack 188416 6 - Live 0x0\n", None, None),
    ("nf_conntrack 188416 6 - Live 0x0\nnfnetlink 20480 2 - Live 0x0\n", None, "not loaded"),
    ("ext4 1 0 - Live 0x0\n", "kernel/net/netfilter/nf_conntrack_netlink.ko\n", None),
    ("ext4 1 0 - Live 0x0\n", "kernel/net/netfilter/nf_conntrack.ko\n", "not loaded"),
    ("ext4 1 0 - Live 0x0\n", None, "cannot tell"),
])
def test_netlink_is_used_only_where_no_module_gets_loaded(modules, builtin, obstacle) -> None:
    found = capture.conntrack_netlink_obstacle(modules, builtin)
    assert (found is None) == (obstacle is None)
    if obstacle:
        assert obstacle in found

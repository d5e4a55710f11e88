"""collect() over a fake /proc tree built here (the proc root is a parameter)."""

import json
import os
import sys
from pathlib import Path

import pytest

from netviz.payload import capture
from netviz.snapshot import parse_snapshot

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="table text is little-endian")

TCP_A = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0C004D0A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0 100 0 0 10 0
   1: 0C004D0A:1F90 0D004D0A:D431 01 00000000:00000000 00:00000000 00000000     0        0 5002 1 0 100 0 0 10 0
   2: 0C004D0A:1F90 0D004D0A:D432 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 100 0 0 10 0
"""
TCP6_A = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 000077FD000000000000000012000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5003 1 0 100 0 0 10 0
"""
TCP_B = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6001 1 0 100 0 0 10 0
"""
EMPTY = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
FIB_A = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.77.0.0\n        /24 link UNICAST\n" \
        "     |-- 10.77.0.12\n        /32 host LOCAL\n"
ROUTE_A = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" \
          "eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
IF6_A = "fd770000000000000000000000000012 02 40 00 80     eth0\n"
CONNTRACK_A = "ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.0.13 dst=10.77.0.12 sport=1 dport=8080 " \
              "src=172.17.0.2 dst=10.77.0.13 sport=80 dport=1 [ASSURED] mark=0 use=2\n"


def write(path: Path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)


def add_process(proc: Path, pid: int, *, comm: bytes, cmdline: bytes, uid: int, ns_file: Path,
                fds: dict, context=None, ppid: int = 1):
    base = proc / str(pid)
    write(base / "status", f"Name:\tx\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    write(base / "comm", comm + b"\n")
    write(base / "cmdline", cmdline)
    if context is not None:
        write(base / "attr" / "current", context)
    (base / "ns").mkdir(parents=True)
    os.link(ns_file, base / "ns" / "net")  # same inode for every process of the namespace
    (base / "fd").mkdir()
    for fd, target in fds.items():
        os.symlink(target, base / "fd" / str(fd))
    return base


def add_tables(base: Path, tables: dict):
    for name in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "icmp", "icmp6", "udplite", "udplite6"):
        write(base / "net" / name, tables.get(name, EMPTY))
    write(base / "net" / "packet", "sk       RefCnt Type Proto  Iface R Rmem   User   Inode\n")
    for name in ("fib_trie", "route", "if_inet6", "nf_conntrack"):
        if name in tables:
            write(base / "net" / name, tables[name])


@pytest.fixture
def fake_root(tmp_path):
    proc = tmp_path / "proc"
    etc = tmp_path / "etc"
    write(proc / "sys/kernel/hostname", "web-1\n")
    write(proc / "sys/kernel/osrelease", "6.1.0-test\n")
    write(proc / "sys/kernel/random/boot_id", "b00t\n")
    write(etc / "passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    write(etc / "machine-id", "0123456789abcdef\n")
    ns_a = tmp_path / "netns-a"
    ns_b = tmp_path / "netns-b"
    write(ns_a, "")
    write(ns_b, "")

    odd = b'srv\xff "q" (x)\nname'
    web = add_process(proc, 100, comm=odd, cmdline=b"/usr/bin/srv\0--name=caf\xc3\xa9\0bad\xfe\0",
                      uid=0, ns_file=ns_a, context=b"system_u:system_r:httpd_t:s0\0",
                      fds={0: "/dev/null", 3: "socket:[5001]", 4: "socket:[5002]", 5: "socket:[77777]",
                           6: "pipe:[12]"})
    add_tables(web, {"tcp": TCP_A, "tcp6": TCP6_A, "fib_trie": FIB_A, "route": ROUTE_A,
                     "if_inet6": IF6_A, "nf_conntrack": CONNTRACK_A})
    worker = add_process(proc, 101, comm=b"srv-worker", cmdline=b"", uid=0, ns_file=ns_a,
                         fds={3: "socket:[5001]"}, ppid=100)  # pre-forked: shares the listener
    add_tables(worker, {"tcp": TCP_A, "tcp6": TCP6_A, "fib_trie": FIB_A, "route": ROUTE_A})
    other = add_process(proc, 200, comm=b"app", cmdline=b"app\0", uid=1000, ns_file=ns_b,
                        fds={7: "socket:[6001]"})
    add_tables(other, {"tcp": TCP_B})
    # A process that exited between the listing of /proc and the read of its files.
    (proc / "300").mkdir()
    return proc, etc, ns_a.stat().st_ino, ns_b.stat().st_ino


def test_fake_tree_snapshot(fake_root):
    proc, etc, ns_a, ns_b = fake_root
    doc = capture.collect(str(proc), str(etc))
    json.dumps(doc, allow_nan=False)  # plain JSON, no custom objects

    assert doc["schema"] == "netviz.snapshot/1"
    assert doc["host"]["hostname"] == "web-1" and doc["host"]["machine_id"] == "0123456789abcdef"
    assert doc["host"]["kernel"] == "6.1.0-test" and doc["host"]["boot_id"] == "b00t"
    cov = doc["coverage"]
    assert (cov["processes_seen"], cov["processes_vanished"], cov["processes_denied"]) == (3, 1, 0)
    assert cov["unattributed_sockets"] == 1  # 5003 (fd77::12 listener) is held by nobody

    by_ns = {ns["inode"]: ns for ns in doc["namespaces"]}
    assert set(by_ns) == {ns_a, ns_b}
    a = by_ns[ns_a]
    assert a["pids"] == 2
    assert sorted(s["inode"] for s in a["sockets"]) == [5001, 5002, 5003]
    assert a["unkeyed"] == {"tcp": {"TIME_WAIT": 1}}
    assert {(x["interface"], x["family"], x["address"], x["prefix"]) for x in a["addresses"]} == {
        ("eth0", 4, "10.77.0.12", 24), ("eth0", 6, "fd77::12", 64)}
    assert a["conntrack"][0]["reply"]["src"] == "172.17.0.2"
    assert by_ns[ns_b]["conntrack"] is None  # no nf_conntrack file in that namespace
    assert [s["local"] for s in by_ns[ns_b]["sockets"]] == ["127.0.0.1"]

    procs = {p["pid"]: p for p in doc["processes"]}
    web = procs[100]
    assert web["comm"] == 'srv\\xff "q" (x)\nname'
    assert bytes.fromhex(web["comm_hex"]) == b'srv\xff "q" (x)\nname'
    assert web["cmdline"] == ["/usr/bin/srv", "--name=café", "bad\\xfe"]
    assert [bytes.fromhex(h) for h in web["cmdline_hex"]] == [b"/usr/bin/srv", b"--name=caf\xc3\xa9", b"bad\xfe"]
    assert web["context"] == "system_u:system_r:httpd_t:s0"
    assert web["sockets"] == [5001, 5002]  # 77777 is in no table (a unix socket): not listed
    assert web["netns"] == ns_a and web["user"] == "root"
    worker = procs[101]
    assert worker["sockets"] == [5001] and worker["context"] is None and worker["cmdline"] == []
    assert "comm_hex" not in worker and "cmdline_hex" not in worker
    assert procs[200]["user"] == "alice" and procs[200]["netns"] == ns_b

    snapshot = parse_snapshot(doc, "fake")
    assert snapshot.name == "web-1"
    assert {s.netns for ns in snapshot.namespaces for s in ns.sockets} == {ns_a, ns_b}


def test_streamed_output_equals_plain_json(fake_root):
    proc, etc, _, _ = fake_root
    compact = capture.collect(str(proc), str(etc), compact=True)
    text = capture.dumps_document(compact)
    plain = capture.collect(str(proc), str(etc))
    plain["host"]["captured_at"] = compact["host"]["captured_at"]
    assert json.loads(text) == plain


def test_namespace_falls_back_to_another_process(fake_root):
    proc, etc, ns_a, _ = fake_root
    # The first process of the namespace lost its net directory (a zombie has none).
    for child in (proc / "100" / "net").iterdir():
        child.unlink()
    (proc / "100" / "net").rmdir()
    doc = capture.collect(str(proc), str(etc))
    (a,) = [ns for ns in doc["namespaces"] if ns["inode"] == ns_a]
    assert sorted(s["inode"] for s in a["sockets"]) == [5001, 5002, 5003]
    assert doc["coverage"]["namespaces_denied"] == 0


def test_missing_optional_files_are_notes_not_crashes(tmp_path):
    proc = tmp_path / "proc"
    (proc / "1" / "fd").mkdir(parents=True)
    write(proc / "1" / "status", "PPid:\t0\nUid:\t0\t0\t0\t0\n")
    write(proc / "1" / "comm", "init\n")
    write(proc / "1" / "cmdline", "")
    doc = capture.collect(str(proc), str(tmp_path / "no-etc"))
    assert doc["host"]["hostname"] == "" and doc["host"]["machine_id"] is None
    assert doc["processes"][0]["netns"] is None and doc["namespaces"] == []
    assert any("passwd" in note for note in doc["coverage"]["notes"])


def test_main_writes_framed_output_for_a_proc_root(fake_root, capsysbinary):
    from netviz.snapshot.framing import decode_framed

    proc, etc, _, _ = fake_root
    assert capture.main(["--framed", "--proc-root", str(proc), "--etc-root", str(etc)]) == 0
    out = capsysbinary.readouterr().out
    doc = json.loads(decode_framed(b"Welcome to web-1!\n" + out))
    assert doc["host"]["hostname"] == "web-1" and len(doc["processes"]) == 3

"""Hostile /proc text and damaged frames: the payload's parsers and the frame decoder never crash.

Every parse_* of the payload gets arbitrary text and real lines of this machine's /proc/net/*
mutated at random. It must return (never raise), and whatever it returns must be something the
snapshot loader accepts: a snapshot built from damaged tables is still a valid snapshot, so one
odd table never loses a whole machine. decode_framed gets arbitrary bytes and real frames cut
and corrupted: it returns the exact JSON or raises FrameError, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import netviz.snapshot.framing as framing
from netviz.errors import NetvizError, SnapshotError
from netviz.snapshot.framing import FrameError, decode_framed, encode_framed
from netviz.payload import capture
from netviz.snapshot import parse_snapshot

# One example takes well under a second, and seconds on a very busy machine; far longer means a
# parser that hangs or blows up on its input (the failure the deadline is there to catch).
EXAMPLE_DEADLINE = timedelta(seconds=20)

PROC_NET = Path("/proc/net")
FILES = ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "icmp", "icmp6",
         "packet", "if_inet6", "fib_trie", "route", "igmp", "igmp6", "dev_mcast", "nf_conntrack",
         "sockstat", "sockstat6")

# Fixture lines for the tables this kernel may not have (SCTP is not built in here).
SCTP_EPS = (" ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS\n"
            "ffff8f2d 0000 2   10  29   9000      0 78251 10.77.0.12 fd77::12\n")
SCTP_ASSOCS = (" ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT "
               "LADDRS <-> RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf\n"
               "ffff8f2d ffff8f2e 0   10  3  0    2        0        0    0 78260 46424  9000 "
               "*10.77.0.13 <-> *10.77.0.12 10.88.0.12 \t 7500    10    10   10    0    0        0\n")
CONNTRACK_LINE = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.0.13 dst=10.77.0.1 sport=46424 "
                  "dport=8080 src=172.17.0.2 dst=10.77.0.13 sport=80 dport=46424 [ASSURED] mark=0 use=1\n")


def _real_lines() -> list[str]:
    lines: list[str] = []
    for name in FILES:
        try:
            lines.extend((PROC_NET / name).read_text(errors="backslashreplace").splitlines()[:40])
        except OSError:
            continue
    for text in (SCTP_EPS, SCTP_ASSOCS, CONNTRACK_LINE):
        lines.extend(text.splitlines())
    return [line for line in lines if line.strip()]


REAL_LINES = _real_lines()
NOISE = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
HEXISH = st.text(alphabet="0123456789ABCDEFabcdefx-+: *|/=<>\t\n", max_size=24)


@st.composite
def mutated_line(draw: st.DrawFn) -> str:
    """A real /proc line with a few random edits: a character replaced, a slice cut or repeated,
    a field swapped with another or replaced by noise, the line cut short."""
    line = draw(st.sampled_from(REAL_LINES))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("replace", "cut", "repeat", "field", "swap", "truncate", "insert")))
        if not line:
            line = draw(NOISE)
            continue
        at = draw(st.integers(0, len(line) - 1))
        if action == "replace":
            line = line[:at] + draw(st.text(min_size=1, max_size=3)) + line[at + 1:]
        elif action == "cut":
            line = line[:at] + line[at + draw(st.integers(1, 12)):]
        elif action == "repeat":
            line = line[:at] + line[at:at + draw(st.integers(1, 12))] * draw(st.integers(2, 4)) + line[at:]
        elif action == "insert":
            line = line[:at] + draw(HEXISH | NOISE) + line[at:]
        elif action == "truncate":
            line = line[:at]
        else:
            fields = line.split(" ")
            i = draw(st.integers(0, len(fields) - 1))
            if action == "field":
                fields[i] = draw(HEXISH | NOISE | st.sampled_from(
                    ["-1", "-0", "ffffffff", "FFFFFFFFFFFFFFFFFFFF", "99999999999999999999999", "0x10",
                     "1_000", "٣", "\u00b2", "nan", "inf", "00000000:FFFFF", "::1", "*", "|--", "src=", "=="]))
            else:
                j = draw(st.integers(0, len(fields) - 1))
                fields[i], fields[j] = fields[j], fields[i]
            line = " ".join(fields)
    return line


proc_text = st.lists(st.one_of(mutated_line(), st.sampled_from(REAL_LINES), NOISE, HEXISH),
                     max_size=10).map("\n".join)

FAST = settings(max_examples=250, deadline=EXAMPLE_DEADLINE, suppress_health_check=[HealthCheck.too_slow])


def _snapshot_of(records: list, unkeyed: dict, addresses: list, conntrack: "list | None") -> dict:
    """A minimal snapshot document holding what the parsers returned, as collect() builds it."""
    records = capture._dedupe_sockets(sorted(records, key=lambda r: r[1]))
    return {
        "schema": capture.SCHEMA, "payload_version": capture.PAYLOAD_VERSION,
        "host": {"hostname": "fuzz", "machine_id": None, "boot_id": None, "kernel": "",
                 "captured_at": 0.0, "python": "3.11.0"},
        "coverage": capture.Coverage().to_dict(0),
        "namespaces": [{"inode": 4026531840, "pids": 0, "addresses": addresses,
                        "sockets": [capture.socket_to_dict(record) for record in records],
                        "unkeyed": unkeyed, "conntrack": conntrack}],
        "processes": [],
    }


def _parse_everything(text: str) -> dict:
    """Every table parser of the payload over one text, assembled like read_namespace does."""
    records: list = []
    unkeyed: dict = {}
    for _, proto in capture.INET_TABLES:
        rows, counts = capture.parse_inet_table(text, proto)
        records.extend(rows)
        if counts:
            unkeyed[proto] = counts
    if6 = capture.parse_if_inet6(text)
    interfaces = dict((entry[0], entry[1]) for entry in if6)
    interfaces.update(capture.parse_interface_indexes(text, text))
    rows, counts = capture.parse_packet(text, interfaces)
    records.extend(rows)
    if counts:
        unkeyed["packet"] = counts
    records.extend(capture.merge_sctp(capture.parse_sctp_eps(text), capture.parse_sctp_assocs(text)))
    addresses = [{"interface": i, "family": 4, "address": a, "prefix": p}
                 for i, a, p in capture.ipv4_addresses(text, text)]
    addresses += [{"interface": i, "family": 6, "address": a, "prefix": p} for _, i, a, p in if6]
    conntrack, _ = capture.parse_nf_conntrack(text)
    # The cheap parsers whose results do not reach the document directly.
    capture.parse_route(text)
    capture.parse_fib_trie(text)
    capture.parse_passwd(text)
    capture.tcp_table_is_empty(capture.parse_sockstat(text), "tcp")
    return _snapshot_of(records, unkeyed, addresses, conntrack)


@FAST
@given(proc_text)
def test_every_table_parser_returns_and_its_result_loads(text: str) -> None:
    document = _parse_everything(text)
    # The payload writes it (no NaN, every string encodable) and the loader accepts it.
    parse_snapshot(json.loads(capture.dumps_document(document)), "fuzz")


@FAST
@given(st.text(max_size=300))
def test_every_table_parser_returns_on_arbitrary_text(text: str) -> None:
    parse_snapshot(json.loads(capture.dumps_document(_parse_everything(text))), "fuzz")


@FAST
@given(st.lists(mutated_line(), min_size=1, max_size=6))
def test_parsers_accept_lines_as_an_iterable(lines: list[str]) -> None:
    """read_namespace hands the parsers an open file (an iterable of lines with their newline):
    it must read the same rows as from the whole text. (A line drawn here may hold a newline of
    its own: the file, like the text, splits there.)"""
    text = "\n".join(lines)
    for _, proto in capture.INET_TABLES:
        assert capture.parse_inet_table(io.StringIO(text + "\n"), proto) == capture.parse_inet_table(text, proto)


STATUS = Path("/proc/self/status").read_text()


@FAST
@given(st.data())
def test_process_status_parses_or_raises_what_read_process_catches(data: st.DataObject) -> None:
    """parse_status may raise ValueError/IndexError (read_process counts the process as
    unreadable); anything else, or an out-of-range id it returns, would lose the machine."""
    lines = STATUS.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    lines[index] = data.draw(st.sampled_from(("PPid:", "Uid:", "PPid:\t", "Uid:\t"))) + data.draw(
        st.text(alphabet=" \t0123456789-x", max_size=30))
    try:
        status = capture.parse_status("\n".join(lines))
    except (ValueError, IndexError):
        return
    assert set(status) == {"ppid", "uid", "euid"}


@FAST
@given(st.binary(max_size=200))
def test_text_from_proc_keeps_its_exact_bytes(raw: bytes) -> None:
    """comm and cmdline are shaped by any local user: any bytes give valid text, and the hex
    gives back the exact bytes when the text cannot."""
    for arg in capture.parse_cmdline(raw):
        text, hexed = capture.decode_text(arg)
        text.encode("utf-8")  # valid Unicode (no lone surrogates)
        assert (bytes.fromhex(hexed) if hexed is not None else text.encode("utf-8")) == arg


# --------------------------------------------------------------------------------------------
# Frames

def _real_document() -> dict:
    """This machine's snapshot, cut to a few processes and sockets (each example decodes it)."""
    document = capture.collect()
    document["processes"] = document["processes"][:8]
    for namespace in document["namespaces"]:
        namespace["sockets"] = namespace["sockets"][:20]
    return document


REAL_JSON = capture.dumps_document(_real_document())
REAL_FRAME = encode_framed(REAL_JSON)


def _check_decode(data: bytes) -> None:
    try:
        text = decode_framed(data)
    except FrameError as error:
        assert error.kind in ("no frame", "truncated", "corrupt", "unsupported", "too large")
        assert "\n" not in str(error)
        return
    assert isinstance(text, str)


@FAST
@given(st.binary(max_size=500))
def test_decode_framed_on_arbitrary_bytes(data: bytes) -> None:
    _check_decode(data)


@FAST
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_decode_framed_finds_a_whole_frame_between_any_noise(before: bytes, after: bytes) -> None:
    assume(framing.BEGIN not in after)  # a later frame would be the one read (the last one wins)
    # Noise that itself ends a line keeps the frame's BEGIN at the start of a line.
    assert decode_framed(before + b"\n" + REAL_FRAME + after) == REAL_JSON


@FAST
@given(st.data())
def test_decode_framed_on_cut_and_corrupted_real_frames(data: st.DataObject) -> None:
    frame = bytearray(REAL_FRAME)
    action = data.draw(st.sampled_from(("cut", "flip", "delete", "insert", "header")))
    if action == "cut":
        cut = data.draw(st.integers(0, len(frame) - 2))  # without the last newline it is still whole
        with pytest.raises(FrameError) as caught:
            decode_framed(bytes(frame[:cut]))
        assert caught.value.kind in ("no frame", "truncated", "corrupt")
        return
    if action == "flip":
        at = data.draw(st.integers(0, len(frame) - 1))
        frame[at] ^= data.draw(st.integers(1, 255))
    elif action == "delete":
        at = data.draw(st.integers(0, len(frame) - 1))
        del frame[at:at + data.draw(st.integers(1, 20))]
    elif action == "insert":
        at = data.draw(st.integers(0, len(frame)))
        frame[at:at] = data.draw(st.binary(min_size=1, max_size=20))
    else:
        header_end = frame.index(b"\n")
        fields = bytes(frame[:header_end]).split(b" ")
        position = data.draw(st.integers(0, len(fields) - 1))
        fields[position] = data.draw(st.sampled_from(
            [b"", b"0", b"2", b"-1", b"99999999999999999999999999", b"1" * 5000, b"\xff\xfe", b"a" * 64]))
        frame[:header_end] = b" ".join(fields)
    try:
        text = decode_framed(bytes(frame))
    except FrameError as error:
        assert error.kind in ("no frame", "truncated", "corrupt", "unsupported", "too large")
        return
    # A change the digest cannot see (whitespace inside the base64 body) changes nothing.
    assert text == REAL_JSON


def test_decode_framed_refuses_a_zip_bomb_without_inflating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = zlib.compress(b" " * (1 << 28), 9)  # 256 MiB of spaces in ~260 KB
    header = b"NETVIZ-SNAPSHOT-BEGIN 1 %d %s\n" % (len(bomb), hashlib.sha256(bomb).hexdigest().encode())
    frame = header + base64.encodebytes(bomb) + b"NETVIZ-SNAPSHOT-END\n"
    # Inflating is bounded by MAX_JSON_BYTES; a smaller limit shows the bound is enforced.
    monkeypatch.setattr(framing, "MAX_JSON_BYTES", 1 << 20)
    with pytest.raises(FrameError) as caught:
        decode_framed(frame)
    assert caught.value.kind == "too large"


def test_frame_error_is_a_netviz_error() -> None:
    assert issubclass(FrameError, NetvizError)
    assert issubclass(SnapshotError, NetvizError)


# --------------------------------------------------------------------------------------------
# A real process shaping its own command line

MERGE_ARGS = '''\
import sys, time
fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
with open("/proc/self/mem", "r+b") as mem:  # what setproctitle does: one argument of them all
    mem.seek(start)
    data = mem.read(end - start)
    mem.seek(start)
    mem.write(data[:-1].replace(b"\\0", b"\\xff") + data[-1:])
print("ready", flush=True)
time.sleep(120)
'''


def test_a_process_with_a_huge_command_line_does_not_spoil_the_snapshot(tmp_path) -> None:
    """Any local user can show a megabyte-long, non-UTF-8 command line (arguments joined over
    their NULs, as setproctitle does). The payload cuts it, so the machine's snapshot still loads."""
    import subprocess
    import sys

    script = tmp_path / "merge_args.py"
    script.write_text(MERGE_ARGS)
    argument = "\udcff" * 120_000  # raw 0xff bytes (surrogateescape), each argument under MAX_ARG_STRLEN
    process = subprocess.Popen([sys.executable, str(script)] + [argument] * 10,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout.readline() == b"ready\n"
        assert len(Path(f"/proc/{process.pid}/cmdline").read_bytes()) > 1_000_000
        document = json.loads(capture.dumps_document(capture.collect()))
        snapshot = parse_snapshot(document, "live")
    finally:
        process.kill()
        process.wait()
    raw = next(p for p in document["processes"] if p["pid"] == process.pid)
    assert raw["cmdline_truncated"] is True
    assert sum(len(bytes.fromhex(h)) for h in raw["cmdline_hex"]) <= capture.MAX_CMDLINE_BYTES
    loaded = next(p for p in snapshot.processes if p.pid == process.pid)
    assert loaded.cmdline[0].startswith(sys.executable + "\\xff") and len(loaded.cmdline) == 1

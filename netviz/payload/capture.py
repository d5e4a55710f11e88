"""netviz capture payload: one snapshot of this Linux machine's processes, sockets and addresses.

This file is the only netviz code that runs on target machines. It is sent over SSH and run as
`python3 - [--framed] < capture.py`, so it must:

* use the Python standard library only, with Python 3.6 syntax and APIs (RHEL 8, Ubuntu 18.04);
* be read-only: it opens files for reading, lists directories, reads symbolic links and talks
  to the kernel over a netlink socket; it never writes, creates or removes anything;
* never crash on what a real machine does: processes exit mid-scan, permissions are missing,
  kernel modules (sctp, nf_conntrack) are absent, LSMs are absent. Those become counts and notes
  in the `coverage` section of the snapshot.

The output format is documented in docs/snapshot.md (`netviz.snapshot/1`). The parse_* functions
are pure (text in, records out) so that they can be tested on golden /proc text.
"""

import sys

if __name__ == "__main__":
    # Run on a target: leave no .pyc behind, even for the standard modules imported below.
    sys.dont_write_bytecode = True

import argparse  # noqa: E402 (after the line above on purpose)
import base64
import errno
import functools
import hashlib
import json
import marshal
import operator
import os
import signal
import socket
import struct
import time
import zlib

SCHEMA = "netviz.snapshot/1"
PAYLOAD_VERSION = "1.0.0"

FRAME_BEGIN = "NETVIZ-SNAPSHOT-BEGIN"
FRAME_END = "NETVIZ-SNAPSHOT-END"
FRAME_VERSION = 1

# Kernel socket states (include/net/tcp_states.h), spelled as the kernel does. UDP, raw and
# ping sockets reuse them: CLOSE is "unconnected", ESTABLISHED is "connected".
STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "SYN_RECV",  # TCP_NEW_SYN_RECV: a request socket, shown as SYN_RECV like ss does
}

# SCTP association states (include/net/sctp/constants.h) and the TCP-style name they map to.
SCTP_ASSOC_STATES = {
    0: ("CLOSED", "CLOSE"), 1: ("COOKIE_WAIT", "SYN_SENT"), 2: ("COOKIE_ECHOED", "SYN_SENT"),
    3: ("ESTABLISHED", "ESTABLISHED"), 4: ("SHUTDOWN_PENDING", "FIN_WAIT1"),
    5: ("SHUTDOWN_SENT", "FIN_WAIT1"), 6: ("SHUTDOWN_RECEIVED", "CLOSE_WAIT"),
    7: ("SHUTDOWN_ACK_SENT", "LAST_ACK"),
}

# The /proc/PID/net files in the "inet table" format, and the protocol name each one gets.
INET_TABLES = (
    ("tcp", "tcp"), ("tcp6", "tcp6"), ("udp", "udp"), ("udp6", "udp6"),
    ("udplite", "udplite"), ("udplite6", "udplite6"), ("raw", "raw"), ("raw6", "raw6"),
    ("icmp", "icmp"), ("icmp6", "icmp6"),
)
RAW_PROTOS = ("raw", "raw6")

# Upper bounds that keep one pathological machine from producing an unloadable snapshot.
MAX_CONNTRACK_ENTRIES = 262144
MAX_NOTES = 50

# A socket record is a plain tuple (cheap: a busy machine holds hundreds of thousands):
# (proto, inode, local, local_port, remote, remote_port, state, uid, extra)
# `extra` is None or a dict of the optional fields (protocol, interface, packet_type, ...).
_INODE = operator.itemgetter(1)
SOCKET_FIELDS = ("proto", "inode", "local", "local_port", "remote", "remote_port", "state", "uid")


def socket_to_dict(record):
    """The snapshot form of a socket record (a dict with the documented keys)."""
    out = dict(zip(SOCKET_FIELDS, record))
    if record[8]:
        out.update(record[8])
    return out


# ---------------------------------------------------------------------------------------------
# Address decoding
# ---------------------------------------------------------------------------------------------

_V4_CACHE = {}
_V6_CACHE = {}
_WORD = struct.Struct("=I")
_WORDS6 = struct.Struct("=IIII")


def decode_ipv4_hex(text):
    """Decode an address from a /proc/net table: 8 hex digits of a 32-bit word in host order."""
    value = _V4_CACHE.get(text)
    if value is None:
        if len(text) != 8:
            raise ValueError("not an IPv4 table address: %r" % text)
        try:
            value = socket.inet_ntop(socket.AF_INET, _WORD.pack(int(text, 16)))
        except struct.error:
            raise ValueError("not an IPv4 table address: %r" % text)
        if len(_V4_CACHE) < 65536:
            _V4_CACHE[text] = value
    return value


def decode_ipv6_hex(text):
    """Decode an IPv6 address from a /proc/net table.

    The kernel prints the 16 bytes as four 32-bit words, each in host byte order, so on a
    little-endian machine every group of 4 bytes appears reversed. Decoding word by word in
    native order gives the exact address (fd77::12, ::ffff:10.77.0.12).
    """
    value = _V6_CACHE.get(text)
    if value is None:
        if len(text) != 32:
            raise ValueError("not an IPv6 table address: %r" % text)
        words = (int(text[0:8], 16), int(text[8:16], 16), int(text[16:24], 16), int(text[24:32], 16))
        try:
            value = socket.inet_ntop(socket.AF_INET6, _WORDS6.pack(*words))
        except struct.error:
            raise ValueError("not an IPv6 table address: %r" % text)
        if len(_V6_CACHE) < 65536:
            _V6_CACHE[text] = value
    return value


def decode_ipv6_bytes_hex(text):
    """Decode 32 hex digits written in network byte order (if_inet6, %pi6)."""
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(text))


def canonical_address(text):
    """Canonical text of an IPv4 or IPv6 address (compresses `%pI6` full forms); None if invalid."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def _lines(text):
    """Accept the text of a file or any iterable of its lines.

    Text is split at "\n" only, as reading the file line by line does (str.splitlines would
    also split at characters such as \x85 that a damaged table may hold).
    """
    if isinstance(text, str):
        return text.split("\n")
    return text


_UINT32 = (1 << 32) - 1
_UINT64 = (1 << 64) - 1


def _bounded(value, high, low=0):
    """`value` when low <= value <= high; else ValueError (a damaged row is skipped whole)."""
    if not low <= value <= high:
        raise ValueError("%d out of range" % value)
    return value


def _decimal(text):
    """int() of ASCII decimal digits only (str.isdigit also accepts '²')."""
    if not text or text.strip("0123456789"):
        raise ValueError("not a decimal number: %r" % text)
    return int(text)


MAX_NAME = 255  # interface names, states, protocol names from kernel text
MAX_HOST_TEXT = 255
MAX_CONTEXT = 4000
# Any local user shapes its command line: a process that joins its arguments (setproctitle) shows
# megabytes as one argument, and many such processes would push the snapshot past the reader's
# bounds. Command lines are cut to this many bytes, with `cmdline_truncated` set.
MAX_CMDLINE_BYTES = 16384


# ---------------------------------------------------------------------------------------------
# Socket tables
# ---------------------------------------------------------------------------------------------

def parse_inet_table(text, proto, inodeless=None):
    """Parse /proc/net/{tcp,tcp6,udp,udp6,udplite,udplite6,raw,raw6,icmp,icmp6}.

    Returns (records, unkeyed): socket records for rows with a non-zero inode, and the rows with
    inode 0 (TIME_WAIT, not yet accepted) counted per state: {"TIME_WAIT": 12}. Malformed rows
    are skipped. For raw sockets the "port" is the IP protocol number, also given as `protocol`.
    With `inodeless` (a list), the rows of inode 0 are also appended to it as records.
    """
    decode = decode_ipv6_hex if proto.endswith("6") else decode_ipv4_hex
    address_length = 32 if proto.endswith("6") else 8
    is_raw = proto in RAW_PROTOS
    states = STATES
    records = []
    unkeyed = {}
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            continue  # the header, or a cut-off row
        try:
            local_hex, local_port = fields[1].split(":")
            remote_hex, remote_port = fields[2].split(":")
            local_port = _bounded(int(local_port, 16), 65535)
            remote_port = _bounded(int(remote_port, 16), 65535)
            state_number = _bounded(int(fields[3], 16), 255)
            uid = _bounded(_decimal(fields[7]), _UINT32)
            inode = _bounded(_decimal(fields[9]), _UINT64)
            if len(local_hex) != address_length or len(remote_hex) != address_length:
                continue  # a damaged row: every field is checked before it is even counted
            state = states.get(state_number) or "UNKNOWN_%d" % state_number
            if inode == 0:
                unkeyed[state] = unkeyed.get(state, 0) + 1
                if inodeless is not None:
                    inodeless.append((proto, 0, decode(local_hex), local_port, decode(remote_hex),
                                      remote_port, state, uid, None))
                continue
            extra = {"protocol": local_port} if is_raw else None
            records.append((proto, inode, decode(local_hex), local_port, decode(remote_hex),
                            remote_port, state, uid, extra))
        except (ValueError, OSError):
            continue
    return records, unkeyed


def parse_packet(text, interfaces=None):
    """Parse /proc/net/packet (AF_PACKET sockets: raw captures, DHCP clients, LLDP).

    `interfaces` maps ifindex to interface name; ifindex 0 means "all interfaces" (`*`).
    """
    interfaces = interfaces or {}
    records = []
    unkeyed = {}
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 9 or fields[0] == "sk":
            continue
        try:
            sock_type = _bounded(_decimal(fields[2]), 255)
            ethertype = _bounded(int(fields[3], 16), 65535)
            ifindex = _bounded(_decimal(fields[4]), _UINT32)
            uid = _bounded(_decimal(fields[7]), _UINT32)
            inode = _bounded(_decimal(fields[8]), _UINT64)
        except ValueError:
            continue
        if inode == 0:
            unkeyed["CLOSE"] = unkeyed.get("CLOSE", 0) + 1
            continue
        if ifindex == 0:
            interface = "*"
        else:
            interface = interfaces.get(ifindex) or "if%d" % ifindex
        extra = {
            "protocol": ethertype,
            "interface": interface,
            "packet_type": {2: "dgram", 3: "raw"}.get(sock_type, "type%d" % sock_type),
        }
        records.append(("packet", inode, None, None, None, None, "CLOSE", uid, extra))
    return records, unkeyed


def _sctp_addresses(tokens):
    """SCTP address lists: '*' marks the primary path; IPv6 is printed in full (%pI6)."""
    addresses = []
    primary = None
    for token in tokens:
        is_primary = token.startswith("*")
        address = canonical_address(token.lstrip("*"))
        if address is None:
            continue
        if is_primary and primary is None:
            primary = address
        if address not in addresses:
            addresses.append(address)
    return (primary or (addresses[0] if addresses else None)), addresses


def parse_sctp_eps(text):
    """Parse /proc/net/sctp/eps: SCTP endpoints (one per bound socket).

    Columns: ENDPT SOCK STY SST HBKT LPORT UID INODE LADDRS...
    """
    records = []
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 8 or fields[0] == "ENDPT":
            continue
        try:
            sock_state = _bounded(_decimal(fields[3]), 255)
            local_port = _bounded(_decimal(fields[5]), 65535)
            uid = _bounded(_decimal(fields[6]), _UINT32)
            inode = _bounded(_decimal(fields[7]), _UINT64)
        except ValueError:
            continue
        if inode == 0:
            continue
        local, local_all = _sctp_addresses(fields[8:])
        state = STATES.get(sock_state) or "UNKNOWN_%d" % sock_state
        extra = {"local_all": local_all, "remote_all": []}
        records.append(("sctp", inode, local, local_port, None, None, state, uid, extra))
    return records


def parse_sctp_assocs(text):
    """Parse /proc/net/sctp/assocs: SCTP associations (multi-homed connections).

    Columns: ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT
    LADDRS <-> RADDRS, then a tab and timer/counter columns. One-to-many sockets share their
    inode between all their associations (and their endpoint).
    """
    records = []
    for line in _lines(text):
        if "<->" not in line:
            continue
        left, right = line.split("<->", 1)
        fields = left.split()
        if len(fields) < 13:
            continue
        try:
            assoc_state = _bounded(_decimal(fields[4]), 255)
            uid = _bounded(_decimal(fields[9]), _UINT32)
            inode = _bounded(_decimal(fields[10]), _UINT64)
            local_port = _bounded(_decimal(fields[11]), 65535)
            remote_port = _bounded(_decimal(fields[12]), 65535)
        except ValueError:
            continue
        if inode == 0:
            continue
        local, local_all = _sctp_addresses(fields[13:])
        remote, remote_all = _sctp_addresses(right.split("\t", 1)[0].split())
        sctp_name, state = SCTP_ASSOC_STATES.get(assoc_state, ("UNKNOWN", "UNKNOWN_%d" % assoc_state))
        extra = {"local_all": local_all, "remote_all": remote_all, "sctp_state": sctp_name}
        records.append(("sctp", inode, local, local_port, remote, remote_port, state, uid, extra))
    return records


def merge_sctp(endpoints, associations):
    """Associations, plus the endpoints not already described by an association.

    A connected one-to-one socket appears in both files under one inode; its association says
    more. A listening socket keeps its endpoint record even when it also has associations
    (one-to-many style), so that the stitcher knows it listens.
    """
    with_assoc = set(record[1] for record in associations)
    kept = [r for r in endpoints if r[1] not in with_assoc or r[6] == "LISTEN"]
    return kept + list(associations)


# ---------------------------------------------------------------------------------------------
# Addresses and interfaces
# ---------------------------------------------------------------------------------------------

def parse_if_inet6(text):
    """Parse /proc/net/if_inet6: [(ifindex, interface, address, prefix)] (exact, with names)."""
    out = []
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32 or len(fields[5]) > MAX_NAME:
            continue
        try:
            out.append((_bounded(int(fields[1], 16), _UINT32), fields[5],
                        decode_ipv6_bytes_hex(fields[0]), _bounded(int(fields[2], 16), 128)))
        except (ValueError, OSError):
            continue
    return out


def parse_fib_trie(text):
    """Parse /proc/net/fib_trie into (table, address, prefix, scope, type) route entries.

    Leaves are `|-- ADDRESS` lines; the lines under a leaf (`/32 host LOCAL`) are its routes.
    Table headers are unindented lines ending with ':' (`Main:`, `Local:`, `Id 100:`).
    """
    entries = []
    table = None
    leaf = None
    for line in _lines(text):
        if not line.strip():
            continue
        if not line[0].isspace():
            table = line.strip().rstrip(":")
            leaf = None
            continue
        stripped = line.strip()
        if stripped.startswith("|--"):
            leaf = stripped[3:].strip()
            try:
                socket.inet_pton(socket.AF_INET, leaf)  # the kernel writes dotted quads only
            except (OSError, ValueError):
                leaf = None
        elif stripped.startswith("+--"):
            leaf = None
        elif stripped.startswith("/") and leaf is not None:
            parts = stripped.split()
            if len(parts) < 3:
                continue
            try:
                prefix = _bounded(_decimal(parts[0][1:]), 32)
            except ValueError:
                continue
            entries.append((table, leaf, prefix, parts[1], parts[2]))
    return entries


def parse_route(text):
    """Parse /proc/net/route (main IPv4 table): [(interface, destination, prefix, gateway)]."""
    routes = []
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 8 or fields[0] == "Iface" or len(fields[0]) > MAX_NAME:
            continue
        try:
            destination = decode_ipv4_hex(fields[1])
            gateway = decode_ipv4_hex(fields[2])
            mask = _WORD.pack(int(fields[7], 16))
        except (ValueError, OSError, struct.error):
            continue
        prefix = bin(int.from_bytes(mask, "big")).count("1")
        routes.append((fields[0], destination, prefix, gateway))
    return routes


def _ipv4_int(address):
    return int.from_bytes(socket.inet_aton(address), "big")


def _in_prefix(address, network, prefix):
    if prefix == 0:
        return True
    shift = 32 - prefix
    return (_ipv4_int(address) >> shift) == (_ipv4_int(network) >> shift)


def ipv4_addresses(fib_trie_text, route_text):
    """The IPv4 addresses of a namespace: [(interface, address, prefix)].

    /proc/net/fib_trie lists every local address (`/32 host LOCAL`) but not its interface;
    the prefix is that of the link route covering it (`/24 link UNICAST`, or `/8 host LOCAL`
    for 127.0.0.0/8), and the interface is the one /proc/net/route gives for that link route.
    Loopback addresses belong to `lo`. An address with no link route (a /32, or
    `noprefixroute`) gets prefix 32 and interface "" (unknown).
    """
    entries = parse_fib_trie(fib_trie_text)
    routes = parse_route(route_text)
    local = sorted(set(e[1] for e in entries if e[4] == "LOCAL" and e[2] == 32))
    out = []
    for address in local:
        try:
            covering = [e[2] for e in entries if e[2] < 32 and
                        ((e[3] == "link" and e[4] == "UNICAST") or (e[3] == "host" and e[4] == "LOCAL"))
                        and _in_prefix(address, e[1], e[2])]
        except OSError:
            continue
        prefix = max(covering) if covering else 32
        interface = ""
        for name, destination, route_prefix, gateway in routes:
            if gateway == "0.0.0.0" and route_prefix == prefix and prefix < 32 and \
                    _in_prefix(address, destination, prefix):
                interface = name
                break
        if not interface and address.startswith("127."):
            interface = "lo"
        out.append((interface, address, prefix))
    return out


def parse_interface_indexes(*texts):
    """ifindex -> name from /proc/net/{igmp,dev_mcast,igmp6} (for packet sockets).

    igmp lists `IDX<TAB>NAME :` lines; dev_mcast and igmp6 start with `IDX NAME`.
    """
    names = {}
    for text in texts:
        for line in _lines(text or ""):
            if not line or line[0].isspace():
                continue
            fields = line.replace(":", " ").split()
            if len(fields) >= 2 and len(fields[1]) <= MAX_NAME:
                try:
                    names.setdefault(_bounded(_decimal(fields[0]), _UINT32), fields[1])
                except ValueError:
                    continue
    return names


# ---------------------------------------------------------------------------------------------
# Connection tracking (NAT)
# ---------------------------------------------------------------------------------------------

def parse_nf_conntrack(text, limit=MAX_CONNTRACK_ENTRIES):
    """Parse /proc/net/nf_conntrack (or the older ip_conntrack) into entries.

    A line is `[l3name l3num] l4name l4num [timeout] [STATE] src= dst= [sport= dport=] [flags]
    src= dst= [sport= dport=] ...`: the first src/dst group is the original direction, the
    second the reply. The kernel leaves out the timeout, and the TCP state, of a connection
    offloaded to a flow table. With accounting on (nf_conntrack_acct), each direction's
    `packets= bytes=` follow its ports and the entry gets `counters`: [original packets,
    original bytes, reply packets, reply bytes]. Returns (entries, truncated).
    """
    entries = []
    truncated = False
    counts = {}  # (1 original or 2 reply, "packets" or "bytes") -> count, for the line at hand
    for line in _lines(text):
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[0] in ("ipv4", "ipv6"):
            fields = fields[2:]
        proto = fields[0]
        if len(proto) > 64:
            continue
        state = None
        tuples = []
        first = 3 if fields[2:3] and not fields[2].strip("0123456789") else 2  # past the timeout
        for field in fields[first:]:
            if "=" not in field:
                if not tuples and not field.startswith("[") and len(field) <= 64:
                    state = field
                continue
            key, _, value = field.partition("=")
            if key == "src":
                tuples.append({"src": None, "dst": None, "sport": None, "dport": None})
            if not tuples or len(tuples) > 2:
                continue
            current = tuples[-1]
            if key in ("src", "dst"):
                current[key] = canonical_address(value)
            elif key in ("sport", "dport") and current[key] is None:
                try:
                    current[key] = _bounded(_decimal(value), 65535)
                except ValueError:
                    pass
            elif key in ("packets", "bytes"):  # only with nf_conntrack_acct
                try:
                    counts.setdefault((len(tuples), key), _bounded(_decimal(value), _UINT64))
                except ValueError:
                    pass
        if len(tuples) < 2 or any(t["src"] is None or t["dst"] is None for t in tuples[:2]):
            counts.clear()
            continue
        if len(entries) >= limit:
            truncated = True
            break
        entry = {"proto": proto, "state": state, "original": tuples[0], "reply": tuples[1]}
        if len(counts) == 4:
            entry["counters"] = [counts[(1, "packets")], counts[(1, "bytes")],
                                 counts[(2, "packets")], counts[(2, "bytes")]]
        counts.clear()
        entries.append(entry)
    return entries, truncated


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def parse_status(text):
    """Parse /proc/PID/status: {"ppid": int, "uid": real uid, "euid": effective uid}."""
    out = {"ppid": 0, "uid": -1, "euid": -1}
    for line in _lines(text):
        if line.startswith("PPid:"):
            out["ppid"] = _bounded(_decimal(line.split()[1]), (1 << 31) - 1)
        elif line.startswith("Uid:"):
            fields = line.split()
            out["uid"] = _bounded(_decimal(fields[1]), _UINT32)
            out["euid"] = _bounded(_decimal(fields[2]), _UINT32)
            break  # Uid comes after PPid
    return out


def _passwd_entries(text):
    """(uid, fields) of each /etc/passwd line that has a decimal uid, in file order."""
    for line in _lines(text):
        fields = line.split(":")
        if len(fields) >= 3:
            try:
                yield _decimal(fields[2]), fields
            except ValueError:
                continue


def parse_passwd(text):
    """uid -> user name from an /etc/passwd text (first entry wins, like getpwuid)."""
    users = {}
    for uid, fields in _passwd_entries(text):
        if len(fields[0]) <= MAX_NAME:
            users.setdefault(uid, fields[0])
    return users


def decode_text(raw):
    """Bytes from /proc as text: (text, hex or None).

    Invalid UTF-8 is written as \\xHH (readable) and the exact bytes are kept as hex.
    """
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), raw.hex()


def parse_cmdline(raw):
    """Split /proc/PID/cmdline (NUL-separated, NUL-terminated) into arguments."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.split(b"\0")


# ---------------------------------------------------------------------------------------------
# Reading /proc
# ---------------------------------------------------------------------------------------------

_GONE = (errno.ENOENT, errno.ESRCH)
_DENIED = (errno.EACCES, errno.EPERM)


def _read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


def _read_text_or_none(path):
    """The stripped text of a small identity file (cut to MAX_HOST_TEXT), or None."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4 * MAX_HOST_TEXT)
    except OSError:
        return None
    return raw.decode("utf-8", "backslashreplace").strip()[:MAX_HOST_TEXT]


def _open_text(path):
    return open(path, "r", encoding="utf-8", errors="backslashreplace")


_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_socket_inodes(fd_dir):
    """Socket inodes among the open fds listed in `fd_dir` (a /proc/PID/fd directory).

    The directory is opened once and each link is read relative to it (readlinkat), which
    spares the kernel a full path walk per fd; mapping readlink over the names keeps the
    per-fd Python work small (a busy server holds tens of thousands of fds). Raises OSError
    when the directory itself cannot be read; an fd closed during the walk is skipped.
    """
    dir_fd = os.open(fd_dir, _O_DIR)
    try:
        names = os.listdir(dir_fd)
        try:
            targets = list(map(functools.partial(os.readlink, dir_fd=dir_fd), names))
        except OSError:
            targets = []
            for name in names:
                try:
                    targets.append(os.readlink(name, dir_fd=dir_fd))
                except OSError:
                    continue  # closed since the directory was listed
    finally:
        os.close(dir_fd)
    sockets = [target for target in targets if target.startswith("socket:[")]
    try:
        return [int(target[8:-1]) for target in sockets]
    except ValueError:
        out = []
        for target in sockets:
            try:
                out.append(_decimal(target[8:-1]))
            except ValueError:
                continue
        return out


class Coverage(object):
    """What the capture could and could not see."""

    def __init__(self):
        self.processes_seen = 0
        self.processes_vanished = 0
        self.processes_denied = 0
        self.namespaces_denied = 0
        self.unattributed_sockets = 0
        self.notes = []
        self._dropped_notes = 0

    def note(self, message):
        if len(self.notes) < MAX_NOTES:
            if message not in self.notes:
                self.notes.append(message)
        else:
            self._dropped_notes += 1

    def to_dict(self, euid):
        notes = list(self.notes)
        if self._dropped_notes:
            notes.append("%d more notes not shown" % self._dropped_notes)
        return {
            "euid": euid,
            "complete": euid == 0 and self.processes_denied == 0 and self.namespaces_denied == 0,
            "processes_seen": self.processes_seen,
            "processes_vanished": self.processes_vanished,
            "processes_denied": self.processes_denied,
            "namespaces_denied": self.namespaces_denied,
            "unattributed_sockets": self.unattributed_sockets,
            "notes": notes,
        }


def read_process(proc_root, pid, users, coverage):
    """Read one process: (process dict, [socket inodes among its fds]); None if it vanished."""
    base = os.path.join(proc_root, str(pid))
    try:
        status = parse_status(_read_bytes(base + "/status").decode("utf-8", "backslashreplace"))
        comm_raw = _read_bytes(base + "/comm")
        cmdline_raw = _read_bytes(base + "/cmdline")
    except OSError as error:
        if error.errno in _GONE:
            coverage.processes_vanished += 1
        else:
            coverage.processes_denied += 1
            coverage.note("pid %d: cannot read status: %s" % (pid, os.strerror(error.errno or 0)))
        return None
    except (ValueError, IndexError):
        coverage.note("pid %d: unreadable status" % pid)
        return None

    if comm_raw.endswith(b"\n"):
        comm_raw = comm_raw[:-1]
    comm, comm_hex = decode_text(comm_raw)
    truncated = len(cmdline_raw) > MAX_CMDLINE_BYTES
    if truncated:
        cmdline_raw = cmdline_raw[:MAX_CMDLINE_BYTES]
    raw_args = parse_cmdline(cmdline_raw)
    decoded = [decode_text(arg) for arg in raw_args]
    args = [text for text, _ in decoded]
    clean = all(hexed is None for _, hexed in decoded)

    process = {
        "pid": pid,
        "ppid": status["ppid"],
        "comm": comm,
        "cmdline": args,
        "uid": status["uid"],
        "euid": status["euid"],
        "user": users.get(status["uid"]),
        "context": read_context(base),
        "netns": None,
        "sockets": [],
    }
    if comm_hex is not None:
        process["comm_hex"] = comm_hex
    if not clean:
        process["cmdline_hex"] = [arg.hex() for arg in raw_args]
    if truncated:
        process["cmdline_truncated"] = True

    denied = False
    try:
        process["netns"] = os.stat(base + "/ns/net").st_ino
    except OSError as error:
        # ENOENT on a zombie (no namespaces left) is not an access problem.
        denied = error.errno in _DENIED
        if denied:
            coverage.note("pid %d: cannot read its network namespace: %s" % (pid, os.strerror(error.errno or 0)))
    inodes = []
    try:
        inodes = read_socket_inodes(base + "/fd")
    except OSError as error:
        if error.errno in _DENIED:
            denied = True
            process["fd_denied"] = True
    if denied:
        coverage.processes_denied += 1
    if inodes:  # only processes that can be drawn pay for it
        cgroup = read_cgroup(base)
        if cgroup:
            process["cgroup"] = cgroup
    return process, inodes


MAX_CGROUP = 1024  # characters of a cgroup path kept


def read_cgroup(base):
    """The process's cgroup path: the unified (v2) line's, else systemd's (v1), else the first
    line's; None when unreadable. Units, containers and pods are read from it by the client."""
    try:
        raw = _read_bytes(base + "/cgroup")[:16384]
    except OSError:
        return None
    unified = systemd = first = None
    for line in raw.decode("utf-8", "backslashreplace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            unified = parts[2]
        elif parts[1] == "name=systemd":
            systemd = parts[2]
        elif first is None:
            first = parts[2]
    # a hybrid machine leaves the unified hierarchy at "/": systemd's then says more
    chosen = unified if unified and unified != "/" else (systemd or first or unified)
    return chosen[:MAX_CGROUP] if chosen else None


# Container ids in cgroup paths (Docker, containerd, CRI-O, Podman): 64 hex digits.
_CONTAINER_ID = None
_POD_UID = None
MAX_RUNTIME_FILE = 1 << 20  # bytes read of one runtime state file
MAX_CONTAINERS_NAMED = 1024


def _read_small_regular(path, limit):
    """The bytes of a regular file (never a FIFO or device: opened non-blocking, checked), cut at
    `limit`; None when it is not one or cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        import stat as stat_module
        if not stat_module.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _ids_in(cgroup):
    """The container ids (64 hex digits) a cgroup path names (the pattern compiled when first needed)."""
    global _CONTAINER_ID
    if _CONTAINER_ID is None:
        import re
        _CONTAINER_ID = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")
    return _CONTAINER_ID.findall(cgroup or "")


def container_ids(processes):
    """The container ids that the processes' cgroup paths name (64 hex digits), sorted."""
    found = set()
    for process in processes:
        found.update(_ids_in(process.get("cgroup")))
    return sorted(found)


MAX_HOSTS_FILE = 1 << 20  # bytes read of /etc/hosts
MAX_HOSTS_ENTRIES = 4096  # addresses named
MAX_NAMES_PER_ADDRESS = 8


def read_hosts_file(etc_root="/etc"):
    """The names the machine's hosts file gives to addresses: [[address, [name, ...]], ...],
    addresses canonical and in file order, names as written (first one first); None when the
    file cannot be read. Only for naming peers outside the group: never used to resolve."""
    path = os.path.realpath(os.path.join(etc_root, "hosts"))  # NixOS and others link it
    raw = _read_small_regular(path, MAX_HOSTS_FILE)
    if raw is None:
        return None
    names = {}
    order = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address = canonical_address(fields[0].split("%", 1)[0])
        if address is None:
            continue
        if address not in names:
            if len(order) >= MAX_HOSTS_ENTRIES:
                continue
            names[address] = []
            order.append(address)
        kept = names[address]
        for name in fields[1:]:
            if len(kept) < MAX_NAMES_PER_ADDRESS and name not in kept and len(name) <= 253 and name.isprintable():
                kept.append(name)
    return [[address, names[address]] for address in order if names[address]]


def pod_uids(processes):
    """The Kubernetes pod uids that the processes' cgroup paths name (`pod<UID>`, `_` for `-`
    under the systemd driver), sorted."""
    global _POD_UID
    if _POD_UID is None:
        import re
        _POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?![0-9a-f])")
    found = set()
    for process in processes:
        found.update(uid.replace("_", "-") for uid in _POD_UID.findall(process.get("cgroup") or ""))
    return sorted(found)


# Where each runtime keeps a running container's state, and which of its keys say what.
# containerd (Kubernetes through CRI): the OCI bundle of the task, its annotations set by CRI.
CONTAINERD_TASKS = "run/containerd/io.containerd.runtime.v2.task"
CONTAINERD_ANNOTATIONS = (("io.kubernetes.cri.container-name", "container"), ("io.kubernetes.cri.sandbox-name", "pod"),
                          ("io.kubernetes.cri.sandbox-namespace", "pod_namespace"),
                          ("io.kubernetes.cri.image-name", "image"))
# CRI-O and Podman: containers/storage's userdata, run-time and persistent.
STORAGE_CONTAINERS = ("run/containers/storage/overlay-containers", "var/lib/containers/storage/overlay-containers")
CRIO_ANNOTATIONS = (("io.kubernetes.container.name", "container"), ("io.kubernetes.pod.name", "pod"),
                    ("io.kubernetes.pod.namespace", "pod_namespace"), ("io.kubernetes.cri-o.ImageName", "image"))


# Podman: containers/storage lists its containers, named, in <graph root>/<driver>-containers/
# containers.json: the system's store, and the store in the home of each user whose user@UID.service
# runs containers (rootless Podman). CRI-O shares the format; its containers are named above.
STORAGE_GRAPHROOT = "var/lib/containers/storage"
STORAGE_USER_GRAPHROOT = ".local/share/containers/storage"
ROOTLESS_DOCKER_CONTAINERS = ".local/share/docker/containers"  # rootless Docker's default data root, in the home
MAX_STORAGE_LIST = 4 << 20  # bytes read of one containers.json (about 1 KB a container)
MAX_STORAGE_USERS = 64
_USER_SERVICE = None


def _json_file(path, kind=dict, limit=MAX_RUNTIME_FILE):
    """The `kind` of value (an object, or a list) a small regular JSON file holds, else None."""
    raw = _read_small_regular(path, limit)
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # (a user's own file may nest without end)
        return None
    return value if isinstance(value, kind) else None


def _annotated(config, keys):
    """The fields that an OCI config's annotations give (text only, cut to MAX_NAME)."""
    annotations = config.get("annotations")
    if not isinstance(annotations, dict):
        return {}
    found = {}
    for key, field in keys:
        value = annotations.get(key)
        if isinstance(value, str) and value:
            found[field] = value[:MAX_NAME]
    return found


def _add_bundle(found, runtime, keys, paths):
    """Complete `found` with what the first OCI bundle config among `paths` says (its
    annotations named by `keys`); what `found` has already stays."""
    for path in paths:
        config = _json_file(path)
        if config is not None:
            named = _annotated(config, keys)
            if named:
                found.setdefault("runtime", runtime)
                for field, value in named.items():
                    found.setdefault(field, value)
            return


def _listing(path, limit=65536):
    try:
        return sorted(os.listdir(path))[:limit]
    except OSError:
        return []


def _names_ending(path, suffix, limit=8, scanned=4096):
    """Up to `limit` names ending with `suffix` among the first `scanned` entries of a directory
    (a user's own directory may hold millions), sorted."""
    found = []
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries):
                if count >= scanned or len(found) >= limit:
                    break
                if entry.name.endswith(suffix):
                    found.append(entry.name)
    except OSError:
        pass
    return sorted(found)


def _container_users(processes, wanted):
    """cid -> the users whose processes run in it: the uid of the user@UID.service above it in
    the cgroup path (rootless Docker and Podman), None for the machine's own runtimes."""
    global _USER_SERVICE
    if _USER_SERVICE is None:
        import re
        _USER_SERVICE = re.compile(r"/user@([0-9]{1,10})[.]service/")
    users = {}
    for process in processes:
        cgroup = process.get("cgroup") or ""
        for cid in _ids_in(cgroup):
            if cid in wanted:
                found = _USER_SERVICE.search(cgroup)
                users.setdefault(cid, set()).add(int(found.group(1)) if found else None)
    return users


def _homes(uids, root):
    """uid -> the home directory passwd gives it (under `root`), for the uids wanted."""
    homes = {}
    wanted = set(uids)
    if not wanted:
        return homes
    try:
        with _open_text(os.path.join(root, "etc/passwd")) as handle:
            for uid, fields in _passwd_entries(handle):
                if uid in wanted and len(fields) >= 6 and fields[5].startswith("/"):
                    wanted.discard(uid)  # (first entry wins, like getpwuid)
                    homes[uid] = os.path.join(root, fields[5].lstrip("/"))
                    if len(homes) >= MAX_STORAGE_USERS:
                        break
    except OSError:
        pass
    return homes


def _docker_state(path):
    """{"runtime": "docker", "name", "image"} from a Docker config.v2.json, else {}."""
    config = _json_file(path)
    if config is None:
        return {}
    name = config.get("Name") or ""
    image = (config.get("Config") if isinstance(config.get("Config"), dict) else {}).get("Image") or ""
    if not isinstance(name, str) or not isinstance(image, str):
        return {}
    return {"runtime": "docker", "name": name.lstrip("/")[:MAX_NAME], "image": image[:MAX_NAME]}


def _podman_names(users, homes, wanted, root):
    """cid -> {"runtime": "podman", "name", "image"} for the `wanted` containers that a
    containers/storage list names: the system's list for the machine's containers, a user's own
    list (a file they write) only for the containers running under that user, and then says which
    user (`user`). Entries with a Kubernetes pod id are CRI-O's: left out."""
    stores = [(None, os.path.join(root, STORAGE_GRAPHROOT))]
    stores += [(uid, os.path.join(home, STORAGE_USER_GRAPHROOT)) for uid, home in sorted(homes.items())]
    found = {}
    for uid, graphroot in stores:
        mine = {cid for cid in wanted if uid in users.get(cid, ())}
        if not mine:
            continue
        for entry in _names_ending(graphroot, "-containers"):
            listed = _json_file(os.path.join(graphroot, entry, "containers.json"), list, MAX_STORAGE_LIST) or ()
            for item in listed:
                cid = item.get("id") if isinstance(item, dict) else None
                if cid not in mine or cid in found:
                    continue
                names = item.get("names")
                name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
                try:
                    metadata = json.loads(item.get("metadata") or "{}")
                except (TypeError, ValueError, RecursionError):
                    metadata = {}
                if not isinstance(metadata, dict) or metadata.get("pod-id"):
                    continue
                image = metadata.get("image-name")
                named = {}
                if name:
                    named["name"] = name[:MAX_NAME]
                if isinstance(image, str) and image:
                    named["image"] = image[:MAX_NAME]
                if named:
                    named["runtime"] = "podman"
                    if uid is not None:
                        named["user"] = uid  # (its processes must run under that user to take these names)
                    found[cid] = named
    return found


def read_runtime(processes, root="/"):
    """What the machine's container runtimes and kubelet say about the containers the processes
    run in, read-only from their state files: Docker's config.v2.json (name, image), containerd's
    and CRI-O's OCI bundles (Kubernetes container, pod and image), Podman's containers/storage
    lists (name, image) for what those did not name, the kubelet's /var/log/containers links
    (pod, namespace, container name) per id; and the kubelet's /var/log/pods directories (pod
    name and namespace) per pod uid. A container running under a user's own systemd manager
    (rootless Docker or Podman) is named only from that user's own files, which say so (`user`)."""
    wanted = container_ids(processes)[:MAX_CONTAINERS_NAMED]
    users = _container_users(processes, set(wanted))
    homes = _homes({uid for owners in users.values() for uid in owners if uid is not None}, root)
    containers = {}
    task_namespaces = _listing(os.path.join(root, CONTAINERD_TASKS), 64) if wanted else []
    for cid in wanted:
        owners = users.get(cid, {None})
        found = {}
        if None in owners:  # the machine's own runtimes
            found = _docker_state(os.path.join(root, "var/lib/docker/containers", cid, "config.v2.json"))
            _add_bundle(found, "containerd", CONTAINERD_ANNOTATIONS,
                        [os.path.join(root, CONTAINERD_TASKS, namespace, cid, "config.json") for namespace in task_namespaces])
            _add_bundle(found, "cri-o", CRIO_ANNOTATIONS,
                        [os.path.join(root, base, cid, "userdata", "config.json") for base in STORAGE_CONTAINERS])
        else:  # rootless Docker: the user's own data root
            for uid in sorted(owners):
                if uid in homes:
                    found = _docker_state(os.path.join(homes[uid], ROOTLESS_DOCKER_CONTAINERS, cid, "config.v2.json"))
                    if found:
                        found["user"] = uid
                        break
        if found:
            containers[cid] = found
    unnamed = {cid for cid in wanted if "name" not in containers.get(cid, {}) and "container" not in containers.get(cid, {})}
    if unnamed:
        for cid, named in _podman_names(users, homes, unnamed, root).items():
            containers.setdefault(cid, {}).update(named)
    wanted_set = set(wanted)
    for entry in _listing(os.path.join(root, "var/log/containers")):
        # <pod>_<namespace>_<container>-<id>.log (kubelet's links to the pods' logs)
        if not entry.endswith(".log") or len(entry) < 70 or entry[-69] != "-":
            continue
        cid = entry[-68:-4]
        if cid not in wanted_set or None not in users.get(cid, {None}):
            continue  # (the kubelet's containers are the machine's)
        parts = entry[:-69].split("_")
        if len(parts) != 3:
            continue
        pod, namespace, container = parts
        found = containers.setdefault(cid, {})
        found.update({"pod": pod[:MAX_NAME], "pod_namespace": namespace[:MAX_NAME],
                      "container": container[:MAX_NAME]})
    pods = {}
    uids = set(pod_uids(processes)[:MAX_CONTAINERS_NAMED])
    for entry in _listing(os.path.join(root, "var/log/pods")) if uids else ():
        # <namespace>_<pod>_<uid>: names are DNS labels and subdomains, which hold no "_"
        parts = entry.split("_")
        if len(parts) == 3 and parts[2] in uids and parts[0] and parts[1]:
            pods[parts[2]] = {"name": parts[1][:MAX_NAME], "namespace": parts[0][:MAX_NAME]}
    runtime = {}
    if containers:
        runtime["containers"] = containers
    if pods:
        runtime["pods"] = pods
    return runtime or None


def read_context(base):
    """The LSM context (/proc/PID/attr/current), or None when the machine has no LSM.

    EINVAL (no LSM provides it), ENOENT and EOPNOTSUPP all mean "no context"; the original
    capture.py died on EINVAL.
    """
    try:
        raw = _read_bytes(base + "/attr/current")
    except OSError:
        return None
    raw = raw.rstrip(b"\n\0")
    if not raw:
        return None
    return decode_text(raw)[0][:MAX_CONTEXT]


def list_pids(proc_root):
    """The numeric entries of the proc root (thread group leaders)."""
    pids = []
    for name in os.listdir(proc_root):
        try:
            pids.append(_decimal(name))
        except ValueError:
            continue  # self, net, sys, ...
    pids.sort()
    return pids


# ---------------------------------------------------------------------------------------------
# Netlink sock_diag (the payload's own network namespace only)
# ---------------------------------------------------------------------------------------------

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 0x2
NLMSG_DONE = 0x3

_NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48).
_INET_DIAG_REQ = struct.Struct("=BBBBI48x")
# inet_diag_req, the request before SOCK_DIAG_BY_FAMILY: family, src_len, dst_len, ext, a zeroed
# inet_diag_sockid (48), states, dbs. A dump of it lists both families (TCP and DCCP only).
_INET_DIAG_REQ_COMPAT = struct.Struct("=BBBB48xII")
TCPDIAG_GETSOCK = 18
# One reply message: nlmsghdr (length, type, flags, seq, pid) followed by inet_diag_msg
# (family, state, timer, retrans, sockid{sport, dport, src[16], dst[16], if, cookie[2]},
# expires, rqueue, wqueue, uid, inode). Ports are big-endian: swapped below.
_INET_DIAG_REPLY = struct.Struct("=IH10xBB2xHH16s16s24xII")
_RECV_SIZE = 1 << 16

# tcp_info through sock_diag: the INET_DIAG_INFO attribute, asked for with its bit in idiag_ext.
# /proc/net/tcp has no traffic counters; this struct is what `ss -tin` prints. UDP sockets get no
# INET_DIAG_INFO at all (udp_diag fills only the queue sizes), so only TCP has counters.
INET_DIAG_INFO = 2
_INET_DIAG_MSG_END = 16 + 72  # nlmsghdr + inet_diag_msg: the attributes follow
TCP_INFO_COLUMNS = ("bytes_acked", "bytes_received", "rtt", "rttvar", "total_retrans", "ca_state")
TCP_INFO_VERSION = 1
# struct tcp_info (linux/tcp.h) grows at its end; the fields kept and the kernel that has them:
# tcpi_ca_state at 1, tcpi_rtt and tcpi_rttvar (microseconds) at 68 and 72, tcpi_total_retrans
# at 100 (all 2.6.x: 104 bytes), tcpi_bytes_acked and tcpi_bytes_received at 120 and 128
# (Linux 4.1+: 136 bytes and more). The attribute's length says which fields it holds.
_TCP_INFO_FIELDS = "xB66xII24xI16xQQ"
_TCP_INFO_BYTES = struct.Struct("=" + _TCP_INFO_FIELDS)  # 136 bytes
_TCP_INFO_BASE = struct.Struct("=xB66xII24xI")  # 104 bytes
_NLATTR_HEADER = struct.Struct("=HH")
_INFO_ATTRIBUTE = struct.Struct("=HH" + _TCP_INFO_FIELDS)  # the attribute's header, then the fields


def _find_attribute(data, start, end, wanted):
    """(payload start, payload end) of the first netlink attribute of type `wanted` in
    data[start:end], or None."""
    unpack = _NLATTR_HEADER.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            return None
        if kind & 0x3FFF == wanted:
            return start + 4, start + length
        start += (length + 3) & ~3
    return None


def tcp_info_counters(data, start, end):
    """(bytes_acked, bytes_received, rtt, rttvar, total_retrans, ca_state) from a tcp_info
    struct in data[start:end]; the byte counters are None before Linux 4.1 (a shorter struct),
    and the whole is None for a struct too short to hold the others."""
    size = end - start
    if size >= _TCP_INFO_BYTES.size:
        ca_state, rtt, rttvar, retrans, sent, received = _TCP_INFO_BYTES.unpack_from(data, start)
        return sent, received, rtt, rttvar, retrans, ca_state
    if size >= _TCP_INFO_BASE.size:
        ca_state, rtt, rttvar, retrans = _TCP_INFO_BASE.unpack_from(data, start)
        return None, None, rtt, rttvar, retrans, ca_state
    return None


def netlink_inet_sockets(family, protocol, proto, inodeless=None, counters=None, unkeyed_by=None):
    """Dump the inet sockets of one family and protocol with NETLINK_SOCK_DIAG.

    Returns the same (records, unkeyed) as parse_inet_table on the matching /proc/net file,
    several times faster. Raises OSError when the kernel lacks the diag module for the
    protocol (the caller then reads the /proc/net text instead). With `inodeless` (a list),
    the rows of inode 0 (TIME_WAIT) are also appended to it as records of inode 0: a window
    keeps their tuples as evidence of connections that just closed. With `counters` (a dict,
    TCP only), the kernel's tcp_info of every socket that is not listening is stored there as
    inode -> tcp_info_counters(...).

    With family AF_UNSPEC (TCP only; netlink_tcp_sockets), the IPv4 and IPv6 sockets come from
    one dump: the older TCPDIAG_GETSOCK request, which `ss` sends for the same reason (the kernel
    walks every TCP socket of the machine once per dump). `proto` is then unused: each record
    is "tcp" or "tcp6" by its own family, and the rows of inode 0 are counted in
    `unkeyed_by[proto]` (a dict of dicts) instead of the returned `unkeyed`.
    """
    little_endian = sys.byteorder == "little"
    records = []
    unkeyed = {}
    both = family == socket.AF_UNSPEC
    if both:
        # per family: the proto name, the address length, the counts of inode 0, the names seen
        # (b"\0" * 16 is 0.0.0.0 in one family and :: in the other)
        protos = {socket.AF_INET: ("tcp", 4, unkeyed_by.setdefault("tcp", {}), {}),
                  socket.AF_INET6: ("tcp6", 16, unkeyed_by.setdefault("tcp6", {}), {})}
        current = socket.AF_INET
        proto, length4, unkeyed, names = protos[current]
        family = current
    else:
        length4 = 4 if family == socket.AF_INET else 16
        current = family
    states = STATES
    if not both:
        names = {}
    ntop = socket.inet_ntop
    unpack = _INET_DIAG_REPLY.unpack_from
    append = records.append
    ext = 0
    if counters is not None and protocol == socket.IPPROTO_TCP:
        ext = 1 << (INET_DIAG_INFO - 1)
    else:
        counters = None
    info_at = _INET_DIAG_MSG_END  # where the last message had its tcp_info: the kernel's order repeats
    info_unpack = _INFO_ATTRIBUTE.unpack_from
    info_size = _INFO_ATTRIBUTE.size
    info_type = INET_DIAG_INFO
    with_counters = counters is not None
    if both:
        # inet_diag_req: family (ignored by a dump), src_len, dst_len, ext, sockid, states, dbs
        request = _INET_DIAG_REQ_COMPAT.pack(socket.AF_INET, 0, 0, ext, 0xFFFFFFFF, 0)
        reply_kind = TCPDIAG_GETSOCK
    else:
        request = _INET_DIAG_REQ.pack(family, protocol, ext, 0, 0xFFFFFFFF)
        reply_kind = SOCK_DIAG_BY_FAMILY
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request), reply_kind,
                            NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    try:
        sock.settimeout(10.0)
        sock.sendto(header + request, (0, 0))
        # Receive at most _RECV_SIZE bytes into a larger buffer, so that unpacking a full
        # reply struct at any message offset stays inside the buffer.
        buffer = bytearray(_RECV_SIZE + _INET_DIAG_REPLY.size)
        done = False
        while not done:
            size = sock.recv_into(buffer, _RECV_SIZE)
            if size == 0:
                break
            offset = 0
            while offset + 16 <= size:
                (length, kind, message_family, state_number, sport, dport, src, dst,
                 uid, inode) = unpack(buffer, offset)
                if kind == reply_kind:
                    if message_family != current and both:
                        if message_family not in protos:
                            offset += (length + 3) & ~3
                            continue
                        current = family = message_family
                        proto, length4, unkeyed, names = protos[current]
                    state = states.get(state_number) or "UNKNOWN_%d" % state_number
                    if inode == 0:
                        unkeyed[state] = unkeyed.get(state, 0) + 1
                        if inodeless is not None:
                            if little_endian:
                                sport = ((sport & 0xFF) << 8) | (sport >> 8)
                                dport = ((dport & 0xFF) << 8) | (dport >> 8)
                            inodeless.append((proto, 0, ntop(family, src[:length4]), sport,
                                              ntop(family, dst[:length4]), dport, state, uid, None))
                    else:
                        local = names.get(src)
                        if local is None:
                            local = names[src] = ntop(family, src[:length4])
                        remote = names.get(dst)
                        if remote is None:
                            remote = names[dst] = ntop(family, dst[:length4])
                        if little_endian:
                            sport = ((sport & 0xFF) << 8) | (sport >> 8)
                            dport = ((dport & 0xFF) << 8) | (dport >> 8)
                        append((proto, inode, local, sport, remote, dport, state, uid, None))
                        if with_counters and state_number != 10:  # TCP_LISTEN: a listener moves nothing
                            # the common case in one unpack: a full tcp_info where the last one was
                            end = offset + length
                            at = offset + info_at
                            found = None
                            if at + info_size <= end <= size:
                                (attribute_length, attribute_type, ca_state, rtt, rttvar, retrans,
                                 acked, received) = info_unpack(buffer, at)
                                if attribute_type == info_type and info_size <= attribute_length <= end - at:
                                    found = (acked, received, rtt, rttvar, retrans, ca_state)
                            if found is None and end <= size:  # elsewhere, or a shorter struct (an older kernel)
                                span = _find_attribute(buffer, offset + _INET_DIAG_MSG_END, end, INET_DIAG_INFO)
                                if span is not None:
                                    info_at = span[0] - 4 - offset
                                    found = tcp_info_counters(buffer, span[0], span[1])
                            if found is not None:
                                counters[inode] = found
                elif kind == NLMSG_DONE:
                    done = True
                    break
                elif kind == NLMSG_ERROR:
                    code = struct.unpack_from("=i", buffer, offset + 16)[0]
                    raise OSError(-code, os.strerror(-code) if code else "netlink error")
                if length < 16:
                    raise OSError(errno.EPROTO, "bad netlink message length")
                offset += (length + 3) & ~3
    finally:
        sock.close()
    return records, unkeyed


def netlink_tcp_sockets(counters=None):
    """The tcp and tcp6 tables of this namespace from one sock_diag dump (one walk of the
    kernel's TCP sockets instead of two): {"tcp": (records, unkeyed), "tcp6": (...)}, each as
    netlink_inet_sockets gives it for its family. Raises OSError like it."""
    unkeyed_by = {}
    records, _ = netlink_inet_sockets(socket.AF_UNSPEC, socket.IPPROTO_TCP, None, counters=counters,
                                      unkeyed_by=unkeyed_by)
    tcp = [record for record in records if record[0] == "tcp"]
    tcp6 = [record for record in records if record[0] == "tcp6"] if len(tcp) < len(records) else []
    del records[:]
    return {"tcp": (tcp, unkeyed_by["tcp"]), "tcp6": (tcp6, unkeyed_by["tcp6"])}


# Tables read through netlink in the payload's own namespace: /proc file -> (family, protocol).
NETLINK_TABLES = {
    "tcp": (socket.AF_INET, socket.IPPROTO_TCP),
    "tcp6": (socket.AF_INET6, socket.IPPROTO_TCP),
    "udp": (socket.AF_INET, socket.IPPROTO_UDP),
    "udp6": (socket.AF_INET6, socket.IPPROTO_UDP),
}


# ---------------------------------------------------------------------------------------------
# Netlink sock_diag in the other network namespaces: short-lived children enter them
# ---------------------------------------------------------------------------------------------
#
# A netlink socket dumps the namespace of the task that opens it, so the payload forks a few
# children (one per CPU, at most NAMESPACE_PARALLEL) that share the other namespaces: each enters
# its namespaces one after the other (setns(2) on an fd of /proc/PID/ns/net, through ctypes),
# runs the same dumps as above in each, sends the records to the parent over a pipe (marshal)
# and ends with os._exit. They are forked before the parent walks the processes' fds (the
# parent is small then, and the kernel's walks of the socket tables run beside its own work).
# The parent reads with a deadline per namespace, reaps every child, and kills one that
# overstays; a namespace without a reply is read from /proc/PID/net text (the same records).
# setns needs CAP_SYS_ADMIN (root); seccomp, a missing libc symbol or an old kernel end it too.

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NAMESPACE_TIMEOUT = 10.0  # seconds one child may take for one namespace's dumps
MAX_NAMESPACE_REPLY = 64 << 20  # bytes of marshalled records from one child; more: read the text
NAMESPACE_PARALLEL = 4  # children at once, at most (and no more than the CPUs)
_LIBC = []


def _libc():
    """The C library through ctypes (with setns), or None where ctypes or setns is missing."""
    if not _LIBC:
        libc = None
        try:
            import ctypes
            library = ctypes.CDLL(None, use_errno=True)
            libc = (library.setns, library.prctl, ctypes.get_errno)  # setns: glibc 2.14+, musl
        except (ImportError, OSError, AttributeError):
            libc = None
        _LIBC.append(libc)
    return _LIBC[0]


class NamespaceEntry(object):
    """Whether the other namespaces can be entered, learnt from the first attempts: a failure
    that would repeat in every namespace (no privilege, no setns, a child that hangs) turns
    the way off for the rest of the capture, with one note saying why."""

    def __init__(self, enabled=True, timeout=NAMESPACE_TIMEOUT):
        self.reason = None if enabled else "disabled"
        self.timeout = timeout
        self.entered = 0
        self.fallbacks = 0

    def usable(self):
        return self.reason is None

    def give_up(self, reason, coverage):
        self.reason = reason
        coverage.note("other network namespaces read from /proc/PID/net text: %s" % reason)


def netlink_tables(tables, counters=None):
    """The netlink dumps of `tables` ((filename, proto) pairs of NETLINK_TABLES) in the current
    namespace: {filename: (records, unkeyed), or None when that dump failed (no diag module:
    the caller reads the text)}. tcp and tcp6 together come from one dump (netlink_tcp_sockets).
    A ("conntrack", None) pair asks for the conntrack table too: ("ok", entries, truncated), or
    ("failed", errno, message)."""
    out = {}
    wanted = set(filename for filename, _ in tables)
    if "conntrack" in wanted:  # (a kernel without the table's text, see conntrack_in_children)
        try:
            entries, truncated = netlink_conntrack()
            out["conntrack"] = ("ok", entries, truncated)
        except OSError as error:
            out["conntrack"] = ("failed", error.errno, str(error.strerror or error))
        tables = [table for table in tables if table[0] != "conntrack"]
    if "tcp" in wanted and "tcp6" in wanted:
        try:
            out.update(netlink_tcp_sockets(counters))
        except OSError:
            pass  # a kernel without the older request: one dump per family below
    for filename, proto in tables:
        if filename in out:
            continue
        family, protocol = NETLINK_TABLES[filename]
        try:
            out[filename] = netlink_inet_sockets(family, protocol, proto, counters=counters)
        except OSError:
            out[filename] = None
    return out


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# A child's reply for each namespace in turn: this header (the namespace's index in the child's
# list, the length of what follows), then marshal.dumps of ("ok", dumped, counters) or ("setns", errno).
_FRAME = struct.Struct("=II")


def _enter(setns, get_errno, path, key):
    """Enter the network namespace of the file `path` if it is still namespace `key` (st_dev,
    st_ino); None when entered, else the reply that says why not."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        return ("gone", error.errno or 0)
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != key:
            return ("gone", 0)  # the process left, and its pid went to another one
        if setns(fd, CLONE_NEWNET) != 0:
            return ("setns", get_errno())
        return None
    finally:
        os.close(fd)


def _namespace_child(jobs, write_fd, with_counters, timeout, parent):
    """The child's whole life: enter each namespace of `jobs` ([(ns/net path, key, tables)]) in
    turn, dump its tables, write its reply; then _exit."""
    status = 1
    try:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        setns, prctl, get_errno = _libc()
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # the parent dies: so does the child
        if os.getppid() != parent:
            os._exit(1)  # the parent died before prctl
        for index, (path, key, tables) in enumerate(jobs):
            signal.alarm(int(timeout) + 2)  # ends the child even if the parent is stopped
            reply = _enter(setns, get_errno, path, key)
            if reply is None:
                counters = {} if with_counters else None
                reply = ("ok", netlink_tables(tables, counters), counters)
            data = marshal.dumps(reply)
            refused = reply[0] == "setns"
            reply = None
            _write_all(write_fd, _FRAME.pack(index, len(data)) + data)
            data = None
            if refused:
                break  # what refused one namespace refuses the others
        status = 0
    finally:
        os._exit(status)


def _failure(errno_value, message, systemic):
    error = OSError(errno_value, message)
    error.systemic = systemic
    return error


def _reply(data):
    """(dumped, counters) from one namespace's reply; raises OSError (with `.systemic`)."""
    try:
        reply = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        reply = None
    if reply and reply[0] == "ok":
        return reply[1], reply[2]
    if reply and reply[0] == "setns":
        raise _failure(reply[1], "setns: %s" % os.strerror(reply[1] or 0), True)
    if reply and reply[0] == "gone":
        raise _failure(reply[1] or errno.ESRCH, "the namespace's process is gone", False)
    raise _failure(errno.EIO, "a child sent a reply it could not have written", True)


class NamespaceChild(object):
    """One child dumping the namespaces of `jobs` ([(netns, ns/net path, key, tables)]) one after the
    other: forked by start(), fed by the parent as its pipe is readable (each namespace has
    `timeout` seconds from the end of the one before), reaped by finish() (always)."""

    def __init__(self, jobs, with_counters=True, timeout=NAMESPACE_TIMEOUT):
        self.jobs = jobs
        self.with_counters = with_counters
        self.timeout = timeout
        self.pid = None
        self.fd = None
        self.deadline = None
        self.buffer = bytearray()
        self.replies = []  # (key, reply bytes) read and not yet decoded
        self.ended = False  # the child closed its end: it is exiting
        self.failure = None

    def start(self):
        if _libc() is None:
            raise _failure(errno.ENOSYS, "no setns through ctypes in this Python", True)
        if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
            # Inherited from whoever started the payload: children would be reaped by the
            # kernel, their pids free for reuse before the payload could wait for (or kill) them.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # the child: never returns
            try:
                os.close(read_fd)
            finally:
                _namespace_child([job[1:] for job in self.jobs], write_fd, self.with_counters, self.timeout,
                                 os.getppid())
        os.close(write_fd)
        self.pid, self.fd = pid, read_fd
        self.deadline = time.monotonic() + self.timeout

    def fileno(self):
        return self.fd

    def feed(self):
        """Read what the child wrote; True once it is done (its end closed, or a failure)."""
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.ended = True
            return True
        buffer = self.buffer
        buffer += chunk
        while len(buffer) >= _FRAME.size:
            index, length = _FRAME.unpack_from(buffer)
            if length > MAX_NAMESPACE_REPLY or index >= len(self.jobs):
                self.failure = _failure(errno.EFBIG, "a reply of more than %d bytes" % MAX_NAMESPACE_REPLY, False)
                return True
            if len(buffer) < _FRAME.size + length:
                break
            self.replies.append((self.jobs[index][0], bytes(buffer[_FRAME.size:_FRAME.size + length])))
            del buffer[:_FRAME.size + length]
            self.deadline = time.monotonic() + self.timeout  # the next namespace's turn
        return False

    def expired(self, now):
        if now < self.deadline:
            return False
        self.failure = _failure(errno.ETIMEDOUT, "a child took more than %g s" % self.timeout, True)
        return True

    def finish(self):
        """Close the pipe and reap the child (killed unless it ended by itself). Returns the
        failure that ended it early, or None."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is not None:
            pid, self.pid = self.pid, None
            status = _reap(pid, self.deadline if self.ended and self.failure is None else 0)
            if self.failure is None and status is not None and os.WIFSIGNALED(status):
                self.failure = _failure(errno.EINTR, "a child was killed by signal %d" % os.WTERMSIG(status),
                                        True)
        return self.failure


def _reap(pid, deadline):
    """Wait for the child until `deadline` (monotonic), then kill it: it is reaped either way.
    Returns its wait status, or None when it had to be killed."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            break
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)
    return None


def _pump(running, timeout):
    """Wait up to `timeout` seconds for the running children, feeding those that wrote;
    returns those that are done."""
    import select
    now = time.monotonic()
    done = [child for child in running if child.expired(now)]
    if done:
        return done
    wait = max(0.0, min([timeout] + [child.deadline - now for child in running]))
    poller = select.poll()  # not select(): no limit on fd numbers
    by_fd = {}
    for child in running:
        poller.register(child.fd, select.POLLIN)
        by_fd[child.fd] = child
    for fd, _events in poller.poll(int(wait * 1000 + 0.999)):
        child = by_fd[fd]
        if child.feed():
            done.append(child)
    return done


def namespace_parallelism():
    """How many children dump namespaces at once: the CPUs this process may use, at most
    NAMESPACE_PARALLEL (each dump is mostly the kernel walking the machine's TCP sockets)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(NAMESPACE_PARALLEL, cpus))


class NamespaceDumps(object):
    """The children of a capture. add() gives a namespace to dump; the first poll() or take()
    forks `parallel` children (or fewer) that share the namespaces, in the order added, while
    the parent goes on with its work; take() returns a namespace's result once it came,
    feeding the children meanwhile. close() kills and reaps whatever still runs."""

    def __init__(self, entry, coverage, parallel, timeout=NAMESPACE_TIMEOUT):
        self.entry = entry
        self.coverage = coverage
        self.parallel = parallel
        self.timeout = timeout
        self.jobs = []  # (netns, ns/net path, key, tables) not given to a child yet
        self.running = []
        self.results = {}  # key -> (dumped, counters), or None: read the text

    def add(self, netns, path, key, tables):
        """Dump `tables` in namespace `netns` (its inode), entered through the file `path`
        (/proc/PID/ns/net) if it is still `key` (st_dev, st_ino) then."""
        self.jobs.append((netns, path, key, tables))

    def _start(self):
        jobs, self.jobs = self.jobs, []
        if not jobs:
            return
        count = min(self.parallel, len(jobs))
        for number in range(count):
            child = NamespaceChild(jobs[number::count], True, self.timeout)  # turn by turn: the order taken
            if self.entry.usable():
                try:
                    child.start()
                except OSError as error:
                    self._failed(error)
                else:
                    self.running.append(child)
                    continue
            for job in child.jobs:
                self.results[job[0]] = None

    def _failed(self, error):
        self.entry.fallbacks += 1
        if getattr(error, "systemic", True) and self.entry.usable():
            self.entry.give_up(str(error.strerror or error), self.coverage)

    def _collect_replies(self, child):
        for key, data in child.replies:
            try:
                self.results[key] = _reply(data)
                self.entry.entered += 1
            except OSError as error:
                self.results[key] = None
                self._failed(error)
        del child.replies[:]

    def _wait(self, timeout):
        finished = _pump(self.running, timeout)
        for child in self.running:
            self._collect_replies(child)
        for child in finished:
            self.running.remove(child)
            failure = child.finish()
            self._collect_replies(child)
            if failure is not None:
                self._failed(failure)
            for job in child.jobs:
                self.results.setdefault(job[0], None)  # never answered: its text is read

    def poll(self):
        """Start the children, and read what they have written; never waits (the parent calls
        it between processes while it walks their fds)."""
        if self.jobs:
            self._start()
        if self.running:
            self._wait(0)

    def take(self, key):
        """(dumped, counters) of namespace `key`, or None (not added, or it failed: read the text)."""
        if self.jobs:
            self._start()
        while key not in self.results and self.running:
            self._wait(1.0)
        return self.results.pop(key, None)

    def close(self):
        for child in self.running:
            child.finish()
        del self.running[:]
        del self.jobs[:]
        self.results.clear()


# ---------------------------------------------------------------------------------------------
# Netlink ctnetlink: the conntrack table when the kernel has no /proc/net/nf_conntrack
# (built without CONFIG_NF_CONNTRACK_PROCFS); the payload's own network namespace only
# ---------------------------------------------------------------------------------------------

# Constants from the kernel's uapi headers: linux/netlink.h, linux/netfilter/nfnetlink.h and
# linux/netfilter/nfnetlink_conntrack.h.
NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0  # the type of every entry in a dump's reply
IPCTNL_MSG_CT_GET = 1
NFNETLINK_V0 = 0
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_PROTOINFO = 4
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_DCCP = 2
CTA_PROTOINFO_SCTP = 3
CTA_PROTOINFO_STATE = 1  # CTA_PROTOINFO_{TCP,DCCP,SCTP}_STATE, a u8
CTA_COUNTERS_ORIG = 9  # with nf_conntrack_acct: a nest of the direction's counters
CTA_COUNTERS_REPLY = 10
CTA_COUNTERS_PACKETS = 1  # big-endian u64
CTA_COUNTERS_BYTES = 2
CTA_COUNTERS32_PACKETS = 3  # big-endian u32, from kernels before 2.6.27
CTA_COUNTERS32_BYTES = 4

# The names /proc/net/nf_conntrack gives a protocol whose tracker the kernel has
# (l4proto_name() in net/netfilter/nf_conntrack_standalone.c); it calls every other one
# "unknown". A tracker writes attributes of its own into the tuple (ports, ICMP id), so a
# tuple that carries only CTA_PROTO_NUM is "unknown" on both paths.
CONNTRACK_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6",
                       132: "sctp", 136: "udplite"}
# The protocols the text shows with sport=/dport= (GRE's keys come as srckey=/dstkey=).
CONNTRACK_PORTED = frozenset((6, 17, 33, 132, 136))
# State names as the trackers print them (tcp_conntrack_names, sctp_conntrack_names,
# dccp_state_names), indexed by the state numbers of the netlink protocol info.
CONNTRACK_STATES = {
    CTA_PROTOINFO_TCP: ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                        "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"),
    CTA_PROTOINFO_SCTP: ("NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
                         "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT",
                         "HEARTBEAT_ACKED"),
    CTA_PROTOINFO_DCCP: ("NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING",
                         "TIMEWAIT", "IGNORE", "INVALID"),
}

_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big-endian; 0 here)
_NLATTR = struct.Struct("=HH")  # length (header included), type
_PORT = struct.Struct("!H")
_ERROR_CODE = struct.Struct("=i")


def _attributes(data, start, end, wanted=()):
    """{type: (payload start, payload end)} of the netlink attributes in data[start:end].

    The walk stops early once every type in `wanted` was seen. A damaged attribute ends it
    too: what follows cannot be located.
    """
    found = {}
    unpack = _NLATTR.unpack_from
    missing = len(wanted)
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            break
        kind &= NLA_TYPE_MASK
        found[kind] = (start + 4, start + length)
        if missing and kind in wanted:
            missing -= 1
            if not missing:
                break
        start += (length + 3) & ~3
    return found


# Nearly every tuple the kernel writes (ctnetlink_dump_tuples) is laid out exactly so: the
# address nest holding source and destination, then the protocol nest holding the protocol
# number and two ports. Such a tuple is read with one unpack, once the lengths and types of
# all its attributes are the expected ones; any other tuple goes through the general walk.
# Fields: 0 address nest length, 1 its type, 2 source length, 3 source type, 4 source,
# 5-7 the same for the destination, 8 protocol nest length, 9 its type, 10 number length,
# 11 number type, 12 number, 13-15 source port length, type, value, 16-18 destination port.
_LITTLE_ENDIAN = sys.byteorder == "little"
_TUPLE_HEADERS = operator.itemgetter(0, 2, 3, 5, 6, 8, 10, 11, 13, 14, 16, 17)


def _port_tuple_layout(family, size):
    """(payload size, (struct, family, expected headers)) of a port tuple of one family."""
    shape = struct.Struct("=HHHH%dsHH%dsHHHHB3xHHH2xHHH2x" % (size, size))
    v4 = family == socket.AF_INET
    expected = (4 + 2 * (4 + size), 4 + size, CTA_IP_V4_SRC if v4 else CTA_IP_V6_SRC,
                4 + size, CTA_IP_V4_DST if v4 else CTA_IP_V6_DST, 28, 5, CTA_PROTO_NUM,
                6, CTA_PROTO_SRC_PORT, 6, CTA_PROTO_DST_PORT)
    return shape.size, (shape, family, expected)


_PORT_TUPLE_LAYOUTS = dict((_port_tuple_layout(socket.AF_INET, 4),
                            _port_tuple_layout(socket.AF_INET6, 16)))


def _conntrack_tuple(data, span, names):
    """(protocol number, tracked, {"src", "dst", "sport", "dport"}) of a CTA_TUPLE_* attribute,
    or None when an address or the protocol number is missing.

    `tracked` says whether the kernel's tracker for the protocol wrote attributes of its own.
    `names` caches address text by packed address (one string per address, as in the text path).
    """
    layout = _PORT_TUPLE_LAYOUTS.get(span[1] - span[0])
    if layout is not None:
        shape, family, expected = layout
        values = shape.unpack_from(data, span[0])
        if (_TUPLE_HEADERS(values) == expected and values[1] & NLA_TYPE_MASK == CTA_TUPLE_IP
                and values[9] & NLA_TYPE_MASK == CTA_TUPLE_PROTO):
            src = names.get(values[4])
            if src is None:
                src = names[values[4]] = socket.inet_ntop(family, values[4])
            dst = names.get(values[7])
            if dst is None:
                dst = names[values[7]] = socket.inet_ntop(family, values[7])
            sport, dport = values[15], values[18]
            if _LITTLE_ENDIAN:
                sport = ((sport & 0xFF) << 8) | (sport >> 8)
                dport = ((dport & 0xFF) << 8) | (dport >> 8)
            return values[12], True, {"src": src, "dst": dst, "sport": sport, "dport": dport}
    parts = _attributes(data, span[0], span[1])
    ip = parts.get(CTA_TUPLE_IP)
    proto = parts.get(CTA_TUPLE_PROTO)
    if ip is None or proto is None:
        return None
    addresses = _attributes(data, ip[0], ip[1])
    src = addresses.get(CTA_IP_V4_SRC)
    dst = addresses.get(CTA_IP_V4_DST)
    family, size = socket.AF_INET, 4
    if src is None or dst is None:
        src = addresses.get(CTA_IP_V6_SRC)
        dst = addresses.get(CTA_IP_V6_DST)
        family, size = socket.AF_INET6, 16
        if src is None or dst is None:
            return None
    texts = []
    for begin, finish in (src, dst):
        if finish - begin != size:
            return None
        packed = data[begin:finish]
        text = names.get(packed)
        if text is None:
            text = names[packed] = socket.inet_ntop(family, packed)
        texts.append(text)
    fields = _attributes(data, proto[0], proto[1])
    number = fields.get(CTA_PROTO_NUM)
    if number is None or number[1] - number[0] < 1:
        return None
    ports = []
    for kind in (CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT):
        where = fields.get(kind)
        ports.append(_PORT.unpack_from(data, where[0])[0] if where and where[1] - where[0] >= 2
                     else None)
    return (data[number[0]], len(fields) > 1,
            {"src": texts[0], "dst": texts[1], "sport": ports[0], "dport": ports[1]})


def parse_ctnetlink_entry(data, start, end):
    """One conntrack entry from the attributes (data[start:end]) of an IPCTNL_MSG_CT_NEW message.

    The entry has the form parse_nf_conntrack gives the same connection from the /proc text;
    None when either tuple lacks an address or its protocol number (the text path skips such
    a line too).
    """
    return _conntrack_entry(data, start, end, {}, counted=True)


_BOTH_TUPLES = frozenset((CTA_TUPLE_ORIG, CTA_TUPLE_REPLY))
_PROTOINFO = frozenset((CTA_PROTOINFO,))
_STATEFUL = frozenset((6, 33, 132))  # TCP, DCCP and SCTP: their trackers print a state
_BE64 = struct.Struct("!Q")
_BE32 = struct.Struct("!I")
_COUNTER_NESTS = frozenset((CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY))


def _direction_counters(data, span):
    """(packets, bytes) of a CTA_COUNTERS_* nest, or None when either is missing."""
    found = _attributes(data, span[0], span[1])
    values = []
    for wide, narrow in ((CTA_COUNTERS_PACKETS, CTA_COUNTERS32_PACKETS), (CTA_COUNTERS_BYTES, CTA_COUNTERS32_BYTES)):
        where, shape = found.get(wide), _BE64
        if where is None:
            where, shape = found.get(narrow), _BE32
        if where is None or where[1] - where[0] < shape.size:
            return None
        values.append(shape.unpack_from(data, where[0])[0])
    return values


def _conntrack_counters(data, start, end):
    """[original packets, original bytes, reply packets, reply bytes] of an entry that the kernel
    counted (nf_conntrack_acct), else None."""
    top = _attributes(data, start, end, _COUNTER_NESTS)
    spans = (top.get(CTA_COUNTERS_ORIG), top.get(CTA_COUNTERS_REPLY))
    if spans[0] is None or spans[1] is None:
        return None
    original, reply = _direction_counters(data, spans[0]), _direction_counters(data, spans[1])
    return None if original is None or reply is None else original + reply


def _conntrack_entry(data, start, end, names, counted=False):
    """An entry as parse_nf_conntrack gives it; its counters are looked for only when `counted`
    (the namespace counts: walking every message for them would cost the uncounted majority)."""
    # The tuples come first in the kernel's messages; the rest is walked only for a state.
    top = _attributes(data, start, end, _BOTH_TUPLES)
    spans = (top.get(CTA_TUPLE_ORIG), top.get(CTA_TUPLE_REPLY))
    if spans[0] is None or spans[1] is None:
        return None
    original = _conntrack_tuple(data, spans[0], names)
    reply = _conntrack_tuple(data, spans[1], names)
    if original is None or reply is None:
        return None
    number, tracked, first = original
    second = reply[2]
    name = CONNTRACK_PROTOCOLS.get(number) if tracked else None
    if name is None:
        name = "unknown"
    if name == "unknown" or number not in CONNTRACK_PORTED:
        first["sport"] = first["dport"] = second["sport"] = second["dport"] = None
    state = None
    info = None
    if number in _STATEFUL and name != "unknown":
        info = _attributes(data, start, end, _PROTOINFO).get(CTA_PROTOINFO)
    if info is not None:
        for kind, nested in _attributes(data, info[0], info[1]).items():
            states = CONNTRACK_STATES.get(kind)
            if states is None:
                continue
            where = _attributes(data, nested[0], nested[1]).get(CTA_PROTOINFO_STATE)
            if where is not None and where[1] > where[0] and data[where[0]] < len(states):
                state = states[data[where[0]]]
    entry = {"proto": name, "state": state, "original": first, "reply": second}
    if counted:
        counters = _conntrack_counters(data, start, end)
        if counters is not None:
            entry["counters"] = counters
    return entry


def netlink_conntrack(limit=MAX_CONNTRACK_ENTRIES, counted=True):
    """Dump the conntrack table of the payload's own network namespace over ctnetlink.

    Returns (entries, truncated) exactly as parse_nf_conntrack gives them from the
    /proc/net/nf_conntrack text of the same moment (IPv4 and IPv6). Raises OSError on any
    failure (EPERM without CAP_NET_ADMIN, EPROTONOSUPPORT without nfnetlink, a timeout, a
    reply cut short); the caller then reports the table as unknown. The caller also makes sure
    that no kernel module gets loaded on the way (see conntrack_netlink_obstacle). `counted`:
    look for the entries' counters (see _conntrack_entry).
    """
    entries = []
    names = {}
    request = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, 0)
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(request),
                            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                            NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    entry_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    body = _NLMSGHDR.size + _NFGENMSG.size
    unpack_header = _NLMSGHDR.unpack_from
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.settimeout(10.0)
        sock.sendto(header + request, (0, 0))
        buffer = bytearray(_RECV_SIZE)
        while True:
            # MSG_TRUNC: the size of the whole datagram, so that a cut one is seen as such.
            size = sock.recv_into(buffer, _RECV_SIZE, socket.MSG_TRUNC)
            if size > _RECV_SIZE:
                raise OSError(errno.EMSGSIZE, "netlink reply larger than %d bytes" % _RECV_SIZE)
            if size == 0:
                raise OSError(errno.EPROTO, "netlink dump ended before its end message")
            data = bytes(buffer[:size])
            offset = 0
            while offset < size:
                if offset + _NLMSGHDR.size > size:
                    raise OSError(errno.EPROTO, "netlink message cut short")
                length, kind = unpack_header(data, offset)[:2]
                if length < _NLMSGHDR.size or offset + length > size:
                    raise OSError(errno.EPROTO, "netlink message cut short")
                if kind == entry_type:
                    entry = _conntrack_entry(data, offset + body, offset + length, names, counted)
                    if entry is not None:
                        if len(entries) >= limit:
                            return entries, True
                        entries.append(entry)
                elif kind == NLMSG_DONE or kind == NLMSG_ERROR:
                    code = 0
                    if length >= _NLMSGHDR.size + 4:
                        code = _ERROR_CODE.unpack_from(data, offset + _NLMSGHDR.size)[0]
                    if code < 0:
                        raise OSError(-code, os.strerror(-code))
                    if kind == NLMSG_DONE:
                        return entries, False
                offset += (length + 3) & ~3
    finally:
        sock.close()


def conntrack_netlink_obstacle(modules_text, builtin_text):
    """Why asking for the conntrack table over netlink could make the kernel load a module.

    The kernel loads nfnetlink when a NETLINK_NETFILTER socket is opened, and
    nf_conntrack_netlink when a ctnetlink request arrives, if they are missing; the payload
    must not change the machine so. `modules_text` is /proc/modules (None when absent: a
    kernel without loadable modules), `builtin_text` the kernel's modules.builtin (None when
    unreadable). Returns None when nothing can be loaded, else the reason as a phrase.
    """
    if modules_text is None:
        return None
    not_loaded = "the nf_conntrack_netlink module is not loaded (the payload loads no module)"
    loaded = set(line.split(" ", 1)[0] for line in _lines(modules_text))
    if "nf_conntrack_netlink" in loaded:
        return None
    if "nf_conntrack" in loaded:
        return not_loaded  # a module itself, so nf_conntrack_netlink (needing it) can only be one
    # nf_conntrack is built in: nf_conntrack_netlink may be too.
    if builtin_text is None:
        return "cannot tell whether nf_conntrack_netlink is built in (no modules.builtin)"
    if any(line.strip().endswith("/nf_conntrack_netlink.ko") for line in _lines(builtin_text)):
        return None
    return not_loaded


# ---------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------

def _netns_key(path):
    info = os.stat(path)
    return info.st_dev, info.st_ino


# Where bind mounts give network namespaces a name: `ip netns add NAME`, and Docker's sandboxes.
NAMESPACE_NAME_DIRS = ("netns", "docker/netns")
MAX_NAMESPACE_NAMES = 4096


def namespace_names(run_root="/run"):
    """netns inode -> the name a bind mount under `run_root` gives it (read-only: listed, stat'ed).

    Only entries on the namespace filesystem count (the device of /proc/self/ns/net): a regular
    file left behind under the same name is not a namespace."""
    try:
        nsfs = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return {}
    names = {}
    for sub in NAMESPACE_NAME_DIRS:
        directory = os.path.join(run_root, sub).encode()
        try:
            entries = sorted(os.listdir(directory))[:MAX_NAMESPACE_NAMES]
        except OSError:
            continue
        for entry in entries:
            try:
                info = os.stat(os.path.join(directory, entry))
            except OSError:
                continue
            if info.st_dev == nsfs and info.st_ino not in names:
                names[info.st_ino] = decode_text(entry[:MAX_NAME])[0]
    return names


def read_namespace(net_dir, coverage, use_netlink=False, proc_root="/proc", dumps=None):
    """Read every table of one network namespace from `net_dir` (a /proc/PID/net directory).

    Returns {"addresses", "sockets" (records), "unkeyed", "conntrack"}. Raises OSError when
    the directory cannot be read at all (the caller tries another process of the namespace).
    `use_netlink` says that the namespace is the payload's own, in the live `proc_root`: its
    TCP and UDP are dumped here through netlink. For another namespace, `dumps` is what a child
    that entered it dumped (NamespaceDumps.take: (netlink_tables(...), tcp_info counters)).
    Whatever netlink did not give is read from the text, with the same records.
    """
    sockets = []
    unkeyed = {}
    os.listdir(net_dir)  # fails early when the process vanished or access is denied

    # Building a namespace's tcp/tcp6 text walks every TCP socket of the machine; the
    # namespace's own counters say when there is nothing to find (a PrivateNetwork service).
    stats = read_sockstat(net_dir)
    # Traffic counters (tcp_info) come only with the netlink dump: the text has none.
    tcp_info = None
    dumped = {}
    if use_netlink:
        tcp_info = {}
        dumped = netlink_tables(netlink_wanted(stats), tcp_info)
    elif dumps is not None:
        dumped, tcp_info = dumps
    for filename, proto in INET_TABLES:
        if tcp_table_is_empty(stats, proto):
            continue
        records = None
        counts = None
        if dumped.get(filename) is not None:
            records, counts = dumped[filename]
        if records is None:  # not dumped, or no diag module for this protocol: read the text
            if proto in ("tcp", "tcp6"):
                tcp_info = None
            try:
                with _open_text(os.path.join(net_dir, filename)) as handle:
                    records, counts = parse_inet_table(handle, proto)
            except OSError as error:
                if error.errno not in _GONE:
                    coverage.note("cannot read %s: %s" % (filename, os.strerror(error.errno or 0)))
                continue
        sockets.extend(records)
        if counts:
            unkeyed[proto] = counts
        if tcp_info is None and proto in ("tcp", "tcp6") and any(r[6] != "LISTEN" for r in records):
            coverage.note(TCP_INFO_MISSING)

    # Packet sockets bound to one interface name it by index: map indexes to names from
    # if_inet6 first, and from igmp/dev_mcast/igmp6 only when some index is still unknown.
    if6 = []
    try:
        with _open_text(os.path.join(net_dir, "if_inet6")) as handle:
            if6 = parse_if_inet6(handle)
    except OSError:
        pass
    try:
        with _open_text(os.path.join(net_dir, "packet")) as handle:
            packet_text = handle.read()
        interfaces = dict((entry[0], entry[1]) for entry in if6)
        records, counts = parse_packet(packet_text, interfaces)
        if any(record[8]["interface"].startswith("if") and
               record[8]["interface"][2:].isdigit() for record in records):
            texts = []
            for name in ("igmp", "dev_mcast", "igmp6"):
                try:
                    with _open_text(os.path.join(net_dir, name)) as handle:
                        texts.append(handle.read())
                except OSError:
                    pass
            for index, name in parse_interface_indexes(*texts).items():
                interfaces.setdefault(index, name)
            records, counts = parse_packet(packet_text, interfaces)
        sockets.extend(records)
        if counts:
            unkeyed["packet"] = counts
    except OSError:
        pass

    # SCTP: present only when the sctp module is loaded.
    try:
        with _open_text(os.path.join(net_dir, "sctp", "eps")) as handle:
            endpoints = parse_sctp_eps(handle)
        try:
            with _open_text(os.path.join(net_dir, "sctp", "assocs")) as handle:
                associations = parse_sctp_assocs(handle)
        except OSError:
            associations = []
        sockets.extend(merge_sctp(endpoints, associations))
    except OSError:
        pass

    addresses = []
    try:
        with _open_text(os.path.join(net_dir, "fib_trie")) as handle:
            fib_text = handle.read()
        try:
            with _open_text(os.path.join(net_dir, "route")) as handle:
                route_text = handle.read()
        except OSError:
            route_text = ""
        for interface, address, prefix in ipv4_addresses(fib_text, route_text):
            addresses.append({"interface": interface, "family": 4, "address": address,
                              "prefix": prefix})
    except OSError:
        coverage.note("no fib_trie: IPv4 addresses unknown")
    for _index, interface, address, prefix in if6:
        addresses.append({"interface": interface, "family": 6, "address": address,
                          "prefix": prefix})
    addresses.sort(key=lambda a: (a["family"], a["interface"], a["address"]))

    conntrack = None
    absent = True
    # Like the socket tables, each namespace's conntrack text walks the machine's whole table
    # (every bucket); the namespace's own count says when there is nothing to find.
    entries = conntrack_count(net_dir)
    if entries == 0:  # (its statistics exist: the kernel tracks, and the table is empty; not walked)
        conntrack = []
        absent = False
    for name in CONNTRACK_FILES if entries != 0 else ():
        try:
            with _open_text(os.path.join(net_dir, name)) as handle:
                conntrack, truncated = parse_nf_conntrack(handle)
            if truncated:
                coverage.note("conntrack table cut at %d entries" % MAX_CONNTRACK_ENTRIES)
            absent = False
            break
        except OSError as error:
            absent = absent and error.errno == errno.ENOENT
    if absent and "conntrack" in dumped:  # dumped over ctnetlink by the child in the namespace
        conntrack = _dumped_conntrack(dumped["conntrack"], coverage)
    elif absent:
        conntrack = conntrack_without_procfs(proc_root, coverage, use_netlink)

    return {"addresses": addresses, "sockets": sockets, "unkeyed": unkeyed, "conntrack": conntrack,
            "tcp_info": tcp_info}


TCP_INFO_MISSING = ("traffic counters (tcp_info) unknown for TCP connections read from /proc/PID/net "
                    "text: only a netlink dump has them")


class TcpInfoRows(dict):
    """A namespace's counters (inode -> tuple), turned into JSON only when written (write_json):
    a dict of 50,000 lists keyed by strings would cost megabytes more at the peak."""


def tcp_info_document(counters, compact):
    """A namespace's `tcp_info` section: {"version", "columns", "sockets": {inode: row}}
    (docs/snapshot.md); with `compact`, the rows are left as they are, for write_json."""
    rows = (TcpInfoRows(counters) if compact
            else dict((str(inode), list(counters[inode])) for inode in sorted(counters)))
    return {"version": TCP_INFO_VERSION, "columns": list(TCP_INFO_COLUMNS), "sockets": rows}


def _read_small_text(path, limit=1 << 20):
    """The text of a small kernel file, or None when it does not exist (other errors raise)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "backslashreplace")
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None
        raise


# The conntrack table's text in /proc/PID/net (CONFIG_NF_CONNTRACK_PROCFS, which newer kernels
# leave out: the table is then dumped over ctnetlink, see conntrack_without_procfs).
CONNTRACK_FILES = ("nf_conntrack", "ip_conntrack")


def _conntrack_netlink_state(proc_root, coverage=None):
    """(tracking, obstacle): whether the kernel tracks connections at all (an nf_conntrack_count
    sysctl, or the nf_conntrack module), and why dumping the table over ctnetlink could load a
    kernel module (None: it cannot). A /proc/modules that cannot be read is noted in `coverage`."""
    try:
        modules = _read_small_text(os.path.join(proc_root, "modules"))
    except OSError as error:
        modules = ""  # present but unreadable: a module list we cannot see
        if coverage is not None:
            coverage.note("cannot read /proc/modules: %s" % os.strerror(error.errno or 0))
    tracking = os.path.exists(os.path.join(proc_root, "sys/net/netfilter/nf_conntrack_count"))
    if not tracking and modules:
        tracking = any(line.split(" ", 1)[0] == "nf_conntrack" for line in modules.split("\n"))
    if not tracking:
        return False, None
    builtin = None
    release = _read_text_or_none(os.path.join(proc_root, "sys/kernel/osrelease"))
    if modules is not None and release:
        for base in ("/lib/modules", "/usr/lib/modules"):
            try:
                builtin = _read_small_text(os.path.join(base, release, "modules.builtin"), 1 << 22)
            except OSError:
                builtin = None
            if builtin is not None:
                break
    return True, conntrack_netlink_obstacle(modules, builtin)


def conntrack_in_children(proc_root):
    """Whether the children that enter other namespaces must dump their conntrack tables over
    ctnetlink: the kernel tracks connections, has no conntrack text in /proc, and the dump
    loads no module."""
    own = os.path.join(proc_root, "self", "net")
    if any(os.path.exists(os.path.join(own, name)) for name in CONNTRACK_FILES):
        return False
    tracking, obstacle = _conntrack_netlink_state(proc_root)
    return tracking and obstacle is None


def _dumped_conntrack(dumped, coverage):
    """The entries a child dumped over ctnetlink in its namespace ((entries, truncated), or the
    errno and message of its failure), noting what is missing."""
    if dumped is not None and dumped[0] == "ok":
        entries, truncated = dumped[1], dumped[2]
        if truncated:
            coverage.note("conntrack table cut at %d entries" % MAX_CONNTRACK_ENTRIES)
        return entries
    reason = (dumped[2] or os.strerror(dumped[1] or 0)) if dumped is not None else "no reply"
    coverage.note("conntrack unknown in a namespace: no /proc/net/nf_conntrack and its netlink dump failed: %s"
                  % reason)
    return None


def conntrack_without_procfs(proc_root, coverage, use_netlink):
    """The conntrack entries of a namespace whose /proc/PID/net has no nf_conntrack file.

    Silent None when the kernel tracks no connections (no nf_conntrack_count sysctl, no
    nf_conntrack module). Otherwise the kernel lacks CONFIG_NF_CONNTRACK_PROCFS: the table is
    dumped over ctnetlink when `use_netlink` (the payload's own namespace, live proc root) and
    doing so loads no kernel module (the other namespaces' tables come from the children that
    enter them, see conntrack_in_children). Every other outcome is None with a coverage note
    saying why.
    """
    tracking, obstacle = _conntrack_netlink_state(proc_root, coverage)
    if not tracking:
        return None
    if not use_netlink:
        coverage.note("conntrack unknown where netlink cannot be used (other namespaces, "
                      "--no-netlink): this kernel has no /proc/net/nf_conntrack")
        return None
    if obstacle is not None:
        coverage.note("conntrack unknown: no /proc/net/nf_conntrack and %s" % obstacle)
        return None
    try:
        accounting = _read_text_or_none(os.path.join(proc_root, "sys/net/netfilter/nf_conntrack_acct"))
        conntrack, truncated = netlink_conntrack(counted=accounting != "0")
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else (str(error) or "timed out")
        if error.errno in _DENIED:
            reason += " (needs root)"
        coverage.note("conntrack unknown: no /proc/net/nf_conntrack and its netlink dump failed: %s"
                      % reason)
        return None
    if truncated:
        coverage.note("conntrack table cut at %d entries" % MAX_CONNTRACK_ENTRIES)
    return conntrack


def _attribute_again(proc_root, processes, known):
    """Give the sockets of `known` that no process of `processes` holds to the process that
    holds them now (a second walk over the fds of the same processes)."""
    unheld = set(known)
    for process in processes:
        unheld.difference_update(process["sockets"])
    if not unheld:
        return
    for process in processes:
        try:
            found = unheld.intersection(read_socket_inodes(os.path.join(proc_root, str(process["pid"]), "fd")))
        except OSError:
            continue
        if found:
            process["sockets"] = sorted(set(process["sockets"]) | found)
            unheld.difference_update(found)


def parse_sockstat(text):
    """Parse /proc/net/sockstat or sockstat6: {"TCP": {"inuse": 4, "tw": 0, ...}, "TCP6": {...}}."""
    out = {}
    for line in _lines(text):
        label, _, rest = line.partition(":")
        fields = rest.split()
        counters = {}
        for index in range(0, len(fields) - 1, 2):
            try:
                counters[fields[index]] = int(fields[index + 1])
            except ValueError:
                pass
        if label.strip():
            out[label.strip()] = counters
    return out


def conntrack_count(net_dir):
    """The number of conntrack entries of a namespace (the `entries` column of its
    stat/nf_conntrack, the same on every CPU's line), or None when unknown."""
    try:
        with _open_text(os.path.join(net_dir, "stat", "nf_conntrack")) as handle:
            header = handle.readline().split()
            values = handle.readline().split()
        if header and header[0] == "entries" and values:
            return int(values[0], 16)
    except (OSError, ValueError):
        pass
    return None


def read_sockstat(net_dir):
    """The sockstat and sockstat6 counters of a namespace ({} when unreadable)."""
    stats = {}
    for name in ("sockstat", "sockstat6"):
        try:
            with _open_text(os.path.join(net_dir, name)) as handle:
                stats.update(parse_sockstat(handle))
        except OSError:
            pass
    return stats


def netlink_wanted(stats):
    """The (filename, proto) of NETLINK_TABLES worth a dump, by the namespace's sockstat."""
    return [(filename, proto) for filename, proto in INET_TABLES
            if filename in NETLINK_TABLES and not tcp_table_is_empty(stats, proto)]


def tcp_table_is_empty(stats, proto):
    """True when the sockstat counters show that the tcp or tcp6 table has no row at all.

    `inuse` counts the hashed sockets of one family (listening, connecting, connected) and
    `tw` the TIME_WAIT rows of both families. Missing counters mean "unknown": read the table.
    """
    label = {"tcp": "TCP", "tcp6": "TCP6"}.get(proto)
    if label is None:
        return False
    in_use = stats.get(label, {}).get("inuse")
    time_wait = stats.get("TCP", {}).get("tw")
    return in_use == 0 and time_wait == 0


def _dedupe_sockets(records):
    """Drop repeated rows of one socket (reading a kernel table is not atomic).

    SCTP is exempt: a one-to-many socket has one record per association under one inode.
    """
    if len(set(map(_INODE, records))) == len(records):
        return records  # the usual case, checked at C speed
    seen = set()
    out = []
    for record in records:
        if record[0] != "sctp":
            if record[1] in seen:
                continue
            seen.add(record[1])
        out.append(record)
    return out


# ---------------------------------------------------------------------------------------------
# The whole capture
# ---------------------------------------------------------------------------------------------

def _own_pid_in(proc_root):
    """Our pid when `proc_root` is a live view of our own pid namespace, else None."""
    try:
        if os.readlink(os.path.join(proc_root, "self")) == str(os.getpid()):
            return os.getpid()
    except OSError:
        pass
    return None


# What an SSH server's processes call themselves (sshd-session: OpenSSH 9.8 and later).
SSH_SERVER_COMMS = ("sshd", "sshd-session", "dropbear")


def ssh_session_pids(processes, parent):
    """The SSH server processes among `parent` and its ancestors: the session the payload runs in
    (the payload leaves itself out of `processes`, so the walk starts at its parent).

    Their connections are the collector's own session to this machine (docs/snapshot.md,
    `ssh_session`). The walk stops at the first process above them that is not an SSH server,
    at pid 1, or at a loop.
    """
    by_pid = dict((process["pid"], process) for process in processes)
    found = []
    seen = set()
    current = by_pid.get(parent)
    while current is not None and current["pid"] not in seen:
        seen.add(current["pid"])
        if current["comm"] in SSH_SERVER_COMMS:
            found.append(current["pid"])
        elif found:
            break
        if current["ppid"] <= 1:
            break
        current = by_pid.get(current["ppid"])
    return found


def collect(proc_root="/proc", etc_root="/etc", use_netlink=True, compact=False, second_pass=False,
            enter_namespaces=True, namespace_timeout=NAMESPACE_TIMEOUT):
    """Capture this machine: the snapshot document (a dict, see docs/snapshot.md).

    `proc_root` is where procfs is mounted (a fake tree in tests); `etc_root` holds passwd and
    machine-id. With `use_netlink` and the live /proc, TCP and UDP are dumped through netlink
    sock_diag: in the payload's own namespace directly, in every other one by a short-lived
    child that enters it (with `enter_namespaces`; NamespaceDumps, at most `namespace_timeout`
    seconds per namespace); the /proc/PID/net text is the fallback, with the same records.
    With `compact`, each namespace's sockets are a SocketList of tuples (for write_json, which streams them); otherwise they are plain dicts and the
    document can go straight to json.dumps. With `second_pass` (a window's closing capture),
    the fds are walked once more for the sockets that no process held in the first walk: the
    tables are read after the fds, so a socket created in between has its holder only then.
    """
    started = time.time()
    coverage = Coverage()
    proc_root = proc_root.rstrip("/") or "/"

    users = {}
    try:
        with _open_text(os.path.join(etc_root, "passwd")) as handle:
            users = parse_passwd(handle)
    except OSError:
        coverage.note("cannot read passwd: user names unknown")

    host = {
        "hostname": _read_text_or_none(os.path.join(proc_root, "sys/kernel/hostname")) or "",
        "machine_id": _read_text_or_none(os.path.join(etc_root, "machine-id")) or None,
        "boot_id": _read_text_or_none(os.path.join(proc_root, "sys/kernel/random/boot_id")),
        "kernel": _read_text_or_none(os.path.join(proc_root, "sys/kernel/osrelease")) or "",
        "captured_at": round(started, 3),
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
    }

    own_pid = _own_pid_in(proc_root)
    own_netns = None
    if own_pid is not None:
        try:
            own_netns = _netns_key("/proc/self/ns/net")
        except OSError:
            own_netns = None

    # Entering namespaces works only from a live /proc that shows our own pid namespace, and
    # is never tried from a threaded process (`netviz capture` in-process): a forked child of
    # one may find a lock held forever by a thread that is not there.
    threads = sys.modules.get("threading")
    entry = NamespaceEntry(enabled=use_netlink and enter_namespaces and own_netns is not None
                           and (threads is None or threads.active_count() <= 1),
                           timeout=namespace_timeout)
    dumps = NamespaceDumps(entry, coverage, namespace_parallelism(), namespace_timeout)
    try:
        pids = list_pids(proc_root)
        if entry.usable():
            # The children dump the other namespaces while this process walks the processes' fds.
            _start_dumps(proc_root, pids, own_pid, own_netns, dumps)
        return _collect(proc_root, etc_root, use_netlink, compact, second_pass, started, coverage, host,
                        own_pid, own_netns, users, pids, dumps)
    finally:
        dumps.close()


def _start_dumps(proc_root, pids, own_pid, own_netns, dumps):
    """Give every network namespace of `pids` but our own to the children (NamespaceDumps.add),
    with the tables its sockstat says are worth a dump, and its conntrack table when the kernel
    shows no text of it (conntrack_in_children). The children open the ns/net files
    themselves, one at a time: the parent holds no fd per namespace (a host may have thousands)."""
    conntrack = conntrack_in_children(proc_root)
    seen = set([own_netns])
    jobs = []
    for pid in pids:
        if pid == own_pid:
            continue
        base = os.path.join(proc_root, str(pid))
        try:
            key = _netns_key(base + "/ns/net")
        except OSError:
            continue
        if key in seen:
            continue
        seen.add(key)
        wanted = netlink_wanted(read_sockstat(base + "/net"))
        if conntrack and conntrack_count(base + "/net") != 0:
            wanted.append(("conntrack", None))
        if wanted:
            jobs.append((key[1], base + "/ns/net", key, wanted))
    for job in sorted(jobs, key=operator.itemgetter(0)):  # the order they are read in
        dumps.add(*job)


def _collect(proc_root, etc_root, use_netlink, compact, second_pass, started, coverage, host, own_pid,
             own_netns, users, pids, dumps):
    """collect(), once the children are on their way."""
    processes = []
    held = {}  # pid -> socket inodes among its fds
    namespace_pids = {}  # netns inode -> pids living in it (in scan order)
    for pid in pids:
        if pid == own_pid:
            continue  # the payload itself
        dumps.poll()
        result = read_process(proc_root, pid, users, coverage)
        if result is None:
            continue
        process, inodes = result
        coverage.processes_seen += 1
        processes.append(process)
        held[pid] = inodes
        netns = process["netns"]
        if netns is not None:
            namespace_pids.setdefault(netns, []).append(pid)

    # The payload's own namespace is always captured, through its own pid as a last resort:
    # without root under `hidepid`, no other process of it may be visible.
    readers = dict((netns, list(pids)) for netns, pids in namespace_pids.items())
    if own_netns is not None:
        readers.setdefault(own_netns[1], []).append(own_pid)

    namespaces = _read_namespaces(proc_root, readers, namespace_pids, own_netns, use_netlink, coverage, dumps)

    known = set()
    for netns, _count, table in namespaces:
        known.update(map(_INODE, table["sockets"]))
    for process in processes:
        inodes = held.pop(process["pid"])
        process["sockets"] = sorted(known.intersection(inodes))
    if second_pass:
        _attribute_again(proc_root, processes, known)
    # What is left of `known` once every held socket is removed is held by no visible process
    # (done in place: a second set of every inode would cost megabytes on a busy machine).
    for process in processes:
        known.difference_update(process["sockets"])
    coverage.unattributed_sockets = len(known)

    names = namespace_names() if proc_root == "/proc" else {}
    runtime = read_runtime(processes) if proc_root == "/proc" else None
    document = {
        "schema": SCHEMA,
        "payload_version": PAYLOAD_VERSION,
        "host": host,
        "coverage": coverage.to_dict(os.geteuid()),
        "namespaces": [
            _namespace_entry(netns, count, table, names.get(netns), compact)
            for netns, count, table in namespaces
        ],
        "processes": processes,
    }
    if runtime:
        document["runtime"] = runtime  # only when a runtime named something: older readers see the same
    hosts_file = read_hosts_file(etc_root)
    if hosts_file:
        document["hosts_file"] = hosts_file  # names for peers outside the group
    return document


def _read_namespaces(proc_root, readers, namespace_pids, own_netns, use_netlink, coverage, dumps):
    """[(netns, pids, table)] of every namespace of `readers` (netns -> pids to read it through),
    in inode order; the dumps of the other namespaces come from `dumps` (NamespaceDumps)."""
    namespaces = []
    for netns in sorted(readers):
        pids = namespace_pids.get(netns, [])
        own = use_netlink and own_netns is not None and netns == own_netns[1]
        dumped = None if own else dumps.take(netns)
        table = None
        for pid in readers[netns]:
            base = os.path.join(proc_root, str(pid))
            try:
                key = _netns_key(base + "/ns/net")
                if key[1] != netns:
                    continue  # the process moved to another namespace meanwhile
                table = read_namespace(base + "/net", coverage, use_netlink=own and key == own_netns,
                                       proc_root=proc_root, dumps=dumped)
                # A pid that exited mid-read may have been reused by a process elsewhere.
                if _netns_key(base + "/ns/net")[1] != netns:
                    table = None
                    continue
                break
            except OSError as error:
                if error.errno in _DENIED:
                    break
                continue
        if table is None:
            coverage.namespaces_denied += 1
            coverage.note("namespace %d: /proc/PID/net unreadable" % netns)
            continue
        table["sockets"] = _dedupe_sockets(table["sockets"])
        table["sockets"].sort(key=_INODE)  # stable output: two captures diff cleanly
        namespaces.append((netns, len(pids), table))
    return namespaces


def _namespace_entry(netns, count, table, name, compact):
    entry = {
        "inode": netns,
        "pids": count,
        "addresses": table["addresses"],
        "sockets": (SocketList(table["sockets"]) if compact
                    else [socket_to_dict(record) for record in table["sockets"]]),
        "unkeyed": table["unkeyed"],
        "conntrack": table["conntrack"],
    }
    if name is not None:
        entry["name"] = name  # only when known: older readers see the same document
    if table.get("tcp_info") is not None:  # only where netlink read them: older readers ignore it
        entry["tcp_info"] = tcp_info_document(table["tcp_info"], compact)
    return entry


# ---------------------------------------------------------------------------------------------
# Observation over a time window (--window): samples, event streams, aggregates per flow key
# ---------------------------------------------------------------------------------------------

WINDOW_VERSION = 1
MAX_WINDOW = 3600.0  # seconds
MAX_START_AHEAD = 60.0  # seconds: a --start-at further ahead is refused
MIN_INTERVAL = 0.2  # seconds between two samples, at the least
MAX_FLOW_KEYS = 20000
MAX_REMEMBERED_ENDS = 200000  # connections remembered for their destroy event (a hash each)
MAX_WINDOW_PROCESSES = 4096
MAX_HOLDERS = 8  # per flow key
MAX_UIDS = 8  # per flow key
MAX_PIDS = 8  # per short-lived process record
EVENT_BUFFER = 8 << 20  # receive buffer asked for each event socket (SO_RCVBUFFORCE as root)
CPU_SHARE_SMALL = (1000, 0.05)  # at most 5% of one core at 1,000 sockets
CPU_SHARE_LARGE = (50000, 0.20)  # at most 20% at 50,000 sockets
BUDGET_MARGIN = 0.8  # the sampling aims at this fraction of the share: samples vary in cost
WINDOW_PROTOS = {"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp"}
EVIDENCE_KINDS = ("sample", "time_wait", "destroy", "conntrack")
# Past this many TCP sockets in the namespace when the window starts, its samples read no tcp_info
# (no bytes in the window): at 50,000 sockets the counters take the window past its CPU share.
MAX_BYTES_SOCKETS = 20000

# sock_diag multicast groups (linux/sock_diag.h, Linux 4.9+) and the INET_DIAG_PROTOCOL attribute.
SKNLGRP_GROUPS = ((1, "tcp"), (2, "udp"), (3, "tcp"), (4, "udp"))
INET_DIAG_PROTOCOL = 10
_INET_DIAG_MSG_SIZE = 72
# ctnetlink multicast groups (linux/netfilter/nfnetlink_compat.h): NEW 1, DESTROY 3.
NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_DESTROY = 3
IPCTNL_MSG_CT_DELETE = 2
# The proc connector (linux/connector.h, linux/cn_proc.h).
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_PROC_EVENT = struct.Struct("=IIQII")  # what, cpu, timestamp, pid, tgid


def cpu_share(socket_count):
    """The share of one core the window may use with `socket_count` sockets: 5% up to 1,000,
    20% from 50,000, log-linear in between (the cost of a sample grows with the sockets)."""
    (low_n, low), (high_n, high) = CPU_SHARE_SMALL, CPU_SHARE_LARGE
    if socket_count <= low_n:
        return low
    if socket_count >= high_n:
        return high
    import math
    ratio = math.log(socket_count / float(low_n)) / math.log(high_n / float(low_n))
    return low + (high - low) * ratio


def plain_address(address):
    """An address as the window writes it: IPv4-mapped IPv6 as IPv4 (one key per connection,
    whether the socket or conntrack saw it)."""
    if address is not None and address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


class Observations(object):
    """Aggregates per flow key, bounded: never a record per connection.

    A key is (netns, proto, role, local, local_port, remote, remote_port). Role "client" keeps
    the remote port and drops the local (ephemeral) one; role "server" keeps the local port
    (a listening one) and drops the remote.
    """

    def __init__(self, max_keys=MAX_FLOW_KEYS, max_processes=MAX_WINDOW_PROCESSES):
        self.flows = {}
        self.max_keys = max_keys
        self.overflow = 0
        self.processes = {}
        self.max_processes = max_processes
        self.processes_overflow = 0

    def flow(self, key, now):
        """The record of `key` (created when there is room), or None (counted as overflow)."""
        record = self.flows.get(key)
        if record is None:
            if len(self.flows) >= self.max_keys:
                self.overflow += 1
                return None
            # first_seen, last_seen, counts per evidence kind, samples alive, holders, uids,
            # sockets alive at the last sample, the sample since which one was; bytes sent and
            # received inside the window and the span they moved in (ByteCounts; None: unknown)
            record = self.flows[key] = [now, now, {}, 0, {}, set(), 0, 0, None, None, None, None]
        else:
            record[1] = now
        return record

    def add(self, key, now, kind, uid=None, holder=None):
        """One more connection of `key` seen by `kind` (None: seen again, not counted)."""
        record = self.flow(key, now)
        if record is None:
            return None
        if kind is not None:
            record[2][kind] = record[2].get(kind, 0) + 1
        if uid is not None and uid >= 0 and len(record[5]) < MAX_UIDS:
            record[5].add(uid)
        if holder is not None:
            self.hold(record, holder)
        return record

    @staticmethod
    def alive(record, sample):
        """One more socket of the flow alive from sample number `sample` on."""
        if not record[6]:
            record[7] = sample
        record[6] += 1

    def gone(self, key, sample, last_seen):
        """One socket of `key`, alive at the sample before number `sample`, is gone."""
        record = self.flows.get(key)
        if record is None or not record[6]:
            return
        record[6] -= 1
        if last_seen is not None and last_seen > record[1]:
            record[1] = last_seen
        if not record[6]:
            record[3] += sample - record[7]

    @staticmethod
    def hold(record, holder):
        """`holder` is (pid, comm, via); the first MAX_HOLDERS pids are kept."""
        holders = record[4]
        if holder[0] in holders or len(holders) < MAX_HOLDERS:
            if holders.get(holder[0], (None, None, "listener"))[2] == "listener":
                holders[holder[0]] = holder

    def process(self, netns, uid, comm, cmdline, pid, now):
        """A process seen by an exec event."""
        key = (netns, uid, comm, cmdline)
        record = self.processes.get(key)
        if record is None:
            if len(self.processes) >= self.max_processes:
                self.processes_overflow += 1
                return
            record = self.processes[key] = [now, now, 0, []]
        record[1] = now
        record[2] += 1
        if len(record[3]) < MAX_PIDS:
            record[3].append(pid)

    def flows_document(self, samples):
        out = []
        for key in sorted(self.flows, key=_flow_sort_key):
            netns, proto, role, local, local_port, remote, remote_port = key
            record = self.flows[key]
            first, last, counts, alive, holders, uids = record[:6]
            moved = {} if record[8] is None else {
                "bytes_sent": record[8], "bytes_received": record[9],
                "bytes_from": round(record[10], 3), "bytes_to": round(record[11], 3)}
            out.append(dict(moved, **{
                "netns": netns, "proto": proto, "role": role,
                "local": local, "local_port": local_port, "remote": remote, "remote_port": remote_port,
                "first_seen": round(first, 3), "last_seen": round(last, 3),
                "connections": max(counts.get("sample", 0) + counts.get("time_wait", 0),
                                   counts.get("destroy", 0), counts.get("conntrack", 0)),
                "evidence": dict((kind, counts[kind]) for kind in EVIDENCE_KINDS if kind in counts),
                "samples": alive,
                "persistent": samples > 0 and alive == samples,
                "holders": [{"pid": pid, "comm": comm, "via": via}
                            for pid, comm, via in sorted(holders.values())],
                "uids": sorted(uids),
            }))
        return out

    def processes_document(self):
        out = []
        for key in sorted(self.processes, key=lambda k: (k[0] or 0, k[1], k[2], k[3])):
            netns, uid, comm, cmdline = key
            first, last, execs, pids = self.processes[key]
            out.append({"netns": netns, "uid": uid, "comm": comm, "cmdline": list(cmdline),
                        "execs": execs, "first_seen": round(first, 3), "last_seen": round(last, 3),
                        "pids": pids})
        return out


def _flow_sort_key(key):
    return tuple("" if part is None else (str(part) if not isinstance(part, int) else "%020d" % part)
                 for part in key)


def flow_key(netns, record, listening):
    """The flow key of a connected socket record, or None for a socket that is no connection
    (listening, unconnected UDP). `listening` holds the (proto, port) pairs that listen."""
    proto = WINDOW_PROTOS.get(record[0])
    if proto is None or record[6] == "LISTEN" or not record[5]:
        return None
    local, remote = plain_address(record[2]), plain_address(record[4])
    if (proto, record[3]) in listening:
        return (netns, proto, "server", local, record[3], remote, None)
    return (netns, proto, "client", local, None, remote, record[5])


def _listening_port(record):
    """(proto, port) of a listening TCP socket or a bound, unconnected UDP one, else None."""
    proto = WINDOW_PROTOS.get(record[0])
    if record[1] and ((proto == "tcp" and record[6] == "LISTEN") or
                      (proto == "udp" and not record[5] and record[3])):
        return proto, record[3]
    return None


class EventSource(object):
    """One netlink event stream: its socket, what it gave, and why it is missing if it is."""

    def __init__(self, name):
        self.name = name
        self.sock = None
        self.state = "missing"
        self.reason = None
        self.events = 0
        self.lost = 0  # ENOBUFS: the receive buffer overflowed, events were dropped

    def fail(self, error, what):
        code = getattr(error, "errno", None)
        self.state = "denied" if code in _DENIED else "missing"
        self.reason = "%s: %s" % (what, os.strerror(code) if code else (str(error) or "failed"))
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def to_dict(self):
        out = {"state": self.state, "events": self.events, "lost": self.lost}
        if self.reason:
            out["reason"] = self.reason
        return out


def _event_socket(protocol, groups):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        for option in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else what is allowed
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, EVENT_BUFFER)
                break
            except OSError:
                continue
        sock.bind((0, groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def open_sources(proc_root):
    """The event sources of the payload's own namespace, each opened or said missing and why."""
    destroy = EventSource("sock_destroy")
    conntrack = EventSource("conntrack")
    proc = EventSource("proc_connector")
    try:
        destroy.sock = _event_socket(NETLINK_SOCK_DIAG, sum(1 << (group - 1) for group, _ in SKNLGRP_GROUPS))
        destroy.state = "used"
    except OSError as error:
        destroy.fail(error, "sock_diag destroy groups (Linux 4.9+)")

    obstacle = None
    if not os.path.exists(os.path.join(proc_root, "sys/net/netfilter/nf_conntrack_max")):
        obstacle = "this namespace tracks no connections (no nf_conntrack)"
    else:
        try:
            modules = _read_small_text(os.path.join(proc_root, "modules"))
            builtin = _read_small_text("/lib/modules/%s/modules.builtin" % os.uname()[2]) if modules else None
            obstacle = conntrack_netlink_obstacle(modules, builtin)
        except OSError as error:
            obstacle = "cannot read the module list: %s" % os.strerror(error.errno or 0)
    if obstacle:
        conntrack.reason = obstacle
    else:
        try:
            conntrack.sock = _event_socket(NETLINK_NETFILTER, (1 << (NFNLGRP_CONNTRACK_NEW - 1)) |
                                           (1 << (NFNLGRP_CONNTRACK_DESTROY - 1)))
            conntrack.state = "used"
        except OSError as error:
            conntrack.fail(error, "ctnetlink event groups")

    try:
        proc.sock = _event_socket(NETLINK_CONNECTOR, CN_IDX_PROC)
        body = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        message = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(body), 0) + body
        proc.sock.sendto(_NLMSGHDR.pack(_NLMSGHDR.size + len(message), NLMSG_DONE, 0, 0, 0) + message, (0, 0))
        proc.state = "used"
    except OSError as error:
        proc.fail(error, "proc connector")
    if proc.sock is not None and _in_child_pid_namespace(proc_root):
        proc.state = "missing"
        proc.reason = "proc connector: the kernel sends the events of the initial pid namespace only"
        proc.close()
    return [destroy, conntrack, proc]


UNTRACKED_REASON = "no events: this namespace's traffic is not tracked (no conntrack rule)"


def mark_untracked(source, proc_root):
    """Say so when ctnetlink events were open but the namespace tracks nothing.

    A kernel with nf_conntrack tracks a namespace's connections only once a rule or a NAT table
    there needs it: until then its table stays empty and no event arrives, however busy it is.
    No event and an empty table (which would hold at least the session that runs the payload,
    were it tracked) mean the events could not have seen anything: state `untracked`."""
    if source.state != "used" or source.events:
        return
    try:
        count = _read_small_text(os.path.join(proc_root, "sys/net/netfilter/nf_conntrack_count"))
    except OSError:
        return
    if count is not None and count.strip() == "0":
        source.state = "untracked"
        source.reason = UNTRACKED_REASON


def _in_child_pid_namespace(proc_root):
    """Whether the payload runs in a pid namespace below the initial one (NSpid lists two pids)."""
    try:
        with _open_text(os.path.join(proc_root, "self", "status")) as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2
    except OSError:
        pass
    return False


def _messages(data):
    """(type, body start, end) of each netlink message in a datagram."""
    offset = 0
    size = len(data)
    while offset + _NLMSGHDR.size <= size:
        length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
        if length < _NLMSGHDR.size or offset + length > size:
            return
        yield kind, offset + _NLMSGHDR.size, offset + length
        offset += (length + 3) & ~3


class _Connection(object):
    """One TCP connection's counters through the window (ByteCounts)."""

    __slots__ = ("key", "ends", "born_after", "first_time", "first_sent", "first_received",
                 "base_sent", "base_received", "sent", "received", "last_time", "folded")

    def __init__(self, key, ends, now, sent, received, born_after):
        self.key, self.ends, self.born_after = key, ends, born_after
        self.first_time, self.first_sent, self.first_received = now, sent, received
        # born during the window (a sample before did not have it): everything it moved counts,
        # but its SYN (or SYN-ACK), which the kernel counts as one byte acknowledged
        self.base_sent, self.base_received = (1, 0) if born_after is not None else (sent, received)
        self.sent, self.received, self.last_time, self.folded = sent, received, now, False

    def start(self, end):
        """When its counted bytes began to move: the first sample for a connection alive then;
        for one born later, its first observation moved back by what it had moved by then at the
        rate it kept until `end` (never before the sample that did not have it yet)."""
        if self.born_after is None:
            return self.first_time
        before = self.first_sent + self.first_received - self.base_sent - self.base_received
        observed = self.sent + self.received - self.first_sent - self.first_received
        if observed > 0 and end > self.first_time:
            return max(self.born_after, self.first_time - before * (end - self.first_time) / float(observed))
        return (self.born_after + self.first_time) / 2.0


class ByteCounts(object):
    """What each TCP connection of the window moved, from its tcp_info at every sample and at its
    destroy event, folded into its flow key's record (Observations) when it goes.

    A connection alive at the first sample counts only what moved after it; one born during the
    window counts from zero. The span the bytes moved in runs from the connection's start (see
    _Connection.start) to its destroy event, which carries the final tcp_info (less the FIN
    each side of an orderly close counts as a byte: one byte short after a reset), or else to the
    last sample that saw it (the bytes counted stop there too). Only live connections are kept,
    and the closed ones of the last two samples, for their destroy event.

    A connection born and gone between two samples (the window's reason to be) is known by its
    destroy event alone: its final tcp_info is all it moved, in a span taken to start halfway
    between the sample before and its end. The connections of the first sample and those counted
    already are remembered (a hash of their ends), so that the late destroy of one alive before
    the window, or counted, is not counted (again).
    """

    def __init__(self, obs):
        self.obs = obs
        self.last_sample = None  # the time of the last sample with counters
        self.remembered = set()  # hash(ends): connections of the first sample, and those counted
        self.remembering = True
        self.key_of_inode = {}  # inode -> (flow key, ends): the keyed TCP sockets of the last sample
        self.live = {}  # inode -> _Connection
        self.by_ends = {}  # (proto, local, local port, remote, remote port) -> _Connection, live or just closed
        self.closing = []  # connections folded at the last sample, then at the one before
        self.closed_before = []

    def sample(self, counters, now, previous):
        """The counters of one sample (inode -> tcp_info_counters); `previous`: the time of the
        sample before, None for the first."""
        current = {}
        for inode, values in counters.items():
            if values is None or values[0] is None:
                continue  # a kernel older than 4.1: no byte counters
            connection = self.live.get(inode)
            if connection is None:
                known = self.key_of_inode.get(inode)
                if known is None:
                    continue
                connection = _Connection(known[0], known[1], now, values[0], values[1], previous)
                self.by_ends[known[1]] = connection
            else:
                connection.sent, connection.received, connection.last_time = values[0], values[1], now
            current[inode] = connection
        for connection in self.closed_before:
            if self.by_ends.get(connection.ends) is connection:
                del self.by_ends[connection.ends]
        self.closed_before, self.closing = self.closing, []
        for inode, connection in self.live.items():
            if inode not in current:
                self._fold(connection, connection.last_time)
                self.closing.append(connection)
        self.live = current
        self.last_sample = now

    def remember(self, ends):
        """A connection whose destroy event is not to be counted as a whole."""
        if len(self.remembered) < MAX_REMEMBERED_ENDS:
            self.remembered.add(hash(ends))
        else:
            self.remembering = False  # past the bound, no connection is counted by its destroy alone

    def destroyed(self, ends, values, now, key=None):
        """A connection's destroy event with its final tcp_info; `key`: its flow key."""
        connection = self.by_ends.pop(ends, None)
        if values is None or values[0] is None:
            return
        # the counters of an orderly close count each side's FIN as one byte, as the SYN
        final_sent, final_received = values[0] - 1, values[1] - 1
        if connection is None:
            self._born_and_gone(key, ends, final_sent, final_received, now)
            return
        sent, received = connection.sent, connection.received
        connection.sent, connection.received = max(sent, final_sent), max(received, final_received)
        if connection.folded:  # folded already, as of its last sample: add what moved since
            self._add(connection.key, connection.sent - sent, connection.received - received, None, now)
            return
        for inode, live in list(self.live.items()):
            if live is connection:
                del self.live[inode]
                break
        self._fold(connection, now)

    def _born_and_gone(self, key, ends, sent, received, now):
        """Count a connection no sample had, from its destroy event alone."""
        if key is None or self.last_sample is None or now < self.last_sample or not self.remembering:
            return
        if hash(ends) in self.remembered:
            return  # counted already, or alive before the window: its bytes are not all the window's
        self.remember(ends)  # a repeated event counts once
        # less its SYN, which the kernel counts as one byte acknowledged
        self._add(key, max(0, sent - 1), max(0, received), (self.last_sample + now) / 2.0, now)

    def finish(self, now):
        for connection in self.live.values():
            self._fold(connection, now)
        self.live, self.by_ends, self.key_of_inode = {}, {}, {}
        self.remembered, self.last_sample = set(), None
        self.closing, self.closed_before = [], []

    def _fold(self, connection, end):
        connection.folded = True
        self.remember(connection.ends)
        self._add(connection.key, max(0, connection.sent - connection.base_sent),
                  max(0, connection.received - connection.base_received), connection.start(end), end)

    def _add(self, key, sent, received, start, end):
        record = self.obs.flows.get(key)
        if record is None:
            return
        record[8] = (record[8] or 0) + sent
        record[9] = (record[9] or 0) + received
        if start is not None:
            record[10] = start if record[10] is None else min(record[10], start)
        record[11] = end if record[11] is None else max(record[11], end)


class Window(object):
    """The observation of this machine over a window: samples on a budget, and events."""

    def __init__(self, proc_root, use_netlink=True, observations=None):
        self.proc_root = proc_root
        self.use_netlink = use_netlink
        self.obs = observations or Observations()
        self.samples = 0
        self.sample_cpu = 0.0
        self.interval = None
        self.first_cost = None
        self.own_pid = _own_pid_in(proc_root)
        self.own_netns = None
        try:
            self.own_netns = os.stat("/proc/self/ns/net").st_ino if self.own_pid else None
        except OSError:
            pass
        self.pid_info = {}  # pid -> (netns, comm, uid): processes met so far
        self.holder_of = {}  # inode -> (pid, comm): the held sockets of the last sample
        self.rows = {}  # netns -> the socket rows (records) of the last sample
        self.key_of = {}  # live record -> its flow key
        self.last_sample = None
        self.bytes = ByteCounts(self.obs)  # TCP connections' bytes, in the namespace read by netlink
        self.count_bytes = True  # run() decides from the namespace's socket count
        self.listening = {}  # netns -> {(proto, port): listening sockets}
        self.listener_holder = {}  # (netns, proto, port) -> (pid, comm)
        self.local_addresses = set()
        self.sources = []
        self.notes = []
        self.socket_count = 0

    # Samples ----------------------------------------------------------------------------

    def _namespace_rows(self):
        """(netns, records with inode, records of inode 0, tcp_info counters by inode or None) of
        every namespace reachable; counters for the payload's own namespace, read by netlink."""
        readers = {}
        for pid, info in self.pid_info.items():
            if info[0] is not None:
                readers.setdefault(info[0], pid)
        if self.own_netns is not None:
            readers[self.own_netns] = self.own_pid
        out = []
        for netns, pid in sorted(readers.items()):
            own = netns == self.own_netns and self.use_netlink
            records, inodeless = [], []
            counters = {} if own and self.count_bytes else None
            for filename in ("tcp", "tcp6", "udp", "udp6"):
                try:
                    if own:
                        family, protocol = NETLINK_TABLES[filename]
                        records.extend(netlink_inet_sockets(family, protocol, filename, inodeless, counters)[0])
                        continue
                except OSError:
                    counters = None  # a table read from /proc has no counters: none for the namespace
                    pass
                try:
                    with _open_text(os.path.join(self.proc_root, str(pid), "net", filename)) as handle:
                        records.extend(parse_inet_table(handle, filename, inodeless)[0])
                except OSError:
                    continue
            out.append((netns, records, inodeless, counters))
        return out

    def _walk_fds(self, wanted):
        """inode -> (pid, comm) for the inodes of `wanted` among every process's fds."""
        found = {}
        seen = {}
        try:
            pids = list_pids(self.proc_root)
        except OSError:
            return found
        for pid in pids:
            if pid == self.own_pid:
                continue
            base = os.path.join(self.proc_root, str(pid))
            info = self.pid_info.get(pid) or self._process_info(base)
            if info is None:
                continue
            seen[pid] = info
            if not wanted:
                continue
            try:
                inodes = read_socket_inodes(base + "/fd")
            except OSError:
                continue
            for inode in wanted.intersection(inodes):
                found[inode] = (pid, info[1])
        self.pid_info = seen
        return found

    @staticmethod
    def _process_info(base):
        try:
            netns = os.stat(base + "/ns/net").st_ino
        except OSError:
            netns = None
        try:
            comm = _read_bytes(base + "/comm").rstrip(b"\n")
        except OSError:
            return None
        return netns, decode_text(comm)[0], None

    def sample(self):
        """One sample: every namespace's connections, and the holders of the new ones.

        Only what changed since the last sample costs Python work per socket: the rows are
        compared as sets (at C speed), and the fds are walked only when a new socket needs
        its holder.
        """
        cpu = time.process_time()
        now = time.time()
        if not self.pid_info:
            self._walk_fds(set())  # the namespaces to read, on the first sample
        changes = []
        wanted = set()
        count = 0
        counted = None
        for netns, records, inodeless, counters in self._namespace_rows():
            if counters is not None:
                counted = counters
            rows = set(records)
            rows.update(inodeless)
            count += len(records)
            before = self.rows.get(netns, frozenset())
            fresh, gone = rows - before, before - rows
            self.rows[netns] = rows
            wanted.update(record[1] for record in fresh if record[1])
            changes.append((netns, fresh, gone))
        holders = self._walk_fds(wanted) if wanted else {}
        for netns, fresh, gone in changes:
            self._apply(netns, fresh, gone, holders, now)
        if counted is not None:
            self.bytes.sample(counted, now, self.last_sample)
        self.last_sample = now
        self.samples += 1
        self.socket_count = count
        cost = time.process_time() - cpu
        self.sample_cpu += cost
        if self.first_cost is None:
            self.first_cost = cost
        return cost

    def _apply(self, netns, fresh, gone, holders, now):
        """Record what changed in one namespace since the last sample."""
        listening = self.listening.setdefault(netns, {})
        closed = set()
        for record in gone:
            self.holder_of.pop(record[1], None)
            port = _listening_port(record)
            if port is not None:
                listening[port] = listening.get(port, 1) - 1
                if not listening[port]:
                    del listening[port]
            key = self.key_of.pop(record, None)
            self.bytes.key_of_inode.pop(record[1], None)
            if key is not None:
                closed.add((record[0], record[2], record[3], record[4], record[5]))
                self.obs.gone(key, self.samples, self.last_sample)
        for record in fresh:
            port = _listening_port(record)
            if port is not None:
                listening[port] = listening.get(port, 0) + 1
                holder = holders.get(record[1])
                if holder is not None:
                    self.listener_holder[(netns,) + port] = holder
        # the connections alive (or closing) when the window begins: their destroy counts only
        # what moved after the first sample
        before_window = not self.samples and netns == self.own_netns and self.count_bytes
        for record in fresh:
            if before_window and record[0] in ("tcp", "tcp6"):
                self.bytes.remember((record[0], record[2], record[3], record[4], record[5]))
            if not record[1] and (record[6] != "TIME_WAIT" or not self.samples):
                continue  # TIME_WAIT rows of the first sample closed before the window
            key = flow_key(netns, record, listening)
            if key is None:
                continue
            holder = holders.get(record[1])
            if holder is not None:
                self.holder_of[record[1]] = holder
            kind = "sample" if record[1] else "time_wait"
            if (record[0], record[2], record[3], record[4], record[5]) in closed:
                kind = None  # a connection seen already, in another state (closed, TIME_WAIT)
            flow = self.obs.add(key, now, kind, record[7],
                                None if holder is None else (holder[0], holder[1], "socket"))
            if flow is None:
                continue
            if record[1]:
                self.key_of[record] = key
                self.obs.alive(flow, self.samples)
                if record[0] in ("tcp", "tcp6"):
                    self.bytes.key_of_inode[record[1]] = (key, (record[0], record[2], record[3], record[4], record[5]))
            self._listener_holds(flow, key)

    def _listener_holds(self, flow, key):
        """A server-side flow is also held by whoever holds the listening socket of its port."""
        if key[2] == "server":
            listener = self.listener_holder.get((key[0], key[1], key[4]))
            if listener is not None:
                Observations.hold(flow, (listener[0], listener[1], "listener"))

    def finish(self):
        """Close the flows still alive at the last sample."""
        for key in self.key_of.values():
            self.obs.gone(key, self.samples, self.last_sample)
        self.bytes.finish(self.last_sample)
        # The closing capture comes next: what only the samples needed is let go first.
        self.key_of, self.rows, self.holder_of, self.pid_info = {}, {}, {}, {}

    # Events -----------------------------------------------------------------------------

    def drain(self, source):
        """Read every pending datagram of one event source."""
        while source.sock is not None:
            try:
                data = source.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno == errno.ENOBUFS:
                    source.lost += 1
                    continue
                source.fail(error, "reading events")
                return
            now = time.time()
            for kind, start, end in _messages(data):
                if source.name == "sock_destroy" and kind == SOCK_DIAG_BY_FAMILY:
                    self._destroyed(data, start, end, now)
                elif source.name == "conntrack" and kind >> 8 == NFNL_SUBSYS_CTNETLINK:
                    self._tracked(data, start, end, kind & 0xFF, now)
                elif source.name == "proc_connector":
                    self._proc_event(data, start, end, now)
                else:
                    continue
                source.events += 1

    def _destroyed(self, data, start, end, now):
        if end - start < _INET_DIAG_MSG_SIZE:
            return
        family, state_number = data[start], data[start + 1]
        sport, dport = struct.unpack_from("!HH", data, start + 4)
        size = 4 if family == socket.AF_INET else 16
        src, dst = data[start + 8:start + 8 + size], data[start + 24:start + 24 + size]
        uid, inode = struct.unpack_from("=II", data, start + 64)
        attributes = _attributes(data, start + _INET_DIAG_MSG_SIZE, end, (INET_DIAG_PROTOCOL, INET_DIAG_INFO))
        protocol = attributes.get(INET_DIAG_PROTOCOL)
        number = data[protocol[0]] if protocol and protocol[1] > protocol[0] else socket.IPPROTO_TCP
        name = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}.get(number)
        if name is None or family not in (socket.AF_INET, socket.AF_INET6):
            return
        if family == socket.AF_INET6:
            name += "6"
        state = STATES.get(state_number, "CLOSE")
        record = (name, inode, socket.inet_ntop(family, src), sport, socket.inet_ntop(family, dst),
                  dport, state, uid, None)
        netns = self.own_netns
        key = flow_key(netns, record, self.listening.get(netns, ()))
        flow = None
        if key is not None:
            holder = self.holder_of.get(inode) if inode else None
            flow = self.obs.add(key, now, "destroy", uid,
                                None if holder is None else (holder[0], holder[1], "socket"))
            if flow is not None:
                self._listener_holds(flow, key)
        info = attributes.get(INET_DIAG_INFO)
        if info is not None and number == socket.IPPROTO_TCP:
            self.bytes.destroyed((name, record[2], sport, record[4], dport), tcp_info_counters(data, *info), now,
                                 key if flow is not None else None)

    def _tracked(self, data, start, end, message, now):
        if message not in (IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE):
            return
        entry = _conntrack_entry(data, start + _NFGENMSG.size, end, {})
        if entry is None or entry["proto"] not in ("tcp", "udp"):
            return
        original, reply = entry["original"], entry["reply"]
        kind = "conntrack" if message == IPCTNL_MSG_CT_NEW else None
        netns = self.own_netns
        client, server = plain_address(original["src"]), plain_address(reply["src"])
        if client in self.local_addresses:
            self.obs.add((netns, entry["proto"], "client", client, None,
                          plain_address(original["dst"]), original["dport"]), now, kind)
        if server in self.local_addresses:
            key = (netns, entry["proto"], "server", server, reply["sport"], plain_address(reply["dst"]), None)
            flow = self.obs.add(key, now, kind)
            if flow is not None:
                self._listener_holds(flow, key)

    def _proc_event(self, data, start, end, now):
        if end - start < _CN_MSG.size + _PROC_EVENT.size:
            return
        what, _cpu, _stamp, pid, tgid = _PROC_EVENT.unpack_from(data, start + _CN_MSG.size)
        if what != PROC_EVENT_EXEC or pid != tgid:
            return
        base = os.path.join(self.proc_root, str(tgid))
        try:
            status = parse_status(_read_bytes(base + "/status").decode("utf-8", "backslashreplace"))
            comm = decode_text(_read_bytes(base + "/comm").rstrip(b"\n"))[0]
            raw = parse_cmdline(_read_bytes(base + "/cmdline")[:1024])
            netns = os.stat(base + "/ns/net").st_ino
        except (OSError, ValueError, IndexError):
            return  # gone before it could be read: counted as an event, not named
        cmdline = tuple(decode_text(arg)[0] for arg in raw[:8])
        self.obs.process(netns, status["uid"], comm, cmdline, tgid, now)
        self.pid_info[tgid] = (netns, comm, status["uid"])

    # The whole window -------------------------------------------------------------------

    def run(self, seconds, started):
        """Observe from now until `started` + `seconds` (wall clock)."""
        deadline = started + seconds
        stats = read_sockstat(os.path.join(self.proc_root, "self", "net"))
        tcp = stats.get("TCP", {}).get("inuse", 0) + stats.get("TCP6", {}).get("inuse", 0)
        self.count_bytes = tcp <= MAX_BYTES_SOCKETS
        if self.own_netns is not None:
            self.local_addresses = self._own_addresses()
            self.sources = open_sources(self.proc_root)
        self.cpu_start = time.process_time()
        try:
            self._loop(deadline, started)
        finally:
            for source in self.sources:
                source.close()
        for source in self.sources:
            if source.name == "conntrack":
                mark_untracked(source, self.proc_root)
        self.finish()
        self.cpu = time.process_time() - self.cpu_start
        self.ended = time.time()

    def _loop(self, deadline, started):
        import select
        next_sample = time.time()
        while True:
            now = time.time()
            if now >= next_sample:
                cost = self.sample()
                self.interval = self._next_interval(cost, started)
                next_sample = time.time() + self.interval
                if now >= deadline:
                    return
                if next_sample > deadline:
                    next_sample = deadline  # the last sample closes the window
            sockets = [source.sock for source in self.sources if source.sock is not None]
            timeout = max(0.0, next_sample - time.time())
            if not sockets:
                time.sleep(timeout)
                continue
            ready = select.select(sockets, [], [], timeout)[0]
            for source in self.sources:
                if source.sock is not None and source.sock in ready:
                    self.drain(source)

    def _next_interval(self, cost, started):
        """Seconds until the next sample: the window's CPU (samples and events alike) stays under
        BUDGET_MARGIN of its share, the next sample costing what the last one did."""
        target = BUDGET_MARGIN * cpu_share(self.socket_count)
        spent = time.process_time() - self.cpu_start
        elapsed = time.time() - started
        return max(MIN_INTERVAL, cost / target, (spent + cost) / target - elapsed)

    def _own_addresses(self):
        addresses = set(["127.0.0.1", "::1"])
        net = "/proc/self/net"
        try:
            with _open_text(os.path.join(net, "fib_trie")) as handle:
                fib = handle.read()
            with _open_text(os.path.join(net, "route")) as handle:
                route = handle.read()
            addresses.update(entry[1] for entry in ipv4_addresses(fib, route))
        except OSError:
            pass
        try:
            with _open_text(os.path.join(net, "if_inet6")) as handle:
                addresses.update(entry[2] for entry in parse_if_inet6(handle))
        except OSError:
            pass
        return addresses

    def to_dict(self, requested, start_at, started):
        """The snapshot's `window` section (docs/snapshot.md)."""
        return {
            "version": WINDOW_VERSION,
            "requested": requested,
            "start_at": start_at,
            "started_at": round(started, 3),
            "ended_at": round(self.ended, 3),
            "interval": round(self.interval or 0.0, 3),
            "samples": self.samples,
            "first_sample_cpu": round(self.first_cost or 0.0, 4),
            "cpu_seconds": round(self.cpu, 3),
            "cpu_share": round(cpu_share(self.socket_count), 3),
            "sources": dict((source.name, source.to_dict()) for source in self.sources) or {
                name: {"state": "missing", "events": 0, "lost": 0,
                       "reason": "not the live /proc of the payload's own namespace"}
                for name in ("sock_destroy", "conntrack", "proc_connector")},
            "max_flows": self.obs.max_keys,
            "flows_overflow": self.obs.overflow,
            "flows": self.obs.flows_document(self.samples),
            "max_processes": self.obs.max_processes,
            "processes_overflow": self.obs.processes_overflow,
            "processes": self.obs.processes_document(),
        }


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

class SocketList(list):
    """Socket records (tuples) of a namespace, turned into JSON objects only when written.

    One dict per socket would cost about 600 bytes each; tuples keep the peak memory of a
    capture of 100,000 sockets far under 64 MiB.
    """


# Most records (TCP/UDP) carry no optional field; their text comes from the kernel's own
# vocabulary (protocol and state names, inet_ntop addresses, integers), which needs no JSON
# escaping, so they are formatted directly. Records with optional fields go through json.
_PLAIN_SOCKET = ('{"proto":"%s","inode":%d,"local":"%s","local_port":%d,"remote":"%s",'
                 '"remote_port":%d,"state":"%s","uid":%d}')
_CHUNK = 4096


def _socket_json(records, dumps):
    plain = _PLAIN_SOCKET
    return ",".join([plain % record[:8] if record[8] is None else dumps(socket_to_dict(record))
                     for record in records])


_TCP_INFO_ROW = '"%d":[%d,%d,%d,%d,%d,%d]'


def _write_tcp_info(section, write, dumps):
    """A `tcp_info` section, its rows (TcpInfoRows) formatted in chunks, sorted by inode."""
    rows = section["sockets"]
    if not isinstance(rows, TcpInfoRows):
        write(dumps(section))
        return
    write('{"version":%d,"columns":%s,"sockets":{' % (section["version"], dumps(section["columns"])))
    inodes = sorted(rows)
    for start in range(0, len(inodes), _CHUNK):
        if start:
            write(",")
        write(",".join([_TCP_INFO_ROW % ((inode,) + rows[inode]) if rows[inode][0] is not None
                        else '"%d":%s' % (inode, dumps(list(rows[inode])))  # before Linux 4.1: nulls
                        for inode in inodes[start:start + _CHUNK]]))
    write("}}")


def write_json(document, write):
    """Write a snapshot document as compact ASCII JSON through `write(str)`, in pieces.

    The namespaces' sockets (SocketList or lists of dicts) and the processes are written in
    chunks, so that the whole text never has to be held in memory.
    """
    dumps = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode

    def write_list(items, encode_chunk):
        write("[")
        for start in range(0, len(items), _CHUNK):
            if start:
                write(",")
            write(encode_chunk(items[start:start + _CHUNK]))
        write("]")

    def dict_chunk(items):
        return dumps(items)[1:-1]

    def socket_chunk(items):
        if isinstance(items, SocketList) or (items and isinstance(items[0], tuple)):
            return _socket_json(items, dumps)
        return dumps(items)[1:-1]

    write("{")
    for index, (key, value) in enumerate(document.items()):
        write("," if index else "")
        write(dumps(key) + ":")
        if key == "namespaces":
            write("[")
            for number, namespace in enumerate(value):
                write("," if number else "")
                write("{")
                for position, (name, item) in enumerate(namespace.items()):
                    write("," if position else "")
                    write(dumps(name) + ":")
                    if name == "sockets":
                        write_list(item, socket_chunk)
                    elif name == "tcp_info":
                        _write_tcp_info(item, write, dumps)
                    else:
                        write(dumps(item))
                write("}")
            write("]")
        elif key == "processes":
            write_list(value, dict_chunk)
        else:
            write(dumps(value))
    write("}")


def dumps_document(document):
    """The snapshot as one JSON string (for callers that want it in memory)."""
    parts = []
    write_json(document, parts.append)
    return "".join(parts)


def write_plain(document, stream):
    """Write the snapshot as JSON followed by a newline to a binary stream."""
    write_json(document, lambda text: stream.write(text.encode("ascii")))
    stream.write(b"\n")


def write_framed(document, stream):
    """Write the snapshot in the transport framing (docs/snapshot.md, "Transport framing").

    BEGIN line with the length and SHA-256 of the zlib-compressed JSON, the compressed bytes in
    base64 lines of 76 characters, then the END line. The framing lets the reader find the
    snapshot after whatever a login shell prints, and tell a cut-off transfer from a whole one.
    """
    compressor = zlib.compressobj(6)
    parts = []

    def write(text):
        parts.append(compressor.compress(text.encode("ascii")))

    write_json(document, write)
    parts.append(compressor.flush())
    data = b"".join(parts)
    del parts[:]
    header = "%s %d %d %s\n" % (FRAME_BEGIN, FRAME_VERSION, len(data), hashlib.sha256(data).hexdigest())
    stream.write(header.encode("ascii"))
    stream.write(base64.encodebytes(data))
    stream.write(("%s\n" % FRAME_END).encode("ascii"))


def window_problem(window, start_at, now):
    """Why `--window` / `--start-at` cannot be honoured (a phrase), or None."""
    if not 0 <= window <= MAX_WINDOW or window != window:
        return "--window must be between 0 and %d seconds" % MAX_WINDOW
    if start_at is not None:
        if start_at != start_at or start_at - now > MAX_START_AHEAD:
            return "--start-at is more than %d s ahead of this machine's clock" % MAX_START_AHEAD
        if window <= 0:
            return "--start-at needs --window"
    return None


def capture(proc_root="/proc", etc_root="/etc", use_netlink=True, window=0.0, start_at=None,
            sleep=time.sleep):
    """The snapshot document: one instant, or with `window` seconds of observation before it.

    With `start_at` (a Unix time at most MAX_START_AHEAD seconds ahead), the window starts
    then; a time in the past starts it now. The instant part (namespaces, processes) is
    captured at the end of the window, so that it is the window's last sample.
    """
    if window <= 0:
        return collect(proc_root, etc_root, use_netlink=use_netlink, compact=True)
    if start_at is not None:
        delay = start_at - time.time()
        if delay > 0:
            sleep(delay)
    started = time.time()
    observer = Window(proc_root, use_netlink=use_netlink)
    observer.run(window, started)
    document = collect(proc_root, etc_root, use_netlink=use_netlink, compact=True, second_pass=True)
    document["window"] = observer.to_dict(window, start_at, started)
    return document


def main(argv=None):
    """Command line entry: capture and write the snapshot to stdout. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="capture.py", description="Capture a netviz snapshot of this machine (JSON on stdout).")
    parser.add_argument("--framed", action="store_true",
                        help="write the zlib+base64 transport framing instead of plain JSON")
    parser.add_argument("--proc-root", default="/proc", help="where procfs is mounted")
    parser.add_argument("--etc-root", default="/etc", help="where passwd and machine-id live")
    parser.add_argument("--no-netlink", action="store_true",
                        help="read sockets from /proc/net text only (no sock_diag)")
    parser.add_argument("--ssh-session", action="store_true",
                        help="name the sshd processes this runs under (the collector's own session)")
    parser.add_argument("--window", type=float, default=0.0, metavar="SECONDS",
                        help="observe for this many seconds before the snapshot (0: one instant)")
    parser.add_argument("--start-at", type=float, default=None, metavar="UNIX_TIME",
                        help="start the window at this time (at most %d s ahead)" % MAX_START_AHEAD)
    options = parser.parse_args(argv)
    problem = window_problem(options.window, options.start_at, time.time())
    if problem:
        sys.stderr.write("capture: %s\n" % problem)
        return 2
    if options.window > 0 and __name__ == "__main__":
        # Interrupted, the payload ends at once and leaves nothing: the kernel's default action.
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        document = capture(options.proc_root, options.etc_root, not options.no_netlink,
                           options.window, options.start_at)
    except OSError as error:
        sys.stderr.write("capture: cannot read %s: %s\n" % (options.proc_root, error))
        return 1
    own_pid = _own_pid_in(options.proc_root)
    if options.ssh_session and own_pid is not None:
        document["ssh_session"] = {"pids": ssh_session_pids(document["processes"], os.getppid())}
    stream = sys.stdout.buffer
    try:
        if options.framed:
            write_framed(document, stream)
        else:
            write_plain(document, stream)
        stream.flush()
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

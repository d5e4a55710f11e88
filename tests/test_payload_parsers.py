"""The payload's pure parsers on golden /proc text (as this kernel writes it, little-endian)."""

import sys

import pytest

from netviz.payload import capture

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="golden text is little-endian")

TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:C409 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 317746 1 000000000c3256b2 100 0 0 10 0
   1: 0000000000000000FFFF00000C004D0A:C409 0000000000000000FFFF00000100007F:B972 01 00000000:00000000 00:00000000 00000000  1000        0 317748 1 00000000984417a8 20 0 0 10 -1
   2: 000077FD000000000000000012000000:0050 000077FD000000000000000013000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 400001 1 00000000984417a8 20 0 0 10 -1
   3: 000077FD000000000000000012000000:0050 000077FD000000000000000013000000:D432 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   4: 000077FD000000000000000012000000:0050 000077FD000000000000000013000000:D433 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   5: 000077FD000000000000000012000000:0050 000077FD000000000000000013000000:D434 03 00000000:00000000 01:00000066 00000000     0        0 0 1 0000000000000000
"""

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 16848 1 ffff98a3a9677000 100 0 0 10 0
   1: 0C004D0A:D431 0D004D0A:0050 01 00000000:00000000 02:000A1A5B 00000000     0        0 5551 2 ffff98a3a9677000 20 4 30 10 -1
   2: 0C004D0A:D439 0D004D0A:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 0C004D0A:D43A 0D004D0A:00
"""

UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
15611: 0100007F:A425 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 317749 2 000000007da1f626 0
15612: 0100007F:A426 0100007F:0035 01 00000000:00000000 00:00000000 00000000   101        0 317750 2 000000007da1f626 0
"""

RAW = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1870533 2 ffff98a38f5430c0 0
"""

RAW6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   58: 00000000000000000000000000000000:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   100        0 15881 2 ffff98a3a5c0a400 0
"""

ICMP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   3: 00000000:0007 0100007F:0000 01 00000000:00000000 00:00000000 00000000  1000        0 90210 2 ffff98a38f5430c0 0
"""

ICMP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   9: 00000000000000000000000000000000:0009 00000000000000000000000001000000:0000 01 00000000:00000000 00:00000000 00000000  1000        0 90211 2 ffff98a38f5430c0 0
"""

PACKET = """\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
ffff98a3a6419800 3      3    88cc   2     1 0      100    15804
ffff98a3a6419c00 3      2    0003   0     1 0      0      15805
"""

SCTP_EPS = """\
 ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
ffff98a3a73a4300 ffff98a2843779c0 2   10  22   8888      0 1870579 0.0.0.0
ffff98a3a73a4400 ffff98a2843779d0 1   10  23   3868      0 1870600 10.77.0.12 fd77:0000:0000:0000:0000:0000:0000:0012
ffff98a3a73a4500 ffff98a2843779e0 1   1   24   40384     0 1870580 127.0.0.1
"""

SCTP_ASSOCS = (
    " ASSOC     SOCK   STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE LPORT RPORT LADDRS <-> "
    "RADDRS HBINT INS OUTS MAXRT T1X T2X RTXC wmema wmemq sndbuf rcvbuf\n"
    "ffff98a3286d5800 ffff98a284374000 2   1   3  0       2        0        0       0 1870580 40384 "
    " 8888  127.0.0.1 149.202.60.45 <-> *127.0.0.1 149.202.60.45 \t    7500    10    10   10    0"
    "    0        0        1        0   212992   212992\n"
    "0000000000000000 0000000000000000 2   10  3  0       5        0        0       0 1870579 8888 "
    " 40384 *127.0.0.1 <-> *127.0.0.1 \t    7500    10    10   10    0    0        0        1"
    "        0   212992   212992\n"
)

IF_INET6 = """\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
fd770000000000000000000000000012 04 40 00 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
"""

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.77.0.0/16 2 0 2
        +-- 10.77.0.0/28 2 0 2
           |-- 10.77.0.0
              /24 link UNICAST
              /16 link UNICAST
           |-- 10.77.0.12
              /32 host LOCAL
        |-- 10.77.0.255
           /32 link BROADCAST
     |-- 10.99.1.1
        /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.77.0.12
        /32 host LOCAL
"""

ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t01004D0A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t00004D0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""

CONNTRACK = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.0.13 dst=10.77.0.12 sport=51234 dport=8080 src=172.17.0.2 dst=10.77.0.13 sport=80 dport=51234 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=10.77.0.13 dst=10.77.0.53 sport=40000 dport=53 [UNREPLIED] src=10.77.0.53 dst=10.77.0.13 sport=53 dport=40000 mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=10.77.0.13 dst=10.77.0.12 type=8 code=0 id=7 src=10.77.0.12 dst=10.77.0.13 type=0 code=0 id=7 mark=0 use=2
ipv6     10 tcp      6 117 TIME_WAIT src=fd77:0000:0000:0000:0000:0000:0000:0013 dst=fd77:0000:0000:0000:0000:0000:0000:0012 sport=40001 dport=443 src=fd77:0000:0000:0000:0000:0000:0000:0012 dst=fd77:0000:0000:0000:0000:0000:0000:0013 sport=443 dport=40001 [ASSURED] mark=0 use=1
garbage line
"""


def as_dicts(records):
    return [capture.socket_to_dict(r) for r in records]


def test_ipv6_words_are_host_order_exact():
    assert capture.decode_ipv6_hex("000077FD000000000000000012000000") == "fd77::12"
    assert capture.decode_ipv6_hex("0000000000000000FFFF00000C004D0A") == "::ffff:10.77.0.12"
    assert capture.decode_ipv6_hex("00000000000000000000000001000000") == "::1"
    assert capture.decode_ipv4_hex("0C004D0A") == "10.77.0.12"


def test_tcp6_rows_with_v4_mapped_and_inode_zero_rows():
    records, unkeyed = capture.parse_inet_table(TCP6, "tcp6")
    rows = as_dicts(records)
    assert [r["inode"] for r in rows] == [317746, 317748, 400001]
    assert rows[0] == {"proto": "tcp6", "inode": 317746, "local": "::", "local_port": 50185,
                       "remote": "::", "remote_port": 0, "state": "LISTEN", "uid": 0}
    assert rows[1]["local"] == "::ffff:10.77.0.12" and rows[1]["remote"] == "::ffff:127.0.0.1"
    assert rows[1]["uid"] == 1000 and rows[1]["state"] == "ESTABLISHED"
    assert rows[2]["local"] == "fd77::12" and rows[2]["local_port"] == 80
    assert rows[2]["remote"] == "fd77::13" and rows[2]["remote_port"] == 0xD431
    # TIME_WAIT and embryonic rows share inode 0: counted, never keyed.
    assert unkeyed == {"TIME_WAIT": 2, "SYN_RECV": 1}


def test_tcp_v4_skips_cut_off_rows():
    records, unkeyed = capture.parse_inet_table(TCP, "tcp")
    rows = as_dicts(records)
    assert [(r["local"], r["local_port"], r["state"], r["uid"]) for r in rows] == [
        ("127.0.0.1", 8080, "LISTEN", 101), ("10.77.0.12", 0xD431, "ESTABLISHED", 0)]
    assert rows[1]["remote"] == "10.77.0.13" and rows[1]["remote_port"] == 80
    assert unkeyed == {"TIME_WAIT": 1}


def test_udp_unconnected_is_close_and_connected_is_established():
    rows = as_dicts(capture.parse_inet_table(UDP, "udp")[0])
    assert [(r["local_port"], r["remote"], r["remote_port"], r["state"]) for r in rows] == [
        (0xA425, "0.0.0.0", 0, "CLOSE"), (0xA426, "127.0.0.1", 53, "ESTABLISHED")]


def test_raw_sockets_carry_their_ip_protocol():
    (raw,) = as_dicts(capture.parse_inet_table(RAW, "raw")[0])
    assert raw["protocol"] == 1 and raw["local_port"] == 1 and raw["inode"] == 1870533
    (raw6,) = as_dicts(capture.parse_inet_table(RAW6, "raw6")[0])
    assert raw6["protocol"] == 58 and raw6["local"] == "::" and raw6["uid"] == 100


def test_icmp_ping_sockets_v4_and_v6():
    (ping,) = as_dicts(capture.parse_inet_table(ICMP, "icmp")[0])
    assert (ping["proto"], ping["local_port"], ping["remote"], ping["uid"]) == ("icmp", 7, "127.0.0.1", 1000)
    (ping6,) = as_dicts(capture.parse_inet_table(ICMP6, "icmp6")[0])
    assert (ping6["proto"], ping6["remote"], ping6["inode"]) == ("icmp6", "::1", 90211)
    assert "protocol" not in ping6


def test_packet_sockets_name_their_interface():
    records, unkeyed = capture.parse_packet(PACKET, {2: "eth0"})
    lldp, arp = as_dicts(records)
    assert lldp == {"proto": "packet", "inode": 15804, "local": None, "local_port": None,
                    "remote": None, "remote_port": None, "state": "CLOSE", "uid": 100,
                    "protocol": 0x88CC, "interface": "eth0", "packet_type": "raw"}
    assert (arp["interface"], arp["packet_type"], arp["protocol"]) == ("*", "dgram", 3)
    assert unkeyed == {}
    assert as_dicts(capture.parse_packet(PACKET)[0])[0]["interface"] == "if2"


def test_sctp_endpoints_and_associations():
    endpoints = capture.parse_sctp_eps(SCTP_EPS)
    associations = capture.parse_sctp_assocs(SCTP_ASSOCS)
    eps = as_dicts(endpoints)
    assert eps[1]["local"] == "10.77.0.12" and eps[1]["local_all"] == ["10.77.0.12", "fd77::12"]
    assert eps[0]["state"] == "LISTEN" and eps[0]["local_port"] == 8888
    client, server_side = as_dicts(associations)
    assert client["inode"] == 1870580 and client["local_port"] == 40384 and client["remote_port"] == 8888
    assert client["local_all"] == ["127.0.0.1", "149.202.60.45"]
    assert client["remote"] == "127.0.0.1" and client["remote_all"] == ["127.0.0.1", "149.202.60.45"]
    assert client["state"] == "ESTABLISHED" and client["sctp_state"] == "ESTABLISHED"
    merged = as_dicts(capture.merge_sctp(endpoints, associations))
    # The client's endpoint is described by its association; the listening endpoint stays,
    # next to the association that shares its inode (one-to-many style).
    assert sorted((r["inode"], r["state"]) for r in merged) == [
        (1870579, "ESTABLISHED"), (1870579, "LISTEN"), (1870580, "ESTABLISHED"), (1870600, "LISTEN")]


def test_if_inet6_is_network_order_with_names():
    assert capture.parse_if_inet6(IF_INET6) == [
        (4, "eth0", "fe80::fc:ff:fe00:1", 64), (4, "eth0", "fd77::12", 64), (1, "lo", "::1", 128)]


def test_ipv4_addresses_from_fib_trie_and_route():
    assert capture.ipv4_addresses(FIB_TRIE, ROUTE) == [
        ("eth0", "10.77.0.12", 24),  # the longest link route wins over docker0's /16
        ("", "10.99.1.1", 32),  # a /32 with no link route: interface unknown
        ("lo", "127.0.0.1", 8),
    ]


def test_interface_indexes_from_igmp_and_dev_mcast():
    igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n1\tlo        :     1      V3\n" \
           "\t\t\t\t010000E0     1 0:00000000\t\t0\n4\teth0      :     1      V3\n"
    dev_mcast = "7    br-lan          1     0     01005e000001\n"
    assert capture.parse_interface_indexes(igmp, dev_mcast) == {1: "lo", 4: "eth0", 7: "br-lan"}


def test_conntrack_tuples_state_and_portless_protocols():
    entries, truncated = capture.parse_nf_conntrack(CONNTRACK)
    assert not truncated and len(entries) == 4
    dnat, dns, ping, v6 = entries
    assert dnat == {"proto": "tcp", "state": "ESTABLISHED",
                    "original": {"src": "10.77.0.13", "dst": "10.77.0.12", "sport": 51234, "dport": 8080},
                    "reply": {"src": "172.17.0.2", "dst": "10.77.0.13", "sport": 80, "dport": 51234}}
    assert dns["state"] is None and dns["reply"]["sport"] == 53
    assert ping["proto"] == "icmp" and ping["original"]["sport"] is None
    assert v6["original"]["src"] == "fd77::13" and v6["state"] == "TIME_WAIT"
    assert capture.parse_nf_conntrack(CONNTRACK, limit=1) == (entries[:1], True)


def test_old_ip_conntrack_lines_without_l3_fields():
    line = "tcp      6 117 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 use=1\n"
    (entry,), _ = capture.parse_nf_conntrack(line)
    assert entry["original"]["dport"] == 2 and entry["reply"]["src"] == "10.0.0.2"


def test_status_real_and_effective_uid():
    status = "Name:\tsu\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t7\n" \
             "TracerPid:\t0\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n"
    assert capture.parse_status(status) == {"ppid": 7, "uid": 1000, "euid": 0}


def test_odd_names_survive_exactly():
    assert capture.decode_text(b"caf\xc3\xa9") == ("café", None)
    text, hexed = capture.decode_text(b"bad\xff)name")
    assert text == "bad\\xff)name" and bytes.fromhex(hexed) == b"bad\xff)name"
    assert capture.decode_text(b'a\nb "q" (x)') == ('a\nb "q" (x)', None)
    assert capture.parse_cmdline(b"python3\0-c\0print('a b')\0") == [b"python3", b"-c", b"print('a b')"]
    assert capture.parse_cmdline(b"nginx: worker process") == [b"nginx: worker process"]
    assert capture.parse_cmdline(b"") == []


def test_passwd_first_entry_wins():
    assert capture.parse_passwd("root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/:/bin/sh\n+::::::\n") == {0: "root"}


def test_parsers_accept_iterables_of_lines():
    assert capture.parse_inet_table(iter(UDP.splitlines(True)), "udp") == capture.parse_inet_table(UDP, "udp")


from hypothesis import given, settings, strategies as st  # noqa: E402

# Lines that look like /proc text (hex, colons, spaces, table words) and plain noise.
proc_like = st.lists(st.one_of(
    st.text(alphabet="0123456789ABCDEFabcdef: |-+/*<->\t\n=.", max_size=120),
    st.sampled_from(TCP6.splitlines() + SCTP_ASSOCS.splitlines() + FIB_TRIE.splitlines()
                    + CONNTRACK.splitlines() + PACKET.splitlines()),
    st.text(max_size=60)), max_size=12).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(proc_like)
def test_parsers_never_raise_on_damaged_text(text):
    for proto in ("tcp", "tcp6", "raw", "icmp6"):
        capture.parse_inet_table(text, proto)
    capture.parse_packet(text)
    capture.merge_sctp(capture.parse_sctp_eps(text), capture.parse_sctp_assocs(text))
    capture.parse_if_inet6(text)
    capture.ipv4_addresses(text, text)
    capture.parse_interface_indexes(text)
    capture.parse_nf_conntrack(text)
    capture.parse_passwd(text)


def test_sockstat_says_when_tcp_tables_are_empty():
    stats = capture.parse_sockstat("sockets: used 17\nTCP: inuse 0 orphan 0 tw 0 alloc 1 mem 0\n"
                                   "UDP: inuse 2 mem 1\n")
    stats.update(capture.parse_sockstat("TCP6: inuse 3\nUDP6: inuse 0\n"))
    assert stats["TCP"] == {"inuse": 0, "orphan": 0, "tw": 0, "alloc": 1, "mem": 0}
    assert capture.tcp_table_is_empty(stats, "tcp") is True
    assert capture.tcp_table_is_empty(stats, "tcp6") is False
    assert capture.tcp_table_is_empty(stats, "udp") is False  # only the costly TCP walks are skipped
    stats["TCP"]["tw"] = 5  # TIME_WAIT rows may be in either table
    assert capture.tcp_table_is_empty(stats, "tcp") is False
    assert capture.tcp_table_is_empty({}, "tcp") is False  # no counters: read the table


def test_fib_trie_leaves_that_are_not_addresses_give_no_route():
    """Found by hypothesis: a cut or garbled leaf line must not reach the snapshot as an address."""
    text = ("Local:\n"
            "          |--         |--         |-- 192.0.2.0\n              /32 host LOCAL\n"
            "     |-- 10.0.0.300\n        /32 host LOCAL\n"
            "     |-- 10.0.0.7\n        /32 host LOCAL\n")
    assert capture.parse_fib_trie(text) == [("Local", "10.0.0.7", 32, "host", "LOCAL")]

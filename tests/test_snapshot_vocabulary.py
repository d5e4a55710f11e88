"""The payload's copies of the format's vocabulary are the netviz side's, name for name.

netviz/payload/capture.py is sent alone to the machines and cannot import netviz, so it spells the
schema name, the frame markers, the canonical form of addresses and the socket kind names itself.
These tests pin every copy to its definition (netviz/snapshot/format.py, netviz/kinds.py): a
change on one side only fails here, not on a machine.
"""

from __future__ import annotations

import ast
import inspect
import ipaddress

from hypothesis import given, strategies as st

import netviz.kinds as kinds
from netviz.payload import capture
from netviz.snapshot import format as snapshot_format


def test_the_schema_name_is_the_same() -> None:
    assert capture.SCHEMA == snapshot_format.SCHEMA


def test_the_frame_markers_are_the_same() -> None:
    assert capture.FRAME_BEGIN == snapshot_format.FRAME_BEGIN
    assert capture.FRAME_END == snapshot_format.FRAME_END
    assert capture.FRAME_VERSION == snapshot_format.FRAME_VERSION


ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: address.exploded),  # the full form %pI6 writes
    st.ip_addresses(v=4).map(lambda address: f"::ffff:{address}"),
    st.text(alphabet="0123456789abcdef.:x%", max_size=45),  # mostly not addresses
)


@given(ADDRESSES)
def test_canonical_addresses_are_the_same(text: str) -> None:
    assert capture.canonical_address(text) == snapshot_format.canonical_address(text)


def test_canonical_address_is_what_inet_ntop_writes() -> None:
    assert snapshot_format.canonical_address("fd77:0:0:0::13") == "fd77::13"
    assert snapshot_format.canonical_address("::FFFF:10.0.0.1") == "::ffff:10.0.0.1"
    assert snapshot_format.canonical_address("10.0.0.256") is None
    assert snapshot_format.canonical_address(str(ipaddress.ip_address("10.1.2.3"))) == "10.1.2.3"


def _payload_record_kinds() -> set[str]:
    """The kind names the payload writes as literals: first item of each tuple appended to `records`."""
    tree = ast.parse(inspect.getsource(capture))
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "append"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "records"
                and node.args and isinstance(node.args[0], ast.Tuple)):
            first = node.args[0].elts[0]
            if isinstance(first, ast.Constant):
                names.add(first.value)
    return names


def test_the_payload_writes_exactly_the_socket_kinds() -> None:
    inet = {name for _, name in capture.INET_TABLES}
    literal = _payload_record_kinds()
    assert literal and not literal & inet  # packet, sctp: the tables not in the inet format
    assert inet | literal == kinds.KIND_NAMES
    assert set(capture.RAW_PROTOS) == kinds.RAW_KINDS
    assert set(capture.NETLINK_TABLES) <= kinds.KIND_NAMES


def test_every_flow_protocol_is_named_as_conntrack_names_it() -> None:
    """Conntrack entries join by protocol name: each protocol of a flow must be one the payload
    reports for conntrack, and join as itself."""
    assert set(kinds.PROTOCOLS) <= set(capture.CONNTRACK_PROTOCOLS.values())
    assert all(kinds.protocol_of(protocol) == protocol for protocol in kinds.PROTOCOLS)


def test_the_traits_agree_with_the_names() -> None:
    for kind in kinds.KINDS:
        if kind.name in {name for _, name in capture.INET_TABLES}:
            # the payload decodes a table's addresses by this same rule
            assert kind.families == ((6,) if kind.name.endswith("6") else (4,)), kind
        assert kind.ingress == (kind.protocol is None), kind
        assert kind.label == (kind.protocol or kind.name), kind
    assert kinds.PROTOCOLS == ("tcp", "udp", "udplite", "sctp")
    assert kinds.INGRESS_KINDS == {"raw", "raw6", "packet", "icmp", "icmp6"}
    assert kinds.DATAGRAM_PROTOCOLS == {"udp", "udplite"}


def test_what_the_stitch_joins_by() -> None:
    """The tables the stitch joined by before it took them from netviz.kinds, entry for entry."""
    assert kinds.JOIN_PROTOCOL == {
        "tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "udplite": "udplite", "udplite6": "udplite",
        "sctp": "sctp", "sctp6": "sctp",
    }
    assert kinds.protocol_of("icmp") is None and kinds.protocol_of("gre") is None

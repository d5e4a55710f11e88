"""DOT and JSON are deterministic: compared byte for byte with golden files.

Regenerate after an intended change with NETVIZ_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from snapbuilder import Machine

from netviz.graph import GRAPH_SCHEMA
from netviz.render import render
from netviz.stitch import stitch

GOLDEN = Path(__file__).parent / "fixtures" / "graph"


def fleet() -> list:
    """Three machines: web -> db (tcp, x2), web loopback to redis, udp dns, a NAT'd container,
    an ingress socket, outside peers, an undirected and an inferred flow."""
    web = Machine("web", "10.0.0.1", "fd00::1")
    db = Machine("db", "10.0.0.2")
    gw = Machine("gw", "10.0.0.3", "172.17.0.1")
    web.process(10, "app", user="www-data", cmdline=["app", "--port", "8080"])
    web.process(11, "redis-server", user="redis")
    web.process(12, "dhclient", user="root")
    web.listen(11, "tcp", "127.0.0.1:6379")
    web.listen(10, "tcp6", "[::]:8080")
    web.connect(10, "tcp", "127.0.0.1:45000", "127.0.0.1:6379")
    web.connect(11, "tcp", "127.0.0.1:6379", "127.0.0.1:45000")
    web.socket(12, "packet", None, local_port=0, protocol=0x0800, interface="eth0")
    web.connect(10, "tcp6", "[::ffff:10.0.0.1]:8080", "[::ffff:203.0.113.5]:50000")
    db.process(20, "postgres", user="postgres", context="unconfined")
    db.process(21, "postgres", user="postgres", context="unconfined")
    db.process(22, "unbound", user="unbound")
    db.process(23, "gossip", user="root")
    db.listen([20, 21], "tcp", "0.0.0.0:5432")
    db.listen(22, "udp", "0.0.0.0:53")
    for port in (40000, 40001):
        web.connect(10, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
        db.connect(21, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
    web.connect(10, "udp", "10.0.0.1:33000", "10.0.0.2:53")
    db.connect(23, "tcp", "10.0.0.2:7946", "10.0.0.3:7946")
    gw.namespace(7001, "172.17.0.2")
    gw.process(30, "gossip", user="root")
    gw.process(31, "api", user="nobody", netns=7001)
    gw.listen(31, "tcp", "0.0.0.0:80", netns=7001)
    gw.connect(30, "tcp", "10.0.0.3:7946", "10.0.0.2:7946")
    db.connect(20, "tcp", "10.0.0.2:41000", "10.0.0.3:8080")
    gw.conntrack("tcp", ("10.0.0.2:41000", "10.0.0.3:8080"), ("172.17.0.2:80", "10.0.0.2:41000"))
    gw.connect(31, "tcp", "172.17.0.2:80", "10.0.0.2:41000", netns=7001)
    web.connect(10, "tcp", "10.0.0.1:40500", "10.0.0.3:9100")  # gw's exporter socket not captured
    gw.process(32, "node_exporter", user="nobody")
    gw.listen(32, "tcp", "0.0.0.0:9100")
    return [web.build(), db.build(), gw.build()]


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("NETVIZ_UPDATE_GOLDEN"):
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} changed; regenerate with NETVIZ_UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize("fmt", ["dot", "json"])
def test_output_matches_the_golden_file(fmt):
    check_golden(f"fleet.{fmt}", render(stitch(fleet(), show_external=True), fmt))


@pytest.mark.parametrize("fmt", ["dot", "json"])
def test_output_does_not_depend_on_snapshot_order(fmt):
    snapshots = fleet()
    expected = render(stitch(snapshots), fmt)
    for seed in range(5):
        shuffled = snapshots[:]
        random.Random(seed).shuffle(shuffled)
        assert render(stitch(shuffled), fmt) == expected


def test_json_has_the_documented_keys():
    document = json.loads(render(stitch(fleet()), "json"))
    assert document["schema"] == GRAPH_SCHEMA
    assert set(document) >= {"schema", "group_by", "hosts", "nodes", "flows", "summary"}
    assert set(document["hosts"][0]) >= {
        "name", "hostname", "machine_id", "addresses", "captured_at", "stale", "complete", "legacy",
        "outside", "unresolved",
    }
    assert set(document["nodes"][0]) >= {
        "id", "host", "kind", "comm", "pids", "users", "contexts", "cmdline", "listening", "ingress", "sockets",
    }
    assert set(document["flows"][0]) >= {
        "id", "client", "server", "proto", "server_port", "server_address", "count", "directed", "inferred", "via",
    }
    ids = {node["id"] for node in document["nodes"]}
    assert all(flow["client"] in ids and flow["server"] in ids for flow in document["flows"])
    assert document["summary"]["flows"] == len(document["flows"])

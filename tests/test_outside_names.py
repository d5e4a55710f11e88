"""Peers outside the group named by the observing machine's /etc/hosts (--show-external): the
payload's reader of the file, the snapshot's `hosts_file` through the cache, and every format."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import pytest
from snapbuilder import Machine

from netviz.payload.capture import MAX_HOSTS_ENTRIES, read_hosts_file
from netviz.render import render
from netviz.snapshot import dump_snapshot, parse_snapshot, snapshot_to_document
from netviz.stitch import stitch

HOSTS = """\
# static names
127.0.0.1\tlocalhost
203.0.113.7   backup.example.net backup   # the nightly target
198.51.100.3  monitor
fe80::1%eth0  router
not-an-address  nothing
2001:db8:0:0::5  mirror.example.org
203.0.113.7   backup-alias backup
10.9.9.9
"""


def test_the_payload_reads_names_by_canonical_address_skipping_what_is_not_one(tmp_path):
    (tmp_path / "hosts").write_text(HOSTS + "192.0.2.1 bell\x07name fine\n")
    assert read_hosts_file(str(tmp_path)) == [
        ["127.0.0.1", ["localhost"]],
        ["203.0.113.7", ["backup.example.net", "backup", "backup-alias"]],
        ["198.51.100.3", ["monitor"]],
        ["fe80::1", ["router"]],
        ["2001:db8::5", ["mirror.example.org"]],
        ["192.0.2.1", ["fine"]],  # a name holding a control character is dropped
    ]


def test_the_payload_reads_no_fifo_and_bounds_the_entries(tmp_path):
    import os

    os.mkfifo(tmp_path / "hosts")
    assert read_hosts_file(str(tmp_path)) is None  # a FIFO is never opened for reading, never blocks
    os.unlink(tmp_path / "hosts")
    (tmp_path / "hosts").write_text("".join(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255} h{n}\n"
                                            for n in range(MAX_HOSTS_ENTRIES + 50)))
    assert len(read_hosts_file(str(tmp_path))) == MAX_HOSTS_ENTRIES


def _web_with_outside_peers(names: dict):
    web = Machine("web", "10.0.0.1")
    db = Machine("db", "10.0.0.2")
    web.process(100, "app", user="www-data")
    db.process(200, "postgres", user="postgres")
    db.listen(200, "tcp", "0.0.0.0:5432")
    web.listen(100, "tcp", "0.0.0.0:443")
    web.connect(100, "tcp", "10.0.0.1:40001", "203.0.113.7:873")  # outbound, to a named peer
    web.connect(100, "tcp", "10.0.0.1:443", "198.51.100.9:51000")  # inbound, from an unnamed one
    return [dataclasses.replace(web.build(), hosts_names=names), db.build()]


def test_an_outside_peer_carries_the_name_its_observer_gives_it_in_every_format():
    snapshots = _web_with_outside_peers({"203.0.113.7": ("backup.example.net", "backup")})
    graph = stitch(snapshots, show_external=True)
    outside = {node.address: node for node in graph.nodes if node.kind == "outside"}
    assert outside["203.0.113.7"].peer_name == "backup.example.net"
    assert outside["198.51.100.9"].peer_name == ""
    document = json.loads(render(graph, "json"))
    assert {n.get("peer_name") for n in document["nodes"] if n["kind"] == "outside"} == {"backup.example.net", None}
    table = render(graph, "table").decode()
    assert "(outside backup.example.net 203.0.113.7)" in table and "(outside 198.51.100.9)" in table
    dot = render(graph, "dot", detail="full").decode()
    assert "<B>backup.example.net</B><BR/>203.0.113.7" in dot
    if shutil.which("dot"):  # the label is read back by Graphviz as one node's label
        laid = json.loads(subprocess.run(["dot", "-Tjson"], input=dot.encode(), capture_output=True, check=True).stdout)
        labels = [o.get("label", "") for o in laid["objects"] if "nodes" not in o and "subgraphs" not in o]
        assert sum("backup.example.net" in label for label in labels) == 1


def test_the_names_survive_the_cache_and_a_hostile_file_is_refused():
    web = _web_with_outside_peers({"203.0.113.7": ("backup.example.net",)})[0]
    again = parse_snapshot(json.loads(dump_snapshot(web)), "web")
    assert again.hosts_names == {"203.0.113.7": ("backup.example.net",)}
    document = snapshot_to_document(web)
    for bad in ([["203.0.113.7", ["new\nline"]]], [["localhost", ["x"]]], [["203.0.113.7"]], {"a": 1}):
        document["hosts_file"] = bad
        with pytest.raises(Exception, match="hosts_file"):
            parse_snapshot(json.loads(json.dumps(document)), "web")

"""The socket index files a join key and its reverse together (SocketIndex.connections); what a
join reads from it must be what filing each end under its own key would give."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.synth import make_fleet
from netviz.snapshot import Socket, parse_snapshot
from netviz.stitch.addresses import AddressBook
from netviz.stitch.index import Crowd, End, SocketIndex, canonical_key
from netviz.stitch.machines import Machine


def with_extra_sockets(snapshot, sockets):
    first, *others = snapshot.namespaces
    placed = tuple(Socket.of(socket.proto, socket.inode, socket.local, socket.local_port, socket.remote, socket.remote_port,
                          socket.state, socket.uid, first.inode, local_all=socket.local_all,
                          remote_all=socket.remote_all) for socket in sockets)
    first = dataclasses.replace(first, sockets=first.sockets + placed)
    return dataclasses.replace(snapshot, namespaces=(first, *others))


def group():
    """Synthetic machines, two clones (every tuple of theirs shared), sockets connected to
    themselves and SCTP associations over several addresses."""
    snapshots = [parse_snapshot(document, document["host"]["hostname"]) for document in make_fleet(4, 200, seed=3)]
    snapshots += [dataclasses.replace(snapshots[0], name="clone-a"), dataclasses.replace(snapshots[0], name="clone-b")]
    extra = [
        Socket("tcp", 9_000_001, "127.0.0.1", 5000, "127.0.0.1", 5000, "ESTABLISHED", 0),  # connected to itself
        Socket("tcp", 9_000_002, "127.0.0.1", 5000, "127.0.0.1", 5000, "ESTABLISHED", 0),  # and another one
        Socket.of("sctp", 9_000_003, "10.9.0.1", 3868, "10.9.0.2", 40000, "ESTABLISHED", 0,
               local_all=("10.9.0.1", "10.9.1.1"), remote_all=("10.9.0.2", "10.9.1.2")),
        Socket.of("sctp", 9_000_004, "10.9.0.2", 40000, "10.9.0.1", 3868, "ESTABLISHED", 0,
               local_all=("10.9.0.2", "10.9.1.2"), remote_all=("10.9.0.1", "10.9.1.1")),
        Socket("tcp", 9_000_005, "10.9.0.2", 40000, "10.9.0.1", 3868, "ESTABLISHED", 0),  # a key the SCTP end has too
        # two keys that differ only by their kind, or only by their zone (loopback on two machines)
        Socket("tcp", 9_000_006, "10.9.2.1", 7000, "10.9.2.2", 8000, "ESTABLISHED", 0),
        Socket("udp", 9_000_007, "10.9.2.2", 8000, "10.9.2.1", 7000, "ESTABLISHED", 0),
        Socket("tcp", 9_000_008, "127.0.0.1", 7100, "127.0.0.1", 7200, "ESTABLISHED", 0),
    ]
    snapshots[1] = with_extra_sockets(snapshots[1], extra)
    snapshots[2] = with_extra_sockets(snapshots[2], [
        Socket("tcp", 9_000_009, "127.0.0.1", 7200, "127.0.0.1", 7100, "ESTABLISHED", 0)])
    return snapshots


def own_keys(index: SocketIndex, end: End) -> list[tuple]:
    single = len(end.locals_) == 1 and len(end.remotes) == 1
    return [(end.kind, local, end.local_port, far, end.remote_port,
             end.zone if single else index.book.zone(end.machine, end.netns, local, far))
            for local in end.locals_ for far in end.remotes]


# the index keys its dict by the hash of a join key: every key read back exactly even when
# hashes collide (all of them, or many)
COLLIDING = {"python's hash": hash, "one hash for all": lambda key: 0, "seven hashes": lambda key: hash(key) % 7,
             "kind and zone left out": lambda key: hash(key[1:5])}


@pytest.mark.parametrize("key_hash", COLLIDING.values(), ids=COLLIDING.keys())
def test_a_key_reads_back_the_ends_filed_under_it_in_filing_order(key_hash, monkeypatch) -> None:
    monkeypatch.setattr(SocketIndex, "key_hash", staticmethod(key_hash))
    snapshots = group()
    machines = [Machine(number, snapshot, "process") for number, snapshot in enumerate(snapshots)]
    index = SocketIndex(machines, AddressBook(snapshots))
    expected: dict[tuple, list[End]] = {}
    for end in index.ends:
        for key in own_keys(index, end):
            expected.setdefault(key, []).append(end)
    for key, ends in expected.items():
        for asked in (key, canonical_key(key)[0], (key[0], key[3], key[4], key[1], key[2], key[5])):
            assert list(index.bucket(asked)) == expected.get(asked, []), asked
    assert index.crowded == {end for ends in expected.values() if len(ends) > 1 for end in ends}
    # the clones share every tuple: crowded; the SCTP ends and the sockets connected to
    # themselves are in crowds; most connections are a plain pair, filed as one entry
    assert len(index.crowded) > 100
    if key_hash is hash:
        entries = list(index.connections.values())
        pairs = [entry for entry in entries if entry.__class__ is not Crowd and entry.peer is not None]
        assert len(pairs) > 100 and any(entry.__class__ is Crowd for entry in entries) and not index.collided
        assert any(entry.__class__ is End and entry.peer is None for entry in entries)
    else:
        assert len(index.collided) >= 2  # (the keys told apart by their kind or zone alone, at least)
    assert {9_000_001, 9_000_002, 9_000_003, 9_000_004} <= {end.inode for end in index.in_crowds}
    assert all(end.peer is None for end in index.in_crowds)  # a pair turned crowd is no pair
    for first in index.connections.values():
        if first.__class__ is not Crowd and first.peer is not None:  # a plain pair: keyed each other's reverse
            second = first.peer
            assert second.peer is None
            (key,) = own_keys(index, first)
            assert own_keys(index, second) == [(key[0], key[3], key[4], key[1], key[2], key[5])]
            assert index.ends.index(first) < index.ends.index(second)


def test_the_connected_ends_are_let_go_before_the_graph_is_built(mocker) -> None:
    """After the exact and NAT joins only listeners are looked up: the index lets its connected
    ends go, so that the graph is built in the memory they held (1,000 synthetic machines:
    727 -> 671 MiB peak, benchmarks/bench_stitch.py)."""
    import netviz.stitch as stitch_module

    real = stitch_module.build_graph
    seen = []

    def spy(machines, index, links, *rest):
        seen.append((len(index.connections), len(index.ends), len(index.crowded)))
        return real(machines, index, links, *rest)

    mocker.patch.object(stitch_module, "build_graph", side_effect=spy)
    graph = stitch_module.stitch(group())
    assert seen == [(0, 0, 0)]
    assert len(graph.flows) > 10


@pytest.mark.parametrize("key_hash", list(COLLIDING.values())[1:], ids=list(COLLIDING.keys())[1:])
def test_colliding_hashes_give_the_same_graph(key_hash, monkeypatch) -> None:
    from netviz.render.json import render_json
    from netviz.stitch import stitch

    snapshots = group()
    expected = render_json(stitch(snapshots, show_external=True))
    monkeypatch.setattr(SocketIndex, "key_hash", staticmethod(key_hash))
    assert render_json(stitch(snapshots, show_external=True)) == expected

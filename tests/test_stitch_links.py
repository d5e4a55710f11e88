"""Links keep the holders of a link compactly: a tuple while they are few, a set past that."""

from __future__ import annotations

from snapbuilder import Machine

from netviz.stitch import stitch
from netviz.stitch.links import MAX_TUPLE_PIDS, _merged


def test_holders_stay_a_tuple_while_few_and_the_given_sequence_is_never_changed() -> None:
    holders = [7, 9]
    merged = _merged(holders, (9,))
    assert merged is holders  # nothing new: the same object
    merged = _merged(holders, (3, 9))
    assert merged == (7, 9, 3) and holders == [7, 9]
    many = tuple(range(MAX_TUPLE_PIDS))
    assert _merged(many[:-1], many[-1:]) == many
    assert _merged(many, (100,)) == {*many, 100}


def test_a_link_lists_every_holder_of_its_connections_once() -> None:
    """Twenty workers (more than a tuple keeps) each make two connections to one server."""
    web = Machine("web", "10.0.0.1")
    db = Machine("db", "10.0.0.2")
    db.process(200, "postgres", user="postgres")
    db.listen(200, "tcp", "0.0.0.0:5432")
    workers = range(1000, 1020)
    port = 40000
    for pid in workers:
        web.process(pid, "worker")
        for _ in range(2):
            web.connect(pid, "tcp", f"10.0.0.1:{port}", "10.0.0.2:5432")
            db.connect(200, "tcp", "10.0.0.2:5432", f"10.0.0.1:{port}")
            port += 1
    (flow,) = stitch([web.build(), db.build()]).flows
    assert flow.count == 40
    assert flow.client_pids == tuple(workers) and flow.server_pids == (200,)

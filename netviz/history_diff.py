"""The diff of two recorded runs, computed in the database: only what differs is read.

`netviz.diff.compare` compares two RunFacts in memory; reading two runs of 10,000 flows into
RunFacts costs most of a second. Here the sets are compared in SQL on the identities' ids
(EXCEPT, a join on the `(run, flow)` primary key), and only the flows and listeners that changed
are read with their keys. The result is the RunDiff `compare` gives (tests/test_diff.py holds them
equal).
"""

from __future__ import annotations

import sqlite3

from netviz.diff import RunDiff, compare_machines, place_flow_change
from netviz.history import FlowSeen, HistoryError, MachineSeen, RunFacts

_FLOW_COLUMNS = ("f.key, c.key, v.key, c.machine, v.machine, f.proto, f.port, f.via, s.count, s.connections, "
                 "s.first_seen, s.last_seen")
_FLOW_JOINS = "JOIN flow f ON f.id = s.flow JOIN node c ON c.id = f.client JOIN node v ON v.id = f.server"


def read_head(connection: sqlite3.Connection, run_id: str) -> tuple[int, RunFacts]:
    """A recorded run's database id and its facts without flows, nodes or listeners (its machines)."""
    row = connection.execute("SELECT id, run_id, started_at, finished_at, sequence, interrupted, window_seconds "
                             "FROM run WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise HistoryError(f"the history has no run {run_id}")
    facts = RunFacts(row[1], row[2], row[3], row[4], bool(row[5]), row[6])
    for name, status, category, stale, captured in connection.execute(
            "SELECT machine, status, category, stale, captured_at FROM machine_seen WHERE run = ?", (row[0],)):
        facts.machines[name] = MachineSeen(name, status, category, bool(stale), captured)
    return row[0], facts


def diff_recorded(connection: sqlite3.Connection, a_run_id: str, b_run_id: str) -> RunDiff:
    """What changed from recorded run A to recorded run B."""
    a, facts_a = read_head(connection, a_run_id)
    b, facts_b = read_head(connection, b_run_id)
    diff = RunDiff(facts_a, facts_b)
    skip = compare_machines(diff, facts_a, facts_b)
    _flows(connection, diff, a, b, skip)
    _listeners(connection, diff, a, b, skip)
    return diff


def _flows(connection: sqlite3.Connection, diff: RunDiff, a: int, b: int, skip: set[str]) -> None:
    added = _flows_only_in(connection, b, a)
    removed = _flows_only_in(connection, a, b)
    changed = [(FlowSeen(*row[:12]), FlowSeen(*row[:8], *row[12:])) for row in connection.execute(
        f"SELECT {_FLOW_COLUMNS}, t.count, t.connections, t.first_seen, t.last_seen FROM flow_seen s "
        f"JOIN flow_seen t ON t.run = ? AND t.flow = s.flow AND t.count != s.count {_FLOW_JOINS} WHERE s.run = ?",
        (b, a))]
    for before, after in sorted([(None, flow) for flow in added] + [(flow, None) for flow in removed] + changed,
                                key=lambda pair: (pair[1] or pair[0]).key):
        place_flow_change(diff, before, after, skip)
    if skip:  # flows of an unreachable machine whose line did not change were not compared either
        marks = ", ".join("?" * len(skip))
        diff.not_compared += connection.execute(
            f"SELECT count(*) FROM flow_seen s JOIN flow_seen t ON t.run = ? AND t.flow = s.flow "
            f"AND t.count = s.count {_FLOW_JOINS} WHERE s.run = ? AND (c.machine IN ({marks}) "
            f"OR v.machine IN ({marks}))", (b, a, *skip, *skip)).fetchone()[0]


def _flows_only_in(connection: sqlite3.Connection, run: int, other: int) -> list[FlowSeen]:
    return [FlowSeen(*row) for row in connection.execute(
        f"SELECT {_FLOW_COLUMNS} FROM (SELECT flow FROM flow_seen WHERE run = ? EXCEPT "
        f"SELECT flow FROM flow_seen WHERE run = ?) d JOIN flow_seen s ON s.run = ? AND s.flow = d.flow {_FLOW_JOINS}",
        (run, other, run))]


def _listeners(connection: sqlite3.Connection, diff: RunDiff, a: int, b: int, skip: set[str]) -> None:
    """Listeners whose holders differ: the (listener, holder) pairs of one run not in the other."""
    holders: dict[str, tuple[str, set[str], set[str]]] = {}
    for key, machine, run, node in connection.execute(
            "WITH changed(listener) AS (SELECT listener FROM (SELECT listener, node FROM listener_seen WHERE run = ?1 "
            "EXCEPT SELECT listener, node FROM listener_seen WHERE run = ?2) UNION SELECT listener FROM "
            "(SELECT listener, node FROM listener_seen WHERE run = ?2 EXCEPT SELECT listener, node FROM "
            "listener_seen WHERE run = ?1)) "
            "SELECT l.key, l.machine, s.run, n.key FROM changed JOIN listener l ON l.id = changed.listener "
            "JOIN listener_seen s ON s.listener = changed.listener AND s.run IN (?1, ?2) JOIN node n ON n.id = s.node",
            (a, b)):
        entry = holders.setdefault(key, (machine, set(), set()))
        entry[1 if run == a else 2].add(node)
    for key in sorted(holders):
        machine, before, after = holders[key]
        if machine not in skip:
            diff.add_listener_change(key, tuple(sorted(before)), tuple(sorted(after)))

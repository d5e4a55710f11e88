"""The run history: every cached run stitched once and kept in SQLite, so runs can be compared.

The database (`<cache>/history.sqlite`, docs/history.md) is an index of the cache, never a
source of its own: each run is written in one transaction from the run's snapshots, and `sync`
makes the history hold exactly the cache's runs (a run the cache pruned is deleted, a run the
history lacks, after a crash or a SIGKILL between the manifest and the history, is recorded).
So a history that is lost or corrupt is rebuilt from the cached runs (`netviz history --rebuild`).

Every thing is stored under its natural key (netviz.graph: machine, node, flow, listener) once,
in a table of identities; each run stores the identities it saw (`*_seen`), with counts. Runs
are stitched grouped by process, without filters and without outside peers.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Optional, Sequence

from netviz.cache import Run, find_run, list_runs, read_run, run_inputs, trusted_cache_dir
from netviz.errors import NetvizError
from netviz.gcpause import cyclic_gc_paused
from netviz.graph import FlowGraph, listener_key
from netviz.snapshot import Snapshot

HISTORY_FILE = "history.sqlite"
BUSY_TIMEOUT_MS = 60_000  # another collector recording its run: wait, never fail
REBUILD_HINT = "`netviz history --rebuild` recreates it from the cached runs"

# Each step takes the schema from the version before it to its own; a new database runs them all.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: runs, machines, and the identities seen in each run
        """CREATE TABLE run (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, sequence INTEGER,
           started_at REAL NOT NULL, finished_at REAL NOT NULL, interrupted INTEGER NOT NULL,
           window_seconds REAL, machines_ok INTEGER NOT NULL, machines_failed INTEGER NOT NULL,
           flows INTEGER NOT NULL, flows_new INTEGER, flows_gone INTEGER)""",
        """CREATE TABLE machine_seen (run INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
           machine TEXT NOT NULL, status TEXT NOT NULL, category TEXT, stale INTEGER NOT NULL,
           captured_at REAL, PRIMARY KEY (run, machine)) WITHOUT ROWID""",
        """CREATE TABLE node (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, machine TEXT NOT NULL,
           comm TEXT NOT NULL)""",
        """CREATE TABLE node_seen (run INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
           node INTEGER NOT NULL REFERENCES node(id), pids TEXT NOT NULL,
           PRIMARY KEY (run, node)) WITHOUT ROWID""",
        """CREATE TABLE flow (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
           client INTEGER NOT NULL REFERENCES node(id), server INTEGER NOT NULL REFERENCES node(id),
           proto TEXT NOT NULL, port INTEGER NOT NULL, via TEXT)""",
        """CREATE TABLE flow_seen (run INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
           flow INTEGER NOT NULL REFERENCES flow(id), count INTEGER NOT NULL, stale INTEGER NOT NULL,
           connections INTEGER, first_seen REAL, last_seen REAL, PRIMARY KEY (run, flow)) WITHOUT ROWID""",
        """CREATE TABLE listener (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, machine TEXT NOT NULL,
           proto TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL)""",
        """CREATE TABLE listener_seen (run INTEGER NOT NULL REFERENCES run(id) ON DELETE CASCADE,
           listener INTEGER NOT NULL REFERENCES listener(id), node INTEGER NOT NULL REFERENCES node(id),
           PRIMARY KEY (run, listener, node)) WITHOUT ROWID""",
    ),
    (  # 2: timelines read one identity across runs
        "CREATE INDEX flow_seen_by_flow ON flow_seen (flow, run)",
        "CREATE INDEX node_seen_by_node ON node_seen (node, run)",
        "CREATE INDEX run_by_time ON run (started_at)",
    ),
    (  # 3: reference counts instead of the indexes by identity. Each run adds one entry per flow
        # and node to those indexes, each inside its identity's range: a run dirtied pages all
        # over them, and recording slowed with every run kept. A timeline probes the runs instead.
        # (No foreign keys: an identity and its count go together, the count first consulted.)
        "DROP INDEX flow_seen_by_flow",
        "DROP INDEX node_seen_by_node",
        "CREATE TABLE flow_refs (flow INTEGER PRIMARY KEY, runs INTEGER NOT NULL)",
        "CREATE TABLE node_refs (node INTEGER PRIMARY KEY, runs INTEGER NOT NULL)",
        "CREATE TABLE listener_refs (listener INTEGER PRIMARY KEY, runs INTEGER NOT NULL)",
        "INSERT INTO flow_refs SELECT flow, count(*) FROM flow_seen GROUP BY flow",
        "INSERT INTO node_refs SELECT node, count(*) FROM node_seen GROUP BY node",
        "INSERT INTO listener_refs SELECT listener, count(*) FROM listener_seen GROUP BY listener",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
RUN_ORDER = "COALESCE(sequence, -1), started_at, run_id"  # the cache's order (netviz.cache._order)
RUN_ORDER_DESC = "COALESCE(sequence, -1) DESC, started_at DESC, run_id DESC"


class HistoryError(NetvizError):
    """The history database cannot be read or written (missing, corrupt, newer, a full disk)."""


def history_path(cache_root: Path) -> Path:
    """Where a cache keeps its history."""
    return Path(cache_root) / HISTORY_FILE


# ------------------------------------------------------------------------------------------
# opening, the schema and its migrations


def _create_private(path: Path) -> None:
    """Create the database file 0600 (SQLite would use the umask), never through a link."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise HistoryError(f"{path}: not a regular file of yours: refused")


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to `target`, one step per transaction; return the version found."""
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    found = _schema_version(connection)
    if found > SCHEMA_VERSION:
        raise HistoryError(f"the history was written by a newer netviz (schema {found}, this one knows "
                           f"{SCHEMA_VERSION}); {REBUILD_HINT}")
    while True:
        with _transaction(connection):
            # Read again under the write lock: another collector may have taken this step while
            # this one waited for the lock (both saw an empty file; only one may create the tables).
            current = _schema_version(connection)
            if current >= target:
                break
            for statement in MIGRATIONS[current]:
                connection.execute(statement)
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (current + 1,))
    return found


def _schema_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    return row[0] if row else 0


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE: a second writer waits its turn)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def open_history(cache_root: Path, *, create: bool = True) -> sqlite3.Connection:
    """The cache's history database, its schema brought up to date (created when missing and
    `create`). A corrupt or unreadable file raises HistoryError with one line saying so."""
    path = history_path(cache_root)
    if not create and not os.path.lexists(path):
        raise HistoryError(f"no history database at {path}; {REBUILD_HINT}")
    try:
        _create_private(path)
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except OSError as error:
        raise HistoryError(f"{path}: cannot open the history database: {error.strerror or error}") from None
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash loses at most the last run, never the file
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA cache_size = -65536")  # 64 MiB: a run's rows and the pages they touch stay in memory
        connection.execute("PRAGMA temp_store = MEMORY")  # the staging tables of `record`
        migrate(connection)
    except sqlite3.DatabaseError as error:
        connection.close()
        raise HistoryError(f"{path}: the history database is unreadable ({error}); {REBUILD_HINT}") from None
    return connection


# ------------------------------------------------------------------------------------------
# what one run saw, from a stitched graph


class FlowSeen(NamedTuple):
    """A flow in one run, by natural key (flows sharing a key are added up). A named tuple: a run
    of a large fleet makes tens of thousands, and a frozen dataclass costs several times more to
    build."""

    key: str
    client: str  # node keys
    server: str
    client_machine: str
    server_machine: str
    proto: str
    port: int
    via: Optional[str]
    count: int
    connections: Optional[int] = None
    first_seen: Optional[float] = None
    last_seen: Optional[float] = None


@dataclass(frozen=True)
class MachineSeen:
    """A machine's line in one run: `ok`, `failed` (with its category) or `interrupted`;
    `stale` when its snapshot came from an earlier run."""

    name: str
    status: str
    category: Optional[str]
    stale: bool
    captured_at: Optional[float]


@dataclass
class RunFacts:
    """What one run saw, by natural key: the unit `record`, `diff` and `history` work on."""

    run_id: str
    started_at: float
    finished_at: float
    sequence: Optional[int] = None
    interrupted: bool = False
    window_seconds: Optional[float] = None
    machines: dict[str, MachineSeen] = field(default_factory=dict)
    nodes: dict[str, tuple[str, str, tuple[int, ...]]] = field(default_factory=dict)  # key -> machine, comm, pids
    flows: dict[str, FlowSeen] = field(default_factory=dict)
    listeners: dict[str, set[str]] = field(default_factory=dict)  # listener key -> node keys holding it
    listener_places: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)  # machine, proto, address, port

    def unreachable(self) -> set[str]:
        """Machines this run did not capture (failed or interrupted), stale snapshot or not."""
        return {name for name, machine in self.machines.items() if machine.status != "ok" or machine.stale}


def facts_of(run: Run, graph: FlowGraph) -> RunFacts:
    """The facts of a run from its stitched graph (keys set by netviz.graph.with_natural_keys)."""
    with cyclic_gc_paused():  # a tuple a flow, no cycle (netviz.gcpause)
        return _facts_of(run, graph)


def _facts_of(run: Run, graph: FlowGraph) -> RunFacts:
    captured = {host.name: host.captured_at for host in graph.hosts}
    stale = {host.name for host in graph.hosts if host.stale}
    facts = RunFacts(run.run_id, run.started_at, run.finished_at, run.sequence, run.interrupted,
                     run.window.seconds if run.window else None)
    for host in run.hosts:
        status = "ok" if host.status in ("ok", "partial") else host.status
        facts.machines[host.host] = MachineSeen(host.host, status, host.category, host.stale or host.host in stale,
                                                captured.get(host.host))
    for host in graph.hosts:  # snapshots given by hand have no manifest line
        facts.machines.setdefault(host.name, MachineSeen(host.name, "ok", None, host.stale, host.captured_at))
    nodes = graph.nodes_by_id()
    for node in graph.nodes:
        facts.nodes[node.key] = (node.host, node.comm, node.pids)
        for item in node.listening:
            key = listener_key(node, item)
            facts.listeners.setdefault(key, set()).add(node.key)
            facts.listener_places[key] = (node.host, item.proto, item.address, item.port)
    for flow in graph.flows:
        _add_flow(facts, flow, nodes[flow.client], nodes[flow.server])
    return facts


def _add_flow(facts: RunFacts, flow, client, server) -> None:
    window = flow.window
    seen = FlowSeen(flow.key, client.key, server.key, client.host, server.host, flow.proto, flow.server_port,
                    flow.via, flow.count, window.connections if window else None,
                    window.first_seen if window else None, window.last_seen if window else None)
    earlier = facts.flows.get(flow.key)
    if earlier is not None:  # one key, two flows (part exact, part inferred): one flow of the history
        seen = FlowSeen(seen.key, seen.client, seen.server, seen.client_machine, seen.server_machine, seen.proto,
                        seen.port, seen.via, earlier.count + seen.count,
                        _add(earlier.connections, seen.connections), _least(earlier.first_seen, seen.first_seen),
                        _most(earlier.last_seen, seen.last_seen))
    facts.flows[flow.key] = seen


def _add(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _least(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return b if a is None else a if b is None else min(a, b)


def _most(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return b if a is None else a if b is None else max(a, b)


def stitch_run_facts(run: Run, preloaded: Optional[Mapping[str, Snapshot]] = None) -> RunFacts:
    """Stitch a cached run as the history records it (group-by process, no filters).
    `preloaded`: snapshots already in memory, by machine name (a run just collected)."""
    from netviz.group import load_group
    from netviz.stitch import stitch

    inputs = run_inputs(run)
    loaded = {path: preloaded[name] for path, name in inputs.names.items() if preloaded and name in preloaded}
    if not inputs.files:
        return facts_of(run, FlowGraph(group_by="process"))
    group = load_group(list(inputs.files), names=inputs.names, preloaded=loaded)
    return facts_of(run, stitch(group.snapshots, group_by="process", stale=inputs.stale))


# ------------------------------------------------------------------------------------------
# writing: one transaction per run


# A run's rows are staged in temporary tables, then joined to the identity tables on their keys
# in SQL: identities are interned (inserted once, looked up by their unique key) without a
# round trip to Python for each id.
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS staged_node (key TEXT, machine TEXT, comm TEXT, pids TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS staged_flow (key TEXT, count INTEGER, stale INTEGER, connections INTEGER, "
    "first_seen REAL, last_seen REAL)",
    "CREATE TEMP TABLE IF NOT EXISTS staged_new_flow (key TEXT, client TEXT, server TEXT, proto TEXT, port INTEGER, "
    "via TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS staged_listener (key TEXT, machine TEXT, proto TEXT, address TEXT, "
    "port INTEGER, node TEXT)",
    "DELETE FROM staged_node", "DELETE FROM staged_flow", "DELETE FROM staged_new_flow", "DELETE FROM staged_listener",
)
_INTERN_NODES = (  # ?1: the run's id; rows in id order land next to each other in the tables' B-trees
    "INSERT OR IGNORE INTO node (key, machine, comm) SELECT key, machine, comm FROM staged_node",
    "INSERT INTO node_seen SELECT ?1, n.id, s.pids FROM staged_node s JOIN node n ON n.key = s.key ORDER BY n.id",
)
# Most flows of a run were seen before: only the new ones are staged with their identity.
_NEW_FLOWS = "SELECT key FROM staged_flow s WHERE NOT EXISTS (SELECT 1 FROM flow WHERE key = s.key)"
_INTERN_REST = (
    "INSERT OR IGNORE INTO flow (key, client, server, proto, port, via) SELECT s.key, c.id, v.id, s.proto, s.port, "
    "s.via FROM staged_new_flow s JOIN node c ON c.key = s.client JOIN node v ON v.key = s.server",
    "INSERT INTO flow_seen SELECT ?1, f.id, s.count, s.stale, s.connections, s.first_seen, s.last_seen "
    "FROM staged_flow s JOIN flow f ON f.key = s.key ORDER BY f.id",
    # the rows that refer to each identity, counted: `forget` deletes an identity at zero
    "INSERT INTO flow_refs SELECT flow, 1 FROM flow_seen WHERE run = ?1 ON CONFLICT (flow) DO UPDATE SET runs = runs + 1",
    "INSERT INTO node_refs SELECT node, 1 FROM node_seen WHERE run = ?1 ON CONFLICT (node) DO UPDATE SET runs = runs + 1",
    "INSERT OR IGNORE INTO listener (key, machine, proto, address, port) "
    "SELECT DISTINCT key, machine, proto, address, port FROM staged_listener",
    "INSERT INTO listener_seen SELECT ?1, l.id, n.id FROM staged_listener s JOIN listener l ON l.key = s.key "
    "JOIN node n ON n.key = s.node ORDER BY l.id, n.id",
    "INSERT INTO listener_refs SELECT listener, count(*) FROM listener_seen WHERE run = ?1 GROUP BY listener "
    "ON CONFLICT (listener) DO UPDATE SET runs = runs + excluded.runs",
)


def record(connection: sqlite3.Connection, facts: RunFacts) -> bool:
    """Write one run in one transaction; False when the history already has it."""
    with cyclic_gc_paused():  # rows by the hundred thousand, no cycle (netviz.gcpause)
        return _record(connection, facts)


def _record(connection: sqlite3.Connection, facts: RunFacts) -> bool:
    nodes, flows, flow_row, listeners = _staged_rows(facts)  # made before the write lock: another writer waits less
    with _transaction(connection):
        if connection.execute("SELECT 1 FROM run WHERE run_id = ?", (facts.run_id,)).fetchone():
            return False
        ok = sum(1 for machine in facts.machines.values() if machine.status == "ok")
        cursor = connection.execute(
            "INSERT INTO run (run_id, sequence, started_at, finished_at, interrupted, window_seconds, machines_ok, "
            "machines_failed, flows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (facts.run_id, facts.sequence, facts.started_at, facts.finished_at, int(facts.interrupted),
             facts.window_seconds, ok, len(facts.machines) - ok, len(facts.flows)))
        run = cursor.lastrowid
        connection.executemany("INSERT INTO machine_seen VALUES (?, ?, ?, ?, ?, ?)",
                               [(run, m.name, m.status, m.category, int(m.stale), m.captured_at)
                                for m in facts.machines.values()])
        for statement in _STAGING:
            connection.execute(statement)
        connection.executemany("INSERT INTO staged_node VALUES (?, ?, ?, ?)", nodes)
        _insert_rows(connection, "staged_flow", flow_row, flows)
        connection.executemany("INSERT INTO staged_listener VALUES (?, ?, ?, ?, ?, ?)", listeners)
        for statement in _INTERN_NODES:
            connection.execute(statement, (run,) if "?1" in statement else ())
        new = [facts.flows[key] for (key,) in connection.execute(_NEW_FLOWS)]
        connection.executemany("INSERT INTO staged_new_flow VALUES (?, ?, ?, ?, ?, ?)",
                               [(f.key, f.client, f.server, f.proto, f.port, f.via) for f in new])
        for statement in _INTERN_REST:
            connection.execute(statement, (run,) if "?1" in statement else ())
        _summarise_around(connection, run)
    return True


# Binding None is slow in the sqlite3 module (each one goes through its adaptation protocol, about
# a microsecond): a flow's absent values travel as sentinels that SQL turns back into NULL.
_STAGED_FLOW_ROW = "(?, ?, ?, NULLIF(?, -1), NULLIF(?, -1.0), NULLIF(?, -1.0))"
# a run without a window and with every machine captured (the usual one): key and count only
_PLAIN_FLOW_ROW = "(?, ?, 0, NULL, NULL, NULL)"
ROWS_PER_INSERT = 256


def _insert_rows(connection: sqlite3.Connection, table: str, row: str, rows: Sequence[tuple]) -> None:
    """Insert `rows` into `table`, ROWS_PER_INSERT to a statement (`row`: one row's VALUES term):
    half the time of one statement a row, which executemany pays for each."""
    full = f"INSERT INTO {table} VALUES " + ",".join([row] * ROWS_PER_INSERT)
    for start in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[start:start + ROWS_PER_INSERT]
        statement = full if len(part) == ROWS_PER_INSERT else f"INSERT INTO {table} VALUES " + ",".join([row] * len(part))
        connection.execute(statement, [value for one in part for value in one])


def _staged_rows(facts: RunFacts) -> tuple[list[tuple], list[tuple], str, list[tuple]]:
    """The run's nodes, flows (with the VALUES term of a flow's row) and listener holders as rows
    of the staging tables."""
    unreachable = facts.unreachable()
    nodes = [(key, machine, comm, " ".join(map(str, pids))) for key, (machine, comm, pids) in facts.nodes.items()]
    listeners = [(key, *facts.listener_places[key], node) for key, holders in facts.listeners.items()
                 for node in holders]
    if not unreachable and all(f.connections is None and f.first_seen is None and f.last_seen is None
                               for f in facts.flows.values()):
        return nodes, [(f.key, f.count) for f in facts.flows.values()], _PLAIN_FLOW_ROW, listeners
    flows = [(f.key, f.count,
              int(bool(unreachable) and (f.client_machine in unreachable or f.server_machine in unreachable)),
              -1 if f.connections is None else f.connections, -1.0 if f.first_seen is None else f.first_seen,
              -1.0 if f.last_seen is None else f.last_seen) for f in facts.flows.values()]
    return nodes, flows, _STAGED_FLOW_ROW, listeners


def _summarise_around(connection: sqlite3.Connection, run: int) -> None:
    """Flows new and gone for `run` against the run before it, and for the run after it (a run
    recorded late, after a crash, sits between two others)."""
    order = [ident for (ident,) in connection.execute(f"SELECT id FROM run ORDER BY {RUN_ORDER}")]
    place = order.index(run)
    for index in (place, place + 1):
        if index < len(order):
            _summarise(connection, order[index], order[index - 1] if index > 0 else None)


def _summarise(connection: sqlite3.Connection, run: int, previous: Optional[int]) -> None:
    """A flow is new when its run saw it and the previous did not; gone when the previous saw it
    and this run has no line for it. A flow of a machine not captured in either run (a stale
    line, or a machine down in the other run) is neither: it was not seen to start or stop."""
    if previous is None:
        connection.execute("UPDATE run SET flows_new = NULL, flows_gone = NULL WHERE id = ?", (run,))
        return
    new = _only_in(connection, run, previous)
    gone = _only_in(connection, previous, run)
    connection.execute("UPDATE run SET flows_new = ?, flows_gone = ? WHERE id = ?", (new, gone, run))


def _only_in(connection: sqlite3.Connection, run: int, other: int) -> int:
    """Flows `run` saw (its machines captured) that `other` has no line for, their machines
    captured in `other` too. Set-based: the ids only in `run`, then their machines."""
    return connection.execute(
        "WITH down(machine) AS (SELECT machine FROM machine_seen WHERE run = ?2 AND (status != 'ok' OR stale)) "
        "SELECT count(*) FROM (SELECT flow FROM flow_seen WHERE run = ?1 AND stale = 0 EXCEPT "
        "SELECT flow FROM flow_seen WHERE run = ?2) d JOIN flow f ON f.id = d.flow "
        "JOIN node c ON c.id = f.client JOIN node v ON v.id = f.server "
        "WHERE c.machine NOT IN down AND v.machine NOT IN down", (run, other)).fetchone()[0]


# What a deleted run referred to loses one reference per row (?1: the run's id)...
_RELEASE = tuple(
    f"UPDATE {table}_refs SET runs = runs - (SELECT count(*) FROM {table}_seen s WHERE s.run = ?1 "
    f"AND s.{table} = {table}_refs.{table}) WHERE {table} IN (SELECT {table} FROM {table}_seen WHERE run = ?1)"
    for table in ("flow", "node", "listener"))
# ...and identities that nothing refers to any more go. A node no run saw is no flow's end and
# holds no listener either (a run's flows and listener holders are among its nodes); the flow
# check is kept for histories written by hand.
_UNREFERENCED = (
    "DELETE FROM listener WHERE id IN (SELECT listener FROM listener_refs WHERE runs <= 0)",
    "DELETE FROM listener_refs WHERE runs <= 0",
    "DELETE FROM flow WHERE id IN (SELECT flow FROM flow_refs WHERE runs <= 0)",
    "DELETE FROM flow_refs WHERE runs <= 0",
    "DELETE FROM node WHERE id IN (SELECT node FROM node_refs WHERE runs <= 0) "
    "AND NOT EXISTS (SELECT 1 FROM flow f WHERE f.client = node.id OR f.server = node.id)",
    "DELETE FROM node_refs WHERE runs <= 0 AND node NOT IN (SELECT id FROM node)",
)


def forget(connection: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """Delete runs (the cache pruned them), the identities no run sees any more, and mend the
    new/gone counts of the runs that followed them."""
    if not run_ids:
        return
    with _transaction(connection):
        before = [ident for (ident,) in connection.execute(f"SELECT id FROM run ORDER BY {RUN_ORDER}")]
        gone = {ident for (ident,) in connection.execute(
            f"SELECT id FROM run WHERE run_id IN ({','.join('?' * len(run_ids))})", list(run_ids))}
        for run in sorted(gone):
            for statement in _RELEASE:
                connection.execute(statement, (run,))
            connection.execute("DELETE FROM run WHERE id = ?", (run,))  # its rows go with it (ON DELETE CASCADE)
        for statement in _UNREFERENCED:
            connection.execute(statement)
        # a run's new and gone are against the run before it: only a run whose predecessor was
        # deleted has them to mend (pruning the oldest run of thousands touches one run)
        previous = None
        for index, run in enumerate(before):
            if run in gone:
                continue
            if index and before[index - 1] in gone:
                _summarise(connection, run, previous)
            previous = run


def recorded_runs(connection: sqlite3.Connection) -> set[str]:
    """The run ids the history holds."""
    return {run_id for (run_id,) in connection.execute("SELECT run_id FROM run")}


@dataclass
class SyncReport:
    """What `sync` changed."""

    recorded: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # runs that could not be read, with why


def sync(connection: sqlite3.Connection, cache_root: Path, *,
         preloaded: Optional[Mapping[str, Mapping[str, Snapshot]]] = None,
         stitched: Optional[Mapping[str, FlowGraph]] = None) -> SyncReport:
    """Make the history hold exactly the cache's complete runs: forget the runs the cache no
    longer has, record the ones it lacks (`preloaded`: run id -> machine -> snapshot in memory;
    `stitched`: run id -> its graph stitched as the history records runs)."""
    root = trusted_cache_dir(cache_root)
    report = SyncReport()
    held = recorded_runs(connection)
    cached = list_runs(root)  # a run's directory is named by its id: only the runs not held are read
    report.forgotten = sorted(held - {path.name for path in cached})
    forget(connection, report.forgotten)
    runs: dict[str, Run] = {}
    for path in cached:
        if path.name in held:
            continue
        try:
            run = read_run(path)
        except NetvizError as error:
            report.skipped.append(f"{path.name}: {error}")
            continue
        runs[run.run_id] = run
    for run_id, run in runs.items():
        try:
            graph = (stitched or {}).get(run_id)
            facts = facts_of(run, graph) if graph is not None else stitch_run_facts(run, (preloaded or {}).get(run_id))
        except NetvizError as error:
            report.skipped.append(f"{run_id}: {error}")
            continue
        if record(connection, facts):
            report.recorded.append(run_id)
    return report


def record_collected(cache_root: Path, run: Run, snapshots: Mapping[str, Snapshot],
                     stitched: Optional[FlowGraph] = None) -> Optional[str]:
    """After a run was written to the cache: record it (and mend the history against the cache).
    `stitched`: the run's graph when the caller stitched it as the history does (by process, no
    filters, no outside peers), so that it is not stitched twice.
    Returns a one-line warning when the history could not be written; the run stays cached."""
    try:
        connection = open_history(cache_root)
        try:
            sync(connection, cache_root, preloaded={run.run_id: snapshots},
                 stitched={run.run_id: stitched} if stitched is not None else None)
        finally:
            connection.close()
    except sqlite3.Error as error:
        return (f"the run history ({history_path(cache_root)}) was not updated: {error}; the run is cached, "
                f"and the next run or {REBUILD_HINT}")
    except HistoryError as error:
        return f"the run history was not updated: {error}"
    return None


def rebuild(cache_root: Path) -> SyncReport:
    """Recreate the history from the cached runs (the old file, even corrupt, is removed)."""
    root = trusted_cache_dir(cache_root, create=True)
    path = history_path(root)
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    connection = open_history(root)
    try:
        return sync(connection, root)
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class RunLine:
    """One run of `netviz history`: when, machines ok and failed, flows, new and gone (None for
    the first run the history holds)."""

    run_id: str
    started_at: float
    machines_ok: int
    machines_failed: int
    flows: int
    flows_new: Optional[int]
    flows_gone: Optional[int]
    interrupted: bool

    def to_json(self) -> dict:
        return {"run": self.run_id, "started_at": self.started_at, "machines_ok": self.machines_ok,
                "machines_failed": self.machines_failed, "flows": self.flows, "flows_new": self.flows_new,
                "flows_gone": self.flows_gone, "interrupted": self.interrupted}


def run_lines(connection: sqlite3.Connection, since: Optional[float] = None) -> list[RunLine]:
    """The runs, oldest first; `since`: only runs started at or after that Unix time."""
    rows = connection.execute(
        "SELECT run_id, started_at, machines_ok, machines_failed, flows, flows_new, flows_gone, interrupted "
        f"FROM run WHERE started_at >= ? ORDER BY {RUN_ORDER}", (since if since is not None else float("-inf"),))
    return [RunLine(*row[:7], bool(row[7])) for row in rows]


def read_facts(connection: sqlite3.Connection, run_id: str) -> RunFacts:
    """A recorded run's facts, as `facts_of` made them."""
    row = connection.execute("SELECT id, run_id, started_at, finished_at, sequence, interrupted, window_seconds "
                             "FROM run WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise HistoryError(f"the history has no run {run_id}")
    run = row[0]
    facts = RunFacts(row[1], row[2], row[3], row[4], bool(row[5]), row[6])
    for name, status, category, stale, captured in connection.execute(
            "SELECT machine, status, category, stale, captured_at FROM machine_seen WHERE run = ?", (run,)):
        facts.machines[name] = MachineSeen(name, status, category, bool(stale), captured)
    for key, machine, comm, pids in connection.execute(
            "SELECT n.key, n.machine, n.comm, s.pids FROM node_seen s JOIN node n ON n.id = s.node WHERE s.run = ?",
            (run,)):
        facts.nodes[key] = (machine, comm, tuple(int(pid) for pid in pids.split()))
    for row in connection.execute(
            "SELECT f.key, c.key, v.key, c.machine, v.machine, f.proto, f.port, f.via, s.count, s.connections, "
            "s.first_seen, s.last_seen FROM flow_seen s JOIN flow f ON f.id = s.flow JOIN node c ON c.id = f.client "
            "JOIN node v ON v.id = f.server WHERE s.run = ?", (run,)):
        facts.flows[row[0]] = FlowSeen(*row)
    for key, machine, proto, address, port, node in connection.execute(
            "SELECT l.key, l.machine, l.proto, l.address, l.port, n.key FROM listener_seen s "
            "JOIN listener l ON l.id = s.listener JOIN node n ON n.id = s.node WHERE s.run = ?", (run,)):
        facts.listeners.setdefault(key, set()).add(node)
        facts.listener_places[key] = (machine, proto, address, port)
    return facts


@dataclass(frozen=True)
class Timeline:
    """One flow or node across the history: when it was first and last seen, in how many of the
    runs taken (the runs of the history, or of --since), and its count in each run (None: not seen)."""

    key: str
    first_seen: Optional[float]
    last_seen: Optional[float]
    seen: int
    taken: int
    counts: tuple[tuple[str, float, Optional[int]], ...]  # (run id, started_at, count or None)

    def to_json(self) -> dict:
        return {"key": self.key, "first_seen": self.first_seen, "last_seen": self.last_seen, "runs_seen": self.seen,
                "runs_taken": self.taken,
                "counts": [{"run": run, "started_at": when, "count": count} for run, when, count in self.counts]}


def timelines(connection: sqlite3.Connection, term: str, what: str = "flow", since: Optional[float] = None,
              limit: int = 50) -> list[Timeline]:
    """The timeline of every flow (`what`="flow") or node ("node") whose key contains `term`."""
    if what not in ("flow", "node"):
        raise ValueError(what)
    runs = connection.execute(f"SELECT id, run_id, started_at FROM run WHERE started_at >= ? ORDER BY {RUN_ORDER}",
                              (since if since is not None else float("-inf"),)).fetchall()
    matches = connection.execute(f"SELECT id, key FROM {what} WHERE instr(key, ?) > 0 ORDER BY key LIMIT ?",
                                 (term, limit)).fetchall()
    count = "s.count" if what == "flow" else "1"
    result = []
    for ident, key in matches:
        # one probe of the run's rows per run (CROSS JOIN keeps `run` the outer loop)
        seen = dict(connection.execute(f"SELECT r.id, {count} FROM run r CROSS JOIN {what}_seen s "
                                       f"ON s.run = r.id AND s.{what} = ? WHERE r.started_at >= ?",
                                       (ident, since if since is not None else float("-inf"))))
        counts = tuple((run_id, when, seen.get(run)) for run, run_id, when in runs)
        times = [when for _, when, value in counts if value is not None]
        if not times:
            continue
        result.append(Timeline(key, min(times), max(times), len(times), len(counts), counts))
    return result


def resolve(connection: sqlite3.Connection, spec: str, cache_root: Path, now: float) -> str:
    """The run id a `diff` argument names: a run id, `latest`, a cached run's directory, or a
    time (`-2h`, `-3d`, `yesterday` = 24 h ago, `2026-12-01T10:00` local, `...Z` UTC): the last
    run started at or before it."""
    from netviz.when import parse_when

    if connection.execute("SELECT 1 FROM run WHERE run_id = ?", (spec,)).fetchone():
        return spec
    if spec == "latest":
        run = find_run(cache_root, "latest")
        if run is not None:
            return run.run_id
    path = Path(spec)
    if path.is_dir() and (path / "manifest.json").is_file():
        run_id = read_run(path).run_id
        if connection.execute("SELECT 1 FROM run WHERE run_id = ?", (run_id,)).fetchone():
            return run_id
        raise HistoryError(f"{spec}: run {run_id} is not in this cache's history")
    moment = parse_when(spec, now)
    row = connection.execute(f"SELECT run_id FROM run WHERE started_at <= ? ORDER BY {RUN_ORDER_DESC} LIMIT 1",
                             (moment,)).fetchone()
    if row is None:
        raise HistoryError(f"no run in the history started before {spec}")
    return row[0]


def newest_run(connection: sqlite3.Connection) -> str:
    """The run id of the newest run (diff's B when only A is given)."""
    row = connection.execute(f"SELECT run_id FROM run ORDER BY {RUN_ORDER_DESC} LIMIT 1").fetchone()
    if row is None:
        raise HistoryError("the history holds no run: diff needs one to compare with (collect a run)")
    return row[0]


def last_two(connection: sqlite3.Connection) -> tuple[str, str]:
    """The run ids of the two newest runs (diff's default)."""
    rows = connection.execute(f"SELECT run_id FROM run ORDER BY {RUN_ORDER_DESC} LIMIT 2").fetchall()
    if len(rows) < 2:
        raise HistoryError(f"the history holds {len(rows)} run(s): diff needs two (collect another run)")
    return rows[1][0], rows[0][0]

"""Snapshots: one machine at one moment, read from untrusted JSON into typed, validated records.

The format is documented in docs/snapshot.md. Every loader treats its input as hostile: a bad
document raises SnapshotError with a one-line message naming the file and the field.

The package, along its seams (docs/architecture.md, "Snapshots and socket kinds"):

- format.py   the format's vocabulary: schema name, framing markers, canonical addresses
- limits.py   bounds on an untrusted document
- model.py    the records (Snapshot, Namespace, Socket, Process, ...)
- fields.py   the reference reader's cursor (_Field): a value and its path, for messages
- readers.py  the reference readers, record by record
- fast.py     the fast path for records of plain shapes, pinned to the reference readers
- parse.py    a document into a Snapshot (parse_snapshot, parse_any)
- legacy.py   the original capture.py's format
- files.py    snapshot files: safe reading, strict JSON, load_snapshot
- writer.py   a Snapshot back into a document
- window.py   the optional `window` section: observations over a time window

The public names are re-exported here: `from netviz.snapshot import load_snapshot`.
"""

from netviz.kinds import KIND_NAMES
from netviz.snapshot.fast import CheckedStrings
from netviz.snapshot.files import (
    SnapshotTooLarge,
    check_document_size,
    file_kind,
    load_snapshot,
    loads_document,
    read_snapshot_bytes,
    snapshot_from_bytes,
)
from netviz.snapshot.format import FRAME_BEGIN, FRAME_END, FRAME_VERSION, SCHEMA, canonical_address
from netviz.snapshot.legacy import LEGACY_WARNING, parse_legacy
from netviz.snapshot.limits import (
    MAX_ADDRESSES,
    MAX_ARG_TEXT,
    MAX_ARGS,
    MAX_CONNTRACK,
    MAX_FILE_BYTES,
    MAX_NAMESPACES,
    MAX_NOTES,
    MAX_PROCESSES,
    MAX_SESSION_PIDS,
    MAX_SOCKETS,
    MAX_TEXT,
    MAX_UNKEYED_STATES,
)
from netviz.snapshot.model import (
    Address,
    ConntrackEntry,
    ConntrackTuple,
    Coverage,
    HostInfo,
    Namespace,
    Process,
    Snapshot,
    Socket,
    SocketExtra,
)
from netviz.snapshot.parse import parse_any, parse_snapshot
from netviz.snapshot.window import Window, WindowFlow, WindowHolder, WindowProcess, WindowSource
from netviz.snapshot.writer import dump_snapshot, snapshot_to_document

PROTOS = KIND_NAMES  # the socket kinds a snapshot may hold: netviz.kinds is where they are defined

__all__ = [
    "FRAME_BEGIN", "FRAME_END", "FRAME_VERSION", "LEGACY_WARNING", "MAX_ADDRESSES", "MAX_ARGS",
    "MAX_ARG_TEXT", "MAX_CONNTRACK", "MAX_FILE_BYTES", "MAX_NAMESPACES", "MAX_NOTES", "MAX_PROCESSES",
    "MAX_SESSION_PIDS", "MAX_SOCKETS", "MAX_TEXT", "MAX_UNKEYED_STATES", "PROTOS", "SCHEMA", "Address",
    "CheckedStrings", "ConntrackEntry", "ConntrackTuple", "Coverage", "HostInfo", "Namespace", "Process",
    "Snapshot", "SnapshotTooLarge", "Socket", "SocketExtra", "canonical_address", "check_document_size", "dump_snapshot",
    "file_kind", "load_snapshot", "loads_document", "parse_any", "parse_legacy", "parse_snapshot",
    "read_snapshot_bytes", "snapshot_from_bytes", "snapshot_to_document", "Window", "WindowFlow",
    "WindowHolder", "WindowProcess", "WindowSource",
]

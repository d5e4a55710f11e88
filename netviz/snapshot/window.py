"""The `window` section of a snapshot: what a machine showed over a time window (--window).

The payload writes it (netviz/payload/capture.py, class Window); docs/snapshot.md describes
every field. The reader is strict like the rest: every field checked, every list bounded.
Flows are few (at most a few tens of thousands, one per flow key, never one per connection),
so there is no fast path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from netviz.snapshot.fields import _Field
from netviz.snapshot.limits import MAX_ARG_TEXT, MAX_PID, UID_RANGE

WINDOW_VERSION = 1
MAX_WINDOW_SECONDS = 3600.0
MAX_WINDOW_FLOWS = 200_000
MAX_WINDOW_PROCESSES = 100_000
MAX_FLOW_HOLDERS = 64
MAX_FLOW_UIDS = 64
MAX_PROCESS_PIDS = 64
MAX_PROCESS_ARGS = 64
WINDOW_PROTOS = ("tcp", "udp")
FLOW_ROLES = ("client", "server")
EVIDENCE_KINDS = ("sample", "time_wait", "destroy", "conntrack")
HOLDER_VIA = ("socket", "listener")
SOURCE_NAMES = ("sock_destroy", "conntrack", "proc_connector")
# untracked: conntrack events were open, but the namespace tracks nothing (no rule needs it)
SOURCE_STATES = ("used", "missing", "denied", "untracked")
_COUNT = 1 << 62


@dataclass(frozen=True)
class WindowHolder:
    """A process seen holding a flow's socket (`via` "socket"), or the listening socket of a
    server-side flow's port (`via` "listener")."""

    pid: int
    comm: str
    via: str


@dataclass(frozen=True)
class WindowFlow:
    """Connections of one flow key over the window (docs/snapshot.md, "window.flows")."""

    netns: Optional[int]
    proto: str  # tcp or udp (IPv4 and IPv6 alike)
    role: str  # client: local port ephemeral (None); server: remote port ephemeral (None)
    local: str
    local_port: Optional[int]
    remote: str
    remote_port: Optional[int]
    first_seen: float
    last_seen: float
    connections: int
    evidence: dict[str, int]
    samples: int
    persistent: bool
    holders: tuple[WindowHolder, ...]
    uids: tuple[int, ...]
    # TCP only, when the payload read tcp_info (its own namespace): bytes moved inside the window
    # by the key's connections, and the span they moved in (first to last observation)
    moved: Optional["WindowBytes"] = None


@dataclass(frozen=True)
class WindowBytes:
    """What a flow key's connections moved inside the window (docs/snapshot.md, "window.flows")."""

    sent: int
    received: int
    since: float  # Unix seconds: the earliest observation of a connection that moved them
    until: float  # the latest

    def merged(self, other: Optional["WindowBytes"]) -> "WindowBytes":
        if other is None:
            return self
        return WindowBytes(self.sent + other.sent, self.received + other.received,
                           min(self.since, other.since), max(self.until, other.until))


@dataclass(frozen=True)
class WindowProcess:
    """Processes started during the window (proc connector exec events), per command."""

    netns: Optional[int]
    uid: int
    comm: str
    cmdline: tuple[str, ...]
    execs: int
    first_seen: float
    last_seen: float
    pids: tuple[int, ...]


@dataclass(frozen=True)
class WindowSource:
    """One event source: used, missing (the kernel lacks it), denied or untracked, and what it gave."""

    name: str
    state: str
    events: int
    lost: int
    reason: Optional[str] = None


@dataclass(frozen=True)
class Window:
    """The observation window of a snapshot."""

    version: int
    requested: float
    start_at: Optional[float]
    started_at: float
    ended_at: float
    interval: float
    samples: int
    first_sample_cpu: float
    cpu_seconds: float
    cpu_share: float
    sources: tuple[WindowSource, ...]
    max_flows: int
    flows_overflow: int
    flows: tuple[WindowFlow, ...]
    max_processes: int
    processes_overflow: int
    processes: tuple[WindowProcess, ...]


def _choice(node: _Field, choices: tuple[str, ...]) -> str:
    value = node.text(64)
    if value not in choices:
        raise node.fail(f"expected one of {', '.join(choices)}")
    assert value is not None
    return value


def _seconds(node: _Field, low: float = 0.0, high: float = 1e12) -> float:
    value = node.number()
    if not low <= value <= high:
        raise node.fail(f"{value} is out of range [{low}, {high}]")
    return value


def _holder(node: _Field) -> WindowHolder:
    return WindowHolder(pid=node.key("pid").integer(1, MAX_PID), comm=node.key("comm").text(),
                        via=_choice(node.key("via"), HOLDER_VIA))


def _evidence(node: _Field) -> dict[str, int]:
    if not isinstance(node.value, dict):
        raise node.fail("expected an object of counts per evidence kind")
    for kind in node.value:
        if kind not in EVIDENCE_KINDS:
            raise node.key(kind).fail(f"unknown evidence kind (expected {', '.join(EVIDENCE_KINDS)})")
    return {kind: node.key(kind).integer(0, _COUNT) for kind in EVIDENCE_KINDS if kind in node.value}


def _flow(node: _Field) -> WindowFlow:
    role = _choice(node.key("role"), FLOW_ROLES)
    local_port = node.key("local_port").integer(0, 65535, nullable=True)
    remote_port = node.key("remote_port").integer(0, 65535, nullable=True)
    if (local_port is None) != (role == "client") or (remote_port is None) != (role == "server"):
        raise node.key("role").fail("a client flow has only a remote port, a server flow only a local one")
    first_seen, last_seen = _seconds(node.key("first_seen")), _seconds(node.key("last_seen"))
    if last_seen < first_seen:
        raise node.key("last_seen").fail("earlier than first_seen")
    return WindowFlow(
        netns=node.key("netns").integer(0, nullable=True),
        proto=_choice(node.key("proto"), WINDOW_PROTOS), role=role,
        local=node.key("local").address(), local_port=local_port,
        remote=node.key("remote").address(), remote_port=remote_port,
        first_seen=first_seen, last_seen=last_seen,
        connections=node.key("connections").integer(0, _COUNT),
        evidence=_evidence(node.key("evidence")),
        samples=node.key("samples").integer(0, _COUNT),
        persistent=node.key("persistent").boolean(),
        holders=tuple(_holder(item) for item in node.key("holders").items(MAX_FLOW_HOLDERS)),
        uids=node.key("uids").integers(0, UID_RANGE[1], MAX_FLOW_UIDS),
        moved=_moved(node),
    )


def _moved(node: _Field) -> Optional[WindowBytes]:
    """The optional byte counts of a window flow: all four keys, or none."""
    if node.key("bytes_sent", required=False).missing:
        return None
    since, until = _seconds(node.key("bytes_from")), _seconds(node.key("bytes_to"))
    if until < since:
        raise node.key("bytes_to").fail("earlier than bytes_from")
    return WindowBytes(node.key("bytes_sent").integer(), node.key("bytes_received").integer(), since, until)


def _process(node: _Field) -> WindowProcess:
    first_seen, last_seen = _seconds(node.key("first_seen")), _seconds(node.key("last_seen"))
    if last_seen < first_seen:
        raise node.key("last_seen").fail("earlier than first_seen")
    return WindowProcess(
        netns=node.key("netns").integer(0, nullable=True),
        uid=node.key("uid").integer(*UID_RANGE), comm=node.key("comm").text(),
        cmdline=node.key("cmdline").texts(MAX_ARG_TEXT, MAX_PROCESS_ARGS),
        execs=node.key("execs").integer(1, _COUNT), first_seen=first_seen, last_seen=last_seen,
        pids=node.key("pids").integers(1, MAX_PID, MAX_PROCESS_PIDS),
    )


def _sources(node: _Field) -> tuple[WindowSource, ...]:
    if not isinstance(node.value, dict):
        raise node.fail("expected an object of event sources")
    out = []
    for name in node.value:
        child = node.key(name)
        if name not in SOURCE_NAMES:
            raise child.fail(f"unknown event source (expected {', '.join(SOURCE_NAMES)})")
        reason = child.key("reason", required=False)
        out.append(WindowSource(name=name, state=_choice(child.key("state"), SOURCE_STATES),
                                events=child.key("events").integer(0, _COUNT),
                                lost=child.key("lost").integer(0, _COUNT),
                                reason=None if reason.missing else reason.text()))
    return tuple(sorted(out, key=lambda source: source.name))


def read_window(node: _Field) -> Window:
    """The `window` section of a document (docs/snapshot.md), validated."""
    version = node.key("version").integer(1, 1 << 16)
    if version != WINDOW_VERSION:
        raise node.key("version").fail(f"unsupported window version {version} (this netviz reads {WINDOW_VERSION})")
    started_at, ended_at = _seconds(node.key("started_at")), _seconds(node.key("ended_at"))
    if ended_at < started_at:
        raise node.key("ended_at").fail("earlier than started_at")
    start_at = node.key("start_at")
    return Window(
        version=version,
        requested=_seconds(node.key("requested"), 0.0, MAX_WINDOW_SECONDS),
        start_at=None if start_at.value is None else _seconds(start_at),
        started_at=started_at, ended_at=ended_at,
        interval=_seconds(node.key("interval"), 0.0, MAX_WINDOW_SECONDS),
        samples=node.key("samples").integer(0, _COUNT),
        first_sample_cpu=_seconds(node.key("first_sample_cpu")),
        cpu_seconds=_seconds(node.key("cpu_seconds")),
        cpu_share=_seconds(node.key("cpu_share"), 0.0, 1.0),
        sources=_sources(node.key("sources")),
        max_flows=node.key("max_flows").integer(0, _COUNT),
        flows_overflow=node.key("flows_overflow").integer(0, _COUNT),
        flows=tuple(_flow(item) for item in node.key("flows").items(MAX_WINDOW_FLOWS)),
        max_processes=node.key("max_processes").integer(0, _COUNT),
        processes_overflow=node.key("processes_overflow").integer(0, _COUNT),
        processes=tuple(_process(item) for item in node.key("processes").items(MAX_WINDOW_PROCESSES)),
    )


def _moved_document(moved: Optional[WindowBytes]) -> dict[str, Any]:
    if moved is None:
        return {}
    return {"bytes_sent": moved.sent, "bytes_received": moved.received, "bytes_from": moved.since,
            "bytes_to": moved.until}


def window_to_document(window: Window) -> dict[str, Any]:
    """The `window` section of a Window (read_window of it gives it back)."""
    return {
        "version": window.version, "requested": window.requested, "start_at": window.start_at,
        "started_at": window.started_at, "ended_at": window.ended_at, "interval": window.interval,
        "samples": window.samples, "first_sample_cpu": window.first_sample_cpu,
        "cpu_seconds": window.cpu_seconds, "cpu_share": window.cpu_share,
        "sources": {s.name: dict({"state": s.state, "events": s.events, "lost": s.lost},
                                 **({"reason": s.reason} if s.reason is not None else {}))
                    for s in window.sources},
        "max_flows": window.max_flows, "flows_overflow": window.flows_overflow,
        "flows": [{"netns": f.netns, "proto": f.proto, "role": f.role, "local": f.local,
                   "local_port": f.local_port, "remote": f.remote, "remote_port": f.remote_port,
                   "first_seen": f.first_seen, "last_seen": f.last_seen, "connections": f.connections,
                   "evidence": dict(f.evidence), "samples": f.samples, "persistent": f.persistent,
                   "holders": [{"pid": h.pid, "comm": h.comm, "via": h.via} for h in f.holders],
                   "uids": list(f.uids), **_moved_document(f.moved)} for f in window.flows],
        "max_processes": window.max_processes, "processes_overflow": window.processes_overflow,
        "processes": [{"netns": p.netns, "uid": p.uid, "comm": p.comm, "cmdline": list(p.cmdline),
                       "execs": p.execs, "first_seen": p.first_seen, "last_seen": p.last_seen,
                       "pids": list(p.pids)} for p in window.processes],
    }

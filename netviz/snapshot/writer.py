"""Write a Snapshot back as a `netviz.snapshot/1` document (parse_snapshot of it gives it back)."""

from __future__ import annotations

import json
from typing import Any

from netviz.kinds import MULTIHOMED_KINDS
from netviz.snapshot.format import SCHEMA
from netviz.snapshot.model import ConntrackTuple, Process, Snapshot, Socket
from netviz.snapshot.traffic import tcp_info_to_document
from netviz.snapshot.window import window_to_document


def snapshot_to_document(snapshot: Snapshot) -> dict[str, Any]:
    """The `netviz.snapshot/1` document of a Snapshot (parse_snapshot of it gives it back)."""

    def sock(s: Socket) -> dict[str, Any]:
        out: dict[str, Any] = {
            "proto": s.proto, "inode": s.inode, "local": s.local, "local_port": s.local_port,
            "remote": s.remote, "remote_port": s.remote_port, "state": s.state, "uid": s.uid}
        for key in ("protocol", "interface", "packet_type", "sctp_state"):
            if getattr(s, key) is not None:
                out[key] = getattr(s, key)
        if s.proto in MULTIHOMED_KINDS:
            out["local_all"] = list(s.local_all)
            out["remote_all"] = list(s.remote_all)
        return out

    def ct(t: ConntrackTuple) -> dict[str, Any]:
        return {"src": t.src, "dst": t.dst, "sport": t.sport, "dport": t.dport}

    def process(p: Process) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": p.pid, "ppid": p.ppid, "comm": p.comm, "cmdline": list(p.cmdline), "uid": p.uid,
            "euid": p.euid, "user": p.user, "context": p.context, "netns": p.netns,
            "sockets": list(p.sockets)}
        if p.fd_denied:
            out["fd_denied"] = True
        if p.comm_hex is not None:
            out["comm_hex"] = p.comm_hex
        if p.cmdline_hex is not None:
            out["cmdline_hex"] = list(p.cmdline_hex)
        if p.cmdline_truncated:
            out["cmdline_truncated"] = True
        if p.cgroup is not None:
            out["cgroup"] = p.cgroup
        return out

    host = snapshot.host
    cov = snapshot.coverage
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "payload_version": "legacy" if snapshot.legacy else "loaded",
        "host": {"hostname": host.hostname, "machine_id": host.machine_id, "boot_id": host.boot_id,
                 "kernel": host.kernel, "captured_at": host.captured_at, "python": host.python},
        "coverage": {"euid": cov.euid, "complete": cov.complete,
                     "processes_seen": cov.processes_seen,
                     "processes_vanished": cov.processes_vanished,
                     "processes_denied": cov.processes_denied,
                     "namespaces_denied": cov.namespaces_denied,
                     "unattributed_sockets": cov.unattributed_sockets, "notes": list(cov.notes)},
        "namespaces": [
            {"inode": ns.inode, "pids": ns.pids,
             "addresses": [{"interface": a.interface, "family": a.family, "address": a.address,
                            "prefix": a.prefix} for a in ns.addresses],
             "sockets": [sock(s) for s in ns.sockets],
             "unkeyed": {proto: dict(counts) for proto, counts in ns.unkeyed.items()},
             "conntrack": None if ns.conntrack is None else [
                 {"proto": e.proto, "state": e.state, "original": ct(e.original), "reply": ct(e.reply),
                  **({"counters": list(e.counters)} if e.counters is not None else {})}
                 for e in ns.conntrack],
             **({"name": ns.name} if ns.name else {})}
            for ns in snapshot.namespaces],
        "processes": [process(p) for p in snapshot.processes],
    }
    for entry, namespace in zip(document["namespaces"], snapshot.namespaces):
        if namespace.tcp_info is not None:
            entry["tcp_info"] = tcp_info_to_document(namespace.tcp_info)
    if snapshot.ssh_session_pids:
        document["ssh_session"] = {"pids": list(snapshot.ssh_session_pids)}
    if snapshot.window is not None:
        document["window"] = window_to_document(snapshot.window)
    if snapshot.hosts_names:
        document["hosts_file"] = [[address, list(names)] for address, names in snapshot.hosts_names.items()]
    if snapshot.containers:
        document["runtime"] = {"containers": {
            cid: {key: value for key, value in vars(container).items() if value is not None}
            for cid, container in snapshot.containers.items()}}
    if snapshot.pods:
        document.setdefault("runtime", {})["pods"] = {
            uid: {"name": pod.name, "namespace": pod.namespace} for uid, pod in snapshot.pods.items()}
    return document


def dump_snapshot(doc: "Snapshot | dict[str, Any]") -> str:
    """JSON text of a snapshot document (or of a Snapshot, through snapshot_to_document)."""
    if isinstance(doc, Snapshot):
        doc = snapshot_to_document(doc)
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"), allow_nan=False)

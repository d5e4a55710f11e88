"""What changed between two runs (`netviz diff`): machines, flows, counts and listeners, by
natural key. Pure: two RunFacts (netviz.history) in, a RunDiff out, as a table or JSON.

A machine that was not captured in one of the runs (failed, interrupted, drawn from a stale
snapshot) is reported unreachable, and its flows and listeners are not compared: a machine
that is down has not closed all its connections.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

from netviz.history import FlowSeen, RunFacts

DIFF_SCHEMA = "netviz.diff/1"


@dataclass(frozen=True)
class Unreachable:
    machine: str
    runs: tuple[str, ...]  # "a", "b" or both: where it was not captured
    category: Optional[str]  # why, as the later failing run said (refused, timeout, ...)


@dataclass(frozen=True)
class Replaced:
    """A port held by other processes in B than in A (a process replaced by another)."""

    listener: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass
class RunDiff:
    a: RunFacts
    b: RunFacts
    machines_added: list[str] = field(default_factory=list)
    machines_removed: list[str] = field(default_factory=list)
    unreachable: list[Unreachable] = field(default_factory=list)
    flows_added: list[FlowSeen] = field(default_factory=list)
    flows_removed: list[FlowSeen] = field(default_factory=list)
    counts_changed: list[tuple[FlowSeen, FlowSeen]] = field(default_factory=list)
    not_compared: int = 0  # flows touching an unreachable machine
    listeners_opened: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    listeners_closed: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    listeners_replaced: list[Replaced] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Anything but counts changed (counts move all the time: pools, retries)."""
        return bool(self.machines_added or self.machines_removed or self.unreachable or self.flows_added
                    or self.flows_removed or self.listeners_opened or self.listeners_closed
                    or self.listeners_replaced)

    def add_listener_change(self, key: str, before: tuple[str, ...], after: tuple[str, ...]) -> None:
        """A listener held by `before` in A and `after` in B (node keys, sorted; empty: not there)."""
        if not before:
            self.listeners_opened.append((key, after))
        elif not after:
            self.listeners_closed.append((key, before))
        elif before != after:
            self.listeners_replaced.append(Replaced(key, before, after))


def compare(a: RunFacts, b: RunFacts) -> RunDiff:
    """What changed from run `a` to run `b` (both in memory; netviz.history_diff does the same
    on two recorded runs in the database)."""
    diff = RunDiff(a, b)
    skip = compare_machines(diff, a, b)
    for key in sorted(set(a.flows) | set(b.flows)):
        place_flow_change(diff, a.flows.get(key), b.flows.get(key), skip)
    for key in sorted(set(a.listeners) | set(b.listeners)):
        place = b.listener_places.get(key) or a.listener_places[key]
        if place[0] not in skip:
            diff.add_listener_change(key, tuple(sorted(a.listeners.get(key, ()))),
                                     tuple(sorted(b.listeners.get(key, ()))))
    return diff


def compare_machines(diff: RunDiff, a: RunFacts, b: RunFacts) -> set[str]:
    """Machines added, removed and unreachable into `diff`; returns the machines whose flows and
    listeners are not compared (not captured in A or in B)."""
    diff.machines_added = sorted(set(b.machines) - set(a.machines))
    diff.machines_removed = sorted(set(a.machines) - set(b.machines))
    down_a, down_b = a.unreachable(), b.unreachable()
    for name in sorted(down_a | down_b):
        runs = tuple(run for run, down in (("a", down_a), ("b", down_b)) if name in down)
        facts = b if "b" in runs else a
        diff.unreachable.append(Unreachable(name, runs, facts.machines[name].category))
    return down_a | down_b


def place_flow_change(diff: RunDiff, before: Optional[FlowSeen], after: Optional[FlowSeen], skip: set[str]) -> None:
    """One flow's line in A (`before`) and B (`after`), either None when absent, into `diff`."""
    either = after or before
    assert either is not None
    if either.client_machine in skip or either.server_machine in skip:
        diff.not_compared += 1
    elif before is None:
        diff.flows_added.append(after)
    elif after is None:
        diff.flows_removed.append(before)
    elif before.count != after.count:
        diff.counts_changed.append((before, after))


# ------------------------------------------------------------------------------------------
# output


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _flow_text(flow: FlowSeen) -> str:
    via = f" via {flow.via}" if flow.via else ""
    return f"{flow.client} -> {flow.server} {flow.proto}/{flow.port}{via}"


def diff_table(diff: RunDiff) -> str:
    """The diff as lines for a terminal or a pipe: `+` added, `-` removed, `~` changed, `!` unreachable."""
    lines = [f"run A {diff.a.run_id} ({_when(diff.a.started_at)})  ->  run B {diff.b.run_id} "
             f"({_when(diff.b.started_at)})"]
    lines += [f"+ machine {name}" for name in diff.machines_added]
    lines += [f"- machine {name}" for name in diff.machines_removed]
    for item in diff.unreachable:
        where = " and ".join(run.upper() for run in item.runs)
        lines.append(f"! machine {item.machine} unreachable in {where}" + (f" ({item.category})" if item.category else ""))
    lines += [f"+ flow {_flow_text(flow)} ({flow.count})" for flow in diff.flows_added]
    lines += [f"- flow {_flow_text(flow)} ({flow.count})" for flow in diff.flows_removed]
    lines += [f"~ flow {_flow_text(after)} count {before.count} -> {after.count}"
              for before, after in diff.counts_changed]
    lines += [f"+ listener {key} held by {', '.join(holders)}" for key, holders in diff.listeners_opened]
    lines += [f"- listener {key} held by {', '.join(holders)}" for key, holders in diff.listeners_closed]
    lines += [f"~ listener {item.listener} held by {', '.join(item.after)}, was {', '.join(item.before)}"
              for item in diff.listeners_replaced]
    if diff.not_compared:
        lines.append(f"  ({diff.not_compared} flows of unreachable machines not compared)")
    if len(lines) == 1:
        lines.append("  no change")
    return "\n".join(lines) + "\n"


def _flow_json(flow: FlowSeen) -> dict:
    return {"key": flow.key, "client": flow.client, "server": flow.server, "proto": flow.proto, "port": flow.port,
            "via": flow.via, "count": flow.count}


def _run_json(facts: RunFacts) -> dict:
    return {"run": facts.run_id, "started_at": facts.started_at}


def diff_json(diff: RunDiff) -> str:
    """The `netviz.diff/1` document (docs/history.md)."""
    document = {
        "schema": DIFF_SCHEMA,
        "a": _run_json(diff.a),
        "b": _run_json(diff.b),
        "changed": diff.changed,
        "machines": {"added": diff.machines_added, "removed": diff.machines_removed,
                     "unreachable": [{"machine": item.machine, "in": list(item.runs), "category": item.category}
                                     for item in diff.unreachable]},
        "flows": {"added": [_flow_json(flow) for flow in diff.flows_added],
                  "removed": [_flow_json(flow) for flow in diff.flows_removed],
                  "count_changed": [{"key": after.key, "before": before.count, "after": after.count}
                                    for before, after in diff.counts_changed],
                  "not_compared": diff.not_compared},
        "listeners": {"opened": [{"key": key, "held_by": list(holders)} for key, holders in diff.listeners_opened],
                      "closed": [{"key": key, "held_by": list(holders)} for key, holders in diff.listeners_closed],
                      "replaced": [{"key": item.listener, "before": list(item.before), "after": list(item.after)}
                                   for item in diff.listeners_replaced]},
    }
    return json.dumps(document, indent=2) + "\n"

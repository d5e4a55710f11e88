"""`netviz diff`: two cached runs (written by the cache's writer, recorded in a real history),
compared through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from history_runs import lab, write_run

from netviz.diff import compare
from netviz.history import open_history, read_facts
from netviz.history_diff import diff_recorded
from netviz.when import parse_span, parse_when

NETVIZ = [sys.executable, "-m", "netviz"]


@pytest.fixture
def cache(tmp_path) -> Path:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    return root


def diff(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(NETVIZ + ["diff", "--cache", str(cache), *args], capture_output=True, text=True, timeout=120)


def as_json(cache: Path, *args: str) -> dict:
    done = diff(cache, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_flow_that_starts_one_that_stops_and_a_listener_that_opens(cache):
    write_run(cache, lab())
    write_run(cache, lab(extra_flow=True, old_flow=False, cache_listener=True))
    document = as_json(cache)
    assert document["schema"] == "netviz.diff/1" and document["changed"]
    assert [flow["key"] for flow in document["flows"]["added"]] == ["web|host|app>db|host|newdb|tcp|7000|"]
    assert [flow["key"] for flow in document["flows"]["removed"]] == ["web|host|app>db|host|olddb|tcp|6000|"]
    opened = {item["key"]: item["held_by"] for item in document["listeners"]["opened"]}
    assert opened == {"db|host|tcp|0.0.0.0|11211": ["db|host|memcached"], "db|host|tcp|0.0.0.0|7000": ["db|host|newdb"]}
    assert [item["key"] for item in document["listeners"]["closed"]] == ["db|host|tcp|0.0.0.0|6000"]
    table = diff(cache).stdout
    assert "+ flow web|host|app -> db|host|newdb tcp/7000 (1)" in table
    assert "- flow web|host|app -> db|host|olddb tcp/6000 (1)" in table


def test_a_machine_that_goes_down_is_unreachable_not_all_its_flows_removed(cache):
    write_run(cache, lab())
    write_run(cache, lab(), failed={"db": "refused"})
    document = as_json(cache)
    assert document["machines"]["unreachable"] == [{"machine": "db", "in": ["b"], "category": "refused"}]
    assert document["flows"]["removed"] == [] and document["flows"]["not_compared"] == 2
    assert "! machine db unreachable in B (refused)" in diff(cache).stdout


def test_a_process_replaced_on_its_port_and_counts_that_changed(cache):
    write_run(cache, lab())
    write_run(cache, lab(replaced=True, clients=3))
    document = as_json(cache)
    replaced, = document["listeners"]["replaced"]
    assert replaced == {"key": "db|host|tcp|0.0.0.0|5432", "before": ["db|host|postgres"],
                        "after": ["db|host|pgbouncer"]}
    assert [flow["key"] for flow in document["flows"]["added"]] == ["web|host|app>db|host|pgbouncer|tcp|5432|"]


def test_exit_code_says_whether_anything_but_counts_changed(cache):
    write_run(cache, lab())
    write_run(cache, lab(clients=4))  # only a count moved
    same = diff(cache, "--exit-code")
    assert same.returncode == 0, same.stderr
    assert "~ flow web|host|app -> db|host|postgres tcp/5432 count 1 -> 4" in same.stdout
    write_run(cache, lab(extra_flow=True))
    assert diff(cache, "--exit-code").returncode == 1
    assert diff(cache).returncode == 0


def test_runs_named_by_id_directory_and_time(cache):
    now = time.time()
    first = write_run(cache, lab(), now=now - 3 * 3600)
    second = write_run(cache, lab(extra_flow=True), now=now - 3600)
    write_run(cache, lab(), now=now)
    by_time = as_json(cache, "--", "-2h", "-30m")
    assert as_json(cache, "2h", "30m")["a"] == by_time["a"]
    assert (by_time["a"]["run"], by_time["b"]["run"]) == (first.run_id, second.run_id)
    by_name = as_json(cache, first.run_id, str(second.path))
    assert by_name["flows"]["added"] and by_name["b"]["run"] == second.run_id
    alone = as_json(cache, first.run_id)  # A against the newest
    assert alone["changed"] is False


def test_a_history_of_one_run_says_diff_needs_two(cache):
    write_run(cache, lab())
    done = diff(cache)
    assert done.returncode == 1 and "needs two" in done.stderr


def test_times_and_spans():
    assert parse_span("7d") == 7 * 86400 and parse_span("10m") == 600
    assert parse_when("-2h", 10_000.0) == parse_when("2h", 10_000.0) == 2800.0
    assert parse_when("yesterday", 100_000.0) == 100_000.0 - 86400
    assert parse_when("2026-12-01T10:00Z", 0) == 1796119200.0
    with pytest.raises(ValueError):
        parse_when("last tuesday", 0)


@pytest.mark.parametrize("changes", [
    dict(extra_flow=True, old_flow=False, cache_listener=True),
    dict(replaced=True, clients=3),
    dict(clients=2, failed={"db": "refused"}),
    dict(extra_flow=True, failed={"web": "timeout"}),
])
def test_the_diff_computed_in_the_database_equals_the_diff_of_the_runs_read_whole(cache, changes):
    failed = changes.pop("failed", {})
    first = write_run(cache, lab())
    second = write_run(cache, lab(**changes), failed=failed)
    connection = open_history(cache)
    in_memory = compare(read_facts(connection, first.run_id), read_facts(connection, second.run_id))
    in_sql = diff_recorded(connection, first.run_id, second.run_id)
    assert found(in_sql) == found(in_memory) and in_sql.changed
    backwards = diff_recorded(connection, second.run_id, first.run_id)
    assert found(backwards) == found(compare(read_facts(connection, second.run_id),
                                             read_facts(connection, first.run_id)))


def found(diff) -> dict:
    """What a diff reports (its runs' machines included), without the runs' flows read whole."""
    report = {name: value for name, value in vars(diff).items() if name not in ("a", "b")}
    report["runs"] = [(facts.run_id, facts.started_at, facts.machines) for facts in (diff.a, diff.b)]
    return report

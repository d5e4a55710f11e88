"""One Transport interface, one collection path: failure kinds as an Enum that still reads as
text, the local transport driven like any machine (budgets, watchdog, cancel), a transport
written outside netviz collected through the same path, paramiko's errors sorted by type."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time

import fabric
import paramiko
import pytest

from netviz.budget import OutputBudget
from netviz.collect import FAILED, OK, collect, collect_local, payload_source
from netviz.inventory import HostSpec
from netviz.transport import (
    AUTH,
    FAILURE_KINDS,
    PAYLOAD_ERROR,
    REFUSED,
    TIMEOUT,
    UNREACHABLE,
    Attempt,
    FailureKind,
    HostFailure,
    LocalTransport,
    SSHTransport,
    Timings,
    Transport,
    TransportOptions,
    local_target,
    run_child,
)
from netviz.transport.ssh import _open as open_connection

needs_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")


def test_failure_kinds_are_an_enum_that_reads_as_text():
    assert FailureKind.DNS == "dns" and "dns" == FailureKind.DNS
    assert f"{FailureKind.HOST_KEY}" == "host_key" and str(FailureKind.HOST_KEY) == "host_key"
    assert json.dumps({"category": FailureKind.BAD_OUTPUT}) == '{"category": "bad_output"}'
    assert "sudo" in FAILURE_KINDS and len(FAILURE_KINDS) == len(FailureKind)
    failure = HostFailure("refused", "no")
    assert failure.kind is FailureKind.REFUSED and str(failure) == "refused: no"
    with pytest.raises(ValueError):
        HostFailure("not a kind", "no")


def test_both_transports_implement_the_interface():
    for transport in (SSHTransport(), LocalTransport(), _Scripted()):
        assert isinstance(transport, Transport)
    spec = HostSpec(name="h", address="h", connect_timeout=2, command_timeout=30,
                    jump=(HostSpec(name="j", address="j", connect_timeout=2),))
    assert SSHTransport().deadline(spec) == 2 * 6 * 2 + 30 + 5 + 10  # unchanged from the SSH-only watchdog
    assert SSHTransport().descriptors(spec) == 8
    assert LocalTransport().deadline(local_target("here", 30)) == 40


class _Scripted:
    """A transport written outside netviz: this Python runs the payload, as a `docker exec`
    transport would run `docker exec -i NAME python3 - --framed`."""

    def __init__(self) -> None:
        self.fetched: list[str] = []

    def fetch(self, target: HostSpec, payload: bytes, attempt: Attempt, timings: Timings) -> bytes:
        self.fetched.append(target.name)
        return run_child([sys.executable, "-", "--framed"], payload, target.command_timeout, attempt, timings)

    def deadline(self, target: HostSpec) -> float:
        return target.command_timeout + 5

    def descriptors(self, target: HostSpec) -> int:
        return 4


def test_a_new_transport_is_collected_through_the_one_path():
    transport = _Scripted()
    hosts = [local_target(name, 120) for name in ("one", "two")]
    results = collect(hosts, transport, parallel=2)
    assert [(result.name, result.status) for result in results] == [("one", OK), ("two", OK)]
    assert sorted(transport.fetched) == ["one", "two"]
    assert results[0].snapshot is not None and results[0].snapshot.name == "one"


def test_local_output_counts_against_the_budget():
    """The local child's stdout is bounded like a machine's over SSH (it was read whole before)."""
    attempt = Attempt(OutputBudget(per_machine=1000).share())
    flood = b"import sys\nsys.stdout.write('x' * 100000)\n"
    with pytest.raises(HostFailure) as raised:
        LocalTransport().fetch(local_target("here", 30), flood, attempt, Timings())
    assert raised.value.kind == "bad_output"


def test_a_cancelled_local_attempt_kills_its_child():
    attempt = Attempt()
    outcome: dict[str, object] = {}

    def go() -> None:
        try:
            LocalTransport().fetch(local_target("here", 60), b"import time\ntime.sleep(60)\n", attempt, Timings())
        except HostFailure as failure:
            outcome["failure"] = failure

    worker = threading.Thread(target=go)
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    attempt.cancel()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome.get("failure"), HostFailure) and outcome["failure"].kind == TIMEOUT


def test_a_failing_local_payload_quotes_its_last_error_line():
    result = collect_local("here", timeout=30, payload=b"import sys\nsys.exit('the reason')\n")
    assert (result.status, result.kind) == (FAILED, PAYLOAD_ERROR)
    assert "exit status 1" in result.message and "the reason" in result.message


def test_the_local_watchdog_gives_up_a_child_past_its_deadline():
    """The watchdog serves the local transport too: with a clock that jumps, the child is
    given up (and killed) at once, not after the payload's own 60 s."""
    ticks = iter(range(0, 10_000, 100))
    started = time.monotonic()
    results = collect([local_target("here", 60)], LocalTransport(), parallel=1,
                      payload=b"import time\ntime.sleep(60)\n", clock=lambda: float(next(ticks)))
    assert (results[0].status, results[0].kind) == (FAILED, TIMEOUT) and "gave up after" in results[0].message
    assert time.monotonic() - started < 20


def test_the_payload_source_runs_through_run_child():
    stdout = run_child([sys.executable, "-", "--framed"], payload_source(), 120, Attempt(), Timings())
    assert stdout.strip()


# ------------------------------------------------------------------------------ paramiko's types


@needs_keygen
@pytest.mark.parametrize(
    "error, kind, words",
    [
        (paramiko.BadAuthenticationType("Bad authentication type", ["password"]), AUTH,
         "the server allows only: password"),
        (paramiko.ssh_exception.IncompatiblePeer("Incompatible ssh peer (no acceptable host key)"), UNREACHABLE,
         "no algorithm in common"),
        (paramiko.ssh_exception.NoValidConnectionsError({("192.0.2.1", 22): ConnectionRefusedError()}), REFUSED,
         "Unable to connect"),
        (paramiko.ssh_exception.NoValidConnectionsError({("192.0.2.1", 22): TimeoutError()}), UNREACHABLE,
         "Unable to connect"),
        (paramiko.SSHException("No authentication methods available"), AUTH, "authentication as 'root' failed"),
        (paramiko.SSHException("No existing session"), UNREACHABLE, "did not finish in time"),
    ],
)
def test_paramiko_errors_are_sorted_by_type(mocker, tmp_path, error, kind, words):
    mocker.patch.object(fabric.Connection, "open", side_effect=error)
    spec = HostSpec(name="h", address="192.0.2.1", user="root", known_hosts=str(tmp_path / "kh"))
    with pytest.raises(HostFailure) as raised:
        open_connection(spec, None, TransportOptions(), Attempt(), "")
    assert raised.value.kind == kind
    assert words in raised.value.message

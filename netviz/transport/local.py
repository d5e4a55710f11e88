"""This machine without SSH: the same payload, run by this Python in a child process.

No login, no sudo, no host key: the child runs with netviz's own privileges, its output is read
with the same budgets as a machine's over SSH (standard output counts against the run's
OutputBudget, standard error keeps its tail), and a cancelled attempt kills it.
"""

from __future__ import annotations

import os
import select
import selectors
import subprocess
import sys
import time
from typing import Optional

from netviz.budget import BudgetExceeded, OutputShare
from netviz.inventory import HostSpec
from netviz.transport.base import (
    BAD_OUTPUT,
    MAX_STDERR,
    PAYLOAD_ERROR,
    TIMEOUT,
    Attempt,
    HostFailure,
    Timings,
    WindowPlan,
    window_extra,
)

# Seconds the watchdog waits past the command's own timeout (the child is killed at that one).
LOCAL_SLACK = 10.0
# Three pipes to the child, and the selector's own descriptor.
LOCAL_DESCRIPTORS = 4


def local_target(name: str, command_timeout: float) -> HostSpec:
    """This machine as a target of LocalTransport: only `name` and `command_timeout` count
    (there is no address to reach and no account to log in as)."""
    return HostSpec(name=name, address="localhost", user="", command_timeout=command_timeout)


class LocalTransport:
    """The Transport to this machine: `sys.executable - --framed`, the payload on its stdin.

    With a `window` (WindowPlan), the payload observes the machine over it; the wait for the
    window's start and the window itself are added to the command's timeout.
    """

    def __init__(self, window: Optional[WindowPlan] = None) -> None:
        self.window = window

    def fetch(self, target: HostSpec, payload: bytes, attempt: Attempt, timings: Timings) -> bytes:
        """Run the payload here within `target.command_timeout` (plus the window); return its raw stdout."""
        argv = [sys.executable, "-", "--framed"]
        if self.window is not None:
            argv += self.window.payload_arguments()
        return run_child(argv, payload, target.command_timeout + window_extra(self.window), attempt, timings)

    def deadline(self, target: HostSpec) -> float:
        """The command's timeout (plus the window) and a little slack: `fetch` kills the child at the timeout."""
        return target.command_timeout + window_extra(self.window) + LOCAL_SLACK

    def descriptors(self, target: HostSpec) -> int:
        """The child's three pipes and a selector."""
        return LOCAL_DESCRIPTORS


def run_child(argv: list[str], payload: bytes, timeout: float, attempt: Attempt, timings: Timings) -> bytes:
    """Run `argv` with `payload` on its stdin and return its stdout, within `timeout` seconds.

    The child is killed when the attempt is cancelled, at the timeout, and on any failure; a
    child that cannot be started or exits with a status other than 0 is a payload_error quoting
    its last line of stderr. Any transport that runs the payload through a local command
    (`docker exec -i`, `kubectl exec -i`) can use it as is.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:  # the program cannot be started (permissions, a broken venv)
        raise HostFailure(PAYLOAD_ERROR, f"cannot start {argv[0]}: {error.strerror or error}") from None
    try:
        attempt.track(process.kill)  # Popen.kill does nothing once the child is reaped
        stdout, stderr = _exchange(process, payload, started + timeout, timeout, attempt.output)
        try:
            status = process.wait(max(0.1, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise HostFailure(TIMEOUT, f"payload did not finish within {timeout:g} s") from None
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    timings.command = time.monotonic() - started
    if attempt.cancelled:
        raise HostFailure(TIMEOUT, "cancelled")
    if status != 0:
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no error message"
        raise HostFailure(PAYLOAD_ERROR, f"payload failed (exit status {status}): {last[:500]}")
    return stdout


def _exchange(
    process: subprocess.Popen, payload: bytes, deadline: float, timeout: float, output: OutputShare
) -> tuple[bytes, bytes]:
    """Feed `payload` to the child's stdin and read its stdout and stderr until both end.

    Standard output counts against `output` (a bad_output HostFailure as soon as it would pass
    the machine's or the run's budget); standard error keeps its last MAX_STDERR bytes.
    """
    stdout = bytearray()
    stderr = bytearray()
    pending = memoryview(payload)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        if pending:
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()  # type: ignore[union-attr]
        while _reading(selector, process):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostFailure(TIMEOUT, f"payload did not finish within {timeout:g} s")
            for key, _ in selector.select(remaining):
                if key.fileobj is process.stdin:
                    pending = _feed(process, selector, pending)
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.fileobj is process.stdout:
                    try:
                        output.take(len(chunk))
                    except BudgetExceeded as error:
                        raise HostFailure(BAD_OUTPUT, str(error)) from None
                    stdout += chunk
                else:
                    stderr += chunk
                    del stderr[: max(0, len(stderr) - MAX_STDERR)]  # keep the tail: the error is at the end
    return bytes(stdout), bytes(stderr)


def _reading(selector: selectors.BaseSelector, process: subprocess.Popen) -> bool:
    """Whether stdout or stderr is still open (stdin alone left means the child closed both)."""
    registered = {key.fileobj for key in selector.get_map().values()}
    return process.stdout in registered or process.stderr in registered


def _feed(process: subprocess.Popen, selector: selectors.BaseSelector, pending: memoryview) -> memoryview:
    """Write what the pipe takes without blocking (PIPE_BUF bytes); close stdin once all is sent."""
    try:
        written = os.write(process.stdin.fileno(), pending[: select.PIPE_BUF])  # type: ignore[union-attr]
    except BrokenPipeError:
        written = len(pending)  # the child is gone without reading it all: its stderr says why
    pending = pending[written:]
    if not pending:
        selector.unregister(process.stdin)
        process.stdin.close()  # type: ignore[union-attr]
    return pending

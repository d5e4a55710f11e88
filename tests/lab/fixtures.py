"""pytest fixtures for the lab (registered by tests/conftest.py through ``pytest_plugins``).

- ``lab`` (session): the standard scenario plus every fault, hardening and control host, as a
  ``LabEnvironment``. Built once per test session, torn down at its end (and at exit).
- ``lab_many_sockets`` (session): adds the machine holding 100,000 TCP sockets to that lab.
- ``lab_factory`` (function): ``lab_factory(count)`` gives a started lab of ``count`` bare
  machines, torn down when the test ends.

Every fixture skips, naming the reason, when the lab cannot run here (not root, a tool missing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import pytest

from .lab import Lab, Machine, bare_lab_machines, cleanup_stale, missing_requirements
from .scenario import ExpectedFlow, FaultHost, ManySockets, Scenario, add_fault_hosts, build_scenario, start_many_sockets


def skip_unless_lab_possible() -> None:
    """Skip the calling test (loudly, with the reason) when the lab cannot run on this box."""
    reasons = missing_requirements()
    if reasons:
        pytest.skip("test lab unavailable: " + "; ".join(reasons))


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` every 50 ms until it gives something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def unique_prefix(stem: str) -> str:
    """A link/namespace prefix unique to this process, so parallel test runs never collide."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    number, text = os.getpid(), ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return (stem + text)[:8]


@contextlib.contextmanager
def _teardown_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a lab runs, so a killed test run still tears down."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class LabEnvironment:
    """What the ``lab`` fixture yields. Unknown attributes fall through to the ``Lab``
    (``write_inventory``, ``machines``, ``ssh_argv``, ``root_ipv4``, ...)."""

    lab: Lab
    scenario: Scenario
    faults: list[FaultHost]
    inventory: Path  # every host: scenario, faults, hardening, controls
    scenario_inventory: Path  # web, db and cache only

    @property
    def client_key(self) -> Path:
        return self.lab.client_key

    @property
    def known_hosts(self) -> Path:
        return self.lab.known_hosts

    @property
    def machines(self) -> dict[str, Machine]:
        return self.lab.machines

    @property
    def expected_flows(self) -> list[ExpectedFlow]:
        return self.scenario.flows

    def fault(self, name: str) -> FaultHost:
        return next(item for item in self.faults if item.name == name)

    def inventory_for(self, hosts: Sequence[str], path: Optional[Path] = None, **defaults: Any) -> Path:
        """An inventory of just ``hosts`` (with the lab's defaults, overridden by ``defaults``)."""
        target = path or self.lab.root_dir / "inventories" / f"{'-'.join(hosts)[:80]}.yaml"
        return self.lab.write_inventory(target, hosts=hosts, **defaults)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lab, name)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEnvironment]:
    """The standard scenario (web, db, cache with their flows) plus every fault host."""
    skip_unless_lab_possible()
    cleanup_stale()
    environment = Lab(tmp_path_factory.mktemp("lab"), prefix=unique_prefix("nvl"))
    with _teardown_on_sigterm():
        try:
            faults = add_fault_hosts(environment)
            environment.start()
            scenario = build_scenario(environment)
            yield LabEnvironment(
                lab=environment,
                scenario=scenario,
                faults=faults,
                inventory=environment.write_inventory(environment.root_dir / "inventory.yaml"),
                scenario_inventory=environment.write_inventory(
                    environment.root_dir / "scenario.yaml", hosts=scenario.hosts),
            )
        finally:
            environment.stop()


@pytest.fixture(scope="session")
def lab_many_sockets(lab: LabEnvironment) -> ManySockets:
    """A machine named ``many`` in the session lab whose lab-many processes hold 100,000 TCP
    sockets (loopback pairs); ``.flows`` lists the loopback flows behind them."""
    return start_many_sockets(lab.lab)


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """``lab_factory(count, prefix=None)``: a started lab of ``count`` bare machines (m00, m01,
    ...; sshd and python3, no programs), torn down when the test ends."""
    skip_unless_lab_possible()
    made: list[Lab] = []

    def make(count: int = 0, prefix: Optional[str] = None) -> Lab:
        new = Lab(tmp_path / f"lab{len(made)}", prefix=prefix or unique_prefix(f"nf{len(made)}"))
        made.append(new)
        bare_lab_machines(new, count)
        return new.start()

    with _teardown_on_sigterm():
        try:
            yield make
        finally:
            for item in made:
                item.stop()

"""The test lab itself: real machines, real connections, faults that fail as designed, and a
teardown that leaves nothing behind. The oracles are independent of netviz: the OpenSSH
client, `ss` inside each machine, the kernel's own answers to connect()."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.lab.lab import (
    LOGIN_NOISE,
    STATE_DIR,
    SUDO_NOPASSWD_USER,
    SUDO_PASSWORD,
    SUDO_PASSWORD_USER,
    UNPRIVILEGED_USER,
    Lab,
    cleanup_stale,
)
from tests.lab.scenario import (
    DIES_AFTER_SECONDS,
    SLOW_SECONDS,
    TRUNCATE_BYTES,
    flow_visible,
    ingress_visible,
    outside_visible,
)

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent


def ssh(lab, name: str, command: str, *, user: str = "root", input: str | None = None, timeout: float = 60):
    """Run ``command`` on machine ``name`` with the real OpenSSH client."""
    return subprocess.run(
        [*lab.ssh_argv(name, user=user), command], capture_output=True, text=True, input=input, timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def login_user(lab, name: str) -> str:
    return lab.machines[name].inventory.get("user", "root")


def reachable_machines(lab) -> list[str]:
    """Machines the lab's client must be able to log into."""
    return [
        name for name, machine in lab.machines.items()
        if machine.sshd and machine.authorize_client and machine.known_host_key == "match"
    ]


# --------------------------------------------------------------------------- machines


def test_every_machine_answers_ssh_with_its_own_hostname_pid_namespace_and_identity(lab):
    names = reachable_machines(lab)
    assert {"web", "db", "cache", "nopython", "hang", "slow", "altport", "nosudo"} <= set(names)
    machine_ids = {}
    for name in names:
        result = ssh(lab, name, "hostname; cat /proc/1/comm; cat /etc/machine-id; id -un", user=login_user(lab, name))
        assert result.returncode == 0, (name, result.stderr)
        lines = result.stdout.splitlines()[-4:]  # the noisy machine prints a banner first
        assert lines[0] == name
        assert lines[1] == "sshd", f"{name}: pid 1 must be the machine's own sshd"
        assert lines[3] == login_user(lab, name)
        machine_ids[name] = lines[2]
    assert len(set(machine_ids.values())) == len(names), "every machine has its own machine-id"


def test_a_machine_sees_only_its_own_processes_tmp_and_addresses(lab):
    web = lab.machines["web"]
    comms = {comm for _, _, comm in web.processes()}
    assert {"sshd", "lab-web", "lab-ping"} <= comms
    assert not comms & {"lab-db", "lab-cache", "lab-outside"}

    listing = ssh(lab, "web", "ls /proc | grep -c '^[0-9]'; ip -br addr show dev eth0; ls -A /tmp")
    assert listing.returncode == 0, listing.stderr
    process_count, addresses, *tmp_entries = listing.stdout.splitlines()
    assert int(process_count) < 20, "its /proc lists only the machine's processes"
    assert web.ipv4 in addresses and web.ipv6 in addresses
    assert os.getpid() not in [nspid for _, nspid, _ in web.processes() if nspid > 100]
    # /tmp is the machine's own: at most the path down to the lab's directory shows there.
    assert all(str(lab.root_dir).startswith(f"/tmp/{entry}") for entry in tmp_entries)


def test_machine_exec_and_run_work_inside_the_machine(lab):
    db = lab.machines["db"]
    assert db.exec(["hostname"], check=True).stdout.strip() == "db"
    pid = db.run(["sleep", "30"], log_name="sleeper")
    try:
        assert pid in db.pids()
        assert db.wait_for_process("sleep", timeout=5) in db.pids()
    finally:
        os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the scenario


def test_every_expected_flow_is_established_according_to_ss(lab):
    flows = lab.scenario.flows
    assert {flow.proto for flow in flows} == {"tcp", "udp"}
    assert {flow.family for flow in flows} == {4, 6}
    assert any(flow.client_host == flow.server_host for flow in flows), "a loopback flow"
    for flow in flows:
        assert flow_visible(lab.lab, flow) is None, flow_visible(lab.lab, flow)


def test_dual_stack_listener_sees_an_ipv4_mapped_peer(lab):
    cache = lab.machines["cache"]
    out = cache.exec(["ss", "-H", "-t", "-n", "-p", "state", "established", "sport", "= :6379"], check=True).stdout
    assert f"[::ffff:{lab.machines['web'].ipv4}]" in out and "lab-cache" in out


def test_the_scenario_holds_no_connection_beyond_the_expected_ones(lab):
    """Every established TCP or connected UDP socket of web, db and cache (sshd apart) belongs
    to an expected flow or outside connection, so "exactly the expected flows" is meaningful."""
    ports = {flow.server_port for flow in lab.scenario.flows} | {item.remote_port for item in lab.scenario.outside}
    for name in lab.scenario.hosts:
        for row in lab.machines[name].sockets():
            if row.state != "ESTAB" or row.comms <= {"sshd"}:
                continue
            assert row.comms and all(comm.startswith("lab-") for comm in row.comms), row
            assert int(row.local_port) in ports or int(row.peer_port) in ports, row


def test_raw_packet_and_outside_sockets_are_held(lab):
    for item in lab.scenario.ingress:
        assert ingress_visible(lab.lab, item), item
    for item in lab.scenario.outside:
        assert outside_visible(lab.lab, item), item
        assert item.remote_address == lab.root_ipv4
        assert item.remote_address not in {m.ipv4 for m in lab.machines.values()}
    root_side = subprocess.run(["ss", "-H", "-t", "-n", "-p", "state", "established"], capture_output=True, text=True)
    assert f"{lab.machines['web'].ipv4}:" in root_side.stdout and "lab-outside" in root_side.stdout


def test_expected_description_is_written_as_json(lab):
    document = json.loads((lab.root_dir / "expected.json").read_text())
    assert len(document["flows"]) == len(lab.scenario.flows)
    assert set(document["flows"][0]) >= {"client_host", "client_comm", "server_host", "server_comm", "proto",
                                         "server_port", "server_address", "count"}
    assert document["outside_address"] == lab.root_ipv4


def test_inventory_and_known_hosts_describe_the_lab(lab):
    document = yaml.safe_load(lab.inventory.read_text())
    assert document["defaults"]["identity_file"] == str(lab.client_key)
    assert document["defaults"]["known_hosts"] == str(lab.known_hosts)
    assert document["hosts"]["web"]["address"] == lab.machines["web"].ipv4
    assert document["hosts"]["altport"]["port"] == 2222
    assert document["hosts"]["nosudo"] == {"address": lab.machines["nosudo"].ipv4, "user": UNPRIVILEGED_USER, "sudo": True}
    assert document["groups"]["scenario"] == ["web", "db", "cache"]
    assert set(yaml.safe_load(lab.scenario_inventory.read_text())["hosts"]) == {"web", "db", "cache"}
    known = lab.known_hosts.read_text()
    assert f"[{lab.machines['altport'].ipv4}]:2222 " in known
    assert lab.machines["unknownkey"].ipv4 + " " not in known
    changed = lab.machines["changedkey"]
    assert changed.host_public_key.split()[1] not in known and f"{changed.ipv4} ssh-ed25519 " in known


# --------------------------------------------------------------------------- faults


def _connect(address: str, port: int, timeout: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "connected", time.monotonic() - started
    except ConnectionRefusedError:
        return "refused", time.monotonic() - started
    except socket.timeout:
        return "timeout", time.monotonic() - started
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error)), time.monotonic() - started


def test_closed_port_refuses_at_once(lab):
    outcome, elapsed = _connect(lab.machines["closed"].ipv4, 22, 5)
    assert outcome == "refused" and elapsed < 1


def test_blackholed_address_times_out(lab):
    outcome, elapsed = _connect(lab.phantoms["blackhole"].ipv4, 22, 2)
    assert outcome == "timeout" and elapsed >= 1.9


def test_unowned_address_is_unreachable(lab):
    outcome, elapsed = _connect(lab.phantoms["unreachable"].ipv4, 22, 15)
    assert outcome == "EHOSTUNREACH" and elapsed < 10


def test_wrong_key_is_denied(lab):
    result = ssh(lab, "wrongkey", "true")
    assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr


def test_changed_host_key_is_refused_by_openssh(lab):
    result = ssh(lab, "changedkey", "true")
    assert result.returncode == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_unknown_host_key_is_refused_by_openssh(lab):
    result = ssh(lab, "unknownkey", "true")
    assert result.returncode == 255 and "Host key verification failed" in result.stderr


def test_machine_without_python(lab):
    probe = "command -v python3 python python3.11 /usr/libexec/platform-python; python3 -c 'print(1)'"
    result = ssh(lab, "nopython", probe)
    assert result.returncode == 127 and result.stdout == "" and "python3: command not found" in result.stderr
    control = ssh(lab, "web", probe)
    assert control.returncode == 0 and "/usr/bin/python3" in control.stdout


def test_hanging_payload_hangs_until_timeout_kills_it(lab):
    started = time.monotonic()
    result = ssh(lab, "hang", "timeout -k 1 2 python3 -", input="print('never')\n")
    assert result.returncode == 124 and result.stdout == ""
    assert 2 <= time.monotonic() - started < 10
    hang = lab.machines["hang"]
    deadline = time.monotonic() + 5
    while any(comm == "sleep" for _, _, comm in hang.processes()):
        assert time.monotonic() < deadline, "timeout -k left the hung payload behind"
        time.sleep(0.1)


def test_sudo_without_a_password_configured_fails(lab):
    for name, user in (("nosudo", UNPRIVILEGED_USER), ("sudopass", SUDO_PASSWORD_USER)):
        result = ssh(lab, name, "id -u; sudo -n true", user=user)
        assert result.returncode == 1, (name, result.stderr)
        assert result.stdout.strip() != "0" and "a password is required" in result.stderr
    with_password = ssh(lab, "sudopass", "sudo -S -p '' id -u", user=SUDO_PASSWORD_USER, input=SUDO_PASSWORD + "\n")
    assert with_password.returncode == 0 and with_password.stdout.strip() == "0"
    nopasswd = ssh(lab, "sudoer", "sudo -n id -u", user=SUDO_NOPASSWD_USER)
    assert nopasswd.returncode == 0 and nopasswd.stdout.strip() == "0"


def test_alternative_port_logs_in(lab):
    result = ssh(lab, "altport", "hostname")
    assert result.returncode == 0 and result.stdout.strip() == "altport"


# --------------------------------------------------------------------------- hardening helpers


def test_slow_machine_starts_python_late(lab):
    started = time.monotonic()
    result = ssh(lab, "slow", "python3 -c 'print(42)'")
    assert result.returncode == 0 and result.stdout.strip() == "42"
    assert time.monotonic() - started >= SLOW_SECONDS


def test_truncated_machine_cuts_output(lab):
    result = ssh(lab, "truncated", "python3 -c \"print('x' * 5000)\"")
    assert len(result.stdout) == TRUNCATE_BYTES


def test_noisy_machine_prints_a_banner_before_any_output(lab):
    result = ssh(lab, "noise", "echo payload-output")
    assert result.returncode == 0
    assert result.stdout == LOGIN_NOISE + "payload-output\n"


def test_dying_machine_drops_the_session_mid_command_and_recovers(lab):
    started = time.monotonic()
    result = ssh(lab, "dies", "python3 -c \"import sys, time; print('x' * 5000); sys.stdout.flush(); time.sleep(30)\"")
    assert result.returncode == 255, result.stderr  # the connection dropped; no exit status came
    assert len(result.stdout) == TRUNCATE_BYTES
    assert DIES_AFTER_SECONDS <= time.monotonic() - started < 20
    again = ssh(lab, "dies", "hostname")
    assert again.returncode == 0 and again.stdout.strip() == "dies", "the machine's listener survives"


def test_kill_sshd_kills_the_machine_and_restart_brings_it_back(lab_factory):
    small = lab_factory(1)
    machine = small.machines["m00"]
    pid = machine.run(["sleep", "300"])
    assert subprocess.run([*small.ssh_argv("m00"), "true"], capture_output=True).returncode == 0
    machine.kill_sshd()
    assert machine.pids() == [] and not Path(f"/proc/{pid}").exists()
    assert _connect(machine.ipv4, 22, 3)[0] == "refused"
    machine.restart()
    result = subprocess.run([*small.ssh_argv("m00"), "cat /proc/1/comm"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "sshd"


def test_many_sockets_machine_holds_100000_tcp_sockets(lab_many_sockets):
    machine = lab_many_sockets.machine
    established = machine.exec(["sh", "-c", "ss -H -t -n state established | wc -l"], check=True).stdout
    assert int(established) >= 100_000
    assert sum(flow.count for flow in lab_many_sockets.flows) * 2 == lab_many_sockets.sockets == 100_000
    assert {comm for _, _, comm in machine.processes()} >= {"lab-many"}


# --------------------------------------------------------------------------- teardown


def _leftovers(prefix: str, netns: list[str], links: list[str], pids: list[int]) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found = [f"netns {name}" for name in netns if name in listed.split()]
    found += [f"link {name}" for name in links if Path(f"/sys/class/net/{name}").exists()]
    found += [f"pid {pid}" for pid in pids if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]
    if (STATE_DIR / f"{prefix}.json").exists():
        found.append("state file")
    return found


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stop_leaves_no_namespace_link_or_process(tmp_path):
    from tests.lab.fixtures import skip_unless_lab_possible, unique_prefix

    skip_unless_lab_possible()
    prefix = unique_prefix("nt")
    lab = Lab(tmp_path / "lab", prefix)
    lab.add_machine("one")
    lab.add_machine("two", python=False)
    lab.start()
    # pid 1 of each machine (pids() could also catch sshd's short-lived child from the readiness probe)
    pids = [machine.init_pid for machine in lab.machines.values()]
    pids.append(lab.machines["one"].run(["sleep", "300"]))
    pids.append(lab.run_outside(["sleep", "300"]))
    netns = [machine.netns for machine in lab.machines.values()]
    links = [lab.bridge] + [machine.veth for machine in lab.machines.values()]
    before = _leftovers(prefix, netns, links, pids)
    assert len(before) == len(netns) + len(links) + len(pids) + 1, before  # all of it exists now
    lab.stop()
    lab.stop()  # idempotent
    assert _leftovers(prefix, netns, links, pids) == []


def test_cleanup_stale_removes_what_a_killed_run_left(tmp_path):
    from tests.lab.fixtures import skip_unless_lab_possible, unique_prefix

    skip_unless_lab_possible()
    prefix = unique_prefix("nk")
    script = (
        "import sys, time; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.lab.lab import Lab;"
        "lab = Lab(Path(sys.argv[2]), sys.argv[3]); lab.add_machine('crash'); lab.start();"
        "lab.machines['crash'].run(['sleep', '300']); lab.run_outside(['sleep', '300']);"
        "print(' '.join(map(str, lab.machines['crash'].pids())), flush=True); time.sleep(300)"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(REPO), str(tmp_path / "lab"), prefix],
                             stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in owner.stdout.readline().split()]
        state = json.loads((STATE_DIR / f"{prefix}.json").read_text())
        assert pids and state["netns"] == [f"{prefix}-crash"]
        assert cleanup_stale(prefix) == [], "a lab whose owner lives is left alone"
    finally:
        owner.kill()  # SIGKILL: no atexit, no teardown
        owner.wait()
    assert _leftovers(prefix, state["netns"], state["links"], pids) != []
    removed = cleanup_stale(prefix)
    assert removed
    recorded = [pid for pid, _ in state["pids"]]
    assert _leftovers(prefix, state["netns"], state["links"], pids + recorded) == []

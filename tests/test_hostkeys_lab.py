"""Host keys against the lab's real sshd keys: unknown keys refused by default and changed keys
always refused, each naming the fingerprints `ssh-keygen -l` gives; hashed entries
(`ssh-keygen -H`) and `[host]:port` entries found; a file with `@cert-authority` and `@revoked`
lines still loads, and a revoked key is refused even where a plain line lists it.

Host patterns (`*`, `?`, `!`, `[host]:port`, mixed case) are judged by the real `ssh` client as
the oracle: for each known_hosts file, `ssh ... true` and `netviz collect` must accept and refuse
the same machines, reached by DNS names (an /etc/hosts of the test's own, bind-mounted in a
private mount namespace) and by IP addresses. So are host certificates (`ssh-keygen -s CA -h`)
under `@cert-authority` lines: valid, for another host, expired, not yet valid, signed by an
authority known_hosts does not trust or revokes, with wildcard or no principals, RSA authorities
with SHA-2 and SHA-1 signatures.
(test_known_hosts.py checks the matching without a server; test_lab_collect.py has basic cases.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml
from typer.testing import CliRunner

from netviz.cli import app

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) missing")

REPO = Path(__file__).resolve().parents[1]


def fingerprint_of(public_key_line: str, tmp_path: Path) -> str:
    """The SHA256 fingerprint as OpenSSH prints it (an independent oracle)."""
    path = tmp_path / "key.pub"
    path.write_text(public_key_line + "\n")
    listed = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True)
    return listed.stdout.split()[1]


def key_of(machine) -> str:
    """`type base64` of a machine's real host key."""
    return " ".join(machine.host_public_key.split()[:2])


def collect(lab, tmp_path: Path, hosts: list[str], known_hosts: Path, *extra: str) -> dict[str, dict]:
    inventory = lab.inventory_for(hosts, path=tmp_path / "hosts.yaml", known_hosts=str(known_hosts), connect_timeout=3)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["collect", "-i", str(inventory), "--cache", str(cache), *extra],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code in (0, 3, 4), result.output
    manifest = json.loads(max(cache.glob("2*/manifest.json")).read_text())
    return {entry["host"]: entry for entry in manifest["hosts"]}


def test_hashed_entries_plain_and_with_a_port_are_found(lab, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(lab.known_hosts, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    lines = [line for line in known.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("|1|") for line in lines)  # no host name left in clear
    altport = lab.machines["altport"]
    assert subprocess.run(["ssh-keygen", "-F", f"[{altport.ipv4}]:{altport.port}", "-f", str(known)],
                          capture_output=True).returncode == 0  # OpenSSH finds the hashed [host]:port line
    hosts = collect(lab, tmp_path, ["web", "altport"], known)
    assert hosts["web"]["status"] == "ok", hosts["web"]
    assert hosts["altport"]["status"] == "ok", hosts["altport"]


def test_unknown_key_is_refused_naming_its_fingerprint(lab, tmp_path):
    web = lab.machines["web"]
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in lab.known_hosts.read_text().splitlines()
                             if not line.startswith((web.ipv4 + " ", web.ipv6 + " "))))
    entry = collect(lab, tmp_path, ["web"], known)["web"]
    assert entry["category"] == "host_key", entry
    assert fingerprint_of(web.host_public_key, tmp_path) in entry["message"]
    assert "unknown host key" in entry["message"] and web.ipv4 in entry["message"]
    assert known.read_text().count(key_of(web)) == 0  # refused means not recorded either


@pytest.mark.parametrize("accept_new", [False, True], ids=["default", "accept-new"])
def test_changed_key_is_always_refused_naming_both_fingerprints(lab, tmp_path, accept_new):
    web, db = lab.machines["web"], lab.machines["db"]
    known = tmp_path / "known_hosts"
    known.write_text(f"{web.ipv4} {key_of(db)}\n")  # another machine's real key filed under web's address
    before = known.read_text()
    entry = collect(lab, tmp_path, ["web"], known, *(["--accept-new-host-keys"] if accept_new else []))["web"]
    assert entry["category"] == "host_key", entry
    message = entry["message"]
    assert "CHANGED" in message
    assert fingerprint_of(db.host_public_key, tmp_path) in message  # what known_hosts has
    assert fingerprint_of(web.host_public_key, tmp_path) in message  # what the machine offers
    assert known.read_text() == before  # never overwritten


def test_marker_lines_load_and_a_revoked_key_is_refused_even_when_listed(lab, tmp_path):
    web, db, cache = lab.machines["web"], lab.machines["db"], lab.machines["cache"]
    known = tmp_path / "known_hosts"
    known.write_text(
        "# a real-world file: markers, comments, a hashed line, plain lines\n"
        f"@cert-authority *.example.com {key_of(cache)}\n"
        f"@revoked * {key_of(db)}\n"
        f"{web.ipv4} {key_of(web)}\n"
        f"{db.ipv4} {key_of(db)}\n"
        f"{cache.ipv4} {key_of(cache)}\n"
    )
    hosts = collect(lab, tmp_path, ["web", "db", "cache"], known, "--accept-new-host-keys")
    assert hosts["web"]["status"] == "ok" and hosts["cache"]["status"] == "ok"  # the file loaded
    assert hosts["db"]["category"] == "host_key", hosts["db"]
    assert "revoked" in hosts["db"]["message"]
    assert fingerprint_of(db.host_public_key, tmp_path) in hosts["db"]["message"]


# ------------------------------------------------------------------------------ ssh as the oracle


@dataclass(frozen=True)
class Target:
    """One inventory host of the comparison: a lab machine reached by a name or an address."""

    host: str  # the inventory name
    machine: str
    address: str  # as typed after `ssh` and in the inventory: a DNS name (any case) or an IP literal
    port: int = 22


def targets(lab) -> list[Target]:
    machines = lab.machines
    return [
        Target("web", "web", "Web.Lab.Example"),  # mixed case: ssh looks up web.lab.example
        Target("db", "db", "db.lab.example"),
        Target("cache7", "cache", "cache7.lab.example"),
        Target("alt", "altport", "alt.lab.example", machines["altport"].port),
        Target("web-ip", "web", machines["web"].ipv4),
        Target("db-ip6", "db", machines["db"].ipv6),
    ]


def lab_hosts_file(lab, directory: Path) -> Path:
    """The /etc/hosts the oracle and netviz both see: lab names for the machines' IPv4 addresses."""
    machines = lab.machines
    path = directory / "hosts"
    path.write_text(
        "127.0.0.1 localhost\n"
        f"{machines['web'].ipv4} web.lab.example\n"
        f"{machines['db'].ipv4} db.lab.example\n"
        f"{machines['cache'].ipv4} cache7.lab.example\n"
        f"{machines['altport'].ipv4} alt.lab.example\n"
    )
    return path


def with_lab_names(argv: list[str], hosts_file: Path) -> list[str]:
    """Run `argv` in a private mount namespace whose /etc/hosts is `hosts_file` (and with no
    system-wide known_hosts, which ssh is told to ignore too). Nothing outside it changes."""
    script = (
        'mount --bind "$0" /etc/hosts && '
        '{ [ ! -e /etc/ssh/ssh_known_hosts ] || mount --bind /dev/null /etc/ssh/ssh_known_hosts; } && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, str(hosts_file), *argv]


def clean_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
    env["COLUMNS"] = "200"
    return env


def ssh_accepts(lab, target: Target, known: Path, hosts_file: Path) -> bool:
    """What OpenSSH decides: True when it logs in, False when it refuses the host key."""
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(lab.client_key), "-p", str(target.port),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "CheckHostIP=no", "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
        f"root@{target.address}", "true",
    ]
    result = subprocess.run(with_lab_names(argv, hosts_file), capture_output=True, text=True, timeout=60,
                            env=clean_env(), stdin=subprocess.DEVNULL)
    if result.returncode == 0:
        return True
    assert "Host key verification failed" in result.stderr, (target, result.stderr)  # not a network failure
    return False


def netviz_collect(lab, chosen: list[Target], known: Path, hosts_file: Path, directory: Path) -> dict[str, dict]:
    """`netviz collect` of `chosen` with `known` as known_hosts: its manifest entries by host."""
    directory.mkdir(parents=True, exist_ok=True)
    inventory = directory / "hosts.yaml"
    document = {
        "defaults": {"user": "root", "identity_file": str(lab.client_key), "known_hosts": str(known),
                     "connect_timeout": 5, "command_timeout": 30},
        "hosts": {target.host: {"address": target.address, "port": target.port} for target in chosen},
    }
    inventory.write_text(yaml.safe_dump(document, sort_keys=False))
    cache = directory / "cache"
    argv = [sys.executable, "-m", "netviz", "collect", "-i", str(inventory), "--cache", str(cache)]
    result = subprocess.run(with_lab_names(argv, hosts_file), capture_output=True, text=True, timeout=180,
                            cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL)
    manifests = sorted(cache.glob("2*/manifest.json"))
    assert manifests, result.stdout + result.stderr
    return {entry["host"]: entry for entry in json.loads(manifests[-1].read_text())["hosts"]}


def netviz_accepts(entry: dict) -> bool:
    if entry["status"] == "ok":
        return True
    assert entry["category"] == "host_key", entry  # refused for its host key, nothing else
    return False


def key_line(lab, machine: str) -> str:
    return key_of(lab.machines[machine])


# Each case: known_hosts text (from the lab's keys) and the hosts ssh is expected to accept. The
# expectation is checked against ssh too, so each case does test what its name says.
KnownHostsCase = tuple[str, Callable[..., str], set[str]]


def _ipv4_net(lab) -> str:
    return ".".join(lab.machines["web"].ipv4.split(".")[:3])


ORACLE_CASES: list[KnownHostsCase] = [
    ("domain-wildcard-several-keys", lambda lab, key, ca: (
        f"*.lab.example {key('web')}\n*.lab.example {key('db')}\n*.LAB.Example {key('cache')}\n"
        f"[*.lab.example]:2222 {key('altport')}\n"), {"web", "db", "cache7", "alt"}),
    ("negation-excludes-the-line", lambda lab, key, ca: (
        f"*.lab.example,!db.lab.example {key('db')}\n*.lab.example {key('web')}\n"), {"web"}),
    ("negation-first", lambda lab, key, ca: (
        f"!web.lab.example,*.lab.example {key('web')}\ncache?.lab.example {key('cache')}\n"), {"cache7"}),
    ("negation-alone-matches-nothing", lambda lab, key, ca: (
        f"!db.lab.example {key('web')}\n!nothing.example {key('db')}\n"), set()),
    ("question-marks", lambda lab, key, ca: (
        f"c?che?.lab.example {key('cache')}\nd?b.lab.example {key('db')}\n"
        f"[alt.lab.example]:22?2 {key('altport')}\nweb.lab.exampl? {key('web')}\n"), {"cache7", "alt", "web"}),
    ("ports", lambda lab, key, ca: (
        f"alt.lab.example {key('altport')}\n* {key('web')}\n"), {"web", "web-ip"}),
    ("ip-patterns-and-case", lambda lab, key, ca: (
        f"{_ipv4_net(lab)}.* {key('web')}\n{lab.machines['db'].ipv6.upper()} {key('db')}\n"
        f"WEB.LAB.EXAMPLE {key('web')}\n"), {"web", "web-ip", "db-ip6"}),
    ("revoked-through-a-pattern", lambda lab, key, ca: (
        f"*.lab.example {key('web')}\n*.lab.example {key('db')}\n@revoked * {key('db')}\n"), {"web"}),
    ("changed-under-a-pattern", lambda lab, key, ca: (
        f"*.lab.example,{_ipv4_net(lab)}.* {key('cache')}\n"), {"cache7"}),
    ("cert-authority-only", lambda lab, key, ca: (
        f"@cert-authority *.lab.example,[*]:* {ca}\n@cert-authority * {key('web')}\n"), set()),
    ("cert-authority-and-a-plain-key", lambda lab, key, ca: (
        f"@cert-authority * {ca}\nweb.lab.example {key('web')}\n"), {"web"}),
    ("unknown-marker-and-bad-lines", lambda lab, key, ca: (
        f"@trusted *.lab.example {key('web')}\nthis is not a key\n"
        f"db.lab.example ssh-ed25519 not-base64\ndb.lab.example {key('db')}\n"), {"db"}),
]


@pytest.fixture(scope="module")
def oracle(lab, tmp_path_factory) -> dict[str, tuple[dict[str, bool], dict[str, dict], str]]:
    """Per case: what ssh decided per host, netviz's manifest entries, the known_hosts text.
    Every case runs at once (ssh and netviz are independent processes)."""
    if shutil.which("unshare") is None or shutil.which("ssh") is None:
        pytest.skip("unshare (util-linux) or ssh (openssh-client) missing")
    root = tmp_path_factory.mktemp("oracle")
    hosts_file = lab_hosts_file(lab, root)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "ca")], check=True)
    ca = " ".join((root / "ca.pub").read_text().split()[:2])
    chosen = targets(lab)

    def key(machine: str) -> str:
        return key_line(lab, machine)

    files: dict[str, Path] = {}
    for name, build, _ in ORACLE_CASES:
        directory = root / name
        directory.mkdir()
        files[name] = directory / "known_hosts"
        files[name].write_text(build(lab, key, ca))
    texts = {name: path.read_text() for name, path in files.items()}
    with ThreadPoolExecutor(max_workers=16) as pool:
        ssh_jobs = {(name, target.host): pool.submit(ssh_accepts, lab, target, files[name], hosts_file)
                    for name in files for target in chosen}
        netviz_jobs = {name: pool.submit(netviz_collect, lab, chosen, files[name], hosts_file, files[name].parent)
                       for name in files}
        results = {}
        for name in files:
            decided = {target.host: ssh_jobs[(name, target.host)].result() for target in chosen}
            results[name] = (decided, netviz_jobs[name].result(), texts[name])
    for name, path in files.items():
        assert path.read_text() == texts[name], f"{name}: known_hosts was modified"
    return results


@pytest.mark.parametrize("case", [case[0] for case in ORACLE_CASES])
def test_netviz_accepts_and_refuses_exactly_what_ssh_does(oracle, case):
    by_ssh, entries, text = oracle[case]
    expected = next(accepted for name, _, accepted in ORACLE_CASES if name == case)
    by_netviz = {host: netviz_accepts(entry) for host, entry in entries.items()}
    assert by_netviz == by_ssh, f"{case}: netviz {by_netviz} != ssh {by_ssh}\n{text}"
    assert {host for host, accepted in by_ssh.items() if accepted} == expected, f"{case}: ssh decided {by_ssh}"


def test_refusals_through_patterns_say_why(oracle, lab, tmp_path):
    _, entries, _ = oracle["changed-under-a-pattern"]
    web = lab.machines["web"]
    message = entries["web"]["message"]
    assert "CHANGED" in message and fingerprint_of(web.host_public_key, tmp_path) in message
    assert fingerprint_of(lab.machines["cache"].host_public_key, tmp_path) in message
    assert "known_hosts:1" in message  # the pattern line it contradicts
    _, entries, _ = oracle["revoked-through-a-pattern"]
    assert "revoked" in entries["db"]["message"]
    _, entries, _ = oracle["cert-authority-only"]
    for host in ("web", "alt"):
        assert "trusts a certificate authority" in entries[host]["message"], entries[host]
        assert "--accept-new-host-keys" in entries[host]["message"]
    assert "ssh-keyscan -p 2222 alt.lab.example" in entries["alt"]["message"]
    _, entries, _ = oracle["cert-authority-and-a-plain-key"]
    assert "trusts a certificate authority" in entries["db"]["message"]


def test_a_revoked_key_is_refused_for_every_host_not_only_those_its_line_names(lab, tmp_path):
    """The one deliberate difference in plain keys: ssh applies `@revoked other.example KEY` to
    other.example only; netviz never trusts a revoked key."""
    hosts_file = lab_hosts_file(lab, tmp_path)
    web = next(target for target in targets(lab) if target.host == "web")
    known = tmp_path / "known_hosts"
    known.write_text(f"@revoked other.example {key_line(lab, 'web')}\n*.lab.example {key_line(lab, 'web')}\n")
    assert ssh_accepts(lab, web, known, hosts_file)
    entry = netviz_collect(lab, [web], known, hosts_file, tmp_path)["web"]
    assert entry["category"] == "host_key" and "revoked" in entry["message"], entry


def wait_for_banner(address: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as connection:
                connection.settimeout(2)
                if connection.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no sshd at {address}:{port}")


@dataclass(frozen=True)
class CertificateCase:
    """A host certificate for alt.lab.example as `ssh-keygen -s` makes it, and what ssh says of it."""

    name: str
    principals: str = "alt.lab.example"  # -n ("" for none)
    validity: str = "-5m:+1h"  # -V
    authority: str = "ed25519"  # the CA's key type
    signature: str = ""  # -t: the CA's signature algorithm (RSA), default ssh-keygen's
    trusted: bool = True  # known_hosts trusts the CA that signed it (else another one)
    revoked: bool = False  # known_hosts revokes that CA
    ssh_accepts: bool = True  # what the real ssh decides (checked too)
    reason: str = ""  # in netviz's refusal


CERTIFICATE_CASES = [
    CertificateCase("valid"),
    CertificateCase("wildcard principal", principals="*.lab.example", ssh_accepts=False,
                    reason="not valid for alt.lab.example"),  # OpenSSH 9.2 compares principals literally
    CertificateCase("no principals: any host", principals=""),
    CertificateCase("rsa authority with sha-2", authority="rsa", signature="rsa-sha2-512"),
    CertificateCase("another host's", principals="db.lab.example", ssh_accepts=False,
                    reason="not valid for alt.lab.example (it names db.lab.example)"),
    CertificateCase("expired", validity="-2h:-1h", ssh_accepts=False, reason="has expired"),
    CertificateCase("not valid yet", validity="+1h:+2h", ssh_accepts=False, reason="not valid yet"),
    CertificateCase("untrusted authority", trusted=False, ssh_accepts=False, reason="does not trust"),
    CertificateCase("revoked authority", revoked=True, ssh_accepts=False, reason="revoked"),
    CertificateCase("rsa authority with sha-1", authority="rsa", signature="ssh-rsa", ssh_accepts=False,
                    reason="SHA-1"),
]


@pytest.fixture
def certified_sshd(lab, request):
    """A second sshd on altport (port 2223) that also presents the host certificate of the test's
    CertificateCase, signed by a CA of the test's own, which it also trusts for user certificates.
    Yields (target, known_hosts text, the directory holding the CA's key `ca`)."""
    case: CertificateCase = request.param
    machine = lab.machines["altport"]
    directory = lab.root_dir / "hostcert"  # under the lab directory: the machine sees it too
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    for name in ("ca", "other-ca"):
        subprocess.run(["ssh-keygen", "-q", "-t", case.authority, "-N", "", "-f", str(directory / name)], check=True)
    public = directory / "host.pub"
    shutil.copy(machine.host_key_path.with_name(machine.host_key_path.name + ".pub"), public)
    signing = ["ssh-keygen", "-q", "-s", str(directory / "ca"), "-I", "alt", "-h", "-V", case.validity]
    signing += ["-n", case.principals] if case.principals else []
    signing += ["-t", case.signature] if case.signature else []
    subprocess.run([*signing, str(public)], check=True, capture_output=True)
    port = 2223
    config = [line for line in (machine.dir / "sshd_config").read_text().splitlines()
              if not line.startswith(("Port ", "ListenAddress ", "PidFile "))]
    config += [f"Port {port}", f"ListenAddress {machine.ipv4}:{port}", "PidFile /run/sshd-hostcert.pid",
               f"HostCertificate {directory / 'host-cert.pub'}", f"TrustedUserCAKeys {directory / 'ca.pub'}"]
    (directory / "sshd_config").write_text("\n".join(config) + "\n")
    pid = machine.run(["/usr/sbin/sshd", "-D", "-f", str(directory / "sshd_config"), "-E", str(directory / "sshd.log")],
                      log_name="sshd-hostcert")
    ca = " ".join((directory / ("ca.pub" if case.trusted else "other-ca.pub")).read_text().split()[:2])
    known = f"@cert-authority *.lab.example,[*.lab.example]:* {ca}\n"
    if case.revoked:
        known += f"@revoked * {ca}\n"
    try:
        wait_for_banner(machine.ipv4, port)
        yield Target("alt-cert", "altport", "alt.lab.example", port), known, directory
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("certified_sshd", CERTIFICATE_CASES, ids=[case.name for case in CERTIFICATE_CASES],
                         indirect=True)
def test_a_host_certificate_is_accepted_or_refused_as_ssh_does(lab, tmp_path, certified_sshd, request):
    case = request.node.callspec.params["certified_sshd"]
    target, known_text, _ = certified_sshd
    hosts_file = lab_hosts_file(lab, tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text(known_text)  # no plain key of the machine: only the certificate can vouch for it
    assert ssh_accepts(lab, target, known, hosts_file) is case.ssh_accepts  # the oracle
    entry = netviz_collect(lab, [target], known, hosts_file, tmp_path / "collect")[target.host]
    assert netviz_accepts(entry) is case.ssh_accepts, entry
    if not case.ssh_accepts:
        assert case.reason in entry["message"], entry
        assert fingerprint_of(lab.machines["altport"].host_public_key, tmp_path) in entry["message"]


@pytest.mark.parametrize("certified_sshd", CERTIFICATE_CASES[:1], ids=["valid"], indirect=True)
def test_a_plain_key_under_a_certificate_authority_says_what_to_do(lab, tmp_path, certified_sshd):
    """The machine's main sshd (port 2222) has no certificate: refused by both, with the advice,
    which works."""
    _, known_text, _ = certified_sshd
    target = Target("alt", "altport", "alt.lab.example", lab.machines["altport"].port)
    hosts_file = lab_hosts_file(lab, tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text(known_text)
    assert not ssh_accepts(lab, target, known, hosts_file)
    entry = netviz_collect(lab, [target], known, hosts_file, tmp_path / "ca-only")[target.host]
    assert entry["category"] == "host_key", entry
    message = entry["message"]
    assert f"unknown host key for [alt.lab.example]:{target.port}" in message
    assert f"trusts a certificate authority for [alt.lab.example]:{target.port}" in message
    assert "offered a plain host key, no certificate" in message
    assert f"ssh-keyscan -p {target.port} alt.lab.example" in message and "--accept-new-host-keys" in message
    assert fingerprint_of(lab.machines["altport"].host_public_key, tmp_path) in message
    known.write_text(known.read_text() + f"[alt.lab.example]:{target.port} {key_line(lab, 'altport')}\n")
    assert ssh_accepts(lab, target, known, hosts_file)
    entry = netviz_collect(lab, [target], known, hosts_file, tmp_path / "with-key")[target.host]
    assert entry["status"] == "ok", entry


@pytest.mark.parametrize("certified_sshd", CERTIFICATE_CASES[:1], ids=["valid"], indirect=True)
def test_a_user_certificate_logs_in_where_its_key_alone_is_not_authorized(lab, tmp_path, certified_sshd):
    """Fleets with a host CA often log in with user certificates too: the identity file's
    `-cert.pub` beside it is offered, as ssh offers it."""
    target, known_text, directory = certified_sshd
    hosts_file = lab_hosts_file(lab, tmp_path)
    known = tmp_path / "known_hosts"
    known.write_text(known_text)
    identity = tmp_path / "id_alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(identity)], check=True)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({
        "defaults": {"user": "root", "identity_file": str(identity), "known_hosts": str(known), "connect_timeout": 5},
        "hosts": {target.host: {"address": target.address, "port": target.port}}}))

    def collected(name: str) -> dict:
        cache = tmp_path / name
        argv = [sys.executable, "-m", "netviz", "collect", "-i", str(inventory), "--cache", str(cache)]
        subprocess.run(with_lab_names(argv, hosts_file), capture_output=True, text=True, timeout=180, cwd=REPO,
                       env=clean_env(), stdin=subprocess.DEVNULL)
        return json.loads(max(cache.glob("2*/manifest.json")).read_text())["hosts"][0]

    entry = collected("without-certificate")
    assert entry["category"] == "auth", entry  # the key alone is in no authorized_keys
    subprocess.run(["ssh-keygen", "-q", "-s", str(directory / "ca"), "-I", "alice", "-n", "root", "-V", "-5m:+1h",
                    f"{identity}.pub"], check=True, capture_output=True)
    argv = ["ssh", "-F", "/dev/null", "-i", str(identity), "-p", str(target.port), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", f"root@{target.address}", "true"]
    assert subprocess.run(with_lab_names(argv, hosts_file), capture_output=True, timeout=60, env=clean_env(),
                          stdin=subprocess.DEVNULL).returncode == 0  # the oracle logs in with the certificate
    entry = collected("with-certificate")
    assert entry["status"] in ("ok", "partial"), entry

"""Who a process is: systemd unit, container and pod, from cgroup paths and runtime state.

netviz.identity reads the layouts each runtime writes; the payload reads /proc/PID/cgroup and the
runtimes' state files (read-only); the stitch groups and filters by what they say. The live test
puts real processes holding real sockets into cgroups laid out as Docker and Kubernetes do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from snapbuilder import Machine

from netviz.filters import FilterSpec, apply_filters
from netviz.identity import identify
from netviz.payload import capture
from netviz.snapshot import parse_snapshot, snapshot_to_document
from netviz.snapshot.model import Container, Pod
from netviz.stitch import stitch

CID = "3f2a" + "0" * 56 + "beef"
OTHER = "9" * 64
POD_UID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
SYSTEMD_V1 = Path("/sys/fs/cgroup/systemd")


# ------------------------------------------------------------------ the layouts

@pytest.mark.parametrize("path, unit, runtime, container_id, pod_uid", [
    ("/system.slice/nginx.service", "nginx.service", None, None, None),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.service", "app-foo.service (user 1000)",
     None, None, None),
    ("/user.slice/user-1000.slice/user@1000.service", "user@1000.service", None, None, None),
    ("/user.slice/user-0.slice/session-3.scope", "session-3.scope", None, None, None),
    (f"/system.slice/docker-{CID}.scope", None, "docker", CID, None),
    (f"/docker/{CID}", None, "docker", CID, None),
    (f"/system.slice/crio-{CID}.scope", None, "cri-o", CID, None),
    (f"/machine.slice/libpod-{CID}.scope/container", None, "podman", CID, None),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice/"
     f"cri-containerd-{CID}.scope", None, "containerd", CID, POD_UID),
    (f"/kubepods/burstable/pod{POD_UID}/{CID}", None, None, CID, POD_UID),
    (f"/kubepods.slice/kubepods-pod{POD_UID.replace('-', '_')}.slice/crio-{CID}.scope", None, "cri-o", CID, POD_UID),
    ("/", None, None, None, None),
    ("/init.scope", "init.scope", None, None, None),
    (f"/system.slice/docker-{CID[:-1]}.scope", "docker-" + CID[:-1] + ".scope", None, None, None),  # 63 digits: no id
])
def test_each_layout_names_what_it_says_and_nothing_else(path, unit, runtime, container_id, pod_uid):
    found = identify(path, {})
    assert (found.unit, found.runtime, found.container_id, found.pod_uid) == (unit, runtime, container_id, pod_uid)
    assert found.container_name is None and found.pod is None  # no runtime state: not guessed
    assert found.container == (container_id[:12] if container_id else None)


@pytest.mark.parametrize("path, runtime, name, unit", [
    ("/lxc.payload.web1/system.slice/nginx.service", "lxc", "web1", "nginx.service"),  # LXD, Incus, LXC 4+
    ("/lxc.payload.web1/init.scope", "lxc", "web1", "init.scope"),
    ("/lxc/db2/system.slice/postgresql.service", "lxc", "db2", "postgresql.service"),  # older LXC
    ("/machine.slice/systemd-nspawn@build\\x2dbox.service/payload/system.slice/sshd.service", "systemd-nspawn",
     "build-box", "sshd.service"),
    ("/machine.slice/machine-qemu\\x2d1\\x2dfedora.scope/libvirt/emulator", "systemd-machined", "qemu-1-fedora",
     "machine-qemu\\x2d1\\x2dfedora.scope"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/lxc.payload.prod-db/init.scope", "lxc",
     "prod-db (user 1000)", "user@1000.service"),  # a user's own: never taken for the system's prod-db
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/container-web.service/lxc.payload.web/init.scope",
     "lxc", "web (user 1000)", "container-web.service (user 1000)"),
    ("/lxc.monitor.web1", None, None, None),  # LXD's monitor of the container is not in it
    ("/system.slice/lxc.service", None, None, "lxc.service"),
])
def test_containers_named_by_their_cgroup_path(path, runtime, name, unit):
    found = identify(path, {})
    assert (found.runtime, found.container, found.unit, found.container_id) == (runtime, name, unit, None)


def test_group_by_container_tells_lxd_containers_apart_on_one_host():
    host = Machine("host", "10.0.0.1")
    for pid, netns, address in ((10, 7001, "10.0.3.10"), (11, 7002, "10.0.3.11")):
        host.namespace(netns, address)
        host.process(pid, "nginx", netns=netns)
        host.listen(pid, "tcp", "0.0.0.0:80", netns=netns)
        host.connect(pid, "tcp", f"{address}:80", "10.0.0.2:40000" if pid == 10 else "10.0.0.2:40001", netns=netns)
    client = Machine("client", "10.0.0.2")
    client.process(20, "curl")
    client.connect(20, "tcp", "10.0.0.2:40000", "10.0.3.10:80")
    client.connect(20, "tcp", "10.0.0.2:40001", "10.0.3.11:80")
    built = host.build()
    cgroups = {10: "/lxc.payload.web1/system.slice/nginx.service", 11: "/lxc.payload.web2/system.slice/nginx.service"}
    built = dataclasses.replace(
        built, processes=tuple(dataclasses.replace(p, cgroup=cgroups.get(p.pid)) for p in built.processes))
    graph = stitch([built, client.build()], group_by="container")
    nodes = graph.nodes_by_id()
    assert sorted((nodes[flow.server].comm, nodes[flow.server].container) for flow in graph.flows) == [
        ("web1", "web1"), ("web2", "web2")]


def test_a_process_in_a_users_own_cgroup_never_takes_a_system_containers_name():
    """Any user can create cgroups under their user@UID.service and name them after a running
    container's id: the runtimes' state is not theirs, so it names nothing there."""
    state = {CID: Container(runtime="docker", name="postgres-prod", image="postgres:16")}
    assert identify(f"/system.slice/docker-{CID}.scope", state).container == "postgres-prod"
    spoof = identify(f"/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{CID}.scope", state)
    assert (spoof.container, spoof.image) == (CID[:12], None)
    pods = {POD_UID: Pod(name="web-7d9f", namespace="shop")}
    pod_path = f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice"
    assert identify(f"/{pod_path}/cri-containerd-{OTHER}.scope", {}, pods).pod == "shop/web-7d9f"
    assert identify(f"/user.slice/user-1000.slice/user@1000.service/{pod_path}/x.scope", {}, pods).pod is None


def test_runtime_state_names_the_container_and_the_pod():
    state = {CID: Container(runtime="docker", name="web-1", image="nginx:1.25", pod="web-7d9f", pod_namespace="shop",
                            container="nginx")}
    found = identify(f"/kubepods/burstable/pod{POD_UID}/{CID}", state)
    assert (found.container, found.image, found.pod, found.k8s_container) == ("web-1", "nginx:1.25", "shop/web-7d9f", "nginx")
    assert identify(f"/docker/{OTHER}", state).container == OTHER[:12]


# ------------------------------------------------------------------ the payload's reading

def test_runtime_state_is_read_for_the_containers_seen_only(tmp_path):
    docker = tmp_path / "var/lib/docker/containers"
    for cid, name in ((CID, "/web-1"), (OTHER, "/not-running-here")):
        (docker / cid).mkdir(parents=True)
        (docker / cid / "config.v2.json").write_text(json.dumps({"Name": name, "Config": {"Image": "nginx:1.25"}}))
    logs = tmp_path / "var/log/containers"
    logs.mkdir(parents=True)
    (logs / f"web-7d9f_shop_nginx-{CID}.log").write_text("")
    (logs / f"other_shop_x-{OTHER}.log").write_text("")
    (logs / "not_a_kubelet_link.log").write_text("")
    processes = [{"pid": 10, "cgroup": f"/kubepods/besteffort/pod{POD_UID}/{CID}"}, {"pid": 11, "cgroup": "/"}]
    runtime = capture.read_runtime(processes, root=str(tmp_path))
    assert runtime == {"containers": {CID: {"runtime": "docker", "name": "web-1", "image": "nginx:1.25",
                                            "pod": "web-7d9f", "pod_namespace": "shop", "container": "nginx"}}}
    assert capture.read_runtime([{"pid": 11, "cgroup": "/"}], root=str(tmp_path)) is None


THIRD = "a" * 64
OTHER_POD = "0f0e0d0c-0b0a-4908-8706-050403020100"
ALONE_POD = "77777777-6666-4555-8444-333333333333"


def test_containerd_and_cri_o_bundles_and_the_pod_directories_name_what_the_links_do_not(tmp_path):
    """A Kubernetes node without /var/log/containers links (or with their logs rotated away):
    containerd's and CRI-O's OCI bundles carry the CRI annotations, and /var/log/pods names a pod
    by its uid even when nothing names its containers."""
    bundle = tmp_path / "run/containerd/io.containerd.runtime.v2.task/k8s.io" / CID
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"ociVersion": "1.0.2", "annotations": {
        "io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "nginx",
        "io.kubernetes.cri.sandbox-name": "web-7d9f", "io.kubernetes.cri.sandbox-namespace": "shop",
        "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25"}}))
    userdata = tmp_path / "run/containers/storage/overlay-containers" / OTHER / "userdata"
    userdata.mkdir(parents=True)
    (userdata / "config.json").write_text(json.dumps({"annotations": {
        "io.kubernetes.container.name": "redis", "io.kubernetes.pod.name": "cache-0",
        "io.kubernetes.pod.namespace": "data", "io.kubernetes.cri-o.ImageName": "redis:7"}}))
    logs = tmp_path / "var/log/pods"
    for directory in (f"shop_web-7d9f_{POD_UID}", f"data_cache-0_{OTHER_POD}", f"ops_lonely-5c_{ALONE_POD}",
                      "kube-system_not-here_11111111-2222-4333-8444-555555555555", "not-a-pod-dir"):
        (logs / directory).mkdir(parents=True)
    systemd_pod = ALONE_POD.replace("-", "_")
    processes = [
        {"pid": 10, "cgroup": f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID.replace('-', '_')}"
                              f".slice/cri-containerd-{CID}.scope"},
        {"pid": 11, "cgroup": f"/kubepods.slice/kubepods-pod{OTHER_POD.replace('-', '_')}.slice/crio-{OTHER}.scope"},
        {"pid": 12, "cgroup": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_pod}.slice/"
                              f"cri-containerd-{THIRD}.scope"},
    ]
    runtime = capture.read_runtime(processes, root=str(tmp_path))
    assert runtime == {
        "containers": {
            CID: {"runtime": "containerd", "container": "nginx", "pod": "web-7d9f", "pod_namespace": "shop",
                  "image": "docker.io/library/nginx:1.25"},
            OTHER: {"runtime": "cri-o", "container": "redis", "pod": "cache-0", "pod_namespace": "data",
                    "image": "redis:7"}},
        "pods": {POD_UID: {"name": "web-7d9f", "namespace": "shop"},
                 OTHER_POD: {"name": "cache-0", "namespace": "data"},
                 ALONE_POD: {"name": "lonely-5c", "namespace": "ops"}},
    }
    document = _document_with(runtime, processes)
    snapshot = parse_snapshot(document, "node")
    assert parse_snapshot(snapshot_to_document(snapshot), "node").pods == snapshot.pods  # written back whole
    found = {process["pid"]: identify(process["cgroup"], snapshot.containers, snapshot.pods) for process in processes}
    assert [(f.runtime, f.container, f.pod, f.k8s_container, f.image) for f in found.values()] == [
        ("containerd", CID[:12], "shop/web-7d9f", "nginx", "docker.io/library/nginx:1.25"),
        ("cri-o", OTHER[:12], "data/cache-0", "redis", "redis:7"),
        ("containerd", THIRD[:12], "ops/lonely-5c", None, None),  # the pod named by its uid alone
    ]
    # and without the kubelet's directories, that last pod is not named: never guessed
    assert identify(processes[2]["cgroup"], snapshot.containers, {}).pod is None


def _storage_list(graphroot: Path, *entries: dict) -> None:
    """A containers/storage containers.json as Podman and CRI-O write it (overlay driver)."""
    directory = graphroot / "overlay-containers"
    directory.mkdir(parents=True)
    (directory / "containers.json").write_text(json.dumps([
        {"id": entry["id"], "names": entry["names"], "image": "b" * 64, "layer": "c" * 64,
         "metadata": json.dumps(entry["metadata"]), "created": "2026-12-01T10:00:00.000000000Z"}
        for entry in entries]))


def test_podman_and_rootless_docker_name_containers_each_from_its_own_users_store(tmp_path):
    """Podman keeps no per-container state file that names the container: containers/storage's
    list does, in the system's store and in each rootless user's home. A user's list is their own
    file, so it names only the containers running under that user."""
    system, alice = tmp_path / "var/lib/containers/storage", tmp_path / "home/alice/.local/share/containers/storage"
    fourth, cri_o = "4" * 64, "5" * 64
    _storage_list(system,
                  {"id": CID, "names": ["web"], "metadata": {"image-name": "docker.io/library/nginx:1.25",
                                                             "image-id": "b" * 64, "name": "web", "created-at": 1}},
                  {"id": OTHER, "names": ["not-running-here"], "metadata": {"name": "not-running-here"}},
                  {"id": cri_o, "names": ["k8s_redis_cache-0_data_uid_0"],
                   "metadata": {"pod-name": "cache-0", "pod-id": "d" * 64, "name": "k8s_redis_cache-0_data_uid_0"}})
    _storage_list(alice,
                  {"id": THIRD, "names": ["alice-app"], "metadata": {"image-name": "localhost/app:dev", "name": "alice-app"}},
                  {"id": fourth, "names": ["prod-db"], "metadata": {"name": "prod-db"}})  # not hers: ignored
    # rootless Docker keeps its state in the user's home; the system's state is never read for her
    rootless_docker, system_only = "6" * 64, "7" * 64
    for where, cid, name in (("home/alice/.local/share/docker/containers", rootless_docker, "/alice-docker"),
                             ("var/lib/docker/containers", system_only, "/system-web")):
        (tmp_path / where / cid).mkdir(parents=True)
        (tmp_path / where / cid / "config.v2.json").write_text(json.dumps({"Name": name, "Config": {"Image": "busybox"}}))
    (tmp_path / "var/log/containers").mkdir(parents=True)
    (tmp_path / f"var/log/containers/web-7d9f_shop_nginx-{rootless_docker}.log").write_text("")  # the kubelet's: not hers
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n")
    processes = [
        {"pid": 10, "cgroup": f"/machine.slice/libpod-{CID}.scope/container"},
        {"pid": 11, "cgroup": f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{THIRD}.scope/container"},
        {"pid": 12, "cgroup": f"/machine.slice/libpod-{fourth}.scope/container"},
        {"pid": 13, "cgroup": f"/kubepods.slice/kubepods-besteffort.slice/crio-{cri_o}.scope"},
        {"pid": 16, "cgroup": f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{rootless_docker}.scope"},
        {"pid": 17, "cgroup": f"/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{system_only}.scope"},
    ]
    runtime = capture.read_runtime(processes, root=str(tmp_path))
    assert runtime == {"containers": {
        CID: {"runtime": "podman", "name": "web", "image": "docker.io/library/nginx:1.25"},
        THIRD: {"runtime": "podman", "name": "alice-app", "image": "localhost/app:dev", "user": 1000},
        rootless_docker: {"runtime": "docker", "name": "alice-docker", "image": "busybox", "user": 1000}}}
    # alice names a cgroup of her own after the system's container, and bob one after hers
    processes.append({"pid": 14, "cgroup": f"/user.slice/user-1000.slice/user@1000.service/app.slice/libpod-{CID}.scope"})
    processes.append({"pid": 15, "cgroup": f"/user.slice/user-1001.slice/user@1001.service/libpod-{THIRD}.scope"})
    snapshot = parse_snapshot(_document_with(runtime, processes), "host")
    assert snapshot_to_document(snapshot)["runtime"] == runtime  # written back whole, `user` included
    found = [identify(process["cgroup"], snapshot.containers) for process in processes]
    assert [(f.runtime, f.container, f.image) for f in found] == [
        ("podman", "web", "docker.io/library/nginx:1.25"), ("podman", "alice-app (user 1000)", "localhost/app:dev"),
        ("podman", fourth[:12], None), ("cri-o", cri_o[:12], None),
        ("docker", "alice-docker (user 1000)", "busybox"), ("docker", system_only[:12], None),
        ("podman", CID[:12], None), ("podman", THIRD[:12], None)]  # never the names of another's containers


def test_a_broken_or_oversized_podman_list_names_nothing(tmp_path):
    directory = tmp_path / "var/lib/containers/storage/overlay-containers"
    directory.mkdir(parents=True)
    processes = [{"pid": 10, "cgroup": f"/machine.slice/libpod-{CID}.scope/container"}]
    entry = {"id": CID, "names": ["web"], "metadata": "{}"}
    deep = "[" * 200_000 + "]" * 200_000  # a rootless user's own file can be anything
    for text in ("[{not json", json.dumps({"id": CID}), json.dumps([entry, "x" * capture.MAX_STORAGE_LIST]), deep,
                 json.dumps([{**entry, "names": [], "metadata": "[" * 100_000}])):
        (directory / "containers.json").write_text(text)
        assert capture.read_runtime(processes, root=str(tmp_path)) is None, text[:40]
    os.unlink(directory / "containers.json")
    os.mkfifo(directory / "containers.json")  # opened blocking, this would hang the capture
    assert capture.read_runtime(processes, root=str(tmp_path)) is None
    os.unlink(directory / "containers.json")
    (directory / "containers.json").write_text(json.dumps([entry]))
    assert capture.read_runtime(processes, root=str(tmp_path)) == {"containers": {CID: {"runtime": "podman", "name": "web"}}}


def test_a_users_storage_directory_is_scanned_a_bounded_number_of_entries(tmp_path):
    """A user's own directory may hold millions of entries: a bounded scan, never a full listing."""
    for number in range(50):
        (tmp_path / f"d{number:02}-containers").mkdir()
        (tmp_path / f"other{number}").mkdir()
    found = capture._names_ending(str(tmp_path), "-containers", limit=8, scanned=4096)
    assert len(found) == 8 and found == sorted(found) and all(name.endswith("-containers") for name in found)
    assert len(capture._names_ending(str(tmp_path), "-containers", limit=100, scanned=10)) <= 10
    assert capture._names_ending(str(tmp_path / "missing"), "-containers") == []


def _document_with(runtime: dict, processes: list[dict]) -> dict:
    """A machine's snapshot document (as the payload writes it) carrying `runtime`."""
    machine = Machine("node", "10.0.0.9")
    for process in processes:
        machine.process(process["pid"], "app")
    document = snapshot_to_document(machine.build())
    for entry in document["processes"]:
        entry["cgroup"] = next(p["cgroup"] for p in processes if p["pid"] == entry["pid"])
    document["runtime"] = runtime
    return document


def test_a_fifo_or_a_broken_state_file_is_skipped_without_blocking(tmp_path):
    docker = tmp_path / "var/lib/docker/containers"
    (docker / CID).mkdir(parents=True)
    os.mkfifo(docker / CID / "config.v2.json")  # opened blocking, this would hang the capture
    (docker / OTHER).mkdir(parents=True)
    (docker / OTHER / "config.v2.json").write_text("{not json")
    processes = [{"pid": 10, "cgroup": f"/docker/{CID}"}, {"pid": 11, "cgroup": f"/docker/{OTHER}"}]
    assert capture.read_runtime(processes, root=str(tmp_path)) is None


def test_the_cgroup_line_chosen(tmp_path):
    proc = tmp_path / "1"
    proc.mkdir()
    for content, expected in (
        ("0::/system.slice/nginx.service\n", "/system.slice/nginx.service"),
        ("12:pids:/docker/x\n1:name=systemd:/system.slice/docker-y.scope\n0::/\n", "/system.slice/docker-y.scope"),
        ("4:memory:/kubepods/pod1/abc\n", "/kubepods/pod1/abc"),
        ("", None),
    ):
        (proc / "cgroup").write_text(content)
        assert capture.read_cgroup(str(proc)) == expected


# ------------------------------------------------------------------ live: real cgroups, real sockets

@pytest.fixture
def cgroup_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (moves processes between cgroups)")
    if not (SYSTEMD_V1 / "cgroup.procs").exists():
        pytest.skip("needs the name=systemd cgroup hierarchy at /sys/fs/cgroup/systemd")
    root = SYSTEMD_V1 / f"nvid{uuid.uuid4().hex[:8]}"
    root.mkdir()
    started: list[subprocess.Popen] = []
    yield root, started
    for process in started:
        process.kill()
        process.wait()
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
        directory.rmdir()


HOLDER = ("import socket, sys, time\nopen('/proc/self/comm', 'w').write(sys.argv[1])\n"
          "s = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\nprint('ready', flush=True)\ntime.sleep(60)")


def _start_in(cgroup_root, path: str, comm: str) -> int:
    """A process holding a listening socket in network and mount namespaces of its own (as a
    container runtime starts one), moved into cgroup `path`."""
    root, started = cgroup_root
    directory = root / path.lstrip("/")
    directory.mkdir(parents=True)
    process = subprocess.Popen(["unshare", "--net", "--mount", "--", sys.executable, "-c", HOLDER, comm],
                               stdout=subprocess.PIPE, text=True)
    started.append(process)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    (directory / "cgroup.procs").write_text(str(process.pid))
    return process.pid


def test_live_processes_in_container_cgroups_are_named_and_grouped(cgroup_root):
    root, _ = cgroup_root
    docker = _start_in(cgroup_root, f"/system.slice/docker-{CID}.scope", "web")
    pod_path = (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice/"
                f"cri-containerd-{OTHER}.scope")
    kube = _start_in(cgroup_root, pod_path, "api")
    lxd = _start_in(cgroup_root, "/lxc.payload.web1/system.slice/nginx.service", "nginx")
    nspawn = _start_in(cgroup_root, "/machine.slice/systemd-nspawn@build\\x2dbox.service/payload", "sshd")
    with open(capture.__file__, "rb") as source:
        result = subprocess.run([sys.executable, "-"], stdin=source, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(result.stdout)
    cgroups = {process["pid"]: process.get("cgroup") for process in document["processes"]}
    prefix = "/" + root.name
    assert cgroups[docker] == f"{prefix}/system.slice/docker-{CID}.scope"
    assert cgroups[kube] == prefix + pod_path
    snapshot = parse_snapshot(document, "live")
    by_pid = {process.pid: process for process in snapshot.processes}
    assert identify(by_pid[docker].cgroup, {}).container_id == CID
    found = identify(by_pid[kube].cgroup, {})
    assert (found.container_id, found.pod_uid, found.runtime) == (OTHER, POD_UID, "containerd")
    assert [(identify(by_pid[pid].cgroup, {}).runtime, identify(by_pid[pid].cgroup, {}).container)
            for pid in (lxd, nspawn)] == [("lxc", "web1"), ("systemd-nspawn", "build-box")]


# ------------------------------------------------------------------ the stitch: nodes, group-by, filters

def _machine_with_identities() -> list:
    """web: nginx in a Docker container and nginx of a systemd unit, both serving db's clients."""
    web = Machine("web", "10.0.0.1")
    web.process(10, "nginx")
    web.process(11, "nginx")
    web.process(12, "nginx")
    web.listen([10, 11], "tcp", "0.0.0.0:80")
    web.listen(12, "tcp", "0.0.0.0:8080")
    db = Machine("db", "10.0.0.2")
    db.process(20, "curl")
    db.connect(20, "tcp", "10.0.0.2:40000", "10.0.0.1:80")
    db.connect(20, "tcp", "10.0.0.2:40001", "10.0.0.1:8080")
    web.connect(10, "tcp", "10.0.0.1:80", "10.0.0.2:40000")
    web.connect(12, "tcp", "10.0.0.1:8080", "10.0.0.2:40001")
    built = web.build()
    cgroups = {10: "/system.slice/nginx.service", 11: "/system.slice/nginx.service", 12: f"/docker/{CID}"}
    built = dataclasses.replace(
        built, processes=tuple(dataclasses.replace(p, cgroup=cgroups.get(p.pid)) for p in built.processes),
        containers={CID: Container(runtime="docker", name="shop-web", image="nginx:1.25", pod="web-7d9f",
                                   pod_namespace="shop")})
    return [built, db.build()]


def test_group_by_unit_and_container_draw_one_node_each_with_the_fields_in_json():
    by_unit = stitch(_machine_with_identities(), group_by="unit")
    names = {(node.host, node.comm) for node in by_unit.nodes}
    assert {("web", "nginx.service"), ("web", "nginx"), ("db", "curl")} <= names
    by_container = stitch(_machine_with_identities(), group_by="container")
    container = next(node for node in by_container.nodes if node.comm == "shop-web")
    assert (container.container, container.image, container.unit) == ("shop-web", "nginx:1.25", "")
    assert container.to_json()["container"] == "shop-web" and container.pod == "shop/web-7d9f"
    by_pod = stitch(_machine_with_identities(), group_by="pod")
    assert {("web", "shop/web-7d9f"), ("web", "nginx")} <= {(node.host, node.comm) for node in by_pod.nodes}
    # under group-by process the two nginx are one node: the fields say only what all share
    by_process = stitch(_machine_with_identities())
    nginx = next(node for node in by_process.nodes if node.comm == "nginx")
    assert nginx.unit == "" and nginx.container == ""
    assert "unit" not in nginx.to_json()


def test_filters_name_units_containers_and_images():
    graph = stitch(_machine_with_identities(), group_by="pid")
    for term, port in (("unit=nginx.service", 80), ("container=shop-*", 8080), ("image=nginx:1.25", 8080),
                       ("pod=web-*", 8080), ("pod=shop/web-7d9f", 8080)):
        kept = apply_filters(graph, FilterSpec.parse([term], [])).graph
        assert {flow.server_port for flow in kept.flows} == {port}, term
    assert not apply_filters(graph, FilterSpec.parse(["unit=postgresql.service"], [])).graph.flows

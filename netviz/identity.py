"""Who a process is, beyond its command: its systemd unit, its container and its Kubernetes pod.

Read from what the snapshot already holds: the process's cgroup path (`/proc/PID/cgroup`) and the
runtime state the payload found for the container ids in those paths (`runtime.containers`) and
the pod uids (`runtime.pods`).
Each field is None when the path does not say it: never guessed.

The cgroup layouts read (v2 unified paths and v1 `name=systemd` paths alike):

- systemd units: the innermost `*.service` component (`/system.slice/nginx.service`,
  `/user.slice/user-1000.slice/user@1000.service`), else the innermost `*.scope` that is not a
  container's (`session-3.scope`); a unit of a user's own systemd manager is marked
  `(user UID)`, so that it is never one node with the system's unit of the same name.
- containers, by runtime: `docker-ID.scope` and `/docker/ID` (Docker), `cri-containerd-ID.scope`
  (containerd), `crio-ID.scope` (CRI-O), `libpod-ID.scope` and `/libpod_parent/libpod-ID` (Podman),
  and a bare 64-hex component under `kubepods` (the cgroupfs driver); containers the path names
  by name: `lxc.payload.NAME` and `/lxc/NAME` (LXC, LXD, Incus), `systemd-nspawn@NAME.service` and
  `machine-NAME.scope` (machines registered with systemd-machined: nspawn containers, libvirt
  VMs' qemu), systemd's `\x2d` escapes undone. A name under a user's own systemd manager
  (`user@UID.service`: any user may create such cgroups) is marked `(user UID)`.
- Kubernetes pods: `kubepods-<qos>-pod<UID>.slice` (systemd driver, `_` for `-` in the uid) and
  `/kubepods/<qos>/pod<UID>/` (cgroupfs driver).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from netviz.snapshot.model import Container, Pod

_ID = r"([0-9a-f]{64})"
_CONTAINER_PATTERNS = (
    ("docker", re.compile(rf"(?:^|/)docker-{_ID}\.scope$")),
    ("docker", re.compile(rf"(?:^|/)docker/{_ID}$")),
    ("containerd", re.compile(rf"(?:^|/)cri-containerd-{_ID}\.scope$")),
    ("cri-o", re.compile(rf"(?:^|/)crio-{_ID}\.scope$")),
    ("podman", re.compile(rf"(?:^|/)libpod-{_ID}(?:\.scope)?$")),
)
_KUBEPODS_CONTAINER = re.compile(rf"(?:^|/)kubepods[^ ]*/{_ID}$")
_ID_PATTERNS = (*_CONTAINER_PATTERNS, (None, _KUBEPODS_CONTAINER))  # the runtimes' own first
# containers a cgroup path names by name (runtime, pattern): the innermost one wins
_NAMED_CONTAINER_PATTERNS = (
    ("lxc", re.compile(r"(?:^|/)lxc\.payload\.([^/]+)$")),
    ("lxc", re.compile(r"^/lxc/([^/]+)$")),
    ("systemd-nspawn", re.compile(r"(?:^|/)systemd-nspawn@([^/]+)\.service$")),
    ("systemd-machined", re.compile(r"(?:^|/)machine\.slice/machine-([^/]+)\.scope$")),
)
_SYSTEMD_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_POD_SYSTEMD = re.compile(r"kubepods(?:-[a-z]+)?-pod([0-9a-f_]{36})\.slice")
_POD_CGROUPFS = re.compile(r"/kubepods/(?:[a-z]+/)?pod([0-9a-f-]{36})(?:/|$)")


@dataclass(frozen=True)
class Identity:
    """What a process's cgroup path and the runtimes' state say about it (None: not said)."""

    unit: Optional[str] = None
    container_id: Optional[str] = None
    runtime: Optional[str] = None
    container_name: Optional[str] = None
    image: Optional[str] = None
    pod_uid: Optional[str] = None
    pod: Optional[str] = None  # `namespace/name`, when the kubelet's files name it
    k8s_container: Optional[str] = None

    @property
    def container(self) -> Optional[str]:
        """How a map names the container: its name, else its short id."""
        if self.container_name:
            return self.container_name
        return self.container_id[:12] if self.container_id else None


def identify(cgroup: Optional[str], containers: dict[str, Container], pods: Optional[dict[str, Pod]] = None) -> Identity:
    """The identity a cgroup path gives, completed by the runtime state of its container and
    the kubelet's name for its pod.

    Any user may name cgroups of their own (under `user@UID.service`) after another container's
    id: the state of a container is taken only for a process under the user whose store named it
    (the machine's runtimes: no user), so such a process is never given that container's name,
    image or pod."""
    if not cgroup:
        return Identity()
    path = cgroup.rstrip("/")
    runtime, container_id = _container(path)
    pod_uid = _pod_uid(path)
    state = containers.get(container_id) if container_id else None
    user = _delegated_to(path)
    if state is not None and state.user != user:
        state = None
    pod = None
    if state is not None and state.pod:
        pod = f"{state.pod_namespace}/{state.pod}" if state.pod_namespace else state.pod
    elif pod_uid is not None and pods and pod_uid in pods and user is None:  # (the kubelet's pods are the machine's)
        pod = f"{pods[pod_uid].namespace}/{pods[pod_uid].name}"
    container_name = state.name if state is not None else None
    if container_id is None:
        runtime, container_name = _named_container(path)
    if container_name is not None and user is not None:  # a user's own: never the system's of that name
        container_name = f"{container_name} (user {user})"
    return Identity(
        unit=_users_unit(_unit(path, container_id), user),
        container_id=container_id,
        runtime=(state.runtime if state is not None and state.runtime else runtime),
        container_name=container_name,
        image=state.image if state is not None else None,
        pod_uid=pod_uid,
        pod=pod,
        k8s_container=state.container if state is not None else None,
    )


def _container(path: str) -> tuple[Optional[str], Optional[str]]:
    """(runtime, id) of the innermost component naming a container by its id."""
    return _innermost(path, _ID_PATTERNS)


def _named_container(path: str) -> tuple[Optional[str], Optional[str]]:
    """(runtime, name) of the innermost component naming a container by its name."""
    runtime, name = _innermost(path, _NAMED_CONTAINER_PATTERNS)
    if name is not None:
        name = _SYSTEMD_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), name)
    return runtime, name


def _innermost(path: str, patterns: tuple[tuple[Optional[str], re.Pattern[str]], ...]) -> tuple[Optional[str], Optional[str]]:
    """(runtime, what it matched) for the innermost prefix of `path` that one of `patterns`
    (runtime, pattern) matches, the first pattern first."""
    components = path.split("/")
    for end in range(len(components), 0, -1):
        prefix = "/".join(components[:end])
        for runtime, pattern in patterns:
            found = pattern.search(prefix)
            if found:
                return runtime, found.group(1)
    return None, None


_USER_SERVICE = re.compile(r"/user@([0-9]+)[.]service(?:/|$)")


def _delegated_to(path: str) -> Optional[int]:
    """The uid whose systemd user manager owns the cgroup (`user@UID.service`), else None."""
    found = _USER_SERVICE.search(path)
    return int(found.group(1)) if found else None


def _pod_uid(path: str) -> Optional[str]:
    found = _POD_SYSTEMD.search(path)
    if found:
        return found.group(1).replace("_", "-")
    found = _POD_CGROUPFS.search(path + "/")
    return found.group(1) if found else None


def _users_unit(unit: Optional[str], user: Optional[int]) -> Optional[str]:
    """A unit of a user's own systemd manager is that user's: `app.service (user 1000)`, never the
    system's app.service, nor another user's (the manager itself is named as it is)."""
    if unit is None or user is None or unit == f"user@{user}.service":
        return unit
    return f"{unit} (user {user})"


def _unit(path: str, container_id: Optional[str]) -> Optional[str]:
    """The innermost service unit, else the innermost scope that is not a container's."""
    components = [part for part in path.split("/") if part]
    for part in reversed(components):
        if part.endswith(".service"):
            return part
    for part in reversed(components):
        if part.endswith(".scope") and not (container_id and container_id in part):
            return part
    return None

"""Per-machine lookups: who holds which socket, what each process is called, its node key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from netviz.graph import IDENTITY_GROUPS, UNATTRIBUTED, NodeKey, node_key
from netviz.identity import Identity, identify
from netviz.snapshot import Snapshot


class Machine:
    """One snapshot of the group, with the lookups the joins and the graph need."""

    def __init__(self, index: int, snapshot: Snapshot, group_by: str) -> None:
        self.index = index
        self.snapshot = snapshot
        self.group_by = group_by
        self.shared: dict[int, list[int]] = {}  # socket inode -> every holder, when more than one (see owners)
        self.unattributed = 0  # the sockets no process holds (see owners)
        self.process = {process.pid: process for process in snapshot.processes}
        self.main_netns = main_namespace(snapshot)
        self.netns_names = {namespace.inode: namespace.name for namespace in snapshot.namespaces if namespace.name}
        self.keys: dict[Optional[int], NodeKey] = {}  # pid -> node key, memoised by key()
        self._identities: dict[Optional[str], Identity] = {}  # cgroup path -> identity
        # The sockets of the sshd processes the payload ran under: netviz's own session (and,
        # behind a jump host, the jump's forwarded connection arrives on it too).
        self.session_sockets: frozenset[int] = frozenset(
            inode for pid in snapshot.ssh_session_pids if pid in self.process for inode in self.process[pid].sockets
        )

    def owners(self) -> dict[int, int]:
        """Socket inode -> its lowest holder pid. Built when the machine's sockets are filed and let
        go after (an entry per socket of the group otherwise, 37 bytes each); fills `shared` and
        counts `unattributed` on the way."""
        owner: dict[int, int] = {}
        self.shared = {}
        for process in sorted(self.snapshot.processes, key=lambda item: item.pid):
            for inode in process.sockets:
                first = owner.get(inode)
                if first is None:
                    owner[inode] = process.pid
                else:
                    self.shared.setdefault(inode, [first]).append(process.pid)
        self.unattributed = sum(1 for namespace in self.snapshot.namespaces for socket in namespace.sockets
                                if socket.inode not in owner)
        return owner

    def holders(self, inode: int, owner: Optional[int]) -> Iterable[int]:
        """Every pid holding the socket `inode` (whose lowest holder is `owner`)."""
        shared = self.shared.get(inode)
        if shared is not None:
            return shared
        return () if owner is None else (owner,)

    def comm(self, pid: Optional[int]) -> str:
        if pid is None:
            return UNATTRIBUTED
        return self.process[pid].comm

    def netns_tag(self, netns: Optional[int]) -> str:
        """How a node key names the namespace `netns`: empty for the machine's own (or unknown)."""
        return "" if netns is None or netns == self.main_netns else str(netns)

    def identity(self, pid: int) -> Identity:
        """Who the process is (unit, container, pod), memoised per cgroup path."""
        cgroup = self.process[pid].cgroup
        found = self._identities.get(cgroup)
        if found is None:
            found = self._identities[cgroup] = identify(cgroup, self.snapshot.containers, self.snapshot.pods)
        return found

    def name(self, pid: Optional[int]) -> str:
        """What the node of `pid` is called: its command, or under group-by unit, container or pod
        the unit, container or pod when the process has one."""
        if pid is None or self.group_by not in IDENTITY_GROUPS:
            return self.comm(pid)
        return group_label(self.identity(pid), self.group_by) or self.comm(pid)

    def key(self, pid: Optional[int]) -> NodeKey:
        """The node of a socket owned by `pid` (None: no visible owner), memoised."""
        key = self.keys.get(pid)
        if key is None:
            netns = self.netns_tag(self.process[pid].netns) if pid is not None else ""
            key = self.keys[pid] = node_key(self.group_by, self.index, pid, self.name(pid), netns)
        return key


def group_label(identity: Identity, group_by: str) -> Optional[str]:
    """The name a process has under an identity grouping, None when it has none there."""
    if group_by == "unit":
        return identity.unit
    if group_by == "container":
        return identity.container
    return identity.pod or (f"pod {identity.pod_uid}" if identity.pod_uid else None)


def main_namespace(snapshot: Snapshot) -> Optional[int]:
    """The machine's own network namespace: pid 1's, else the one with the most processes."""
    for process in snapshot.processes:
        if process.pid == 1 and process.netns is not None:
            return process.netns
    if not snapshot.namespaces:
        return None
    return min(snapshot.namespaces, key=lambda namespace: (-namespace.pids, namespace.inode)).inode

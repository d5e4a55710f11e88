"""Bounds on an untrusted snapshot: far above any real machine, low enough to fail fast on garbage.

What a snapshot may cost to read (bytes, JSON values) is set in netviz/budget.py, from a measured
50,000-socket machine; a file holds at most that much JSON. docs/snapshot.md states the limits.
"""

from __future__ import annotations

from netviz.budget import MAX_JSON_BYTES

MAX_FILE_BYTES = MAX_JSON_BYTES
MAX_PROCESSES = 1_000_000
MAX_NAMESPACES = 100_000
MAX_SOCKETS = 5_000_000  # over all namespaces
MAX_ADDRESSES = 100_000  # per namespace
MAX_CONNTRACK = 1_000_000  # per namespace
MAX_ARGS = 2_000_000  # command-line arguments of one process (ARG_MAX allows ~1M)
MAX_TEXT = 4096  # names, states, contexts, hostnames
MAX_ARG_TEXT = 1 << 20  # one command-line argument (escaped)
MAX_NOTES = 1000
MAX_UNKEYED_STATES = 64
MAX_SESSION_PIDS = 64  # the sshd processes above the payload (two or three in practice)

MAX_PID = (1 << 31) - 1
MAX_INODE = (1 << 64) - 1
UID_RANGE = (-1, (1 << 32) - 1)  # -1: unknown

MAX_CGROUP_TEXT = 1024  # a process's cgroup path (the payload keeps at most this)
MAX_CONTAINERS = 4096  # runtime.containers entries
MAX_HOSTS_ENTRIES = 4096  # hosts_file: addresses the machine's /etc/hosts names
MAX_NAMES_PER_ADDRESS = 8
MAX_HOST_NAME = 253

"""The payload names the SSH server processes it runs under (`--ssh-session`)."""

from __future__ import annotations

from netviz.payload.capture import ssh_session_pids


def process(pid: int, ppid: int, comm: str) -> dict:
    return {"pid": pid, "ppid": ppid, "comm": comm}


def test_openssh_privilege_separation_chain_up_to_the_listener():
    processes = [process(1, 0, "systemd"), process(700, 1, "sshd"), process(900, 700, "sshd-session"),
                 process(905, 900, "sshd-session"), process(906, 905, "sh"), process(907, 906, "timeout")]
    assert ssh_session_pids(processes, 907) == [905, 900, 700]


def test_the_walk_stops_above_the_session_and_at_loops_and_gaps():
    # sshd started by a user's tmux inside an ssh login: only the nearest run of sshd processes
    chain = [process(10, 1, "sshd"), process(20, 10, "sshd"), process(30, 20, "bash"), process(40, 30, "sshd"),
             process(50, 40, "sh")]
    assert ssh_session_pids(chain, 50) == [40]
    assert ssh_session_pids([process(5, 6, "sshd"), process(6, 5, "sshd")], 5) == [5, 6]  # a loop ends
    assert ssh_session_pids([process(5, 99, "dropbear")], 5) == [5]  # parent not listed
    assert ssh_session_pids([process(5, 1, "python3")], 5) == []  # not under SSH (a local run)
    assert ssh_session_pids([], 5) == []

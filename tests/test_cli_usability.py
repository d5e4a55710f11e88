"""The command line as a user meets it, through real `python -m netviz` processes with pipes for
stdout and stderr (as in a script or a CI log, never a terminal): output formats chosen by the
file's extension, shell completion, help text, `collect` in `$(...)`, `--require-complete`."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO / "tests" / "fixtures" / "snapshots" / "web-1.json"  # web-1: nginx listening on :80


def netviz(*arguments: str, env: dict[str, str] | None = None, timeout: float = 120,
           prefix: tuple[str, ...] = (), python: str = sys.executable) -> subprocess.CompletedProcess:
    """`netviz ARGUMENTS` as a child process, stdout and stderr pipes, COLUMNS unset."""
    environment = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    environment.update(env or {})
    return subprocess.run([*prefix, python, "-m", "netviz", *arguments], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------
# the output's extension


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")
def test_a_pdf_output_is_a_pdf_drawn_by_graphviz(tmp_path):
    output = tmp_path / "map.pdf"
    done = netviz("stitch", str(SNAPSHOT), "-o", str(output))
    assert done.returncode == 0, done.stderr
    data = output.read_bytes()
    assert data.startswith(b"%PDF-") and not data.startswith(b"digraph")
    if shutil.which("pdftotext") is None:  # scripts/setup.sh --test installs poppler-utils
        assert len(data) > 1000
        return
    text = subprocess.run(["pdftotext", str(output), "-"], capture_output=True, text=True, timeout=60, check=True)
    assert "nginx" in text.stdout and "web-1" in text.stdout


def test_an_extension_no_format_claims_is_refused_before_any_work(tmp_path):
    output = tmp_path / "map.pdff"
    done = netviz("stitch", str(SNAPSHOT), "-o", str(output))
    assert done.returncode == 2, done.stderr  # a usage error (docs/cli.md, exit codes)
    assert not output.exists()
    message = " ".join(done.stderr.split())
    assert "'.pdff'" in message
    for known in (".dot", ".svg", ".png", ".pdf", ".json", ".html", ".txt"):
        assert known + "," in message or known + ")" in message, message


def test_an_unknown_extension_with_format_and_a_name_without_one_are_written(tmp_path):
    named = netviz("stitch", str(SNAPSHOT), "-o", str(tmp_path / "map.out"), "--format", "json")
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "map.out").read_text().lstrip().startswith("{")
    bare = netviz("stitch", str(SNAPSHOT), "-o", str(tmp_path / "map"))
    assert bare.returncode == 0, bare.stderr
    assert (tmp_path / "map").read_text().startswith("digraph")


# ------------------------------------------------------------------------------------------
# tables in a pipe


def test_the_table_piped_to_grep_keeps_each_flow_on_one_line(tmp_path):
    """`netviz stitch --format table | grep app`: every flow whole on its line, never folded at 80."""
    from benchmarks.synth import write_fleet

    write_fleet(tmp_path, 3, 80, seed=4)
    done = netviz("stitch", str(tmp_path), "--format", "table")
    assert done.returncode == 0, done.stderr
    graph = json.loads(netviz("stitch", str(tmp_path), "--format", "json").stdout)
    flows = [line for line in done.stdout.splitlines() if re.search(r"\b(tcp|udp)/\d+\b", line)]
    endpoint = r"\bm\d{4}(/\d+)?: [^\s\[]+\[\d+( \+\d+)?\]"  # m0000: app[500 +7], whole
    assert flows and all(len(re.findall(endpoint, line)) == 2 for line in flows), done.stdout
    assert len(flows) == len(graph["flows"])
    assert max(len(line) for line in done.stdout.splitlines()) > 80  # it would have been folded
    assert all(line == line.rstrip() for line in done.stdout.splitlines())


# ------------------------------------------------------------------------------------------
# shell completion


def test_show_completion_prints_a_bash_script_for_netviz():
    # typed in a bash, as a user does: typer finds the shell among the command's parents (the
    # `; exit` keeps bash from replacing itself with the command, whatever runs the test suite)
    done = subprocess.run(["bash", "-c", 'netviz() { "$0" -m netviz "$@"; }; netviz --show-completion; exit $?',
                           sys.executable], cwd=REPO, env={**os.environ, "SHELL": "/bin/bash"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "_NETVIZ_COMPLETE=complete_bash" in done.stdout and "complete " in done.stdout
    assert re.search(r"-F _netviz_completion netviz$", done.stdout, re.M), done.stdout


def test_bash_completes_commands_options_and_choices():
    """The script, sourced by a real bash, completes through the installed `netviz` command."""
    installed = Path(sys.executable).parent / "netviz"
    if shutil.which("bash") is None or not installed.exists():
        pytest.skip("needs bash and the installed netviz command beside this Python")

    def complete(*words: str) -> list[str]:
        script = ('source <(netviz --show-completion bash); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                  '_netviz_completion netviz; printf "%s\\n" "${COMPREPLY[@]}"')
        environment = {**os.environ, "SHELL": "/bin/bash", "PATH": f"{installed.parent}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-c", script, "bash", *words], capture_output=True, text=True,
                              env=environment, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("netviz", "r") == ["run"]
    assert complete("netviz", "run", "--gro") == ["--group-by"]
    grouped = complete("netviz", "run", "--group-by", "p")
    assert {"process", "pid"} <= set(grouped) and all(choice.startswith("p") for choice in grouped)
    assert "pdf" in complete("netviz", "stitch", "-f", "p")


# ------------------------------------------------------------------------------------------
# help text


COMMANDS = ("run", "collect", "stitch", "capture")


def help_of(*command: str) -> str:
    done = netviz(*command, "--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("command", [(), *[(name,) for name in COMMANDS]])
def test_help_names_values_never_python_types(command):
    text = help_of(*command)
    assert not re.findall(r"<[A-Za-z][^<>\n]*>", text), text  # <bool>, <Path>, <list[Path]>, <int range>


@pytest.mark.parametrize("command", COMMANDS)
def test_help_in_a_pipe_is_neither_cut_nor_wrapped(command):
    """COLUMNS unset and stdout a pipe: every option's whole description is on the option's line."""
    import typer

    from netviz.cli import app

    text = help_of(command)
    click_command = typer.main.get_command(app).commands[command]
    lines = text.splitlines()
    for param in click_command.params:
        if param.param_type_name != "option" or not param.help or param.hidden:
            continue
        long = next(opt for opt in param.opts if opt.startswith("--"))
        line = next((line for line in lines if re.match(rf"^  (-\w, )?{long}[ ,]", line)), "")
        assert param.help in line, f"{long}: {param.help!r} not whole in {line!r}"
    assert "…" not in text


def test_top_level_help_lists_run_first_and_each_summary_whole():
    text = help_of()
    section = text[text.index("Commands:"):].splitlines()[1:]
    listed = [line.split()[0] for line in section if line.strip()]
    assert listed[:len(COMMANDS)] == list(COMMANDS)
    assert "..." not in "\n".join(section) and "…" not in text
    assert "--install-completion" in text and "--show-completion" in text


def docs_exit_codes() -> dict[int, str]:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text[text.index("## Exit codes"):]
    return {int(code): meaning.replace("`", "").strip()
            for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", table, re.M)}


def test_exit_codes_are_one_table_for_the_docs_and_every_help():
    from netviz.cli import COMMAND_EXIT_CODES, EXIT_CODES

    assert docs_exit_codes() == EXIT_CODES
    assert set(COMMAND_EXIT_CODES["run"]) == set(EXIT_CODES)  # run can end in every way there is
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = readme[readme.index("Exit codes:"):].split("\n\n")[0]
    assert {int(code) for code in re.findall(r"`(\d+)`", sentence)} == set(EXIT_CODES)
    for command in COMMANDS:
        text = help_of(command)
        listed = text[text.index("Exit codes:"):]
        for code in COMMAND_EXIT_CODES[command]:
            assert re.search(rf"^  {code} +{re.escape(EXIT_CODES[code])}$", listed, re.M), (command, code, listed)


def test_ctrl_c_ends_any_command_with_130_and_writes_nothing(tmp_path):
    """capture --window: SIGINT while the payload observes (its sockets open) ends it with 130."""
    import signal
    import time

    output = tmp_path / "snapshot.json"
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    process = subprocess.Popen([sys.executable, "-m", "netviz", "capture", "--window", "60s", "-o", str(output)],
                               cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        fds = Path(f"/proc/{process.pid}/fd")
        while not any(_link(fd).startswith("socket:") for fd in _listing(fds)):
            assert time.monotonic() < deadline and process.poll() is None, "the window never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not output.exists()


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed meanwhile
        return ""


def _listing(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


# ------------------------------------------------------------------------------------------
# collect in $(...)


def test_collect_prints_the_run_directory_and_only_that_on_stdout(tmp_path):
    """`run=$(netviz collect)` then `netviz stitch "$run"`: a real collection of this machine."""
    cache = tmp_path / "cache"
    done = netviz("collect", "--cache", str(cache))
    assert done.returncode in (0, 3), done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.endswith("\n"), done.stdout
    run = Path(done.stdout.strip())
    assert run.parent == cache.resolve() and (run / "manifest.json").is_file()
    assert "run " + run.name in done.stderr and ("1 machine ok" in done.stderr or "partial" in done.stderr)
    stitched = netviz("stitch", str(run), "--format", "json")
    assert stitched.returncode == 0, stitched.stderr
    assert stitched.stdout.lstrip().startswith("{")


# ------------------------------------------------------------------------------------------
# --require-complete, with a real capture by an unprivileged user

NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory):
    """Directories nobody may write (its work and a cache of its own), while a root process holds a
    listening socket."""
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux)")
    python, environment = nobodys_python()
    # tmp_path is private to root: a directory of its own, open to every user, holds nobody's cache
    home = Path(tempfile.mkdtemp(prefix="netviz-nobody-"))
    home.chmod(0o755)
    cache, work = home / "cache", home / "work"
    for directory in (cache, work):
        directory.mkdir(mode=0o700)
        os.chown(directory, NOBODY, NOBODY)
    holder = subprocess.Popen([sys.executable, "-c", "import socket, sys, time\n"
                               "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
                               "print(s.getsockname()[1], flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(holder.stdout.readline())
        yield Unprivileged(work, cache, holder.pid, port, python, environment)
    finally:
        holder.kill()
        holder.wait()
        shutil.rmtree(home, ignore_errors=True)


@dataclasses.dataclass
class Unprivileged:
    work: Path  # nobody's
    cache: Path  # nobody's
    holder_pid: int  # root's, listening on holder_port
    holder_port: int
    python: str
    environment: dict[str, str]

    def netviz(self, *arguments: str) -> subprocess.CompletedProcess:
        return netviz(*arguments, prefix=AS_NOBODY, python=self.python,
                      env={"HOME": "/nonexistent", **self.environment})


def nobodys_python() -> tuple[str, dict[str, str]]:
    """An interpreter with netviz that nobody can run, and start again as a child (the local
    collection runs the payload with sys.executable): this one, else the system's python3 of the
    same version given this one's packages (a venv made from a Python under /root, closed to
    other users, still runs from the system's)."""
    import sysconfig

    nested = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import netviz.cli'], check=True)"
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    candidates = [(sys.executable, {}), ("/usr/bin/python3", {"PYTHONPATH": path})]
    for python, environment in candidates:
        probe = subprocess.run([*AS_NOBODY, python, "-c", nested], cwd="/", capture_output=True,
                               env={**os.environ, **environment}, timeout=60)
        if probe.returncode == 0:
            return python, environment
    pytest.skip(f"no Python with netviz that uid {NOBODY} can run: {probe.stderr.decode()[-300:]}")


def test_a_non_root_capture_is_partial_and_fails_only_when_required(unprivileged):
    output = unprivileged.work / "snapshot.json"
    plain = unprivileged.netviz("capture", "-o", str(output))
    assert plain.returncode == 0, plain.stderr
    assert "partial capture: ran as uid 65534, not root" in plain.stderr
    snapshot = json.loads(output.read_text())
    coverage = snapshot["coverage"]
    assert coverage["euid"] == NOBODY and coverage["complete"] is False and coverage["processes_denied"] >= 1
    holder = next(process for process in snapshot["processes"] if process["pid"] == unprivileged.holder_pid)
    assert holder.get("fd_denied") and not holder["sockets"]  # root's fds are closed to nobody
    # the kernel's table still shows root's listener, with no owner the capture could see
    listener = next(socket for namespace in snapshot["namespaces"] for socket in namespace["sockets"]
                    if socket["local_port"] == unprivileged.holder_port and socket["state"] == "LISTEN")
    assert listener["uid"] == 0
    assert all(listener["inode"] not in process["sockets"] for process in snapshot["processes"])

    output.unlink()
    required = unprivileged.netviz("capture", "-o", str(output), "--require-complete")
    assert required.returncode == 3, required.stderr
    assert "partial capture" in required.stderr
    assert json.loads(output.read_text())["coverage"]["euid"] == NOBODY  # the snapshot is still written


def test_a_non_root_collect_says_partial_and_fails_with_require_complete(unprivileged):
    cache = unprivileged.cache
    plain = unprivileged.netviz("collect", "--cache", str(cache))
    assert plain.returncode == 0, plain.stderr
    assert "machine ok" not in plain.stderr
    assert re.search(r"^\s+\S+\s+partial\s", plain.stderr, re.M), plain.stderr  # the table's status
    assert "1 of 1 machines gave a partial capture" in plain.stderr
    assert "ran as uid 65534, not root" in plain.stderr
    assert Path(plain.stdout.strip()).parent == cache

    required = unprivileged.netviz("collect", "--cache", str(cache), "--require-complete")
    assert required.returncode == 3, required.stderr
    assert "1 of 1 machines failed (1 partial)" in required.stderr
    assert Path(required.stdout.strip()).parent == cache  # the run was still cached


def test_a_non_root_run_with_require_complete_still_draws_the_map(unprivileged):
    output = unprivileged.work / "map.json"
    required = unprivileged.netviz("run", "--cache", str(unprivileged.cache), "-o", str(output), "--require-complete")
    assert required.returncode == 3, required.stderr
    assert "1 of 1 machines failed (1 partial)" in required.stderr
    assert output.read_text().lstrip().startswith("{")

"""Files netviz writes and the cache it trusts, against a careless user and a hostile local one.

Real files, devices (made with mknod in the test's directory, never the system's own), FIFOs
with real readers, links planted as another user would plant them, a real tmpfs filled up, and
real `python -m netviz` processes. Tests that need root (mknod, chown, mount) skip without it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.synth import write_fleet
from netviz.cache import (
    LATEST,
    LOCK,
    MANIFEST,
    RunWriter,
    host_file_name,
    latest_run,
    list_runs,
    prune,
    read_run,
    stitch_inputs,
    trusted_cache_dir,
)
from netviz.cli import app
from netviz.errors import EXIT_OK, EXIT_PARTIAL, CacheError
from netviz.files import RefusedTarget, write_file
from netviz.schedule import COLLECTING_LOCK

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534  # another user
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (mknod, chown, mount)")


@pytest.fixture()
def fleet(tmp_path) -> Path:
    directory = tmp_path / "fleet"
    write_fleet(directory, 2, 20, seed=9)
    return directory


def netviz(*arguments: str, umask: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real `python -m netviz` process."""
    return subprocess.run([sys.executable, "-m", "netviz", *arguments], cwd=REPO, capture_output=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "400"},
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def stitch_to(fleet: Path, output: str, *extra: str):
    return CliRunner().invoke(app, ["stitch", str(fleet), "-f", "json", "-o", output, *extra],
                              env={"COLUMNS": "200"}, catch_exceptions=False)


def said(result) -> str:
    """What a CliRunner result printed, on one line (the console wraps long messages)."""
    return " ".join(result.output.split())


def write_run(root: Path, hosts: dict, now: float | None = None):
    writer = RunWriter(root, now=now)
    for name, body in hosts.items():
        writer.add(name, status="ok" if body is not None else "failed", category=None if body else "refused",
                   message="", timings={}, seconds=0.1, snapshot_json=body)
    return writer.finish()


# ------------------------------------------------------------------------------------------
# 1. a target that is not a regular file is written through or refused, never replaced


@needs_root
def test_a_character_device_as_output_is_written_through_never_replaced(fleet, tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the same device as /dev/null
    before = os.lstat(null)
    result = stitch_to(fleet, str(null))
    assert result.exit_code == EXIT_OK, result.output
    after = os.lstat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fleet", "null"]  # no temporary file


def test_a_fifo_with_a_reader_receives_the_map_and_stays_a_fifo(fleet, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    # a daemon: should the FIFO be replaced, its reader would wait forever
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = stitch_to(fleet, str(fifo))
    reader.join(timeout=30)
    assert result.exit_code == EXIT_OK, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(received[0])["nodes"]


def test_a_link_to_standard_output_like_dev_stdout_is_followed(fleet, tmp_path):
    """/dev/stdout is a link (root's) to /proc/self/fd/1 (the process's own) to a pipe: followed.
    A link of our own stands for it: a regression must not replace the system's /dev/stdout."""
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    result = netviz("stitch", str(fleet), "-f", "json", "-o", str(stdout))
    assert stdout.is_symlink()
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert json.loads(result.stdout)["nodes"]


def test_a_link_to_a_regular_file_is_refused_and_both_are_left_alone(fleet, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "map.json"
    link.symlink_to(victim)
    result = stitch_to(fleet, str(link))
    assert result.exit_code == 1
    assert "is a symbolic link to a regular file" in said(result) and "name the file itself" in said(result)
    assert victim.read_text() == "precious" and link.is_symlink()
    (tmp_path / "dangling").symlink_to(tmp_path / "none")
    with pytest.raises(RefusedTarget, match="symbolic link to nothing"):
        write_file(tmp_path / "dangling", b"x")
    assert not (tmp_path / "none").exists()


@needs_root
def test_a_link_planted_by_another_user_is_not_followed_even_to_a_device(tmp_path):
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    link = tmp_path / "out"
    link.symlink_to(null)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(RefusedTarget, match="owned by another user"):
        write_file(link, b"data")
    os.lchown(link, 0, 0)
    write_file(link, b"data")  # root's own link to a device: written through
    assert link.is_symlink() and stat.S_ISCHR(os.lstat(null).st_mode)


@needs_root
def test_block_devices_and_sockets_are_refused(tmp_path):
    block = tmp_path / "disk"
    os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    with pytest.raises(RefusedTarget, match="is a block device: refused"):
        write_file(block, b"map")
    assert stat.S_ISBLK(os.lstat(block).st_mode)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "socket"))
        with pytest.raises(RefusedTarget, match="is a socket: refused"):
            write_file(tmp_path / "socket", b"map")
        assert stat.S_ISSOCK(os.lstat(tmp_path / "socket").st_mode)


def test_the_cache_writes_regular_files_only(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RefusedTarget, match="is a FIFO: refused"):
        write_file(tmp_path / "fifo", b"x", special=False)


# ------------------------------------------------------------------------------------------
# 2. temporary files: unguessable names, never through a link; the cache's lock too


def test_a_planted_temporary_name_is_never_followed(fleet, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in (".map.json.tmp", ".map.json.tmp.tmp"):  # the names an older netviz used
        (out / name).symlink_to(victim)
    result = stitch_to(fleet, str(out / "map.json"))
    assert result.exit_code == EXIT_OK, result.output
    assert victim.read_text() == "precious"
    target = out / "map.json"
    assert not target.is_symlink() and stat.S_ISREG(os.lstat(target).st_mode) and json.loads(target.read_text())
    assert sorted(path.name for path in out.iterdir()) == [".map.json.tmp", ".map.json.tmp.tmp", "map.json"]


def test_temporary_names_cannot_be_guessed(tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            seen.append((os.path.basename(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    write_file(tmp_path / "a.json", b"1")
    write_file(tmp_path / "a.json", b"2")
    assert len(seen) == 2 and seen[0][0] != seen[1][0]
    for _, flags in seen:
        assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW


def test_a_planted_lock_link_makes_no_file_appear(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "created-by-netviz"
    (cache / LOCK).symlink_to(victim)
    with pytest.raises(CacheError, match="symbolic link: refused"):
        RunWriter(cache)
    assert not victim.exists()


def test_capture_output_goes_through_the_same_writer(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "snap.json").symlink_to(victim)
    result = CliRunner().invoke(app, ["capture", "-o", str(tmp_path / "snap.json")], catch_exceptions=False)
    assert result.exit_code == 1 and "symbolic link" in said(result)
    assert victim.read_text() == "precious"


# ------------------------------------------------------------------------------------------
# 19 (part) and 20: a directory as output; outputs are 0600 whatever the umask


@pytest.mark.parametrize("suffix", ["/", ""])
def test_a_directory_as_output_is_refused_leaving_nothing_behind(fleet, tmp_path, suffix):
    target = tmp_path / "maps"
    target.mkdir()
    result = stitch_to(fleet, f"{target}{suffix}")
    assert result.exit_code == 2 and "names a directory" in said(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fleet", "maps"]
    assert list(target.iterdir()) == []
    with pytest.raises(RefusedTarget, match="is a directory"):
        write_file(target, b"x")
    with pytest.raises(RefusedTarget, match="names a directory"):
        write_file(f"{tmp_path}/new/", b"x")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["fleet", "maps"]


def test_run_refuses_a_directory_output_before_collecting(tmp_path):
    result = netviz("run", "--cache", str(tmp_path / "cache"), "-o", f"{tmp_path}/", timeout=30)
    assert result.returncode == 2 and b"names a directory" in result.stderr
    assert not (tmp_path / "cache").exists()  # nothing was collected


def test_outputs_are_owner_only_whatever_the_umask(fleet, tmp_path):
    fresh = tmp_path / "fresh.json"
    existing = tmp_path / "existing.dot"
    existing.write_text("old map")
    existing.chmod(0o644)
    snapshot = tmp_path / "snap.json"
    for arguments in (["stitch", str(fleet), "-o", str(fresh)], ["stitch", str(fleet), "-o", str(existing)],
                      ["capture", "-o", str(snapshot)]):
        result = netviz(*arguments, umask=0o000)
        assert result.returncode == EXIT_OK, result.stderr.decode()
    for path in (fresh, existing, snapshot):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert existing.read_text().startswith("digraph")


# ------------------------------------------------------------------------------------------
# 6. a cache another user can write is refused; nothing inside it is followed through a link


@needs_root
def test_a_cache_owned_by_another_user_is_refused_for_reading_and_writing(tmp_path):
    cache = tmp_path / "cache"
    write_run(cache, {"a": "{}"})
    os.chown(cache, NOBODY, NOBODY)
    with pytest.raises(CacheError, match=f"belongs to uid {NOBODY}, not to you"):
        RunWriter(cache)
    with pytest.raises(CacheError, match="refusing the cache"):
        stitch_inputs([], cache)
    result = netviz("stitch", "--cache", str(cache), timeout=30)
    assert result.returncode == 1 and b"refusing the cache" in result.stderr


@needs_root
def test_a_parent_owned_by_another_user_is_refused(tmp_path):
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(CacheError, match=f"parent {parent} belongs to uid {NOBODY}"):
        RunWriter(parent / "cache")


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o720])
def test_a_cache_its_group_or_others_can_write_is_refused(tmp_path, mode):
    cache = tmp_path / "cache"
    write_run(cache, {"a": "{}"})
    cache.chmod(mode)
    with pytest.raises(CacheError, match="can be written by its group or others"):
        latest_run(cache)
    with pytest.raises(CacheError, match="can be written by its group or others"):
        RunWriter(cache)


def test_a_parent_others_can_write_is_refused_unless_sticky(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(CacheError, match="not sticky"):
        RunWriter(shared / "cache")
    shared.chmod(0o1777)  # like /tmp: others cannot rename nor remove what is ours
    run = write_run(shared / "cache", {"a": "{}"})
    assert latest_run(shared / "cache").run_id == run.run_id


def test_a_cache_reached_through_a_link_is_used_where_the_link_led_when_checked(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    writer = RunWriter(link)
    assert writer.root == real and writer.path.parent == real
    assert trusted_cache_dir(link) == real


def test_nothing_inside_the_cache_is_followed_through_a_link(tmp_path):
    cache = tmp_path / "cache"
    good = write_run(cache, {"a": '{"good": 1}'})
    elsewhere = tmp_path / "elsewhere"
    planted = write_run(elsewhere, {"a": '{"planted": 1}'})  # a complete run outside the cache
    # a run directory that is a link
    (cache / planted.run_id).symlink_to(planted.path)
    assert [path.name for path in list_runs(cache)] == [good.run_id]
    # `latest` whose text is not a run id, then a run id naming that link
    os.unlink(cache / LATEST)
    (cache / LATEST).symlink_to(planted.path)
    assert latest_run(cache).run_id == good.run_id
    os.unlink(cache / LATEST)
    (cache / LATEST).symlink_to(planted.run_id)
    assert latest_run(cache).run_id == good.run_id
    assert [path.read_text() for path in stitch_inputs([], cache).files] == ['{"good": 1}']
    # a snapshot file that is a link
    snapshot = good.path / "a.json"
    snapshot.unlink()
    snapshot.symlink_to(planted.path / "a.json")
    inputs = stitch_inputs([], cache)
    assert inputs.files == () and any("not a regular file" in warning for warning in inputs.warnings)
    # a manifest that is a link
    (good.path / MANIFEST).rename(good.path / "saved")
    (good.path / MANIFEST).symlink_to(planted.path / MANIFEST)
    with pytest.raises(CacheError, match="unreadable"):
        read_run(good.path)


def test_a_snapshot_carried_forward_is_never_taken_through_a_link(tmp_path):
    cache = tmp_path / "cache"
    first = write_run(cache, {"a": '{"v": 1}'})
    secret = tmp_path / "secret"
    secret.write_text("not a snapshot")
    (first.path / "a.json").unlink()
    (first.path / "a.json").symlink_to(secret)
    second = write_run(cache, {"a": None})
    assert second.host("a").snapshot is None
    assert not (second.path / "a.json").exists()


# ------------------------------------------------------------------------------------------
# 7. `latest` follows the order netviz started runs in, not a time a file claims


YEAR_2100 = 4_102_444_800.0


def test_a_run_stamped_2100_does_not_stay_latest(tmp_path):
    cache = tmp_path / "cache"
    future = write_run(cache, {"a": '{"v": "future"}'}, now=YEAR_2100)  # a clock that was wrong
    assert latest_run(cache).run_id == future.run_id
    later = write_run(cache, {"a": '{"v": "now"}'})
    assert latest_run(cache).run_id == later.run_id
    assert [path.name for path in list_runs(cache)] == [future.run_id, later.run_id]
    os.unlink(cache / LATEST)  # without the pointer, the same order
    assert latest_run(cache).run_id == later.run_id
    prune(cache, keep=1)
    assert [path.name for path in list_runs(cache)] == [later.run_id]


def test_runs_written_before_numbering_come_first_whatever_their_time(tmp_path):
    cache = tmp_path / "cache"
    old = write_run(cache, {"a": "{}"}, now=YEAR_2100)
    manifest = json.loads((old.path / MANIFEST).read_text())
    del manifest["sequence"]  # as an older netviz wrote it
    (old.path / MANIFEST).write_text(json.dumps(manifest))
    (cache / LOCK).write_text("")
    new = write_run(cache, {"a": "{}"})
    assert read_run(new.path).sequence == 1 and read_run(old.path).sequence is None
    assert latest_run(cache).run_id == new.run_id


# ------------------------------------------------------------------------------------------
# 11. a host named like the cache's own files


@pytest.mark.parametrize("name", ["manifest", "MANIFEST", "Manifest"])
def test_a_host_named_manifest_keeps_its_snapshot(tmp_path, name):
    cache = tmp_path / "cache"
    run = write_run(cache, {name: '{"host": "manifest"}', "other": '{"host": "other"}'})
    assert host_file_name(name).lower() != MANIFEST
    again = read_run(run.path)
    assert (again.path / again.host(name).snapshot).read_text() == '{"host": "manifest"}'
    assert json.loads((run.path / MANIFEST).read_text())["schema"] == "netviz.run/1"
    assert len({host_file_name(n) for n in ("manifest", "%6Danifest", "%256Danifest")}) == 3


def test_an_older_run_whose_host_lost_its_snapshot_to_the_manifest_still_loads(tmp_path):
    cache = tmp_path / "cache"
    run = write_run(cache, {"web": "{}"})
    manifest = json.loads((run.path / MANIFEST).read_text())
    manifest["hosts"].append({"host": "manifest", "status": "ok", "snapshot": MANIFEST})
    (run.path / MANIFEST).write_text(json.dumps(manifest))
    inputs = stitch_inputs([], cache)
    assert [path.name for path in inputs.files] == ["web.json"]
    assert any("no snapshot at all for: manifest" in warning for warning in inputs.warnings)


# ------------------------------------------------------------------------------------------
# 13. a full cache disk: the map is still written, the run removed, exit code 3


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A tmpfs of 8 KiB (two pages): room for the lock, not for a snapshot."""
    mount = tmp_path / "tmpfs"
    mount.mkdir(mode=0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@needs_root
def test_a_full_cache_still_gives_the_map_and_leaves_no_half_run(small_tmpfs, tmp_path):
    output = tmp_path / "map.json"
    result = netviz("run", "--cache", str(small_tmpfs / "cache"), "-o", str(output))
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_PARTIAL, stderr
    assert "the cache cannot be written" in stderr and "not cached" in stderr
    assert json.loads(output.read_text())["nodes"]
    leftovers = [path.name for path in (small_tmpfs / "cache").iterdir()]
    assert leftovers == [LOCK], leftovers  # no run directory, no temporary file
    collect = netviz("collect", "--cache", str(small_tmpfs / "cache"))
    assert collect.returncode == 1 and "nothing was cached" in collect.stderr.decode()
    # only the two lock files: the cache's and the one every collector holds while it collects
    assert sorted(path.name for path in (small_tmpfs / "cache").iterdir()) == sorted([LOCK, COLLECTING_LOCK])


@needs_root
def test_a_full_cache_during_a_collection_over_ssh_still_gives_the_map(lab_factory, small_tmpfs, tmp_path):
    lab = lab_factory(2)
    inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=sorted(lab.machines))
    output = tmp_path / "map.json"
    result = netviz("run", "-i", str(inventory), "--cache", str(small_tmpfs / "cache"), "-o", str(output))
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_PARTIAL, stderr
    assert "the cache cannot be written" in stderr
    hosts = {node["host"] for node in json.loads(output.read_text())["nodes"] if node.get("host")}
    assert hosts == set(lab.machines)
    assert [path.name for path in (small_tmpfs / "cache").iterdir()] == [LOCK]


@needs_root
def test_a_cache_that_fills_up_still_draws_failed_machines_from_their_last_snapshot(lab_factory, tmp_path):
    lab = lab_factory(2)
    first, second = sorted(lab.machines)
    cache = tmp_path / "tmpfs"
    cache.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(cache)], check=True)
    try:
        inventory = lab.write_inventory(tmp_path / "hosts.yaml", hosts=[first, second])
        assert netviz("collect", "-i", str(inventory), "--cache", str(cache)).returncode == EXIT_OK
        previous = latest_run(cache)
        filler = subprocess.run(["dd", "if=/dev/zero", f"of={cache}/filler", "bs=4k"], capture_output=True)
        assert b"No space left" in filler.stderr
        document = yaml.safe_load(inventory.read_text())
        document["hosts"][second]["port"] = 2  # refused: the second machine fails
        inventory.write_text(yaml.safe_dump(document))
        output = tmp_path / "map.json"
        result = netviz("run", "-i", str(inventory), "--cache", str(cache), "-o", str(output))
        stderr = " ".join(result.stderr.decode().split())
        assert result.returncode == EXIT_PARTIAL, stderr
        assert "the cache cannot be written" in stderr
        assert f"{second}: failed; using its last good snapshot (run {previous.run_id})" in stderr
        hosts = {node["host"] for node in json.loads(output.read_text())["nodes"] if node.get("host")}
        assert hosts == {first, second}
        assert [path.name for path in list_runs(cache)] == [previous.path.name]  # the new run is gone
    finally:
        subprocess.run(["umount", str(cache)], check=True)

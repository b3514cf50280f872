"""A repository whose storage refuses writes (a read-only mount, an immutable locks/ folder,
a read-only bind mount) can still be listed, shown, verified and restored from, creating
nothing in it: each reading command takes no lock and says so in one note. `--no-lock` does
the same on purpose on a writable one. Writers (backup, prune, forget, repair) stop with one
line and exit 24. Real mounts: these tests need root (mount, chattr) and skip otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

root_only = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs and remount it read-only"
)

READERS = ("snapshots", "ls", "show", "verify", "restore")
NOTE_REFUSED = "note: no lock taken because the storage refuses writes"
NOTE_ASKED = "note: no lock taken (--no-lock)"


def _tree(path: Path) -> list[tuple[str, int]]:
    """Every entry below ``path`` with its size: nothing may appear, vanish or change."""
    return sorted((str(p.relative_to(path)), p.stat().st_size if p.is_file() else -1) for p in path.rglob("*"))


def _reader_args(env, name: str) -> tuple[str, ...]:
    return {
        "snapshots": ("snapshots",),
        "ls": ("ls", "latest"),
        "show": ("show", "latest"),
        "verify": ("verify",),
        "restore": ("restore", "latest", "--target", str(env.base / f"out-{len(list(env.base.glob('out-*')))}")),
    }[name]


def _check_readers(env, *, extra: tuple[str, ...] = (), note: str) -> None:
    before = _tree(env.repo)
    for name in READERS:
        args = (*_reader_args(env, name), *extra)
        r = env.cli(*args)
        assert r.code == 0, r
        assert "Traceback" not in r.stderr, r
        notes = [line for line in r.stderr.splitlines() if line.startswith("note: no lock taken")]
        assert len(notes) == 1 and notes[0].startswith(note), r  # one note, not one per lock asked for
        if name == "restore":
            out = Path(args[args.index("--target") + 1])
            assert (out / str(env.src).lstrip("/") / "f.txt").read_text() == "hello\n"
    r = env.cli("ls", "latest", *extra, json_out=True)
    assert r.code == 0 and any(x["path"].endswith("/f.txt") for x in r.json), r
    r = env.cli("verify", *extra, json_out=True)
    assert r.code == 0 and r.json["ok"] is True, r
    assert _tree(env.repo) == before, "a reading command created or changed something in the repository"


@pytest.fixture
def mounted(tmp_path):
    """An env whose repository lives on its own 64 MiB tmpfs, backed up once."""
    env = H.make_env(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:  # root in a container without CAP_SYS_ADMIN: say so, do not error
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        env.repo = mnt / "repo"
        env.write_config()
        (env.src / "f.txt").write_text("hello\n")
        env.init_fast()
        snap = env.backup()["snapshots"][0]["id"]
        yield env, mnt, snap
    finally:
        subprocess.run(["chattr", "-R", "-i", str(mnt)], capture_output=True)
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _check_writers_refused(env, snap: str) -> None:
    before = _tree(env.repo)
    for args in (
        ("backup", "--lock-wait", "0"),
        ("prune",),
        ("forget", snap),
        ("repair", "index"),
        ("repair", "snapshots"),
    ):
        r = env.cli(*args)
        assert r.code == 24, r
        assert "Traceback" not in r.stderr, r
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "refuses writes" in errors[0], r
    assert _tree(env.repo) == before


@root_only
def test_read_only_remount_reads_without_a_lock_and_writers_exit_24(mounted):
    env, mnt, snap = mounted
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    _check_readers(env, note=NOTE_REFUSED)
    _check_readers(env, extra=("--no-lock",), note=NOTE_ASKED)
    _check_writers_refused(env, snap)
    # A restore over files that exist needs a safety snapshot in the repository: refused, by name.
    target = env.base / "over"
    (target / str(env.src).lstrip("/")).mkdir(parents=True)
    (target / str(env.src).lstrip("/") / "f.txt").write_text("changed\n")
    r = env.cli("restore", "latest", "--target", str(target))
    assert r.code == 24 and "safety snapshot" in r.stderr and "Traceback" not in r.stderr, r
    assert (target / str(env.src).lstrip("/") / "f.txt").read_text() == "changed\n"


@root_only
def test_immutable_locks_folder_reads_without_a_lock(mounted):
    env, _mnt, snap = mounted
    locks = env.repo / "locks"
    r = subprocess.run(["chattr", "+i", str(locks)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {r.stderr.strip()}")
    _check_readers(env, note=NOTE_REFUSED)
    r = env.cli("backup", "--lock-wait", "0")
    assert r.code == 24 and "Traceback" not in r.stderr and "Operation not permitted" in r.stderr, r


@root_only
def test_read_only_bind_mount_reads_without_a_lock(mounted, tmp_path):
    env, _mnt, snap = mounted
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(env.repo), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        env.repo = view
        env.write_config()
        _check_readers(env, note=NOTE_REFUSED)
        _check_writers_refused(env, snap)
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)


def test_no_lock_on_a_writable_repository_creates_nothing(tmp_path):
    env = H.make_env(tmp_path)
    (env.src / "f.txt").write_text("hello\n")
    env.init_fast()
    env.backup()
    _check_readers(env, extra=("--no-lock",), note=NOTE_ASKED)
    # Over existing files the safety snapshot would be written without a lock: refused (exit 2).
    target = env.base / "over"
    (target / str(env.src).lstrip("/")).mkdir(parents=True)
    (target / str(env.src).lstrip("/") / "f.txt").write_text("changed\n")
    r = env.cli("restore", "latest", "--target", str(target), "--no-lock")
    assert r.code == 2 and "--no-lock" in r.stderr and "safety snapshot" in r.stderr, r
    # Without --no-lock the same commands take (and release) their lock, and say nothing about it.
    r = env.cli("ls", "latest")
    assert r.code == 0 and "no lock taken" not in r.stderr, r
    assert env.lock_files() == []

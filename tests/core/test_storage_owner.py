"""core/storage/owner.py and the hand-over in core/storage/local.py: who owns a repository,
what another OS user could not use in it, and files root creates in another user's repository."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

from core.storage.local import LocalBackend
from core.storage.owner import OsUser, other_user_warning, repository_access

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files owned by another user (chown)")
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def base():
    """A folder every user can reach (pytest's tmp_path is inside 0700 folders)."""
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="axo."))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _repo(base: Path) -> Path:
    repo = base / "repo"
    for folder in ("data/ab", "locks", "wal"):
        (repo / folder).mkdir(parents=True)
    for key in ("config", "data/ab/pack1", "locks/l1"):
        (repo / key).write_bytes(b"x")
        (repo / key).chmod(0o600)
    return repo


@ROOT_ONLY
def test_access_is_judged_for_the_given_user(base: Path) -> None:
    repo = _repo(base)
    nobody = OsUser.of_uid(NOBODY.pw_uid)
    r = repository_access(repo, nobody, limit=2)
    # Every folder (not writable by nobody) and every 0600 root file is a problem for nobody.
    assert r.total == 5 + 3 and len(r.problems) == 2 and r.unseen == ()
    assert all("(owner root, mode " in p and "by nobody" in p for p in r.problems)
    for p in [repo, *repo.rglob("*")]:
        os.lchown(p, NOBODY.pw_uid, NOBODY.pw_gid)
    r = repository_access(repo, nobody)
    assert (r.total, r.problems) == (0, ()) and r.checked >= 8
    assert repository_access(repo, OsUser.of_uid(0)).total == 0  # root passes mode bits


@ROOT_ONLY
def test_what_the_caller_cannot_see_is_not_judged(base: Path) -> None:
    """A check run by a user who cannot look into the repository must not pass it."""
    repo = _repo(base)
    repo.chmod(0o700)  # root's: nobody cannot list it
    code = (
        "import sys; from pathlib import Path; from core.storage.owner import OsUser, repository_access; "
        "r = repository_access(Path(sys.argv[1]), OsUser.of_uid(0)); print(r.total, len(r.unseen))"
    )
    from wal_support import ROOT, _server_python

    env = {"PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [shutil.which("runuser") or "runuser", "-u", "nobody", "--", _server_python(), "-c", code, str(repo)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    total, unseen = map(int, p.stdout.split())
    assert total == 0 and unseen >= 1


@ROOT_ONLY
def test_root_hands_new_files_and_folders_to_the_repository_owner(base: Path) -> None:
    repo = _repo(base)
    for p in [repo, *repo.rglob("*")]:
        os.lchown(p, NOBODY.pw_uid, NOBODY.pw_gid)
    backend = LocalBackend(repo)
    asyncio.run(backend.put("wal/000000010000000000000001", b"segment"))
    asyncio.run(backend.put("index/new/deeper/i1", b"index"))  # folders that did not exist
    for p in [repo, *repo.rglob("*")]:
        assert (p.lstat().st_uid, p.lstat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), p
    assert (repo / "wal" / "000000010000000000000001").stat().st_mode & 0o777 == 0o600
    # And the warning names both users.
    text = other_user_warning(repo, "backup")
    assert text is not None and "runs as OS user root" in text and "belongs to nobody" in text


def test_no_warning_for_the_owner_and_no_handover_to_oneself(base: Path) -> None:
    repo = _repo(base)
    assert other_user_warning(repo, "backup") is None
    backend = LocalBackend(repo)
    asyncio.run(backend.put("wal/x", b"y"))
    assert (repo / "wal" / "x").stat().st_uid == os.geteuid()
    assert other_user_warning(base / "missing", "backup") is None

"""The local backend keeps the storage contract on a real filesystem: objects are
immutable, reads are exact, listings never show half-written objects, and a full disk
gives StorageFull with nothing partial left behind (on a real, tiny tmpfs).
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from core.errors import StorageFull
from core.storage.backend import ObjectExists, ObjectInfo, ObjectNotFound, StorageError
from core.storage.local import TMP_PREFIX, LocalBackend


import hostile_support as H  # noqa: E402  (tests/ is on pytest's pythonpath)

axenv = H.axenv


@pytest.fixture
def backend(tmp_path) -> LocalBackend:
    b = LocalBackend(tmp_path / "store")
    asyncio.run(b.create())
    return b


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def temp_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(f"{TMP_PREFIX}*"))


async def listed(b: LocalBackend, prefix: str) -> list[ObjectInfo]:
    return [i async for i in b.list(prefix)]


# --------------------------------------------------------------------------- put / get


async def test_put_get_bytes_memoryview_and_parts(backend):
    await backend.put("snapshots/aa", b"one")
    await backend.put("index/bb", memoryview(b"two-two"))
    await backend.put("data/cc/cc01", [b"head-", b"", b"middle-", b"tail"])
    assert await backend.get("snapshots/aa") == b"one"
    assert await backend.get("index/bb") == b"two-two"
    assert await backend.get("data/cc/cc01") == b"head-middle-tail"
    assert temp_files(backend.root) == []


async def test_many_parts_beyond_iov_max_are_written_in_order(backend):
    parts = [bytes([i % 251]) * (i % 7 + 1) for i in range(3000)]  # > IOV_MAX (1024) buffers
    await backend.put("data/dd/many", parts)
    assert await backend.get("data/dd/many") == b"".join(parts)


async def test_put_never_overwrites(backend):
    await backend.put("keys/k1", b"original")
    with pytest.raises(ObjectExists) as info:
        await backend.put("keys/k1", b"replacement")
    assert "keys/k1" in str(info.value)
    assert await backend.get("keys/k1") == b"original"
    assert temp_files(backend.root) == []


async def test_racing_puts_of_one_key_one_wins_whole(backend):
    payloads = [bytes([i]) * 200_000 for i in range(12)]

    async def put(p: bytes):
        try:
            await backend.put("data/ee/race", p)
            return True
        except ObjectExists:
            return False

    results = await asyncio.gather(*(put(p) for p in payloads))
    assert results.count(True) == 1
    assert await backend.get("data/ee/race") == payloads[results.index(True)]
    assert temp_files(backend.root) == []


async def test_objects_are_private_to_the_owner(backend):
    old = os.umask(0o022)
    try:
        await backend.put("keys/secret", b"wrapped master key")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(backend.root / "keys" / "secret").st_mode)
    assert mode & 0o077 == 0, oct(mode)


async def test_ranged_reads(backend):
    data = bytes(range(256)) * 40
    await backend.put("data/ff/r", data)
    assert await backend.get("data/ff/r", 100, 50) == data[100:150]
    assert await backend.get("data/ff/r", 0, 1) == data[:1]
    assert await backend.get("data/ff/r", len(data) - 3, 3) == data[-3:]
    assert await backend.get("data/ff/r", 5000) == data[5000:]
    assert await backend.get("data/ff/r", 7, 0) == b""
    assert backend.get_sync("data/ff/r", 10, 5) == data[10:15]
    with pytest.raises(StorageError) as info:  # past the end: never a silent short read
        await backend.get("data/ff/r", len(data) - 10, 20)
    assert "data/ff/r" in str(info.value)


async def test_missing_objects_are_named(backend):
    for op in (
        lambda: backend.get("snapshots/nope"),
        lambda: backend.get("snapshots/nope", 3, 4),
        lambda: backend.stat("snapshots/nope"),
        lambda: backend.delete("snapshots/nope"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            await op()
        assert "snapshots/nope" in str(info.value)
        assert str(backend.root) in str(info.value)


async def test_stat_and_delete(backend):
    await backend.put("locks/l1", b"12345")
    assert await backend.stat("locks/l1") == ObjectInfo("locks/l1", 5)
    await backend.delete("locks/l1")
    assert not (backend.root / "locks" / "l1").exists()
    with pytest.raises(ObjectNotFound):
        await backend.stat("locks/l1")
    await backend.put("locks/l1", b"again")  # a deleted name may be used again
    assert await backend.get("locks/l1") == b"again"


@pytest.mark.parametrize(
    "key", ["../escape", "/etc/passwd", "data//x", "data/./x", "data/../../x", "", "data/x/..", "."]
)
async def test_keys_that_could_escape_the_root_are_refused(backend, key):
    before = all_files(backend.root.parent)
    with pytest.raises(StorageError) as info:
        await backend.put(key, b"x")
    assert "invalid object key" in str(info.value)
    with pytest.raises(StorageError):
        await backend.get(key)
    assert all_files(backend.root.parent) == before


# --------------------------------------------------------------------------- list


async def test_list_by_prefix_is_sorted_recursive_and_ignores_temp_files(backend):
    for key in ("data/ab/ab01", "data/ab/ab02", "data/cd/cd01", "snapshots/ab12", "snapshots/cd34", "index/ff"):
        await backend.put(key, key.encode())
    # Leftovers of a crash mid-put, at every level.
    (backend.root / "data" / "ab" / f"{TMP_PREFIX}{uuid.uuid4().hex}").write_bytes(b"partial")
    (backend.root / "snapshots" / f"{TMP_PREFIX}{uuid.uuid4().hex}").write_bytes(b"partial")
    (backend.root / f"{TMP_PREFIX}{uuid.uuid4().hex}").write_bytes(b"partial")

    assert [i.key for i in await listed(backend, "data/")] == ["data/ab/ab01", "data/ab/ab02", "data/cd/cd01"]
    assert [i.key for i in await listed(backend, "data/ab")] == ["data/ab/ab01", "data/ab/ab02"]
    assert [i.key for i in await listed(backend, "snapshots/")] == ["snapshots/ab12", "snapshots/cd34"]
    assert [i.key for i in await listed(backend, "snapshots/c")] == ["snapshots/cd34"]
    assert [(i.key, i.size) for i in await listed(backend, "index/")] == [("index/ff", 8)]
    assert await listed(backend, "locks/") == []
    assert await listed(backend, "nothing-here/") == []
    everything = [i.key for i in await listed(backend, "")]
    assert not any(TMP_PREFIX in k for k in everything)
    assert len(everything) == 6


async def test_list_does_not_follow_symlinks(backend, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "foreign").write_bytes(b"not ours")
    os.symlink(elsewhere, backend.root / "data" / "zz")
    await backend.put("data/aa/real", b"ours")
    assert [i.key for i in await listed(backend, "data/")] == ["data/aa/real"]


async def test_exists_and_create(tmp_path):
    b = LocalBackend(tmp_path / "new")
    assert await b.exists() is False
    await b.create()
    assert {p.name for p in (tmp_path / "new").iterdir()} == {"data", "index", "snapshots", "keys", "locks"}
    assert len(list((tmp_path / "new" / "data").iterdir())) == 256
    assert await b.exists() is False  # no config yet: not a repository
    await b.put("config", b"{}")
    assert await b.exists() is True


# --------------------------------------------------------------------------- a full disk


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def _umount(path: Path) -> None:
    r = subprocess.run(["umount", str(path)], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def tiny_disk(tmp_path, monkeypatch):
    """A 2 MiB filesystem: a real tmpfs when we may mount (root), else os.writev fails
    with ENOSPC past 2 MiB per file (the same errno the kernel gives)."""
    mnt = tmp_path / "tiny"
    if _mount_tmpfs(mnt, "2m"):
        try:
            yield mnt, "tmpfs"
        finally:
            _umount(mnt)
        return
    real_writev = os.writev
    written: dict[int, int] = {}

    def writev(fd, buffers):
        n = sum(len(b) for b in buffers)
        if written.get(fd, 0) + n > 2 * 1024 * 1024:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[fd] = written.get(fd, 0) + n
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)
    yield mnt, "simulated"


async def test_full_disk_raises_storage_full_and_leaves_nothing_partial(tiny_disk):
    mnt, _ = tiny_disk
    b = LocalBackend(mnt / "repo")
    await b.create()
    big = [os.urandom(1024 * 1024) for _ in range(3)]
    with pytest.raises(StorageFull) as info:
        await b.put("data/ab/big", big)
    assert "data/ab/big" in str(info.value) and "no space" in str(info.value)
    assert not (mnt / "repo" / "data" / "ab" / "big").exists()
    assert temp_files(mnt) == []
    with pytest.raises(ObjectNotFound):
        await b.stat("data/ab/big")
    assert await listed(b, "data/") == []
    # The space was given back: a small object still fits.
    await b.put("data/ab/small", b"fits")
    assert await b.get("data/ab/small") == b"fits"


@pytest.mark.parametrize(
    "where,err,expected",
    [
        ("fsync", errno.ENOSPC, StorageFull),
        ("fsync", errno.EDQUOT, StorageFull),
        ("writev", errno.EDQUOT, StorageFull),
        ("fsync", errno.EIO, StorageError),
        ("link", errno.EIO, StorageError),
    ],
)
async def test_write_errors_leave_no_object_and_no_temp(backend, monkeypatch, where, err, expected):
    real = getattr(os, where)

    def failing(*args, **kwargs):
        if where == "fsync" and not stat.S_ISREG(os.fstat(args[0]).st_mode):
            return real(*args, **kwargs)  # let the folder fsync pass; fail the file's
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(os, where, failing)
    with pytest.raises(expected) as info:
        await backend.put("index/abc", b"payload")
    assert "index/abc" in str(info.value)
    monkeypatch.setattr(os, where, real)
    assert not (backend.root / "index" / "abc").exists()
    assert temp_files(backend.root) == []


# --------------------------------------------------------------------------- the CLI on a full disk


# Runs the CLI with os.writev failing ENOSPC once a byte budget is spent: the fallback
# when this process may not mount a small tmpfs.
_ENOSPC_WRAPPER = """
import errno, os, runpy, sys
budget = [int(sys.argv.pop(1))]
real = os.writev
def writev(fd, buffers):
    n = sum(len(b) for b in buffers)
    if n > budget[0]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    budget[0] -= n
    return real(fd, buffers)
os.writev = writev
sys.argv[0] = "axisor-backup"
runpy.run_module("app.cli", run_name="__main__")
"""


def test_backup_on_full_disk_exits_10_with_one_message_and_repository_still_verifies(tmp_path):
    mnt = tmp_path / "small"
    real_disk = _mount_tmpfs(mnt, "6m")
    try:
        env = H.make_env(tmp_path / "w", extra_storage="pack_size_mib = 4\n")
        env.repo = mnt / "repo"
        env.write_config()
        (env.src / "random.bin").write_bytes(os.urandom(20_000_000))
        (env.src / "small.txt").write_text("hello\n")
        env.init_fast(pack_size_mib=4)

        if real_disk:
            r = env.cli("backup")
        else:
            p = subprocess.run(
                [sys.executable, "-c", _ENOSPC_WRAPPER, str(6 * 1024 * 1024), "--config", str(env.cfg), "backup"],
                cwd=H.ROOT,
                env=env.env(),
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
            r = H.CliResult(("backup",), p.returncode, p.stdout, p.stderr)
        assert r.code == 10, r
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one clear message, got:\n{r.stderr}"
        assert "no space left" in lines[0] and str(env.repo) in lines[0]
        assert env.snapshot_files() == []
        assert env.tmp_files() == [], "a failed put must not leave its temp file"
        assert env.lock_files() == []

        r = env.cli("verify", "--full", json_out=True)
        assert r.code == 0, r

        # With room again, the next backup completes, adopts what was stored, and verifies.
        kept = env.packs()
        if real_disk:
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        b = env.backup()
        assert b["snapshots"][0]["summary"]["total_files"] == 2
        assert all(p.exists() for p in kept)
        r = env.cli("verify", "--full", json_out=True)
        assert r.code == 0, r
        assert r.json["unreferenced_packs"] == []
    finally:
        if real_disk:
            _umount(mnt)

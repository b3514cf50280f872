"""Small files written by worker processes (core/restore/writer_proc.py): used when asked,
the same result as threads, the threads when the workers cannot start, a clear failure
(never a hang) when one dies, and batches over more folders than one message can carry."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import restore_craft as C
from core.errors import RestoreRefused
from core.restore import files, writer_proc
from core.restore.writer import FileJob

pytest_plugins = ["restore_craft"]  # its env and craft fixtures


@pytest.fixture
def processes(monkeypatch):
    monkeypatch.setenv(files.POOL_FILES_ENV, "0")
    calls: list[int] = []
    real = writer_proc.WriterPool.write

    def counting(self, jobs, dir_of, sink):
        calls.append(len(jobs))
        return real(self, jobs, dir_of, sink)

    monkeypatch.setattr(writer_proc.WriterPool, "write", counting)
    return calls


def _snapshot(craft, folders: int = 5, per: int = 4) -> tuple[str, dict[str, bytes]]:
    want: dict[str, bytes] = {}
    subs = []
    for d in range(folders):
        nodes = []
        for f in range(per):
            body = f"folder {d} file {f}\n".encode() * (f + 1)
            nodes.append(craft.file(f"f{f}".encode(), body))
            want[f"d{d}/f{f}"] = body
        subs.append(C.dnode(f"d{d}".encode(), craft.tree(nodes)))
    return craft.commit(subs), want


def _restore(env, sid, target):
    async def go():
        repo = await env.open_repo()
        snap = await repo.load_snapshot(sid)
        return await files.FileRestorer(repo, target).restore(snap)

    return asyncio.run(go())


def _check(env, target, want: dict[str, bytes]) -> None:
    base = C.restored(env, target)
    for rel, body in want.items():
        assert (base / rel).read_bytes() == body, rel
    leftovers = [n for _r, _d, fs in os.walk(target) for n in fs if n.startswith(".axisor-")]
    assert leftovers == []


def test_workers_write_the_files_the_threads_would(env, craft, tmp_path, processes):
    sid, want = _snapshot(craft)
    stats = _restore(env, sid, tmp_path / "t")
    assert processes, "the worker processes were not used"
    assert stats.files == len(want) and stats.bytes == sum(map(len, want.values()))
    _check(env, tmp_path / "t", want)


def test_a_batch_over_more_folders_than_one_message_carries(env, craft, tmp_path, processes, monkeypatch):
    monkeypatch.setattr(writer_proc, "MAX_FDS", 2)
    sid, want = _snapshot(craft, folders=7, per=2)
    stats = _restore(env, sid, tmp_path / "t")
    assert stats.files == len(want)
    assert sum(processes) >= len(want)
    _check(env, tmp_path / "t", want)


def test_workers_that_cannot_start_leave_the_work_to_threads(env, craft, tmp_path, monkeypatch):
    monkeypatch.setenv(files.POOL_FILES_ENV, "0")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    sid, want = _snapshot(craft)
    stats = _restore(env, sid, tmp_path / "t")
    assert stats.files == len(want)
    _check(env, tmp_path / "t", want)


def test_a_worker_that_dies_fails_the_restore_with_a_message(env, craft, tmp_path, monkeypatch):
    monkeypatch.setenv(files.POOL_FILES_ENV, "0")
    real = writer_proc.WriterPool.write

    def killing(self, jobs, dir_of, sink):
        for w in self._workers:
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.wait()
        return real(self, jobs, dir_of, sink)

    monkeypatch.setattr(writer_proc.WriterPool, "write", killing)
    sid, _want = _snapshot(craft)
    with pytest.raises(RestoreRefused, match="restore worker process ended unexpectedly"):
        _restore(env, sid, tmp_path / "t")


def _job(folder: int, name: int) -> FileJob:
    return FileJob((b"d%d" % folder, b"f%d" % name), None, [])  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 9), max_size=60), st.integers(1, 5))
def test_batches_split_by_folders_keep_every_file_in_order(folders, most):
    jobs = [_job(f, i) for i, f in enumerate(folders)]
    groups = writer_proc._by_folders(jobs, most)
    assert [j for g in groups for j in g] == jobs
    assert all(len({j.parts[:-1] for j in g}) <= most for g in groups)


def test_a_worker_whose_restorer_goes_away_exits_without_a_traceback():
    """The restorer killed before it sent anything: the worker sees the socket close and
    leaves quietly (its stderr is the terminal the user shares with the restorer)."""
    import socket
    import subprocess

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.restore.writer_proc", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
    ours.close()
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err == b""

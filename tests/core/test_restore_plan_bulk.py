"""A restore into an empty target counts its creates instead of listing them
(core/restore/plan.py ``itemize=False``): the counts and the progress totals must be the
ones the listed plan gives, with and without --include, hard links and symlinks included."""

from __future__ import annotations

import asyncio
import stat

import pytest

import restore_craft as C
from core.repository.tree import SYMLINK
from core.restore.plan import plan_restore
from core.restore.progress import RestoreMeter

pytest_plugins = ["restore_craft"]  # its env and craft fixtures


def _snapshot(craft) -> str:
    link = C.fnode(b"l", mode=stat.S_IFLNK | 0o777, type=SYMLINK, target=b"a")
    inner = craft.tree([craft.file(b"x", b"x" * 300), craft.file(b"y", b"")])
    nodes = [
        craft.file(b"a", b"first\n" * 10),
        craft.file(b"h1", b"linked\n", nlink=2, inode=77, dev=1),
        craft.file(b"h2", b"linked\n", nlink=2, inode=77, dev=1),
        link,
        C.dnode(b"sub", inner),
    ]
    return craft.commit(nodes)


async def _both(env, sid, target, include):
    repo = await env.open_repo()
    snap = await repo.load_snapshot(sid)
    listed = await plan_restore(repo, snap, target, include=include)
    counted = await plan_restore(repo, snap, target, include=include, itemize=False)
    ml, mc = RestoreMeter([listed], None), RestoreMeter([counted], None)
    return listed, counted, (ml.files_total, ml.bytes_total), (mc.files_total, mc.bytes_total)


@pytest.mark.parametrize("include", [(), ("*/sub",), ("*/h2",)])
def test_counted_creates_are_the_listed_ones(env, craft, tmp_path, include):
    sid = _snapshot(craft)
    listed, counted, ml, mc = asyncio.run(_both(env, sid, tmp_path / "t", include))
    assert counted.changes == () and counted.bulk_creates > 0
    assert counted.counts() == listed.counts()
    assert mc == ml
    assert counted.roots == listed.roots and not counted.touches_existing


def test_a_target_with_something_in_it_is_still_listed(env, craft, tmp_path):
    sid = _snapshot(craft)
    target = tmp_path / "t"
    target.mkdir()
    (target / "stray").write_text("x")
    listed, counted, _ml, _mc = asyncio.run(_both(env, sid, target, ()))
    assert counted.changes == listed.changes and counted.bulk_creates == 0

"""The plaintext cache of trees (core/repository/treecache.py): bounded, least recently used
out, and never an answer for a tree the index no longer holds."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from core.repository.treecache import TreeCache


@given(st.lists(st.integers(0, 30), max_size=200))
def test_the_cache_stays_within_its_budget_and_answers_only_what_was_put(keys) -> None:
    """A tree id names one content for good: the model gives each id one fixed plaintext."""
    cache = TreeCache(budget=1000)
    for key in keys:
        tid, raw = bytes([key]) * 32, bytes([key]) * (key * 8)
        cache.put(tid, raw)
        assert cache._size == sum(len(v) for v in cache._kept.values()) <= 1000
        got = cache.get(tid)
        assert got is None or got == raw
        assert got == raw or len(raw) > 250  # just put, and not too large to keep


def test_a_tree_larger_than_a_quarter_of_the_budget_is_not_kept() -> None:
    cache = TreeCache(budget=100)
    cache.put(b"a" * 32, b"x" * 26)
    assert cache.get(b"a" * 32) is None


def test_a_cached_tree_whose_pack_left_the_index_is_not_loaded(tmp_path) -> None:
    from conftest import PASSPHRASE, Workspace  # noqa: F401
    from core.config import load_config
    from core.errors import DamagedObject
    from core.service import BackupService

    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("x\n")
    ws = Workspace(tmp_path, src, tmp_path / "repo", tmp_path / "config.toml")
    ws.write_config()
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0

    async def run() -> None:
        svc = BackupService(load_config(ws.config), lambda _c: PASSPHRASE)
        try:
            snap = (await svc.resolve(["latest"]))[0]
            repo = await svc.repository()
            tid = bytes.fromhex(snap.tree)
            await repo.load_tree(tid)
            assert repo.trees.get(tid) is not None
            loc = repo.index.lookup(tid)
            assert loc is not None
            repo.index.drop_packs({loc.pack_id})
            try:
                await repo.load_tree(tid)
            except DamagedObject:
                return
            raise AssertionError("a tree no index holds was loaded from the cache")
        finally:
            await svc.close()

    asyncio.run(run())

"""A tree DAG built to be exponential: verify visits each tree once.

Trees are content-addressed, so equal folders are one tree, and a key holder (or a bug)
can make a snapshot whose root has two entries naming the same tree, which has two
entries naming the next, ... 30 levels deep: 2^30 paths from 30 trees. `verify` (quick and
full) must count trees, not paths, and still name the snapshot and (up to its cap) files
beneath a damaged blob, in every snapshot that reaches it.
"""

from __future__ import annotations

import os
import time

import pytest

import hostile_support as H
from restore_craft import Craft, dnode, fnode

axenv = H.axenv

DEPTH = 30


@pytest.fixture
def dag(axenv):
    axenv.init_fast()
    c = Craft(axenv)
    try:
        lost = os.urandom(32)  # a data blob no index names: its file is damaged
        bottom = c.tree([c.file(b"ok.txt", b"fine\n"), fnode(b"lost.bin", size=10, content=(lost,))])
        t = bottom
        for _ in range(DEPTH):
            t = c.tree([dnode(b"a", t), dnode(b"b", t)])
        first = c.commit([dnode(b"dag", t)])
        second = c.commit([dnode(b"dag", t), dnode(b"again", t)])
    finally:
        c.close()
    return axenv, first, second, lost


@pytest.mark.parametrize("full", [False, True])
def test_verify_of_an_exponential_dag_is_linear(dag, full):
    env, first, second, lost = dag
    started = time.monotonic()
    r = env.cli("verify", *(["--full"] if full else []), json_out=True, timeout=60)
    took = time.monotonic() - started
    assert r.code == 6, r  # the lost blob
    report = r.json
    depth_of_src = len(env.src.parts) - 1
    # Each distinct tree once: the bottom, the 30 levels, and the two snapshots' own folders.
    assert report["trees_checked"] <= DEPTH + 1 + 2 * (depth_of_src + 2), report["trees_checked"]
    assert took < 30, took
    [d] = [d for d in report["damage"] if d["object"] == f"blob {lost.hex()}"]
    assert set(d["snapshots"]) == {first, second}
    # Files are listed up to the cap (1000 per object), from both snapshots.
    assert len(d["files"]) == 1000
    assert any(f.startswith(first[:8]) for f in d["files"])
    assert all(f.endswith("/lost.bin") for f in d["files"])


def test_verify_names_every_snapshot_above_a_shared_damaged_tree(axenv):
    """The memo of what lies beneath a tree is reused across snapshots: the second snapshot
    reaching a damaged folder is named, with its own path, though the tree was walked once."""
    axenv.init_fast()
    c = Craft(axenv)
    try:
        lost_tree = os.urandom(32)  # a subtree no index names
        s1 = c.commit([dnode(b"docs", lost_tree)])
        s2 = c.commit([dnode(b"other", c.tree([])), dnode(b"docs", lost_tree)])
    finally:
        c.close()
    r = axenv.cli("verify", json_out=True)
    assert r.code == 6, r
    [d] = [d for d in r.json["damage"] if d["object"] == f"blob {lost_tree.hex()}"]
    assert set(d["snapshots"]) == {s1, s2}
    assert {f"{s1[:8]}:{axenv.src / 'docs'} (folder)", f"{s2[:8]}:{axenv.src / 'docs'} (folder)"} == set(d["files"])

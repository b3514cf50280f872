"""Prune's plan on its own (core.maintenance.prune_plan): pure, so Hypothesis drives it with
random repositories held in memory: snapshots over a graph of trees, blobs spread over
packs (some stored twice, some packs missing or truncated), WAL manifests, and a
retention policy. What must hold for every one of them:

- a blob a kept snapshot or a kept WAL file reaches is never lost: it stays in a pack
  that stays, or is copied by a repack, from a pack on storage whole;
- a repack copies only used blobs, and only packs on storage are deleted or repacked;
- every indexed pack has exactly one fate;
- when the plan refuses, something needed really is unreadable, and the other way round.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.maintenance.prune_plan import Holdings, PackInfo, PruneRefused, TreeRefs, plan_prune
from core.maintenance.retention import Policy, apply
from core.repository.index import PackEntry
from core.repository.snapshot import Snapshot

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _id(kind: str, n: int) -> bytes:
    return hashlib.sha256(f"{kind}{n}".encode()).digest()


@st.composite
def worlds(draw):
    n_trees = draw(st.integers(1, 8))
    n_data = draw(st.integers(0, 12))
    trees_ids = [_id("t", i) for i in range(n_trees)]
    data_ids = [_id("d", i) for i in range(n_data)]
    # Tree i points only at trees after it: a DAG, shared subtrees included.
    trees = {}
    for i, t in enumerate(trees_ids):
        subs = draw(st.lists(st.sampled_from(trees_ids[i + 1 :]), max_size=3)) if i + 1 < n_trees else []
        blobs = draw(st.lists(st.sampled_from(data_ids), max_size=4)) if data_ids else []
        trees[t] = TreeRefs(tuple(subs), tuple(blobs))
    snaps = []
    for i in range(draw(st.integers(0, 6))):
        root = draw(st.sampled_from(trees_ids))
        age = draw(st.integers(0, 30))
        snaps.append(
            Snapshot(
                time=(NOW - timedelta(days=age, minutes=i)).isoformat(),
                source="application/x",
                paths=("/x",),
                tree=root.hex(),
                id=hashlib.sha256(b"s%d" % i).hexdigest(),
            )
        )
    # Every blob (and a few strays no one uses) in one to two packs; a blob may also be in no pack.
    n_packs = draw(st.integers(1, 5))
    pack_ids = [_id("p", i) for i in range(n_packs)]
    members: dict[bytes, list[bytes]] = {p: [] for p in pack_ids}
    strays = [_id("x", i) for i in range(draw(st.integers(0, 3)))]
    for blob in trees_ids + data_ids + strays:
        homes = draw(st.lists(st.sampled_from(pack_ids), max_size=2, unique=True))
        if not homes and draw(st.integers(0, 9)) > 0:
            homes = [pack_ids[0]]  # mostly indexed: a missing blob is the rarer case
        for p in homes:
            members[p].append(blob)
    packs = {}
    on_storage = {}
    for p in pack_ids:
        entries = tuple(PackEntry(0, b, k * 100, draw(st.integers(1, 100)), 50) for k, b in enumerate(members[p]))
        size = sum(e.length for e in entries) + 40
        packs[p] = PackInfo(size, entries)
        fate = draw(st.sampled_from(["whole"] * 6 + ["missing", "truncated"]))
        if fate != "missing":
            on_storage[p] = size if fate == "whole" else size - 1
    wal = {}
    for i in range(draw(st.integers(0, 2))):
        wal[f"00000001000000000000000{i}"] = (
            tuple(b.hex() for b in draw(st.lists(st.sampled_from(data_ids + strays), max_size=2)))
            if data_ids + strays
            else ()
        )
    holdings = Holdings(packs=packs, on_storage=on_storage, index_files=frozenset({"index/a", "index/b"}), wal=wal)
    policy = Policy(
        keep_last=draw(st.integers(0, 3)),
        min_keep=draw(st.integers(0, 2)),
        retention_days=draw(st.sampled_from([None, 3, 10])),
    )
    return snaps, policy, holdings, trees


def _reachable(kept, trees, wal_blobs) -> set[bytes]:
    out = set(wal_blobs)
    stack = [bytes.fromhex(s.tree) for s in kept]
    while stack:
        t = stack.pop()
        if t in out:
            continue
        out.add(t)
        stack.extend(trees[t].subtrees)
        out.update(trees[t].blobs)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_the_plan_never_loses_what_is_kept(world):
    snaps, policy, holdings, trees = world
    retention = apply(snaps, lambda _source: policy, NOW)
    needed = _reachable(retention.keep, trees, {bytes.fromhex(h) for hs in holdings.wal.values() for h in hs})
    whole = {p for p, info in holdings.packs.items() if holdings.on_storage.get(p) == info.size}
    readable = {e.id for p in whole for e in holdings.packs[p].entries}
    try:
        plan = plan_prune(retention, holdings, trees)
    except PruneRefused:
        assert needed - readable, "refused although every needed blob has a whole copy"
        return
    assert not needed - readable, "planned although a needed blob has no whole copy"
    assert plan.used == needed
    assert [s.id for s in plan.forget] == [s.id for s in retention.forget]

    fates = [*plan.stay, *plan.delete, *(p for p, _ in plan.repack), *plan.missing]
    assert sorted(fates) == sorted(holdings.packs), "every indexed pack has exactly one fate"
    assert set(plan.missing) == set(holdings.packs) - set(holdings.on_storage)
    assert set(plan.gone) <= set(holdings.on_storage), "only packs prune listed are deleted"

    surviving = {e.id for p in plan.stay for e in holdings.packs[p].entries}
    for pid, keep in plan.repack:
        assert pid in whole, "a repack copies only from a pack on storage whole"
        assert {e.id for e in keep} <= needed, "a repack copies only used blobs"
        assert set(keep) <= set(holdings.packs[pid].entries)
        surviving |= {e.id for e in keep}
    assert needed <= surviving, "a blob a kept snapshot or WAL file needs is never deleted"
    assert not set(plan.stay) - whole, "a truncated pack never stays as a source of kept data"


def test_the_plan_names_the_snapshot_whose_tree_is_in_no_index():
    tree = _id("t", 0)
    snap = Snapshot(time=NOW.isoformat(), source="application/x", paths=("/x",), tree=tree.hex(), id="ab" * 32)
    holdings = Holdings(packs={}, on_storage={}, index_files=frozenset(), wal={})
    retention = apply([snap], lambda _source: Policy(keep_last=1), NOW)
    try:
        plan_prune(retention, holdings, {})
    except PruneRefused as exc:
        assert f"tree {tree.hex()[:16]} of snapshot abababab is in no index" in str(exc)
    else:
        raise AssertionError("planned over a lost tree")

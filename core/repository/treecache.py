"""Recently opened trees, kept as their plaintext bytes (bounded), so walking a snapshot
again does not fetch, decrypt and decompress each tree again.

A restore walks its snapshot three times (the plan, the restore, the validation); a
snapshot of system folders has thousands of trees, and loading one costs a trip to the
worker pool. Trees are addressed by their keyed id, so bytes kept under an id are that
tree's for good: nothing to invalidate. The budget is bytes, least recently used out:
msgpack plaintext is about a third of a decoded tree's size in memory.
"""

from __future__ import annotations

from collections import OrderedDict

BUDGET = 16 << 20  # bytes of plaintext kept: ~130,000 nodes


class TreeCache:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0

    def get(self, tree_id: bytes) -> bytes | None:
        raw = self._kept.get(tree_id)
        if raw is not None:
            self._kept.move_to_end(tree_id)
        return raw

    def put(self, tree_id: bytes, raw: bytes) -> None:
        if len(raw) > self.budget // 4 or tree_id in self._kept:
            return  # one huge folder would push out everything else
        self._kept[tree_id] = raw
        self._size += len(raw)
        while self._size > self.budget:
            _, old = self._kept.popitem(last=False)
            self._size -= len(old)

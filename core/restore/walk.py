"""Walking a snapshot's trees, refusing names that could escape a restore target.

Iterative (a stack of folders being listed), so a snapshot thousands of folders deep walks
in constant stack space; only the trees on the current path are held in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from core.errors import RestoreRefused
from core.repository.repository import Repository
from core.repository.tree import DIR, Node, Tree
from core.text import shown


def check_name(name: bytes, where: bytes) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise RestoreRefused(
            f"snapshot holds an unsafe name {name!r} under /{shown(where)}: "
            "refusing to restore it (the tree may be crafted)"
        )


# Subtrees loaded ahead of the walk (decrypted and decoded on the worker pool while the
# walk's consumer works): a bound on how many wait, so memory does not grow with the tree.
PREFETCH = 32


class _Ahead:
    """Loads of the subtrees the walk will descend into next, started early."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.tasks: dict[bytes, asyncio.Task] = {}

    def start(self, nodes: list[Node]) -> None:
        for node in nodes:
            if len(self.tasks) >= PREFETCH:
                return
            if node.type == DIR and node.subtree is not None and node.subtree not in self.tasks:
                self.tasks[node.subtree] = asyncio.ensure_future(self.repo.load_tree(node.subtree))

    async def take(self, tree_id: bytes) -> Tree:
        task = self.tasks.pop(tree_id, None)
        return await task if task is not None else await self.repo.load_tree(tree_id)

    def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
            # A cancelled or failed load nobody waits for must not be logged as unretrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.tasks.clear()


async def walk(
    repo: Repository, tree_id: bytes, prefix: tuple[bytes, ...] = ()
) -> AsyncIterator[tuple[tuple[bytes, ...], Node]]:
    """Pre-order: every node with its path components, each directory before its content."""
    ahead = _Ahead(repo)
    try:
        async for item in _walk(repo, ahead, tree_id, prefix):
            yield item
    finally:
        ahead.close()


async def _walk(
    repo: Repository, ahead: _Ahead, tree_id: bytes, prefix: tuple[bytes, ...]
) -> AsyncIterator[tuple[tuple[bytes, ...], Node]]:
    tree = await repo.load_tree(tree_id)
    ahead.start(tree.nodes)
    # (path of the folder, its nodes, index of the next one, names seen)
    stack: list[tuple[tuple[bytes, ...], list[Node], list[int], set[bytes]]] = [(prefix, tree.nodes, [0], set())]
    while stack:
        where, nodes, pos, seen = stack[-1]
        if pos[0] >= len(nodes):
            stack.pop()
            continue
        node = nodes[pos[0]]
        pos[0] += 1
        if not node.name or node.name in (b".", b"..") or b"/" in node.name or b"\0" in node.name:
            check_name(node.name, b"/".join(where))
        if node.name in seen:
            raise RestoreRefused(
                f"snapshot holds the name {node.name!r} twice under /{shown(b'/'.join(where))}: "
                "refusing to restore it (the tree may be crafted)"
            )
        seen.add(node.name)
        path = where + (node.name,)
        yield path, node
        if node.type == DIR and node.subtree is not None:
            sub = await ahead.take(node.subtree)
            ahead.start(sub.nodes)
            stack.append((path, sub.nodes, [0], set()))


def display(path: tuple[bytes, ...]) -> str:
    return "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in path)

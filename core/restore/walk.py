"""Walking a snapshot's trees, refusing names that could escape a restore target."""

from __future__ import annotations

from collections.abc import AsyncIterator

from core.errors import RestoreRefused
from core.repository.repository import Repository
from core.repository.tree import DIR, Node


def check_name(name: bytes, where: bytes) -> None:
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise RestoreRefused(
            f"snapshot holds an unsafe name {name!r} under /{where.decode(errors='replace')}: "
            "refusing to restore it (the tree may be crafted)"
        )


async def walk(repo: Repository, tree_id: bytes, prefix: tuple[bytes, ...] = ()
               ) -> AsyncIterator[tuple[tuple[bytes, ...], Node]]:
    """Pre-order: every node with its path components, each directory before its content."""
    tree = await repo.load_tree(tree_id)
    seen: set[bytes] = set()
    where = b"/".join(prefix)
    for node in tree.nodes:
        check_name(node.name, where)
        if node.name in seen:
            raise RestoreRefused(
                f"snapshot holds the name {node.name!r} twice under /{where.decode(errors='replace')}: "
                "refusing to restore it (the tree may be crafted)"
            )
        seen.add(node.name)
        path = prefix + (node.name,)
        yield path, node
        if node.type == DIR and node.subtree is not None:
            async for item in walk(repo, node.subtree, path):
                yield item


def display(path: tuple[bytes, ...]) -> str:
    return "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in path)

"""Crafting snapshots with the real Repository API for restore tests: nodes with every
attribute a tree can carry (xattrs, ACLs, capabilities, flags, holes, devices, FIFOs), and
running the CLI as root or as ``nobody``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import hostile_support as H
from core.repository.format import BlobType
from core.repository.snapshot import Snapshot
from core.repository.tree import DIR, FILE, Node, Tree

NOW = time.time_ns()
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def fnode(name: bytes, **kw) -> Node:
    base = dict(name=name, type=FILE, mode=stat.S_IFREG | 0o644, uid=os.getuid(), gid=os.getgid(), mtime_ns=NOW)
    base.update(kw)
    return Node(**base)


def dnode(name: bytes, subtree: bytes, **kw) -> Node:
    base = dict(
        name=name, type=DIR, mode=stat.S_IFDIR | 0o755, uid=os.getuid(), gid=os.getgid(), mtime_ns=NOW, subtree=subtree
    )
    base.update(kw)
    return Node(**base)


class Craft:
    """In-process repository access: ``data`` stores content, ``tree`` a folder,
    ``commit`` a snapshot whose source path is ``env.src``."""

    def __init__(self, env: H.AxEnv) -> None:
        self.env = env
        self.loop = asyncio.new_event_loop()
        self.repo = self.loop.run_until_complete(env.open_repo())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def data(self, payload: bytes, piece: int = 0) -> tuple[bytes, ...]:
        """Blob ids of ``payload`` cut into pieces of ``piece`` bytes (one blob if 0)."""
        piece = piece or max(1, len(payload))
        return (
            tuple(
                self.run(self.repo.save_blob(BlobType.DATA, payload[i : i + piece]))
                for i in range(0, len(payload), piece)
            )
            if payload
            else ()
        )

    def chunked(self, payload: bytes) -> tuple[bytes, ...]:
        """Blob ids of ``payload`` cut by the repository's chunker, as a backup cuts it."""
        import io

        from core.backup.chunker import WINDOW, Chunker

        ch = Chunker(self.repo.config.chunker, io.BytesIO(payload))
        ids = []
        try:
            while chunks := ch.take(WINDOW):
                ids.extend(self.run(self.repo.save_blob(BlobType.DATA, bytes(c))) for c in chunks)
        finally:
            ch.close()
        return tuple(ids)

    def file(self, name: bytes, payload: bytes, **kw) -> Node:
        return fnode(name, size=kw.pop("size", len(payload)), content=self.data(payload, kw.pop("piece", 0)), **kw)

    def tree(self, nodes: list[Node]) -> bytes:
        return self.run(self.repo.save_tree(Tree(list(nodes))))

    def commit(self, nodes: list[Node]) -> str:
        """A snapshot holding ``nodes`` in a folder at the path of ``env.src``."""
        sub = self.tree(nodes)
        for name in reversed(Path(str(self.env.src)).parts[1:]):
            sub = self.tree([dnode(os.fsencode(name), sub)])
        self.run(self.repo.flush())
        snap = Snapshot(
            time=datetime.now(timezone.utc).isoformat(),
            source="application/user_data",
            paths=(str(self.env.src),),
            tree=sub.hex(),
            type="full",
            backup_set=f"c{time.time_ns()}",
        )
        return self.run(self.repo.save_snapshot(snap))

    def close(self) -> None:
        self.loop.close()


def restored(env: H.AxEnv, target: Path) -> Path:
    return target / str(env.src).lstrip("/")


def nobody_world() -> tuple[Path, H.AxEnv]:
    """A world under /tmp that the user nobody can reach; chown it to nobody after crafting."""
    base = Path(tempfile.mkdtemp(prefix="axisor-h3-"))
    os.chmod(base, 0o755)
    env = H.make_env(base / "w")
    (base / "home").mkdir()
    return base, env


def give_to_nobody(base: Path) -> None:
    subprocess.run(["chown", "-R", "nobody:nogroup", str(base)], check=True)


def cli_as_nobody(env: H.AxEnv, base: Path, *args: str, json_out: bool = False) -> H.CliResult:
    e = env.env()
    e.update(
        HOME=str(base / "home"),
        XDG_STATE_HOME=str(base / "home"),
        XDG_CACHE_HOME=str(base / "home"),
        XDG_CONFIG_HOME=str(base / "home"),
    )
    p = subprocess.run(
        [*NOBODY, *env.argv(*args, json_out=json_out)],
        cwd=H.ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return H.CliResult(tuple(args), p.returncode, p.stdout, p.stderr)


def remove_world(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


# Fixtures for in-process restore tests; a module takes them with
# ``pytest_plugins = ["restore_craft"]``.


@pytest.fixture
def env(tmp_path):
    """A fresh repository and source folder (hostile_support's world)."""
    e = H.make_env(tmp_path / "w")
    e.init_fast()
    return e


@pytest.fixture
def craft(env):
    c = Craft(env)
    yield c
    c.close()

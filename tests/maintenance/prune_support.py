"""A throwaway world for prune tests: a source folder, a real repository on the local
backend, a real BackupService, and helpers to age snapshots, crash storage on purpose and
compare restores with what was backed up.

Repositories are created with a cheap key derivation (scrypt N=2^10, stored in the key
file, so CLI subprocesses open them fast too) and small packs so that a few hundred KB of
data spread over many packs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from core import crypto
from core.config import Config, parse_config
from core.repository.lock import remove_stale
from core.repository.repository import Repository
from core.service import BackupService
from core.storage.local import LocalBackend

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "prune tests passphrase"


class Crash(Exception):
    """Storage stops answering: the process died at this point."""


class CrashingBackend:
    """Fault injection: forwards to a real backend until ``crash_after`` mutating calls
    (put/delete) have gone through; from then on every call fails, reads included, so
    nothing after the crash point can reach storage, as when the process is killed."""

    def __init__(self, inner, crash_after: int) -> None:
        self.inner = inner
        self.crash_after = crash_after
        self.mutations = 0
        self.crashed = False

    @property
    def location(self) -> str:
        return self.inner.location

    def _gate(self, mutating: bool) -> None:
        if self.crashed:
            raise Crash("storage is gone")
        if mutating:
            if self.mutations >= self.crash_after:
                self.crashed = True
                raise Crash(f"crashed before mutation #{self.mutations}")
            self.mutations += 1

    async def put(self, key, data):
        self._gate(True)
        return await self.inner.put(key, data)

    async def delete(self, key):
        self._gate(True)
        return await self.inner.delete(key)

    async def get(self, key, offset=0, length=None):
        self._gate(False)
        return await self.inner.get(key, offset, length)

    async def stat(self, key):
        self._gate(False)
        return await self.inner.stat(key)

    async def list(self, prefix):
        self._gate(False)
        async for info in self.inner.list(prefix):
            yield info

    async def exists(self):
        self._gate(False)
        return await self.inner.exists()

    async def create(self):
        self._gate(True)
        return await self.inner.create()

    async def close(self):
        return None


@dataclass
class World:
    root: Path
    src: Path
    repo: Path
    cfg: Path
    retention: str = ""
    application: str = "retention_days = 1"

    def write_config(self, retention: str | None = None, application: str | None = None) -> Path:
        if retention is not None:
            self.retention = retention
        if application is not None:
            self.application = application
        self.cfg.write_text(
            f"[application]\nuser_data = [{json.dumps(str(self.src))}]\n{self.application}\n"
            f"[storage]\nlocal_path = {json.dumps(str(self.repo))}\n"
            f"[retention]\n{self.retention}\n",
            encoding="utf-8",
        )
        return self.cfg

    @property
    def config(self) -> Config:
        import tomllib

        return parse_config(tomllib.loads(self.cfg.read_text()), base_dir=self.root, path=self.cfg)

    def init(self, pack_size: int = 64 * 1024) -> None:
        saved = crypto.SCRYPT_N
        crypto.SCRYPT_N = 2**10
        try:
            asyncio.run(Repository.create(LocalBackend(self.repo), PASSPHRASE, pack_size=pack_size))
        finally:
            crypto.SCRYPT_N = saved

    def service(self, crash_after: int | None = None) -> BackupService:
        svc = BackupService(self.config, lambda _confirm: PASSPHRASE, workers=2)
        if crash_after is not None:
            # Both names: the service serves the primary location from either.
            svc.backend = svc._primary = CrashingBackend(svc.backend, crash_after)
        return svc

    async def call(self, fn, crash_after: int | None = None):
        """``await fn(service)`` with a fresh service, closed afterwards."""
        svc = self.service(crash_after)
        try:
            return await fn(svc)
        finally:
            await svc.close()

    def run(self, fn, crash_after: int | None = None):
        return asyncio.run(self.call(fn, crash_after))

    # -- the real CLI -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP_")}
        env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
        env["AXISOR_BACKUP_STATE_DIR"] = str(self.root / "state")  # the CLI's job engine keeps its records here
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def argv(self, *args: str, cfg: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "app.cli", "--config", str(cfg or self.cfg), *args]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str, cfg: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args, cfg=cfg),
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    # -- looking at storage ---------------------------------------------------------------------

    def listing(self) -> dict[str, bytes]:
        """Every object (lock files aside) -> its bytes."""
        out = {}
        for p in sorted(self.repo.rglob("*")):
            rel = p.relative_to(self.repo).as_posix()
            if p.is_file() and not rel.startswith("locks/"):
                out[rel] = p.read_bytes()
        return out

    def packs(self) -> list[Path]:
        return sorted(p for p in (self.repo / "data").glob("*/*") if not p.name.startswith(".tmp-"))

    def index_files(self) -> list[Path]:
        return sorted((self.repo / "index").glob("*"))

    def snapshot_ids(self) -> set[str]:
        return {p.name for p in (self.repo / "snapshots").glob("*")}

    def unlock_all(self) -> None:
        asyncio.run(remove_stale(LocalBackend(self.repo), all_locks=True))


def make_world(base: Path) -> World:
    src = base / "src"
    src.mkdir(parents=True)
    w = World(base, src, base / "repo", base / "config.toml")
    w.write_config()
    return w


def copy_world(w: World, dest: Path) -> World:
    """A copy of the whole world (source, repository, config) under ``dest``."""
    import shutil

    shutil.copytree(w.root, dest)
    c = World(dest, dest / "src", dest / "repo", dest / "config.toml", w.retention, w.application)
    c.cfg.write_text(w.cfg.read_text().replace(str(w.root), str(dest)))
    return c


def count_mutations(w: World, fn, scratch: Path) -> int:
    """How many writes and deletes ``fn(service)`` makes, measured on a copy of ``w``."""
    probe = copy_world(w, scratch)
    seen = {}

    async def counted(svc):
        seen["backend"] = svc.backend
        return await fn(svc)

    try:
        probe.run(counted, crash_after=10**9)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return seen["backend"].mutations


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def age_snapshots(svc: BackupService, days: dict[str, float], location: str | None = None) -> dict[str, str]:
    """Move snapshots back in time (id -> days): save each manifest again with an earlier
    ``time`` and delete the original. Test setup only: manifests are otherwise immutable.
    Returns old id -> new id."""
    from core.repository.rollback import bury

    repo = await (svc.location_ops().sites.repository(location) if location else svc.repository())
    moved = {}
    for sid, d in days.items():
        snap = await repo.load_snapshot(sid)
        older = replace(snap, time=(snap.datetime - timedelta(days=d)).isoformat(timespec="microseconds"), id="")
        moved[sid] = await repo.save_snapshot(older)
        # Explained as every rewrite is (core/repository/rollback.py): a bare delete would
        # rightly stop this host's next backup as a rollback.
        await bury(repo, sid, "repair", moved[sid])
        await repo.backend.delete(f"snapshots/{sid}")
    return moved


async def restored(svc: BackupService, snapshot_id: str, target: Path) -> dict[str, bytes]:
    """Restore one snapshot into ``target`` and return its files relative to the source."""
    snap = (await svc.resolve([snapshot_id]))[0]
    await svc.restore(snap, target)
    return tree_bytes(target / Path(snap.paths[0]).relative_to("/"))


def now_plus(days: float) -> datetime:
    return datetime.now().astimezone() + timedelta(days=days)

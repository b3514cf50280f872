"""Fixtures for tests that treat the repository as hostile ground.

The ``axenv`` fixture gives one throwaway world per test: a source folder, a repository
path, a config file, a helper to run the real CLI in a subprocess (exit codes and
messages are part of the contract) and a helper to open the repository in-process with
the real Repository API (to find packs, craft trees, damage bytes on purpose).

Test modules import it (``tests/`` is on pytest's pythonpath) and re-export the fixture
they use:

    import hostile_support as H
    axenv = H.axenv
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "hostile-tests passphrase"


@dataclass(repr=False)
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return (
            f"axisor-backup {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


@dataclass
class AxEnv:
    base: Path
    src: Path
    repo: Path
    cfg: Path
    passphrase: str = PASSPHRASE
    extra_storage: str = ""
    sources: list[Path] = field(default_factory=list)

    # -- config ---------------------------------------------------------------------------

    def write_config(self, sources: list[Path] | None = None, extra_storage: str | None = None) -> Path:
        if sources is not None:
            self.sources = list(sources)
        if extra_storage is not None:
            self.extra_storage = extra_storage
        paths = ", ".join(json.dumps(str(p)) for p in self.sources)
        self.cfg.write_text(
            f"[application]\nuser_data = [{paths}]\n"
            f"[storage]\nlocal_path = {json.dumps(str(self.repo))}\n{self.extra_storage}",
            encoding="utf-8",
        )
        return self.cfg

    # -- the real CLI -----------------------------------------------------------------------

    def env(self, passphrase: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP_")}
        env["AXISOR_BACKUP_PASSPHRASE"] = self.passphrase if passphrase is None else passphrase
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def argv(self, *args: str, json_out: bool = False, cfg: Path | None = None) -> list[str]:
        return [
            sys.executable,
            "-m",
            "app.cli",
            "--config",
            str(cfg or self.cfg),
            *(["--json"] if json_out else []),
            *args,
        ]

    def cli(
        self,
        *args: str,
        json_out: bool = False,
        passphrase: str | None = None,
        cfg: Path | None = None,
        timeout: float = 120,
    ) -> CliResult:
        p = subprocess.run(
            self.argv(*args, json_out=json_out, cfg=cfg),
            cwd=ROOT,
            env=self.env(passphrase),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(tuple(args), p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str, json_out: bool = False) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args, json_out=json_out),
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def init(self) -> CliResult:
        r = self.cli("init")
        assert r.code == 0, r
        return r

    def init_fast(self, pack_size_mib: int = 16) -> None:
        """Create the repository in-process with a cheap key derivation (scrypt N=2^10).

        The cost is stored in the key file, so every later open, in the CLI subprocesses
        too, is fast; nothing else about the repository differs from `init`."""
        from core import crypto
        from core.repository.repository import Repository
        from core.storage.local import LocalBackend

        saved = crypto.SCRYPT_N
        crypto.SCRYPT_N = 2**10
        try:
            asyncio.run(
                Repository.create(LocalBackend(self.repo), self.passphrase, pack_size=pack_size_mib * 1024 * 1024)
            )
        finally:
            crypto.SCRYPT_N = saved

    def backup(self, *args: str) -> dict:
        r = self.cli("backup", *args, json_out=True)
        assert r.code == 0, r
        return r.json

    # -- the real repository, in-process ----------------------------------------------------

    async def open_repo(self):
        from core.repository.repository import Repository
        from core.storage.local import LocalBackend

        repo = await Repository.open(LocalBackend(self.repo), self.passphrase)
        await repo.load_index()
        return repo

    def run(self, coro):
        return asyncio.run(coro)

    # -- looking at the files -------------------------------------------------------------

    def packs(self) -> list[Path]:
        return sorted(p for p in (self.repo / "data").glob("*/*") if not p.name.startswith(".tmp-"))

    def tmp_files(self) -> list[Path]:
        return sorted(p for p in self.repo.rglob(".tmp-*"))

    def snapshot_files(self) -> list[Path]:
        return sorted((self.repo / "snapshots").glob("*"))

    def index_files(self) -> list[Path]:
        return sorted((self.repo / "index").glob("*"))

    def lock_files(self) -> list[Path]:
        return sorted((self.repo / "locks").glob("*"))

    def pack_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.packs())


async def file_blobs(repo, snapshot_id: str) -> dict[str, tuple[bytes, ...]]:
    """Every file of a snapshot (path as verify and ls show it) -> its data blob ids."""
    from core.repository.tree import FILE
    from core.restore.walk import display, walk

    snap = await repo.load_snapshot(snapshot_id)
    return {
        display(parts): node.content async for parts, node in walk(repo, bytes.fromhex(snap.tree)) if node.type == FILE
    }


def tree_packs(repo) -> set[bytes]:
    """Packs that hold at least one tree blob."""
    from core.repository.format import BlobType

    return {loc.pack_id for _, loc in repo.index.blobs() if loc.type == BlobType.TREE}


def make_env(base: Path, src: Path | None = None, extra_storage: str = "") -> AxEnv:
    """An AxEnv under ``base``; ``src`` may be shared with other worlds."""
    base.mkdir(parents=True, exist_ok=True)
    if src is None:
        src = base / "src"
        src.mkdir()
    env = AxEnv(
        base=base, src=src, repo=base / "repo", cfg=base / "config.toml", sources=[src], extra_storage=extra_storage
    )
    env.write_config()
    return env


def flip_byte(path: Path, offset: int, mask: int = 0x20) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        assert len(b) == 1, f"{path} has no byte at {offset}"
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


@pytest.fixture
def axenv(tmp_path: Path) -> AxEnv:
    return make_env(tmp_path)

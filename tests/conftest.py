"""Shared fixtures: a config file, a repository, and a CLI runner (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# A plugin of some test modules (pytest_plugins): rewritten like them, before they import it.
pytest.register_assert_rewrite("restore_craft")

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class Workspace:
    root: Path
    src: Path
    repo: Path
    config: Path

    def write_config(self, extra: str = "", **sources: list[Path]) -> Path:
        lines = ["[application]"]
        srcs = sources or {"user_data": [self.src]}
        for key, paths in srcs.items():
            if key.startswith("configuration."):
                continue
            lines.append(f"{key} = {json.dumps([str(p) for p in paths])}")
        conf = {k.split(".", 1)[1]: v for k, v in srcs.items() if k.startswith("configuration.")}
        if conf:
            lines.append("[configuration]")
            lines += [f"{k} = {json.dumps([str(p) for p in v])}" for k, v in conf.items()]
        lines += ["[storage]", f'local_path = "{self.repo}"', extra]
        self.config.write_text("\n".join(lines) + "\n")
        return self.config

    def cli(
        self, *args: str, passphrase: str | None = PASSPHRASE, env: dict | None = None, timeout: float = 120
    ) -> CliResult:
        e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        if passphrase is not None:
            e["AXISOR_BACKUP_PASSPHRASE"] = passphrase
        e.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(self.config), *args],
            cwd=ROOT,
            env=e,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    src = tmp_path / "src"
    src.mkdir()
    w = Workspace(tmp_path, src, tmp_path / "repo", tmp_path / "config.toml")
    w.write_config()
    return w


@pytest.fixture(params=["threads", "processes"])
def restore_writers(request, monkeypatch):
    """Run a test's restores both ways: small files written on threads, and in worker
    processes (core/restore/writer_proc.py), which a restore uses only from 4,096 files
    on. Modules opt in with ``pytestmark = pytest.mark.usefixtures("restore_writers")``."""
    monkeypatch.setenv("AXISOR_RESTORE_PROCESS_FILES", "0" if request.param == "processes" else "1000000000")
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _old_deep_trees_removable(tmp_path_factory):
    """pytest removes the base folders of older runs when this run's is first made, with
    shutil.rmtree, which recurses once per level: a 3,000-level tree a deep-tree test left
    there overflowed it (RecursionError at session start). Only that cleanup gets the
    higher limit; the code under test still runs under the default one."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        tmp_path_factory.getbasetemp()
    finally:
        sys.setrecursionlimit(limit)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """The same for the cleanup pytest runs when the session ends."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return (yield)
    finally:
        sys.setrecursionlimit(limit)


def pytest_unconfigure(config):
    """Say the session ended through pytest: scripts/test refuses a run that did not (a test
    that took the process down with os._exit, status 0, would otherwise pass half a suite)."""
    done = os.environ.get("AXISOR_TEST_DONE_FILE")
    if done:
        Path(done).write_text("done\n")

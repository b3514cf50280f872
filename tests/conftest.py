"""Shared fixtures: a config file, a repository, and a CLI runner (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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

    def cli(self, *args: str, passphrase: str | None = PASSPHRASE, env: dict | None = None,
            timeout: float = 120) -> CliResult:
        e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        if passphrase is not None:
            e["AXISOR_BACKUP_PASSPHRASE"] = passphrase
        e.update(env or {})
        p = subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(self.config), *args],
            cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        return CliResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    src = tmp_path / "src"
    src.mkdir()
    w = Workspace(tmp_path, src, tmp_path / "repo", tmp_path / "config.toml")
    w.write_config()
    return w

"""Helpers for tests/locations: several locations in one config, file-tree digests."""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def remote_toml(name: str, **fields: object) -> str:
    lines = ["[[storage.remote_storage]]", f"name = {json.dumps(name)}"]
    for key, value in fields.items():
        if value is None:
            continue
        lines.append(f"{key} = {json.dumps(str(value) if isinstance(value, Path) else value)}")
    return "\n".join(lines)


@dataclass
class Sites:
    ws: Any  # tests/conftest.py Workspace
    state: Path
    remotes: dict[str, dict] = field(default_factory=dict)

    def add_local(self, name: str, path: Path) -> Path:
        self.remotes[name] = {"provider": "local", "path": path}
        self.write()
        return path

    def add(self, name: str, **fields: object) -> None:
        self.remotes[name] = fields
        self.write()

    def remove(self, name: str) -> None:
        del self.remotes[name]
        self.write()

    def write(self) -> None:
        extra = "\n".join(remote_toml(n, **f) for n, f in self.remotes.items())
        self.ws.write_config(extra)

    def cli(self, *args: str, env: dict | None = None, **kw):
        return self.ws.cli(*args, env={"AXISOR_BACKUP_STATE_DIR": str(self.state), **(env or {})}, **kw)

    def ok(self, *args: str, **kw):
        r = self.cli(*args, **kw)
        assert r.code == 0, (args, r.code, r.err)
        return r


def tree_digest(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` by relative path -> sha256, plus symlink targets."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fill(src: Path, seed: int = 1, big: int = 2_500_000) -> None:
    rnd = random.Random(seed)
    (src / "users" / "alice").mkdir(parents=True, exist_ok=True)
    (src / "users" / "alice" / "notes.txt").write_text("alice's notes\n" * 50)
    (src / "users" / "bob.json").write_text('{"bob": 1}\n')
    (src / "big.bin").write_bytes(rnd.randbytes(big))
    (src / "empty").write_bytes(b"")
    if not (src / "link").is_symlink():
        os.symlink("users/bob.json", src / "link")


def remote_fields(loc: Any) -> dict:
    """A RemoteStorageConfig (tests/servers.remote_config) as the keys of its TOML table."""
    from dataclasses import fields

    out = {}
    for f in fields(loc):
        value = getattr(loc, f.name)
        if f.name == "name" or value is None or value == f.default:
            continue
        out[f.name] = value
    return out

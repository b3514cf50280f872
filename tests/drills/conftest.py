"""A small live platform for drills: a real PostgreSQL cluster with a shop database, file
sources, a repository holding one backup of all of it, and helpers that prove a drill left
nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PASSPHRASE, Workspace
from postgres.conftest import pg_bin, pg_cluster  # noqa: F401  (fixtures)

SHOP_SQL = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 40) g;
CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2),
                     placed timestamptz DEFAULT '2026-01-01 00:00+00');
INSERT INTO orders SELECT g, 1 + g % 40, g * 1.25 FROM generate_series(1, 900) g;
"""


def write_files(root: Path) -> tuple[Path, Path]:
    app = root / "app-data"
    (app / "uploads").mkdir(parents=True)
    (app / "uploads" / "report.csv").write_text("id,total\n1,1.25\n")
    (app / "models.bin").write_bytes(os.urandom(200_000))
    conf = root / "etc-axisor"
    conf.mkdir()
    (conf / "app.env").write_text("APP_MODE=production\n")
    return app, conf


@dataclass
class Platform:
    ws: Workspace
    cluster: object
    app: Path
    conf: Path
    scratch: Path  # drills.work_dir

    def config(self, drills: str = "", extra: str = "", db: bool = True, repo: Path | None = None) -> Path:
        lines = [
            "[application]",
            f'user_data = ["{self.app}"]',
            "[configuration]",
            f'environment_vars = ["{self.conf}"]',
        ]
        if db:
            lines += [
                "[database]",
                "enabled = true",
                f'url = "{self.cluster.url("shop")}"',
                f'pg_bin_dir = "{self.cluster.bin}"',
            ]
        # A job store of its own: never a daemon or job history of anything else on this machine.
        lines += ["[engine]", f'state_dir = "{self.ws.root / "state"}"']
        lines += ["[storage]", f'local_path = "{repo or self.ws.repo}"', extra]
        lines += ["[drills]", f'work_dir = "{self.scratch}"', drills]
        self.ws.config.write_text("\n".join(lines) + "\n")
        return self.ws.config

    def left_behind(self) -> list[str]:
        """Whatever a drill could leave: scratch folders, server processes, scratch databases."""
        found = [str(p) for p in self.scratch.iterdir()] if self.scratch.exists() else []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(self.scratch) in cmd:
                found.append(f"process {pid}: {cmd}")
        dbs = self.cluster.psql("SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'axisor_drill_%'")
        if dbs:
            found.append(f"databases {dbs}")
        return found


@pytest.fixture(scope="package")  # one platform for all drill tests; each puts back what it changes
def platform(tmp_path_factory, pg_cluster):  # noqa: F811
    root = tmp_path_factory.mktemp("drill")
    os.chmod(root, 0o755)
    c = pg_cluster()
    c.createdb("shop")
    c.psql(SHOP_SQL, "shop")
    app, conf = write_files(root)
    ws = Workspace(root, app, root / "repo", root / "config.toml")
    # Outside pytest's 0700 tmp tree: the throwaway cluster runs as the server's OS user.
    scratch = Path(tempfile.mkdtemp(dir="/tmp", prefix="axdt."))
    os.chmod(scratch, 0o755)
    p = Platform(ws, c, app, conf, scratch)
    p.config()
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json", timeout=300)
    assert r.code == 0, r.out + r.err
    yield p
    shutil.rmtree(scratch, ignore_errors=True)


def run_json(r) -> dict:
    try:
        return json.loads(r.out)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (exit {r.code}): {r.out}\n{r.err}") from None


def copy_repo(p: Platform, name: str) -> Path:
    dest = p.ws.root / name
    shutil.copytree(p.ws.repo, dest)
    return dest


__all__ = ["PASSPHRASE", "Platform", "copy_repo", "run_json"]

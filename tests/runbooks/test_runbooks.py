"""The runbooks of docs/OPERATIONS.md, run as written: each test reads the ```sh blocks of
its section and runs every line (axisor-backup through the real CLI, psql/pg_dump/pg_restore
and install as programs), mapping only the paths of a production host onto temporary ones,
then checks the outcome against the state before the disaster by content checksums."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import PASSPHRASE, ROOT

OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
SHOP_SQL = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 30) g;
CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2));
INSERT INTO orders SELECT g, 1 + g % 30, g * 1.25 FROM generate_series(1, 600) g;
"""


def blocks(title: str) -> list[list[str]]:
    text = OPERATIONS.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else None]
    return [[ln for ln in b.strip().splitlines() if ln.strip()] for b in re.findall(r"```sh\n(.*?)```", section, re.S)]


@dataclass
class Host:
    """Where the runbook's commands run: the config, the server, the path mapping."""

    root: Path
    cluster: object
    config: Path
    passphrase: str | None = PASSPHRASE  # None: the config's passphrase_file
    paths: dict[str, str] = field(default_factory=dict)  # runbook path -> test path (prefixes)
    values: dict[str, str] = field(default_factory=dict)  # placeholders (RESTORE_ID, ...)

    def _map(self, token: str) -> str:
        if token in self.values:
            return self.values[token]
        for prod, test in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            if token == prod or token.startswith(prod.rstrip("/") + "/"):
                return test + token[len(prod) :]
        return token

    def run(self, line: str, *, expect: int = 0) -> subprocess.CompletedProcess[str]:
        argv = [self._map(t) for t in shlex.split(line)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env.update(PGHOST=self.cluster.host, PGPORT=str(self.cluster.port), PGUSER="postgres")
        if argv[0] == "axisor-backup":
            rest = argv[1:]
            if "--config" not in rest:
                rest = ["--config", str(self.config), *rest]
            argv = [sys.executable, "-m", "app.cli", *rest]
            if self.passphrase is not None:
                env["AXISOR_BACKUP_PASSPHRASE"] = self.passphrase
        elif argv[0] in ("psql", "pg_dump", "pg_restore"):
            argv = [str(self.cluster.bin / argv[0]), *argv[1:]]
        p = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
        )
        assert p.returncode == expect, f"{line}\n-> exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def run_block(self, lines: list[str]) -> list[subprocess.CompletedProcess[str]]:
        return [self.run(line) for line in lines]


def figures(cluster, db: str = "axisor") -> dict[str, str]:
    """Per table: row count and a checksum of its rows in key order."""
    out = {}
    for table in ("customers", "orders"):
        out[table] = cluster.psql(
            f"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM {table} t", db
        )
    return out


@pytest.fixture(scope="module")
def server(pg_cluster):  # noqa: F811
    return pg_cluster()


@pytest.fixture
def shop(server):
    server.psql("DROP DATABASE IF EXISTS axisor WITH (FORCE)")
    server.psql("DROP DATABASE IF EXISTS axisor_repair WITH (FORCE)")
    server.createdb("axisor")
    server.psql(SHOP_SQL, "axisor")
    return server


def _config(root: Path, cluster, *, files: dict[str, Path], repo: Path, extra: str = "") -> Path:
    lines = ["[application]"]
    lines += [f'{k} = ["{v}"]' for k, v in files.items() if k == "user_data"]
    lines += ["[configuration]"]
    lines += [f'{k} = ["{v}"]' for k, v in files.items() if k == "environment_vars"]
    lines += [
        "[database]",
        "enabled = true",
        f'url = "{cluster.url("axisor")}"',
        f'pg_bin_dir = "{cluster.bin}"',
        # A job store of its own: never a daemon or job history of anything else on this machine.
        "[engine]",
        f'state_dir = "{root / "state"}"',
        "[storage]",
        f'local_path = "{repo}"',
        extra,
    ]
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _host(tmp_path: Path, cluster, **kw) -> Host:
    app = tmp_path / "srv" / "axisor-data"
    (app / "uploads").mkdir(parents=True)
    (app / "uploads" / "a.csv").write_text("id\n1\n")
    (app / "blob.bin").write_bytes(os.urandom(150_000))
    env_dir = tmp_path / "etc-app"
    env_dir.mkdir()
    (env_dir / "app.env").write_text("MODE=production\n")
    config = _config(
        tmp_path, cluster, files={"user_data": app, "environment_vars": env_dir}, repo=tmp_path / "repo", **kw
    )
    h = Host(tmp_path, cluster, config)
    assert h.run("axisor-backup init").returncode == 0
    h.run("axisor-backup backup")
    return h


def test_lost_database(tmp_path, shop) -> None:
    h = _host(tmp_path, shop)
    before = figures(shop)
    shop.psql("DROP DATABASE axisor WITH (FORCE)")
    first, second = blocks("Lost database")
    out = h.run_block(first)
    assert "row counts: 2 of 2 tables match" in out[1].stdout
    assert "row checksums: 2 of 2 tables match" in out[1].stdout
    assert out[2].stdout.split()[2] == "600"
    assert figures(shop) == before
    # Damaged but present: --force over it, then roll that back to the damaged state.
    shop.psql("DELETE FROM orders WHERE id > 500", "axisor")
    damaged = figures(shop)
    restored = h.run(second[0])
    h.values["RESTORE_ID"] = re.search(r"rollback (\w+)\)", restored.stdout).group(1)
    assert figures(shop) == before
    h.run(second[1])
    assert figures(shop) == damaged


def test_corrupted_table(tmp_path, shop, scratch) -> None:
    h = _host(tmp_path, shop)
    before = figures(shop)
    h.paths["/tmp/orders.dump"] = str(tmp_path / "orders.dump")
    with open(h.config, "a") as f:
        f.write(f'[drills]\nwork_dir = "{scratch}"\n')
    shop.psql("UPDATE orders SET total = 0 WHERE id % 7 = 0", "axisor")
    assert figures(shop)["orders"] != before["orders"]
    (block,) = blocks("Corrupted table")
    out = h.run_block(block)
    drill = out[0].stdout
    assert "corrupted-table — PASSED" in drill and "| public.orders checksum | checksum | pass |" in drill
    assert "differs from the snapshot" in drill
    assert out[2].stdout.split()[2] == "600"
    assert figures(shop) == before  # the table is the backup's again
    damaged = shop.psql("SELECT count(*) FROM orders_damaged WHERE total = 0", "axisor")
    assert damaged == str(600 // 7)  # the bad rows kept aside for comparison
    assert shop.psql("SELECT count(*) FROM pg_database WHERE datname = 'axisor_repair'") == "0"
    assert list(scratch.iterdir()) == []  # the drill removed its throwaway cluster


@pytest.fixture
def scratch():
    # The drill's throwaway cluster runs as the server's OS user: outside pytest's 0700 tree.
    import tempfile

    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="axrb."))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_lost_host(tmp_path, shop) -> None:
    offsite = tmp_path / "offsite"
    safe = tmp_path / "safe-storage"
    safe.mkdir()
    pf_prod = "/etc/axisor/passphrase"
    extra = (
        f'passphrase_file = "{pf_prod}"\n'
        f'[[storage.remote_storage]]\nprovider = "local"\nname = "offsite"\npath = "{offsite}"\n'
    )
    etc = tmp_path / "new-host" / "etc-axisor"
    repo_path = tmp_path / "new-host" / "var-backups-axisor"
    h = _host(tmp_path, shop, extra=extra.replace(pf_prod, str(etc / "passphrase")))
    # The old host's config, as kept in safe storage, and the passphrase beside it.
    text = h.config.read_text().replace(str(tmp_path / "repo"), str(repo_path))
    (safe / "config.toml").write_text(text)
    (safe / "passphrase").write_text(PASSPHRASE + "\n")
    app, env_dir = tmp_path / "srv" / "axisor-data", tmp_path / "etc-app"
    app_sums = {p.relative_to(app): p.read_bytes() for p in app.rglob("*") if p.is_file()}
    env_sums = {p.relative_to(env_dir): p.read_bytes() for p in env_dir.rglob("*") if p.is_file()}
    db_before = figures(shop)
    # The host is lost: its data, its repository, its database.
    shutil.rmtree(app)
    shutil.rmtree(env_dir)
    shutil.rmtree(tmp_path / "repo")
    shop.psql("DROP DATABASE axisor WITH (FORCE)")
    new = Host(
        tmp_path,
        shop,
        etc / "config.toml",
        passphrase=None,
        paths={
            "/etc/axisor": str(etc),
            "/var/backups/axisor": str(repo_path),
            "config.toml": str(safe / "config.toml"),
            "passphrase": str(safe / "passphrase"),
        },
    )
    (block,) = blocks("Lost host")
    out = new.run_block(block)
    assert "ok (3 sources" in out[3].stdout  # the database counts as a source
    locations = out[4].stdout
    assert "offsite" in locations and "empty" in locations
    assert {p.relative_to(app): p.read_bytes() for p in app.rglob("*") if p.is_file()} == app_sums
    assert {p.relative_to(env_dir): p.read_bytes() for p in env_dir.rglob("*") if p.is_file()} == env_sums
    assert figures(shop) == db_before
    assert oct((etc / "passphrase").stat().st_mode & 0o777) == "0o600"


def test_compromised_passphrase(tmp_path, shop) -> None:
    etc = tmp_path / "etc-axisor"
    etc.mkdir()
    (etc / "passphrase").write_text(PASSPHRASE + "\n")
    os.chmod(etc / "passphrase", 0o600)
    offsite = tmp_path / "offsite"
    h = _host(
        tmp_path,
        shop,
        extra=f'passphrase_file = "{etc / "passphrase"}"\n[[storage.remote_storage]]\n'
        f'provider = "local"\nname = "offsite"\npath = "{offsite}"\n',
    )
    h.passphrase = None
    new_pf = tmp_path / "root" / "new-passphrase"
    new_pf.parent.mkdir()
    new_pf.write_text("a brand new passphrase\n")
    os.chmod(new_pf, 0o600)
    h.paths.update({"/root/new-passphrase": str(new_pf), "/etc/axisor": str(etc)})
    (block,) = blocks("Compromised passphrase")
    keys = json.loads(h.run("axisor-backup key list --json").stdout)
    h.values["OLD_KEY_ID"] = next(k["id"] for k in keys if k["current"])[:12]
    out = h.run_block(block)
    assert out[0].stdout.startswith("*")
    assert len(out[2].stdout.strip().splitlines()) == 2  # both passphrases open it now
    after = json.loads(h.run("axisor-backup key list --json").stdout)
    assert [k["id"][:12] for k in after] != [h.values["OLD_KEY_ID"]] and len(after) == 1
    old = Host(tmp_path, shop, tmp_path / "old-config.toml", passphrase=PASSPHRASE)
    old.config.write_text(h.config.read_text().replace(f'passphrase_file = "{etc / "passphrase"}"', ""))
    old.run("axisor-backup snapshots", expect=4)  # the leaked passphrase opens nothing now
    off = Host(tmp_path, shop, tmp_path / "offsite-config.toml", passphrase=PASSPHRASE)
    off.config.write_text(f'[storage]\nlocal_path = "{offsite}"\n')
    off.run("axisor-backup snapshots", expect=4)  # nor at the secondary location
    off.passphrase = "a brand new passphrase"
    assert off.run("axisor-backup snapshots --json").stdout.count('"source"') >= 3
    restored = tmp_path / "restored"
    h.run(f"axisor-backup restore latest:configuration/environment_vars --target {restored}")
    assert (restored / str(tmp_path / "etc-app" / "app.env").lstrip("/")).read_text() == "MODE=production\n"

"""The self-contained demo: sample platform data, a local repository, backups, the catalog,
and — on a terminal — the console.

Everything lives under ./demo-run (or the folder given), so it is safe to run anywhere
and to delete afterwards. When stdin and stdout are a terminal the demo also starts a
throwaway PostgreSQL (when its programs are installed, saying so when they are not),
enables a schedule, and ends in the console with one backup running; otherwise (tests,
CI) it stops after the command-line steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from pathlib import Path

from app import cli


def _certificate(path: Path) -> None:
    """A real self-signed certificate and key, as a platform's TLS folder holds."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "axisor.example")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    (path / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(path / "server.key", 0o600)


def make_sample_platform(root: Path) -> dict[str, Path]:
    rnd = random.Random(2026)
    dirs = {name: root / "platform" / name for name in
            ("users", "automations", "simulations", "logs", "etc", "tls", "settings")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        u = dirs["users"] / f"user-{i:03}"
        u.mkdir(exist_ok=True)
        (u / "profile.json").write_text(json.dumps({"id": i, "name": f"user{i}", "plan": rnd.choice(["free", "pro"])}))
        (u / "avatar.png").write_bytes(rnd.randbytes(rnd.randint(2_000, 20_000)))
    for i in range(15):
        (dirs["automations"] / f"flow-{i:02}.yaml").write_text(
            f"name: flow-{i}\ntrigger: cron('*/{i + 5} * * * *')\nsteps:\n  - run: sync\n  - notify: ops\n")
    for i in range(4):
        rows = "".join(f"{t},{rnd.random():.6f},{rnd.random():.6f}\n" for t in range(20_000))
        (dirs["simulations"] / f"run-{i}.csv").write_text("t,x,y\n" + rows)
    (dirs["simulations"] / "model.bin").write_bytes(rnd.randbytes(3_000_000))
    for day in range(7):
        lines = "".join(f"2026-11-{19 + day:02}T{h:02}:00:00Z INFO request id={rnd.randrange(10**9)} status=200\n"
                        for h in range(24) for _ in range(200))
        (dirs["logs"] / f"app-2026-11-{19 + day:02}.log").write_text(lines)
    env = dirs["etc"] / ".env"
    env.write_text("DATABASE_URL=postgresql://axisor@localhost/axisor\nSECRET_KEY=demo-not-a-secret\n")
    os.chmod(env, 0o600)
    _certificate(dirs["tls"])
    keys = dirs["settings"] / "api-keys.json"
    keys.write_text(json.dumps({"stripe": "sk_demo_0000", "maps": "demo-maps-key"}, indent=1))
    os.chmod(keys, 0o600)
    (dirs["settings"] / "system.toml").write_text('[features]\nsimulations = true\nmax_users = 500\n')
    os.symlink("app-2026-11-25.log", dirs["logs"] / "current.log")
    return dirs


def write_config(root: Path, dirs: dict[str, Path]) -> Path:
    passfile = root / "passphrase"
    passfile.write_text("demo passphrase, not for production\n")
    os.chmod(passfile, 0o600)
    config = root / "config.toml"
    q = lambda p: json.dumps([str(p)])  # noqa: E731
    config.write_text(f"""# Written by the Axisor Backup demo.
[application]
user_data = {q(dirs['users'])}
automation_configs = {q(dirs['automations'])}
simulation_data = {q(dirs['simulations'])}
log_files = {q(dirs['logs'])}

[configuration]
environment_vars = {q(dirs['etc'] / '.env')}
ssl_certificates = {q(dirs['tls'])}
api_keys = {q(dirs['settings'] / 'api-keys.json')}
system_settings = {q(dirs['settings'] / 'system.toml')}

[storage]
local_path = "{root / 'repository'}"
passphrase_file = "{passfile}"
""")
    return config


@dataclass(frozen=True, slots=True)
class DemoDatabase:
    bin_dir: Path
    data: Path
    port: int


def _as_server_user(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; the Debian packages create the postgres user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_database(root: Path) -> DemoDatabase | None:
    """A throwaway PostgreSQL cluster with a small platform schema; None when the server
    programs are not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[4]))
    if not found:
        return None
    bin_dir = found[-1].parent
    # Short path: the server's socket path must stay under ~100 bytes.
    home = Path(tempfile.mkdtemp(prefix="axisor-demo-pg.", dir="/tmp"))
    os.chmod(home, 0o755)
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(home, pw.pw_uid, pw.pw_gid)
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(home / "data"), "-U", "postgres",
                                    "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                   check=True, capture_output=True, timeout=120)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(home / "data"), "-l",
                                    str(home / "server.log"), "-w", "-t", "60", "-o",
                                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True, timeout=120)
    psql = [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
            "-U", "postgres"]
    subprocess.run([*psql, "-d", "postgres", "-c", "CREATE DATABASE axisor"], check=True, capture_output=True)
    subprocess.run([*psql, "-d", "axisor", "-c", """
        CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL);
        INSERT INTO users SELECT g, 'user' || g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END
          FROM generate_series(1, 500) g;
        CREATE TABLE automations (id int PRIMARY KEY, owner int REFERENCES users, spec jsonb);
        INSERT INTO automations SELECT g, 1 + g % 500, jsonb_build_object('cron', '*/5 * * * *', 'n', g)
          FROM generate_series(1, 2000) g;
        CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, kind text, payload text);
        INSERT INTO events (at, kind, payload) SELECT now() - g * interval '1 minute', 'request', md5(g::text)
          FROM generate_series(1, 20000) g;"""], check=True, capture_output=True)
    return DemoDatabase(bin_dir, home, port)


def stop_database(db: DemoDatabase) -> None:
    subprocess.run(_as_server_user([str(db.bin_dir / "pg_ctl"), "-D", str(db.data / "data"), "-m", "fast",
                                    "-w", "stop"]), capture_output=True, timeout=60)
    shutil.rmtree(db.data, ignore_errors=True)


def backdate_newest_set(config: Path, days: float) -> None:
    """Demo data only: move the newest backup set ``days`` into the past, so the catalog,
    the dashboard's ages and the retention plan have a few days of history to show. Each
    manifest is written again with the earlier time (a new id) and the old one removed;
    the packs are shared, so nothing else changes."""
    import asyncio
    from dataclasses import replace
    from datetime import datetime, timedelta

    from core.config import load_config, resolve_passphrase
    from core.repository.format import SNAPSHOTS
    from core.service import BackupService

    async def go() -> None:
        cfg = load_config(config)
        svc = BackupService(cfg, lambda confirm: resolve_passphrase(cfg.storage, confirm=confirm))
        try:
            repo = await svc.repository(load_index=False)
            snaps, _ = await repo.list_snapshots()
            newest = snaps[-1].backup_set
            for snap in (s for s in snaps if s.backup_set == newest):
                earlier = datetime.fromisoformat(snap.time) - timedelta(days=days)
                await repo.save_snapshot(replace(snap, time=earlier.isoformat(timespec="microseconds"), id=""))
                await repo.backend.delete(f"{SNAPSHOTS}/{snap.id}")
        finally:
            await svc.close()

    asyncio.run(go())


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__)
    p.add_argument("folder", nargs="?", type=Path, default=Path("demo-run"))
    args = p.parse_args(argv)
    root = args.folder.resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.environ.pop("AXISOR_BACKUP_PASSPHRASE", None)

    step(f"sample platform data under {root / 'platform'}")
    dirs = make_sample_platform(root)
    config = write_config(root, dirs)
    base = ["--config", str(config)]

    def run(*a: str) -> None:
        code = cli.main([*base, *a])
        if code not in (0, 7):
            raise SystemExit(f"demo step `axisor-backup {' '.join(a)}` failed with exit {code}")

    step("axisor-backup config check")
    run("config", "check")
    step("axisor-backup init")
    run("init")
    step("axisor-backup backup   (first run: everything is new; dated three days back for the demo)")
    run("backup")
    backdate_newest_set(config, 3)

    step("changing a few files: a new user, an edited automation, today's log grows")
    new_user = dirs["users"] / "user-new"
    new_user.mkdir()
    (new_user / "profile.json").write_text('{"id": 999, "name": "newcomer"}')
    flow = dirs["automations"] / "flow-03.yaml"
    flow.write_text(flow.read_text() + "  - archive: true\n")
    with open(dirs["logs"] / "app-2026-11-25.log", "a") as f:
        f.write("2026-11-25T23:59:59Z WARN demo line appended\n" * 500)

    step("axisor-backup backup   (incremental: only what changed is read; dated yesterday for the demo)")
    run("backup")
    backdate_newest_set(config, 1)
    step("axisor-backup snapshots")
    run("snapshots")
    step("axisor-backup verify --full")
    run("verify", "--full")
    target = root / "restore-check"
    step(f"axisor-backup restore latest --target {target}")
    run("restore", "latest", "--target", str(target))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"\nDone. Try: .venv/bin/axisor-backup --config {config} ls latest:application/user_data")
        return 0
    return console_demo(root, config, run)


def console_demo(root: Path, config: Path, run) -> int:
    """On a terminal: a database and a schedule join the platform, then the console opens."""
    step("a throwaway PostgreSQL for the database source")
    db = None
    try:
        db = start_database(root)
        if db is None:
            print("no PostgreSQL server programs (/usr/lib/postgresql/*/bin): the demo goes on without a database; "
                  "install them with: apt-get install postgresql")
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"PostgreSQL did not start ({exc}); the demo goes on without a database")
    extra = f"""
[schedule]
enabled = true
cron_expression = "0 2 * * *"
timezone = "UTC"

[engine]
state_dir = "{root / 'state'}"
"""
    if db is not None:
        extra += f"""
[database]
enabled = true
host = "127.0.0.1"
port = {db.port}
user = "postgres"
dbname = "axisor"
"""
        print(f"PostgreSQL {db.bin_dir.parent.name} on 127.0.0.1:{db.port}, database axisor (users, automations, "
              "events)")
    with open(config, "a") as fh:
        fh.write(extra)
    try:
        if db is not None:
            step("axisor-backup backup --source database")
            run("backup", "--source", "database")
        step("opening the console: one full backup is running; press ? for every key, ctrl+q to leave")
        from app.console import ConsoleApp
        from core.config import load_config, resolve_passphrase

        cfg = load_config(config)
        secret = resolve_passphrase(cfg.storage)
        app = ConsoleApp(cfg, lambda _confirm: secret, config_path=config, prefer_daemon=False,
                         start_job=("backup", {"type": "full"}))

        async def console() -> None:
            try:
                await app.run_async()
            finally:
                await app.shutdown()

        asyncio.run(console())
    finally:
        if db is not None:
            stop_database(db)
    print(f"\nThe demo is in {root}. Open the console again: .venv/bin/axisor-backup --config {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    (path / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(path / "server.key", 0o600)


def make_sample_platform(root: Path) -> dict[str, Path]:
    rnd = random.Random(2026)
    dirs = {
        name: root / "platform" / name
        for name in ("users", "automations", "simulations", "logs", "etc", "tls", "settings")
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        u = dirs["users"] / f"user-{i:03}"
        u.mkdir(exist_ok=True)
        (u / "profile.json").write_text(json.dumps({"id": i, "name": f"user{i}", "plan": rnd.choice(["free", "pro"])}))
        (u / "avatar.png").write_bytes(rnd.randbytes(rnd.randint(2_000, 20_000)))
    for i in range(15):
        (dirs["automations"] / f"flow-{i:02}.yaml").write_text(
            f"name: flow-{i}\ntrigger: cron('*/{i + 5} * * * *')\nsteps:\n  - run: sync\n  - notify: ops\n"
        )
    for i in range(4):
        rows = "".join(f"{t},{rnd.random():.6f},{rnd.random():.6f}\n" for t in range(20_000))
        (dirs["simulations"] / f"run-{i}.csv").write_text("t,x,y\n" + rows)
    (dirs["simulations"] / "model.bin").write_bytes(rnd.randbytes(3_000_000))
    for day in range(7):
        lines = "".join(
            f"2026-11-{19 + day:02}T{h:02}:00:00Z INFO request id={rnd.randrange(10**9)} status=200\n"
            for h in range(24)
            for _ in range(200)
        )
        (dirs["logs"] / f"app-2026-11-{19 + day:02}.log").write_text(lines)
    env = dirs["etc"] / ".env"
    env.write_text("DATABASE_URL=postgresql://axisor@localhost/axisor\nSECRET_KEY=demo-not-a-secret\n")
    os.chmod(env, 0o600)
    _certificate(dirs["tls"])
    keys = dirs["settings"] / "api-keys.json"
    keys.write_text(json.dumps({"stripe": "sk_demo_0000", "maps": "demo-maps-key"}, indent=1))
    os.chmod(keys, 0o600)
    (dirs["settings"] / "system.toml").write_text("[features]\nsimulations = true\nmax_users = 500\n")
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
user_data = {q(dirs["users"])}
automation_configs = {q(dirs["automations"])}
simulation_data = {q(dirs["simulations"])}
log_files = {q(dirs["logs"])}

[configuration]
environment_vars = {q(dirs["etc"] / ".env")}
ssl_certificates = {q(dirs["tls"])}
api_keys = {q(dirs["settings"] / "api-keys.json")}
system_settings = {q(dirs["settings"] / "system.toml")}

[storage]
local_path = "{root / "repository"}"
passphrase_file = "{passfile}"

# The demo's job history (what `status` and the dashboard read) stays in the demo's
# folder, not in your user state folder.
[engine]
state_dir = "{root / "state"}"
""")
    return config


WATCH_FILE = 256 * 1024 * 1024  # bytes of text per file of the watchable backup


def make_watch_data(folder: Path, size: int) -> list[Path]:
    """New simulation output for the console's backup to chew on: ``size`` bytes of hex text
    in files of 256 MiB, every byte new (nothing to deduplicate; it compresses about 2:1, as
    real simulation output does). AES-CTR makes it at memory speed: the demo must reach the
    console quickly however much it then backs up."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    stream = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16))).encryptor()
    zeros = bytes(8 * 1024 * 1024)
    made = []
    # Each file is written beside the source and moved in whole: a scheduled backup meanwhile
    # sees complete files or none, never one growing.
    partial = folder.parent.parent / "watch-partial"
    partial.mkdir(exist_ok=True)
    for i in range((size + WATCH_FILE - 1) // WATCH_FILE):
        path = folder / f"ensemble-{i:02}.dat"
        with open(partial / path.name, "wb") as fh:
            left = min(WATCH_FILE, size - i * WATCH_FILE)
            while left > 0:
                chunk = stream.update(zeros[: left // 2 + 1]).hex().encode()[:left]
                fh.write(chunk)
                left -= len(chunk)
        os.rename(partial / path.name, path)
        made.append(path)
    return made


def watch_size(root: Path, wanted: int) -> int:
    """``wanted``, or less when the disk has not room for it three times over (the data, its
    copy in the repository, and margin)."""
    free = shutil.disk_usage(root).free
    return max(0, min(wanted, free // 3 // WATCH_FILE * WATCH_FILE))


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
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(home / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(home / "data"),
                "-l",
                str(home / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port} -k {home} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    psql = [
        str(bin_dir / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
    ]
    subprocess.run([*psql, "-d", "postgres", "-c", "CREATE DATABASE axisor"], check=True, capture_output=True)
    subprocess.run(
        [
            *psql,
            "-d",
            "axisor",
            "-c",
            """
        CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL);
        INSERT INTO users SELECT g, 'user' || g, CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END
          FROM generate_series(1, 500) g;
        CREATE TABLE automations (id int PRIMARY KEY, owner int REFERENCES users, spec jsonb);
        INSERT INTO automations SELECT g, 1 + g % 500, jsonb_build_object('cron', '*/5 * * * *', 'n', g)
          FROM generate_series(1, 2000) g;
        CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, kind text, payload text);
        INSERT INTO events (at, kind, payload) SELECT now() - g * interval '1 minute', 'request', md5(g::text)
          FROM generate_series(1, 20000) g;""",
        ],
        check=True,
        capture_output=True,
    )
    return DemoDatabase(bin_dir, home, port)


def stop_database(db: DemoDatabase) -> None:
    subprocess.run(
        _as_server_user([str(db.bin_dir / "pg_ctl"), "-D", str(db.data / "data"), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        timeout=60,
    )
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
    from core.repository.rollback import bury
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
                new_id = await repo.save_snapshot(replace(snap, time=earlier.isoformat(timespec="microseconds"), id=""))
                # A rewrite explains itself, as repair's do: else the next backup would rightly
                # stop as a rollback (core/repository/rollback.py).
                await bury(repo, snap.id, "repair", new_id)
                await repo.backend.delete(f"{SNAPSHOTS}/{snap.id}")
        finally:
            await svc.close()

    asyncio.run(go())


_T0 = time.monotonic()


def step(title: str) -> None:
    # Each step with the seconds since the demo started: where the time to the console goes.
    print(f"\n== [{time.monotonic() - _T0:5.1f}s] {title}", flush=True)


class Timing:
    """``--timing FILE``: one JSON line per milestone, with wall-clock times, for
    bench/demo_time.py (which started the clock before scripts/bootstrap)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def mark(self, what: str, **extra: object) -> None:
        if self.path is not None:
            import resource

            # CPU seconds so far, this process and the programs it waited for (initdb, pg_ctl,
            # pg_dump...): on a busy host the wall clock says more about the neighbours.
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = time.process_time() + kids.ru_utime + kids.ru_stime
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"event": what, "at": time.time(), "cpu": round(cpu, 2), **extra}) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__)
    p.add_argument("folder", nargs="?", type=Path, default=Path("demo-run"))
    p.add_argument(
        "--watch-mib",
        type=int,
        default=3584,
        metavar="MiB",
        help="size of the new data the console's backup reads, so there is something to watch "
        "(default 3584: about 20 s of backup on a quiet 2-vCPU host; less when the disk is short; 0: none)",
    )
    p.add_argument("--timing", type=Path, metavar="FILE", help="append milestones as JSON lines (bench/demo_time.py)")
    p.add_argument(
        "--quit-after-backup", action="store_true", help="leave the console when its backup ends (bench/demo_time.py)"
    )
    args = p.parse_args(argv)
    timing = Timing(args.timing)
    timing.mark("demo started")
    root = args.folder.resolve()
    if root.exists():
        # Moved aside and deleted by a background process: gigabytes of the last demo's data
        # must not stand between you and this one.
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        step(f"removing the previous demo in {root} (in the background)")
        root.rename(old)
        subprocess.Popen(
            ["rm", "-rf", "--", str(old)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
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
    return console_demo(
        root, config, run, dirs, timing, watch=args.watch_mib * 1024 * 1024, quit_after_backup=args.quit_after_backup
    )


def start_daemon(root: Path, config: Path) -> subprocess.Popen:
    """``axisor-backup daemon`` in the background (its log: daemon.log), once its socket
    answers: the schedule really runs, and `status` and the dashboard see a daemon."""
    from core.config import load_config
    from core.jobs.client import DaemonClient, socket_path

    log = open(root / "daemon.log", "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--config", str(config), "daemon"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    sock = socket_path(load_config(config))

    async def answers() -> bool:
        client = await DaemonClient.try_connect(sock)
        if client is None:
            return False
        await client.close()
        return True

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited {proc.returncode}; its log: {root / 'daemon.log'}")
        if asyncio.run(answers()):
            return proc
        time.sleep(0.1)
    stop_daemon(proc)
    raise RuntimeError(f"the daemon did not answer within 30 s; its log: {root / 'daemon.log'}")


def stop_daemon(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # running jobs get [engine] shutdown_grace_seconds
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def console_demo(
    root: Path, config: Path, run, dirs: dict[str, Path], timing: Timing, *, watch: int, quit_after_backup: bool
) -> int:
    """On a terminal: a database, new data to watch being backed up, a schedule and its
    daemon join the platform, then the console opens with that backup running."""
    # The data to watch is written by another process meanwhile: PostgreSQL's start and the
    # database backup wait on other programs, so the two overlap instead of adding up.
    size = watch_size(root, watch)
    maker = None
    if size:
        step(
            f"new simulation output to back up while you watch: {size // 2**20} MiB into {dirs['simulations']} "
            "(written in the background)"
        )
        maker = multiprocessing.get_context("fork").Process(target=make_watch_data, args=(dirs["simulations"], size))
        maker.start()
    elif watch:
        print("not enough free disk for data to watch being backed up: the console's backup is a small one")
    step("a throwaway PostgreSQL for the database source")
    db = None
    try:
        db = start_database(root)
        if db is None:
            print(
                "no PostgreSQL server programs (/usr/lib/postgresql/*/bin): the demo goes on without a database; "
                "install them with: apt-get install postgresql"
            )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"PostgreSQL did not start ({exc}); the demo goes on without a database")
    # Every five minutes: the daemon's schedule runs while you watch (`status` and the
    # dashboard show its next run).
    extra = """
[schedule]
enabled = true
cron_expression = "*/5 * * * *"
timezone = "UTC"
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
        print(
            f"PostgreSQL {db.bin_dir.parent.name} on 127.0.0.1:{db.port}, database axisor (users, automations, events)"
        )
    with open(config, "a") as fh:
        fh.write(extra)
    daemon = None
    try:
        if db is not None:
            step("axisor-backup backup --source database")
            run("backup", "--source", "database")
        step(
            "axisor-backup daemon   (in the background: it runs the schedule and the console's jobs; "
            f"log: {root / 'daemon.log'})"
        )
        daemon = start_daemon(root, config)
        step(
            "opening the console: a full backup starts "
            + ("once the simulation output is written" if maker is not None and maker.is_alive() else "now")
            + "; press ? for every key, ctrl+q to leave"
        )
        timing.mark("console starting")
        from core.config import load_config, resolve_passphrase

        cfg = load_config(config)
        secret = resolve_passphrase(cfg.storage)
        app = _demo_console()(cfg, lambda _confirm: secret, config_path=config, prefer_daemon=True)
        app.timing, app.quit_after_backup, app.maker, app.data_size = timing, quit_after_backup, maker, size

        async def console() -> None:
            try:
                await app.run_async()
            finally:
                await app.shutdown()

        asyncio.run(console())
    finally:
        if maker is not None and maker.is_alive():
            maker.terminate()
            maker.join()
        if daemon is not None:
            print("stopping the demo's daemon", flush=True)
            stop_daemon(daemon)
        if db is not None:
            stop_database(db)
    print(
        f"\nThe demo is in {root}. Open the console again: .venv/bin/axisor-backup --config {config}\n"
        f"(start its daemon first for the schedule: .venv/bin/axisor-backup --config {config} daemon)"
    )
    return 0


def _demo_console():
    """The console, noting for bench/demo_time.py when its first frame is up and when the
    demo's backup ends (and, with --quit-after-backup, leaving then)."""
    from textual import work

    from app.console import ConsoleApp
    from core.jobs.api import JobState
    from screens.messages import JobChanged

    class DemoConsole(ConsoleApp):
        timing: Timing = Timing(None)
        quit_after_backup = False
        maker = None  # the process writing the data to watch
        data_size = 0  # bytes the maker writes (not `watch`: that would hide DOMNode.watch)
        _demo_job: str | None = None

        def on_ready(self) -> None:
            self.timing.mark("console first frame")

        def on_engine_ready(self, message) -> None:
            super().on_engine_ready(message)
            if self._demo_job is None:
                self._demo_job = ""  # asked for once, whatever reconnects
                self._demo_backup()

        @work(group="demo", exit_on_error=False)
        async def _demo_backup(self) -> None:
            """The demo's full backup, as soon as the data to watch is written."""
            if self.maker is not None and self.maker.is_alive():
                self.notify(
                    f"writing {self.data_size // 2**20} MiB of new simulation output; a full backup of "
                    "everything starts when it is written",
                    timeout=8,
                )
                while self.maker.is_alive():  # polled: leaving the console must not wait for it
                    await asyncio.sleep(0.2)
            if self.maker is not None and self.maker.exitcode != 0:
                self.notify(
                    f"writing the simulation output failed (exit {self.maker.exitcode}); the backup is a smaller one",
                    severity="warning",
                )
            await self.submit("backup", {"type": "full"})

        async def submit(self, kind: str, params: dict):
            job = await super().submit(kind, params)
            if job is not None and not self._demo_job:
                self._demo_job = job.id
            return job

        def _broadcast(self, message) -> None:
            super()._broadcast(message)
            job = getattr(message, "job", None)
            if isinstance(message, JobChanged) and job is not None and job.id == self._demo_job and job.state.finished:
                self.timing.mark(
                    "backup finished",
                    state=job.state.value,
                    started=job.started_at.timestamp() if job.started_at else None,
                    finished=job.finished_at.timestamp() if job.finished_at else None,
                    bytes=((job.result or {}).get("stats") or {}).get("bytes"),
                )
                if self.quit_after_backup:
                    self.exit(0 if job.state == JobState.COMPLETED else 1)

    return DemoConsole


if __name__ == "__main__":
    sys.exit(main())

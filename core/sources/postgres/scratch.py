"""Scratch targets a drill restores into, and their removal.

A *throwaway cluster* is a new PostgreSQL cluster in a private temporary folder: initdb
with trust authentication for local connections only, and a server that listens on a Unix
socket in that 0700 folder and on no TCP address, so nobody but its owner (and root) can
reach the restored data while the drill looks at it. Its port number is a free one, so
its socket never collides with a real server's. As root, initdb and the server run as the
server's OS user (initdb refuses root); the binaries are found like pg_dump
(core/sources/postgres/tools.py).

A *scratch database* is a new database on the configured server, named ``axisor_drill_<id>``
so it can never be a live one. Both are removed by ``Scratch.cleanup``, which the drill
calls in a ``finally`` and shields from cancellation, so a failed or cancelled drill leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from core.errors import DatabaseError, UsageError
from core.sources.postgres.child import run_as, server_env
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.tools import find_tool

SUPERUSER = "postgres"
SCRATCH_PREFIX = "axisor_drill_"
START_TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_user(configured: str | None) -> str | None:
    """Who runs a cluster the drill starts: as root the server's OS user, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    user = configured or "postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise UsageError(
            f"running as root, the drill's throwaway cluster must run as an OS user, and {user!r} "
            "does not exist: set drills.os_user"
        ) from None
    return user


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, env=server_env(), stdin=subprocess.DEVNULL, timeout=timeout, check=False
    )


def make_private_dir(work_dir: Path | None, prefix: str, os_user: str | None) -> Path:
    """A new 0700 folder (owned by ``os_user`` when given) for one drill's scratch files."""
    parent = Path(work_dir) if work_dir else Path(tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot create a scratch folder in {parent} (drills.work_dir): {exc.strerror}") from None
    if os_user:
        pw = pwd.getpwnam(os_user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


@dataclass
class ThrowawayCluster:
    root: Path  # the private folder: data/, the socket, the server log
    port: int
    bin_dir: Path
    os_user: str | None
    major: int
    running: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def target(self, dbname: str) -> PgTarget:
        return PgTarget({"host": str(self.root), "port": str(self.port), "user": SUPERUSER, "dbname": dbname})

    def describe(self) -> str:
        return f"throwaway PostgreSQL {self.major} cluster in {self.root} (socket only, port {self.port})"

    @classmethod
    async def start(cls, root: Path, *, pg_bin_dir: Path | None, os_user: str | None) -> ThrowawayCluster:
        """initdb and start a cluster in ``root`` (a private folder the caller removes)."""
        initdb = await asyncio.to_thread(find_tool, "initdb", pg_bin_dir)
        pg_ctl = await asyncio.to_thread(find_tool, "pg_ctl", initdb.path.parent)
        cluster = cls(root, free_port(), initdb.path.parent, os_user, initdb.major)
        p = await asyncio.to_thread(
            _run,
            run_as(
                [
                    str(initdb.path),
                    "-D",
                    str(cluster.data),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=reject",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                os_user,
            ),
            START_TIMEOUT,
        )
        if p.returncode != 0:
            raise DatabaseError(
                f"initdb for the drill's throwaway cluster failed in {root}: {(p.stderr or p.stdout).strip()[-500:]}"
            )
        # Settings go into the config file, not pg_ctl -o (which a shell would parse).
        with open(cluster.data / "postgresql.auto.conf", "a", encoding="utf-8") as f:
            f.write(
                "\n# axisor-backup drill: private, throwaway\n"
                f"port = {cluster.port}\n"
                f"unix_socket_directories = '{_quote(str(root))}'\n"
                "unix_socket_permissions = 0700\n"
                "listen_addresses = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        argv = [
            str(pg_ctl.path),
            "-D",
            str(cluster.data),
            "-l",
            str(cluster.log),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "start",
        ]
        p = await asyncio.to_thread(_run, run_as(argv, os_user), START_TIMEOUT + 30)
        if p.returncode != 0:
            log = cluster.log.read_text(errors="replace")[-800:] if cluster.log.exists() else ""
            raise DatabaseError(
                f"the drill's throwaway cluster did not start (pg_ctl exit {p.returncode}): {(log or p.stderr).strip()}"
            )
        cluster.running = True
        return cluster

    async def stop(self) -> None:
        await stop_cluster(self.data, self.bin_dir, self.os_user)
        self.running = False


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")


def postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def stop_cluster(data: Path, bin_dir: Path | None, os_user: str | None) -> None:
    """Stop the server of ``data`` (fast, then immediate, then signals) and wait until it is gone."""
    pid = postmaster_pid(data)
    if pid is None or not _alive(pid):
        return
    if bin_dir is not None:
        for mode in ("fast", "immediate"):
            await asyncio.to_thread(
                _run,
                run_as([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "30", "stop"], os_user),
                60,
            )
            if not _alive(pid):
                return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            await asyncio.sleep(0.1)
        if not _alive(pid):
            return


@dataclass
class Scratch:
    """Every scratch target one drill made, removed together by ``cleanup``."""

    drill_id: str
    work_dir: Path | None
    os_user: str | None
    dirs: list[Path] = field(default_factory=list)
    clusters: list[tuple[Path, Path | None, str | None]] = field(default_factory=list)  # data, bin, os user
    databases: list[PgTarget] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def new_dir(self, prefix: str, *, for_server: bool = False) -> Path:
        path = make_private_dir(self.work_dir, prefix, self.os_user if for_server else None)
        self.dirs.append(path)
        return path

    async def cluster(self, pg_bin_dir: Path | None) -> ThrowawayCluster:
        root = self.new_dir("axd.", for_server=True)
        # Registered before it starts: a start that fails half-way is still cleaned up.
        self.clusters.append((root / "data", None, self.os_user))
        c = await ThrowawayCluster.start(root, pg_bin_dir=pg_bin_dir, os_user=self.os_user)
        self.clusters[-1] = (c.data, c.bin_dir, self.os_user)
        return c

    def add_cluster(self, data: Path, bin_dir: Path | None) -> None:
        self.clusters.append((data, bin_dir, self.os_user))

    def scratch_database(self, server: PgTarget) -> PgTarget:
        name = f"{SCRATCH_PREFIX}{self.drill_id.lower().replace('-', '_')}"
        target = server.with_dbname(name)
        self.databases.append(target)
        return target

    async def cleanup(self) -> None:
        """Remove everything; problems are recorded (and reported), never raised."""
        for target in reversed(self.databases):
            try:
                await drop_database(target)
                self.removed.append(f"database {target.params['dbname']} on {target.describe().split(' on ', 1)[-1]}")
            except DatabaseError as exc:
                self.problems.append(str(exc))
        for data, bin_dir, os_user in reversed(self.clusters):
            pid = postmaster_pid(data)
            try:
                await stop_cluster(data, bin_dir, os_user)
            except (OSError, subprocess.SubprocessError) as exc:
                self.problems.append(f"stopping the cluster in {data} failed: {exc}")
            if pid is not None:
                if _alive(pid):
                    self.problems.append(f"the cluster in {data} (pid {pid}) is still running")
                else:
                    self.removed.append(f"cluster {data} (pid {pid}) stopped")
        for path in reversed(self.dirs):
            await asyncio.to_thread(shutil.rmtree, path, True)
            if os.path.lexists(path):
                self.problems.append(f"{path} could not be removed")
            else:
                self.removed.append(f"folder {path}")


async def drop_database(target: PgTarget) -> None:
    name = target.params["dbname"]
    if not name.startswith(SCRATCH_PREFIX):  # never anything but what a drill created
        raise DatabaseError(f"refusing to drop {name!r}: not a drill's scratch database")
    try:
        conn = await target.with_dbname("postgres").connect()
    except DatabaseError:
        conn = await target.with_dbname("template1").connect()
    try:
        try:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.errors.SyntaxError:  # before PostgreSQL 13
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DatabaseError(f"dropping the scratch database {name} failed: {target.scrub(str(exc).strip())}") from None
    finally:
        await conn.close()


async def database_exists(server: PgTarget, name: str) -> bool:
    conn = await server.with_dbname("postgres").connect()
    try:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return await cur.fetchone() is not None
    finally:
        await conn.close()


__all__ = [
    "SCRATCH_PREFIX",
    "Scratch",
    "ThrowawayCluster",
    "database_exists",
    "drop_database",
    "free_port",
    "make_private_dir",
    "postmaster_pid",
    "server_user",
    "stop_cluster",
]

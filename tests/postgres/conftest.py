"""Throwaway PostgreSQL clusters (docs: ../shared/reference/components.md section 1).

``pg_cluster()`` starts a fresh cluster on a free 127.0.0.1 port with ``-A trust``: initdb
and pg_ctl run as ``postgres`` when the tests run as root (initdb refuses root), clients
(psql, pg_dump, psycopg) run as the test user. The data lives in a short mkdtemp under /tmp
(pytest's tmp_path is 0700 and too long for a socket path). Each cluster is stopped and
removed at the end of the session. Tests never skip: scripts/bootstrap installs PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def installed_bins() -> dict[int, Path]:
    """Every PostgreSQL major version installed (Debian layout /usr/lib/postgresql/N/bin), or
    only $PGBIN when set: {major: bin directory}."""
    if os.environ.get("PGBIN"):
        out = subprocess.run(
            [os.path.join(os.environ["PGBIN"], "pg_ctl"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
        return {int(out.split()[-1].split(".")[0]): Path(os.environ["PGBIN"])}
    return {int(p.split("/")[4]): Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")}


# The versions the version-matrix fixtures (pg_each_cluster) run over, oldest first.
PG_MAJORS = sorted(installed_bins())


def _pg_bin() -> Path:
    found = installed_bins()
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: run scripts/bootstrap (apt-get install postgresql)")
    return found[max(found)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    dir: Path
    port: int
    bin: Path
    user: str = "postgres"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        p = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}")
        return p.stdout.strip()

    def createdb(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _new_dir() -> Path:
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="pg."))
    os.chmod(d, 0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def _start(bin_dir: Path, initdb_args: tuple[str, ...] = ()) -> Cluster:
    d = _new_dir()
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(d / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                *initdb_args,
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _launch(d, bin_dir)


def _start_standby(primary: Cluster) -> Cluster:
    """A streaming standby of ``primary``: ``pg_basebackup -R`` (standby.signal, primary_conninfo),
    then started on its own port."""
    d = _new_dir()
    subprocess.run(
        _as_server_user(
            [
                str(primary.bin / "pg_basebackup"),
                "-D",
                str(d / "data"),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-h",
                primary.host,
                "-p",
                str(primary.port),
                "-U",
                primary.user,
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _launch(d, primary.bin)


def _launch(d: Path, bin_dir: Path) -> Cluster:
    last = ""
    for _ in range(3):  # a free port can be taken between bind and start: retry
        port = _free_port()
        p = subprocess.run(
            _as_server_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(d / "data"),
                    "-l",
                    str(d / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if p.returncode == 0:
            return Cluster(d, port, bin_dir)
        last = p.stdout + p.stderr + (d / "server.log").read_text(errors="replace")
    shutil.rmtree(d, ignore_errors=True)
    raise RuntimeError(f"PostgreSQL did not start: {last}")


def _stop(c: Cluster) -> None:
    p = subprocess.run(
        _as_server_user([str(c.bin / "pg_ctl"), "-D", str(c.dir / "data"), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        timeout=60,
    )
    if p.returncode != 0:
        try:
            pid = int((c.dir / "data" / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            time.sleep(0.5)
        except (OSError, ValueError, IndexError):
            pass
    shutil.rmtree(c.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_bin() -> Path:
    return _pg_bin()


@pytest.fixture(scope="session")
def pg_cluster_of():
    """Factory: ``pg_cluster_of(bin_dir, *initdb_args)`` -> a new running Cluster of that
    installation, stopped and removed after the session."""
    yield from _session_factory(lambda bin_dir, *initdb_args: _start(bin_dir, initdb_args))


def _session_factory(start):
    """Yield a factory that starts clusters with ``start``; stop them all when resumed."""
    started: list[Cluster] = []

    def make(*args) -> Cluster:
        c = start(*args)
        started.append(c)
        return c

    yield make
    for c in started:
        _stop(c)


@pytest.fixture(scope="session")
def pg_standby():
    """Factory: ``pg_standby(primary)`` -> a running streaming standby of ``primary`` (a
    Cluster), stopped and removed after the session."""
    yield from _session_factory(_start_standby)


@pytest.fixture(scope="session")
def pg_cluster(pg_bin: Path):
    """Factory: ``pg_cluster(*initdb_args)`` -> a new running Cluster of the newest installed
    version (e.g. ``"--wal-segsize=1"``), stopped and removed after the session. (Standalone:
    other directories' conftests import it with pg_bin alone.)"""
    yield from _session_factory(lambda *initdb_args: _start(pg_bin, initdb_args))


@pytest.fixture(scope="module", params=PG_MAJORS or [None], ids=lambda m: f"pg{m}")
def pg_each_cluster(request, pg_cluster_of):
    """Like ``pg_cluster``, once per installed PostgreSQL major version (PG_MAJORS): the tests
    using it run against every version on the host (scripts/test installs every version the
    OS package repository offers)."""
    if request.param is None:
        raise RuntimeError("no PostgreSQL server binaries: run scripts/bootstrap (apt-get install postgresql)")
    bin_dir = installed_bins()[request.param]
    return lambda *initdb_args: pg_cluster_of(bin_dir, *initdb_args)

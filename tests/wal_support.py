"""A repository the PostgreSQL server itself archives into, through the real CLI.

The server runs archive_command as the ``postgres`` OS user. The test venv's python links
into a 0700 home (pyenv), so ``postgres`` cannot run it; the system python of the same
minor version can, with this checkout and the venv's site-packages on PYTHONPATH (the
compiled wheels are for that minor version). ``ServerRepo.wrapper`` is that program: a
2-line shell script the archive_command calls exactly as an operator's would call
``axisor-backup``. Everything that writes into this repository (init, wal-push, backup)
runs as ``postgres`` too, as it would in production, where the repository must belong to
the server's OS user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "wal archive passphrase"


def _server_python() -> str:
    want = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for cand in (f"/usr/bin/{want}", f"/usr/local/bin/{want}", shutil.which(want) or ""):
        if cand and os.access(cand, os.X_OK) and not cand.startswith(str(Path.home())):
            return cand
    raise RuntimeError(f"no system {want} for the postgres user to run axisor-backup with (apt-get install {want})")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class ServerRepo:
    dir: Path  # owned by postgres, 0755
    config: Path
    repo: Path
    wrapper: Path  # the axisor-backup the server runs
    passphrase_file: Path

    @classmethod
    def create(cls, db_lines: str = "") -> ServerRepo:
        d = Path(tempfile.mkdtemp(dir="/tmp", prefix="axw."))
        os.chmod(d, 0o755)
        site = sysconfig.get_paths()["purelib"]
        wrapper = d / "axisor-backup"
        wrapper.write_text(
            f"#!/bin/sh\nAXISOR_BACKUP_PROGRAM='{wrapper}' PYTHONPATH='{ROOT}:{site}' "
            f'exec {_server_python()} -m app.cli "$@"\n'
        )
        wrapper.chmod(0o755)
        pf = d / "passphrase"
        pf.write_text(PASSPHRASE + "\n")
        pf.chmod(0o600)
        sr = cls(d, d / "config.toml", d / "repo", wrapper, pf)
        sr.write_config(db_lines)
        sr.chown()
        return sr

    def write_config(self, db_lines: str) -> None:
        lines = []
        if db_lines:
            lines += ["[database]", "enabled = true", db_lines]
        lines += ["[storage]", f'local_path = "{self.repo}"', f'passphrase_file = "{self.passphrase_file}"']
        self.config.write_text("\n".join(lines) + "\n")
        self.chown()

    def chown(self) -> None:
        if os.geteuid() != 0:
            return
        pw = pwd.getpwnam("postgres")
        for dirpath, dirnames, filenames in os.walk(self.dir):
            for n in [dirpath, *(os.path.join(dirpath, x) for x in dirnames + filenames)]:
                os.lchown(n, pw.pw_uid, pw.pw_gid)

    def archive_command(self) -> str:
        return f"{self.wrapper} --config {self.config} wal-push %p"

    def cli(self, *args: str, as_server: bool = True, timeout: float = 120) -> Run:
        """The CLI as the server's OS user (the wrapper) or as the test user (this venv)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        if as_server:
            argv = [str(self.wrapper), "--config", str(self.config), *args]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
        else:
            argv = [sys.executable, "-m", "app.cli", "--config", str(self.config), *args]
        p = subprocess.run(
            argv, cwd="/tmp", env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        return Run(p.returncode, p.stdout, p.stderr)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def enable_archiving(cluster, command: str) -> None:
    """archive_mode needs a restart: ALTER SYSTEM, then pg_ctl restart with the same options."""
    cluster.psql("ALTER SYSTEM SET archive_mode = 'on'")
    cluster.psql(f"ALTER SYSTEM SET archive_command = '{command}'")
    argv = [
        str(cluster.bin / "pg_ctl"),
        "-D",
        str(cluster.dir / "data"),
        "-l",
        str(cluster.dir / "server.log"),
        "-m",
        "fast",
        "-w",
        "-t",
        "60",
        "restart",
    ]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(
        argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120
    )
    assert cluster.psql("SHOW archive_mode") == "on"


def switch_and_wait(cluster, timeout: float = 60) -> str:
    """Close the current segment and wait until the archiver has archived it; its name."""
    cluster.psql("CREATE TABLE IF NOT EXISTS wal_filler (x int)")
    cluster.psql("INSERT INTO wal_filler SELECT generate_series(1, 1000)")
    seg = cluster.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = cluster.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last and last[:24] >= seg:
            return seg
        time.sleep(0.05)
    raise AssertionError(
        f"segment {seg} was not archived: "
        f"{cluster.psql('SELECT * FROM pg_stat_archiver')}\n"
        f"{(cluster.dir / 'server.log').read_text(errors='replace')[-3000:]}"
    )


def segments_dir(root: Path, names: list[str]) -> Path:
    """``root/pg_wal`` with a 16 MiB segment per name (a random 1 MiB head, a zero tail that
    repeats across segments), each marked ready to archive."""
    wal = root / "pg_wal"
    (wal / "archive_status").mkdir(parents=True)
    for n in names:
        (wal / n).write_bytes(os.urandom(1 << 20) + bytes(16 * 1024 * 1024 - (1 << 20)))
        (wal / "archive_status" / f"{n}.ready").touch()
    return wal


def archive_ready(ws, wal: Path, env: dict) -> list[dict]:
    """PostgreSQL's archiver over a Workspace's CLI: the oldest .ready first, renamed .done
    after exit 0; each push's --json."""
    docs = []
    status = wal / "archive_status"
    while ready := sorted(p.name for p in status.iterdir() if p.name.endswith(".ready")):
        name = ready[0][: -len(".ready")]
        r = ws.cli("wal-push", str(wal / name), "--json", env=env)
        assert r.code == 0, r.err
        docs.append(r.json())
        (status / f"{name}.ready").rename(status / f"{name}.done")
    return docs


def cli_importing(argv: list[str], env: dict[str, str], passphrase: str) -> subprocess.CompletedProcess:
    """``python -X importtime -m app.cli ARGV``, as archive_command and restore_command run the
    program (our environment without AXISOR_BACKUP_*, then ``env`` and the passphrase): its
    stderr names every module it imported."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    e.update(env, AXISOR_BACKUP_PASSPHRASE=passphrase)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app.cli", *argv],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )

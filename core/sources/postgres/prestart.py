"""A logical backup's pg_dump started before the program has loaded (issue 14).

A one-shot `axisor-backup backup` of a database of 1,000 small tables spent ~0.39 s between
exec and pg_dump's spawn (the CLI, the config's validation, psycopg, the connection), while
pg_dump itself runs ~0.6-0.7 s: that start-up was most of the gap to `pg_dump -Fc`. So the
entry point (app/backup_quick.py ``_prestart_dump``), before importing anything else, reads
the config file's ``[database]`` table without validating it and, when it plainly asks for
a logical dump, starts one in a thread:

1. a *snapshot holder*: ``psql`` opening a repeatable-read transaction and exporting its
   snapshot (``pg_export_snapshot()``), then waiting on its stdin; the snapshot can be
   imported for as long as that transaction stays open;
2. pg_dump in that snapshot, with the command line and environment the run itself would
   give it (dump_args.py), its output read ahead by the same bounded PipeReader.

Nothing is trusted from here on. Once the config is validated, the run (dump_start.py
``start_dump``) *adopts* the dump only if pg_dump is the program it would have found, the
connection parameters parse to exactly its own, the environment is identical and its
metadata session can import the same snapshot; then the counts, checksums and metadata
come from one snapshot, as when it starts the dump itself. Anything else (another
config, no psql beside pg_dump, a failed connection, a run that takes no dump here) stops
both programs and the run starts its own dump: a start that was not needed costs a
connection, never a result. The password is never on a command line: only the keys in
``_URL_KEYS`` and the config's host/port/dbname/user reach argv, and the password goes in
the environment, as for the run's own dump. ``AXISOR_DUMP_PRESTART=0`` turns this off.

Standard library, dump_args.py, tools.py and child.py only: this runs before psycopg, the
config's validation and the repository stack are imported.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import stat
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import unquote

from core.sources.postgres.child import Running, start
from core.sources.postgres.dump_args import dump_argv, dump_env
from core.sources.postgres.tools import version_of, locate_tool, server_major

ENV_SWITCH = "AXISOR_DUMP_PRESTART"
# libpq URL query keys taken here; any other (a password among them) leaves the dump to the run.
_URL_KEYS = frozenset({"host", "port", "dbname", "user", "sslmode", "connect_timeout"})
_PLAIN = r"[A-Za-z0-9._~%-]"
_URL = re.compile(
    rf"postgres(?:ql)?://(?:(?P<user>{_PLAIN}+)@)?(?P<host>{_PLAIN}*)(?::(?P<port>[0-9]+))?"
    rf"(?:/(?P<dbname>{_PLAIN}*))?(?:\?(?P<query>(?:{_PLAIN}+=[A-Za-z0-9._~%/-]*)(?:&{_PLAIN}+=[A-Za-z0-9._~%/-]*)*))?"
)
_SNAPSHOT = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")
_HOLD = (
    b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
    b"SELECT pg_export_snapshot() || ' ' || current_setting('server_version_num');\n"
)
# The holder's snapshot by then, or the run starts its own dump (and meets whatever is slow).
ANSWER_SECONDS = 10.0
MAX_PASSWORD_BYTES = 64 * 1024


class Prestart:
    """A dump started ahead: the holder, then pg_dump, started on a thread (``wait``)."""

    __slots__ = (
        "conninfo",
        "env",
        "holder",
        "params",
        "pg_dump",
        "psql",
        "running",
        "snapshot",
        "_stopping",
        "_thread",
    )

    def __init__(self, params: dict[str, str], env: dict[str, str], pg_dump: Path, psql: Path) -> None:
        self.params = params  # libpq keywords, never a password
        self.conninfo = conninfo(params)
        self.env = env
        self.pg_dump = pg_dump
        self.psql = psql
        self.holder: subprocess.Popen | None = None
        self.snapshot = ""
        self.running: Running | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._start, daemon=True, name="axisor-prestart")

    def _start(self) -> None:
        try:
            self.holder = subprocess.Popen(
                [str(self.psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--no-password", "-d", self.conninfo],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # the run connects itself and says what failed
                env=self.env,
            )
            assert self.holder.stdin is not None and self.holder.stdout is not None
            if self._stopping.is_set():
                return  # stop() may have missed the holder: it is released there after the join
            self.holder.stdin.write(_HOLD)
            self.holder.stdin.flush()
            # While psql connects: pg_dump's version, which must not be older than the
            # server's (pg_dump refuses a newer server; the run says so before anything runs).
            _, major = version_of(self.pg_dump)
            snapshot, _, server = _first_line(self.holder.stdout.fileno(), ANSWER_SECONDS).partition(" ")
            if self._stopping.is_set():
                return
            if _SNAPSHOT.fullmatch(snapshot) and server.isdigit() and major >= server_major(int(server)):
                self.snapshot = snapshot
                self.running = start(dump_argv(self.pg_dump, snapshot, self.conninfo), self.env)
        except Exception:  # noqa: BLE001 - any failure here leaves the dump to the run, which reports it
            self.running = None

    def wait(self) -> bool:
        """Whether pg_dump is running in the holder's snapshot (blocks until the start ended)."""
        self._thread.join()
        return self.running is not None

    def stop(self) -> None:
        """Kill pg_dump if it still runs and end the holder's transaction (safe to call twice).
        A start still waiting for the server is cut short: the holder is killed first."""
        self._stopping.set()
        holder = self.holder
        if holder is not None and self._thread.is_alive():
            holder.kill()  # its stdout ends: the wait for the snapshot returns at once
        self._thread.join()
        running, self.running = self.running, None
        if running is not None:
            if running.proc.poll() is None:
                running.proc.kill()
            running.proc.wait()
            running.stdout.close()
            if running.proc.stdout is not None:
                running.proc.stdout.close()
        holder, self.holder = self.holder, None
        if holder is not None:
            release(holder)


def release(holder: subprocess.Popen) -> None:
    """End a snapshot holder: psql ends its transaction and exits at the end of its input."""
    try:
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        holder.kill()
        holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


_current: Prestart | None = None


def begin(config_path: Path, config_bytes: bytes) -> None:
    """Start the dump this config asks for, if it plainly asks for one (``plan``)."""
    global _current
    if os.environ.get(ENV_SWITCH, "1") == "0" or _current is not None:
        return
    pre = plan(config_path, config_bytes)
    if pre is None:
        return
    _current = pre
    atexit.register(discard)  # a run that never reached the dump (a bad config, --help)
    pre._thread.start()


def claim() -> Prestart | None:
    """The dump started ahead, once (its start may still be under way: ``Prestart.wait``)."""
    global _current
    pre, _current = _current, None
    return pre


def discard() -> None:
    """Stop the dump started ahead if nobody claimed it."""
    pre = claim()
    if pre is not None:
        pre.stop()


def plan(config_path: Path, config_bytes: bytes) -> Prestart | None:
    """What to start for this config, read without its validation: a logical dump of an
    enabled ``[database]`` in one part, reached by plain keywords; None for anything else
    (the run decides all of it again, and adopts only an exact match)."""
    try:
        doc = tomllib.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    db = doc.get("database")
    if not isinstance(db, dict) or db.get("enabled") is not True:
        return None
    if db.get("mode", "logical") != "logical" or db.get("dump_jobs", 1) != 1:
        return None
    params = _connection(db)
    credentials = _credentials(db, config_path.parent)
    if params is None or credentials is None:
        return None
    bin_dir = _path(db["pg_bin_dir"], config_path.parent) if "pg_bin_dir" in db else None
    if "pg_bin_dir" in db and bin_dir is None:
        return None
    try:
        pg_dump = locate_tool("pg_dump", bin_dir)
    except Exception:  # noqa: BLE001 - not found: the run says so
        return None
    psql = pg_dump.parent / "psql"
    if not (psql.is_file() and os.access(psql, os.X_OK)):
        return None
    return Prestart(params, dump_env(*credentials), pg_dump, psql)


def _connection(db: dict) -> dict[str, str] | None:
    """connection.py ``PgTarget.from_config``'s parameters: the URL's, then the keys'."""
    params: dict[str, str] = {}
    url = db.get("url")
    if url is not None:
        from_url = url_params(url) if isinstance(url, str) else None
        if from_url is None:
            return None
        params.update(from_url)
    for key in ("host", "dbname", "user"):
        if key in db:
            if not isinstance(db[key], str):
                return None
            params[key] = db[key]
    if "port" in db:
        if type(db["port"]) is not int:
            return None
        params["port"] = str(db["port"])
    return params


def _credentials(db: dict, base: Path) -> tuple[str | None, Path | None] | None:
    """(password, passfile) as the run reads them; None when it would refuse them."""
    if "password_file" in db:
        path = _path(db["password_file"], base)
        password = _password(path) if path is not None else None
        return (password, None) if password is not None else None
    if "passfile" in db:
        passfile = _path(db["passfile"], base)
        return (None, passfile) if passfile is not None else None
    return (None, None)


def url_params(url: str) -> dict[str, str] | None:
    """libpq's keywords for a plain ``postgresql://[user@][host][:port][/dbname][?key=value&..]``
    (plain characters and %-escapes only; query keys from ``_URL_KEYS``); None for any other
    shape: a password, several hosts, an IPv6 literal, other keys. Narrower than libpq on
    purpose: the run adopts the dump only if libpq parses the config's URL the same way."""
    m = _URL.fullmatch(url)
    if m is None:
        return None
    user, host, port, dbname, query = m.group("user", "host", "port", "dbname", "query")
    raw = {"user": user, "host": host, "port": port, "dbname": dbname}
    params = {key: unquote(value, errors="strict") for key, value in raw.items() if value}
    if query:
        for piece in query.split("&"):
            key, _, value = piece.partition("=")
            if key not in _URL_KEYS:
                return None
            params[key] = unquote(value, errors="strict")
    if any("\0" in v or "%" in v for v in params.values()):
        return None  # a NUL, or an escape that libpq reads otherwise
    return params


def conninfo(params: dict[str, str]) -> str:
    """A libpq keyword/value connection string: values quoted where libpq needs it."""

    def quoted(value: str) -> str:
        if value and not any(c in value for c in " \t\n\r\f\v'\\"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quoted(value)}" for key, value in params.items())


def _path(value: object, base: Path) -> Path | None:
    """The config's checks.py rule for a path: ~ expanded, relative to the config's folder."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _password(path: Path | None) -> str | None:
    """connection.py's rules for database.password_file; None when the run would refuse it."""
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                return None
            raw = os.read(fd, MAX_PASSWORD_BYTES)
        finally:
            os.close(fd)
        value = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    value = value[:-1] if value.endswith("\n") else value
    return value or None


def _first_line(fd: int, timeout: float) -> str:
    """The first line a child writes to ``fd``, within ``timeout``; "" if none."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data and len(data) < 4096:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        piece = os.read(fd, 4096)
        if not piece:
            return ""
        data += piece
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()

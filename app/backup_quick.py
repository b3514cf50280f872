"""`axisor-backup backup` handed to a running daemon without loading the whole program.

A scheduled or scripted backup on a server runs through the daemon (app/cli_jobs.py), where
the job starts pg_dump at once with everything already imported. The command itself then
only submits the job and waits for its end, yet the full program first imports the CLI,
the config's validation and the service (~0.4 s of CPU on this project's 2-core hosts), as
long as pg_dump's whole run on a database of 1,000 small tables. This module uses the
standard library, blocking sockets and the printing of the outcome only, and takes the
backup over when it can be sure the result is the full program's; in every other case it
returns None and the full program runs, exactly as before.

It takes over only when all of these hold:
- the command is ``--config PATH [--json] backup`` with only ``--json``, ``--source``,
  ``--tag``, ``--type`` and ``--lock-wait`` after it (no limits: those run in this process);
- no progress line is to be drawn (``--json``, or stderr is not a terminal: cron, scripts);
- the state folder is known without validating the config (app/wal_quick.py's rule), a
  daemon answers on its socket, is not stopping, and its ``ping`` vouches for this very
  config: the same file (absolute path) and the SHA-256 of the same bytes, which it
  validated (core/config/load.py ``config_digest``). The config's warnings come with it and
  are printed as the full program prints them.
Once the job is submitted there is no going back: the job's end is told by
app/backup_outcome.py, as the full program tells it.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from app.wal_quick import SOCKET_NAME, quick_state_dir

EXIT_INTERRUPTED = 130
EXIT_DAEMON = 21  # core/errors.py DaemonError
KINDS = ("full", "incremental", "differential")
VALUED = {"--source": "sources", "--tag": "tags", "--type": "type", "--lock-wait": "lock_wait"}
LOCK_WAIT_DEFAULT = 600.0  # app/cli_parser.py's default for --lock-wait


class _Refused(Exception):
    """This run is not one the quick path can take: the full program runs it."""


class _Lost(Exception):
    """The daemon's connection ended."""


def parse(argv: list[str]) -> tuple[Path, dict[str, Any], bool] | None:
    """(config, job params, --json) for the shapes above; None for anything else."""
    config: str | None = None
    as_json = False
    params: dict[str, Any] = {"type": "incremental", "sources": [], "tags": [], "lock_wait": LOCK_WAIT_DEFAULT}
    seen_command = False
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        name, eq, inline = arg.partition("=")
        if arg == "--json":
            as_json = True
        elif arg == "backup" and not seen_command:
            seen_command = True
        elif name == "--config" and not seen_command and config is None:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            i += 0 if eq else 1
            if not value or value.startswith("-"):
                return None
            config = value
        elif name in VALUED and seen_command:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            i += 0 if eq else 1
            if value is None or value.startswith("-") or not _take(params, VALUED[name], value):
                return None
        else:
            return None
        i += 1
    if not seen_command or config is None:
        return None
    return Path(config), params, as_json


def _prestart_dump(config_path: Path, config_bytes: bytes, params: dict[str, Any]) -> None:
    """No daemon may take this backup: the full program runs it, and its pg_dump can start
    now, when the config plainly asks for a logical dump (core/sources/postgres/prestart.py;
    the run takes it over only if it is exactly its own)."""
    if params["sources"] and "database" not in params["sources"]:
        return
    from app.process import tune_malloc
    from core.sources.postgres import prestart

    tune_malloc()  # before the threads that start and read the dump
    prestart.begin(config_path, config_bytes)


def _take(params: dict[str, Any], key: str, value: str) -> bool:
    if key in ("sources", "tags"):
        params[key].append(value)
    elif key == "type":
        if value not in KINDS:
            return False
        params[key] = value
    else:
        try:
            params[key] = float(value)
        except ValueError:
            return False
    return True


class _Lines:
    """One JSON-lines connection to the daemon (the protocol of core/jobs/client.py)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")

    def send(self, request: dict[str, Any]) -> None:
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise _Lost(str(exc)) from None

    def receive(self) -> dict[str, Any]:
        try:
            line = self.reader.readline()
        except OSError as exc:
            raise _Lost(str(exc)) from None
        if not line:
            raise _Lost("closed")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise _Lost("not an object")
        return reply

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _vouched(conn: _Lines, config_path: Path, config_bytes: bytes) -> dict[str, Any]:
    """The daemon's word for this config (its ``ping``), or _Refused."""
    try:
        reply = conn.call({"id": 0, "op": "ping"})
    except (_Lost, ValueError):
        raise _Refused from None
    info = reply.get("result") if reply.get("ok") is True else None
    ident = info.get("config") if isinstance(info, dict) and not info.get("stopping") else None
    if not isinstance(ident, dict):
        raise _Refused
    if ident.get("path") != str(config_path.expanduser().absolute()):
        raise _Refused
    if ident.get("sha256") != hashlib.sha256(config_bytes).hexdigest():
        raise _Refused
    return ident


def try_backup(argv: list[str]) -> int | None:
    """The exit code of a backup run through the daemon; None when the full program must run
    (with no daemon, its pg_dump started first: ``_prestart_dump``)."""
    parsed = parse(argv)
    if parsed is None:
        return None
    config_path, params, as_json = parsed
    try:
        config_bytes = config_path.expanduser().read_bytes()
    except OSError:
        return None
    state_dir = quick_state_dir(config_bytes)
    if state_dir is None:
        return None
    sock_path = state_dir / SOCKET_NAME
    if not sock_path.exists():
        _prestart_dump(config_path.expanduser(), config_bytes, params)
        return None
    if not as_json and sys.stderr.isatty():
        return None  # the full program draws the job's progress line
    conn = events = None
    try:
        conn = _Lines(sock_path)
        ident = _vouched(conn, config_path, config_bytes)
        events = _Lines(sock_path)
        if events.call({"op": "events"}).get("ok") is not True:
            raise _Refused
    except (OSError, _Refused, _Lost, ValueError, KeyboardInterrupt) as exc:
        for c in (conn, events):
            if c is not None:
                c.close()
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C before anything was submitted
            print("interrupted; the repository is unchanged up to the last finished snapshot", file=sys.stderr)
            return EXIT_INTERRUPTED
        return None
    assert conn is not None and events is not None
    try:
        return _run(conn, events, sock_path, config_path, ident, params, as_json)
    finally:
        conn.close()
        events.close()


def _run(
    conn: _Lines,
    events: _Lines,
    sock_path: Path,
    config_path: Path,
    ident: dict[str, Any],
    params: dict[str, Any],
    as_json: bool,
) -> int:
    from app.backup_outcome import backup_outcome, detach_from_terminal, note
    from app.cli_output import Output

    for warning in ident.get("deprecations") or []:
        note(f"warning: {config_path}: {warning}")
    for line in ident.get("notes") or []:
        note(line)
    signal.signal(signal.SIGHUP, lambda *_: detach_from_terminal())
    # Ctrl-C stops watching, as in the full program, which sets its own handler: a process
    # started with SIGINT ignored (a test runner's worker, a shell's background job) would
    # otherwise keep watching to the job's end and exit 0.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reply = conn.call({"id": 1, "op": "submit", "kind": "backup", "params": params, "origin": "cli"})
    except KeyboardInterrupt:
        note("interrupted; the repository is unchanged up to the last finished snapshot")
        return EXIT_INTERRUPTED
    except (_Lost, ValueError):
        note(f"error: the daemon at {sock_path} is gone (connection lost)")
        return EXIT_DAEMON
    if reply.get("ok") is not True:
        error = reply.get("error") or {}
        note(f"error: {error.get('message', 'the daemon reported an error')}")
        return int(error.get("exit_code", 1))
    job: dict[str, Any] = reply["result"]["job"]
    note(f"job {job['id']} runs in the daemon; Ctrl-C stops watching, not the job")
    try:
        final = _watch(conn, events, job)
    except KeyboardInterrupt:
        note(f"stopped watching; job {job['id']} goes on in the daemon (axisor-backup jobs --follow {job['id']})")
        return EXIT_INTERRUPTED
    if final is None:
        from core.daemon.recovery import lost_connection_message
        from core.jobs.codec import job_from_dict

        note(lost_connection_message(job["id"], job_from_dict(job), "running"))
        return EXIT_DAEMON
    return backup_outcome(final, Output(as_json))


def _watch(conn: _Lines, events: _Lines, job: dict[str, Any]) -> dict[str, Any] | None:
    """The job's final record (from its ``finished`` event, or asked for when the stream
    ends); None when the daemon is gone."""
    waited = False
    while True:
        try:
            event = events.receive().get("event") or {}
        except (_Lost, ValueError):
            break  # the stream ended (daemon stopped): the record tells the rest
        if (event.get("job") or {}).get("id") != job["id"]:
            continue
        message = str(event.get("message", ""))
        if event.get("type") == "log" and message.startswith("waiting") and not waited:
            waited = True  # once: a log file should say why the run paused, not fill up
            from app.backup_outcome import note

            note(message)
        if event.get("type") == "finished":
            return dict(event["job"])
    try:
        reply = conn.call({"id": 2, "op": "get", "job": job["id"]})
    except (_Lost, ValueError):
        return None
    return dict(reply["result"]["job"]) if reply.get("ok") is True else None

"""``axisor-backup daemon``: the engine served on an owner-only Unix socket.

Protocol (documented in docs/CLI.md): JSON lines. A request is one object with ``op``
and its arguments (and an optional ``id`` echoed back); the reply is
``{"id", "ok": true, "result": {...}}`` or ``{"id", "ok": false, "error": {"type",
"message", "exit_code"}}``. A malformed request gets an error reply and the connection
stays usable; only a line over the size limit ends the connection. ``events`` turns the
connection into a stream of ``{"event": ...}`` lines. Peers whose uid differs from the
daemon's are refused (SO_PEERCRED), on top of the socket's 0600 mode.

At start, the jobs a previous daemon was running when it died (SIGKILL, a crash) are
recovered before anything else runs: marked ``interrupted``, their repository locks
released, announced, and rerun or caught up (core/daemon/recovery.py).

Signals: SIGTERM/SIGINT stop taking work and give running jobs ``[engine]
shutdown_grace_seconds`` to finish before they are cancelled cleanly; SIGHUP reloads the
config file, and an invalid one is rejected with the old one kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from core import __version__
from core.config import (
    Config,
    ConfigError,
    config_digest,
    deprecations,
    insecure_notes,
    load_config,
    resolve_passphrase,
)
from core.errors import AxisorError, DaemonError, UsageError
from core.jobs.api import JobState
from core.jobs.client import LINE_LIMIT, DaemonClient, socket_path
from core.jobs.codec import event_to_dict, job_to_dict
from core.jobs.engine import Engine
from core.jobs.store import ROLE_DAEMON
from core.scrub import scrub

log = logging.getLogger("axisor.daemon")

RPO_CHECK_SECONDS = 300.0  # how often sources are checked against their RPO
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                data[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["exception"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return scrub(json.dumps(data, default=str))  # secrets never reach a log


def setup_json_logging(stream: TextIO = sys.stderr, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("axisor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class BadRequest(UsageError):
    pass


def _arg(request: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    value = request.get(name, default)
    if value is ...:
        raise BadRequest(f"request {request.get('op')!r} needs {name!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{name!r} must be {kind.__name__} (got {type(value).__name__})")
    return value


class Daemon:
    def __init__(self, config: Config, config_path: Path | None, *, directory: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.engine = Engine(config, self._passphrase, directory=directory, role=ROLE_DAEMON)
        self.socket = (directory / "daemon.sock") if directory else socket_path(config)
        # Called with the new Config after a successful SIGHUP reload (the scheduler re-reads its schedules).
        self.reload_hooks: list[Callable[[Config], None]] = []
        # Started after the engine and stopped before it (the scheduler): (start, stop) pairs.
        self.services: list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
        self._stop = asyncio.Event()
        self._stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._stale: set[str] = set()  # sources already announced as older than their RPO
        self._shrunk: dict[str, str] = {}  # source -> the suspicious-shrink finding already announced
        self._slow: dict[str, str] = {}  # "rto <scenario> from <location>" -> the level already announced
        from core.schedule.runner import attach_to_daemon

        attach_to_daemon(self)  # the scheduler: a service and a reload hook
        self._wal: Any = None  # the WalPusher, made at the first wal_push (core/sources/postgres/wal_daemon.py)
        self.config_identity = self._identity(config)

    def _identity(self, config: Config) -> dict[str, Any] | None:
        """What ``ping`` tells of the config in force: its file and the SHA-256 of the bytes it
        was validated from (None when they cannot be vouched for), with the notes every command
        prints about it. A client holding those bytes submits its backup without importing the
        whole program to validate them again (app/backup_quick.py)."""
        if self.config_path is None:
            return None
        path = Path(self.config_path).expanduser().absolute()
        digest = config_digest(path, config)
        if digest is None:
            return None
        return {
            "path": str(path),
            "sha256": digest,
            "deprecations": [str(w) for w in deprecations(config)],
            "notes": insecure_notes(config),
        }

    def _passphrase(self, confirm: bool) -> str:
        # Read again for every job from the current config: a rotated passphrase file just works.
        return resolve_passphrase(self.config.storage, interactive=False)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> int:
        self._passphrase(False)  # no passphrase source: fail now, not at the first job
        await self._bind()
        try:
            await self.engine.start()
            # Before the scheduler's first tick: it must see the runs owed again.
            await self._recover()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig.name)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
            for start, _ in self.services:
                await start()
            log.info(
                "daemon started",
                extra={
                    "pid": os.getpid(),
                    "socket": str(self.socket),
                    "state_dir": str(self.engine.directory),
                    "version": __version__,
                    "max_concurrent": self.engine.max_concurrent,
                },
            )
            watcher = asyncio.create_task(self._watch_rpo())
            await self._stop.wait()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            grace = float(self.config.engine.shutdown_grace_seconds)
            log.info("daemon stopping", extra={"running": [j.id for j in self.engine.running], "grace": grace})
            for _, stop in reversed(self.services):
                await stop()
            await self.engine.shutdown(grace=grace, reason="the daemon stopped")
            if self._wal is not None:
                await self._wal.close()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                asyncio.get_running_loop().remove_signal_handler(sig)
            await self._unbind()
        log.info("daemon stopped", extra={"pid": os.getpid()})
        return 0

    async def _recover(self) -> None:
        """The jobs a previous daemon left behind when it died (core/daemon/recovery.py)."""
        from core.daemon.recovery import recover

        try:
            await recover(self.engine, self.config)
        except Exception as exc:  # noqa: BLE001 - the daemon still starts; the next start tries again
            log.exception("recovering interrupted jobs failed", extra={"error": str(exc)})

    def request_stop(self, why: str = "stop requested") -> None:
        if not self._stopping:
            self._stopping = True
            self.engine._accepting = False
            log.info("stop requested", extra={"signal": why})
            self._stop.set()

    async def _watch_rpo(self) -> None:
        """Announce, once each time it happens, a source whose newest backup outlived its RPO."""
        from core.jobs.notify import notify_stale
        from core.jobs.status import history_checks

        while True:
            store = self.engine.store
            notifications = self.config.notifications
            if store is not None and (notifications.webhook_url or notifications.command):
                try:
                    checks = await history_checks(self.config, store)
                except AxisorError as exc:
                    log.warning("RPO check failed", extra={"error": str(exc)})
                    checks = []
                else:
                    await self._announce_shrinks(checks)
                    await self._announce_forecasts(store)
                for check in checks:
                    if not check.name.startswith("source "):
                        continue
                    source = check.name.removeprefix("source ")
                    if check.stale and source not in self._stale:
                        self._stale.add(source)
                        log.warning(
                            "source older than its RPO",
                            extra={"source": source, "level": check.level, "detail": check.message},
                        )
                        await notify_stale(notifications, source, check.level, check.message)
                    elif not check.stale and check.level != "critical":
                        self._stale.discard(source)
            await asyncio.sleep(RPO_CHECK_SECONDS)

    async def _announce_forecasts(self, store: Any) -> None:
        """Once per level reached: an RTO forecast over its objective (core/jobs/rto.py, the
        status's ``rto <scenario> from <location>`` findings). Keyed by level, not message:
        the figure moves with every drill and backup, and that is not news."""
        from core.jobs.api import JobState
        from core.jobs.metrics import HISTORY
        from core.jobs.notify import notify_stale
        from core.jobs.rto import rto_forecasts
        from core.jobs.status import forecast_checks

        backups = await store.list(limit=HISTORY, states=(JobState.COMPLETED, JobState.FAILED), kinds=("backup",))
        current = {c.name: c for c in forecast_checks(self.config, await rto_forecasts(self.config, store, backups))}
        for name in [n for n in self._slow if n not in current]:
            del self._slow[name]
        for name, check in current.items():
            if self._slow.get(name) != check.level:
                self._slow[name] = check.level
                log.warning("RTO forecast over its objective", extra={"check": name, "detail": check.message})
                await notify_stale(
                    self.config.notifications,
                    name.removeprefix("rto "),
                    check.level,
                    check.message,
                    event="rto.forecast_over_objective",
                    subject="RTO of",
                )

    async def _announce_shrinks(self, checks: list) -> None:
        """Once per flagged snapshot: the status's ``shrink <source>`` warnings (core/health/shrink.py)."""
        from core.jobs.notify import notify_stale

        current = {c.name.removeprefix("shrink "): c for c in checks if c.name.startswith("shrink ")}
        for source in [s for s in self._shrunk if s not in current]:
            del self._shrunk[source]
        for source, check in current.items():
            if self._shrunk.get(source) != check.message:
                self._shrunk[source] = check.message
                log.warning("suspicious shrink", extra={"source": source, "detail": check.message})
                await notify_stale(
                    self.config.notifications, source, check.level, check.message, event="source.suspicious_shrink"
                )

    async def reload(self) -> bool:
        if self.config_path is None:
            log.warning("config reload ignored: the daemon was not started from a file")
            return False
        try:
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error(
                "config reload rejected; the previous config stays in force",
                extra={"path": str(self.config_path), "problems": [str(p) for p in exc.problems]},
            )
            return False
        self.config = config
        self.config_identity = await asyncio.to_thread(self._identity, config)
        self.engine.reload(config)
        for hook in self.reload_hooks:
            hook(config)
        log.info(
            "config reloaded", extra={"path": str(self.config_path), "max_concurrent": config.schedule.max_concurrent}
        )
        return True

    async def _bind(self) -> None:
        path = self.socket
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise DaemonError(
                f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                "set a shorter [engine] state_dir or AXISOR_BACKUP_STATE_DIR"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if path.exists() or path.is_symlink():
                other = await DaemonClient.try_connect(path)
                if other is not None:
                    pid = other.daemon_pid
                    await other.close()
                    raise DaemonError(f"another daemon (pid {pid}) already serves {path}")
                path.unlink()  # left by a daemon that died
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Created owner-only from the first instant: no window where others could connect.
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            except OSError:
                sock.close()
                raise
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            sock.listen(64)
        except OSError as exc:  # a read-only or foreign state folder: one line, exit 21
            raise DaemonError(
                f"cannot serve the daemon socket {path}: {exc.strerror or exc}; set a writable "
                "[engine] state_dir or AXISOR_BACKUP_STATE_DIR"
            ) from None
        self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=LINE_LIMIT)

    async def _unbind(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            self._server = None
        try:
            self.socket.unlink()
        except FileNotFoundError:
            pass

    # -- connections -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer.get_extra_info("socket"))
        if uid != os.getuid():
            log.warning("connection refused: another user", extra={"peer_uid": uid, "owner_uid": os.getuid()})
            await self._reply(
                writer,
                None,
                error=DaemonError(f"refused: this daemon serves only uid {os.getuid()} (you are uid {uid})"),
            )
            await _linger(reader, writer)
            return
        while True:
            try:
                line = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                await self._reply(writer, None, error=BadRequest(f"request longer than {LINE_LIMIT} bytes"))
                await _linger(reader, writer)
                return
            if not line:
                return
            rid = None
            try:
                try:
                    request = json.loads(line)
                except (ValueError, RecursionError):
                    raise BadRequest("request is not valid JSON") from None
                if not isinstance(request, dict):
                    raise BadRequest("request must be a JSON object")
                rid = request.get("id")
                op = request.get("op")
                if op == "events":
                    await self._stream_events(reader, writer, rid)
                    return
                result = await self._dispatch(op, request)
            except AxisorError as exc:
                await self._reply(writer, rid, error=exc)
                continue
            except Exception as exc:
                log.exception("request failed", extra={"op": str(request.get("op"))[:40]})
                await self._reply(writer, rid, error=AxisorError(f"internal error: {type(exc).__name__}"))
                continue
            await self._reply(writer, rid, result=result)

    async def _reply(
        self, writer: asyncio.StreamWriter, rid: Any, *, result: Any = None, error: AxisorError | None = None
    ) -> None:
        if error is not None:
            body = {
                "id": rid,
                "ok": False,
                "error": {"type": type(error).__name__, "message": str(error), "exit_code": error.exit_code},
            }
        else:
            body = {"id": rid, "ok": True, "result": result}
        writer.write(json.dumps(body, default=str).encode() + b"\n")
        await writer.drain()

    async def _dispatch(self, op: Any, request: dict[str, Any]) -> dict[str, Any]:
        engine = self.engine
        if op == "ping":
            return {
                "pid": os.getpid(),
                "version": __version__,
                "mode": "daemon",
                "stopping": self._stopping,
                "running": len(engine.running),
                "config": self.config_identity,
            }
        if op == "submit":
            job = await engine.submit(
                _arg(request, "kind", str),
                _arg(request, "params", dict, {}),
                origin=_arg(request, "origin", str, "api"),
            )
            return {"job": job_to_dict(job)}
        if op == "cancel":
            return {"job": job_to_dict(await engine.cancel(_arg(request, "job", str)))}
        if op == "get":
            return {"job": job_to_dict(await engine.get(_arg(request, "job", str)))}
        if op == "wait":
            return {"job": job_to_dict(await engine.wait(_arg(request, "job", str)))}
        if op == "log":
            return {"lines": await engine.log(_arg(request, "job", str))}
        if op == "list":
            limit = _arg(request, "limit", int, 100)
            raw = _arg(request, "states", list, None) if request.get("states") is not None else None
            try:
                states = frozenset(JobState(s) for s in raw) if raw is not None else None
            except ValueError:
                raise BadRequest(f"states must be among {', '.join(s.value for s in JobState)}") from None
            return {"jobs": [job_to_dict(j) for j in await engine.list(limit=limit, states=states)]}
        if op == "wal_push":
            from core.sources.postgres.wal_daemon import push_reply

            result = await self._wal_pusher().push(Path(_arg(request, "path", str)), _arg(request, "repository", str))
            return push_reply(result)
        raise BadRequest(
            f"unknown op {str(op)[:40]!r}; known: ping, submit, cancel, get, wait, list, log, events, wal_push"
        )

    def _wal_pusher(self) -> Any:
        """WAL pushes from the server's archive_command (app/wal_quick.py), with the repository
        kept open and the next ready files stored ahead (core/sources/postgres/wal_daemon.py)."""
        if self._wal is None:
            from core.repository.repository import Repository
            from core.sources.postgres.wal_daemon import WalPusher
            from core.storage.local import LocalBackend

            directory = self.engine.directory

            async def open_repository() -> Repository:
                repo = await Repository.open(
                    LocalBackend(self.config.storage.local_path), self._passphrase(False), key_cache_dir=directory
                )
                if repo.write_only:
                    from core.repository.own_cache import OwnCache

                    # A repeated push is answered from what this host recorded pushing.
                    repo.own = OwnCache(directory / "writer-cache", repo.config.id)
                return repo

            self._wal = WalPusher(open_repository, directory)
        return self._wal

    async def _stream_events(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rid: Any) -> None:
        events = self.engine.events()
        await self._reply(writer, rid, result={"stream": "events"})
        gone = asyncio.ensure_future(reader.read())  # EOF: the client went away

        async def pump() -> None:
            async for event in events:
                writer.write(json.dumps({"event": event_to_dict(event)}, default=str).encode() + b"\n")
                await writer.drain()

        pumping = asyncio.ensure_future(pump())
        try:
            await asyncio.wait([gone, pumping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (gone, pumping):
                task.cancel()
            await asyncio.gather(gone, pumping, return_exceptions=True)
            await events.aclose()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Before hanging up on a client: closing with its bytes unread would reset the
    connection (ECONNRESET) and could destroy the error reply it has not read yet."""
    try:
        writer.write_eof()
        async with asyncio.timeout(2):
            while await reader.read(1 << 20):
                pass
    except (OSError, TimeoutError, ValueError):
        pass


async def run_daemon(config: Config, config_path: Path | None) -> int:
    return await Daemon(config, config_path).run()


__all__ = ["BadRequest", "Daemon", "JsonLines", "peer_uid", "run_daemon", "setup_json_logging"]

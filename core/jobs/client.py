"""DaemonClient: the EngineClient that talks to ``axisor-backup daemon`` over its Unix socket.

The protocol (docs/CLI.md, "The daemon protocol") is JSON lines: one request object per
line, one reply per request; ``events`` and ``wait`` hold their own connection.
"""

from __future__ import annotations

import builtins
import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import errors
from core.errors import AxisorError, DaemonConnectionLost, DaemonError
from core.jobs.api import Job, JobEvent, JobState
from core.jobs.codec import event_from_dict, job_from_dict
from core.jobs.store import state_dir

if TYPE_CHECKING:
    from core.config import Config

SOCKET_NAME = "daemon.sock"
LINE_LIMIT = 16 * 1024 * 1024  # a reply with a long job list or log is still one line


def socket_path(config: Config | None = None) -> Path:
    return state_dir(config) / SOCKET_NAME


def error_from_reply(error: dict[str, Any]) -> AxisorError:
    """The daemon's error reply as the exception the embedded engine would have raised."""
    kind = getattr(errors, str(error.get("type", "")), None)
    message = str(error.get("message", "the daemon reported an error"))
    if isinstance(kind, type) and issubclass(kind, AxisorError) and kind is not errors.DamagedObject:
        exc = kind(message)
    else:
        exc = AxisorError(message)
    exc.exit_code = int(error.get("exit_code", exc.exit_code))
    return exc


class _Connection:
    def __init__(self, path: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> _Connection:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        except PermissionError:
            raise DaemonError(f"the daemon socket {path} does not let this user in") from None
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonError(f"no daemon answers at {path}: {exc.strerror or exc}") from None
        return cls(path, reader, writer)

    async def send(self, request: dict[str, Any]) -> None:
        try:
            self.writer.write(json.dumps(request).encode() + b"\n")
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:  # the daemon died: EPIPE, ECONNRESET
            raise DaemonConnectionLost(
                f"the daemon at {self.path} is gone (connection lost: {exc.strerror or type(exc).__name__})"
            ) from None

    async def receive(self) -> dict[str, Any]:
        try:
            line = await self.reader.readline()
        except (ConnectionError, OSError) as exc:
            raise DaemonConnectionLost(
                f"the daemon at {self.path} is gone (connection lost: {exc.strerror or type(exc).__name__})"
            ) from None
        except (asyncio.LimitOverrunError, ValueError) as exc:
            raise DaemonError(f"the daemon at {self.path} broke the connection: {exc}") from None
        if not line:
            raise DaemonConnectionLost(f"the daemon at {self.path} closed the connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise DaemonError(f"the daemon at {self.path} sent something that is not JSON") from None
        if not isinstance(reply, dict):
            raise DaemonError(f"the daemon at {self.path} sent a reply that is not an object")
        return reply

    async def call(self, request: dict[str, Any]) -> Any:
        await self.send(request)
        reply = await self.receive()
        if not reply.get("ok"):
            raise error_from_reply(reply.get("error") or {})
        return reply.get("result")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class _EventStream:
    def __init__(self, path: Path, conn: _Connection | None = None) -> None:
        self._path = path
        self._conn = conn

    async def start(self) -> _EventStream:
        if self._conn is None:
            self._conn = await _Connection.open(self._path)
            await self._conn.call({"op": "events"})
        return self

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> JobEvent:
        await self.start()
        assert self._conn is not None
        try:
            reply = await self._conn.receive()
        except DaemonError:
            await self.aclose()
            raise StopAsyncIteration from None
        return event_from_dict(reply["event"])

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class DaemonClient:
    mode = "daemon"

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.path = conn.path
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.daemon_pid: int | None = None

    @classmethod
    async def connect(cls, path: Path) -> DaemonClient:
        client = cls(await _Connection.open(path))
        try:
            info = await client._call("ping")
        except BaseException:
            await client.close()
            raise
        client.daemon_pid = info.get("pid")
        return client

    @classmethod
    async def try_connect(cls, path: Path) -> DaemonClient | None:
        """A client when a daemon answers at ``path``; None when no daemon runs there.
        A socket that refuses this user is an error, not a reason to run without the daemon."""
        if not path.exists():
            return None
        try:
            return await cls.connect(path)
        except DaemonError as exc:
            if "no daemon answers" in str(exc):
                return None
            raise

    async def _call(self, op: str, **args: Any) -> Any:
        async with self._lock:
            return await self._conn.call({"id": next(self._ids), "op": op, **args})

    async def submit(self, kind: str, params: dict[str, Any], *, origin: str = "cli") -> Job:
        return job_from_dict((await self._call("submit", kind=kind, params=params, origin=origin))["job"])

    async def cancel(self, job_id: str) -> Job:
        return job_from_dict((await self._call("cancel", job=job_id))["job"])

    async def get(self, job_id: str) -> Job:
        return job_from_dict((await self._call("get", job=job_id))["job"])

    async def list(self, *, limit: int = 100, states: frozenset[JobState] | None = None) -> list[Job]:
        args: dict[str, Any] = {"limit": limit}
        if states is not None:
            args["states"] = sorted(s.value for s in states)
        return [job_from_dict(j) for j in (await self._call("list", **args))["jobs"]]

    async def log(self, job_id: str) -> builtins.list[str]:
        return list((await self._call("log", job=job_id))["lines"])

    def events(self) -> AsyncIterator[JobEvent]:
        return _EventStream(self.path)

    async def subscribe(self) -> _EventStream:
        """An event stream already connected: nothing after this call is missed."""
        return await _EventStream(self.path).start()

    async def wait(self, job_id: str) -> Job:
        conn = await _Connection.open(self.path)  # a long wait must not hold up other requests
        try:
            return job_from_dict((await conn.call({"op": "wait", "job": job_id}))["job"])
        finally:
            await conn.close()

    async def close(self) -> None:
        await self._conn.close()


__all__ = ["DaemonClient", "SOCKET_NAME", "error_from_reply", "socket_path"]

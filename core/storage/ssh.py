"""The ``ssh`` location: a repository folder on another host, reached through an SSH session
running `axisor-backup serve --stdio` there (core/storage/serve.py; the wire: core/storage/
serve_wire.py).

Unlike ``sftp``, the server decides what is allowed: made an SSH forced command with
``--append-only`` in the server's authorized_keys, it lets this host add backups but never
delete or replace one, whatever this host's key or passphrase can do
(docs/OPERATIONS.md "Append-only locations"). The command this client asks for
(``axisor-backup serve --stdio --path <path_prefix>``) is what runs when no forced command
is set; with one, the server's command wins.

One SSH session carries every request, pipelined by id; when it drops, the requests in
flight fail as transient errors and the next request opens a new session (the retry layer
re-runs the one that failed). Trust and authentication: core/storage/ssh_connect.py.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import shlex
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import msgpack

from core.storage.backend import (
    ObjectInfo,
    Payload,
    StorageError,
    StorageUsage,
    TempInfo,
    as_bytes,
    checked_key,
)
from core.storage.retry import TransientError
from core.storage.serve_wire import ERRORS, VERSION, WireError, encode, read_frame
from core.storage.ssh_connect import SSHEndpoint, reason

__all__ = ["SSHBackend"]

DEFAULT_COMMAND = "axisor-backup"


class _Session:
    """One SSH session running the server: frames out, answers routed back by id."""

    def __init__(self, conn: asyncssh.SSHClientConnection, process: Any, where: str) -> None:
        self.conn = conn
        self.process = process
        self.where = where
        self.waiting: dict[int, asyncio.Queue] = {}
        self.dead: BaseException | None = None
        self._ids = itertools.count(1)
        self._write = asyncio.Lock()
        self._reader = asyncio.ensure_future(self._read())
        self.append_only = False

    async def _read(self) -> None:
        stdout = self.process.stdout
        try:
            while True:
                frame = await read_frame(stdout)
                if frame is None:
                    raise await self._ended()
                header, payload = frame
                queue = self.waiting.get(header.get("id"))  # type: ignore[arg-type]
                if queue is not None:
                    queue.put_nowait((header, payload))
        except WireError as exc:
            self._fail(StorageError(f"{self.where}: {exc}{await self._stderr()}"))
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as exc:
            self._fail(TransientError(f"{self.where}: connection lost ({reason(exc)})"))
        except StorageError as exc:
            self._fail(exc)

    async def _ended(self) -> StorageError:
        """The server's side closed: a server that exited with an error refused (its reason
        on stderr: a folder outside the forced one, no such program), which no retry
        changes; anything else (a dropped session) may pass."""
        said = await self._stderr()
        try:
            await asyncio.wait_for(self.process.wait_closed(), 2)
        except (asyncio.TimeoutError, OSError, asyncssh.Error):
            pass
        status = self.process.exit_status
        if status not in (None, 0):
            return StorageError(f"{self.where}: the server refused the session (exit status {status}){said}")
        return TransientError(f"{self.where}: the server closed the session{said}")

    async def _stderr(self) -> str:
        """What the server said on stderr before it went (SSH carries it): its refusal or
        the shell's complaint, quoted so the operator sees why."""
        try:
            text = await asyncio.wait_for(self.process.stderr.read(4096), 2)
        except (asyncio.TimeoutError, OSError, asyncssh.Error):
            return ""
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f" (it said: {text.strip()[:500]})" if text.strip() else ""

    def _fail(self, exc: BaseException) -> None:
        self.dead = exc
        for queue in self.waiting.values():
            queue.put_nowait(exc)

    async def call(self, header: dict[str, Any], payload: bytes | memoryview | None = None) -> list[tuple[dict, bytes]]:
        """Send one request; its answer frames (one, or a list's pages)."""
        if self.dead is not None:
            raise self.dead
        rid = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self.waiting[rid] = queue
        try:
            async with self._write:
                self.process.stdin.writelines(encode({**header, "id": rid}, payload))
                await self.process.stdin.drain()
            frames = []
            while True:
                got = await queue.get()
                if isinstance(got, BaseException):
                    raise got
                head, body = got
                if not head.get("ok"):
                    cls = ERRORS.get(str(head.get("kind")), StorageError)
                    raise cls(str(head.get("error") or "refused by the server"))
                frames.append((head, body))
                if not head.get("more"):
                    return frames
        except (OSError, asyncssh.Error) as exc:
            # A server that refused the session (exit 2 with its reason) closes the channel
            # while the request is written: the reader then has the real story. Asked first.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 3)
            if self.dead is not None:
                raise self.dead from None
            self._fail(TransientError(f"{self.where}: connection lost ({reason(exc)})"))
            raise TransientError(f"{self.where}: connection lost ({reason(exc)})") from None
        finally:
            self.waiting.pop(rid, None)

    def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()
        self.conn.close()


class SSHBackend(SSHEndpoint):
    def __init__(self, host: str, *, command: str = DEFAULT_COMMAND, **endpoint: Any) -> None:
        super().__init__(host, **endpoint)
        self.command = command
        self._session: _Session | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SSHBackend({self.location!r})"

    @property
    def location(self) -> str:
        return f"ssh://{self.username}@{self._host_text}:{self.port}/{self.root.lstrip('/')}"

    @property
    def append_only(self) -> bool | None:
        """What the server said in its hello; None before the first request."""
        return self._session.append_only if self._session is not None else None

    # -- the session ---------------------------------------------------------------------------

    async def _open(self) -> _Session:
        session = self._session
        if session is not None and session.dead is None:
            return session
        async with self._lock:
            if self._session is not None and self._session.dead is None:
                return self._session
            if self._session is not None:
                self._session.close()
                self._session = None
            conn = await self._ssh()
            argv = [self.command, "serve", "--stdio"] + (["--path", self.root] if self.root else [])
            try:
                process = await conn.create_process(shlex.join(argv), encoding=None)
            except (OSError, asyncssh.Error) as exc:
                conn.close()
                raise TransientError(f"{self.location}: cannot start the server ({reason(exc)})") from None
            session = _Session(conn, process, self.location)
            try:
                (hello, _), *_ = await asyncio.wait_for(session.call({"op": "hello", "version": VERSION}), self.timeout)
            except asyncio.TimeoutError:
                session.close()
                raise TransientError(f"{self.location}: the server did not answer within {self.timeout:g} s") from None
            except BaseException:
                session.close()
                raise
            if hello.get("version") != VERSION:
                session.close()
                raise StorageError(
                    f"{self.location}: the server speaks serve protocol {hello.get('version')!r}, this program {VERSION}"
                )
            session.append_only = bool(hello.get("append_only"))
            self._session = session
            return session

    async def _call(self, what: str, header: dict[str, Any], payload: Any = None) -> list[tuple[dict, bytes]]:
        session = await self._open()
        try:
            return await session.call(header, payload)
        except StorageError as exc:
            text = str(exc)
            if self.location in text:
                raise
            # The server's message names its folder; ours names the location and the request.
            raise type(exc)(f"{self.location}: {what}: {text}") from None

    # -- the protocol ----------------------------------------------------------------------------

    async def put(self, key: str, data: Payload) -> None:
        await self._call(f"write {key}", {"op": "put", "key": checked_key(key)}, as_bytes(data))

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        ((_, body),) = await self._call(
            f"read {key}", {"op": "get", "key": checked_key(key), "offset": offset, "length": length}
        )
        if length is not None and len(body) != length:
            raise TransientError(
                f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(body)}"
            )
        return body

    async def stat(self, key: str) -> ObjectInfo:
        ((head, _),) = await self._call(f"stat {key}", {"op": "stat", "key": checked_key(key)})
        return ObjectInfo(key, int(head["size"]))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for _, body in await self._call(f"list {prefix or '/'}", {"op": "list", "prefix": prefix}):
            for key, size in msgpack.unpackb(body, raw=False):
                yield ObjectInfo(str(key), int(size))

    async def delete(self, key: str) -> None:
        await self._call(f"delete {key}", {"op": "delete", "key": checked_key(key)})

    async def exists(self) -> bool:
        ((head, _),) = await self._call("check the repository", {"op": "exists"})
        return bool(head["exists"])

    async def create(self) -> None:
        await self._call("create the location", {"op": "create"})

    async def list_temporary(self) -> builtins.list[TempInfo]:
        ((_, body),) = await self._call("list temporary files", {"op": "list_temporary"})
        return [TempInfo(str(k), s, float(m)) for k, s, m in msgpack.unpackb(body, raw=False)]

    async def delete_temporary(self, key: str) -> None:
        await self._call(f"delete {key}", {"op": "delete_temporary", "key": key})

    async def usage(self) -> StorageUsage:
        ((head, _),) = await self._call("usage", {"op": "usage"})
        used, objects, free = head["usage"]
        return StorageUsage(used, objects, free)

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

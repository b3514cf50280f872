"""`axisor-backup serve --stdio [--append-only] --path DIR`: a repository folder served over
a byte stream (an SSH session), for the ``ssh`` location (core/storage/ssh.py).

The server holds no key and reads no repository object: it moves bytes between the stream
and a local folder (core/storage/local.py) and enforces one policy. With ``--append-only``
the folder only grows: new objects are accepted, nothing outside ``locks/`` is deleted or
replaced (objects never are: ``put`` refuses an existing key everywhere), so a host whose
key reaches only this forced command cannot destroy the backups it wrote: no prune,
forget, repair, key removal or cleanup of temporary files through it. Those run from a
trusted host with direct access to the folder. Run as an SSH forced command:

    command="axisor-backup serve --stdio --append-only --path /srv/axisor",restrict ssh-ed25519 AAAA...

Requests run concurrently (bounded); each answer is one or more frames (core/storage/
serve_wire.py). A request that is not understood ends the session with a message on
stderr (which SSH carries back): a peer that speaks something else must not be answered
with guesses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import msgpack

from core.errors import Exit
from core.storage.backend import LocationRefused, StorageError, checked_key
from core.storage.local import LocalBackend
from core.storage.serve_wire import LIST_PAGE, VERSION, WireError, encode, error_kind, read_frame

log = logging.getLogger(__name__)

# The one folder whose objects an append-only location lets its clients delete: a lock is
# written, refreshed (a new object) and removed by every operation, readers' included.
MUTABLE = "locks/"
IN_FLIGHT = 8  # requests served at once
Frame = list[bytes | memoryview]  # one frame's parts (core/storage/serve_wire.py encode)


class Server:
    def __init__(self, root: Path, *, append_only: bool) -> None:
        self.backend = LocalBackend(root)
        self.append_only = append_only
        self._write_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(IN_FLIGHT)

    def _refuse(self, what: str) -> LocationRefused:
        return LocationRefused(
            f"{self.backend.location} is append-only (axisor-backup serve --append-only): it refuses to {what}; "
            "prune, forget, repair and key removal run from a trusted host with direct access to the storage"
        )

    async def _answer(self, writer: Any, frames: list[Frame]) -> None:
        async with self._write_lock:
            for parts in frames:
                writer.writelines(parts)
            await writer.drain()

    async def handle(self, header: dict[str, Any], payload: bytes) -> list[Frame]:
        """The frames answering one request (never raises for a storage error: it is sent)."""
        rid = header.get("id")
        op = header.get("op")
        method = getattr(self, f"_op_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        try:
            if method is None:
                raise ValueError("unknown operation")
            return await method(rid, header, payload)
        except StorageError as exc:
            return [encode({"id": rid, "ok": False, "kind": error_kind(exc), "error": str(exc)})]
        except (TypeError, ValueError, KeyError) as exc:
            return [encode({"id": rid, "ok": False, "kind": "error", "error": f"bad request {op!r}: {exc}"})]

    # -- one method per operation: (id, header, payload) -> frames ---------------------------

    async def _op_hello(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        return [encode({"id": rid, "ok": True, "version": VERSION, "append_only": self.append_only})]

    async def _op_put(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        await self.backend.put(checked_key(str(h["key"])), payload)
        return [encode({"id": rid, "ok": True})]

    async def _op_get(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        length = h.get("length")
        key = checked_key(str(h["key"]))
        data = await self.backend.get(key, int(h.get("offset", 0)), None if length is None else int(length))
        return [encode({"id": rid, "ok": True}, data)]

    async def _op_stat(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        info = await self.backend.stat(checked_key(str(h["key"])))
        return [encode({"id": rid, "ok": True, "size": info.size})]

    async def _op_list(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        page: list[list[Any]] = []
        frames: list[Frame] = []
        async for info in self.backend.list(str(h.get("prefix", ""))):
            page.append([info.key, info.size])
            if len(page) >= LIST_PAGE:
                frames.append(encode({"id": rid, "ok": True, "more": True}, msgpack.packb(page)))
                page = []
        frames.append(encode({"id": rid, "ok": True, "more": False}, msgpack.packb(page)))
        return frames

    async def _op_delete(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        key = checked_key(str(h["key"]))
        if self.append_only and not key.startswith(MUTABLE):
            raise self._refuse(f"delete {key}")
        await self.backend.delete(key)
        return [encode({"id": rid, "ok": True})]

    async def _op_exists(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        return [encode({"id": rid, "ok": True, "exists": await self.backend.exists()})]

    async def _op_create(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        await self.backend.create()
        return [encode({"id": rid, "ok": True})]

    async def _op_list_temporary(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        rows = [[t.key, t.size, t.modified] for t in await self.backend.list_temporary()]
        return [encode({"id": rid, "ok": True}, msgpack.packb(rows))]

    async def _op_delete_temporary(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        if self.append_only:
            raise self._refuse(f"delete the temporary file {h.get('key')}")
        await self.backend.delete_temporary(str(h["key"]))
        return [encode({"id": rid, "ok": True})]

    async def _op_usage(self, rid: Any, h: dict[str, Any], payload: bytes) -> list[Frame]:
        u = await self.backend.usage()
        return [encode({"id": rid, "ok": True, "usage": [u.bytes_used, u.objects, u.free_bytes]})]

    async def serve(self, reader: Any, writer: Any) -> None:
        """``reader``: readexactly (an asyncio or asyncssh stream); ``writer``: writelines, drain."""
        tasks: set[asyncio.Task] = set()

        async def one(header: dict[str, Any], payload: bytes) -> None:
            try:
                await self._answer(writer, await self.handle(header, payload))
            finally:
                self._slots.release()

        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    break
                await self._slots.acquire()
                task = asyncio.create_task(one(*frame))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)


async def _stdio() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def serve_stdio(root: Path, *, append_only: bool) -> int:
    """Serve on stdin/stdout until the client closes it; 0, or 1 after a protocol error
    (said on stderr, which SSH carries back to the client's log)."""
    if root.exists() and not root.is_dir():
        print(f"axisor-backup serve: {root} is not a folder", file=sys.stderr)
        return Exit.ERROR
    server = Server(root, append_only=append_only)
    reader, writer = await _stdio()
    try:
        await server.serve(reader, writer)
    except WireError as exc:
        print(f"axisor-backup serve: {exc}", file=sys.stderr)
        return Exit.ERROR
    finally:
        writer.close()
    return Exit.OK


__all__ = ["MUTABLE", "Server", "serve_stdio"]

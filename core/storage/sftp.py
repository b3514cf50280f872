"""SFTP storage through asyncssh.

Trust and authentication: core/storage/ssh_connect.py.

Writes go to a ``.tmp-*`` name beside the object, are fsynced where the server offers
it, then renamed with the SFTPv3 ``rename``, which refuses an existing target (OpenSSH
does it with link+unlink, atomically). ``posix-rename`` would silently replace an
object, which the protocol forbids. A crash leaves at worst a ``.tmp-*`` file, which
``list`` ignores.

One SSH connection carries every request (SFTP pipelines them); when it drops, the next
request opens a new one, and the retry layer re-runs the request that failed.
"""

from __future__ import annotations

import builtins
import asyncio
import contextlib
import posixpath
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncssh

from core.storage.backend import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectUnreadable,
    Payload,
    StorageError,
    StorageFull,
    StorageReadOnly,
    StorageUsage,
    TempInfo,
    checked_key,
)
from core.storage.retry import TransientError, cleanup
from core.storage.ssh_connect import HostKeyRefused, SSHEndpoint, parse_endpoint, reason

__all__ = ["SFTPBackend", "HostKeyRefused", "parse_endpoint"]

TMP_PREFIX = ".tmp-"


class SFTPBackend(SSHEndpoint):
    def __init__(self, host: str, **endpoint: Any) -> None:
        super().__init__(host, **endpoint)
        self.root = self.root.rstrip("/") or "."
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()
        self._made_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"SFTPBackend({self.location!r})"

    @property
    def location(self) -> str:
        root = self.root if self.root.startswith("/") else f"/~/{self.root}"
        return f"sftp://{self.username}@{self._host_text}:{self.port}{root}"

    # -- the connection ---------------------------------------------------------------------

    async def _client(self) -> asyncssh.SFTPClient:
        sftp = self._sftp
        if sftp is not None:
            return sftp
        async with self._lock:
            if self._sftp is None:
                await self._connect()
            assert self._sftp is not None
            return self._sftp

    async def _connect(self) -> None:
        conn = await self._ssh()
        try:
            self._sftp = await conn.start_sftp_client()
        except (OSError, asyncssh.Error) as exc:
            conn.close()
            raise TransientError(f"{self.location}: SFTP subsystem failed ({_reason(exc)})") from None
        self._conn = conn

    def _drop(self) -> None:
        """Forget a broken connection so the next request opens a new one."""
        conn, self._conn, self._sftp = self._conn, None, None
        self._made_dirs.clear()
        if conn is not None:
            conn.close()

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, checked_key(key))

    def _error(self, exc: BaseException, what: str) -> BaseException:
        where = f"{self.location}: {what}"
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, asyncssh.SFTPNoSuchFile):
            return ObjectNotFound(f"{where}: does not exist")
        if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
            return ObjectExists(f"{where}: already exists")
        if isinstance(exc, (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)):
            return StorageFull(f"{where}: no space left on the server")
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            if what.startswith(("write ", "delete ", "create ")):
                # The login may read but not write there (a read-only share, a folder of
                # another user): reading commands go on without a lock, writers exit 24.
                refused = StorageReadOnly(
                    f"{self.location}: the storage refuses writes (permission denied on the server): cannot {what}"
                )
                refused.reason = "permission denied on the server"
                return refused
            if what.startswith("read "):
                unreadable = ObjectUnreadable(f"{where}: permission denied on the server")
                unreadable.reason = "cannot be read (permission denied on the server)"
                return unreadable
            return StorageError(f"{where}: permission denied on the server")
        if isinstance(
            exc,
            (
                asyncssh.SFTPConnectionLost,
                asyncssh.SFTPNoConnection,
                asyncssh.DisconnectError,
                asyncssh.ChannelOpenError,
                ConnectionError,
                EOFError,
                BrokenPipeError,
            ),
        ):
            self._drop()
            return TransientError(f"{where}: connection lost ({_reason(exc)})")
        if isinstance(exc, asyncssh.SFTPError):
            return StorageError(f"{where}: {exc.reason or type(exc).__name__}")
        if isinstance(exc, OSError):
            self._drop()
            return TransientError(f"{where}: {_reason(exc)}")
        return exc

    async def _makedirs(self, sftp: asyncssh.SFTPClient, folder: str) -> None:
        if folder in self._made_dirs:
            return
        await sftp.makedirs(folder, exist_ok=True)
        self._made_dirs.add(folder)

    # -- writes -----------------------------------------------------------------------------

    async def put(self, key: str, data: Payload) -> None:
        final = self._path(key)
        folder = posixpath.dirname(final)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        what = f"write {key}"
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        sftp = await self._client()
        written = False
        try:
            await self._makedirs(sftp, folder)
            async with sftp.open(tmp, "wb") as f:
                written = True
                offset = 0
                for part in parts:
                    await f.write(bytes(part), offset)
                    offset += len(part)
                with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                    await f.fsync()
            await sftp.rename(tmp, final)
            written = False
        except asyncssh.SFTPNoSuchFile:
            # The folder went away behind our cache of made folders: make it again next try.
            self._made_dirs.discard(folder)
            raise TransientError(f"{self.location}: {what}: folder {folder} vanished") from None
        except asyncssh.SFTPFailure as exc:
            # SFTPv3 servers answer a rename onto an existing name with a bare failure.
            if await self._is_file(sftp, final):
                raise ObjectExists(f"{self.location}: {what}: already exists") from None
            raise self._error(exc, what) from None
        except Exception as exc:  # noqa: BLE001 - mapped to our errors
            raise self._error(exc, what) from None
        finally:
            if written and self._sftp is sftp:
                await cleanup(sftp.remove(tmp))

    async def _is_file(self, sftp: asyncssh.SFTPClient, path: str) -> bool:
        try:
            await sftp.stat(path)
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)
        what = f"read {key}"
        sftp = await self._client()
        try:
            async with sftp.open(path, "rb") as f:
                if length is None:
                    return await f.read(-1, offset)
                # Opened "rb": bytes, though asyncssh types read() as str | bytes.
                data = cast(bytes, await f.read(length, offset)) if length else b""
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, what) from None
        if len(data) != length:
            raise TransientError(
                f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data

    async def stat(self, key: str) -> ObjectInfo:
        sftp = await self._client()
        try:
            attrs = await sftp.stat(self._path(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"stat {key}") from None
        return ObjectInfo(key, int(attrs.size or 0))

    async def _walk(self, sftp: asyncssh.SFTPClient, folder: str, key_prefix: str, name_start: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        stack = [(folder, key_prefix, True)]
        while stack:
            path, prefix, top = stack.pop()
            try:
                names = [n async for n in sftp.scandir(path)]
            except asyncssh.SFTPNoSuchFile:
                continue
            for entry in names:
                name = entry.filename
                if isinstance(name, bytes):
                    name = name.decode("utf-8", "surrogateescape")
                if name in (".", "..") or name.startswith(TMP_PREFIX):
                    continue
                if top and not name.startswith(name_start):
                    continue
                key = f"{prefix}/{name}" if prefix else name
                kind = entry.attrs.type
                if kind == asyncssh.FILEXFER_TYPE_DIRECTORY:
                    stack.append((posixpath.join(path, name), key, False))
                elif kind == asyncssh.FILEXFER_TYPE_REGULAR:
                    out.append(ObjectInfo(key, int(entry.attrs.size or 0)))
        out.sort(key=lambda o: o.key)
        return out

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        folder_key, _, name_start = prefix.rpartition("/")
        folder = self._path(folder_key) if folder_key else self.root
        sftp = await self._client()
        try:
            found = await self._walk(sftp, folder, folder_key, name_start)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"list {prefix or '/'}") from None
        for info in found:
            yield info

    async def delete(self, key: str) -> None:
        sftp = await self._client()
        try:
            await sftp.remove(self._path(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"delete {key}") from None

    async def list_temporary(self) -> builtins.list[TempInfo]:
        """Every ``.tmp-*`` file under the root: uploads in progress or left by a crash."""
        sftp = await self._client()
        out: list[TempInfo] = []
        try:
            stack = [(self.root, "")]
            while stack:
                path, prefix = stack.pop()
                try:
                    entries = [e async for e in sftp.scandir(path)]
                except asyncssh.SFTPNoSuchFile:
                    continue
                for entry in entries:
                    name = entry.filename
                    if isinstance(name, bytes):
                        name = name.decode("utf-8", "surrogateescape")
                    if name in (".", ".."):
                        continue
                    key = f"{prefix}/{name}" if prefix else name
                    if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                        stack.append((posixpath.join(path, name), key))
                    elif name.startswith(TMP_PREFIX):
                        out.append(TempInfo(key, entry.attrs.size, float(entry.attrs.mtime or 0)))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list temporary files") from None
        return sorted(out, key=lambda t: t.key)

    async def delete_temporary(self, key: str) -> None:
        if not key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            raise StorageError(f"{self.location}: {key} is not a temporary file")
        sftp = await self._client()
        try:
            await sftp.remove(self._path(key))
        except asyncssh.SFTPNoSuchFile:
            pass
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"delete {key}") from None

    # -- the location -----------------------------------------------------------------------

    async def exists(self) -> bool:
        sftp = await self._client()
        try:
            return await self._is_file(sftp, posixpath.join(self.root, "config"))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "check the repository") from None

    async def create(self) -> None:
        sftp = await self._client()
        try:
            await self._makedirs(sftp, self.root)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "create the repository folder") from None

    async def usage(self) -> StorageUsage:
        sftp = await self._client()
        try:
            found = await self._walk(sftp, self.root, "", "")
            free: int | None
            try:
                vfs = await sftp.statvfs(self.root)
                free = int(vfs.bavail * vfs.frsize)
            except asyncssh.SFTPOpUnsupported:
                free = None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "measure usage") from None
        return StorageUsage(bytes_used=sum(i.size for i in found), objects=len(found), free_bytes=free)

    async def close(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()


_reason = reason

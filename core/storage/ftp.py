"""FTP and FTPS (explicit TLS, ``ftps://`` endpoints) through aioftp.

FTP has no conditional create and RNTO onto an existing name overwrites on most servers,
so a write checks the final name first, uploads to a ``.tmp-*`` name beside it, checks
again and renames. Two writers racing on one key is the remaining window; keys are
content-named, so both would write the same bytes. A broken upload leaves only a
``.tmp-*`` file, which ``list`` ignores.

A control connection carries one transfer at a time, so the backend keeps a small pool
of logged-in connections; a connection that failed is closed, never reused.
"""

from __future__ import annotations

import builtins
import asyncio
import contextlib
import posixpath
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import aioftp

from core.storage.backend import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectUnreadable,
    Payload,
    StorageError,
    StorageReadOnly,
    StorageUsage,
    TempInfo,
    checked_key,
)
from core.storage.credentials import key_values, read_credentials_file, refuse_insecure
from core.storage.retry import TransientError, cleanup
from core.storage.sftp import parse_endpoint

__all__ = ["FTPBackend", "read_password"]

TMP_PREFIX = ".tmp-"


def read_password(path: Path, where: str) -> tuple[str | None, str]:
    """(username or None, password) from a credentials file: ``password = ...`` (and
    optionally ``username = ...``) lines, or the whole file as the password."""
    text = read_credentials_file(path, where)
    fields = key_values(text, ("username", "password"))
    if "password" in fields:
        return fields.get("username"), fields["password"]
    password = text.rstrip("\r\n")
    if not password or "\n" in password:
        raise StorageError(f"{where}: credentials_file {path} holds no password line")
    return None, password


class _Secret:
    """Keeps a password out of repr() and tracebacks' locals dumps."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"


class FTPBackend:
    def __init__(
        self,
        host: str,
        *,
        port: int = 21,
        username: str | None = None,
        credentials_file: Path | None = None,
        root: str = "",
        tls: bool = False,
        ca_bundle: Path | None = None,
        timeout: float = 60.0,
        connections: int = 4,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.credentials_file = credentials_file
        self.root = root.rstrip("/") or "/"
        self.tls = tls
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self._idle: list[aioftp.Client] = []
        self._slots = asyncio.Semaphore(connections)
        self._password: _Secret | None = None
        self._made_dirs: set[str] = set()

    @classmethod
    def from_config(cls, loc: Any) -> FTPBackend:
        endpoint = loc.endpoint
        tls = endpoint.lower().startswith("ftps://")
        refuse_insecure(loc, endpoint)
        host, port, user, path = parse_endpoint(endpoint, 21)
        return cls(
            host,
            port=port,
            username=loc.username or user,
            credentials_file=loc.credentials_file,
            root=loc.path_prefix or path or "",
            tls=tls,
            ca_bundle=loc.ca_bundle,
            timeout=float(loc.timeout_seconds),
            connections=loc.concurrency,
        )

    def __repr__(self) -> str:
        return f"FTPBackend({self.location!r})"

    @property
    def location(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}{self.root if self.root.startswith('/') else '/' + self.root}"

    # -- connections ------------------------------------------------------------------------

    async def _connect(self) -> aioftp.Client:
        username = self.username
        password = ""
        if self.credentials_file is not None:
            file_user, secret = read_password(self.credentials_file, self.location)
            username = username or file_user
            password = secret
        if not username:
            username = "anonymous"
        client = aioftp.Client(socket_timeout=self.timeout, connection_timeout=self.timeout, path_timeout=self.timeout)
        try:
            await client.connect(self.host, self.port)
            if self.tls:
                context = ssl.create_default_context(cafile=str(self.ca_bundle) if self.ca_bundle else None)
                await client.upgrade_to_tls(context)
            await client.login(username, password)
        except aioftp.StatusCodeError as exc:
            client.close()
            if any(code.matches("530") for code in exc.received_codes):
                raise StorageError(f"{self.location}: login refused for {username}; check credentials_file") from None
            if self.tls and any(code.matches("5xx") for code in exc.received_codes):
                raise StorageError(f"{self.location}: the server refused TLS (AUTH TLS)") from None
            raise StorageError(f"{self.location}: cannot log in ({_codes(exc)})") from None
        except ssl.SSLCertVerificationError as exc:
            client.close()
            raise StorageError(
                f"{self.location}: TLS certificate not trusted ({exc.verify_message}); check ca_bundle"
            ) from None
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            client.close()
            raise TransientError(f"{self.location}: cannot connect ({_reason(exc)})") from None
        return client

    @contextlib.asynccontextmanager
    async def _client(self, what: str) -> AsyncIterator[aioftp.Client]:
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            healthy = False
            try:
                yield client
                healthy = True
            except (ObjectExists, ObjectNotFound):
                healthy = True  # an answer, not a broken connection
                raise
            except aioftp.StatusCodeError as exc:
                healthy = True
                if what.startswith(_WRITES) and _permission_refused(exc):
                    raise self._read_only(exc, what) from None
                if any(code.matches("550") for code in exc.received_codes):
                    raise ObjectNotFound(f"{self.location}: {what}: does not exist") from None
                if any(code.matches("452") or code.matches("552") for code in exc.received_codes):
                    from core.errors import StorageFull

                    raise StorageFull(f"{self.location}: {what}: no space left on the server") from None
                if any(code.matches("4xx") for code in exc.received_codes):
                    raise TransientError(f"{self.location}: {what}: {_codes(exc)}") from None
                raise StorageError(f"{self.location}: {what}: {_codes(exc)}") from None
            except StorageError:
                raise
            except (OSError, asyncio.TimeoutError, ConnectionError, EOFError) as exc:
                raise TransientError(f"{self.location}: {what}: connection failed ({_reason(exc)})") from None
            finally:
                if healthy:
                    self._idle.append(client)
                else:
                    client.close()

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, checked_key(key))

    def _read_only(self, exc: aioftp.StatusCodeError, what: str) -> StorageReadOnly:
        """A write the server refused for want of permission (a read-only login or folder):
        reading commands go on without a lock, writers stop with exit 24 (docs/CLI.md)."""
        refused = StorageReadOnly(
            f"{self.location}: the storage refuses writes (permission denied on the "
            f"server: {_codes(exc)}): cannot {what}"
        )
        refused.reason = "permission denied on the server"
        return refused

    async def _stat_size(self, client: aioftp.Client, path: str) -> int | None:
        try:
            info = await client.stat(path)
        except aioftp.StatusCodeError as exc:
            if any(code.matches("550") for code in exc.received_codes):
                return None
            raise
        if info.get("type") != "file":
            return None
        return int(info.get("size", 0))

    # -- writes -----------------------------------------------------------------------------

    async def put(self, key: str, data: Payload) -> None:
        final = self._path(key)
        folder = posixpath.dirname(final)
        tmp = posixpath.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex}")
        what = f"write {key}"
        parts = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
        async with self._client(what) as client:
            if await self._stat_size(client, final) is not None:
                raise ObjectExists(f"{self.location}: {what}: already exists")
            await self._ensure_dir(client, folder, what)
            uploaded = False
            try:
                async with client.upload_stream(tmp) as stream:
                    uploaded = True
                    for part in parts:
                        await stream.write(bytes(part))
                if await self._stat_size(client, final) is not None:
                    raise ObjectExists(f"{self.location}: {what}: already exists")
                await client.rename(tmp, final)
                uploaded = False
            except aioftp.StatusCodeError as exc:
                if any(code.matches("4xx") for code in exc.received_codes):
                    raise TransientError(f"{self.location}: {what}: {_codes(exc)}") from None
                if _permission_refused(exc):
                    raise self._read_only(exc, what) from None
                # A 550 here is a refusal (permissions, a name in the way, a folder removed
                # behind our cache of made folders), not a missing object.
                self._made_dirs.discard(folder)
                raise StorageError(f"{self.location}: {what}: the server refused ({_codes(exc)})") from None
            finally:
                if uploaded:
                    # Best effort on the same connection; if it is broken, the temp file
                    # stays and list() ignores it.
                    await cleanup(client.remove_file(tmp), 5)

    async def _ensure_dir(self, client: aioftp.Client, folder: str, what: str) -> None:
        """Make ``folder`` and its parents; another connection making the same folder at
        the same moment is not an error (MKD fails, and then the folder is there)."""
        if folder in self._made_dirs:
            return
        path = PurePosixPath(folder)
        for step in [*reversed(path.parents), path]:
            name = str(step)
            if name in ("/", ".", "") or name in self._made_dirs:
                continue
            try:
                await client.make_directory(name, parents=False)
            except aioftp.StatusCodeError as exc:
                if not await self._is_dir(client, name):
                    if _permission_refused(exc):
                        raise self._read_only(exc, what) from None
                    raise StorageError(f"{self.location}: {what}: cannot make folder {name} ({_codes(exc)})") from None
            self._made_dirs.add(name)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(key)
        what = f"read {key}"
        if length == 0:
            await self.stat(key)
            return b""
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            reusable = False
            try:
                chunks: list[bytes] = []
                got = 0
                stream = await client.download_stream(path, offset=offset)
                try:
                    async for block in stream.iter_by_block():
                        chunks.append(block)
                        got += len(block)
                        if length is not None and got >= length:
                            break
                    if length is None or got < length:
                        await stream.finish()  # the whole rest was sent: the server says 226
                        reusable = True
                    else:
                        stream.close()  # stopped early: this control connection is spent
                except BaseException:
                    stream.close()
                    raise
            except aioftp.StatusCodeError as exc:
                reusable = True
                if _permission_refused(exc):
                    # There, but not handed out to this login: a damaged object by name, as on
                    # the other backends, not a missing one.
                    unreadable = ObjectUnreadable(f"{self.location}: {what}: permission denied on the server")
                    unreadable.reason = "cannot be read (permission denied on the server)"
                    raise unreadable from None
                if any(code.matches("550") for code in exc.received_codes):
                    raise ObjectNotFound(f"{self.location}: {what}: does not exist") from None
                raise StorageError(f"{self.location}: {what}: {_codes(exc)}") from None
            except (OSError, asyncio.TimeoutError, ConnectionError, EOFError) as exc:
                raise TransientError(f"{self.location}: {what}: connection failed ({_reason(exc)})") from None
            finally:
                if reusable:
                    self._idle.append(client)
                else:
                    client.close()
        data = b"".join(chunks)
        if length is None:
            return data
        if len(data) < length:
            raise TransientError(
                f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data[:length]

    async def stat(self, key: str) -> ObjectInfo:
        what = f"stat {key}"
        async with self._client(what) as client:
            size = await self._stat_size(client, self._path(key))
        if size is None:
            raise ObjectNotFound(f"{self.location}: {what}: does not exist")
        return ObjectInfo(key, size)

    async def _walk(self, client: aioftp.Client, folder: str, key_prefix: str, name_start: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        if await self._is_dir(client, folder):
            for path, info in await client.list(folder, recursive=True):
                rel = PurePosixPath(path).relative_to(folder).as_posix()
                first, _, _ = rel.partition("/")
                name = PurePosixPath(path).name
                if info.get("type") != "file" or name.startswith(TMP_PREFIX):
                    continue
                if not first.startswith(name_start):
                    continue
                key = f"{key_prefix}/{rel}" if key_prefix else rel
                out.append(ObjectInfo(key, int(info.get("size", 0))))
        out.sort(key=lambda o: o.key)
        return out

    async def _is_dir(self, client: aioftp.Client, path: str) -> bool:
        try:
            info = await client.stat(path)
        except aioftp.StatusCodeError as exc:
            if any(code.matches("550") for code in exc.received_codes):
                return False
            raise
        return info.get("type") in ("dir", "cdir", "pdir")

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        folder_key, _, name_start = prefix.rpartition("/")
        folder = self._path(folder_key) if folder_key else self.root
        async with self._client(f"list {prefix or '/'}") as client:
            found = await self._walk(client, folder, folder_key, name_start)
        for info in found:
            yield info

    async def delete(self, key: str) -> None:
        async with self._client(f"delete {key}") as client:
            await client.remove_file(self._path(key))

    async def list_temporary(self) -> builtins.list[TempInfo]:
        """Every ``.tmp-*`` file under the root (MLSD's ``modify`` fact gives its age; on a
        server without it every such file counts as new, so none is ever judged old)."""
        out: list[TempInfo] = []
        async with self._client("list temporary files") as client:
            if await self._is_dir(client, self.root):
                for path, info in await client.list(self.root, recursive=True):
                    if info.get("type") != "file" or not PurePosixPath(path).name.startswith(TMP_PREFIX):
                        continue
                    rel = PurePosixPath(path).relative_to(self.root).as_posix()
                    out.append(TempInfo(rel, int(info.get("size", 0)), _mlsd_time(info.get("modify"))))
        return sorted(out, key=lambda t: t.key)

    async def delete_temporary(self, key: str) -> None:
        if not key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            raise StorageError(f"{self.location}: {key} is not a temporary file")
        with contextlib.suppress(ObjectNotFound):
            async with self._client(f"delete {key}") as client:
                await client.remove_file(self._path(key))

    # -- the location -----------------------------------------------------------------------

    async def exists(self) -> bool:
        async with self._client("check the repository") as client:
            return await self._stat_size(client, posixpath.join(self.root, "config")) is not None

    async def create(self) -> None:
        what = "create the repository folder"
        async with self._client(what) as client:
            await self._ensure_dir(client, self.root, what)

    async def usage(self) -> StorageUsage:
        async with self._client("measure usage") as client:
            found = await self._walk(client, self.root, "", "")
        return StorageUsage(bytes_used=sum(i.size for i in found), objects=len(found), free_bytes=None)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 5)
            client.close()


def _mlsd_time(value: object) -> float:
    """MLSD ``modify`` (``YYYYMMDDHHMMSS[.sss]``, UTC) -> epoch seconds; ``time.time()`` when
    absent or unreadable, so a file of unknown age always counts as young."""
    import time
    from datetime import datetime, timezone

    try:
        text = str(value).split(".")[0]
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return time.time()


_WRITES = ("write ", "delete ")
# What servers say with a 550 (or 553, 532) that refuses for want of permission, not for a
# missing file: pyftpdlib "Not enough privileges.", vsftpd "Permission denied.", ProFTPD
# "...: Permission denied", IIS "Access is denied.".
_PERMISSION_WORDS = ("privilege", "permission", "denied", "not allowed", "read-only", "read only")


def _permission_refused(exc: aioftp.StatusCodeError) -> bool:
    if any(code.matches("532") for code in exc.received_codes):
        return True  # "Need account for storing files"
    if not any(code.matches("550") or code.matches("553") for code in exc.received_codes):
        return False
    text = " ".join(str(i) for i in exc.info).lower() if exc.info else ""
    return any(word in text for word in _PERMISSION_WORDS)


def _codes(exc: aioftp.StatusCodeError) -> str:
    got = ",".join(str(c) for c in exc.received_codes)
    info = " ".join(str(i).strip() for i in exc.info)[:200] if exc.info else ""
    return f"server answered {got}" + (f": {info}" if info else "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__

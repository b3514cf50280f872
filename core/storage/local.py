"""The local filesystem backend.

Durability order for every put: write a temp file in the destination folder, fsync it,
hard-link it to its final name (fails if the name exists: no overwrite, no race), fsync
the folder, unlink the temp name. A crash leaves either no object or a whole one, plus
at worst a ``.tmp-*`` file that ``list`` ignores.

Run as root in a repository folder that belongs to another user (the server's
``postgres``, whose ``wal-push`` writes here), every file and folder created is handed to
that user (chown), as the repository's own files are: a root-owned 0600 lock or pack would
be unreadable to ``wal-push`` and stall WAL archiving (core/storage/owner.py).
"""

from __future__ import annotations

import builtins
import asyncio
import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from core.storage.owner import OsUser, chown_target
from core.storage.backend import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    Payload,
    StorageError,
    StorageFull,
    ObjectUnreadable,
    StorageReadOnly,
    StorageUsage,
    TempInfo,
    checked_key,
)

TMP_PREFIX = ".tmp-"
# A write refused for good, not by chance: a read-only file system or mount, an immutable
# (chattr +i) folder, no permission.
REFUSED = (errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(location: str, what: str, exc: OSError) -> StorageError | StorageFull:
    """The error for a failed write of ``what``: full, refused, or anything else."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"{location}: no space left while writing {what}; free space or move the repository")
    if exc.errno in REFUSED:
        refused = StorageReadOnly(f"{location}: the storage refuses writes ({exc.strerror}): cannot write {what}")
        refused.reason = exc.strerror or "refused"
        return refused
    return StorageError(f"{location}: cannot write {what}: {exc.strerror}")


class LocalBackend:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._owner: OsUser | None = None
        self._owner_known = False

    def _handover(self) -> OsUser | None:
        """Who new files and folders are handed to (root in another user's repository), else None."""
        if self._owner_known:
            return self._owner
        owner = chown_target(self.root)
        if owner is not None or os.geteuid() != 0 or self.root.exists():
            self._owner, self._owner_known = owner, True
        return owner

    def _make_folder(self, folder: Path, owner: OsUser | None) -> None:
        if owner is None:
            folder.mkdir(parents=True, exist_ok=True)
            return
        if folder.is_dir():
            return
        if folder != self.root:
            self._make_folder(folder.parent, owner)
        try:
            folder.mkdir()
        except FileExistsError:
            return
        with contextlib.suppress(OSError):  # best effort: other_user_warning has said who runs this
            os.chown(folder, owner.uid, owner.gid)

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).split("/"))

    # -- writes -------------------------------------------------------------------------

    def _put_sync(self, key: str, data: Payload) -> None:
        final = self._path(key)
        folder = final.parent
        tmp = folder / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        created = False
        owner = self._handover()
        try:
            self._make_folder(folder, owner)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
            try:
                if owner is not None:
                    with contextlib.suppress(OSError):
                        os.fchown(fd, owner.uid, owner.gid)
                _write_parts(fd, [data] if isinstance(data, (bytes, bytearray, memoryview)) else data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise ObjectExists(f"{self.location}: object {key} already exists") from None
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise write_error(self.location, key, exc) from None
        finally:
            if created:  # never created (a read-only mount says EROFS, not ENOENT, to unlink)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass  # the storage went away meanwhile: `list` ignores .tmp- files

    async def put(self, key: str, data: Payload) -> None:
        await asyncio.to_thread(self._put_sync, key, data)

    # -- reads --------------------------------------------------------------------------

    def _get_sync(self, key: str, offset: int, length: int | None) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as f:
                if length is None:
                    f.seek(offset)
                    return f.read()
                data = os.pread(f.fileno(), length, offset)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.location}: object {key} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                unreadable = ObjectUnreadable(f"{self.location}: cannot read {key}: {exc.strerror}")
                unreadable.reason = f"cannot be read ({exc.strerror})"
                raise unreadable from None
            raise StorageError(f"{self.location}: cannot read {key}: {exc.strerror}") from None
        if len(data) != length:
            raise StorageError(
                f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get_sync, key, offset, length)

    def get_sync(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Blocking read for callers already on a worker thread (restore, verify)."""
        return self._get_sync(key, offset, length)

    async def stat(self, key: str) -> ObjectInfo:
        try:
            st = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.location}: object {key} does not exist") from None
        return ObjectInfo(key, st.st_size)

    def _list_sync(self, prefix: str) -> list[ObjectInfo]:
        # A prefix is a folder ("data/") or a folder plus the start of a name.
        folder_key, _, name_start = prefix.rpartition("/")
        base = self._path(folder_key) if folder_key else self.root
        out: list[ObjectInfo] = []
        stack = [(base, folder_key)]
        while stack:
            folder, key_prefix = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX):
                    continue
                key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
                if folder is base and not entry.name.startswith(name_start):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), key))
                elif entry.is_file(follow_symlinks=False):
                    out.append(ObjectInfo(key, entry.stat(follow_symlinks=False).st_size))
        out.sort(key=lambda o: o.key)
        return out

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        for info in await asyncio.to_thread(self._list_sync, prefix):
            yield info

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(os.unlink, self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.location}: object {key} does not exist") from None
        except OSError as exc:
            if exc.errno in REFUSED:
                raise StorageReadOnly(
                    f"{self.location}: the storage refuses writes ({exc.strerror}): cannot delete {key}"
                ) from None
            raise StorageError(f"{self.location}: cannot delete {key}: {exc.strerror}") from None

    async def exists(self) -> bool:
        return await asyncio.to_thread((self.root / "config").exists)

    async def create(self) -> None:
        def mk() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            owner = self._handover()
            for sub in ("data", "index", "snapshots", "keys", "locks"):
                self._make_folder(self.root / sub, owner)
            for i in range(256):
                self._make_folder(self.root / "data" / f"{i:02x}", owner)

        try:
            await asyncio.to_thread(mk)
        except OSError as exc:
            if exc.errno in REFUSED:
                raise StorageReadOnly(
                    f"{self.location}: the storage refuses writes ({exc.strerror}): cannot create the repository folder"
                ) from None
            raise StorageError(f"{self.location}: cannot create repository folder: {exc.strerror}") from None

    def _list_temporary_sync(self) -> builtins.list[TempInfo]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except FileNotFoundError:  # its writer finished meanwhile
                        continue
                    out.append(TempInfo(os.path.relpath(path, self.root).replace(os.sep, "/"), st.st_size, st.st_mtime))
        return sorted(out, key=lambda t: t.key)

    async def list_temporary(self) -> builtins.list[TempInfo]:
        """Every ``.tmp-*`` file under the root: uploads in progress or left by a crash."""
        return await asyncio.to_thread(self._list_temporary_sync)

    async def delete_temporary(self, key: str) -> None:
        if not key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            raise StorageError(f"{self.location}: {key} is not a temporary file")
        try:
            await asyncio.to_thread(os.unlink, self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise write_error(self.location, f"(delete) {key}", exc) from None

    def _usage_sync(self) -> StorageUsage:
        used = count = 0
        for _dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    continue
                try:
                    used += os.stat(os.path.join(_dirpath, name)).st_size
                except FileNotFoundError:  # pruned while we walked
                    continue
                count += 1
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            free = None
        return StorageUsage(bytes_used=used, objects=count, free_bytes=free)

    async def usage(self) -> StorageUsage:
        """Bytes and objects in the repository, and free space on its filesystem."""
        return await asyncio.to_thread(self._usage_sync)

    async def close(self) -> None:
        return None


def _write_parts(fd: int, parts) -> None:
    """Gathered writes of many buffers (writev), resuming correctly after short writes."""
    # Empty parts are dropped: writev reports 0 for them, which would never advance i.
    pending = [p for p in parts if len(p)]
    i = 0
    while i < len(pending):
        written = os.writev(fd, pending[i : i + 512])  # stay under IOV_MAX
        while written and i < len(pending):
            n = len(pending[i])
            if written >= n:
                written -= n
                i += 1
            else:
                pending[i] = memoryview(pending[i])[written:]  # a short write: resume inside it
                written = 0

"""The one storage protocol every location implements.

Keys are slash-separated names such as ``data/ab/ab12...`` or ``snapshots/<hex>``.
Objects are immutable: ``put`` never overwrites, so a half-finished writer can never
damage what another reader relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.errors import AxisorError, Exit, StorageFull


class StorageError(AxisorError):
    """A storage operation failed; the message names the location and the key."""


class StorageReadOnly(StorageError):
    """The storage refuses writes: a read-only file system or mount, an immutable folder,
    no permission to write. Reading commands go on without a lock; writers stop (exit 24)."""

    exit_code = Exit.READ_ONLY
    reason = "writes refused"  # short: "Read-only file system", "Operation not permitted"


class LocationRefused(StorageError):
    """The location refuses this operation by policy: an append-only location (core/storage/
    serve.py) accepts new objects but no delete or replacement outside ``locks/`` (exit 25)."""

    exit_code = Exit.REFUSED


class ObjectLocked(LocationRefused):
    """This object may not be deleted yet: S3 Object Lock holds it until a date (exit 25).
    Prune keeps what is locked and removes it at a later run (core/maintenance/prune.py)."""


class ObjectNotFound(StorageError):
    pass


class ObjectUnreadable(StorageError):
    """The object is there but the storage refuses to hand it out (no read permission on
    that one object). Not a storage outage: the repository reports the object as damaged
    by name and goes on with the others, as for one that does not open."""

    reason = "permission denied"


class ObjectExists(StorageError):
    pass


async def replace_object(backend: Backend, key: str, old: bytes, new: bytes) -> None:
    """Put ``new`` where ``old`` is: objects never change in place, so delete, then put;
    should the put fail, ``old`` is put back. A delete the location refuses (LocationRefused)
    raises before anything changed. For the few same-name rewrites (config, re-sealing); the
    caller holds the exclusive lock, so no reader looks in between."""
    await backend.delete(key)
    try:
        await backend.put(key, new)
    except BaseException:
        await backend.put(key, old)
        raise


def innermost(backend: object) -> object:
    """The provider's backend under the retrying and bandwidth wrappers (each keeps the one
    it wraps as ``inner``): where a provider's own answers live (``append_only``,
    ``locked_until``, ``lock_state``)."""
    while hasattr(backend, "inner"):
        backend = backend.inner
    return backend


def checked_key(key: str) -> str:
    """``key`` if it is a safe relative object key (``data/ab/abcd...``); StorageError
    otherwise. Every backend maps keys onto paths or names with it, so none can escape
    its root or prefix."""
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise StorageError(f"invalid object key {key!r}")
    return key


__all__ = [
    "Backend",
    "LocationRefused",
    "ObjectLocked",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectUnreadable",
    "Payload",
    "as_bytes",
    "payload_size",
    "StorageError",
    "StorageFull",
    "StorageUsage",
    "TempInfo",
    "backend_usage",
    "delete_temporary",
    "list_temporary",
    "checked_key",
    "innermost",
]


Payload = bytes | memoryview | Sequence[bytes]


def as_bytes(data: Payload) -> bytes | memoryview:
    """One contiguous buffer, for backends that cannot write a list of parts."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return b"".join(data)


def payload_size(data: Payload) -> int:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    return sum(len(p) for p in data)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class TempInfo:
    """A leftover of an upload that never finished: a ``.tmp-*`` file beside the objects
    (local, SFTP, FTP) or an incomplete multipart upload (S3). Never part of the repository."""

    key: str  # what ``delete_temporary`` takes (a relative path, or "KEY?uploadId=ID")
    size: int | None
    modified: float  # seconds since the epoch: last write, or when the upload began


async def list_temporary(backend: "Backend") -> list[TempInfo]:
    """``backend.list_temporary()`` where the backend has leftovers of its own kind (it is
    optional: Azure keeps uncommitted blocks out of sight and drops them after 7 days)."""
    fn = getattr(backend, "list_temporary", None)
    return [] if fn is None else await fn()


async def delete_temporary(backend: "Backend", key: str) -> None:
    """``backend.delete_temporary(key)`` for a key its ``list_temporary`` gave (optional too:
    a backend without leftovers of its own kind lists none, so is never asked)."""
    delete: Callable[[str], Awaitable[None]] = getattr(backend, "delete_temporary")
    await delete(key)


@dataclass(frozen=True, slots=True)
class StorageUsage:
    """What a location holds, for monitoring; None where the backend cannot tell."""

    bytes_used: int | None = None
    objects: int | None = None
    free_bytes: int | None = None


async def backend_usage(backend: "Backend") -> StorageUsage | None:
    """``backend.usage()`` when the backend offers it (it is optional), else None."""
    usage = getattr(backend, "usage", None)
    if usage is None:
        return None
    return await usage()


@runtime_checkable
class Backend(Protocol):
    """Async object storage. Implementations: core/storage/local.py (more in later work)."""

    @property
    def location(self) -> str:
        """A human-readable name for messages: a path or URL without credentials."""
        ...

    async def put(self, key: str, data: Payload) -> None:
        """Store ``data`` (one buffer or a list of parts, written back to back) durably
        under ``key``; raise ObjectExists if it is there already."""
        ...

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the whole object or ``length`` bytes from ``offset``; ObjectNotFound if absent."""
        ...

    async def stat(self, key: str) -> ObjectInfo: ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a folder such as ``"data/"``)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def exists(self) -> bool:
        """Whether the location itself (the repository root) exists."""
        ...

    async def create(self) -> None:
        """Make the location ready for a new repository."""
        ...

    async def close(self) -> None: ...

"""WAL archiving: ``wal-push`` (archive_command) and ``wal-fetch`` (restore_command).

A pushed file (a WAL segment, a timeline ``.history`` file, a ``.backup`` history file or a
``.partial`` segment) is stored as deduplicated data chunks in packs like any other data,
then described by a *WAL manifest*: the object ``wal/<name>``, sealed JSON with its own
associated data (``axisor/wal/v1`` || name), written without overwrite after the packs and
the index naming them are durable (docs/FORMAT.md, "WAL manifests"). The manifest is the
commit point: a push killed before it leaves at worst unreferenced chunks, never a
manifest that names missing or partial content.

Pushing a name that is already archived succeeds when the content is identical (the
archiver retries after a crash between our exit and its bookkeeping) and fails loudly when
it differs (two clusters archiving into one repository, or a reused name after a restore
without a timeline switch).

This module is on the archive_command path: it imports nothing heavy (no psycopg).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from core import crypto
from core.errors import AxisorError, DamagedObject, Exit, UsageError
from core.repository.format import BlobType
from core.repository.repo_config import bounded_get
from core.repository.repository import Repository
from core.sources.postgres.wal_markers import stable_identity
from core.storage.backend import ObjectExists, ObjectNotFound, ObjectUnreadable

WAL = "wal"
AD_WAL = b"axisor/wal/v1"

_SEGMENT = re.compile(r"[0-9A-F]{24}")
_NAME = re.compile(r"[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")


class WalConflict(AxisorError):
    """A WAL file with this name is archived already, with different content."""

    exit_code = Exit.WAL_CONFLICT


class WalNotFound(AxisorError):
    """wal-fetch: the repository has no such WAL file (recovery ends here)."""

    exit_code = Exit.ERROR


def is_wal_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def is_segment(name: str) -> bool:
    return bool(_SEGMENT.fullmatch(name))


def wal_key(name: str) -> str:
    return f"{WAL}/{name}"


@dataclass(frozen=True, slots=True)
class WalManifest:
    name: str
    size: int
    sha256: str  # of the whole file
    blobs: tuple[str, ...]  # data blob ids (hex), in order
    pushed: str  # ISO 8601 with offset
    host: str = ""

    def encode(self) -> bytes:
        d = asdict(self)
        d["v"] = 1
        d["blobs"] = list(self.blobs)
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> WalManifest:
        d = json.loads(raw)
        if d.pop("v", None) != 1:
            raise ValueError("WAL manifest is not version 1")
        m = cls(
            name=str(d["name"]),
            size=int(d["size"]),
            sha256=str(d["sha256"]),
            blobs=tuple(str(b) for b in d["blobs"]),
            pushed=str(d["pushed"]),
            host=str(d.get("host", "")),
        )
        datetime.fromisoformat(m.pushed)
        return m

    @property
    def pushed_at(self) -> datetime:
        return datetime.fromisoformat(self.pushed)


@dataclass(frozen=True, slots=True)
class PushResult:
    name: str
    size: int
    already: bool  # identical content was archived before: nothing written
    sha256: str = ""
    from_marker: bool = False  # answered by a push ahead (wal_ahead), the repository unopened
    pushed_ahead: tuple[str, ...] = ()  # other files the server had ready, stored by this call
    identity: str = ""  # the file's stable identity as read (wal_markers.stable_identity), "" when unsure


def _ad(name: str) -> bytes:
    return AD_WAL + name.encode("ascii")


# A manifest lists a WAL file's blob ids: a few KiB for a 1 GiB segment (the largest
# wal_segment_size PostgreSQL allows). Anything larger was not written by us.
MAX_WAL_MANIFEST = 1024 * 1024
WAL_WINDOW = 4 * 1024 * 1024  # the chunker's read window for a push


async def load_manifest(repo: Repository, name: str) -> WalManifest | None:
    """The manifest of ``name``, None when it is not archived; damaged -> DamagedObject."""
    key = wal_key(name)
    try:
        sealed = await bounded_get(repo.backend, key, MAX_WAL_MANIFEST, "WAL manifest")
    except ObjectNotFound:
        return None
    except ObjectUnreadable as exc:
        raise DamagedObject(key, exc.reason) from None
    try:
        plain = repo.cipher.open(sealed, _ad(name))
    except crypto.DecryptError as exc:
        raise DamagedObject(key, f"does not authenticate ({exc}); truncated, tampered or renamed") from None
    try:
        m = WalManifest.decode(plain)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise DamagedObject(key, f"malformed WAL manifest: {exc}") from None
    if m.name != name:
        raise DamagedObject(key, f"manifest names {m.name!r}, not {name!r}")
    return m


async def _own_manifest(repo: Repository, name: str) -> WalManifest | None:
    """A write-only key's view of an archived ``name``: it cannot open the manifest, so it
    answers from what this host recorded pushing (core/repository/own_cache.py). Archived
    by another host or before the record: a WalConflict saying why it cannot compare."""
    try:
        await repo.backend.stat(wal_key(name))
    except ObjectNotFound:
        return None
    mine = repo.own.wal(name) if repo.own is not None else None
    if mine is None:
        raise WalConflict(
            f"WAL file {name} is already archived and this host's write-only key cannot read it to "
            "compare: push it with a full key (or check with `axisor-backup wal-list` there); "
            "is a second cluster archiving into this repository?"
        )
    size, digest = mine
    return WalManifest(name=name, size=size, sha256=digest, blobs=(), pushed="", host="this host")


def _same(m: WalManifest, size: int, digest: str) -> bool:
    return m.size == size and m.sha256 == digest


def _conflict(name: str, m: WalManifest, size: int, digest: str) -> WalConflict:
    return WalConflict(
        f"WAL file {name} is already archived with different content (archived: {m.size} bytes, "
        f"sha256 {m.sha256[:16]}..., pushed {m.pushed} from {m.host or '?'}; this one: {size} bytes, "
        f"sha256 {digest[:16]}...). Is a second cluster archiving into this repository?"
    )


def _file_digest(f) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    while piece := f.read(1024 * 1024):
        h.update(piece)
        size += len(piece)
    return size, h.hexdigest()


async def push(repo: Repository, path: Path) -> PushResult:
    """Archive one WAL file; durable when this returns. The caller holds a shared lock.

    The index is not loaded: WAL content rarely deduplicates, and a push must not slow down
    as the repository grows. A repeated push is answered from the existing manifest. The
    file is read once, straight into the chunker, and hashed as it is read (no copy of it
    in memory: parallel pushes stay within a few windows' memory)."""
    from core.backup.stream import StreamWriter

    name = path.name
    if not is_wal_name(name):
        raise UsageError(f"wal-push: {name!r} is not a WAL file name (expected e.g. 000000010000000000000001)")
    try:
        f = open(path, "rb", buffering=0)
    except OSError as exc:
        raise UsageError(f"wal-push: cannot read {path}: {exc.strerror}") from None
    with f:
        # The file as read (a marker's identity, wal_markers.py): stat before and after.
        before, read_started = os.fstat(f.fileno()), time.time_ns()
        if repo.write_only:
            existing = await _own_manifest(repo, name)
        else:
            existing = await load_manifest(repo, name)
        if existing is not None:
            try:
                size, digest = await asyncio.get_running_loop().run_in_executor(repo.executor, _file_digest, f)
            except OSError as exc:
                raise UsageError(f"wal-push: cannot read {path}: {exc.strerror}") from None
            if _same(existing, size, digest):
                ident = stable_identity(before, os.fstat(f.fileno()), read_started) if size == before.st_size else ""
                return PushResult(name, size, True, digest, identity=ident)
            raise _conflict(name, existing, size, digest)
        h = hashlib.sha256()

        def observe(buf: bytearray, start: int, end: int) -> None:  # every byte, in order, on the chunker's thread
            h.update(memoryview(buf)[start:end])

        # A small window and one seal at a time: the parallel pushes (wal_ahead) keep the
        # workers busy, and four of them stay within ~100 MiB.
        writer = StreamWriter(repo, slots=1, window=WAL_WINDOW)
        try:
            try:
                ids, size = await writer.store(f, observe=observe)
            except OSError as exc:
                raise UsageError(f"wal-push: cannot read {path}: {exc.strerror}") from None
            await writer.drain()
            ident = stable_identity(before, os.fstat(f.fileno()), read_started) if size == before.st_size else ""
            await repo.flush()  # packs, then the index naming them: durable before the manifest
        except BaseException:
            await repo.abort()
            raise
    digest = h.hexdigest()
    m = WalManifest(
        name=name,
        size=size,
        sha256=digest,
        blobs=tuple(i.hex() for i in ids),
        pushed=datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds"),
        host=socket.gethostname(),
    )
    plain = m.encode()
    try:
        await repo.backend.put(wal_key(name), repo.cipher.seal(plain, _ad(name)))
        if repo.own is not None:
            repo.own.put_wal(name, size, digest)
    except ObjectExists:
        # A concurrent push of the same name won the race: same rule as above.
        other = await (_own_manifest(repo, name) if repo.write_only else load_manifest(repo, name))
        if other is None or not _same(other, size, digest):
            raise _conflict(name, other or m, size, digest) from None
        return PushResult(name, size, True, digest, identity=ident)
    return PushResult(name, size, False, digest, identity=ident)


async def fetch(repo: Repository, name: str, dest: Path) -> int:
    """Write WAL file ``name`` to ``dest`` (temp + rename), checked against its manifest.

    Missing -> WalNotFound. The index must be loaded (``repo.load_index()``)."""
    if not is_wal_name(name):
        raise WalNotFound(f"{name!r} is not a WAL file name")
    m = await load_manifest(repo, name)
    if m is None:
        raise WalNotFound(f"WAL file {name} is not in the repository")
    h = hashlib.sha256()
    tmp = dest.parent / f".{dest.name}.axisor-{os.getpid()}.tmp"
    written = 0
    try:
        with open(tmp, "wb") as f:
            for hex_id in m.blobs:
                chunk = await repo.load_blob(BlobType.DATA, bytes.fromhex(hex_id))
                h.update(chunk)
                f.write(chunk)
                written += len(chunk)
        if written != m.size or h.hexdigest() != m.sha256:
            raise DamagedObject(
                wal_key(name), f"content does not match its manifest ({written} bytes restored, {m.size} expected)"
            )
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return written


async def list_names(repo: Repository) -> list[str]:
    return [
        info.key.rsplit("/", 1)[-1]
        async for info in repo.backend.list(f"{WAL}/")
        if is_wal_name(info.key.rsplit("/", 1)[-1])
    ]


# -- the archive's shape: segments, timelines, gaps ---------------------------------------


def segment_number(name: str, segment_size: int) -> tuple[int, int]:
    """(timeline, segment number) of a segment name, for a given segment size."""
    per_log = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:24], 16)


def segment_name(timeline: int, number: int, segment_size: int) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def find_gaps(names: list[str], segment_size: int) -> list[tuple[str, str]]:
    """Missing runs (first missing, last missing) between each timeline's first and last segment."""
    by_tli: dict[int, list[int]] = {}
    for n in names:
        if is_segment(n):
            tli, no = segment_number(n, segment_size)
            by_tli.setdefault(tli, []).append(no)
    gaps = []
    for tli, nums in sorted(by_tli.items()):
        nums.sort()
        for a, b in zip(nums, nums[1:]):
            if b > a + 1:
                gaps.append((segment_name(tli, a + 1, segment_size), segment_name(tli, b - 1, segment_size)))
    return gaps

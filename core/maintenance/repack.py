"""Copy the still-used blobs of mostly-unused packs into new packs.

Sealed blobs are copied as they are: a blob's associated data binds its type, id and
compression flag, never the pack or offset it sits in, so the bytes stay valid anywhere.
Each copied blob is opened first (decrypt, decompress, id check) so damage is never
carried into a new pack and then mistaken for good data once the old pack is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core import crypto
from core.errors import DamagedObject
from core.repository.blobs import open_blob, reseal_blob
from core.repository.format import pack_key
from core.repository.index import IndexedPack, PackEntry
from core.repository.packer import Packer
from core.repository.repository import Repository
from core.storage.backend import ObjectExists, ObjectNotFound, StorageError

# A sealed blob is flag | nonce (the packer's "head") then ciphertext | tag.
_HEAD = 1 + crypto.NONCE_SIZE

# Blobs closer than this in one pack are fetched with one ranged read.
_READ_GAP = 256 * 1024

Progress = Callable[[int], None]  # bytes of old packs processed so far


def _runs(entries: list[PackEntry]) -> list[list[PackEntry]]:
    runs: list[list[PackEntry]] = []
    for e in sorted(entries, key=lambda e: e.offset):
        if runs and e.offset - (runs[-1][-1].offset + runs[-1][-1].length) <= _READ_GAP:
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def _check(
    repo: Repository, key: str, data: bytes, start: int, run: list[PackEntry]
) -> list[tuple[PackEntry, bytes, bytes]]:
    """Open every blob of one read (worker thread); return (entry, head, body) to pack. A blob
    under a key retired by `key rotate` is sealed again under the current key: a repack never
    carries the old key into a new pack (`prune --rewrite` relies on it)."""
    out = []
    cipher = repo.cipher
    current = cipher.current_only() if isinstance(cipher, crypto.Cipher) and cipher.retired else None
    for e in run:
        sealed = data[e.offset - start : e.offset - start + e.length]
        open_blob(cipher, e.type, e.id, sealed, e.raw_length, key)
        fresh = reseal_blob(cipher, current, e.type, e.id, sealed) if current is not None else None  # type: ignore[arg-type]
        if fresh is None:
            out.append((e, bytes(sealed[:_HEAD]), bytes(sealed[_HEAD:])))
        else:
            out.append((e, *fresh))
    return out


async def repack(
    repo: Repository, packs: list[tuple[bytes, list[PackEntry]]], pack_size: int, on_progress: Progress | None = None
) -> list[IndexedPack]:
    """Write the given blobs (pack id -> the entries to keep) into new packs; return the new
    packs with their entries, put and durable, not yet indexed."""
    loop = asyncio.get_running_loop()
    written: list[IndexedPack] = []
    packer = Packer()
    done = 0

    async def ship() -> None:
        nonlocal packer
        if not packer.entries:
            return
        full, packer = packer, Packer()
        pack_id, parts, entries = await loop.run_in_executor(repo.executor, full.finalize, repo.cipher)
        try:
            await repo.backend.put(pack_key(pack_id), parts)
        except ObjectExists:
            pass  # content-named: the same bytes are there already
        written.append((pack_id, full.size, list(entries)))

    for pack_id, keep in packs:
        key = pack_key(pack_id)
        for run in _runs(keep):
            start = run[0].offset
            length = run[-1].offset + run[-1].length - start
            try:
                data = await repo.backend.get(key, start, length)
            except ObjectNotFound:
                raise DamagedObject(key, "pack is missing, so its used blobs cannot be repacked") from None
            except StorageError as exc:
                raise DamagedObject(key, f"cannot be read for repacking: {exc}") from None
            blobs = await loop.run_in_executor(repo.executor, _check, repo, key, data, start, run)
            for e, head, body in blobs:
                packer.add(e.type, e.id, head, body, e.raw_length)
                if packer.size >= pack_size:
                    await ship()
            done += length
            if on_progress:
                on_progress(done)
    await ship()
    return written

"""Logical backup: one REPEATABLE READ READ ONLY transaction exports its snapshot;
pg_dump (``-Fc -Z0 --snapshot=ID``, started by ``start_dump`` (dump_start.py) before the
repository is open) dumps exactly that state while the same transaction reads the catalog and counts
every table's rows (dump_metadata.py), so the metadata describes the dump exactly.
pg_dump's stdout is chunked as it arrives (StreamWriter): no temp file, flat memory; each
table's data block is hashed as it streams into the repository (dumpsum.py), so a backup
costs the server nothing beyond pg_dump and a row count. Beside it ``pg_dumpall
--globals-only`` (pgglobals.py) records the cluster's roles; ``backup_logical`` commits
the snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import psycopg

from core.backup.run import DumpProgress
from core.backup.single_file import single_file_snapshot
from core.backup.stream import StreamWriter
from core.config import DatabaseConfig
from core.errors import DatabaseError
from core.repository.format import BlobType
from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.sources.postgres import dumpsum, names, pgglobals
from core.sources.postgres.child import Running, StoredOutput, all_or_none, store_output
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.dump_forecast import DumpForecast
from core.sources.postgres.dump_metadata import _END
from core.sources.postgres.dump_parts import DumpPart, part_file, parts_metadata
from core.sources.postgres.dump_start import StartedDump, start_dump
from core.sources.postgres.logical_snapshot import SOURCE
from core.sources.postgres.row_stats import batched_counts


async def backup_logical(
    repo: Repository,
    db: DatabaseConfig,
    *,
    backup_set: str = "",
    tags: tuple[str, ...] = (),
    on_bytes: DumpProgress | None = None,
    target: PgTarget | None = None,
    extra_metadata: dict | None = None,
    started: Awaitable[StartedDump] | None = None,
    tables: tuple[tuple[str, str], ...] = (),
    jobs: int = 1,
) -> Snapshot:
    """Dump the configured database (or ``target``) into the repository and commit one snapshot.
    ``started``: the dump, already begun by ``start_dump`` (the caller closes it if this is
    never called).

    ``tables``: the rows of just these tables (a safety snapshot before they are put back in
    place), the schema whole: a dump of the tables alone (``pg_dump --table``) holds neither
    their schema nor the types and functions their columns, defaults and triggers use, and
    does not restore by itself. The metadata then counts and checksums just these.

    ``jobs`` > 1 (``[database] dump_jobs``): the dump in up to that many parts on one
    snapshot, stored as further files of the snapshot (dump_parts.py, ``dump_parts``).

    Any failure (connection, version, pg_dump's exit status, the repository) raises before
    a snapshot is saved; chunks already uploaded are adopted by a later backup."""
    dump = await (started if started is not None else start_dump(db, target, tables, jobs=jobs))
    target = dump.target
    before = list(repo.stats.by_type.get(BlobType.DATA, [0, 0, 0]))
    # The cluster's roles and memberships (pgglobals), read beside the dump: small, and not
    # part of the database's snapshot anyway.
    globals_read = asyncio.ensure_future(
        pgglobals.dump_globals(target, dump.pg_dump.path.parent, db.globals_with_passwords)
    )
    try:
        outs, metadata, warnings = await _dump(repo, dump, on_bytes, db.row_checksums)
        extra, globals_meta, globals_warning = await _store_globals(repo, await globals_read)
    except psycopg.Error as exc:
        raise target.failed("reading", exc) from None
    finally:
        globals_read.cancel()
        await dump.close()
    if globals_warning:
        warnings = (*warnings, globals_warning)

    dbname, pg_dump = dump.dbname, dump.pg_dump
    dump_file = dbname.replace("/", "_").replace("\0", "_") + ".dump"  # a safe single tree name
    ids, size = outs[0].ids, outs[0].size
    if dump.parts:  # absent for a dump in one piece: its metadata as before
        parts = [DumpPart(k, part_file(dump_file, k), tables) for k, tables in enumerate(dump.parts)]
        metadata["dump_parts"] = parts_metadata(parts, [out.size for out in outs])
    metadata.update(
        {
            "mode": "logical",
            "format": "custom",
            "dump_file": dump_file,
            "dump_size": size,
            "pg_dump_version": pg_dump.version,
            "pg_dump_major": pg_dump.major,
            "application_version": db.application_version or os.environ.get("AXISOR_APPLICATION_VERSION"),
            "duration_seconds": round(time.monotonic() - dump.started, 3),
            "globals": globals_meta,
            **(extra_metadata or {}),
        }
    )
    snap = await single_file_snapshot(
        repo,
        name=dump_file,
        ids=ids,
        size=size,
        before=before,
        source=SOURCE,
        paths=(target.describe(),),
        backup_set=backup_set,
        tags=tags,
        metadata=metadata,
        warnings=warnings,
        extra=extra,
        parts=tuple((part_file(dump_file, k), out.ids, out.size) for k, out in enumerate(outs) if k),
    )
    snap_id = await repo.save_snapshot(snap)
    return replace(snap, id=snap_id)


async def _store_globals(
    repo: Repository, got: pgglobals.DumpedGlobals
) -> tuple[tuple[tuple[str, tuple[bytes, ...], int], ...], dict, str | None]:
    """The globals file's tree entry, its ``globals`` metadata, and a warning when it is missing."""
    if got.data is None:
        return (
            (),
            {"file": None, "role_passwords": got.passwords, "error": got.error},
            (
                f"globals (roles, memberships, tablespaces) not recorded: {got.error}; "
                f"restore --roles will not be available for this snapshot"
            ),
        )
    writer = StreamWriter(repo)
    ids, size = await writer.store(io.BytesIO(got.data))
    await writer.drain()
    return (
        ((pgglobals.GLOBALS_FILE, ids, size),),
        {"file": pgglobals.GLOBALS_FILE, "size": size, "role_passwords": got.passwords},
        None,
    )


async def _dump(
    repo: Repository, dump: StartedDump, on_bytes: DumpProgress | None, checksums: bool = True
) -> tuple[list[StoredOutput], dict, tuple[str, ...]]:
    """Store pg_dump's output (each part's, all at once, when the dump is in parts) in the
    repository while its connection (holding the snapshot) reads the metadata; the row
    checksums, and the row counts of the tables whose data is small, are taken from the
    dump as it is chunked, the other counts in SQL beside it.

    (1,000 tables of a few rows: their count(*) cost the server 0.17 s of CPU beside
    pg_dump's own 0.53 s, most of it opening each table and its indexes once more.)"""
    loop = asyncio.get_running_loop()
    uncounted: asyncio.Queue = asyncio.Queue()

    def tell(key: str | None) -> None:  # on the chunker's thread
        with contextlib.suppress(RuntimeError):  # the loop closed under a failed backup
            loop.call_soon_threadsafe(uncounted.put_nowait, key)

    children = (dump.child, *dump.others)
    # A dump in parts is always read (to check each table's data is in exactly one part);
    # with row_checksums = false its checksums are then not recorded.
    read = checksums or len(children) > 1
    sums = [dumpsum.DumpChecksums(on_uncounted=tell) for _ in children] if read else []
    if not sums:
        uncounted.put_nowait(None)  # row_checksums = false: the stream is not read, every table counted in SQL
    metadata_read = dump.read_metadata(uncounted)
    assert dump.listed is not None
    told = DumpForecast(sums, dump.listed, on_bytes) if on_bytes is not None else None
    outs = await _store_parts(repo, dump, children, sums, told, metadata_read)
    metadata = outs[0].during
    for part in sums:
        part.finish()
    uncounted.put_nowait(_END)
    assert dump.counting is not None and dump.listed is not None
    counted = await dump.counting
    readable = bool(sums) and all(part.error is None for part in sums)
    try:
        in_stream, streamed = _union(sums, dump.parts) if readable else ({}, {})
    except DatabaseError:
        await repo.abort()
        raise
    # A key the stream named after the end (or a stream that failed at its very end): counted now.
    listed = [(schema, name) for schema, name, *_ in dump.listed.result()]
    missing = [t for t in listed if names.key(*t) not in counted and names.key(*t) not in in_stream]
    if missing:
        counted.update(await batched_counts(dump.conn, missing))
    tables = {k: counted[k] if k in counted else in_stream[k] for k in (names.key(*t) for t in listed)}
    if readable and dump.parts:
        lost = [k for k, rows in tables.items() if rows and k not in streamed]
        if lost:
            await repo.abort()
            raise DatabaseError(
                f"the dump in {len(children)} parts holds no data of {', '.join(lost[:5])}"
                f"{' ...' if len(lost) > 5 else ''} although it has rows; nothing was saved"
            )
    metadata.update({"tables": tables, "total_tables": len(tables), "total_records": sum(tables.values())})
    warnings = [ln for out in outs for ln in out.stderr.splitlines() if ln.strip()]
    metadata["checksum_method"], metadata["checksums"] = "count-only", {}
    if checksums:
        if readable:
            metadata["checksum_method"] = dumpsum.METHOD
            metadata["checksums"] = {t: streamed[t] for t in metadata["tables"] if t in streamed}
        else:
            error = next(part.error for part in sums if part.error is not None)
            warnings.append(f"row checksums not recorded (row counts only): {error}")
    return outs, metadata, tuple(warnings)


async def _store_parts(
    repo: Repository,
    dump: StartedDump,
    children: tuple[Running, ...],
    sums: list[dumpsum.DumpChecksums],
    told: DumpForecast | None,
    metadata_read: asyncio.Future,
) -> list[StoredOutput]:
    """Each pg_dump's stdout stored through its own stream pipeline (store_output), all at
    once; part 0's beside the metadata read. The first failure (or a cancelled job) stops
    every part: each kills its pg_dump and aborts the open packs; nothing is half-saved."""
    many = len(children) > 1
    # Each part is cut on a thread of its own (the sealing stays on the repository's pool):
    # through a pool of the host's cores the parts' takes queued behind each other.
    takes = ThreadPoolExecutor(len(children), thread_name_prefix="axisor-dump-part") if many else None
    try:
        return await all_or_none(
            [
                store_output(
                    repo,
                    dump.target,
                    [],
                    program=f"pg_dump (part {k} of {len(children)})" if many else "pg_dump",
                    on_bytes=told,
                    observe=sums[k].feed if sums else None,
                    running=child,
                    during=(lambda: metadata_read) if k == 0 else None,
                    take_executor=takes,
                )
                for k, child in enumerate(children)
            ]
        )
    finally:
        if takes is not None:
            takes.shutdown(wait=False)


def _union(
    sums: list[dumpsum.DumpChecksums], parts: tuple[tuple[tuple[str, str], ...], ...]
) -> tuple[dict[str, int], dict[str, str]]:
    """The row counts and checksums of every part's stream together. A table whose data is
    in two parts, or a part k > 0 without a table it was given or with one it was not, is a
    DatabaseError: the parts would not restore to the snapshot."""
    if len(sums) == 1:
        return dict(sums[0].counts), dict(sums[0].tables)
    counts: dict[str, int] = {}
    checks: dict[str, str] = {}
    owner: dict[str, int] = {}
    for k, part in enumerate(sums):
        for key, digest in part.tables.items():
            if key in owner:
                raise DatabaseError(
                    f"table {key} has data in parts {owner[key]} and {k} of the dump; nothing was saved"
                )
            owner[key], checks[key] = k, digest
        counts.update(part.counts)
    for k, tables in enumerate(parts):
        assigned = {names.key(*t) for t in tables}
        held = {key for key, o in owner.items() if o == k}
        wrong = sorted(assigned - held if k else assigned & {key for key, o in owner.items() if o != k})
        extra = sorted(held - assigned) if k else []
        if wrong or extra:
            raise DatabaseError(
                f"part {k} of the dump does not hold the data it was given "
                f"(missing: {', '.join(wrong) or '-'}; not assigned: {', '.join(extra) or '-'}); nothing was saved"
            )
    return counts, checks

"""PostgreSQL: WAL archiving (archive_command, restore_command) and the database checks
and status the front ends show."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.repository.lock import Lock
from core.service.session import Session
from core.storage.local import LocalBackend


async def wal_push(session: Session, path: Path):
    """archive_command: store one WAL file; durable when this returns (PushResult). Also
    stores the files the server has ready next, so their own pushes are answered without
    opening the repository (core/sources/postgres/wal_ahead.py)."""
    from core.repository import repo_config
    from core.sources.postgres.wal import PushResult
    from core.sources.postgres.wal_ahead import Markers, push_with_ahead

    other_user = session.other_user_warning("wal-push")
    if other_user:
        session.note(f"warning: {other_user}")  # into the server's log, beside the archiver's lines
    public = await repo_config.read_public(session.backend)
    markers = await asyncio.to_thread(Markers.open, session.state_dir, str(public.get("id", "")))
    if markers is not None:
        hit = await asyncio.to_thread(markers.take, path)
        if hit is not None:
            return PushResult(hit.name, hit.size, True, hit.sha256, from_marker=True)
    # One scrypt per host, not per segment: the server's user keeps the derived key.
    repo = await session.repository(load_index=False, key_cache_dir=session.state_dir, writer=True)
    async with Lock(session.backend, exclusive=False, operation="wal-push"):
        return await push_with_ahead(repo, path, markers)


async def wal_fetch(session: Session, name: str, dest: Path) -> int:
    """restore_command: write WAL file ``name`` to ``dest``; WalNotFound when it is not archived."""
    from core.sources.postgres import wal_prefetch
    from core.sources.postgres.wal import WalNotFound, fetch, is_segment, is_wal_name, load_manifest

    repo = await session.repository(load_index=False, key_cache_dir=session.state_dir)
    m = await load_manifest(repo, name) if is_wal_name(name) else None
    if m is None:
        raise WalNotFound(f"WAL file {name} is not in the repository")  # before the index: a cheap miss
    # The segments after this one are fetched ahead into a spool beside ``dest``, and
    # a later run answered from it once checked against the manifest (wal_prefetch.py).
    spool = await asyncio.to_thread(wal_prefetch.Spool.open, dest) if is_segment(name) else None
    try:
        if spool is not None:
            await asyncio.to_thread(spool.note, name)  # where a running follower keeps its window
            await asyncio.to_thread(spool.sweep, name, m.size)
            if await asyncio.to_thread(spool.take, m, dest):
                if await asyncio.to_thread(wal_prefetch.needs_topping_up, spool, name, m.size):
                    async with session.read_lock("wal-fetch"):
                        await repo.load_index()
                        await wal_prefetch.prefetch(repo, name, m.size, spool)
                return m.size
        async with session.read_lock("wal-fetch"):
            await repo.load_index()
            size = await fetch(repo, name, dest)
            if spool is not None:
                await wal_prefetch.prefetch(repo, name, m.size, spool)
            return size
    finally:
        if spool is not None:
            await asyncio.to_thread(spool.tidy)


async def wal_follow(session: Session, name: str, dest: Path, lock_fd: int | None) -> int:
    """`wal-fetch --ahead NAME PATH`: the prefetch follower for the spool beside PATH
    (core/sources/postgres/wal_follow.py), holding the spool's lock ``lock_fd`` handed over
    by the quick wal-fetch that started it, else taking it; 0 at once when another holds it
    or there is no spool. Returns how many segments it fetched."""
    import os

    from core.sources.postgres import wal_spool
    from core.sources.postgres.wal import is_segment, load_manifest
    from core.sources.postgres.wal_follow import follow
    from core.sources.postgres.wal_prefetch import Spool

    folder = dest.parent / wal_spool.DIR_NAME
    if lock_fd is None:
        lock_fd = await asyncio.to_thread(wal_spool.take_lock, folder) if folder.is_dir() else None
    if lock_fd is None or not is_segment(name):
        return 0
    try:
        repo = await session.repository(load_index=False, key_cache_dir=session.state_dir)
        m = await load_manifest(repo, name)
        if m is None:
            return 0  # recovery is past the archive's end: nothing to follow
        async with session.read_lock("wal-fetch"):
            await repo.load_index()
        return await follow(repo, Spool(folder), name, m.size, lock_fd, lambda: session.read_lock("wal-fetch"))
    finally:
        await asyncio.to_thread(wal_spool.tidy, folder, lock_fd)  # nothing left behind when nothing is spooled
        os.close(lock_fd)


async def database_archiving(
    session: Session, config_path: Path, *, setup: bool = False, key_file: Path | None = None, owner: str | None = None
):
    """The server's archiving settings (ArchivingReport). ``setup``: first give the server a
    write-only key of its own in ``key_file`` (core/service/keys.py, ``setup_wal_key``), so
    the database's OS user can push WAL and read nothing; the report's archive_command
    then names it. Returns (report, the key made or None)."""
    from core.sources.postgres.archiving import check_archiving
    from core.sources.postgres.standby import archiving_target

    made = None
    if setup:
        from core.service.keys import setup_wal_key

        key_file = key_file or Path(config_path).resolve().parent / "wal-writer.key"
        made = await setup_wal_key(session, key_file, owner)
    # With backup_standby the primary archives: its settings are the ones to check.
    report = await check_archiving(archiving_target(session.config.database), config_path, key_file)
    return report, made


async def database_check(session: Session, config_path: Path, *, wait: bool = True):
    """`database check`: a CheckReport (core/sources/postgres/dbcheck.py); needs no passphrase."""
    from core.sources.postgres.dbcheck import run_checks

    config = session.config
    return await run_checks(
        config.database,
        config_path,
        LocalBackend(config.storage.local_path),
        passphrase_file=config.storage.passphrase_file,
        wait=wait,
    )


async def database_restore_problems(session: Session) -> list[str]:
    """What stops a database restore before it starts (the restore wizard's first step)."""
    from core.sources.postgres.dbcheck import restore_problems

    return await restore_problems(session.config.database)


async def database_status(session: Session) -> dict:
    from core.sources.postgres.archiving import archive_status
    from core.sources.postgres.standby import archiving_target

    repo = await session.repository(load_index=False)
    db = session.config.database
    target = archiving_target(db) if (db.enabled or db.url or db.host) else None
    return await archive_status(repo, target)


__all__ = [
    "database_archiving",
    "database_check",
    "database_restore_problems",
    "database_status",
    "wal_fetch",
    "wal_follow",
    "wal_push",
]

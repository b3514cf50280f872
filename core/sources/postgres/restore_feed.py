"""Feeding a snapshot's dump to pg_restore: the dump's blobs, in order, written to
``pg_restore --single-transaction`` on stdin (``_pipe_dump``), with a ``-L`` list in a
private temporary file when only some entries are restored (``_feed_pg_restore``); its
warnings, and the foreign keys left out, go into the report (``_run_pg_restore``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile

from core.errors import DatabaseError
from core.repository.repository import Repository
from core.repository.tree import Node
from core.restore.stream import iter_content
from core.sources.postgres.child import StderrReader, last_lines, spawn, stop_process
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.logical_snapshot import PREFETCH
from core.sources.postgres.restore_report import DbRestoreReport


def _write_all(pipe, data: bytes) -> None:
    pipe.write(data)


async def _run_pg_restore(
    repo: Repository,
    node: Node,
    target: PgTarget,
    pg_restore,
    extra: list[str],
    list_text: str | None,
    owners: bool,
    skipped_fks: list[str],
    report: DbRestoreReport,
) -> None:
    """Feed the dump to pg_restore; its warnings, and the foreign keys left out, go into
    ``report``. A failure after a safety snapshot names it."""
    try:
        report.bytes, report.warnings = await _feed_pg_restore(
            repo, node, target, pg_restore, extra, list_text, owners=owners
        )
        report.warnings[:0] = [
            f"foreign key {fk} left out: it joins a table that is not restored" for fk in skipped_fks
        ]
    except DatabaseError as exc:
        if report.safety_snapshot:
            raise DatabaseError(
                f"{exc} (the database is unchanged; safety snapshot "
                f"{report.safety_snapshot[:8]} holds its state before this restore)"
            ) from None
        raise


async def _feed_pg_restore(
    repo: Repository,
    node: Node,
    target: PgTarget,
    pg_restore,
    extra: list[str] | tuple[str, ...] = (),
    list_text: str | None = None,
    *,
    owners: bool = False,
    early_exit: bool = False,
) -> tuple[int, list[str]]:
    """``early_exit``: pg_restore may stop reading before the end (a ``--section`` that
    needs no data block), as it may with a ``-L`` list."""
    argv = [str(pg_restore), *(() if owners else ("--no-owner",)), "--single-transaction", "--no-password", *extra]
    if list_text is None:
        written, text, _ = await _pipe_dump(repo, node, target, [*argv, "-d", target.conninfo()], early_exit=early_exit)
    else:
        # The list is not secret, but is kept private anyway: 0600 in a 0700 folder, removed after.
        folder = tempfile.mkdtemp(prefix="axisor-toc.")
        try:
            path = os.path.join(folder, "restore.list")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(list_text)
            # pg_restore stops reading once the last chosen entry is restored: not an error.
            written, text, _ = await _pipe_dump(
                repo, node, target, [*argv, "-L", path, "-d", target.conninfo()], early_exit=True
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return written, [ln for ln in text.splitlines() if ln.strip()]


async def _pipe_dump(
    repo: Repository, node: Node, target: PgTarget, argv: list[str], *, capture: bool = False, early_exit: bool = False
) -> tuple[int, str, str]:
    """Write the dump's blobs, in order, to ``argv``'s stdin. Returns (bytes written, stderr,
    stdout when ``capture``). With ``early_exit`` the program may stop reading before the end
    (-l, -L) as long as it exits 0."""
    proc, errors = spawn(
        argv, target.child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE if capture else subprocess.DEVNULL
    )
    output = StderrReader(proc.stdout, 256 * 1024 * 1024) if capture else None
    stdin = proc.stdin
    assert stdin is not None  # spawned with stdin=PIPE
    written = 0
    broken = False
    try:
        async with contextlib.aclosing(iter_content(repo, node.content, PREFETCH)) as chunks:
            async for data in chunks:
                try:
                    await asyncio.to_thread(_write_all, stdin, data)
                except (BrokenPipeError, ConnectionResetError):
                    broken = True  # pg_restore stopped reading: its exit status says why
                    break
                written += len(data)
        if not broken:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await asyncio.to_thread(stdin.close)
        code = await asyncio.to_thread(proc.wait)
    except BaseException:
        await stop_process(proc)
        raise
    finally:
        with contextlib.suppress(OSError):
            stdin.close()
    text = target.scrub(errors.text())
    stdout = output.text(60) if output is not None else ""
    if code != 0 or (broken and not early_exit):
        detail = last_lines(text) or f"exit status {code}"
        raise DatabaseError(f"pg_restore into {target.describe()} failed (exit {code}): {detail}")
    if not broken and written != node.size:
        raise DatabaseError(f"the dump in the snapshot is {written} bytes, its manifest says {node.size}")
    return written, text, stdout

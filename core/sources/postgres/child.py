"""Running a PostgreSQL program whose stdout is stored in the repository as it arrives.

pg_dump (logical backups) and pg_basebackup (base backups) both write a stream to stdout
that is chunked straight into the repository (no temp file), while their stderr is
collected on a thread so a chatty program never blocks. A failure at any point kills the
program and aborts the repository's open packs; what was already uploaded is adopted by a
later backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.backup.pipe import PipeReader
from core.childenv import child_env
from core.errors import DatabaseError

if TYPE_CHECKING:  # ``start`` runs before psycopg and the repository stack are loaded (prestart.py)
    from core.repository.repository import Repository
    from core.sources.postgres.connection import PgTarget

STDERR_LIMIT = 64 * 1024


class StderrReader:
    """Collects a child's stderr (or stdout) on a thread (so a chatty child never blocks), capped."""

    def __init__(self, pipe, limit: int = STDERR_LIMIT) -> None:
        self._limit = limit
        self._pipe = pipe
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True, name="axisor-pg-stderr")
        self._thread.start()

    def _run(self) -> None:
        while chunk := self._pipe.read1(65536) if hasattr(self._pipe, "read1") else self._pipe.read(65536):
            if len(self._buf) < self._limit:
                self._buf += chunk[: self._limit - len(self._buf)]

    def text(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return self._buf.decode("utf-8", "replace").strip()


def run_as(argv: list[str], os_user: str | None) -> list[str]:
    """``argv`` run as ``os_user`` (root only: a cluster must not run as root), else as is."""
    return ["runuser", "-u", os_user, "--", *argv] if os_user else argv


def server_env() -> dict[str, str]:
    """The environment for initdb, pg_ctl and the servers they start (which inherit it):
    never the repository passphrase or a database password; C messages so logs read back."""
    env = child_env(libpq=True, ours=True)  # an allow-list: no passphrase, PGPASSWORD or cloud keys
    env["LC_MESSAGES"] = "C"
    env["LC_ALL"] = "C"
    return env


def spawn(
    argv: list[str], env: dict[str, str], *, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
) -> tuple[subprocess.Popen, StderrReader]:
    """Start a PostgreSQL program (an argument list, never a shell) with its stderr collected
    on a thread; a program that cannot start is a DatabaseError naming it."""
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env)
    except OSError as exc:
        raise DatabaseError(f"cannot start {argv[0]}: {exc.strerror}") from None
    return proc, StderrReader(proc.stderr)


async def stop_process(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    await asyncio.to_thread(proc.wait)


@dataclass(frozen=True, slots=True)
class Running:
    """A program started by ``start``: its stdout is already being read ahead (so it can
    get on with its work before anyone consumes the output), its stderr collected."""

    proc: subprocess.Popen
    errors: StderrReader
    stdout: PipeReader

    async def stop(self) -> None:
        """Kill it if still running and release the reader (safe to call twice)."""
        await stop_process(self.proc)
        await asyncio.to_thread(self.stdout.close)  # its last read has returned: the writer is gone
        if self.proc.stdout is not None:  # always (start spawns with stdout=PIPE)
            self.proc.stdout.close()


async def all_or_none(aws: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run ``aws`` at once (the parts of a dump, stored or restored); their results in
    order. The first failure, or this being cancelled, cancels the others (each kills its
    program on the way out) and is raised once they have all ended."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in tasks:
            if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
                raise exc
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [t.result() for t in tasks]


def start(argv: list[str], env: dict[str, str]) -> Running:
    proc, errors = spawn(argv, env)
    assert proc.stdout is not None  # spawned with stdout=PIPE
    return Running(proc, errors, PipeReader(proc.stdout))


def last_lines(text: str, n: int = 8) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def child_failed(child: Running, code: int, target, what: str) -> DatabaseError:
    """``what`` failed: its exit status and the last lines it wrote, with ``target``'s
    secrets scrubbed (a PgTarget)."""
    detail = target.scrub(last_lines(child.errors.text())) or f"exit status {code}"
    return DatabaseError(f"{what} failed (exit {code}): {detail}")


@dataclass(frozen=True, slots=True)
class StoredOutput:
    ids: tuple[bytes, ...]  # data blob ids of stdout, in order
    size: int
    stderr: str  # scrubbed of the password
    during: Any  # what ``during`` returned


async def store_output(
    repo: Repository,
    target: PgTarget,
    argv: list[str],
    *,
    program: str,
    on_bytes: Callable[[int], None] | None = None,
    wrap: Callable[[Any], Any] | None = None,
    observe: Callable[[bytearray, int, int], None] | None = None,
    env: dict[str, str] | None = None,
    during: Callable[[], Awaitable[Any]] | None = None,
    running: Running | None = None,
    take_executor: Executor | None = None,
) -> StoredOutput:
    """Run ``argv`` (or take over ``running``, already started) and store its stdout (through
    ``wrap``, a read-through tap, if given; ``observe`` sees the bytes in place as they are
    chunked) while ``during`` runs (pg_dump's metadata queries in the same exported snapshot).
    ``take_executor``: where the stream is cut (StreamWriter; default the repository's pool).
    A non-zero exit raises DatabaseError naming ``program`` with its last stderr lines."""
    from core.backup.stream import StreamWriter

    child = running or start(argv, env or target.child_env())
    proc = child.proc
    writer = StreamWriter(repo, take_executor=take_executor)
    stdout = wrap(child.stdout) if wrap is not None else child.stdout
    store = asyncio.ensure_future(writer.store(stdout, on_bytes, observe))
    try:
        result = await during() if during is not None else None
        ids, size = await store
        await writer.drain()
        code = await asyncio.to_thread(proc.wait)
    except BaseException:
        await stop_process(proc)
        await asyncio.gather(store, return_exceptions=True)
        with contextlib.suppress(BaseException):
            await writer.drain()
        await repo.abort()
        raise
    finally:
        await child.stop()
    text = child.errors.text()
    if code != 0:
        await repo.abort()
        detail = target.scrub(last_lines(text)) or f"exit status {code}"
        raise DatabaseError(f"{program} of {target.describe()} failed (exit {code}): {detail}")
    return StoredOutput(ids, size, target.scrub(text), result)

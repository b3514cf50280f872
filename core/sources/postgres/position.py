"""Where the database is while a files source is scanned: its WAL position and clock.

A files snapshot taken while `[database]` is enabled records the server's WAL position (the
primary's; core/sources/postgres/standby.py ``archiving_target``, the server whose WAL is
archived) and time just before and just after its scan (``metadata["db_position"]``,
docs/FORMAT.md). The catalog then says, for an instant T, which files snapshot belongs with
the database recovered to T, and how far apart they are (core/restore/platform.py).

A position that cannot be read is recorded as such, with why: the snapshot is stored all the
same, and the platform plan says its skew is unknown rather than guessing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from core.config import DatabaseConfig
from core.errors import DatabaseError

# Bounded: a server that does not answer must not hold a files backup back.
CONNECT_TIMEOUT = 10.0
SQL_POSITION = "SELECT pg_current_wal_lsn()::text, clock_timestamp()"


@dataclass(frozen=True, slots=True)
class DbPosition:
    lsn: str  # e.g. "0/3000148"
    time: str  # the server's clock, ISO 8601 with offset

    def to_dict(self) -> dict[str, str]:
        return {"lsn": self.lsn, "time": self.time}


class PositionProbe:
    """One connection for a whole backup run, opened on first use. ``read`` never raises:
    a failure is returned as its message and the run goes on."""

    def __init__(self, db: DatabaseConfig) -> None:
        self._db = db
        self._conn: Any = None
        # The first failure stands for the run: a server that is down costs one timeout, not
        # two per source.
        self._failed: str | None = None

    async def read(self) -> dict[str, str]:
        """``{"lsn", "time"}``, or ``{"error"}`` saying why there is none."""
        got = await self._read()
        return got.to_dict() if isinstance(got, DbPosition) else {"error": got}

    async def _read(self) -> DbPosition | str:
        import asyncio

        import psycopg

        from core.sources.postgres.standby import archiving_target

        if self._failed is not None:
            return self._failed
        try:
            if self._conn is None:
                self._conn = await asyncio.wait_for(archiving_target(self._db).connect(), CONNECT_TIMEOUT)
            async with self._conn.cursor() as cur:
                await asyncio.wait_for(cur.execute(SQL_POSITION), CONNECT_TIMEOUT)
                row = await cur.fetchone()
        except (DatabaseError, psycopg.Error, OSError, TimeoutError) as exc:
            await self.close()
            self._failed = f"the database's position could not be read: {exc}"
            return self._failed
        lsn, when = row
        return DbPosition(lsn=str(lsn), time=when.isoformat())

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


__all__ = ["DbPosition", "PositionProbe"]

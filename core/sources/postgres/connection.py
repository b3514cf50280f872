"""Where the database is and how to log in, without the password ever reaching argv.

A target is libpq keyword parameters *without* a password, plus where the password comes
from: ``password_file`` (read here; handed to children as PGPASSWORD in their
environment), ``passfile`` (handed on as PGPASSFILE), a password inside a ``--target-db``
URL (taken out of the URL, handed on like ``password_file``), or PGPASSWORD already in
the environment (libpq reads it itself). Child programs get ``-d <conninfo>`` built from
the parameters only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.config import DatabaseConfig
from core.errors import DatabaseError, UsageError
from core.sources.postgres.dump_args import client_env


@dataclass(frozen=True, slots=True)
class PgTarget:
    params: dict[str, str] = field(default_factory=dict)  # never holds "password"
    password: str | None = field(default=None, repr=False)
    passfile: Path | None = None

    # -- building ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, db: DatabaseConfig) -> PgTarget:
        params: dict[str, str] = {}
        if db.url:
            params.update(_parse(db.url))
        for key in ("host", "port", "dbname", "user"):
            value = getattr(db, key)
            if value is not None:
                params[key] = str(value)
        if "password" in params:  # config validation refuses this; never pass it on anyway
            raise UsageError("database.url contains a password; use password_file or PGPASSWORD")
        password = _read_password_file(db.password_file) if db.password_file else None
        return cls(params, password, Path(db.passfile) if db.passfile else None)

    @classmethod
    def from_url(cls, url: str, fallback: PgTarget | None = None) -> PgTarget:
        """A ``--target-db`` URL or conninfo; a bare name is a database on the configured server."""
        if "=" not in url and "://" not in url:
            if fallback is None:
                raise UsageError(f"--target-db {url!r} is not a postgresql:// URL")
            return fallback.with_dbname(url)
        params = _parse(url)
        password = params.pop("password", None)
        if not params.get("dbname"):
            raise UsageError("--target-db must name a database (postgresql://HOST/DBNAME)")
        if (
            password is None
            and fallback is not None
            and all(params.get(k) == fallback.params.get(k) for k in ("host", "port"))
        ):
            # Same server as [database]: its password source applies.
            return cls(params, fallback.password, fallback.passfile)
        return cls(params, password, None)

    def with_dbname(self, dbname: str) -> PgTarget:
        return replace(self, params={**self.params, "dbname": dbname})

    # -- using ------------------------------------------------------------------------

    @property
    def dbname(self) -> str:
        return (
            self.params.get("dbname")
            or self.params.get("user")
            or os.environ.get("PGDATABASE")
            or os.environ.get("PGUSER")
            or "postgres"
        )

    def conninfo(self) -> str:
        """The connection string for a child's ``-d``: no password, ever."""
        return make_conninfo(**self.params)

    def describe(self) -> str:
        p = self.params
        where = p.get("host") or os.environ.get("PGHOST") or "local socket"
        return f"{self.dbname} on {where}" + (f":{p['port']}" if p.get("port") else "")

    def child_env(self) -> dict[str, str]:
        # pg_dump and pg_restore get libpq's settings and a password, nothing else of ours
        # (never the repository passphrase or cloud keys).
        return client_env(self.password, self.passfile)

    async def connect(self, *, autocommit: bool = True) -> psycopg.AsyncConnection:
        kwargs: dict = {}
        if self.password is not None:
            kwargs["password"] = self.password
        elif self.passfile is not None:
            kwargs["passfile"] = str(self.passfile)
        try:
            return await psycopg.AsyncConnection.connect(
                self.conninfo(), autocommit=autocommit, application_name="axisor-backup", **kwargs
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to {self.describe()}: {self.scrub(str(exc).strip())}") from None

    def failed(self, doing: str, exc: BaseException) -> DatabaseError:
        """``<doing> <target> failed: <why>`` for a psycopg error, the password scrubbed."""
        return DatabaseError(f"{doing} {self.describe()} failed: {self.scrub(str(exc).strip())}")

    def scrub(self, text: str) -> str:
        """Text for a message or a log: the password replaced, should a program ever echo it."""
        if self.password:
            text = text.replace(self.password, "***")
        return text


def one_row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """``fetchone()``'s row for a query that always returns exactly one (a SELECT of functions,
    an aggregate, pg_stat_archiver, the current database's pg_database row): psycopg types
    it as optional, and a missing row is the server's fault, said as such."""
    if row is None:
        raise DatabaseError("PostgreSQL returned no row for a query that always returns one")
    return row


def _parse(url: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"not a valid PostgreSQL connection URL: {str(exc).splitlines()[0]}") from None


def _read_password_file(path: Path) -> str:
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise UsageError(f"database.password_file {path} is readable by others; chmod 600 it")
        with open(path, encoding="utf-8") as f:
            value = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read database.password_file {path}: {exc.strerror}") from None
    value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise UsageError(f"database.password_file {path} is empty")
    return value

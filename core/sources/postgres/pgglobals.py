"""The cluster's globals beside each logical backup, and ``restore --roles`` putting them back.

A database dump names roles (owners, grantees, policy roles) but does not hold them: they,
their memberships and tablespaces belong to the cluster. Each logical backup therefore also
runs ``pg_dumpall --globals-only`` (passwords left out with ``--no-role-passwords`` unless
``[database] globals_with_passwords = true``) with pg_dump's connection settings and child
environment, and stores its output as a second file of the snapshot (docs/FORMAT.md).

``restore --roles`` reads that file statement by statement and only ever *adds*: a role
missing in the target cluster is created with its attributes, settings and comment, and the
memberships whose member it is are granted; a role that already exists is never altered
(not even with ``--force``: it may serve other databases). Tablespaces are never created (a
folder on the server). Anything that could not be applied is returned, named, with why.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from core.sources.postgres.child import last_lines
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.tools import find_tool

GLOBALS_FILE = "globals.sql"
LIMIT = 64 * 1024 * 1024  # a globals file larger than this is not stored (it would be thousands of roles)
TIMEOUT = 300


@dataclass(frozen=True, slots=True)
class NotRestored:
    """One thing a restore did not carry, and why (docs/CLI.md "What a logical restore carries")."""

    what: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "why": self.why}


# -- backup ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DumpedGlobals:
    data: bytes | None  # pg_dumpall's output; None when it failed
    passwords: bool
    error: str | None = None


def _run_dumpall(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)


async def dump_globals(target: PgTarget, bin_dir: Path | None, passwords: bool) -> DumpedGlobals:
    """``pg_dumpall --globals-only`` of ``target``'s cluster. A failure is returned (the backup
    records it as a warning): the database dump is still worth keeping without the globals."""
    try:
        tool = await asyncio.to_thread(find_tool, "pg_dumpall", bin_dir)
        argv = [
            str(tool.path),
            "--globals-only",
            "--no-password",
            *(() if passwords else ("--no-role-passwords",)),
            "-d",
            target.conninfo(),
        ]  # never a password in argv: the environment carries it
        done = await asyncio.to_thread(_run_dumpall, argv, target.child_env())
    except subprocess.TimeoutExpired:
        return DumpedGlobals(None, passwords, f"pg_dumpall took longer than {TIMEOUT} s")
    except Exception as exc:  # noqa: BLE001 - a missing pg_dumpall must not fail the backup
        return DumpedGlobals(None, passwords, target.scrub(str(exc)))
    if done.returncode != 0:
        text = target.scrub(last_lines(done.stderr.decode("utf-8", "replace"), 3))
        return DumpedGlobals(None, passwords, f"pg_dumpall failed (exit {done.returncode}): {text}")
    if len(done.stdout) > LIMIT:
        return DumpedGlobals(None, passwords, f"pg_dumpall wrote {len(done.stdout)} bytes, over {LIMIT}")
    return DumpedGlobals(done.stdout, passwords)


# -- reading the file --------------------------------------------------------------------


def split_statements(text: str) -> list[str]:
    """``text`` cut at the semicolons outside quotes, ``--`` comments dropped."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c in "'\"":
            # E'...' (backslash escapes): an E right before the quote that does not end a word.
            escapes = (
                c == "'"
                and bool(buf)
                and buf[-1] in "Ee"
                and (len(buf) < 2 or not (buf[-2].isalnum() or buf[-2] == "_"))
            )
            j = i + 1
            while j < n:
                if escapes and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i : j + 1])
            i = j + 1
            continue
        if c == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(c)
        i += 1
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return out


_TOKEN = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*|\S')


def tokens(stmt: str) -> list[str]:
    return _TOKEN.findall(stmt[:2000])  # the leading words are enough; a long comment is not tokenised


def ident(token: str) -> str:
    """A role or tablespace name as pg_dumpall wrote it (fmtId: quoted unless plain)."""
    return token[1:-1].replace('""', '"') if token.startswith('"') else token


@dataclass
class Globals:
    roles: list[str] = field(default_factory=list)  # in the file's order
    role_statements: dict[str, list[str]] = field(default_factory=dict)  # ALTER ROLE, COMMENT, SECURITY LABEL
    memberships: list[tuple[str, str, str]] = field(default_factory=list)  # (role, member, statement)
    tablespaces: list[str] = field(default_factory=list)
    has_passwords: bool = False


def parse(text: str) -> Globals:
    g = Globals()

    def role(name: str) -> list[str]:
        if name not in g.role_statements:
            g.roles.append(name)
            g.role_statements[name] = []
        return g.role_statements[name]

    for stmt in split_statements(text):
        t = tokens(stmt)
        up = [x.upper() for x in t[:8]]
        if up[:2] == ["CREATE", "ROLE"] and len(t) > 2:
            role(ident(t[2]))
        elif up[:2] == ["ALTER", "ROLE"] and len(t) > 3 and up[3] != "IN":
            role(ident(t[2])).append(stmt)
            g.has_passwords = g.has_passwords or "PASSWORD" in up or " PASSWORD '" in stmt.upper()
        elif up[:3] == ["COMMENT", "ON", "ROLE"] and len(t) > 3:
            role(ident(t[3])).append(stmt)
        elif up[:2] == ["SECURITY", "LABEL"] and "ROLE" in up:
            k = up.index("ROLE")
            if k + 1 < len(t):
                role(ident(t[k + 1])).append(stmt)
        elif up[:1] == ["GRANT"] and len(t) > 3 and up[2] == "TO" and t[1] != "ON":
            g.memberships.append((ident(t[1]), ident(t[3]), stmt))
        elif up[:2] == ["CREATE", "TABLESPACE"] and len(t) > 2:
            g.tablespaces.append(ident(t[2]))
    return g


# -- restore -----------------------------------------------------------------------------


@dataclass
class RolesRestored:
    created: list[str] = field(default_factory=list)
    not_restored: list[NotRestored] = field(default_factory=list)


def _why(target: PgTarget, exc: psycopg.Error) -> str:
    return target.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


async def current_roles(conn: psycopg.AsyncConnection) -> tuple[set[str], set[tuple[str, str]], set[str]]:
    """The target cluster's roles, memberships (role, member) and tablespaces."""
    async with conn.cursor() as cur:
        await cur.execute("SELECT rolname FROM pg_roles")
        roles = {r for (r,) in await cur.fetchall()}
        await cur.execute(
            "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member"
        )
        members = {(a, b) for a, b in await cur.fetchall()}
        await cur.execute("SELECT spcname FROM pg_tablespace")
        spaces = {s for (s,) in await cur.fetchall()}
    return roles, members, spaces


async def restore_roles(conn: psycopg.AsyncConnection, target: PgTarget, g: Globals) -> RolesRestored:
    """Create the roles of ``g`` the cluster lacks (each statement on its own: one refused
    attribute does not stop the others) and grant the memberships of the roles created."""
    out = RolesRestored()
    existing, members, _ = await current_roles(conn)
    for name in g.roles:
        if name in existing:
            continue
        try:
            await conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            out.not_restored.append(NotRestored(f"role {name}", f"CREATE ROLE failed: {_why(target, exc)}"))
            continue
        out.created.append(name)
        for stmt in g.role_statements[name]:
            try:
                await conn.execute(stmt)  # pg_dumpall's own text, from the snapshot
            except psycopg.Error as exc:
                what = " ".join(tokens(stmt)[:2]).upper()
                out.not_restored.append(NotRestored(f"role {name}: {what} ...", _why(target, exc)))
    created = set(out.created)
    for granted, member, stmt in g.memberships:
        if (granted, member) in members:
            continue
        if member not in created:
            out.not_restored.append(
                NotRestored(
                    f"membership of role {member} in {granted}",
                    f"role {member} already existed in the target cluster and --roles never changes an existing role"
                    if member in existing
                    else f"role {member} was not created",
                )
            )
            continue
        try:
            await conn.execute(stmt)
        except psycopg.Error as exc:
            out.not_restored.append(NotRestored(f"membership of role {member} in {granted}", _why(target, exc)))
    return out


async def drop_roles(conn: psycopg.AsyncConnection, names: list[str]) -> None:
    """Undo ``restore_roles`` after a failed restore: the roles it created own nothing yet."""
    for name in reversed(names):
        try:
            await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        except psycopg.Error:
            pass  # left in place; harmless and named nowhere else to clean

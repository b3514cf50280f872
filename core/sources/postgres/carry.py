"""What a logical restore carries besides rows: ownership, privileges, database properties.

Ownership: pg_restore either sets every object's owner (``ALTER ... OWNER TO``) or none
(``--no-owner``). It is set when every owning role exists in the target cluster and the
restoring role may give objects to it (a superuser, or a member with SET of that role);
otherwise the restore runs ``--no-owner`` and says which roles stopped it and how many
objects come back owned by the restoring role instead.

Privileges and policies are decided per object: a GRANT/REVOKE (``ACL``, ``DEFAULT ACL``)
or a ``POLICY`` naming a role the target lacks would fail the whole single-transaction
restore, so that entry alone is left out of the ``pg_restore -L`` list and named.

Database properties (owner, ``ALTER DATABASE ... SET``, ``ALTER ROLE ... IN DATABASE ...
SET``, the database's grants and comment) are not in a dump taken without ``--create``; the
backup reads them from the catalogs (``database_properties``) and a restore that created its
target database applies them (``apply_database``). Into an existing database they are
compared and what differs is named, never changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from core.sources.postgres.connection import one_row
from core.sources.postgres.dumpsum import TocEntry
from core.sources.postgres.names import quoted_at
from core.sources.postgres.pgglobals import NotRestored, tokens, ident

# Entries pg_restore gives an owner to (pg_backup_archiver.c _printTocEntry).
OWNED = frozenset(
    {
        "AGGREGATE",
        "BLOB",
        "LARGE OBJECT",
        "COLLATION",
        "CONVERSION",
        "DOMAIN",
        "FUNCTION",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "PROCEDURE",
        "PROCEDURAL LANGUAGE",
        "SCHEMA",
        "EVENT TRIGGER",
        "FOREIGN DATA WRAPPER",
        "SERVER",
        "STATISTICS",
        "TABLE",
        "TYPE",
        "VIEW",
        "MATERIALIZED VIEW",
        "SEQUENCE",
        "FOREIGN TABLE",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH CONFIGURATION",
        "PUBLICATION",
        "SUBSCRIPTION",
    }
)
PRIVILEGES = frozenset({"ACL", "DEFAULT ACL"})
# Entries whose definition names roles (kept by dumpsum.parse_layout).
ROLE_NAMING = PRIVILEGES | {"POLICY"}
_NOT_ROLES = {"PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE"}
# Settings whose value is a list pg_dump splits and quotes element by element (pg_dump's
# variable_is_guc_list_quote): one quoted string would set a single odd element.
_LIST_GUCS = {
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
}
SHOWN = 5  # objects named per item; the count says how many in all
_DATABASE_PRIVILEGES = {"CONNECT", "CREATE", "TEMPORARY"}


# -- backup ------------------------------------------------------------------------------

_PROPERTIES = """
SELECT pg_get_userbyid(d.datdba), shobj_description(d.oid, 'pg_database'), d.datacl IS NULL,
  coalesce((SELECT json_agg(json_build_object(
      'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
      'grantor', pg_get_userbyid(a.grantor), 'privilege', a.privilege_type, 'grantable', a.is_grantable))
      FROM aclexplode(d.datacl) a), '[]'::json),
  coalesce((SELECT json_agg(json_build_object(
      'role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, 'settings', s.setconfig)
      ORDER BY s.setrole) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '[]'::json)
FROM pg_database d WHERE d.datname = current_database()"""


async def database_properties(conn: psycopg.AsyncConnection) -> dict:
    """The current database's owner, comment, grants (null: the default ones) and settings,
    for the snapshot's metadata. Read inside a savepoint: a refusal must not end the dump's
    snapshot transaction (it is recorded as ``{"error": ...}``)."""
    inside = conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    if inside:
        await conn.execute("SAVEPOINT axisor_database_properties")
    try:
        async with conn.cursor() as cur:
            await cur.execute(_PROPERTIES)
            owner, comment, default_acl, acl, settings = one_row(await cur.fetchone())
    except psycopg.Error as exc:
        if inside:
            await conn.execute("ROLLBACK TO SAVEPOINT axisor_database_properties")
        return {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}
    if inside:
        await conn.execute("RELEASE SAVEPOINT axisor_database_properties")
    return {
        "owner": owner,
        "comment": comment,
        "acl": None if default_acl else acl,
        "settings": [{"role": s["role"], "settings": list(s["settings"] or [])} for s in settings],
    }


# -- the target --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetRoles:
    current: str
    superuser: bool
    existing: frozenset[str]
    settable: frozenset[str]  # roles the restoring role may give objects to (SET ROLE to)

    def can_own(self, role: str) -> bool:
        return role in self.existing and (self.superuser or role in self.settable)


async def target_roles(conn: psycopg.AsyncConnection) -> TargetRoles:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
            "current_setting('server_version_num')::int"
        )
        current, superuser, version = one_row(await cur.fetchone())
        how = "SET" if version >= 160000 else "MEMBER"  # 16: giving an object needs SET on the role
        await cur.execute(f"SELECT rolname, pg_has_role(current_user, oid, '{how}') FROM pg_roles")
        rows = await cur.fetchall()
    return TargetRoles(current, bool(superuser), frozenset(r for r, _ in rows), frozenset(r for r, ok in rows if ok))


# -- ownership and privileges ------------------------------------------------------------


def named_roles(e: TocEntry) -> set[str]:
    """The roles an ACL, DEFAULT ACL or POLICY entry's statements name (PUBLIC is none)."""
    found: set[str] = set()
    for stmt in e.defn.split(";\n"):
        t = tokens(stmt)
        up = [x.upper() for x in t]
        if e.desc == "POLICY":
            if "TO" in up:
                for x in _role_list(t, up.index("TO") + 1, {"USING", "WITH"}):
                    found.add(x)
            continue
        for i, w in enumerate(up):
            if w in ("TO", "FROM"):
                found.update(_role_list(t, i + 1, {"WITH", "GRANTED", "CASCADE", "RESTRICT"}))
            elif w == "ROLE" and i and up[i - 1] == "FOR" or w == "USER" and i and up[i - 1] == "FOR":
                found.update(_role_list(t, i + 1, {"IN", "GRANT", "REVOKE"}))
            elif w == "BY" and i and up[i - 1] == "GRANTED":
                found.update(_role_list(t, i + 1, set()))
            elif w == "AUTHORIZATION" and i and up[i - 1] == "SESSION":
                found.update(_role_list(t, i + 1, set()))
    return found


def _role_list(t: list[str], i: int, stop: set[str]) -> list[str]:
    out = []
    while i < len(t):
        tok = t[i]
        if tok.upper() in stop or tok in (";", "("):
            break
        if tok != ",":
            if tok.upper() not in _NOT_ROLES or tok.startswith('"'):
                out.append(ident(tok))
        i += 1
    return out


def _obj(e: TocEntry) -> str:
    where = f"{e.namespace}." if e.namespace else ""
    if e.desc in PRIVILEGES:  # tag: "TABLE docs"
        kind, _, name = e.tag.partition(" ")
        return f"{kind} {where}{name}" if name else f"{e.desc} {where}{e.tag}"
    if e.desc == "POLICY":  # tag: "docs report_even"
        table, _, policy = e.tag.partition(" ")
        return f"{policy} on {where}{table}"
    return f"{e.desc} {where}{e.tag}"


def _database_level(e: TocEntry) -> bool:
    """The database's own ACL and comment entries: pg_restore applies them only with --create
    (never here); the database's properties are carried by apply_database instead."""
    return not e.namespace and e.tag.startswith("DATABASE ")


def listed(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


@dataclass(frozen=True, slots=True)
class CarryPlan:
    owners: bool  # restore with owners (no --no-owner)
    exclude: frozenset[int]  # dump ids left out of the -L list (ACL/POLICY naming missing roles)
    carried: tuple[str, ...]
    not_restored: tuple[NotRestored, ...]


def plan(
    entries: list[TocEntry], roles: TargetRoles, *, globals_available: bool, roles_given: bool = False
) -> CarryPlan:
    """Decide, for the entries a restore will apply, whether owners are set and which
    privilege and policy entries must be left out. Pure: the target is ``roles``
    (``roles_given``: --roles ran already, so a role still missing could not be created)."""
    hint = (
        "--roles could not create them (see the roles items)"
        if roles_given and globals_available
        else "restore with --roles (it creates them from the snapshot's globals), or create them"
        if globals_available
        else "create them first (this snapshot holds no globals for --roles)"
    )
    carried: list[str] = []
    out: list[NotRestored] = []
    owned = [e for e in entries if e.desc in OWNED and e.owner]
    moving = [e for e in owned if e.owner != roles.current]  # objects whose owner a --no-owner restore changes
    owners = Counter(e.owner for e in moving)
    missing = sorted(r for r in owners if r not in roles.existing)
    refused = sorted(r for r in owners if r in roles.existing and not roles.can_own(r))
    carry_owners = not missing and not refused
    if moving and carry_owners:
        carried.append(f"ownership of {len(moving)} objects (roles {', '.join(sorted(owners))})")
    elif moving:
        why = []
        if missing:
            why.append(
                f"role{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'do' if len(missing) > 1 else 'does'} not exist in the target cluster; {hint}"
            )
        if refused:
            why.append(
                f"the restoring role {roles.current} is neither a superuser nor a member of {', '.join(refused)}"
            )
        by_role = ", ".join(f"{r}: {n}" for r, n in sorted(owners.items()))
        out.append(
            NotRestored(
                f"ownership of {len(moving)} objects ({by_role})",
                "; ".join(why) + f"; they are owned by {roles.current} instead",
            )
        )
    exclude: set[int] = set()
    kept = 0
    left: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for e in entries:
        if e.desc not in ROLE_NAMING or _database_level(e):
            continue
        absent = tuple(sorted(r for r in named_roles(e) if r not in roles.existing))
        as_other = e.desc in PRIVILEGES and "SESSION AUTHORIZATION" in e.defn.upper() and not roles.superuser
        if absent or as_other:
            exclude.add(e.dump_id)
            kind = "policy" if e.desc == "POLICY" else "privileges"
            left.setdefault((kind, absent if absent else ("*",)), []).append(_obj(e))
        elif e.desc in PRIVILEGES:
            kept += 1
    if kept:
        carried.append(f"privileges on {kept} objects")
    for (kind, absent), objs in sorted(left.items()):
        if absent == ("*",):
            reason = (
                f"they were granted by another role than the owner, which only a superuser can replay "
                f"(the restoring role {roles.current} is not one)"
            )
        else:
            reason = (
                f"{'they name' if len(objs) > 1 else 'it names'} role{'s' if len(absent) > 1 else ''} "
                f"{', '.join(absent)}, not in the target cluster; {hint}"
            )
        if kind == "policy":
            reason += "; row-level security stays enabled, so the rows these policies allowed are not visible"
            out.append(
                NotRestored(
                    f"{len(objs)} row-level security polic{'ies' if len(objs) > 1 else 'y'} ({listed(objs)})", reason
                )
            )
        else:
            out.append(NotRestored(f"privileges on {len(objs)} objects ({listed(objs)})", reason))
    return CarryPlan(carry_owners, frozenset(exclude), tuple(carried), tuple(out))


# -- database properties -----------------------------------------------------------------


def split_guc_list(value: str) -> list[str]:
    """A list setting's elements (PostgreSQL's SplitGUCList): commas, optional double quotes."""
    out, i, n = [], 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i >= n:
            break
        if value[i] == '"':
            got = quoted_at(value, i)
            if got is None:  # not closed: the rest is the element (as PostgreSQL reads it here)
                out.append(value[i + 1 :].replace('""', '"'))
                break
            out.append(got[0])
            i = got[1]
        else:
            j = i
            while j < n and value[j] != "," and not value[j].isspace():
                j += 1
            out.append(value[i:j])
            i = j
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == ",":
            i += 1
    return out


def set_statement(dbname: str, role: str | None, setting: str) -> sql.Composed:
    """``ALTER DATABASE d SET k TO v`` (or ``ALTER ROLE r IN DATABASE d``) for a ``k=v`` setconfig item."""
    name, _, value = setting.partition("=")
    values = split_guc_list(value) if name.lower() in _LIST_GUCS else [value]
    head = (
        sql.SQL("ALTER DATABASE {}").format(sql.Identifier(dbname))
        if role is None
        else sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), sql.Identifier(dbname))
    )
    return sql.SQL("{} SET {} TO {}").format(
        head, sql.Identifier(name), sql.SQL(", ").join(sql.Literal(v) for v in values)
    )


def _settings(props: dict) -> list[tuple[str | None, str]]:
    return [(s.get("role"), item) for s in props.get("settings") or [] for item in s.get("settings") or []]


def _grants(props: dict) -> list[tuple[str, str, bool]]:
    """The recorded grants in the catalog's own order (granting them in it gives the same datacl)."""
    return list(dict.fromkeys((a["grantee"], a["privilege"], bool(a["grantable"])) for a in props.get("acl") or []))


async def _apply_grants(
    run: Callable[[Any, str], Awaitable[bool]], dbname: str, recorded: dict, roles: TargetRoles, out: list[NotRestored]
) -> str | None:
    """The recorded database grants, after revoking PUBLIC's defaults; what was carried
    (None when the revoke itself was refused). Grants to missing roles go to ``out``."""
    db = sql.Identifier(dbname)
    ok = await run(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db), "database grants")
    absent: dict[str, list[str]] = {}
    granted = 0
    for grantee, privilege, grantable in _grants(recorded) if ok else ():
        if privilege not in _DATABASE_PRIVILEGES:  # never SQL text from metadata
            out.append(NotRestored(f"{privilege!r} on database {dbname} to {grantee}", "not a database privilege"))
            continue
        if grantee != "PUBLIC" and grantee not in roles.existing:
            absent.setdefault(grantee, []).append(privilege)
            continue
        to = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
        granted += await run(
            sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege), db, to, sql.SQL(" WITH GRANT OPTION" if grantable else "")
            ),
            f"{privilege} on database {dbname} to {grantee}",
        )
    for grantee, privileges in absent.items():
        out.append(
            NotRestored(
                f"{', '.join(privileges)} on database {dbname} to {grantee}",
                f"role {grantee} does not exist in the target cluster",
            )
        )
    return f"database grants ({granted} of {len(_grants(recorded))})" if ok else None


async def apply_database(
    conn: psycopg.AsyncConnection, dbname: str, recorded: dict | None, roles: TargetRoles, scrub
) -> tuple[list[str], list[NotRestored]]:
    """Give the database this restore created the recorded owner, settings, grants and comment;
    each statement on its own, a refused one named. Returns (carried, not restored)."""
    if not recorded or "error" in recorded:
        why = (
            f"the backup could not read them: {recorded['error']}"
            if recorded
            else "this snapshot does not record them (taken by an older version)"
        )
        return [], [NotRestored("database owner, settings, grants and comment", why)]
    carried: list[str] = []
    out: list[NotRestored] = []
    db = sql.Identifier(dbname)

    async def run(stmt, what: str) -> bool:
        try:
            await conn.execute(stmt)
            return True
        except psycopg.Error as exc:
            out.append(NotRestored(what, scrub(str(exc).strip().splitlines()[0])))
            return False

    owner = recorded.get("owner")
    if owner and owner != roles.current:
        if not roles.can_own(owner):
            out.append(
                NotRestored(
                    f"owner of database {dbname} ({owner})",
                    f"role {owner} does not exist in the target cluster"
                    if owner not in roles.existing
                    else f"the restoring role {roles.current} is neither a superuser nor a member of {owner}",
                )
            )
        elif await run(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)),
            f"owner of database {dbname} ({owner})",
        ):
            carried.append(f"database owner {owner}")
    done = 0
    for role, item in _settings(recorded):
        what = f"database setting {item}" if role is None else f"setting {item} of role {role} in this database"
        if role is not None and role not in roles.existing:
            out.append(NotRestored(what, f"role {role} does not exist in the target cluster"))
        elif await run(set_statement(dbname, role, item), what):
            done += 1
    if done:
        carried.append(f"{done} database settings")
    if recorded.get("acl") is not None:
        grants = await _apply_grants(run, dbname, recorded, roles, out)
        if grants is not None:
            carried.append(grants)
    if recorded.get("comment") is not None:
        if await run(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(recorded["comment"])),
            "comment on the database",
        ):
            carried.append("database comment")
    return carried, out


def compare_database(dbname: str, recorded: dict | None, current: dict) -> list[NotRestored]:
    """What of the recorded properties an existing target database lacks: named, not changed."""
    if not recorded or "error" in recorded or "error" in current:
        return []
    why = "the target database existed before this restore; its own properties are left as they are"
    out: list[NotRestored] = []
    if recorded.get("owner") != current.get("owner"):
        out.append(
            NotRestored(f"owner of database {dbname} ({recorded.get('owner')}; it is {current.get('owner')})", why)
        )
    lacking = [
        f"{item}" + (f" (role {r})" if r else "")
        for r, item in _settings(recorded)
        if (r, item) not in set(_settings(current))
    ]
    if lacking:
        out.append(NotRestored(f"database settings {listed(lacking)}", why))
    if recorded.get("acl") != current.get("acl") and set(_grants(recorded)) != set(_grants(current)):
        out.append(NotRestored("database grants (CONNECT, CREATE, TEMPORARY) as recorded", why))
    if recorded.get("comment") != current.get("comment") and recorded.get("comment") is not None:
        out.append(NotRestored("comment on the database", why))
    return out

"""`database check` (and `config check --connect`): is the configured database ready for its backups?

Like pgBackRest's ``check``: connect, check the server's version and the client program
that backups run, the permissions the configured mode needs, and in physical mode the
archiving settings, the server's OS user against the repository's files and the
archive_command's program, then (``wait``) force a WAL switch and wait until that segment
arrives in the repository, for at most ``[database] archive_timeout_seconds``.

Each check is passed (True), failed (False) or not run (None, with the reason): a check
that could not run is never counted as passed. A server that cannot be reached raises
DatabaseError (exit 14) before any check.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.config import DatabaseConfig
from core.errors import ToolVersionMismatch
from core.sources.postgres.archive_wait import archiver_report, force_switch, wait_archived
from core.sources.postgres.archiving import check_archiving
from core.sources.postgres.connection import PgTarget, one_row
from core.sources.postgres.tools import find_tool, server_major
from core.storage import owner as owners
from core.storage.local import LocalBackend

MIN_SERVER_VERSION_NUM = 100000  # pg_switch_wal, pg_walfile_name, pg_stat_progress_*: PostgreSQL 10
_SHOW = 5  # names listed in a failed check before "and N more"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool | None  # None: could not run (detail says why)
    detail: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    server: str
    mode: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> int:
        return sum(c.ok is True for c in self.checks)

    @property
    def failed(self) -> int:
        return sum(c.ok is False for c in self.checks)

    @property
    def not_run(self) -> int:
        return sum(c.ok is None for c in self.checks)

    @property
    def ok(self) -> bool:
        """No check failed (some may not have run: the summary says how many)."""
        return self.failed == 0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "server": self.server,
            "mode": self.mode,
            "passed": self.passed,
            "failed": self.failed,
            "not_run": self.not_run,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def _listed(names: list[str]) -> str:
    more = len(names) - _SHOW
    return ", ".join(names[:_SHOW]) + (f" and {more} more" if more > 0 else "")


async def run_checks(
    db: DatabaseConfig,
    config_path: Path,
    backend: LocalBackend,
    *,
    passphrase_file: Path | None = None,
    wait: bool = True,
) -> CheckReport:
    target = PgTarget.from_config(db)
    conn = await target.connect()  # unreachable: DatabaseError, exit 14
    checks: list[Check] = []
    aconn = None  # with backup_standby: the primary, which archives and starts/stops the backup
    try:
        facts = await _read_facts(conn, target)
        checks.append(
            Check(
                "connection",
                True,
                f"connected to {target.describe()} as role {facts['role']}"
                + (" (superuser)" if facts["super"] else ""),
            )
        )
        checks.append(_version_check(facts))
        if db.mode != "physical":
            checks.append(await _tool_check(db, facts))
            checks.append(await _read_check(conn, target, facts))
        else:
            atarget, afacts = target, facts
            if db.backup_standby:
                from core.sources.postgres.standby import archiving_target

                atarget = archiving_target(db)
                aconn = await atarget.connect()
                afacts = await _read_facts(aconn, atarget)
                checks.append(_standby_check(target, facts, atarget, afacts))
            else:
                checks.append(await _tool_check(db, facts))
                checks.append(await _replication_check(target, facts))
            settings = await check_archiving(atarget, config_path)
            checks.append(
                Check(
                    "archiving settings",
                    settings.ok,
                    f"wal_level, archive_mode and archive_command of {atarget.describe()} are set for this repository"
                    if settings.ok
                    else "; ".join(settings.problems) + "; `axisor-backup database archiving` prints what to set",
                )
            )
            server_user, why = _server_user(afacts)  # runs archive_command, so wal-push
            checks.append(_program_check(afacts["archive_command"], server_user, why))
            checks.append(_repository_check(backend, server_user, why, config_path, passphrase_file))
            if wait:
                checks.append(
                    await _switch_check(
                        aconn or conn, atarget, backend, afacts, settings.ok, float(db.archive_timeout_seconds)
                    )
                )
    finally:
        await conn.close()
        if aconn is not None:
            await aconn.close()
    return CheckReport(target.describe(), db.mode, tuple(checks))


async def _read_facts(conn: psycopg.AsyncConnection, target: PgTarget) -> dict:
    try:
        return await _facts(conn)
    except psycopg.Error as exc:
        raise target.failed("reading the settings of", exc) from None


def _standby_check(standby: PgTarget, facts: dict, primary: PgTarget, pfacts: dict) -> Check:
    """backup_standby: the configured server is a standby whose data directory this process
    reads, and primary_host/primary_port reach a primary where the role may start and stop
    a backup (core/sources/postgres/standby.py)."""
    name = "standby and primary"
    if not facts["in_recovery"]:
        return Check(name, False, f"{standby.describe()} is not a standby (backup_standby = true)")
    if pfacts["in_recovery"]:
        return Check(name, False, f"{primary.describe()} (primary_host/primary_port) is itself a standby")
    start = (
        "pg_backup_start(text, boolean)"
        if pfacts["version_num"] >= 150000
        else "pg_start_backup(text, boolean, boolean)"
    )
    if not (pfacts["super"] or pfacts["may_backup"]):
        return Check(name, False, f"role {pfacts['role']} may not run {start} on {primary.describe()}")
    d = facts["data_directory"]
    if not d or not Path(d).is_dir() or not os.access(d, os.R_OK | os.X_OK):
        return Check(
            name,
            False,
            f"the standby's data directory {d or '(not readable: data_directory)'} cannot be "
            "read by this process: run the backup on the standby's host as its OS user",
        )
    return Check(
        name,
        True,
        f"{standby.describe()} is a standby; its data directory {d} is readable here; "
        f"{primary.describe()} is its primary and the role may run {start}",
    )


async def _facts(conn: psycopg.AsyncConnection) -> dict:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT current_user, r.rolsuper, r.rolreplication, r.rolbypassrls, "
            "current_setting('server_version'), current_setting('server_version_num')::int, "
            "current_setting('archive_command'), pg_is_in_recovery(), "
            "has_function_privilege('pg_switch_wal()', 'EXECUTE'), "
            "CASE WHEN current_setting('server_version_num')::int >= 150000 "
            "THEN has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE') "
            "ELSE has_function_privilege('pg_start_backup(text, boolean, boolean)', 'EXECUTE') END "
            "FROM pg_roles r WHERE r.rolname = current_user"
        )
        (role, sup, repl, bypass, version, version_num, archive_command, in_recovery, may_switch, may_backup) = one_row(
            await cur.fetchone()
        )
        try:
            await cur.execute("SELECT current_setting('data_directory')")
            (data_directory,) = one_row(await cur.fetchone())
        except psycopg.Error:  # superuser or pg_read_all_settings only
            data_directory = None
    return {
        "role": role,
        "super": sup,
        "replication": repl,
        "bypassrls": bypass,
        "version": version,
        "version_num": version_num,
        "archive_command": archive_command,
        "in_recovery": in_recovery,
        "may_switch": may_switch,
        "may_backup": may_backup,
        "data_directory": data_directory,
    }


def _version_check(facts: dict) -> Check:
    ok = facts["version_num"] >= MIN_SERVER_VERSION_NUM
    standby = " (a standby)" if facts["in_recovery"] else ""
    return Check(
        "server version",
        ok,
        f"PostgreSQL {facts['version']}{standby}"
        if ok
        else f"PostgreSQL {facts['version']} is older than 10, which this program needs",
    )


async def _tool_check(db: DatabaseConfig, facts: dict) -> Check:
    name = "pg_basebackup" if db.mode == "physical" else "pg_dump"
    major = server_major(facts["version_num"])
    try:
        tool = await asyncio.to_thread(find_tool, name, db.pg_bin_dir)
    except ToolVersionMismatch as exc:
        return Check(name, False, str(exc))
    if tool.major < major:
        return Check(
            name,
            False,
            f"{tool.path} is version {tool.version}, older than the server "
            f"({facts['version']}): install major version {major} or newer and set "
            "database.pg_bin_dir",
        )
    return Check(name, True, f"{tool.path} {tool.version}")


async def _read_check(conn: psycopg.AsyncConnection, target: PgTarget, facts: dict) -> Check:
    """Logical mode: pg_dump must read every table, sequence and large object."""
    if facts["super"]:
        return Check("read permissions", True, f"role {facts['role']} is a superuser: pg_dump reads everything")
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT format('%%I.%%I', n.nspname, c.relname), "
                "  CASE WHEN NOT has_schema_privilege(n.oid, 'USAGE') THEN 'no USAGE on its schema' "
                "       WHEN NOT has_table_privilege(c.oid, 'SELECT') THEN 'no SELECT' "
                "       ELSE 'row-level security applies' END "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'm', 'S') AND n.nspname <> 'information_schema' "
                "  AND n.nspname NOT LIKE 'pg\\_%%' "
                "  AND (NOT has_schema_privilege(n.oid, 'USAGE') OR NOT has_table_privilege(c.oid, 'SELECT') "
                "       OR (c.relrowsecurity AND NOT %s AND NOT pg_has_role(c.relowner, 'USAGE'))) "
                "ORDER BY 1",
                (facts["bypassrls"],),
            )
            tables = await cur.fetchall()
            await cur.execute(
                "SELECT count(*) FROM pg_largeobject_metadata m WHERE current_setting('lo_compat_privileges') = 'off' "
                "AND NOT pg_has_role(m.lomowner, 'USAGE') AND NOT EXISTS (SELECT 1 FROM "
                "aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a WHERE a.privilege_type = 'SELECT' "
                "AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))"
            )
            (blobs,) = one_row(await cur.fetchone())
            await cur.execute(
                "SELECT pg_has_role('pg_read_all_data', 'USAGE') FROM pg_roles WHERE rolname = 'pg_read_all_data'"
            )
            row = await cur.fetchone()
    except psycopg.Error as exc:
        return Check("read permissions", False, f"could not check: {target.scrub(str(exc).strip())}")
    read_all = bool(row and row[0])
    how = "member of pg_read_all_data" if read_all else "grants checked table by table"
    if not tables and not blobs:
        return Check("read permissions", True, f"role {facts['role']} can read every table and large object ({how})")
    problems = []
    if tables:
        problems.append(
            f"{len(tables)} tables pg_dump cannot read: " + _listed([f"{name} ({why})" for name, why in tables])
        )
    if blobs:
        problems.append(f"{blobs} large objects it may not read (pg_read_all_data does not cover them)")
    return Check(
        "read permissions",
        False,
        f"role {facts['role']}: "
        + "; ".join(problems)
        + ". Back up as a superuser, or GRANT pg_read_all_data (and SELECT on the large objects, "
        "BYPASSRLS for row-level security) to it",
    )


async def _replication_check(target: PgTarget, facts: dict) -> Check:
    """Physical mode: pg_basebackup needs a replication connection (REPLICATION, pg_hba)."""
    if not (facts["super"] or facts["replication"]):
        return Check(
            "replication",
            False,
            f"role {facts['role']} has neither SUPERUSER nor REPLICATION: ALTER ROLE {facts['role']} REPLICATION",
        )
    kwargs: dict = {}
    if target.password is not None:
        kwargs["password"] = target.password
    elif target.passfile is not None:
        kwargs["passfile"] = str(target.passfile)
    try:
        conn = await psycopg.AsyncConnection.connect(
            target.conninfo(), replication="true", autocommit=True, application_name="axisor-backup", **kwargs
        )
    except psycopg.Error as exc:
        return Check(
            "replication",
            False,
            f"a replication connection (what pg_basebackup opens) is refused: "
            f"{target.scrub(str(exc).strip())}; allow it in pg_hba.conf "
            "(host replication ROLE ...)",
        )
    try:
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")  # the walsender speaks the simple protocol only
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            return Check(
                "replication",
                False,
                "IDENTIFY_SYSTEM on a replication connection failed: "
                + target.scrub((result.error_message or b"").decode("utf-8", "replace").strip()),
            )
    finally:
        await conn.close()
    return Check("replication", True, f"role {facts['role']} opens a replication connection")


def _server_user(facts: dict) -> tuple[owners.OsUser | None, str]:
    """The server's OS user (runs archive_command): the owner of its data directory, when
    that is on this host; else None and why it cannot be told."""
    d = facts["data_directory"]
    if not d:
        return None, (f"role {facts['role']} may not read data_directory (superuser or pg_read_all_settings)")
    user = owners.owner_of(Path(d)) if Path(d).is_dir() else None
    if user is None:
        return None, f"the data directory {d} is not on this host (the server's OS user is unknown)"
    return user, ""


def _program_check(archive_command: str, user: owners.OsUser | None, why: str) -> Check:
    try:
        words = shlex.split(archive_command)
    except ValueError:
        words = archive_command.split()
    if not words:
        return Check("archive program", False, "archive_command is empty")
    program = Path(words[0])
    if not program.is_absolute():
        return Check("archive program", None, f"{words[0]!r} is found on the server's PATH")
    if user is None:
        return Check("archive program", None, why)
    if not program.exists():
        return Check("archive program", False, f"{program} does not exist on this host")
    if not owners.can(program, user, 1) or not program.is_file():
        return Check(
            "archive program",
            False,
            f"{program} is not executable by {user.name}, the server's OS user "
            "(the archiver fails with exit 126 and records nothing in "
            "pg_stat_archiver): chmod +x it or fix archive_command",
        )
    blocked = [str(p) for p in program.parents if owners.can(p, user, 1) is False]
    if blocked:
        return Check("archive program", False, f"{program}: {user.name} may not enter {blocked[0]}")
    return Check("archive program", True, f"{program} is executable by {user.name}")


def _repository_check(
    backend: LocalBackend, user: owners.OsUser | None, why: str, config_path: Path, passphrase_file: Path | None
) -> Check:
    """wal-push runs as the server's OS user: it must read the config, the passphrase file
    and every file of the repository, and write into every folder."""
    name = "repository access"
    root = backend.root
    if not (root / "config").exists():
        return Check(name, False, f"no repository at {root}: run `axisor-backup init` as the server's OS user")
    if user is None:
        return Check(name, None, why)
    problems = []
    for label, path in (("config file", Path(config_path)), ("passphrase file", passphrase_file)):
        if path is not None and owners.can(Path(path), user, 4) is False:
            problems.append(f"the {label} {path} is not readable by {user.name}")
    report = owners.repository_access(root, user)
    if report.unseen:
        return Check(
            name,
            None,
            f"this process (OS user {owners.current_user().name}) cannot look "
            f"into {report.unseen[0]}; run database check as {user.name} or as root",
        )
    problems.extend(report.problems)
    total = report.total + len(problems) - len(report.problems)
    if problems:
        more = total - len(problems)
        return Check(
            name,
            False,
            f"{total} problems for {user.name}, who runs wal-push: "
            + "; ".join(problems)
            + (f"; and {more} more" if more > 0 else "")
            + f". Fix: chown -R {user.name} {root} (and run every command as {user.name})",
        )
    return Check(
        name,
        True,
        f"{report.checked} files and folders of {root} readable and writable by {user.name} "
        "(the server's OS user: owner of its data directory)",
    )


async def _switch_check(
    conn: psycopg.AsyncConnection,
    target: PgTarget,
    backend: LocalBackend,
    facts: dict,
    settings_ok: bool,
    timeout: float,
) -> Check:
    name = "WAL archived"
    if not settings_ok:
        return Check(name, None, "the archiving settings are not ready (see above)")
    if facts["in_recovery"]:
        return Check(name, None, "the server is a standby; a WAL switch can only be forced on the primary")
    if not facts["may_switch"]:
        return Check(
            name,
            False,
            f"role {facts['role']} may not force a WAL switch: GRANT EXECUTE ON FUNCTION "
            f"pg_switch_wal() TO {facts['role']} (this check and the one before each "
            "base backup need it)",
        )
    try:
        segment = await force_switch(conn)
        took = await wait_archived(backend, segment, timeout)
        if took is None:
            state, why = await archiver_report(conn, target, timeout, segment)
            return Check(
                name,
                False,
                f"WAL segment {segment} did not arrive in the repository within {timeout:g} s "
                f"([database] archive_timeout_seconds): archiving is {state}; {why}",
            )
    except psycopg.Error as exc:
        return Check(name, False, f"forcing a WAL switch failed: {target.scrub(str(exc).strip())}")
    return Check(name, True, f"WAL segment {segment} switched and arrived in the repository in {took:.1f} s")


async def restore_problems(database: DatabaseConfig) -> list[str]:
    """What stops a database restore before it starts, one line each: the client tools
    missing or unusable, the server unreachable (its message scrubbed of secrets)."""
    from core.sources.postgres.tools import find_tools

    problems: list[str] = []
    try:
        await asyncio.to_thread(find_tools, database.pg_bin_dir)
    except Exception as exc:  # noqa: BLE001 - whatever the tools say, said as it is
        problems.append(f"database restores cannot run: {exc}")
    target = PgTarget.from_config(database)
    try:
        conn = await asyncio.wait_for(target.connect(), 10)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"the database server cannot be reached: {target.scrub(str(exc)) or type(exc).__name__}")
    else:
        await conn.close()
    return problems

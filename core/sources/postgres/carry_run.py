"""Carrying what a logical restore holds besides rows into its target, around pg_restore:
``--roles`` (the snapshot's roles the target cluster lacks, created) and what the target
can take (carry.plan over the chosen entries: ``_carry_before``), the database's own
properties applied or compared (``_carry_database``), and ``preview_carry``, the same
predicted for ``restore --dry-run``."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace

import psycopg

from core.repository.repository import Repository
from core.repository.snapshot import Snapshot
from core.sources.postgres import carry, dumpsum, pgglobals, toc
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.logical_snapshot import _dump_node, _globals_text, read_layout
from core.sources.postgres.restore_plan import _resolve
from core.sources.postgres.restore_report import DbRestoreReport
from core.sources.postgres.restore_target import _maintenance


async def _carry_before(
    target: PgTarget,
    entries: list[dumpsum.TocEntry],
    globals_text: str | None,
    no_globals: str,
    roles: bool,
    report: DbRestoreReport,
) -> tuple[carry.TargetRoles, carry.CarryPlan]:
    """``--roles`` (create the missing roles), then what pg_restore can carry into this target."""
    NR = pgglobals.NotRestored
    conn = await _maintenance(target)
    try:
        found = pgglobals.parse(globals_text) if globals_text is not None else None
        if roles and found is None:
            report.not_restored.append(NR("roles and memberships (--roles)", no_globals))
        elif roles and found is not None:
            done = await pgglobals.restore_roles(conn, target, found)
            report.roles_created = done.created
            report.not_restored += done.not_restored
            if done.created:
                report.carried.append(f"roles created: {', '.join(done.created)}")
                if not found.has_passwords:
                    report.not_restored.append(
                        NR(
                            f"passwords of the roles created ({', '.join(done.created)})",
                            "the backup leaves role passwords out ([database] globals_with_passwords = false); "
                            "set them with ALTER ROLE ... PASSWORD",
                        )
                    )
        if found is not None:
            existing, _, spaces = await pgglobals.current_roles(conn)
            if not roles:
                absent = [r for r in found.roles if r not in existing]
                if absent:
                    report.not_restored.append(
                        NR(
                            f"role{'s' if len(absent) > 1 else ''} {carry.listed(absent)} of the backed-up cluster "
                            f"(with {'their' if len(absent) > 1 else 'its'} memberships)",
                            "not in the target cluster; restore with --roles to create them",
                        )
                    )
            lacking = [t for t in found.tablespaces if t not in spaces]
            if lacking:
                report.not_restored.append(
                    NR(
                        f"tablespace{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}",
                        "not in the target cluster, and never created by a restore (a folder on the server): "
                        "create it with CREATE TABLESPACE",
                    )
                )
    except psycopg.Error as exc:
        raise target.failed("reading the roles of", exc) from None
    finally:
        await conn.close()
    # Asked in the target database itself: membership of pg_database_owner depends on it.
    who = await _roles_at(target.connect(), target)
    plan = carry.plan(entries, who, globals_available=found is not None, roles_given=roles)
    report.carried += plan.carried
    report.not_restored += plan.not_restored
    return who, plan


async def _roles_at(connecting: Awaitable[psycopg.AsyncConnection], target: PgTarget) -> carry.TargetRoles:
    """The target cluster's roles as seen from the connection ``connecting`` gives."""
    conn = await connecting
    try:
        return await carry.target_roles(conn)
    except psycopg.Error as exc:
        raise target.failed("reading the roles of", exc) from None
    finally:
        await conn.close()


async def preview_carry(
    repo: Repository,
    snap: Snapshot,
    target: PgTarget,
    *,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    roles: bool = False,
) -> dict:
    """What ``restore --dry-run`` predicts a restore would carry into ``target`` (carry.plan over
    the entries it would restore, the roles ``--roles`` would create counted as existing),
    changing nothing. The database's own properties are known only when applied."""
    meta = snap.metadata or {}
    tree = await repo.load_tree(bytes.fromhex(snap.tree))
    layout = await read_layout(repo, _dump_node(tree, meta))
    entries = list(layout.entries.values())
    if tables or schemas:
        want_tables, want_schemas = _resolve(entries, tables, schemas)
        ids = set(toc.select(entries, want_tables, want_schemas).ids)
        entries = [e for e in entries if e.dump_id in ids]
    text, no_globals = await _globals_text(repo, tree, meta)
    found = pgglobals.parse(text) if text is not None else None
    who = await _roles_at(_maintenance(target), target)
    created = [r for r in found.roles if r not in who.existing] if roles and found is not None else []
    if created:
        who = replace(who, existing=who.existing | frozenset(created))
    plan = carry.plan(entries, who, globals_available=found is not None)
    missed = [n.as_dict() for n in plan.not_restored]
    if roles and found is None:
        missed.insert(0, pgglobals.NotRestored("roles and memberships (--roles)", no_globals).as_dict())
    return {"owners": plan.owners, "roles_to_create": created, "carried": list(plan.carried), "not_restored": missed}


async def _carry_database(
    target: PgTarget, name: str, recorded: dict | None, who: carry.TargetRoles, created: bool, report: DbRestoreReport
) -> None:
    """The database's owner, settings, grants and comment: applied to a database this restore
    created, compared (and the differences named) for one that existed."""
    conn = await target.connect()
    try:
        if created:
            done, missed = await carry.apply_database(conn, name, recorded, who, target.scrub)
            report.carried += done
        else:
            missed = carry.compare_database(name, recorded, await carry.database_properties(conn))
            if not recorded:
                missed = [
                    pgglobals.NotRestored(
                        "database owner, settings, grants and comment",
                        "this snapshot does not record them (taken by an older version)",
                    )
                ]
    except psycopg.Error as exc:
        raise target.failed("setting the database properties of", exc) from None
    finally:
        await conn.close()
    report.not_restored += missed

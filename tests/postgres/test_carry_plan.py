"""The pure parts of carrying roles and privileges: reading pg_dumpall's globals, the roles an
ACL or policy names, the owner/privilege decision, and list settings (no server needed)."""

from __future__ import annotations

import asyncio

from app.cli_restore_db import not_restored_lines
from core.sources.postgres import carry, pgglobals
from core.sources.postgres.dumpsum import TocEntry
from core.sources.postgres.logical_snapshot import _globals_text

GLOBALS = """--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE "we""ird; role";
ALTER ROLE "we""ird; role" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE "we""ird; role" IS 'has; semicolons -- and dashes
and a second line';
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
ALTER ROLE app_owner SET search_path TO 'app', 'public';
ALTER ROLE app_owner IN DATABASE app SET work_mem TO '8MB';

--
-- Role memberships
--

GRANT app_owner TO "we""ird; role" GRANTED BY postgres;

--
-- Tablespaces
--

CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
GRANT ALL ON TABLESPACE fast TO app_owner;
"""


def test_globals_are_read_statement_by_statement() -> None:
    g = pgglobals.parse(GLOBALS)
    assert g.roles == ["app_owner", 'we"ird; role', "postgres"]  # postgres: the dumping role, no CREATE
    assert g.role_statements["app_owner"] == [
        "ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS",
        "ALTER ROLE app_owner SET search_path TO 'app', 'public'",
    ]  # IN DATABASE: the database's, not here
    assert g.role_statements['we"ird; role'][1].endswith("'has; semicolons -- and dashes\nand a second line'")
    assert g.memberships == [("app_owner", 'we"ird; role', 'GRANT app_owner TO "we""ird; role" GRANTED BY postgres')]
    assert g.tablespaces == ["fast"] and not g.has_passwords
    assert pgglobals.parse("ALTER ROLE a WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:x';").has_passwords
    assert pgglobals.split_statements("SELECT E'it\\'s; here'; SELECT 2") == ["SELECT E'it\\'s; here'", "SELECT 2"]


def _e(i: int, desc: str, tag: str, owner: str = "", defn: str = "", ns: str = "app") -> TocEntry:
    return TocEntry(i, False, desc, ns, tag, owner, (), "", defn)


def test_roles_named_by_grants_default_privileges_and_policies() -> None:
    acl = _e(
        1,
        "ACL",
        "TABLE docs",
        defn="GRANT SELECT ON TABLE app.docs TO reporting;\n"
        'GRANT SELECT(body) ON TABLE app.docs TO "Big Boss", PUBLIC;\n'
        "REVOKE ALL ON TABLE app.docs FROM app_owner;\n",
    )
    assert carry.named_roles(acl) == {"reporting", "Big Boss", "app_owner"}
    default = _e(
        2,
        "DEFAULT ACL",
        "DEFAULT PRIVILEGES FOR TABLES",
        defn=("ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO reporting;\n"),
    )
    assert carry.named_roles(default) == {"app_owner", "reporting"}
    policy = _e(
        3,
        "POLICY",
        "docs mine",
        defn="CREATE POLICY mine ON app.docs FOR SELECT TO reporting, "
        "CURRENT_USER USING ((owner_name = CURRENT_USER));\n",
    )
    assert carry.named_roles(policy) == {"reporting"}
    assert carry.named_roles(_e(4, "POLICY", "docs all", defn="CREATE POLICY a ON app.docs USING (true);\n")) == set()


def test_plan_names_missing_and_unsettable_owners_and_leaves_out_only_the_grants_that_would_fail() -> None:
    entries = [
        _e(1, "SCHEMA", "app", "app_owner", ns=""),
        _e(2, "TABLE", "docs", "app_owner"),
        _e(3, "TABLE", "mine", "me"),
        _e(4, "TABLE DATA", "docs", "app_owner"),
        _e(5, "ACL", "TABLE docs", defn="GRANT SELECT ON TABLE app.docs TO reporting;\n"),
        _e(6, "ACL", "TABLE mine", defn="GRANT SELECT ON TABLE app.mine TO PUBLIC;\n"),
        _e(7, "ACL", "DATABASE app", defn="GRANT CONNECT ON DATABASE app TO reporting;\n", ns=""),
    ]
    everyone = carry.TargetRoles(
        "me", False, frozenset({"me", "app_owner", "reporting"}), frozenset({"me", "app_owner"})
    )
    p = carry.plan(entries, everyone, globals_available=True)
    assert p.owners and not p.exclude and not p.not_restored
    assert p.carried == ("ownership of 2 objects (roles app_owner)", "privileges on 2 objects")
    alone = carry.TargetRoles("me", False, frozenset({"me"}), frozenset({"me"}))
    p = carry.plan(entries, alone, globals_available=False)
    assert not p.owners and p.exclude == {5}  # the database's own ACL is never replayed by pg_restore
    assert [(n.what, n.why) for n in p.not_restored] == [
        (
            "ownership of 2 objects (app_owner: 2)",
            "role app_owner does not exist in the target cluster; create them "
            "first (this snapshot holds no globals for --roles); they are owned by me instead",
        ),
        (
            "privileges on 1 objects (TABLE app.docs)",
            "it names role reporting, not in the target cluster; create "
            "them first (this snapshot holds no globals for --roles)",
        ),
    ]
    member_of_none = carry.TargetRoles("me", False, frozenset({"me", "app_owner", "reporting"}), frozenset({"me"}))
    p = carry.plan(entries, member_of_none, globals_available=True)
    assert not p.owners and "neither a superuser nor a member of app_owner" in p.not_restored[0].why


def test_list_settings_are_split_like_pg_dump_does() -> None:
    assert carry.split_guc_list('app, "$user", "We ""x""",public') == ["app", "$user", 'We "x"', "public"]
    stmt = carry.set_statement("app", None, 'search_path=app, "$user"')
    assert stmt.as_string(None) == """ALTER DATABASE "app" SET "search_path" TO 'app', '$user'"""
    stmt = carry.set_statement("app", "rep", "statement_timeout=5s")
    assert stmt.as_string(None) == """ALTER ROLE "rep" IN DATABASE "app" SET "statement_timeout" TO '5s'"""


def test_a_snapshot_without_globals_says_why() -> None:
    assert asyncio.run(_globals_text(None, None, {})) == (
        None,
        "this snapshot holds no globals (taken by a version that did not record them)",
    )
    assert (
        asyncio.run(_globals_text(None, None, {"globals": {"file": None, "error": "pg_dumpall failed"}}))[1]
        == "the backup could not record the globals: pg_dumpall failed"
    )


def test_the_text_report_ends_with_the_not_restored_list_or_says_nothing_was_left() -> None:
    assert not_restored_lines(["ownership of 3 objects (roles a)"], []) == [
        "carried: ownership of 3 objects (roles a)",
        "not restored: nothing (ownership, privileges, policies and database properties carried)",
    ]
    missed = [pgglobals.NotRestored("ownership of 3 objects (a: 3)", "role a does not exist\x1b[2J")]
    assert not_restored_lines([], missed) == [
        "not restored (1):",
        "  ownership of 3 objects (a: 3): role a does not exist\\x1b[2J",
    ]

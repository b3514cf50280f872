"""What a logical restore carries besides rows (ownership, privileges, policies, the
database's settings, grants and comment, roles with --roles) and the "not restored" list it
prints when it cannot, against real throwaway clusters."""

from __future__ import annotations

import pytest

from conftest import PASSPHRASE, Workspace
from core.config import load_config
from core.jobs.api import JobState
from core.jobs.engine import Engine

ROLES = """
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE reporting NOLOGIN;
CREATE ROLE "App User" LOGIN PASSWORD 'pw-never-shown-42';
GRANT reporting TO "App User";
COMMENT ON ROLE reporting IS 'reads; never writes';
CREATE DATABASE app OWNER app_owner;
ALTER DATABASE app SET search_path = app, "$user", public;
ALTER DATABASE app SET work_mem = '8MB';
ALTER ROLE reporting IN DATABASE app SET statement_timeout = '5s';
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO reporting;
GRANT TEMP ON DATABASE app TO "App User";
COMMENT ON DATABASE app IS 'the app''s data';
"""

APP = """
CREATE SCHEMA app AUTHORIZATION app_owner;
SET ROLE app_owner;
CREATE TABLE app.docs (id int PRIMARY KEY, owner_name text NOT NULL, body text);
INSERT INTO app.docs SELECT g, CASE WHEN g % 2 = 0 THEN 'reporting' ELSE 'app_owner' END, 'doc ' || g
    FROM generate_series(1, 40) g;
ALTER TABLE app.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_docs ON app.docs USING (owner_name = current_user);
CREATE POLICY report_even ON app.docs FOR SELECT TO reporting USING (id % 2 = 0);
CREATE VIEW app.my_docs WITH (security_invoker = true) AS SELECT id, body FROM app.docs;
GRANT USAGE ON SCHEMA app TO reporting;
GRANT SELECT ON app.docs, app.my_docs TO reporting;
RESET ROLE;
CREATE TABLE public.plain (id int);
INSERT INTO public.plain VALUES (1), (2);
"""

OWNERS = (
    "SELECT string_agg(n.nspname || '.' || c.relname || '=' || pg_get_userbyid(c.relowner) || ' '"
    " || coalesce(c.relacl::text, '-'), '; ' ORDER BY n.nspname, c.relname)"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname IN ('app', 'public') AND c.relkind IN ('r', 'v')"
)
POLICIES = (
    "SELECT string_agg(policyname || ':' || array_to_string(roles, ','), ' ' ORDER BY policyname) FROM pg_policies"
)


def _db(c, name: str) -> dict[str, str]:
    """The database-level facts a restore should carry, comparable across databases."""
    q = lambda s: c.psql(s.replace("DB", name.replace("'", "''")))  # noqa: E731
    return {
        "owner": q("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'DB'"),
        "comment": q("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'DB'"),
        "acl": q("SELECT datacl::text FROM pg_database WHERE datname = 'DB'"),
        "settings": q(
            "SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '-') || ':'"
            " || array_to_string(s.setconfig, '|'), ' ' ORDER BY s.setrole) FROM pg_db_role_setting s"
            " JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'DB'"
        ),
    }


@pytest.fixture(scope="module")
def source(pg_cluster):
    c = pg_cluster()
    roles, _, rest = ROLES.partition("CREATE DATABASE app OWNER app_owner;")
    c.psql(roles)
    c.psql("CREATE DATABASE app OWNER app_owner")
    c.psql(rest)
    c.psql(APP, "app")
    return c


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory, source) -> Workspace:
    """One backup of ``app`` for every test here (each restores into a database of its own)."""
    root = tmp_path_factory.mktemp("carry")
    (root / "src").mkdir()
    ws = Workspace(root, root / "src", root / "repo", root / "config.toml")
    ws.config.write_text(
        f'[database]\nenabled = true\nurl = "{source.url("app")}"\n[storage]\nlocal_path = "{ws.repo}"\n'
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    ws.snap = r.json()["snapshots"][0]["id"]  # type: ignore[attr-defined]  # by id: another test adds one
    return ws


def test_same_cluster_carries_owners_grants_policies_and_database_properties(backed_up: Workspace, source) -> None:
    ws = backed_up
    r = ws.cli("snapshots", "--json")
    meta = [s for s in r.json()["snapshots"] if s["source"] == "database"][0]["metadata"]
    assert meta["globals"] == {"file": "globals.sql", "size": meta["globals"]["size"], "role_passwords": False}
    assert meta["database_properties"]["owner"] == "app_owner"
    r = ws.cli("restore", ws.snap, "--target-db", source.url("app%20copy"), "--json")
    assert r.code == 0, r.out + r.err
    rep = r.json()
    assert rep["ok"] and rep["not_restored"] == [] and rep["roles_created"] == []
    assert any(c.startswith("ownership of") for c in rep["carried"])
    assert source.psql(OWNERS, "app copy") == source.psql(OWNERS, "app")
    assert source.psql(POLICIES, "app copy") == source.psql(POLICIES, "app")
    assert _db(source, "app copy") == _db(source, "app")
    # RLS and the security-invoker view behave as at the source: reporting sees the even rows.
    seen = "SET ROLE reporting; SELECT count(*) FROM app.my_docs"
    assert source.psql(seen, "app copy") == source.psql(seen, "app") == "20"
    # Over an existing database (--force) its own properties are compared, named, never changed.
    source.psql('ALTER DATABASE "app copy" RESET work_mem; COMMENT ON DATABASE "app copy" IS NULL')
    r = ws.cli("restore", ws.snap, "--target-db", source.url("app%20copy"), "--force", "--json")
    assert r.code == 7, r.out + r.err
    why = "the target database existed before this restore; its own properties are left as they are"
    assert r.json()["not_restored"] == [
        {"what": "database settings work_mem=8MB", "why": why},
        {"what": "comment on the database", "why": why},
    ]
    assert _db(source, "app copy")["comment"] == ""


async def _restore_job(ws: Workspace, url: str):
    engine = Engine(load_config(ws.config), lambda confirm: PASSPHRASE, directory=ws.root / "state")
    await engine.start()
    try:
        job = await engine.submit("restore", {"snapshot": ws.snap, "target_db": url}, origin="cli")
        return await engine.wait(job.id)
    finally:
        await engine.close()


async def test_missing_roles_are_listed_then_created_by_roles(backed_up: Workspace, source, pg_cluster) -> None:
    ws = backed_up
    other = pg_cluster()  # a fresh cluster: none of the roles exist
    # A restore job's record ends with the same list, and exit_code 7.
    done = await _restore_job(ws, other.url("app_job"))
    assert done.state == JobState.COMPLETED, done.error
    assert done.result["exit_code"] == 7  # finished; ownership and privileges not carried (docs/CLI.md)
    assert any(n["what"].startswith("ownership of 3 objects") for n in done.result["not_restored"])
    # --dry-run predicts, changing nothing: with --roles, the roles it would create, and then
    # that everything would be carried.
    dry = ws.cli("restore", ws.snap, "--target-db", other.url("app"), "--dry-run", "--roles", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["carry"] == {
        "owners": True,
        "roles_to_create": ["App User", "app_owner", "reporting"],
        "carried": ["ownership of 3 objects (roles app_owner)", "privileges on 3 objects"],
        "not_restored": [],
    }
    r = ws.cli("restore", ws.snap, "--target-db", other.url("app"), "--json")
    assert r.code == 7, r.out + r.err
    assert "warning: 9 items were not restored (listed above: what and why) (exit 7)" in r.err
    rep = r.json()
    assert rep["ok"]  # the rows are all there and validated
    items = {n["what"]: n["why"] for n in rep["not_restored"]}
    owner_item = next(w for w in items if w.startswith("ownership of"))
    assert "app_owner" in owner_item and "app_owner" in items[owner_item] and "--roles" in items[owner_item]
    assert "they are owned by postgres instead" in items[owner_item]
    assert items["privileges on 3 objects (SCHEMA app, TABLE app.docs, TABLE app.my_docs)"].startswith(
        "they name role reporting, not in the target cluster"
    )
    assert any("report_even" in w for w in items)  # the policy naming a missing role
    assert any(w.startswith("owner of database app") for w in items)
    assert any("statement_timeout" in w and "reporting" in items[w] for w in items)
    assert any(w.startswith("roles ") and "App User" in w for w in items)
    # What could be carried was: the database settings and comment.
    facts = _db(other, "app")
    assert facts["comment"] == "the app's data"
    assert '-:search_path=app, "$user", public|work_mem=8MB' == facts["settings"]
    assert other.psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('app_owner', 'reporting')") == "0"

    # --roles: the roles are created (without passwords), and then everything is carried.
    r = ws.cli("restore", ws.snap, "--target-db", other.url("app2"), "--roles", "--json")
    assert r.code == 7, r.out + r.err  # the passwords were left out of the backup: said so
    rep = r.json()
    assert sorted(rep["roles_created"]) == ["App User", "app_owner", "reporting"]
    assert [n["what"] for n in rep["not_restored"]] == [
        "passwords of the roles created (App User, app_owner, reporting)"
    ]
    assert other.psql(OWNERS, "app2") == source.psql(OWNERS, "app")
    assert other.psql(POLICIES, "app2") == source.psql(POLICIES, "app")
    assert _db(other, "app2") == {**_db(source, "app"), "settings": _db(source, "app")["settings"]}
    assert other.psql("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'App User'") == "t"
    assert (
        other.psql("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'reporting'")
        == "reads; never writes"
    )
    assert other.psql("SELECT pg_has_role('App User', 'reporting', 'MEMBER')") == "t"
    assert "pw-never-shown-42" not in r.out + r.err
    # Existing roles are never changed: a second --roles creates nothing.
    again = ws.cli("restore", ws.snap, "--target-db", other.url("app3"), "--roles", "--json")
    assert again.code == 0, again.out + again.err
    assert again.json()["roles_created"] == [] and again.json()["not_restored"] == []


def test_a_role_that_may_not_give_objects_away_is_named(backed_up: Workspace, source) -> None:
    """Restoring as a non-superuser: the owning roles exist, but it is no member of them."""
    source.psql("DO $$ BEGIN CREATE ROLE restorer LOGIN CREATEDB; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    r = backed_up.cli("restore", backed_up.snap, "--target-db", source.url("by_restorer", "restorer"), "--json")
    assert r.code == 7, r.out + r.err
    rep = r.json()
    assert rep["ok"]
    items = {n["what"]: n["why"] for n in rep["not_restored"]}
    assert items["ownership of 4 objects (app_owner: 3, postgres: 1)"] == (
        "the restoring role restorer is neither a superuser nor a member of app_owner, postgres; "
        "they are owned by restorer instead"
    )
    assert "owner of database by_restorer (app_owner)" in items
    assert items["setting statement_timeout=5s of role reporting in this database"] == "permission denied"
    assert len(items) == 3  # the database's settings, grants and comment: it owns the database
    # What it could carry was: the grants (it owns the objects now) and the policies.
    assert source.psql(POLICIES, "by_restorer") == source.psql(POLICIES, "app")
    assert (
        source.psql("SELECT relacl::text FROM pg_class WHERE relname = 'docs'", "by_restorer")
        == "{restorer=arwdDxt/restorer,reporting=r/restorer}"
    )


def test_a_snapshot_without_globals_still_restores_and_says_so(backed_up: Workspace, source, pg_bin) -> None:
    """pg_dumpall missing at backup: the dump is kept (a warning), and --roles says why it cannot help."""
    ws = backed_up
    bindir = ws.root / "bin"
    bindir.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        (bindir / name).symlink_to(pg_bin / name)
    config = ws.root / "no-dumpall.toml"  # the same repository, pg_dumpall out of reach
    config.write_text(ws.config.read_text().replace("[storage]", f'pg_bin_dir = "{bindir}"\n[storage]'))
    without = Workspace(ws.root, ws.src, ws.repo, config)
    r = without.cli("backup", "--json")
    assert r.code == 7 and "globals (roles, memberships, tablespaces) not recorded: pg_dumpall not found" in r.out
    snap = r.json()["snapshots"][0]["id"]
    r = without.cli("restore", snap, "--target-db", source.url("no_globals"), "--roles", "--json")
    assert r.code == 7, r.out + r.err
    rep = r.json()
    assert rep["ok"] and rep["roles_created"] == []
    assert rep["not_restored"] == [
        {
            "what": "roles and memberships (--roles)",
            "why": "the backup could not record the globals: pg_dumpall not found (looked "
            f"in {bindir}); install the PostgreSQL client programs or set "
            "database.pg_bin_dir",
        }
    ]
    assert source.psql(OWNERS, "no_globals") == source.psql(OWNERS, "app")  # the roles exist here: carried

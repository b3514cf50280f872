"""Finding PostgreSQL programs, version checks, and connection targets without passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import DatabaseConfig
from core.errors import ToolVersionMismatch, UsageError
from core.sources.postgres.connection import PgTarget
from core.sources.postgres.tools import Tool, check_dump_tool, check_restore_tool, find_tool


def test_find_tool_prefers_pg_bin_dir_and_reads_the_version(pg_bin: Path) -> None:
    t = find_tool("pg_dump", pg_bin)
    assert t.path == pg_bin / "pg_dump" and t.major >= 15 and t.version.startswith(str(t.major))
    assert find_tool("pg_restore").major >= 10  # found without configuration too


def test_missing_tool_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ToolVersionMismatch, match="pg_dump not found.*pg_bin_dir"):
        find_tool("pg_dump", tmp_path)


def test_version_checks() -> None:
    old = Tool("pg_dump", Path("/x/pg_dump"), "14.9", 14)
    with pytest.raises(ToolVersionMismatch, match="older than the server"):
        check_dump_tool(old, 150004, "15.4")
    check_dump_tool(old, 140009, "14.9")
    check_dump_tool(Tool("pg_dump", Path("/x"), "16.1", 16), 150004, "15.4")  # newer pg_dump is fine
    with pytest.raises(ToolVersionMismatch, match="older than the pg_dump"):
        check_restore_tool(Tool("pg_restore", Path("/x"), "15.4", 15), 16, "16.2")
    check_restore_tool(Tool("pg_restore", Path("/x"), "16.2", 16), 15, "15.4")


def test_target_never_carries_the_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    t = PgTarget.from_config(DatabaseConfig(host="db", port=5433, dbname="app", user="u", password_file=pw))
    assert t.password == "s3cret" and "s3cret" not in t.conninfo() and "s3cret" not in repr(t)
    assert t.child_env()["PGPASSWORD"] == "s3cret"
    u = PgTarget.from_url("postgresql://u:other@db:5433/copy", t)
    assert u.password == "other" and "other" not in u.conninfo() and u.params["dbname"] == "copy"
    same = PgTarget.from_url("postgresql://u@db:5433/copy", t)
    assert same.password == "s3cret"  # same server: the configured password source
    elsewhere = PgTarget.from_url("postgresql://u@other-host/copy", t)
    assert elsewhere.password is None
    assert PgTarget.from_url("copy2", t).params == {**t.params, "dbname": "copy2"}
    with pytest.raises(UsageError):
        PgTarget.from_url("postgresql://db:5433/", t)
    pw.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        PgTarget.from_config(DatabaseConfig(password_file=pw))
    pf = PgTarget.from_config(DatabaseConfig(host="db", passfile=tmp_path / "pgpass"))
    assert pf.child_env()["PGPASSFILE"] == str(tmp_path / "pgpass") and pf.password is None

"""The restore wizard with a real PostgreSQL: some tables of a logical backup into another
database, validated by the engine's row counts."""

from __future__ import annotations

import pytest

from console_support import (
    _backups,
    write_platform,
    choose as _choose,
    console,
    pick_row as _pick_row,
    settle,
    wait_result as _wait_result,
)
from core.service import BackupService
from postgres.conftest import _pg_bin, _start, _stop


@pytest.fixture
def cluster():
    c = _start(_pg_bin(), ())
    yield c
    _stop(c)


async def test_tables_into_another_database(tmp_path, cluster):
    cluster.createdb("axisor")
    cluster.psql(
        "CREATE TABLE users (id int PRIMARY KEY, name text); "
        "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 250) g; "
        "CREATE TABLE events (id int PRIMARY KEY, what text); "
        "INSERT INTO events SELECT g, 'e' FROM generate_series(1, 40) g;",
        dbname="axisor",
    )
    p = write_platform(tmp_path)
    await _backups(p)
    with open(p.config_path, "a") as fh:
        fh.write(
            f'\n[database]\nenabled = true\nhost = "127.0.0.1"\nport = {cluster.port}\n'
            f'user = "postgres"\ndbname = "axisor"\n'
        )

    async def dump() -> None:
        svc = BackupService(p.config, p.passphrase)
        try:
            await svc.backup(sources=["database"])
        finally:
            await svc.close()

    await dump()
    app = p.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        await _choose(pilot, app, "tables")
        assert wiz.step == "point" and wiz.plan.source == "database"
        snap = next(s for s in wiz.snapshots if s.source == "database")
        await _pick_row(pilot, app, "#point-table", snap.id)
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "select"
        users = next(k.value for k in wiz.query_one("#select-table").rows if k.value.endswith("users"))
        await _pick_row(pilot, app, "#select-table", users)
        await pilot.press("space", "enter")
        await settle(pilot, app)
        assert wiz.step == "where"
        await _choose(pilot, app, "alternate")
        await pilot.press(*"axisor_restored", "enter")
        await settle(pilot, app)
        assert wiz.step == "preflight" and wiz.preflight.confirm_word == ""  # another database: nothing live
        await pilot.press("enter")
        await _wait_result(pilot, app, wiz)
        assert wiz.result_ok is True, wiz.query_one("#result-text").render()
        assert "row counts: 1 of 1 tables match" in str(wiz.query_one("#result-text").render())
        assert "not restored: nothing" in str(wiz.query_one("#result-text").render())
    assert app.submitted == [
        ("restore", {"snapshot": snap.id, "target_db": "axisor_restored", "force": False, "tables": [users]})
    ]
    assert cluster.psql("SELECT count(*) FROM users", dbname="axisor_restored") == "250"
    assert cluster.psql("SELECT to_regclass('public.events') IS NULL", dbname="axisor_restored") == "t"

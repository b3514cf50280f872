"""The restore wizard offers a table as of a time (issue 21, part 1): its preflight says what
lands where and that nothing live is replaced, and the job it submits is the CLI's."""

from __future__ import annotations

import asyncio

from core.restore.preflight import Plan, preflight


def test_the_preflight_of_a_table_as_of_a_time_replaces_nothing() -> None:
    plan = Plan(
        what="tables",
        source="database",
        to_time="2026-12-04T14:32:00+00:00",
        selection=("sales.orders", '"Sales Dept".items'),
        where="beside",
        target="shop",
    )
    pf = asyncio.run(preflight(None, plan, [], "shop"))
    assert pf.overwrites == () and pf.confirm_word == "" and pf.problems == ()
    assert any("sales.orders: copied under its name followed by _at_1432" in line for line in pf.lines)
    assert pf.jobs == (
        (
            "restore",
            {
                "source": "database",
                "to_time": "2026-12-04T14:32:00+00:00",
                "tables": ["sales.orders", '"Sales Dept".items'],
                "target_db": "shop",
            },
        ),
    )


def test_in_place_is_the_destructive_choice_behind_the_typed_word() -> None:
    """In place (after the engine's safety snapshot of those tables): each table listed as
    overwritten, the database's name to type, the job the CLI's `--force` form."""
    plan = Plan(
        what="tables",
        source="database",
        to_time="2026-12-04T14:32:00+00:00",
        selection=("sales.orders",),
        where="original",
        target="",
    )
    pf = asyncio.run(preflight(None, plan, [], "shop"))
    assert pf.overwrites == ("table sales.orders in database shop",)
    assert pf.confirm_word == "shop" and pf.problems == ()
    assert "safety snapshot of those tables" in pf.safety and "rollback" in pf.safety
    assert any("IN PLACE" in line for line in pf.lines)
    assert pf.jobs == (
        (
            "restore",
            {
                "source": "database",
                "to_time": "2026-12-04T14:32:00+00:00",
                "tables": ["sales.orders"],
                "target_db": "shop",
                "force": True,
            },
        ),
    )


async def test_the_where_step_offers_in_place_last_and_it_waits_for_the_typed_word(platform) -> None:
    """Beside first and under the cursor; in place last, behind the separator; the preflight
    lists the table as overwritten and nothing starts until the word is typed."""
    from textual.widgets import Input, OptionList, Static

    from console_support import choose, console, settle

    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        await pilot.press("r")
        await settle(pilot, app)
        wiz = app.screen
        plan = Plan(what="tables", source="database", to_time="2026-12-04T14:32:00+00:00", selection=("sales.orders",))
        wiz._go("where", plan)
        await settle(pilot, app)
        ol = wiz.query_one("#where-list", OptionList)
        ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
        assert ids[0] == "beside" and ids[-1] == "original" and ol.highlighted == 0
        await choose(pilot, app, "original")
        assert wiz.step == "preflight"
        text = str(wiz.query_one("#preflight-text", Static).render())
        assert "WILL OVERWRITE" in text and "table sales.orders" in text and "safety snapshot of those tables" in text
        await pilot.press("enter")
        await settle(pilot, app)
        assert wiz.step == "confirm" and wiz.preflight.confirm_word
        wiz.query_one("#confirm-input", Input).value = ""
        await pilot.press(*"yes", "enter")  # not the word: nothing starts
        await settle(pilot, app)
        assert wiz.step == "confirm" and app.submitted == []


def test_the_result_of_each_form_is_marked_by_its_own_validation() -> None:
    """Copies beside the live tables carry ``validated``, not ``ok``: a passing job must not
    read as a mismatch (it did: every table showed ✘ MISMATCH), and a failing one says why."""
    from screens.restore_wizard import table_at_time_lines

    beside = {
        "at": "2026-12-04T14:32:00+00:00",
        "base_snapshot": "ab" * 32,
        "tables": [
            {"table": "sales.orders", "copy": "sales.orders_at_1432", "rows": 900, "validated": True, "problem": None},
            {
                "table": "sales.items",
                "copy": "sales.items_at_1432",
                "rows": 3,
                "validated": False,
                "problem": "rows 3 != 4",
            },
        ],
        "ok": False,
    }
    lines = table_at_time_lines(beside)
    assert lines[0].endswith("sales.orders_at_1432: 900 rows, validated") and "MISMATCH" not in "".join(lines)
    assert "✘ NOT VALID: rows 3 != 4" in lines[1]
    in_place = {
        "mode": "in place",
        "restore_id": "r1",
        "safety_snapshot": "cd" * 32,
        "ok": True,
        "tables": [{"table": "sales.orders", "deleted": 1, "updated": 2, "inserted": 3, "validated": True}],
    }
    lines = table_at_time_lines(in_place)
    assert lines[0] == "   sales.orders: 1 deleted, 2 updated, 3 inserted, validated"
    assert "axisor-backup rollback r1" in lines[1]

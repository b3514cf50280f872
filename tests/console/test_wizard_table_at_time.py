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

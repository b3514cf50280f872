"""SVG snapshots of the main screens at 80x24 and 120x40, on a stored repository with the
clock frozen (update with: pytest tests/console/test_snapshots.py --snapshot-update)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from console_support import PASSPHRASE, settle
from core.config import load_config

DATA = Path(__file__).resolve().parent / "data" / "repo"
# The stored snapshots were taken on 2026-11-26 around 09:45 UTC: two and a quarter hours before.
FROZEN = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
SIZES = [(80, 24), (120, 40)]


def make_app(tmp_path: Path, *, read_only: bool = False):
    from app.console import ConsoleApp

    shutil.copytree(DATA, tmp_path / "repo")
    (tmp_path / "src").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"""[application]
user_data = ["{tmp_path / 'src'}"]
[configuration]
system_settings = ["{tmp_path / 'src'}"]
[storage]
local_path = "{tmp_path / 'repo'}"
[schedule]
enabled = true
cron_expression = "0 2 * * *"
[engine]
state_dir = "{tmp_path / 'state'}"
""")
    cfg = load_config(config)
    asyncio.run(_history(cfg))
    return ConsoleApp(cfg, lambda _c: PASSPHRASE, config_path=config, read_only=read_only,
                      prefer_daemon=False, now=lambda: FROZEN)


async def _history(cfg) -> None:
    """The job record of the backup that made the stored snapshots: the health the dashboard
    shows (as `status`) comes from the job history."""
    from core.jobs.api import JobState
    from core.jobs.record import Outcome, record_run

    made = datetime(2026, 11, 26, 9, 45, tzinfo=timezone.utc)
    snaps = [{"source": s, "id": "0" * 64, "time": made.isoformat()}
             for s in ("application/user_data", "configuration/system_settings")]
    await record_run(cfg, "backup", {"type": "full"}, made,
                     Outcome(JobState.COMPLETED, {"snapshots": snaps, "exit_code": 0}), finished=made)


def _before(*keys: str):
    async def run_before(pilot) -> None:
        await settle(pilot, pilot.app)
        for key in keys:
            await pilot.press(key)
            await settle(pilot, pilot.app)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("keys", [(), ("c",), ("r",), ("v",), ("question_mark",)],
                         ids=["dashboard", "catalog", "wizard", "verify", "help"])
def test_screen(snap_compare, tmp_path, size, keys):
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=_before(*keys))


def test_read_only_dashboard(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path, read_only=True), terminal_size=(80, 24), run_before=_before())

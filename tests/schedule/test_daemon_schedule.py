"""The scheduler inside the real daemon: a run owed from before the daemon started is
caught up once, unattended, and its backup lands in the repository."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import PASSPHRASE, ROOT
from core.schedule.state import ScheduleStore

SCHEDULE = """
[schedule]
enabled = true
[[schedule.jobs]]
name = "every-minute"
task = "backup"
sources = ["user_data"]
cron = "* * * * *"
[[schedule.jobs]]
name = "verify-off"
task = "verify"
cron = "0 6 * * *"
enabled = false
"""


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_daemon_catches_up_an_owed_run_once_and_backs_up(ws):
    # A Unix socket path must stay short, so the state directory lives under /tmp.
    state = Path(tempfile.mkdtemp(prefix="axs", dir="/tmp")) / "st"
    try:
        (ws.src / "a.txt").write_text("scheduled\n" * 100)
        ws.write_config(extra=SCHEDULE)
        env = {"AXISOR_BACKUP_STATE_DIR": str(state)}
        assert ws.cli("init", env=env).code == 0

        # The daemon last handled this schedule three minutes ago, then was down.
        async def seed() -> None:
            store = await ScheduleStore.open(state / "jobs.sqlite3")
            await store.set_last(
                "every-minute", datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
            )
            await store.close()

        asyncio.run(seed())
        log = state.parent / "daemon.log"
        e = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        e.update({"AXISOR_BACKUP_PASSPHRASE": PASSPHRASE, **env})
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "--config", str(ws.config), "daemon"],
                cwd=ROOT,
                env=e,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                deadline = time.monotonic() + 60
                snaps: list = []
                while time.monotonic() < deadline and not snaps:
                    assert proc.poll() is None, log.read_text()
                    time.sleep(0.3)
                    r = ws.cli("snapshots", "--json", env=env)
                    if r.code == 0:
                        snaps = r.json()["snapshots"]
                assert snaps, log.read_text()
                assert snaps[0]["source"] == "application/user_data"
                assert "schedule:every-minute" in snaps[0]["tags"]
                assert snaps[0]["type"] == "full"  # the policy: no full backup yet
                history = ws.cli("schedules", "history", "--json", env=env).json()["runs"]
                first = history[-1]
                assert (first["schedule"], first["outcome"], first["trigger"]) == (
                    "every-minute",
                    "submitted",
                    "catch-up",
                )
                assert first["missed"] >= 2  # three owed minutes, one run
                started = [r for r in records(log) if r.get("message") == "scheduler started"]
                assert started and started[0]["enabled"] is True
                submitted = [r for r in records(log) if r.get("message") == "scheduled job submitted"]
                assert (submitted[0]["schedule"], submitted[0]["trigger"], submitted[0]["job"]) == (
                    "every-minute",
                    "catch-up",
                    first["job_id"],
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0, log.read_text()
        assert not [r for r in records(log) if r.get("message") == "scheduler tick failed"]
    finally:
        shutil.rmtree(state.parent, ignore_errors=True)

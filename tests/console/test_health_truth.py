"""The dashboard says what `status` says: one evaluation of health (core/jobs/status.py).

Issue 18's false states, each a test: a cancelled verification showed "✘ DAMAGE" on every
source; a `verify --full` that passed left "Verified: never"; `status` warned while the
dashboard said "Alerts: none"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import DataTable, Static

from console_support import PASSPHRASE, console
from core.jobs.api import JobState
from core.jobs.record import Outcome, record_run
from core.jobs.status import verify_verdict

ROOT = Path(__file__).resolve().parents[2]


async def _verified(pilot, app) -> set[str]:
    table = app.screen.query_one("#sources", DataTable)
    # The catalog's rows come from a worker that an engine connection or a job of another
    # process restarts; on a loaded host they may land after the console settled. Waited for
    # (bounded), and an empty table says what the dashboard said instead.
    for _ in range(200):
        if table.row_count:
            break
        await pilot.pause(0.05)
    assert table.row_count, f"the dashboard listed no source; it said: {_alerts(app)!r}"
    col = list(table.columns).index("verified")
    return {str(table.get_row(k)[col]) for k in table.rows}


def _alerts(app) -> str:
    return str(app.screen.query_one("#alerts", Static).render())


def _cli(platform, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(platform.config_path), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cancelled_and_unrun_verifications_are_not_damage_and_a_cli_verify_counts(platform):
    cfg = platform.config
    now = datetime.now(UTC)
    await record_run(
        cfg, "verify", {"full": True}, now, Outcome(JobState.CANCELLED, {"exit_code": 130}, "cancelled by the user")
    )
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        assert await _verified(pilot, app) == {"never (cancelled)"}
        assert "DAMAGE" not in _alerts(app)

    # One that could not run (the repository was locked) is a warning naming why, never damage.
    await record_run(
        cfg,
        "verify",
        {"full": False},
        now,
        Outcome(JobState.FAILED, {"exit_code": 5}, "the repository is locked by prune"),
    )
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        assert await _verified(pilot, app) == {"never (not run)"}
        alerts = _alerts(app)
        assert "⚠ verify: no verification has completed; a later one could not run" in alerts
        assert "locked by prune" in alerts and "DAMAGE" not in alerts

    # `verify --full` from the command line is recorded: the dashboard and `status` know it.
    r = _cli(platform, "verify", "--full")
    assert r.returncode == 0, r.stderr
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        (shown,) = await _verified(pilot, app)
        assert shown.startswith("✔ ") and "(" not in shown, shown
        assert "verify:" not in _alerts(app)
    r = _cli(platform, "status", "--json")
    assert r.stdout, r.stderr
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["verify"]["level"] == "ok" and "full verification passed" in checks["verify"]["message"]

    # Damage found by a CLI verification is critical, everywhere at once.
    for pack in (platform.repo / "data").rglob("*"):
        if pack.is_file():
            raw = bytearray(pack.read_bytes())
            raw[len(raw) // 3] ^= 0xFF
            pack.write_bytes(bytes(raw))
    r = _cli(platform, "verify", "--full")
    assert r.returncode == 6, r.stderr
    app = platform.app()
    async with console(app, (120, 40)) as pilot:
        (shown,) = await _verified(pilot, app)
        assert shown.startswith("✘ DAMAGE")
        assert "✘ verify: the newest full verification found damage" in _alerts(app)
    r = _cli(platform, "status")
    assert r.returncode == 2 and "CRITICAL verify: the newest full verification found damage" in r.stdout
    assert "fix: axisor-backup verify --full, then axisor-backup repair" in r.stdout


def test_verdict_takes_only_runs_that_reached_their_end():
    from core.jobs.api import Job

    def job(i: int, state: JobState, code: int | None = None, ok: bool = True) -> Job:
        t = datetime(2026, 12, 1, 10, i, tzinfo=UTC)
        return Job(
            f"j{i}",
            "verify",
            {"full": i % 2 == 0},
            state,
            "cli",
            t,
            t,
            t,
            None,
            {"exit_code": code, "ok": ok} if code is not None else None,
            f"error {i}",
        )

    # newest first
    v = verify_verdict(
        [
            job(5, JobState.CANCELLED),
            job(4, JobState.FAILED, 5),
            job(3, JobState.FAILED, 6, False),
            job(2, JobState.COMPLETED, 0),
        ]
    )
    assert (v.state, v.job_id, v.newer, v.newer_job_id) == ("damage", "j3", "cancelled", "j5")
    v = verify_verdict([job(4, JobState.FAILED, 4), job(2, JobState.COMPLETED, 0)])
    assert (v.state, v.job_id, v.full, v.newer, v.newer_error) == ("passed", "j2", True, "could not run", "error 4")
    assert verify_verdict([]).state == "never"


async def test_a_finding_quoting_a_hostile_name_is_shown_escaped(platform):
    """A failed backup's error quotes a file name from the backed-up host: the dashboard's
    finding shows it escaped, one line, nothing sent raw to the terminal."""
    cfg = platform.config
    await record_run(
        cfg,
        "backup",
        {"sources": ["application/user_data"]},
        datetime.now(UTC),
        Outcome(
            JobState.FAILED,
            {"exit_code": 11, "failed": [{"source": "application/user_data", "error": "x", "code": 1}]},
            "cannot read /srv/evil\x1b[2Jname\nnext",
        ),
    )
    app = platform.app()
    async with console(app, (160, 40)):
        alerts = _alerts(app)
        assert "evil\\x1b[2Jname\\nnext" in alerts and "\x1b" not in alerts


async def test_a_tripped_backup_is_the_dashboards_first_finding_until_acknowledged(platform):
    """The tripwire (core/health/tripwire.py) reaches the dashboard through the one
    evaluation: a critical finding, first, with what to do; `status` says the same; an
    acknowledgement clears both."""
    cfg = platform.config
    now = datetime.now(UTC)
    trip = {
        "findings": [{"rule": "changed", "message": "405 of the previous snapshot's 405 files changed", "figures": {}}],
        "pinned": "a" * 64,
    }
    snap = {"id": "b" * 64, "source": "application/user_data", "time": now.isoformat(), "tripwire": trip}
    await record_run(cfg, "backup", {}, now, Outcome(JobState.COMPLETED, {"exit_code": 0, "snapshots": [snap]}))
    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await _verified(pilot, app)  # loaded
        lines = _alerts(app).splitlines()
        assert lines[0].startswith("Health: CRITICAL")
        assert lines[1].startswith("✘ tripwire application/user_data: snapshot bbbbbbbb (changed)")
        assert "aaaaaaaa is pinned against prune" in lines[1] and "`axisor-backup acknowledge`" in lines[1]
    r = _cli(platform, "status")
    assert r.returncode == 2 and "CRITICAL tripwire application/user_data" in r.stdout, r.stdout
    r = _cli(platform, "acknowledge", "--all")
    assert r.returncode == 0, r.stderr
    app = platform.app()
    async with console(app, (80, 24)) as pilot:
        await _verified(pilot, app)
        assert "tripwire" not in _alerts(app)
    assert "tripwire" not in _cli(platform, "status").stdout

"""RTO forecasts in the one health evaluation (core/jobs/rto.py): inputs from the job
history (drill results, backup sizes), a finding when over the objective, the metrics."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from core.config import load_config
from core.jobs.api import Job, JobState
from core.jobs.metrics import render
from core.jobs.rto import describe, forecasts_from, newest_sizes
from core.jobs.status import Health, forecast_checks

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _job(n: int, kind: str, result: dict, state: JobState = JobState.COMPLETED) -> Job:
    return Job(
        id=f"j{n}",
        kind=kind,
        params={},
        state=state,
        origin="cli",
        created_at=T0,
        started_at=T0 + timedelta(seconds=n),
        finished_at=T0 + timedelta(seconds=n + 1),
        progress=None,
        result=result,
        error=None,
    )


def _snap(source: str, size: int, mode: str | None = None, tags: tuple = ()) -> dict:
    return {
        "source": source,
        "summary": {"total_bytes": size},
        "metadata": {"mode": mode} if mode else {},
        "tags": tags,
    }


BACKUPS = [  # newest first
    _job(5, "backup", {"snapshots": [_snap("database", 9_000, "physical"), _snap("application/user_data", 4_000_000)]}),
    _job(4, "backup", {"snapshots": [_snap("database", 2_000_000, "logical"), _snap("safety/x", 1, tags=("safety",))]}),
]


def _drill(drill_id: str, rto: float, db_seconds: float, files_seconds: float) -> dict:
    return {
        "id": drill_id,
        "scenario": "platform-loss",
        "location": "local",
        "started": "2026-12-01T00:00:00+00:00",
        "passed": True,
        "rto_seconds": rto,
        "steps": [
            {"name": "open location", "status": "ok", "seconds": 0.5},
            {"name": "restore database", "status": "ok", "seconds": db_seconds},
            {"name": "restore files", "status": "ok", "seconds": files_seconds},
        ],
        "restored": [
            {"source": "database", "snapshot": "a", "target": "t", "bytes": 1_000_000},
            {"source": "application/user_data", "snapshot": "b", "target": "u", "bytes": 2_000_000},
        ],
    }


def _config(tmp_path, objective: str = "4h"):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[application]\nuser_data = ["{tmp_path}"]\n[database]\nenabled = true\nurl = "postgresql://x@localhost/shop"\n'
        f'[storage]\nlocal_path = "{tmp_path / "repo"}"\n[objectives]\nrto = "{objective}"\n'
    )
    return load_config(path)


def test_sizes_are_the_newest_logical_database_and_newest_file_snapshots():
    assert newest_sizes(BACKUPS) == (2_000_000, {"application/user_data": 4_000_000})


def test_forecasts_per_scenario_from_the_job_history(tmp_path):
    config = _config(tmp_path)
    drills = [_job(3, "drill", _drill("20261201T000000Z-00000001", 10.0, 4.0, 2.0))]
    forecasts = {(f.scenario, f.location): f for f in forecasts_from(config, drills, BACKUPS)}
    assert set(forecasts) == {("database-loss", "local"), ("platform-loss", "local"), ("corrupted-table", "local")}
    platform = forecasts[("platform-loss", "local")]
    # fixed 4 s; database 2 MB at 250 kB/s = 8 s; files 4 MB at 1 MB/s = 4 s
    assert platform.expected_seconds == 16.0 and platform.objective_seconds == 4 * 3600
    assert describe(platform).startswith("forecast 16.0 s (11.2 s-20.8 s), within the 4h")
    # database-loss borrows the fixed part of the platform-loss drill; corrupted-table has no table measured
    assert forecasts[("database-loss", "local")].expected_seconds == 12.0
    assert "no measurement yet of a table restore" in forecasts[("corrupted-table", "local")].missing
    assert forecast_checks(config, list(forecasts.values())) == []


def test_no_drill_yet_is_said_and_is_no_finding(tmp_path):
    config = _config(tmp_path)
    forecasts = forecasts_from(config, [], BACKUPS)
    assert all(not f.measured and "no measurement yet" in describe(f) for f in forecasts)
    assert forecast_checks(config, forecasts) == []
    text = render([], {}, Health("ok", (), None, forecasts=forecasts))
    fams = {
        f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }
    assert fams["axisor_backup_rto_forecast_seconds"] == {}  # never a made-up 0
    assert fams["axisor_backup_rto_forecast_measured"][(("location", "local"), ("scenario", "platform-loss"))] == 0


def test_a_forecast_over_the_objective_is_a_finding_and_a_metric(tmp_path):
    config = _config(tmp_path, objective="10s")
    drills = [_job(3, "drill", _drill("20261201T000000Z-00000001", 10.0, 4.0, 2.0))]
    forecasts = forecasts_from(config, drills, BACKUPS)
    checks = {c.name: c for c in forecast_checks(config, forecasts)}
    platform = checks["rto platform-loss from local"]
    assert platform.level == "warning" and "over the 10s objective" in platform.message  # 16 s <= 2 x 10 s
    assert platform.fix == "drill platform-loss local"
    text = render([], {}, Health("warning", tuple(checks.values()), None, forecasts=forecasts))
    fams = {
        f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }
    key = (("location", "local"), ("scenario", "platform-loss"))
    assert fams["axisor_backup_rto_forecast_seconds"][(("bound", "expected"), *key)] == 16.0
    assert fams["axisor_backup_rto_objective_seconds"][key] == 10.0
    assert fams["axisor_backup_check"][(("check", "rto platform-loss from local"),)] == 1


def _restore(n: int, seconds: float, **row) -> Job:
    job = _job(n, "restore", {"restored": [{"bytes": 2_000_000, "unchanged": 0, "location": "local", **row}]})
    return replace(job, finished_at=job.started_at + timedelta(seconds=seconds))


def test_a_phase_no_drill_measured_takes_recent_restores_into_an_empty_target(tmp_path):
    config = _config(tmp_path)
    database_only = _drill("20261201T000000Z-00000001", 10.0, 4.0, 2.0)
    database_only["steps"] = database_only["steps"][:2]
    database_only["restored"] = database_only["restored"][:1]
    drills = [_job(3, "drill", {**database_only, "scenario": "database-loss", "rto_seconds": 6.0})]
    restores = [
        _restore(9, 1.0, safety_snapshot="s" * 64),  # over live files: measures comparisons, not a recovery
        _restore(8, 1.0, unchanged=3),
        _restore(7, 4.0),  # 2 MB in 4 s
    ]
    forecasts = {(f.scenario, f.location): f for f in forecasts_from(config, drills, BACKUPS, restores)}
    platform = forecasts[("platform-loss", "local")]
    # fixed 2 s (the database-loss drill's); database 2 MB at 250 kB/s = 8 s; files 4 MB at 500 kB/s = 8 s
    assert platform.expected_seconds == 18.0
    assert "files 500.0 kB/s (1 restore)" in platform.basis and "job j7" in platform.drills
    # Without the restore, no number.
    assert not {f.scenario: f for f in forecasts_from(config, drills, BACKUPS)}["platform-loss"].measured

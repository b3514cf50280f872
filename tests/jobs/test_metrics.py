"""The metrics file's text (core/jobs/metrics.py), read back by prometheus_client's parser:
names, types and help of every family, values, foreign label values escaped, the file's mode."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from core.jobs.api import Job, JobState
from core.jobs.metrics import render, write_metrics
from core.jobs.status import Check, Health
from core.jobs.store import JobStore

# A source name (they come from the config) with every character the text format escapes.
WEIRD = 'db "main"\\prod\nsecond line'
T0 = datetime(2026, 12, 1, 3, 0, 0, 123456, tzinfo=UTC)


def _job(n: int, state: JobState, result: dict, params: dict | None = None) -> Job:
    return Job(
        id=f"j{n}",
        kind="backup",
        params=params or {},
        state=state,
        origin="cli",
        created_at=T0,
        started_at=T0 + timedelta(seconds=n),
        finished_at=T0 + timedelta(seconds=2 * n, milliseconds=1),
        progress=None,
        result=result,
        error=None,
    )


JOBS = [  # newest first, as the store lists them
    _job(
        3,
        JobState.COMPLETED,
        {"snapshots": [{"source": WEIRD, "summary": {"total_bytes": 300_006, "data_added_packed": 12}}]},
    ),
    _job(2, JobState.FAILED, {"failed": [{"source": WEIRD}]}),
    _job(1, JobState.FAILED, {}),  # failed before any source: counts as source "all"
]
COUNTS = {("backup", "completed"): 1, ("backup", "failed"): 2}
HEALTH = Health("critical", (Check("daemon", "ok", "running"), Check(f"backup {WEIRD}", "critical", "stale")), None)


def _families(text: str) -> dict[str, tuple[str, str, dict]]:
    """name -> (type, help, {labels as sorted tuple: value})."""
    return {
        f.name: (f.type, f.documentation, {tuple(sorted(s.labels.items())): s.value for s in f.samples})
        for f in text_string_to_metric_families(text)
    }


def test_every_family_keeps_its_name_type_help_and_values():
    fams = _families(render(JOBS, COUNTS, HEALTH))
    weird = (("location", "primary"), ("source", WEIRD))
    everything = (("location", "primary"), ("source", "all"))
    # The parser names counters without `_total`; the file says `axisor_backup_failures_total`.
    assert {name: (kind, text) for name, (kind, text, _) in fams.items()} == {
        "axisor_backup_last_success_timestamp_seconds": (
            "gauge",
            "When the newest successful backup of the source finished (Unix time).",
        ),
        "axisor_backup_last_duration_seconds": ("gauge", "How long the newest successful backup job took."),
        "axisor_backup_last_bytes": ("gauge", "Bytes in the newest successful snapshot of the source."),
        "axisor_backup_last_stored_bytes": ("gauge", "Bytes the newest successful snapshot added to storage."),
        "axisor_backup_failures": ("counter", "Failed backups of the source."),
        "axisor_backup_jobs": ("counter", "Jobs by kind and final or current state."),
        "axisor_backup_health": (
            "gauge",
            "The platform's health as `axisor-backup status` evaluates it: 0 ok, 1 warning, 2 critical.",
        ),
        "axisor_backup_check": ("gauge", "Each check of `axisor-backup status`: 0 ok, 1 warning, 2 critical."),
        # The RTO forecasts (tests/jobs/test_rto_forecast.py has their samples).
        "axisor_backup_rto_forecast_seconds": (
            "gauge",
            "Forecast RTO of a drill scenario from a location: bound low, expected or high.",
        ),
        "axisor_backup_rto_objective_seconds": ("gauge", "The RTO objective of a drill scenario."),
        "axisor_backup_rto_forecast_measured": (
            "gauge",
            "1 when drills have measured what the forecast needs, 0 when there is no forecast yet.",
        ),
    }
    finished = (T0 + timedelta(seconds=6, milliseconds=1)).timestamp()
    assert fams["axisor_backup_last_success_timestamp_seconds"][2] == {weird: round(finished, 3)}
    assert fams["axisor_backup_last_duration_seconds"][2] == {weird: 3.001}
    assert fams["axisor_backup_last_bytes"][2] == {weird: 300_006}
    assert fams["axisor_backup_last_stored_bytes"][2] == {weird: 12}
    assert fams["axisor_backup_failures"][2] == {weird: 1, everything: 1}
    assert fams["axisor_backup_jobs"][2] == {
        (("kind", "backup"), ("state", "completed")): 1,
        (("kind", "backup"), ("state", "failed")): 2,
    }
    assert fams["axisor_backup_health"][2] == {(): 2}
    assert fams["axisor_backup_check"][2] == {(("check", "daemon"),): 0, (("check", f"backup {WEIRD}"),): 2}


def test_label_values_with_quote_backslash_and_newline_round_trip():
    text = render(JOBS, COUNTS, HEALTH)
    assert "\nsecond line" not in text  # the newline is escaped: each sample stays on one line
    assert 'source="db \\"main\\"\\\\prod\\nsecond line"' in text
    sources = {
        s.labels["source"] for f in text_string_to_metric_families(text) for s in f.samples if "source" in s.labels
    }
    assert sources == {WEIRD, "all"}


def test_without_health_its_families_are_left_out_and_each_write_starts_afresh():
    text = render(JOBS, COUNTS)
    assert "axisor_backup_health" not in text and "axisor_backup_check" not in text
    assert render(JOBS, COUNTS) == text  # a registry per write: nothing registered twice, nothing left over
    empty = _families(render([], {}))
    assert all(not samples for _, _, samples in empty.values())  # HELP and TYPE even with no sample


async def test_the_file_is_readable_by_the_collector_whatever_the_umask(tmp_path):
    """prometheus_client's own write_to_textfile would leave it 0600 under UMask=0077."""
    store = await JobStore.open(tmp_path / "state")
    path = tmp_path / "metrics" / "axisor.prom"
    old = os.umask(0o077)
    try:
        await write_metrics(store, path, HEALTH)
    finally:
        os.umask(old)
        await store.close()
    assert path.stat().st_mode & 0o777 == 0o644
    assert _families(path.read_text(encoding="utf-8"))["axisor_backup_health"][2] == {(): 2}
    assert [p.name for p in path.parent.iterdir()] == ["axisor.prom"]  # no temporary file left

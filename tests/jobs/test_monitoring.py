"""What an operator sees without watching: status exit codes, notifications, metrics."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from datetime import datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from conftest import PASSPHRASE


def _age_last_success(jw, hours: float) -> None:
    """Move every finished job's times back, as if the newest backup ran ``hours`` ago."""
    db = sqlite3.connect(jw.state / "jobs.sqlite3")
    for job_id, started, finished in db.execute("SELECT id, started_at, finished_at FROM jobs").fetchall():
        shift = timedelta(hours=hours)
        db.execute(
            "UPDATE jobs SET started_at = ?, finished_at = ? WHERE id = ?",
            (
                (datetime.fromisoformat(started) - shift).isoformat(),
                (datetime.fromisoformat(finished) - shift).isoformat(),
                job_id,
            ),
        )
    db.commit()
    db.close()


def test_status_exit_codes_follow_the_age_of_the_newest_backup(jw):
    r = jw.cli("status", "--json")
    assert r.code == 2
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["source application/user_data"]["level"] == "critical"
    assert "never backed up" in checks["source application/user_data"]["message"]

    assert jw.cli("backup").code == 0
    r = jw.cli("status")
    assert r.code == 0 and r.out.startswith("status: OK"), r.out

    _age_last_success(jw, 30)
    r = jw.cli("status", "--json")
    assert r.code == 1 and r.json()["level"] == "warning"
    _age_last_success(jw, 30)  # 60 h now
    assert jw.cli("status").code == 2

    # A later failure of that source is a warning even while the last success is fresh.
    jw.config('[objectives]\nrpo = "100h"\n')
    assert jw.cli("status").code == 0
    assert jw.cli("backup", env={"AXISOR_BACKUP_PASSPHRASE": "not the passphrase"}).code == 4
    r = jw.cli("status", "--json")
    assert r.code == 1
    assert (
        "a later backup failed" in {c["name"]: c for c in r.json()["checks"]}["source application/user_data"]["message"]
    )

    # Scheduling enabled but no daemon: warning; with the daemon: that check is ok.
    jw.config('[objectives]\nrpo = "100h"\n[schedule]\nenabled = true\n')
    assert jw.cli("backup").code == 0
    r = jw.cli("status", "--json")
    assert r.code == 1 and "no daemon answers" in {c["name"]: c for c in r.json()["checks"]}["daemon"]["message"]
    d = jw.daemon()
    r = jw.cli("status", "--json")
    assert r.code == 0 and r.json()["daemon_pid"] == d.proc.pid, r.out


def test_webhook_and_command_hook_on_failure_and_on_success(jw, webhook):
    url, received = webhook
    out = jw.ws.root / "hook.jsonl"
    script = (
        "import json, os, sys; job = json.load(sys.stdin); "
        f"open({str(out)!r}, 'a').write(json.dumps({{'stdin': job, 'env': {{k: v for k, v in os.environ.items()"
        " if k.startswith('AXISOR')}}) + '\\n')"
    )
    jw.config(f'[notifications]\nwebhook_url = "{url}"\ncommand = {json.dumps([sys.executable, "-c", script])}\n')
    assert jw.cli("backup").code == 0  # success is not announced unless asked
    assert received == [] and not out.exists()

    assert jw.cli("backup", env={"AXISOR_BACKUP_PASSPHRASE": "not the passphrase"}).code == 4
    [post] = received
    assert post["path"] == "/hook" and post["type"] == "application/json"
    assert post["body"]["event"] == "job.failed" and post["body"]["job"]["kind"] == "backup"
    assert "wrong passphrase" in post["body"]["job"]["error"]
    [hook] = [json.loads(line) for line in out.read_text().splitlines()]
    assert hook["stdin"]["job"]["id"] == post["body"]["job"]["id"]
    assert hook["env"]["AXISOR_JOB_STATE"] == "failed" and hook["env"]["AXISOR_JOB_KIND"] == "backup"
    assert "AXISOR_BACKUP_PASSPHRASE" not in hook["env"]  # the hook never sees the secret

    jw.config(f'[notifications]\nwebhook_url = "{url}"\non_success = true\n')
    assert jw.cli("backup").code == 0
    assert [p["body"]["event"] for p in received] == ["job.failed", "job.completed"]
    assert received[1]["body"]["job"]["result"]["snapshots"][0]["source"] == "application/user_data"
    for p in received:
        assert PASSPHRASE not in json.dumps(p) and "not the passphrase" not in json.dumps(p)


def _metrics(path) -> dict[str, float]:
    """Each sample as `name{label="value",...}` (labels in name order) -> its value, read
    by prometheus_client's parser, so the file is checked to be valid text format too."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_metrics_file_holds_last_success_duration_bytes_and_failures(jw):
    path = jw.ws.root / "metrics" / "axisor.prom"
    jw.config(f'[engine]\nmetrics_file = "{path}"\n')
    before = time.time()
    assert jw.cli("backup").code == 0
    assert jw.cli("backup", env={"AXISOR_BACKUP_PASSPHRASE": "not the passphrase"}).code == 4
    text = path.read_text()
    assert "# TYPE axisor_backup_last_success_timestamp_seconds gauge" in text
    assert "# TYPE axisor_backup_failures_total counter" in text
    m = _metrics(path)
    labels = '{location="primary",source="application/user_data"}'
    assert before - 1 <= m[f"axisor_backup_last_success_timestamp_seconds{labels}"] <= time.time()
    assert m[f"axisor_backup_last_bytes{labels}"] == 6 + 300_000
    assert m[f"axisor_backup_last_duration_seconds{labels}"] > 0
    assert m[f"axisor_backup_failures_total{labels}"] == 0
    assert m['axisor_backup_failures_total{location="primary",source="all"}'] == 1
    assert m['axisor_backup_jobs_total{kind="backup",state="completed"}'] == 1
    assert m['axisor_backup_jobs_total{kind="backup",state="failed"}'] == 1
    assert PASSPHRASE not in text
    # The file's health is `status`'s: one evaluation, so they cannot disagree.
    st = jw.cli("status", "--json")
    assert m["axisor_backup_health"] == st.code == st.json()["exit_code"]
    for check in st.json()["checks"]:
        level = ("ok", "warning", "critical").index(check["level"])
        assert m[f'axisor_backup_check{{check="{check["name"]}"}}'] == level


def test_daemon_announces_a_source_older_than_its_rpo(jw, webhook):
    url, received = webhook
    assert jw.cli("backup").code == 0
    _age_last_success(jw, 30)  # past the default RPO (26 h)
    jw.config(f'[notifications]\nwebhook_url = "{url}"\n')
    d = jw.daemon()
    record = d.wait_for("source older than its RPO")
    assert record["source"] == "application/user_data" and record["level"] == "warning"
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    [post] = received
    assert post["body"]["event"] == "source.stale"
    assert post["body"]["source"] == "application/user_data" and post["body"]["level"] == "warning"
    assert "30." in post["body"]["summary"]


def test_daemon_announces_a_suspicious_shrink_once(jw, webhook):
    url, received = webhook
    assert jw.cli("backup").code == 0  # a.txt, sub/b.bin
    (jw.ws.src / "sub" / "b.bin").unlink()
    (jw.ws.src / "a.txt").unlink()
    (jw.ws.src / "left.txt").write_text("the only file\n")
    assert jw.cli("backup").code == 0  # 2 -> 1 file: 50 %, not more than the default share
    assert jw.cli("status").code == 0
    (jw.ws.src / "more.txt").write_text("x\n")
    (jw.ws.src / "more2.txt").write_text("y\n")
    (jw.ws.src / "more3.txt").write_text("z\n")
    assert jw.cli("backup").code == 0  # 4 files
    for name in ("left.txt", "more.txt", "more2.txt"):
        (jw.ws.src / name).unlink()
    assert jw.cli("backup").code == 0  # 4 -> 1: flagged
    jw.config(f'[notifications]\nwebhook_url = "{url}"\n')
    d = jw.daemon()
    record = d.wait_for("suspicious shrink")
    assert record["source"] == "application/user_data" and "has 1 files" in record["detail"]
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    [post] = received
    assert post["body"]["event"] == "source.suspicious_shrink" and post["body"]["level"] == "warning"
    assert "had 4" in post["body"]["summary"]


async def _record_drill(state, rto: float) -> None:
    """A drill that measured the platform (files only here) in ``rto`` seconds, 1 MB/s files."""
    from datetime import UTC

    from core.jobs.api import Job, JobState
    from core.jobs.store import ROLE_CLI, JobStore, Owner

    now = datetime.now(UTC)
    result = {
        "id": "20261201T000000Z-0000beef",
        "scenario": "platform-loss",
        "location": "local",
        "started": now.isoformat(),
        "passed": True,
        "rto_seconds": rto,
        "steps": [{"name": "restore files", "status": "ok", "seconds": 1.0}],
        "restored": [{"source": "application/user_data", "snapshot": "a" * 64, "target": "/x", "bytes": 1_000_000}],
    }
    job = Job("0000000000d1", "drill", {}, JobState.COMPLETED, "cli", now, now, now, None, result, None)
    store = await JobStore.open(state)
    try:
        await store.insert(job, Owner.me(), ROLE_CLI)
    finally:
        await store.close()


def test_an_rto_forecast_over_its_objective_is_a_finding_and_announced_once(jw, webhook):
    import asyncio

    url, received = webhook
    assert jw.cli("backup").code == 0
    r = jw.cli("status")
    assert r.code == 0 and "platform-loss from local: no forecast: no measurement yet" in r.out, r.out
    asyncio.run(_record_drill(jw.state, 90.0))  # a fixed part of 89 s: over a 1 min objective
    jw.config(f'[notifications]\nwebhook_url = "{url}"\n[objectives]\nrto = "1m"\n')
    r = jw.cli("status")
    assert r.code == 1 and re.search(r"WARNING  rto platform-loss from local: forecast 89\.\d s", r.out), r.out
    assert (
        "over the 60s objective" in r.out and "fix: axisor-backup drill --scenario platform-loss --from local" in r.out
    )
    d = jw.daemon()
    record = d.wait_for("RTO forecast over its objective")
    assert record["check"] == "rto platform-loss from local"
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    [post] = received
    assert post["body"]["event"] == "rto.forecast_over_objective" and post["body"]["level"] == "warning"
    assert post["body"]["summary"].startswith("axisor-backup RTO of platform-loss from local: forecast 89.")

"""A known secret given on the command line never lands in the job database, a log, the
metrics file or a webhook body, in any of the forms a connection string can carry it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.jobs.api import Job, JobState
from core.jobs.notify import payload
from core.jobs.store import JobStore, Owner

SECRET = "Kn0wn-S3cret-value"
FORMS = [
    f"postgresql://app:{SECRET}@127.0.0.1:1/scratch",
    f"postgresql://127.0.0.1:1/scratch?user=app&password={SECRET}",
    f"host=127.0.0.1 port=1 dbname=scratch password={SECRET}",
    f"host=127.0.0.1 port=1 dbname=scratch password='{SECRET} x'",
]


def _everything_kept(jw, root: Path) -> bytes:
    """The state directory (job database and its -wal), the daemon's log, the metrics file."""
    blob = b""
    for base in (jw.state.parent, root):
        for path in base.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                blob += path.read_bytes()
    return blob


@pytest.mark.parametrize("target_db", FORMS)
def test_secrets_on_the_command_line_are_refused_and_kept_nowhere(jw, webhook, target_db):
    url, received = webhook
    metrics = jw.ws.root / "metrics.prom"
    jw.config(f'[engine]\nmetrics_file = "{metrics}"\n[notifications]\nwebhook_url = "{url}"\non_success = true\n')
    assert jw.cli("backup").code == 0
    r = jw.cli("restore", "latest", "--target-db", target_db)
    assert r.code == 2, r
    assert "password" in (r.out + r.err) and "PGPASSWORD" in (r.out + r.err)
    assert SECRET not in r.out + r.err  # not even echoed back
    d = jw.daemon()
    jw.cli("restore", "latest", "--target-db", target_db)
    d.stop()
    assert SECRET.encode() not in _everything_kept(jw, jw.ws.root)
    assert SECRET not in repr(received)


def test_job_records_and_webhooks_scrub_what_a_job_carried(tmp_path):
    job = Job(
        id="j1",
        kind="restore",
        params={"target_db": FORMS[2]},
        state=JobState.FAILED,
        origin="cli",
        created_at=datetime.now(UTC),
        started_at=None,
        finished_at=None,
        progress=None,
        result={"echo": FORMS[0]},
        error=f"server said: {FORMS[1]}",
    )
    assert SECRET not in repr(payload(job))

    async def store_it() -> None:
        store = await JobStore.open(tmp_path)
        await store.insert(job, Owner.me())
        await store.update(job)
        await store.append_log(job.id, FORMS[3])
        await store.close()

    asyncio.run(store_it())
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

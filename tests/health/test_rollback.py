"""Rollback and deletion detection (issue 17, item 3; core/repository/rollback.py): a
snapshot this host saw that vanishes without a tombstone stops the next backup before it
writes (exit 26), turns `status` critical, and waits for a person; prune, forget and
repair leave tombstones, so their deletions never trip it; a tombstone planted without the
key explains nothing. Real CLI, real repository, deletions made as an attacker with only
storage access would make them (files removed, an old copy of the repository put back)."""

from __future__ import annotations

import json
import shutil


def cli(ws, *args):
    return ws.cli(*args, env={"AXISOR_BACKUP_STATE_DIR": str(ws.root / "state")})


def backup(ws) -> dict:
    r = cli(ws, "backup", "--json")
    assert r.code == 0, r.err
    return r.json()["snapshots"][0]


def day(ws, n: int) -> dict:
    (ws.src / f"day{n}.txt").write_text(f"day {n}\n" * 100)
    return backup(ws)


def test_a_deleted_newest_snapshot_stops_the_next_backup_until_acknowledged(ws):
    assert cli(ws, "init").code == 0
    snaps = [day(ws, n) for n in range(3)]
    # Someone with the storage's credentials (no key) deletes the newest snapshot.
    (ws.repo / "snapshots" / snaps[-1]["id"]).unlink()
    # ... and plants a "tombstone" for it, which they cannot seal.
    (ws.repo / "forgotten").mkdir(exist_ok=True)
    (ws.repo / "forgotten" / snaps[-1]["id"]).write_bytes(b'{"snapshot": "' + snaps[-1]["id"].encode() + b'"}')
    (ws.src / "day9.txt").write_text("new\n")
    r = cli(ws, "backup")
    assert r.code == 26, (r.code, r.err)
    assert "1 snapshot(s) this host saw are gone" in r.err and snaps[-1]["id"][:8] in r.err
    assert "acknowledge --rollback" in r.err and "nothing is written" in r.err
    listed = cli(ws, "snapshots", "--json").json()["snapshots"]
    assert len(listed) == 2  # nothing was written
    status = cli(ws, "status")
    assert status.code == 2 and "CRITICAL rollback: backups refused" in status.out, status.out
    # Still refused on the next run: the memory is not overwritten by a refused run.
    assert cli(ws, "backup").code == 26
    # The owner looked and accepts the repository as it is: backups run, status clears.
    r = cli(ws, "acknowledge", "--rollback")
    assert r.code == 0 and "remembers the 2 snapshots" in r.out, r.out + r.err
    assert "CRITICAL rollback" not in cli(ws, "status").out
    backup(ws)
    assert cli(ws, "status").code == 0


def test_an_old_copy_of_the_repository_put_back_is_caught(ws, tmp_path):
    assert cli(ws, "init").code == 0
    day(ws, 0)
    old = tmp_path / "old-repo"
    shutil.copytree(ws.repo, old)
    day(ws, 1)
    day(ws, 2)
    shutil.rmtree(ws.repo)
    shutil.copytree(old, ws.repo)  # replayed: the two newest snapshots are gone, index and all
    r = cli(ws, "backup")
    assert r.code == 26 and "2 snapshot(s) this host saw are gone" in r.err, r.err


def test_prune_and_forget_explain_what_they_remove(ws):
    import asyncio
    from datetime import UTC, datetime, timedelta

    from conftest import PASSPHRASE
    from core.config import load_config
    from core.service import BackupService

    ws.config.write_text(
        f'[application]\nuser_data = ["{ws.src}"]\nretention_days = 1\n[storage]\nlocal_path = "{ws.repo}"\n'
        "[retention]\nkeep_last = 1\nmin_keep = 1\n"
    )
    assert cli(ws, "init").code == 0
    snaps = [day(ws, n) for n in range(4)]
    r = cli(ws, "forget", snaps[0]["id"][:12])
    assert r.code == 0, r.err
    tomb = ws.repo / "forgotten" / snaps[0]["id"]
    assert tomb.exists() and b"forget" not in tomb.read_bytes()  # sealed: its reason is not in the clear

    async def prune_two_days_later():
        svc = BackupService(load_config(ws.config), lambda _confirm: PASSPHRASE, workers=2)
        try:
            return await svc.prune(now=datetime.now(UTC) + timedelta(days=2))
        finally:
            await svc.close()

    report = asyncio.run(prune_two_days_later())
    gone = [d.snapshot.id for d in report.decisions if not d.keep]
    assert sorted(gone) == sorted(s["id"] for s in snaps[1:3])
    assert all((ws.repo / "forgotten" / sid).exists() for sid in gone)
    day(ws, 9)  # every disappearance is explained: the backup runs
    assert cli(ws, "status").code == 0


def test_a_host_that_never_saw_the_repository_starts_remembering(ws):
    assert cli(ws, "init").code == 0
    first = day(ws, 0)
    shutil.rmtree(ws.root / "state" / "seen")  # a new host, or a state folder lost
    (ws.repo / "snapshots" / first["id"]).unlink()
    backup(ws)  # nothing remembered: nothing to compare with
    seen = json.loads(next((ws.root / "state" / "seen").iterdir()).read_text())
    assert first["id"] not in seen["snapshots"] and len(seen["snapshots"]) == 1

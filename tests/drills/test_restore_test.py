"""Restore-tests end to end: the real CLI (a job in an embedded engine) over a real
repository of real files: the dry run plans what the run then restores, the run restores
and reads back every sampled file, stores its record, leaves nothing behind; damage fails
it and names the file; a run that could not run, or was cancelled, is never a pass; the
verification report shows what share was restore-tested and by which job."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest

import hostile_support as H
from core.config import load_config
from core.drills.restore_test import RestoreTestRequest, plan, run_restore_test, times_tested
from core.drills.restore_test_plan import Sampling
from core.drills.restore_test_record import CANCELLED, stored_records
from core.jobs.verification import RESTORE_TEST, verification_report
from core.runner import JobCancelled
from core.service import BackupService
from conftest import ROOT
from drills.conftest import run_json
from servers import moto_s3  # noqa: F401  (fixture: an S3 server)


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """hostile_support runs the CLI from the folder above its checkout (``parents[2]``), where
    ``app`` is whatever is installed: in a worktree that is another checkout. Run this one."""
    monkeypatch.setattr(H, "ROOT", ROOT)


def make_world(base: Path, work_dir: Path | None = None) -> H.AxEnv:
    scratch = work_dir or base / "scratch"
    scratch.mkdir(exist_ok=True)
    extra = (
        f"[engine]\nstate_dir = {json.dumps(str(base / 'state'))}\n[drills]\nwork_dir = {json.dumps(str(scratch))}\n"
    )
    env = H.make_env(base, extra_storage=extra)
    for i in range(20):
        (env.src / f"f{i:02d}.bin").write_bytes(os.urandom(1000 + 997 * i))
    (env.src / "deep" / "er").mkdir(parents=True)
    for name in ("a.txt", "we[i]rd*?.txt", "space name.txt", "empty"):
        (env.src / "deep" / "er" / name).write_bytes(name.encode() * 50 if name != "empty" else b"")
    env.init_fast()
    env.backup()
    return env


@pytest.fixture
def world(tmp_path: Path) -> H.AxEnv:
    return make_world(tmp_path)


def service(env: H.AxEnv) -> BackupService:
    return BackupService(load_config(env.cfg), lambda _confirm: env.passphrase, workers=2)


def test_the_dry_run_plans_what_the_run_restores_and_validates(world: H.AxEnv) -> None:
    dry = world.cli("restore-test", "--dry-run", "--seed", "5", "--sample-files", "6", json_out=True)
    assert dry.code == 0, dry
    plan_json = dry.json
    assert plan_json["sampled"] == 6 and plan_json["total"] == 24 and plan_json["kind"] == "files"
    assert plan_json["seed"] == 5 and plan_json["why"].startswith("never restore-tested")
    assert not (world.repo / "restore-tests").exists() or not list((world.repo / "restore-tests").iterdir())

    r = world.cli("restore-test", "--seed", "5", "--sample-files", "6", json_out=True)
    assert r.code == 0, r
    rec = r.json
    assert rec["outcome"] == "passed" and rec["checked"] == rec["sampled"] == 6 and rec["total"] == 24
    assert list(rec["items"]) == [i["name"] for i in plan_json["items"]]  # the seed replays the plan
    assert rec["snapshot"] == plan_json["snapshot"] and rec["job"] and rec["location"] == "local"
    assert "bit-exact" in rec["method"] and rec["stored"].startswith("local:restore-tests/")
    assert rec["share"] == 25.0
    assert list((world.base / "scratch").iterdir()) == []  # nothing left behind

    # `--snapshot ID --seed S` replays the recorded sample too.
    again = world.cli(
        "restore-test",
        "--dry-run",
        "--snapshot",
        rec["snapshot"][:8],
        "--seed",
        "5",
        "--sample-files",
        "6",
        json_out=True,
    )
    assert [i["name"] for i in again.json["items"]] == list(rec["items"])

    hist = world.cli("restore-tests", json_out=True)
    assert hist.code == 0, hist
    (stored,) = hist.json["restore_tests"]
    assert stored["id"] == rec["id"] and stored["outcome"] == "passed" and stored["job"] == rec["job"]
    text = world.cli("restore-tests")
    assert rec["id"] in text.stdout and "6/24 files" in text.stdout and "25%" in text.stdout


def test_every_file_of_a_snapshot_with_awkward_names(world: H.AxEnv) -> None:
    r = world.cli("restore-test", "--share", "100", json_out=True)
    assert r.code == 0, r
    assert r.json["checked"] == r.json["total"] == 24
    assert str(world.src / "deep" / "er" / "we[i]rd*?.txt") in r.json["items"]


def test_damage_fails_the_test_and_names_the_file(world: H.AxEnv) -> None:
    async def damage() -> tuple[str, str]:
        repo = await world.open_repo()
        (sid,) = await repo.snapshot_ids()
        files = await H.file_blobs(repo, sid)
        path = str(world.src / "f07.bin")
        loc = repo.index.lookup(files[path][0])
        h = loc.pack_id.hex()
        H.flip_byte(world.repo / "data" / h[:2] / h, loc.offset + loc.length // 2)
        return sid, path

    sid, path = asyncio.run(damage())
    r = world.cli("restore-test", "--snapshot", sid[:8], "--share", "100", json_out=True)
    assert r.code == 16, r  # restored data differs from the snapshot
    rec = r.json
    assert rec["outcome"] == "failed" and rec["sampled"] == 24
    assert rec["checked"] == 23  # every other file is proven; the damaged one is not counted
    assert any(path in f for f in rec["failures"]), rec["failures"]
    assert "FAILED" in world.cli("restore-tests").stdout

    async def report():
        svc = service(world)
        try:
            catalog = await svc.catalog()
            records, _ = await stored_records(svc)
            return verification_report(catalog.entries, [], [], primary="local", restore_tests=records)
        finally:
            await svc.close()

    (row,) = asyncio.run(report())
    assert row.copies[0].state == "restore-test failed"


def test_a_run_that_could_not_run_is_not_a_pass(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = make_world(tmp_path)
    # Scratch folders cannot be made under a file: the restore cannot run.
    env.write_config(extra_storage=env.extra_storage.replace(str(tmp_path / "scratch"), str(blocker / "sub")))
    r = env.cli("restore-test", "--sample-files", "3", json_out=True)
    assert r.code not in (0, 16), r
    rec = r.json
    assert rec["outcome"] == "could not run" and rec["checked"] == 0 and rec["error"]
    assert (
        "could not run" in env.cli("restore-tests").stdout.lower() or "COULD NOT RUN" in env.cli("restore-tests").stdout
    )


def test_cancelled_is_recorded_and_says_nothing(world: H.AxEnv) -> None:
    async def go():
        svc = service(world)
        try:
            the_plan, _ = await plan(svc, RestoreTestRequest(sampling=Sampling(files=4), seed=1))

            def cancel() -> None:
                raise JobCancelled("cancelled")

            record = await run_restore_test(svc, the_plan, check_cancelled=cancel)
            records, _ = await stored_records(svc)
            counts, notes = await times_tested(svc)
            return record, records, counts, notes
        finally:
            await svc.close()

    record, records, counts, notes = asyncio.run(go())
    assert record.outcome == CANCELLED and record.checked == 0 and not record.passed
    assert [r.id for r in records] == [record.id]
    assert counts == {} and notes == []  # a cancelled run does not make a snapshot "tested"
    assert list((world.base / "scratch").iterdir()) == []


def test_the_report_shows_when_what_share_and_which_job(world: H.AxEnv) -> None:
    r = world.cli("restore-test", "--sample-files", "6", "--seed", "9", json_out=True)
    assert r.code == 0, r

    async def report():
        svc = service(world)
        try:
            catalog = await svc.catalog()
            records, _ = await stored_records(svc)
            counts, _ = await times_tested(svc)
            return verification_report(catalog.entries, [], [], primary="local", restore_tests=records), counts
        finally:
            await svc.close()

    (row,), counts = asyncio.run(report())
    assert counts == {row.snapshot_id: 1}  # the next draw weighs this snapshot down
    copy = row.copies[0]
    assert copy.state == "restore-tested" and copy.state_word == "✔ restore-tested"
    (ev,) = copy.evidence
    assert ev.how == RESTORE_TEST and ev.outcome == "passed" and ev.at is not None
    assert ev.detail == "6 of 24 files (25%)"
    assert ev.ref == f"{r.json['id']} (job {r.json['job']})"


def test_database_tables_are_sampled_restored_and_checked(platform) -> None:
    platform.config()
    snaps = run_json(platform.ws.cli("snapshots", "--json"))
    rows = snaps["snapshots"] if isinstance(snaps, dict) else snaps
    db = next(s for s in rows if s["source"] == "database")
    r = platform.ws.cli("restore-test", "--snapshot", db["id"], "--sample-files", "1", "--json", timeout=300)
    assert r.code == 0, r.out + r.err
    rec = run_json(r)
    assert rec["kind"] == "tables" and rec["outcome"] == "passed"
    assert rec["checked"] == rec["sampled"] == 1 and rec["total"] == 2
    assert rec["items"][0] in ("public.orders", "public.customers", "orders", "customers")
    assert "row checksums" in rec["method"]
    assert platform.left_behind() == []


def test_nothing_to_draw_from_is_said(tmp_path: Path) -> None:
    env = H.make_env(tmp_path, extra_storage=f"[engine]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    env.init_fast()
    r = env.cli("restore-test", "--dry-run")
    assert r.code == 2 and "no snapshot can be restore-tested: take a backup first" in r.stderr, r
    env.backup()  # of an empty folder: nothing in it to restore, so not a candidate
    r = env.cli("restore-test")
    assert r.code == 2 and "take a backup first" in r.stderr, r


@pytest.mark.parametrize("provider", ["local", "aws-s3"])
def test_a_secondary_location_is_restore_tested_on_its_own_copy(
    tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> None:
    env = make_world(tmp_path)
    if provider == "local":
        where = f"path = {json.dumps(str(tmp_path / 'offsite'))}\n"
    else:  # a bucket on a server speaking the real S3 protocol (plain http: allow_insecure)
        s3 = request.getfixturevalue("moto_s3")
        where = (
            f'bucket_name = "axisor-rt-{uuid.uuid4().hex[:10]}"\nendpoint = "{s3.endpoint}"\nregion = "us-east-1"\n'
            f'path_prefix = "repo"\ncredentials_file = "{s3.credentials_file}"\nallow_insecure = true\n'
        )
    env.write_config(
        extra_storage=env.extra_storage
        + f'[[storage.remote_storage]]\nname = "offsite"\nprovider = "{provider}"\n{where}'
    )
    assert env.cli("copy", "--to", "offsite").code == 0
    r = env.cli("restore-test", "--from", "offsite", "--sample-files", "4", json_out=True)
    assert r.code == 0, r
    rec = r.json
    assert rec["location"] == "offsite" and rec["outcome"] == "passed" and rec["checked"] == 4
    assert rec["stored"].startswith("local:restore-tests/")  # the history lives in the primary

    async def report():
        svc = service(env)
        try:
            catalog = await svc.catalog()
            records, _ = await stored_records(svc)
            return verification_report(catalog.entries, [], [], primary="local", restore_tests=records)
        finally:
            await svc.close()

    (row,) = asyncio.run(report())
    assert {c.location: c.state for c in row.copies} == {"local": "unverified", "offsite": "restore-tested"}
    bad = env.cli("restore-test", "--from", "nowhere")
    assert bad.code == 2 and "no location 'nowhere'" in bad.stderr, bad


def test_status_weighs_restore_tests(world: H.AxEnv) -> None:
    """`status` (and so the metrics, notifications and the dashboard, which read the same
    evaluation) weighs restore-tests as it weighs verifications: none tried says nothing, a
    pass is ok with its sample, a restore that differs is critical with what to run."""

    def check() -> dict | None:
        r = world.cli("status", json_out=True)
        return next((c for c in r.json["checks"] if c["name"] == "restore-test"), None)

    assert check() is None  # never tried: no finding, and no false "passed"
    assert world.cli("restore-test", "--sample-files", "6", "--seed", "3", json_out=True).code == 0
    ok = check()
    assert ok is not None and ok["level"] == "ok", ok
    assert "passed: 6 of 24 files of snapshot" in ok["message"], ok

    async def damage() -> str:
        repo = await world.open_repo()
        (sid,) = await repo.snapshot_ids()
        files = await H.file_blobs(repo, sid)
        loc = repo.index.lookup(files[str(world.src / "f07.bin")][0])
        h = loc.pack_id.hex()
        H.flip_byte(world.repo / "data" / h[:2] / h, loc.offset + loc.length // 2)
        return sid

    sid = asyncio.run(damage())
    assert world.cli("restore-test", "--snapshot", sid[:8], "--share", "100").code == 16
    bad = check()
    assert bad is not None and bad["level"] == "critical", bad
    assert "differs from its snapshot" in bad["message"] and "verify --full" in (bad["fix_command"] or "")
    r = world.cli("status")
    assert r.code == 2 and "restore-test" in r.stdout, r

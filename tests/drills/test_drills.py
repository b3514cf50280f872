"""Drills end to end through the real CLI against a real PostgreSQL cluster and real files:
each scenario restores into scratch targets, validates, measures, stores its report, and
leaves nothing behind; a drill that must fail says why."""

from __future__ import annotations


import re
import uuid

from drills.conftest import copy_repo, run_json
from servers import moto_s3  # noqa: F401  (fixture: an S3 server)

CHECKS = """
[[drills.checks]]
name = "orders are there"
sql = "SELECT count(*) FROM orders"
expect = 900
[[drills.checks]]
name = "no orphan orders"
sql = "SELECT NOT EXISTS (SELECT 1 FROM orders o LEFT JOIN customers c ON c.id = o.customer WHERE c.id IS NULL)"
expect = true
[[drills.checks]]
name = "uploads restored"
path = "uploads/report.csv"
source = "application/user_data"
[[drills.checks]]
name = "environment restored"
path = "app.env"
source = "configuration/environment_vars"
"""


def _check(rep: dict, name: str) -> dict:
    found = [c for c in rep["checks"] if c["name"] == name]
    assert found, f"no check {name!r} in {[c['name'] for c in rep['checks']]}"
    return found[0]


def test_database_loss_in_a_throwaway_cluster(platform) -> None:
    platform.config(CHECKS)
    r = platform.ws.cli("drill", "--json", timeout=300)
    assert r.code == 0, r.out + r.err
    rep = run_json(r)
    assert rep["passed"] and rep["scenario"] == "database-loss" and rep["location"] == "local"
    assert _check(rep, "row counts exact")["status"] == "pass"
    assert _check(rep, "row counts exact")["actual"] == 940
    assert _check(rep, "row checksums match")["status"] == "pass"
    assert _check(rep, "schema matches")["status"] == "pass"
    assert _check(rep, "orders are there") == {**_check(rep, "orders are there"), "status": "pass", "actual": 900}
    assert _check(rep, "no orphan orders")["status"] == "pass"
    # Files are not part of this scenario: their checks are skipped, not failed.
    assert _check(rep, "uploads restored")["status"] == "skip"
    assert _check(rep, "RTO within objective")["status"] == "pass"
    assert _check(rep, "RPO database")["status"] == "pass"
    assert 0 < rep["rto_seconds"] < rep["rto_objective_seconds"]
    steps = [s["name"] for s in rep["steps"]]
    assert steps[:3] == ["open location", "start throwaway cluster", "restore database"]
    assert steps[-1] == "cleanup" and all(s["status"] == "ok" for s in rep["steps"])
    assert "throwaway PostgreSQL 15 cluster" in rep["steps"][1]["detail"]
    assert rep["restored"][0]["target"].startswith(f"shop on {platform.scratch}/axd.")
    assert any(c.startswith("cluster ") for c in rep["cleanup"])
    assert platform.left_behind() == []
    # The live database was never touched.
    assert platform.cluster.psql("SELECT count(*) FROM orders", "shop") == "900"
    # Stored in the repository, listed with its figures, shown as Markdown.
    listing = run_json(platform.ws.cli("drills", "--json"))
    assert rep["id"] in [d["id"] for d in listing["drills"]]
    shown = platform.ws.cli("drills", rep["id"][:18])
    assert shown.code == 0 and f"# Drill {rep['id']}: database-loss — PASSED" in shown.out
    assert "| orders are there | sql | pass |" in shown.out
    table = platform.ws.cli("drills").out
    assert table.startswith("ID ") and re.search(rf"^{rep['id']}\s+database-loss\s+pass\s", table, re.M)
    missing = platform.ws.cli("drills", "20991231T000000Z-00000000")
    assert missing.code == 13 and "no drill report" in missing.err


def test_platform_loss_into_a_scratch_database_and_folder(platform) -> None:
    platform.config('scratch = "database"\n' + CHECKS)
    r = platform.ws.cli("drill", "--scenario", "platform-loss", "--json", timeout=300)
    assert r.code == 0, r.out + r.err
    rep = run_json(r)
    assert rep["passed"], rep["failures"]
    assert [s["name"] for s in rep["steps"]][1] == "create scratch database"
    assert rep["restored"][0]["target"].startswith("axisor_drill_")
    assert {x["source"] for x in rep["restored"]} == {
        "database",
        "application/user_data",
        "configuration/environment_vars",
    }
    assert _check(rep, "application/user_data files")["status"] == "pass"
    assert "read back" in _check(rep, "configuration/environment_vars files")["detail"]
    assert _check(rep, "uploads restored")["status"] == "pass"
    assert _check(rep, "environment restored")["status"] == "pass"
    assert {x["source"] for x in rep["rpo"]} == {"database", "application/user_data", "configuration/environment_vars"}
    assert any(c.startswith("database axisor_drill_") for c in rep["cleanup"])
    assert platform.left_behind() == []


def test_a_smoke_check_that_does_not_hold_fails_the_drill(platform) -> None:
    platform.config(
        '[[drills.checks]]\nname = "a thousand orders"\nsql = "SELECT count(*) FROM orders"\n'
        'expect = 1000\n[[drills.checks]]\nname = "the invoices folder"\npath = "invoices"\n'
        'source = "application/user_data"\n'
    )
    r = platform.ws.cli("drill", "--scenario", "platform-loss", "--json", timeout=300)
    assert r.code == 19, r.out + r.err
    rep = run_json(r)
    assert not rep["passed"]
    bad = _check(rep, "a thousand orders")
    assert bad["status"] == "fail" and bad["detail"] == "returned 900, expected 1000"
    assert _check(rep, "the invoices folder")["status"] == "fail"
    assert "a thousand orders: returned 900, expected 1000" in r.err
    assert platform.left_behind() == []
    listing = run_json(platform.ws.cli("drills", "--json"))["drills"]
    assert [d for d in listing if d["id"] == rep["id"]][0]["passed"] is False


def test_a_corrupted_pack_fails_the_drill_and_says_where(platform) -> None:
    repo = copy_repo(platform, "damaged-repo")
    # Flip bytes in the middle of every pack: whatever the dump needs is damaged.
    for pack in (repo / "data").rglob("*"):
        if pack.is_file() and pack.stat().st_size > 200:
            raw = bytearray(pack.read_bytes())
            for i in range(64, len(raw) - 64, 97):
                raw[i] ^= 0xFF
            pack.write_bytes(bytes(raw))
    platform.config(CHECKS, repo=repo)
    try:
        r = platform.ws.cli("drill", "--json", timeout=300)
        assert r.code == 19, r.out + r.err
        rep = run_json(r)
        assert not rep["passed"]
        failed = [s for s in rep["steps"] if s["status"] == "failed"]
        assert failed and failed[0]["name"] == "restore database"
        assert "damaged" in failed[0]["detail"] or "authenticate" in failed[0]["detail"], failed[0]
        assert rep["error"] == failed[0]["detail"]
        assert _check(rep, "nothing left behind")["status"] == "pass"
        assert platform.left_behind() == []
    finally:
        platform.config(CHECKS)


def test_corrupted_table_restores_the_largest_table_beside_the_live_one(platform) -> None:
    platform.config(CHECKS)
    platform.cluster.psql("UPDATE orders SET total = 0 WHERE id <= 10", "shop")  # the "corruption"
    try:
        r = platform.ws.cli("drill", "--scenario", "corrupted-table", "--json", timeout=300)
        assert r.code == 0, r.out + r.err
        rep = run_json(r)
        assert rep["restored"][0]["table"] == "public.orders"
        assert _check(rep, "public.orders row count")["status"] == "pass"
        assert _check(rep, "public.orders checksum")["status"] == "pass"
        live = _check(rep, "live public.orders")
        assert live["status"] == "info" and "differs from the snapshot" in live["detail"]
        assert _check(rep, "orders are there")["status"] == "skip"  # one table only
        assert platform.left_behind() == []
    finally:
        platform.cluster.psql("UPDATE orders SET total = id * 1.25 WHERE id <= 10", "shop")


def test_location_loss_reads_only_the_secondary(platform, moto_s3) -> None:  # noqa: F811
    # The secondary is an S3 bucket on a server speaking the real protocol.
    extra = (
        '[[storage.remote_storage]]\nprovider = "aws-s3"\nname = "offsite"\n'
        f'bucket_name = "axisor-drill-{uuid.uuid4().hex[:10]}"\nendpoint = "{moto_s3.endpoint}"\n'
        f'region = "us-east-1"\npath_prefix = "repo"\ncredentials_file = "{moto_s3.credentials_file}"\n'
        "allow_insecure = true\n"
    )  # the test server speaks http://
    platform.config(CHECKS, extra=extra)
    r = platform.ws.cli("copy", "--to", "offsite", timeout=300)
    assert r.code == 0, r.out + r.err
    primary = platform.ws.repo
    aside = platform.ws.root / "primary-aside"
    primary.rename(aside)  # the primary is gone for the drill
    try:
        r = platform.ws.cli("drill", "--scenario", "location-loss", "--json", timeout=300)
        assert r.code == 0, r.out + r.err
        rep = run_json(r)
        assert rep["location"] == "offsite" and rep["passed"], rep["failures"]
        assert _check(rep, "uploads restored")["status"] == "pass"
        assert rep["extra"]["stored"].startswith("offsite:drills/")
        assert not primary.exists()  # nothing was written where the primary was
        assert platform.left_behind() == []
    finally:
        aside.rename(primary)
    r = platform.ws.cli("drill", "--scenario", "location-loss", "--from", "local")
    assert r.code == 2 and "secondary" in r.err


def test_misuse_is_refused_before_anything_runs(platform) -> None:
    platform.config(CHECKS)
    r = platform.ws.cli("drill", "--from", "nowhere")
    assert r.code == 2 and "no location 'nowhere'" in r.err
    r = platform.ws.cli("drill", "--scenario", "location-loss")
    assert r.code == 2 and "none is configured" in r.err
    r = platform.ws.cli("drill", "--scenario", "nonsense")
    assert r.code == 2
    assert platform.left_behind() == []


def test_a_schema_check_that_did_not_run_is_reported_as_skipped_with_why():
    """A partial restore (or an unknown fingerprint method) compares no schema: the drill
    says so as a skipped check, never drops it from the report."""
    from types import SimpleNamespace

    from core.drills.run import _Drill

    drill = SimpleNamespace(checks=[], listener=lambda c: None)
    drill.check = _Drill.check.__get__(drill)
    report = SimpleNamespace(
        tables=[],
        schema_fingerprint_match=None,
        large_objects=None,
        warnings=["schema fingerprint not compared: unknown method 'v9'"],
    )
    _Drill._database_checks(drill, report)
    schema = [c for c in drill.checks if c.name == "schema matches"]
    assert len(schema) == 1 and schema[0].status == "skip" and "unknown method 'v9'" in schema[0].detail

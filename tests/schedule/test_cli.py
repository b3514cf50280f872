"""`axisor-backup schedules` as a real subprocess: next runs, pause/resume, run now, history,
and the [[schedule.jobs]] config checks."""

from __future__ import annotations

SCHEDULE = """
[engine]
state_dir = "{state}"
[schedule]
enabled = true
timezone = "Europe/Berlin"
full_every_days = 7
[[schedule.jobs]]
name = "nightly"
task = "backup"
cron = "30 2 * * *"
[[schedule.jobs]]
name = "weekly-check"
task = "verify"
full = true
cron = "0 4 * * SUN"
timezone = "UTC"
"""


def setup(ws, extra: str = SCHEDULE):
    (ws.src / "a.txt").write_text("hello\n" * 100)
    ws.write_config(extra=extra.format(state=ws.root / "state"))


def test_schedules_lists_next_runs_across_spring_forward(ws):
    setup(ws)
    r = ws.cli("schedules", "--json", "--next", "3", "--from", "2027-03-27T12:00:00+00:00")
    assert r.code == 0, r.err
    data = r.json()
    assert data["enabled"] is True and data["max_concurrent"] == 2
    by_name = {s["name"]: s for s in data["schedules"]}
    assert list(by_name) == [
        "nightly",
        "weekly-check",
        "prune",
        "drill",
        "restore-test",
        "probe",
    ]  # backup and verify configured; prune, drill, restore-test and probe defaults
    nightly = by_name["nightly"]
    assert (nightly["task"], nightly["type"], nightly["timezone"], nightly["paused"]) == (
        "backup",
        "auto",
        "Europe/Berlin",
        False,
    )
    assert nightly["sources"] == ["application/user_data"]
    # 02:30 does not exist on 2027-03-28 in Berlin: it runs once, when the clocks jump.
    assert nightly["next_runs"] == [
        "2027-03-28T01:00:00+00:00",
        "2027-03-29T00:30:00+00:00",
        "2027-03-30T00:30:00+00:00",
    ]
    assert by_name["weekly-check"]["full"] is True
    assert nightly["runnable"] is True and by_name["weekly-check"]["runnable"] is True
    assert by_name["weekly-check"]["next_runs"][0] == "2027-03-28T04:00:00+00:00"

    text = ws.cli("schedules", "--next", "2", "--from", "2027-10-30T12:00:00+00:00")
    assert text.code == 0, text.err
    assert "nightly  [active]  backup (auto) of application/user_data" in text.out
    # Fall back: 02:30 happens twice; the job runs at the first one only.
    assert "next     Sun 2027-10-31 02:30:00 CEST (00:30 UTC)" in text.out
    assert "Mon 2027-11-01 02:30:00 CET (01:30 UTC)" in text.out


def test_default_schedules_when_none_configured(ws):
    setup(ws, '[engine]\nstate_dir = "{state}"\n[schedule]\ncron_expression = "15 1 * * *"\n')
    r = ws.cli("schedules", "--json", "--next", "1", "--from", "2027-01-04T00:00:00+00:00")
    assert r.code == 0, r.err
    data = r.json()
    assert data["enabled"] is False
    assert [(s["name"], s["task"], s["full"], s["origin"], s["next_runs"]) for s in data["schedules"]] == [
        ("backup", "backup", None, "default", ["2027-01-04T01:15:00+00:00"]),
        ("verify-quick", "verify", False, "default", ["2027-01-04T05:30:00+00:00"]),  # a Monday
        ("verify-full", "verify", True, "default", ["2027-01-10T05:30:00+00:00"]),  # the Sunday
        ("prune", "prune", None, "default", ["2027-01-09T04:30:00+00:00"]),  # Saturday
        ("drill", "drill", None, "default", ["2027-02-01T07:00:00+00:00"]),  # the 1st of the month
        ("restore-test", "restore-test", None, "default", ["2027-01-06T06:30:00+00:00"]),  # Wednesday
        ("probe", "probe", None, "default", ["2027-01-04T05:15:00+00:00"]),  # daily
    ]
    text = ws.cli("schedules")
    assert "scheduler: DISABLED" in text.out


def test_pause_and_resume_persist(ws):
    setup(ws)
    r = ws.cli("schedules", "pause", "nightly", "--json")
    assert r.code == 0, r.err
    assert r.json() == {"name": "nightly", "state": "paused", "changed": True}
    again = ws.cli("schedules", "pause", "nightly")
    assert again.code == 0 and "already was" in again.out
    listed = {s["name"]: s for s in ws.cli("schedules", "--json").json()["schedules"]}
    assert listed["nightly"]["paused"] is True and listed["nightly"]["next_runs"] == []
    assert listed["weekly-check"]["paused"] is False and len(listed["weekly-check"]["next_runs"]) == 3
    assert "nightly  [paused since" in ws.cli("schedules").out

    r = ws.cli("schedules", "resume", "nightly", "--json")
    assert r.json() == {"name": "nightly", "state": "active", "changed": True}
    listed = {s["name"]: s for s in ws.cli("schedules", "--json").json()["schedules"]}
    assert listed["nightly"]["paused"] is False and len(listed["nightly"]["next_runs"]) == 3

    bad = ws.cli("schedules", "pause", "nighty")
    assert bad.code == 2
    assert "no schedule named 'nighty'; configured: nightly, weekly-check" in bad.err


def test_run_now_backs_up_with_the_policy_and_records_it(ws):
    setup(ws)
    assert ws.cli("init").code == 0
    first = ws.cli("schedules", "run", "nightly", "--json")
    assert first.code == 0, first.err
    data = first.json()
    assert (data["state"], data["type"], data["kind"], data["engine"]) == ("completed", "full", "backup", "embedded")
    assert "no full backup yet" in data["reason"]
    second = ws.cli("schedules", "run", "nightly", "--json").json()
    assert (second["state"], second["type"]) == ("completed", "incremental")

    snaps = ws.cli("snapshots", "--json").json()["snapshots"]
    assert [(s["type"], "schedule:nightly" in s["tags"]) for s in snaps] == [("full", True), ("incremental", True)]
    history = ws.cli("schedules", "history", "nightly", "--json").json()["runs"]
    assert [(h["outcome"], h["trigger"], h["type"], h["job_id"]) for h in history] == [
        ("submitted", "manual", "incremental", second["job_id"]),
        ("submitted", "manual", "full", data["job_id"]),
    ]
    listed = {s["name"]: s for s in ws.cli("schedules", "--json").json()["schedules"]}
    assert listed["nightly"]["last_run"]["job_id"] == second["job_id"]

    verify = ws.cli("schedules", "run", "weekly-check", "--json").json()
    assert (verify["kind"], verify["params"]["full"], verify["state"]) == ("verify", True, "completed")
    assert verify["result"]["packs_checked"] >= 1


def test_config_check_names_bad_schedule_jobs(ws):
    setup(
        ws,
        """
[schedule]
enabled = true
timezone = "Europe/Berln"
[[schedule.jobs]]
name = "db"
task = "backup"
sources = ["database", "user_data", "nope"]
cron = "0 25 * * *"
[[schedule.jobs]]
name = "check"
task = "verify"
type = "full"
cron = "0 0 30 2 *"
jitter_seconds = -1
[[schedule.jobs]]
name = "check"
task = "copy"
locations = ["offsite"]
cron = "0 3 * * *"
""",
    )
    r = ws.cli("config", "check", "--json")
    assert r.code == 2
    problems = {p["key"]: p["message"] for p in r.json()["problems"]}
    assert problems["schedule.timezone"].startswith("unknown time zone 'Europe/Berln'")
    assert problems["schedule.jobs[0].cron"] == "hour field '25' is out of range (0-23)"
    assert problems["schedule.jobs[1].type"] == "only applies to task 'backup' (this job's task is 'verify')"
    assert "never matches a date" in problems["schedule.jobs[1].cron"]
    assert "from 0 to 86400" in problems["schedule.jobs[1].jitter_seconds"]
    assert "duplicate name 'check'" in problems["schedule.jobs[2].name"]


def test_config_check_names_unknown_sources_and_locations(ws):
    setup(
        ws,
        """
[schedule]
[[schedule.jobs]]
name = "db"
task = "backup"
sources = ["database", "user_data", "nope"]
cron = "0 * * * *"
[[schedule.jobs]]
name = "offsite"
task = "copy"
locations = ["offsite"]
cron = "0 3 * * *"
""",
    )
    r = ws.cli("config", "check", "--json")
    assert r.code == 2
    problems = {p["key"]: p["message"] for p in r.json()["problems"]}
    assert problems == {
        "schedule.jobs[0].sources[0]": "the database source is not enabled ([database] enabled = true): 'database'",
        "schedule.jobs[0].sources[2]": "no such configured source: 'nope'",
        "schedule.jobs[1].locations[0]": "no [[storage.remote_storage]] named 'offsite'",
    }

"""The tripwire (issue 17, item 5): a backup that looks like mass encryption or a wipe turns
`status` critical and pins the snapshot before it against prune until `acknowledge`; an
ordinary day of churn never trips it.

The data has the shape of a platform's user data: JSON profiles, text documents and logs
(compressible), and photos and archives (incompressible every day: they must not trip the
compressibility rule). The "attack" does what ransomware does: every file's bytes replaced
by ciphertext of the same length, half of them renamed to ``*.locked``, a note left."""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from conftest import PASSPHRASE
from core.config import load_config
from core.health.tripwire import Thresholds, inspect
from core.service import BackupService

WORDS = "order invoice user plan pro free simulation run step value alpha beta gamma delta".split()


def platform_tree(root: Path, rnd: random.Random) -> None:
    """About 400 files, ~14 MB: most compress 4-10x, a tenth do not compress at all."""
    for i in range(300):
        d = root / "users" / f"u{i // 30:02d}"
        d.mkdir(parents=True, exist_ok=True)
        doc = {"id": i, "name": f"user{i}", "history": [rnd.choice(WORDS) for _ in range(4000)]}
        (d / f"profile{i}.json").write_text(json.dumps(doc))
    (root / "docs").mkdir()
    for i in range(60):
        (root / "docs" / f"report{i}.txt").write_text(" ".join(rnd.choice(WORDS) for _ in range(6000)))
    (root / "media").mkdir()
    for i in range(40):
        (root / "media" / f"photo{i}.jpg").write_bytes(rnd.randbytes(24_000))
    (root / "logs").mkdir()
    (root / "logs" / "app.log").write_text("start\n" * 2000)


def ordinary_day(root: Path, rnd: random.Random, day: int) -> None:
    """What a normal day does: a few profiles edited, a user and a photo added, the log grows."""
    files = sorted((root / "users").rglob("*.json"))
    for f in rnd.sample(files, 6):
        doc = json.loads(f.read_text())
        doc["history"].append(f"day{day}")
        f.write_text(json.dumps(doc))
    (root / "users" / "u00" / f"new{day}.json").write_text(json.dumps({"id": 1000 + day, "plan": "pro"}))
    (root / "media" / f"upload{day}.jpg").write_bytes(rnd.randbytes(30_000))
    with open(root / "logs" / "app.log", "a") as fh:
        fh.write(f"day {day} request ok\n" * 500)


def encrypt_everything(root: Path) -> None:
    """Ransomware: ciphertext of the same length in place, every other file renamed."""
    for n, f in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        f.write_bytes(os.urandom(f.stat().st_size))
        if n % 2:
            f.rename(f.with_name(f.name + ".locked"))
    (root / "README_RESTORE_FILES.txt").write_text("your files are encrypted\n")


def write_config(ws, extra: str = "") -> None:
    ws.config.write_text(
        f"""[application]
user_data = ["{ws.src}"]
retention_days = 1
[storage]
local_path = "{ws.repo}"
[retention]
keep_last = 1
min_keep = 1
{extra}
"""
    )


def cli(ws, *args):
    return ws.cli(*args, env={"AXISOR_BACKUP_STATE_DIR": str(ws.root / "state")})


def backup(ws) -> dict:
    r = cli(ws, "backup", "--json")
    assert r.code == 0, r.err
    (snap,) = r.json()["snapshots"]
    return snap


def prune_plan(ws) -> dict[str, dict]:
    """prune --dry-run two days ahead: retention_days no longer keeps anything, keep_last 1."""

    async def run():
        svc = BackupService(load_config(ws.config), lambda _confirm: PASSPHRASE, workers=2)
        try:
            return await svc.prune(dry_run=True, now=datetime.now(UTC) + timedelta(days=2))
        finally:
            await svc.close()

    report = asyncio.run(run())
    return {d.snapshot.id: {"keep": d.keep, "reasons": d.reasons} for d in report.decisions}


def test_ordinary_days_stay_quiet_and_mass_encryption_trips_pins_and_waits_for_a_person(ws):
    rnd = random.Random(17)
    platform_tree(ws.src, rnd)
    write_config(ws)
    assert cli(ws, "init").code == 0
    first = backup(ws)
    assert "tripwire" not in first  # a first snapshot has nothing to compare with
    days = []
    for day in range(1, 4):
        ordinary_day(ws.src, rnd, day)
        days.append(backup(ws))
    assert all("tripwire" not in s for s in days), [s.get("tripwire") for s in days]
    status = cli(ws, "status")
    assert status.code == 0 and "tripwire" not in status.out, status.out

    before = days[-1]
    encrypt_everything(ws.src)
    attacked = backup(ws)  # the backup itself succeeds: the snapshot is what the source holds
    trip = attacked["tripwire"]
    rules = [f["rule"] for f in trip["findings"]]
    assert rules == ["changed", "incompressible"], trip
    assert trip["pinned"] == before["id"]
    changed = trip["findings"][0]["figures"]
    assert changed["changed"] + changed["removed"] >= 400 and changed["previous_files"] >= 400
    assert trip["findings"][1]["figures"]["ratio"] < 1.1 <= 1.5 <= trip["findings"][1]["figures"]["baseline_ratio"]

    # status is critical, names the pin and what to do; --json says the same.
    status = cli(ws, "status")
    assert status.code == 2, status.out + status.err
    assert "CRITICAL tripwire application/user_data" in status.out
    assert f"snapshot {before['id'][:8]} is pinned against prune" in status.out
    assert "axisor-backup acknowledge" in status.out
    checks = {c["name"]: c for c in json.loads(cli(ws, "status", "--json").out)["checks"]}
    assert checks["tripwire application/user_data"]["level"] == "critical"

    # Prune keeps the pinned snapshot whatever retention says, and says why; the others go.
    plan = prune_plan(ws)
    assert plan[before["id"]]["keep"] and plan[before["id"]]["reasons"][0].startswith("pinned by the tripwire")
    assert plan[attacked["id"]]["keep"]  # keep_last 1
    assert not any(plan[s["id"]]["keep"] for s in [first, *days[:-1]])

    # A later ordinary backup answers nothing: a person must look.
    assert "tripwire" not in backup(ws)
    assert cli(ws, "status").code == 2

    # `acknowledge` lists the pins; acknowledging by the tripped snapshot's id removes the pin.
    listed = cli(ws, "acknowledge")
    assert listed.code == 0, listed.err
    assert before["id"][:8] in listed.out and "changed; incompressible" in listed.out
    assert cli(ws, "acknowledge", "ffffffff").code != 0  # names no pin: nothing deleted
    done = cli(ws, "acknowledge", attacked["id"][:12], "--json")
    assert done.code == 0, done.err
    assert [p["snapshot"] for p in done.json()["removed"]] == [before["id"]]
    assert cli(ws, "status").code == 0
    assert not prune_plan(ws)[before["id"]]["keep"]
    assert "no pins" in cli(ws, "acknowledge").out


def test_a_wipe_trips_on_shrink_and_the_wire_can_be_switched_off(ws):
    rnd = random.Random(5)
    platform_tree(ws.src, rnd)
    write_config(ws)
    assert cli(ws, "init").code == 0
    backup(ws)
    for f in sorted((ws.src / "users").rglob("*.json"))[:250]:
        f.unlink()
    trip = backup(ws)["tripwire"]
    assert [f["rule"] for f in trip["findings"]] == ["changed", "shrink"]  # removed files count as changed
    status = cli(ws, "status")
    # One finding, the critical one: the shrink is not said twice.
    assert "CRITICAL tripwire" in status.out and "WARNING  shrink" not in status.out, status.out

    write_config(ws, "[protection]\ntripwire = false")
    for f in sorted((ws.src / "users").rglob("*.json")):
        f.unlink()
    assert "tripwire" not in backup(ws)


# -- the rules on their own numbers ------------------------------------------------------------


def _snap(
    files: int, changed: int = 0, removed: int = 0, added: int = 0, stored: int = 0, sid: str = "b" * 64, read: int = 0
):
    summary = SimpleNamespace(
        total_files=files,
        files_changed=changed,
        files_removed=removed,
        data_added=added,
        data_added_packed=stored,
        bytes_read=read,
    )
    return SimpleNamespace(id=sid, source="application/user_data", tags=(), summary=summary, datetime=datetime.now(UTC))


MIB = 1024 * 1024


def test_each_rule_at_its_edge():
    limits = Thresholds(changed_share=0.5, min_files=50, incompressible_bytes=8 * MIB, shrink_share=0.5)
    prev = _snap(200, added=20 * MIB, stored=4 * MIB, sid="a" * 64)
    assert inspect(_snap(200, changed=100), [prev], limits) == []  # exactly half: not more than
    assert [f.rule for f in inspect(_snap(200, changed=101), [prev], limits)] == ["changed"]
    assert inspect(_snap(60, changed=40), [_snap(60)], limits) == []  # 67 %, but under min_files
    # Every file changed but nothing new stored (a restore of older files, a chmod -R): quiet.
    assert inspect(_snap(200, changed=200, read=50 * MIB, added=MIB, stored=MIB // 4), [prev], limits) == []
    assert [
        f.rule for f in inspect(_snap(200, changed=200, read=50 * MIB, added=26 * MIB, stored=6 * MIB), [prev], limits)
    ] == ["changed"]
    # Incompressible new data after compressible: trips; after incompressible: does not.
    assert [f.rule for f in inspect(_snap(200, added=9 * MIB, stored=9 * MIB), [prev], limits)] == ["incompressible"]
    noisy = _snap(200, added=20 * MIB, stored=20 * MIB, sid="c" * 64)
    assert inspect(_snap(200, added=9 * MIB, stored=9 * MIB), [noisy], limits) == []
    assert inspect(_snap(200, added=7 * MIB, stored=7 * MIB), [prev], limits) == []  # too little to say
    # A database or a safety snapshot never trips; nor a first snapshot.
    db = _snap(1, changed=1)
    db.source = "database"
    assert inspect(db, [prev], limits) == []
    assert inspect(_snap(200, changed=200), [], limits) == []


@settings(max_examples=300, deadline=None)
@given(
    before=st.integers(0, 10_000),
    changed=st.integers(0, 10_000),
    removed=st.integers(0, 10_000),
    added=st.integers(0, 64 * MIB),
    stored=st.integers(0, 64 * MIB),
    share=st.floats(0.01, 1.0),
    min_files=st.integers(1, 500),
)
def test_never_trips_below_its_minimums(before, changed, removed, added, stored, share, min_files):
    limits = Thresholds(changed_share=share, min_files=min_files, incompressible_bytes=8 * MIB, shrink_share=share)
    prev = _snap(before, added=32 * MIB, stored=4 * MIB, sid="a" * 64)
    now = _snap(max(0, before - removed), changed=changed, removed=removed, added=added, stored=stored)
    rules = {f.rule for f in inspect(now, [prev], limits)}
    if changed + removed < min_files or changed + removed <= share * before:
        assert "changed" not in rules
    if added < 8 * MIB:
        assert "incompressible" not in rules
    if removed < min_files:
        assert "shrink" not in rules
    for f in inspect(now, [prev], limits):
        assert f.message and json.dumps(f.to_dict())  # every finding says itself and serialises


def test_runbook_the_tripwire_fired(ws, tmp_path):
    """docs/OPERATIONS.md, "The tripwire fired", run as written after a mass encryption:
    PINNED_ID and TRIPPED_ID as `acknowledge` lists them, /srv/restore-check a scratch folder."""
    import re
    import shlex

    from conftest import ROOT

    rnd = random.Random(3)
    platform_tree(ws.src, rnd)
    write_config(ws)
    assert cli(ws, "init").code == 0
    backup(ws)
    ordinary_day(ws.src, rnd, 1)
    good = backup(ws)
    wanted = {p.relative_to(ws.src): p.read_bytes() for p in ws.src.rglob("*") if p.is_file()}
    encrypt_everything(ws.src)
    tripped = backup(ws)
    assert tripped["tripwire"]["pinned"] == good["id"]

    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    start = text.index("\n## The tripwire fired\n")
    (block,) = re.findall(r"```sh\n(.*?)```", text[start : text.find("\n## ", start + 1)], re.S)
    values = {
        "PINNED_ID": good["id"][:12],
        "TRIPPED_ID": tripped["id"][:12],
        "/srv/restore-check": str(tmp_path / "check"),
    }
    expect = [2, 0, 0, 0, 0, 0, 0, 0]  # status is critical until the acknowledgement
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) == len(expect)
    outs = []
    for line, code in zip(lines, expect):
        argv = shlex.split(line)
        assert argv[0] == "axisor-backup"
        r = cli(ws, *[values.get(a, a) for a in argv[1:]])
        assert r.code == code, (line, r.out, r.err)
        outs.append(r.out)
    assert "CRITICAL tripwire application/user_data" in outs[0]
    assert good["id"][:8] in outs[1] and tripped["id"][:8] in outs[1]
    assert "README_RESTORE_FILES.txt" in outs[2]
    checked = tmp_path / "check" / str(ws.src).lstrip("/")
    assert {p.relative_to(checked): p.read_bytes() for p in checked.rglob("*") if p.is_file()} == wanted
    # The live source holds the pinned snapshot's files again, and nothing the attack left.
    assert {p.relative_to(ws.src): p.read_bytes() for p in ws.src.rglob("*") if p.is_file()} == wanted
    assert "tripwire" not in outs[-1] and "OK" in outs[-1].upper()
    # The backup of the restored files added nothing new: it tripped nothing, pinned nothing.
    assert "no pins" in cli(ws, "acknowledge").out


def test_the_bench_data_set_churns_and_reverts_without_a_trip(ws, tmp_path):
    """The suite's own shape of a platform (bench/gen.py: a SQL dump, logs, binaries,
    configs) through three rounds of its ~1 % churn (bench/churn.py) and a revert to the
    original bytes: four ordinary days, zero trips at the default thresholds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import churn
    import gen

    data = tmp_path / "data"
    gen.generate(str(data), scale=0.03, seed=4, jobs=1, quiet=True)
    ws.config.write_text(f'[application]\nuser_data = ["{data}"]\n[storage]\nlocal_path = "{ws.repo}"\n')
    assert cli(ws, "init").code == 0
    snaps = [backup(ws)]
    for n in (1, 2, 3):
        churn.apply_round(str(data), n, quiet=True)
        snaps.append(backup(ws))
    churn.revert(str(data), quiet=True)
    snaps.append(backup(ws))
    assert snaps[0]["summary"]["total_files"] > 300
    assert [s.get("tripwire") for s in snaps] == [None] * 5
    assert cli(ws, "status").code == 0


def test_a_trip_is_notified_as_the_backup_ends_even_without_on_success(ws, tmp_path):
    import sys

    heard = tmp_path / "heard.jsonl"
    hook = (
        f"import os, sys; open({str(heard)!r}, 'a').write(os.environ['AXISOR_EVENT'] + ' ' + sys.stdin.read() + '\\n')"
    )
    rnd = random.Random(8)
    platform_tree(ws.src, rnd)
    write_config(ws, f"[notifications]\ncommand = {json.dumps([sys.executable, '-c', hook])}\non_success = false")
    assert cli(ws, "init").code == 0
    backup(ws)
    ordinary_day(ws.src, rnd, 1)
    backup(ws)
    assert not heard.exists()  # ordinary days: on_success is off, nothing tripped
    encrypt_everything(ws.src)
    tripped = backup(ws)
    (line,) = heard.read_text().splitlines()
    event, _, body = line.partition(" ")
    doc = json.loads(body)
    assert event == "source.tripwire" and doc["event"] == "source.tripwire" and doc["level"] == "critical"
    assert doc["source"] == "application/user_data"
    assert f"TRIPWIRE in snapshot {tripped['id'][:8]}" in doc["summary"]
    assert f"snapshot {tripped['tripwire']['pinned'][:8]} is pinned against prune" in doc["summary"]


def test_a_pin_travels_with_the_copies_and_acknowledge_removes_it_everywhere(ws, tmp_path):
    """Each backup's copy carries the pins, so a prune of the copy keeps the snapshot too;
    `acknowledge` removes every copy of the pin."""
    nas = tmp_path / "nas"
    rnd = random.Random(11)
    platform_tree(ws.src, rnd)
    write_config(ws, f'[[storage.remote_storage]]\nprovider = "local"\nname = "nas"\npath = "{nas}"')
    assert cli(ws, "init").code == 0
    backup(ws)
    ordinary_day(ws.src, rnd, 1)
    good = backup(ws)
    encrypt_everything(ws.src)
    tripped = backup(ws)
    assert tripped["tripwire"]["pinned"] == good["id"]
    assert (ws.repo / "pins" / good["id"]).exists() and (nas / "pins" / good["id"]).exists()
    done = cli(ws, "acknowledge", "--all", "--json")
    assert done.code == 0, done.err
    assert done.json()["elsewhere"] == []
    assert not (ws.repo / "pins" / good["id"]).exists() and not (nas / "pins" / good["id"]).exists()

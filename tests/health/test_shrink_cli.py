"""Suspicious shrink through the real CLI: `snapshots` (text and --json) and `status`."""

from __future__ import annotations

import json


def run(ws, *args):
    return ws.cli(*args, env={"AXISOR_BACKUP_STATE_DIR": str(ws.root / "state")})


def ten_files_backed_up_then_removed(ws, removed: int, extra: str = ""):
    ws.write_config(extra)
    for i in range(10):
        (ws.src / f"f{i}.txt").write_text(f"file {i}\n")
    (ws.src / "sub").mkdir()
    assert run(ws, "init").code == 0
    first = run(ws, "backup", "--json")
    assert first.code == 0, first.err
    for i in range(removed):
        (ws.src / f"f{i}.txt").unlink()
    second = run(ws, "backup", "--json")
    assert second.code == 0, second.err
    return first.json()["snapshots"][0], second.json()["snapshots"][0]


def test_losing_60_percent_of_the_files_is_kept_and_flagged(ws):
    first, second = ten_files_backed_up_then_removed(ws, 6)
    assert second["previous"] == {"id": first["id"], "time": first["time"], "total_files": 10}

    listed = run(ws, "snapshots", "--json")
    assert listed.code == 0, listed.err
    by_id = {s["id"]: s for s in listed.json()["snapshots"]}
    assert set(by_id) == {first["id"], second["id"]}  # kept
    assert by_id[first["id"]]["flags"] == [] and by_id[first["id"]]["suspicious_shrink"] is None
    assert by_id[second["id"]]["flags"] == ["suspicious_shrink"]
    assert by_id[second["id"]]["suspicious_shrink"] == {
        "previous": first["id"],
        "previous_files": 10,
        "files": 4,
        "lost_share": 0.6,
        "threshold": 0.5,
    }

    text = run(ws, "snapshots").out
    line = next(ln for ln in text.splitlines() if ln.startswith(second["id"][:8]))
    assert "SUSPICIOUS SHRINK (10 -> 4 files)" in line
    assert "SUSPICIOUS" not in next(ln for ln in text.splitlines() if ln.startswith(first["id"][:8]))
    assert "FLAGS" in text.splitlines()[0]

    status = run(ws, "status")
    assert status.code == 1, status.out + status.err
    assert "WARNING  shrink application/user_data: suspicious shrink" in status.out
    assert f"snapshot {second['id'][:8]} has 4 files" in status.out and "had 10" in status.out
    checks = {c["name"]: c for c in json.loads(run(ws, "status", "--json").out)["checks"]}
    assert checks["shrink application/user_data"]["level"] == "warning"
    assert checks["source application/user_data"]["level"] == "ok"

    # The next backup compares with the shrunk snapshot: status is quiet again, the flag stays.
    assert run(ws, "backup").code == 0
    assert run(ws, "status").code == 0
    by_id = {s["id"]: s for s in run(ws, "snapshots", "--json").json()["snapshots"]}
    assert by_id[second["id"]]["flags"] == ["suspicious_shrink"]


def test_losing_40_percent_is_not_flagged(ws):
    _, second = ten_files_backed_up_then_removed(ws, 4)
    listed = {s["id"]: s for s in run(ws, "snapshots", "--json").json()["snapshots"]}
    assert listed[second["id"]]["flags"] == [] and listed[second["id"]]["suspicious_shrink"] is None
    assert "SUSPICIOUS" not in run(ws, "snapshots").out
    status = run(ws, "status")
    assert status.code == 0 and "shrink" not in status.out, status.out


def test_the_threshold_is_configurable(ws):
    _, second = ten_files_backed_up_then_removed(ws, 4, "[objectives]\nsuspicious_shrink = 0.3")
    listed = {s["id"]: s for s in run(ws, "snapshots", "--json").json()["snapshots"]}
    assert listed[second["id"]]["suspicious_shrink"]["threshold"] == 0.3
    assert run(ws, "status").code == 1
    ws.write_config("[objectives]\nsuspicious_shrink = 1")  # switched off
    assert run(ws, "snapshots", "--json").json()["snapshots"][-1]["flags"] == []
    assert run(ws, "status").code == 0

"""Bandwidth limits through the real command line (issue 19): --limit-upload and
--limit-download, and the limit_upload / limit_download keys that `config check` vets.

Timing is asserted only from below, and loosely: the suite runs on a busy 2-core host, so
"took at least most of what the limit allows" is the claim, never "finished by"."""

from __future__ import annotations

import json
import random
import time

MIB = 1024 * 1024
SIZE = 6_000_000  # incompressible: the repository holds about as much as the source
LIMIT_KIB = 2048  # 2 MiB/s: the 6 MB need at least ~2.8 s either way


def timed(ws, *args: str):
    started = time.monotonic()
    r = ws.cli(*args, timeout=300)
    return r, time.monotonic() - started


def test_backup_and_restore_hold_the_limits(ws, tmp_path):
    (ws.src / "blob.bin").write_bytes(random.Random(19).randbytes(SIZE))
    assert ws.cli("init").code == 0

    r, took = timed(ws, "--limit-upload", str(LIMIT_KIB), "backup")
    assert r.code == 0, r.err
    floor = 0.7 * SIZE / (LIMIT_KIB * 1024)  # 2.0 s of the ~2.8 the limit allows
    assert took >= floor, f"backup of {SIZE} bytes at {LIMIT_KIB} KiB/s took only {took:.2f} s"

    # The download limit from the config file this time (the option would override it).
    ws.write_config(f"limit_download = {LIMIT_KIB}")
    target = tmp_path / "restored"
    r, took = timed(ws, "restore", "latest", "--target", str(target))
    assert r.code == 0, r.err
    assert took >= floor, f"restore of {SIZE} bytes at {LIMIT_KIB} KiB/s took only {took:.2f} s"
    restored = next(target.rglob("blob.bin"))
    assert restored.read_bytes() == (ws.src / "blob.bin").read_bytes()


def test_uploads_held_back_by_the_limit_do_not_trip_the_stall_watchdog(ws):
    """Two 4 MiB packs at 2 MiB/s keep the reader waiting ~4 s for an upload slot: longer
    than this stall timeout, yet the backup moves (engine stall_timeout_seconds counts the
    granted slices as progress) and must not fail as stalled (exit 22)."""
    rnd = random.Random(22)
    for i in range(3):
        (ws.src / f"part{i}.bin").write_bytes(rnd.randbytes(4_000_000))
    ws.write_config("pack_size_mib = 4\n[engine]\nstall_timeout_seconds = 2")
    assert ws.cli("init").code == 0
    r = ws.cli("--limit-upload", str(LIMIT_KIB), "backup", timeout=300)
    assert r.code == 0, r.err


def test_limits_are_also_accepted_after_the_command(ws):
    assert ws.cli("init").code == 0
    r = ws.cli("snapshots", "--limit-upload", "100", "--limit-download", "0", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["snapshots"] == []


def test_a_bad_option_value_is_a_usage_error(ws):
    for bad in ("-5", "2MiB", "1.5"):
        r = ws.cli("--limit-download", bad, "snapshots")
        assert r.code == 2
        assert "--limit-download" in r.err and "KiB/s" in r.err and repr(bad) in r.err


def test_config_check_rejects_bad_limits_naming_the_key(ws):
    ws.write_config(
        'limit_upload = -1\nlimit_download = "2 MiB"\n\n[[storage.remote_storage]]\n'
        'provider = "local"\nname = "nas"\npath = "nas"\nlimit_upload = true\nlimit_download = 1.5\n'
    )
    r = ws.cli("config", "check", "--json")
    assert r.code == 2
    problems = {p["key"]: p["message"] for p in r.json()["problems"]}
    assert problems.keys() == {
        "storage.limit_upload",
        "storage.limit_download",
        "storage.remote_storage[0].limit_upload",
        "storage.remote_storage[0].limit_download",
    }
    for message in problems.values():
        assert message.startswith("must be a rate in KiB/s, an integer >= 0")
    assert problems["storage.limit_upload"].endswith("(got -1)")
    assert problems["storage.limit_download"].endswith("(got string)")
    assert problems["storage.remote_storage[0].limit_upload"].endswith("(got boolean)")

    text = ws.cli("config", "check")
    assert text.code == 2
    assert "storage.limit_upload: must be a rate in KiB/s" in text.err + text.out


def test_config_check_accepts_limits(ws):
    ws.write_config(
        "limit_upload = 0\nlimit_download = 4096\n\n[[storage.remote_storage]]\n"
        'provider = "local"\nname = "nas"\npath = "nas"\nlimit_upload = 1024\n'
    )
    r = ws.cli("config", "check")
    assert r.code == 0, r.out + r.err


def test_a_job_given_limits_runs_here_not_in_a_daemon():
    """A daemon would run the backup under its own config's limits: the options keep the
    job in this process (app/cli_jobs.py)."""
    from app.cli_parser import build_parser
    from app.cli_jobs import limited_here

    parse = build_parser().parse_args
    assert not limited_here(parse(["backup"]))
    assert limited_here(parse(["--limit-upload", "0", "backup"]))  # 0 lifts the config's limit: also here
    assert limited_here(parse(["backup", "--limit-download", "512"]))

"""One catalog across locations, and the `locations` monitoring command, through the CLI."""

from __future__ import annotations

import asyncio

import json
from datetime import datetime, timedelta, timezone

BACKUP_INFO = {"id", "type", "created_at", "size_bytes", "location", "path", "metadata"}


def test_catalog_lists_each_snapshot_once_with_its_locations(sites, tmp_path):
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    blocker = tmp_path / "usb"
    blocker.write_text("unplugged")
    sites.add_local("usb", blocker / "repo")
    sites.ok("init")
    a = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    sites.remove("offsite")  # offsite misses the second backup
    (sites.ws.src / "b.txt").write_text("b")
    b = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    sites.add_local("offsite", offsite)
    # A pack only the first snapshot needs vanishes from offsite: that copy is incomplete.
    a_pack = next(p for p in (offsite / "data").rglob("*") if p.is_file() and p.stat().st_size > 1_000_000)
    a_pack.unlink()

    r = sites.ok("snapshots", "--json")
    cat = r.json()
    assert [s["id"] for s in cat["snapshots"]] == [a, b]  # each once, oldest first
    by_id = {s["id"]: {c["name"]: c["state"] for c in s["locations"]} for s in cat["snapshots"]}
    assert by_id[a] == {"local": "complete", "usb": "unknown", "offsite": "incomplete"}
    assert by_id[b] == {"local": "complete", "usb": "unknown", "offsite": "missing"}
    first = cat["snapshots"][0]
    assert BACKUP_INFO <= set(first)
    assert first["location"] == "local" and first["type"] == "full"
    assert first["created_at"] == first["time"] and first["size_bytes"] == first["summary"]["total_bytes"]
    assert first["path"] == f"{sites.ws.repo}/snapshots/{a}"
    assert [c["complete"] for c in first["locations"]] == [True, False, False]
    scans = {x["name"]: x for x in cat["locations"]}
    assert scans["usb"]["reachable"] is False and "usb" in scans["usb"]["error"]
    assert scans["offsite"]["snapshots"] == 1
    assert "location usb cannot be read" in r.err

    text = sites.ok("snapshots").out
    header, row_a, row_b = text.splitlines()[:3]
    assert "LOCATIONS" in header
    assert "local ?usb offsite!" in row_a and "local ?usb -offsite" in row_b  # config order

    # Every location but one gone: the catalog still answers from what is left.
    (offsite / "config").unlink()
    for p in sites.ws.repo.iterdir():
        if p.name == "config":
            p.unlink()
    r = sites.cli("snapshots", "--json")
    assert r.code == 3, r  # nothing readable anywhere: the primary's error


def test_locations_reports_reachability_usage_growth_and_last_write(sites, tmp_path):
    sites.add_local("offsite", tmp_path / "offsite")
    (tmp_path / "unmounted").write_text("a mount point whose disk is away")
    sites.add_local("gone", tmp_path / "unmounted" / "repo")
    sites.ok("init")
    week_ago = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat(timespec="seconds")
    sites.state.mkdir(parents=True)
    (sites.state / "locations.json").write_text(
        json.dumps({"v": 1, "locations": {"local": {"samples": [[week_ago, 1000, 3]]}}})
    )
    before = datetime.now(timezone.utc).replace(microsecond=0)
    sites.ok("backup")

    r = sites.ok("locations", "--json")
    locs = {x["name"]: x for x in r.json()["locations"]}
    assert list(locs) == ["local", "offsite", "gone"]
    local, offsite = locs["local"], locs["offsite"]
    for loc in (local, offsite):
        assert loc["reachable"] is True and loc["initialized"] is True and loc["error"] is None
        assert loc["latency_ms"] is not None and loc["latency_ms"] >= 0
        assert loc["bytes_used"] > 2_500_000 and loc["objects"] >= 4  # config, key, pack, index, snapshot
        assert loc["free_bytes"] > 0
        assert datetime.fromisoformat(loc["last_write"]) >= before
        assert loc["same_repository"] is True
    on_disk = sum(p.stat().st_size for p in sites.ws.repo.rglob("*") if p.is_file())
    assert local["bytes_used"] == on_disk
    assert local["growth_bytes"] == local["bytes_used"] - 1000 and local["growth_since"] == week_ago
    assert local["primary"] is True and offsite["primary"] is False
    assert local["repository_id"] == offsite["repository_id"]
    gone = locs["gone"]
    assert gone["reachable"] is False and "does not exist" in gone["error"]
    assert gone["bytes_used"] is None and gone["latency_ms"] is None

    text = sites.ok("locations").out
    assert text.splitlines()[0].split()[:3] == ["NAME", "PROVIDER", "STATE"]
    assert "local (primary)" in text and "down" in text
    saved = json.loads((sites.state / "locations.json").read_text())
    assert saved["locations"]["local"]["samples"][0] == [week_ago, 1000, 3]
    assert len(saved["locations"]["offsite"]["samples"]) == 1


def test_verify_ls_and_show_read_a_replica_with_from(sites, tmp_path):
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    snap = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    assert sites.ok("show", snap[:8], "--from", "offsite", "--json").json()["id"] == snap
    listed = sites.ok("ls", "latest", "--from", "offsite", "--json").json()
    assert any(e["path"].endswith("/users/bob.json") for e in listed)
    # Damage only the replica: the primary still verifies clean, the replica does not.
    pack = next(p for p in (offsite / "data").rglob("*") if p.is_file() and p.stat().st_size > 1_000_000)
    pack.unlink()
    assert sites.cli("verify").code == 0
    r = sites.cli("verify", "--from", "offsite", "--json")
    assert r.code == 6 and any(pack.name in d["object"] for d in r.json()["damage"])
    assert sites.cli("verify", "--from", "nowhere").code == 2
    # The job history says which location each verification read and which snapshots it
    # opened: the console's verification report tells the replica's damage from the
    # primary's clean bill (it used to record both as the primary's).
    from core.jobs.verification import outcome_of
    from core.jobs.store import JobStore

    async def verifies():
        store = await JobStore.open(sites.state)
        try:
            return await store.list(limit=10, kinds=("verify",))
        finally:
            await store.close()

    replica, primary = asyncio.run(verifies())[:2]
    assert replica.params["location"] == "offsite" and "location" not in primary.params
    assert snap in replica.result["snapshot_ids"] and snap in primary.result["snapshot_ids"]
    assert outcome_of(replica, snap) == "damage" and outcome_of(primary, snap) == "passed"

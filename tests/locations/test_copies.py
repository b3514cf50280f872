"""Copies to other locations, restores from them, and catching up after an outage,
all through the real CLI with provider = "local" secondaries (other folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

from locations_support import tree_digest


def _restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_backup_copies_to_secondary_and_restore_after_primary_is_deleted(sites, tmp_path):
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    first = sites.ok("backup", "--json").json()
    assert [c["target"] for c in first["copies"]] == ["offsite"]
    assert first["copies"][0]["created"] is True
    assert first["copies"][0]["copied"] == [first["snapshots"][0]["id"]]
    # A replica: the same config object and key files, byte for byte.
    assert (offsite / "config").read_bytes() == (sites.ws.repo / "config").read_bytes()
    assert sorted(p.name for p in (offsite / "keys").iterdir()) == sorted(
        p.name for p in (sites.ws.repo / "keys").iterdir()
    )
    # Packs are copied as they are (same names, same bytes): no re-chunking, no re-encryption.
    packs = sorted(p.relative_to(sites.ws.repo) for p in (sites.ws.repo / "data").rglob("*") if p.is_file())
    assert packs and all((offsite / p).read_bytes() == (sites.ws.repo / p).read_bytes() for p in packs)

    (sites.ws.src / "users" / "carol.txt").write_text("carol\n")
    second = sites.ok("backup", "--json").json()
    assert second["copies"][0]["copied"] == [second["snapshots"][0]["id"]]
    expected = tree_digest(sites.ws.src)

    shutil.rmtree(sites.ws.repo)  # the primary is lost
    r = sites.cli("restore", "latest", "--target", str(tmp_path / "out"), "--json")
    assert r.code == 0, r.err
    assert r.json()["location"] == "offsite"
    assert "cannot serve" in r.err and "restoring from location offsite" in r.err
    assert tree_digest(_restored(tmp_path / "out", sites.ws.src)) == expected

    # Chosen by hand; and the lost primary, chosen by hand, fails as a lost repository does.
    r = sites.cli(
        "restore", first["snapshots"][0]["id"][:10], "--from", "offsite", "--target", str(tmp_path / "old"), "--json"
    )
    assert r.code == 0, r.err
    assert not (_restored(tmp_path / "old", sites.ws.src) / "users" / "carol.txt").exists()
    assert sites.cli("restore", "latest", "--from", "local", "--target", str(tmp_path / "x")).code == 3


def test_a_down_location_does_not_fail_the_backup_and_the_next_run_catches_up(sites, tmp_path):
    blocker = tmp_path / "nas-mount"
    blocker.write_text("not a folder: the disk is not mounted")
    sites.add_local("offsite", tmp_path / "offsite")
    sites.add_local("nas", blocker / "repo")
    sites.ok("init")

    r = sites.ok("backup", "--json")
    out = r.json()
    snap = out["snapshots"][0]["id"]
    copies = {c["target"]: c for c in out["copies"]}
    assert copies["offsite"]["copied"] == [snap] and copies["offsite"]["error"] is None
    assert copies["nas"]["error"] and "nas-mount" in copies["nas"]["error"]
    assert copies["nas"]["pending"] == [snap] and copies["nas"]["copied"] == []
    assert "not copied to location nas" in r.err

    cat = sites.ok("snapshots", "--json").json()
    states = {c["name"]: c["state"] for c in cat["snapshots"][0]["locations"]}
    assert states == {"local": "complete", "offsite": "complete", "nas": "unknown"}
    assert {x["name"]: x["reachable"] for x in cat["locations"]} == {"local": True, "offsite": True, "nas": False}
    status = {x["name"]: x for x in sites.ok("locations", "--json").json()["locations"]}
    assert status["nas"]["reachable"] is False and "nas-mount" in status["nas"]["last_error"]

    (sites.ws.src / "later.txt").write_text("written while the NAS was away\n")
    blocker.unlink()
    blocker.mkdir()  # the disk is back
    out = sites.ok("backup", "--json").json()
    snap2 = out["snapshots"][0]["id"]
    copies = {c["target"]: c for c in out["copies"]}
    assert sorted(copies["nas"]["copied"]) == sorted([snap, snap2]) and copies["nas"]["error"] is None
    assert copies["offsite"]["copied"] == [snap2]
    cat = sites.ok("snapshots", "--json").json()
    assert all(c["state"] == "complete" for e in cat["snapshots"] for c in e["locations"])
    assert sites.ok("locations", "--json").json()["locations"][2]["last_error"] is None

    r = sites.cli("restore", "latest", "--from", "nas", "--target", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert tree_digest(_restored(tmp_path / "out", sites.ws.src)) == tree_digest(sites.ws.src)


def test_copy_by_hand_is_idempotent_and_resumes_an_interrupted_copy(sites, tmp_path):
    sites.ok("init")
    ids = []
    for i in range(3):
        (sites.ws.src / f"round{i}.bin").write_bytes(bytes([i]) * 300_000 + str(i).encode())
        ids.append(sites.ok("backup", "--json").json()["snapshots"][0]["id"])
    assert ids[0] != ids[1] != ids[2]
    offsite = sites.add_local("offsite", tmp_path / "offsite")  # configured after the backups

    one = sites.ok("copy", "--to", "offsite", ids[1][:8], "--json").json()
    assert one["copied"] == [ids[1]] and one["created"] is True and one["packs_copied"] > 0
    again = sites.ok("copy", "--to", "offsite", ids[1][:8], "--json").json()
    assert again["copied"] == [] and again["present"] == [ids[1]] and again["packs_copied"] == 0

    # Simulate a copy killed after its packs landed: drop the index and manifests it wrote.
    for folder in ("index", "snapshots"):
        for f in (offsite / folder).iterdir():
            f.unlink()
    rest = sites.ok("copy", "--to", "offsite", "--json").json()
    assert rest["copied"] == ids  # everything the target lacked, oldest first
    assert rest["packs_indexed"] > 0  # the leftover packs were indexed, not sent again
    assert sites.ok("copy", "--to", "offsite", "--json").json()["copied"] == []

    r = sites.cli("verify", "--json")
    assert r.code == 0
    shutil.rmtree(sites.ws.repo)
    r = sites.cli("restore", "latest", "--target", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert tree_digest(_restored(tmp_path / "out", sites.ws.src)) == tree_digest(sites.ws.src)


def test_copy_refuses_a_location_holding_another_repository(sites, tmp_path):
    other = tmp_path / "other"
    sites.ws.write_config()
    sites.ok("init")
    sites.ok("backup")
    # A second, unrelated repository, then named as a location of the first.
    stranger = sites.ws.repo
    sites.ws.repo = other
    sites.ws.write_config()
    sites.ok("init")
    sites.ws.repo = stranger
    sites.add_local("offsite", other)
    before = {p.name: p.read_bytes() for p in (other / "keys").iterdir()}
    r = sites.cli("copy", "--to", "offsite")
    assert r.code == 2, r
    assert "offsite" in r.err and str(other) in r.err and "another repository" in r.err
    # Nothing written to, or removed from, the other repository: not even its key files.
    assert not list((other / "snapshots").iterdir()) and not list((other / "index").iterdir())
    assert {p.name: p.read_bytes() for p in (other / "keys").iterdir()} == before
    r = sites.ok("backup", "--json")  # its copy fails; the backup does not
    assert "another repository" in r.json()["copies"][0]["error"]
    assert sites.cli("copy", "--to", "nowhere").code == 2
    assert sites.cli("copy", "--to", "local").code == 2


def test_key_changes_reach_replicas(sites, tmp_path):
    sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    sites.ok("backup")
    sites.ok("key", "passwd", env={"AXISOR_BACKUP_NEW_PASSPHRASE": "new secret phrase"})
    (sites.ws.src / "n.txt").write_text("n")
    sites.ok("backup", passphrase="new secret phrase")  # its copy mirrors the key files
    assert sites.cli("snapshots", "--json").code == 4  # the old passphrase opens neither location
    r = sites.cli("restore", "latest", "--from", "offsite", "--target", str(tmp_path / "o"))
    assert r.code == 4, r
    r = sites.cli(
        "restore", "latest", "--from", "offsite", "--target", str(tmp_path / "o"), passphrase="new secret phrase"
    )
    assert r.code == 0, r.err


def test_a_damaged_pack_is_not_spread(sites, tmp_path):
    sites.ok("init")
    sites.ok("backup")
    pack = next(p for p in (sites.ws.repo / "data").rglob("*") if p.is_file())
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    r = sites.cli("copy", "--to", "offsite")
    assert r.code == 9, r
    assert pack.name in r.err
    assert not (offsite / "data" / pack.parent.name / pack.name).exists()
    assert not list((offsite / "snapshots").iterdir())


def test_catch_up_brings_the_wal_archive_so_a_reseeded_primary_serves_wal_fetch(sites, tmp_path):
    import os

    sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    segs = []
    for n in (1, 2):
        seg = tmp_path / "pg_wal" / f"00000001000000000000000{n}"
        seg.parent.mkdir(exist_ok=True)
        seg.write_bytes(os.urandom(1_000_000) + bytes(200_000))
        sites.ok("wal-push", str(seg))
        segs.append(seg)
    out = sites.ok("backup", "--json").json()  # its catch-up copies the snapshot and the WAL
    assert out["copies"][0]["wal_copied"] == [s.name for s in segs]
    assert sites.ok("copy", "--to", "offsite", "--json").json()["wal_copied"] == []

    shutil.rmtree(sites.ws.repo)
    sites.ok("copy", "--from", "offsite", "--to", "local")
    for seg in segs:
        dest = tmp_path / "fetched" / seg.name
        dest.parent.mkdir(exist_ok=True)
        sites.ok("wal-fetch", seg.name, str(dest))
        assert dest.read_bytes() == seg.read_bytes()

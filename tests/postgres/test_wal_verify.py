"""verify knows the WAL archive: manifests open, their blobs are indexed, full verify reads them back.

The segments are real WAL, copied out of a running cluster's pg_wal, pushed through the CLI.
Each push writes its own pack(s) and one index file, so damage can be aimed at one WAL file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Workspace


@pytest.fixture(scope="module")
def real_segments(pg_cluster, tmp_path_factory) -> list[Path]:
    c = pg_cluster()
    c.psql("CREATE TABLE t (id int, pad text)")
    names = []
    for i in range(3):
        c.psql(f"INSERT INTO t SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, {2000 * (i + 1)}) g")
        names.append(c.psql("SELECT pg_walfile_name(pg_switch_wal())"))
    out = tmp_path_factory.mktemp("segs")
    segs = []
    for n in names:
        shutil.copyfile(c.dir / "data" / "pg_wal" / n, out / n)
        segs.append(out / n)
    return segs


@dataclass
class Pushed:
    name: str
    packs: list[Path]
    index: list[Path]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def archive(ws: Workspace, real_segments: list[Path]) -> list[Pushed]:
    assert ws.cli("init").code == 0
    pushed = []
    for seg in real_segments:
        packs0, index0 = _files(ws.repo / "data"), _files(ws.repo / "index")
        r = ws.cli("wal-push", str(seg))
        assert r.code == 0, r.err
        pushed.append(
            Pushed(seg.name, sorted(_files(ws.repo / "data") - packs0), sorted(_files(ws.repo / "index") - index0))
        )
        assert pushed[-1].packs and len(pushed[-1].index) == 1
    return pushed


def _key(repo: Path, p: Path) -> str:
    return p.relative_to(repo).as_posix()


def test_clean_archive_verifies_quick_and_full(ws: Workspace, archive: list[Pushed]) -> None:
    r = ws.cli("verify", "--json")
    assert r.code == 0, r.out + r.err
    j = r.json()
    assert j["ok"] and j["wal_files_checked"] == 3 and j["blobs_referenced"] >= 3
    r = ws.cli("verify", "--full", "--json")
    assert r.code == 0, r.out + r.err
    j = r.json()
    # Full verify read each WAL file back (16 MiB each) on top of the packs themselves.
    assert j["wal_files_checked"] == 3 and j["bytes_read"] >= 3 * 16 * 1024 * 1024
    r = ws.cli("verify")
    assert r.code == 0 and "3 WAL files" in r.out and "no damage found" in r.out


def test_missing_pack_and_missing_index_name_the_wal_file(ws: Workspace, archive: list[Pushed]) -> None:
    a, b, c = archive
    for p in a.packs:
        p.unlink()
    b.index[0].unlink()  # b's blobs are now in no index (unless another push stored them too)
    r = ws.cli("verify", "--json")
    assert r.code == 6, r.out + r.err
    damage = r.json()["damage"]
    a_packs = {_key(ws.repo, p) for p in a.packs}
    for d in damage:
        if d["object"].startswith("data/"):
            assert d["object"] in a_packs and d["reason"] == "pack is missing"
        else:
            assert d["object"].startswith("blob ") and "WAL manifest" in d["reason"], d
    assert any(a.name in d["wal_files"] for d in damage if d["object"] in a_packs)
    assert any(b.name in d["wal_files"] for d in damage if d["object"].startswith("blob "))
    # b's pack is now named by no index: listed, not damage.
    assert set(r.json()["unreferenced_packs"]) == {_key(ws.repo, p) for p in b.packs}

    # Verify and recovery agree: wal-fetch refuses exactly the WAL files verify names (real
    # segments share chunks, e.g. zero-filled tails, so c may depend on a's packs too).
    named = {w for d in damage for w in d["wal_files"]}
    assert {a.name, b.name} <= named
    for p in archive:
        f = ws.cli("wal-fetch", p.name, str(ws.root / "out"))
        assert f.code == (9 if p.name in named else 0), (p.name, named, f.err)

    text = ws.cli("verify")
    assert text.code == 6
    assert f"WAL files affected: {a.name}" in text.out and b.name in text.out


def test_bit_rot_in_wal_data_is_found_by_full_verify(ws: Workspace, archive: list[Pushed]) -> None:
    _, b, _ = archive
    pack = b.packs[0]
    data = bytearray(pack.read_bytes())
    data[100] ^= 0x40  # inside the first blob; the size is unchanged
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    # Quick verify checks sizes only: it cannot see this.
    assert ws.cli("verify").code == 0
    r = ws.cli("verify", "--full", "--json")
    assert r.code == 6, r.out + r.err
    named = [d for d in r.json()["damage"] if d["wal_files"]]
    assert named and all(b.name in d["wal_files"] for d in named)
    assert any(d["object"].startswith("blob ") for d in named)
    # Verify and recovery agree: wal-fetch refuses exactly the files verify names. (Real
    # segments share chunks, e.g. zero-filled tails, so the damaged blob may be the indexed
    # copy for another segment too.)
    damaged = {w for d in named for w in d["wal_files"]}
    for p in archive:
        r = ws.cli("wal-fetch", p.name, str(ws.root / "out"))
        assert r.code == (9 if p.name in damaged else 0), (p.name, damaged, r.err)


def test_damaged_manifest_is_reported(ws: Workspace, archive: list[Pushed]) -> None:
    a, b, c = archive
    m = ws.repo / "wal" / c.name
    m.chmod(0o600)
    m.write_bytes(m.read_bytes()[:-5])
    # Renamed onto a name not yet archived: its AD no longer matches.
    fake = "000000010000000000000077"
    (ws.repo / "wal" / a.name).rename(ws.repo / "wal" / fake)
    r = ws.cli("verify", "--json")
    assert r.code == 6, r.out + r.err
    damage = {d["object"]: d for d in r.json()["damage"]}
    assert set(damage) == {f"wal/{c.name}", f"wal/{fake}"}
    assert damage[f"wal/{c.name}"]["wal_files"] == [c.name]
    assert "authenticate" in damage[f"wal/{fake}"]["reason"]
    assert r.json()["wal_files_checked"] == 1  # only b opened

"""Write-only keys (issue 17, item 1): a host holding only `key add --write-only`'s key backs
up (incrementally, from its own cache) but reads, restores, verifies, prunes and forgets
nothing (exit 27); a full key restores every byte the write-only host stored. Real CLI,
real repository."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

WRITER = "write only passphrase for the host"


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(src: Path, n: int = 30) -> None:
    for i in range(n):
        d = src / f"d{i % 5}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_bytes(os.urandom(200) * (i + 1))
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))


@pytest.fixture
def writer(ws):
    _fill(ws.src)
    assert ws.cli("init").code == 0
    r = ws.cli("key", "add", "--write-only", "--json", env={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER})
    assert r.code == 0, r.err
    assert r.json()["kind"] == "write-only"
    return ws


def test_a_write_only_host_backs_up_and_a_full_key_restores_it(writer, tmp_path):
    ws = writer
    first = ws.cli("backup", "--json", passphrase=WRITER)
    assert first.code == 0, first.err
    (ws.src / "d1" / "new.txt").write_text("added after the first backup\n")
    second = ws.cli("backup", "--json", passphrase=WRITER)
    assert second.code == 0, second.err
    summary = second.json()["sources"][0]["summary"] if "sources" in second.json() else None
    # Incremental from the host's own cache: the unchanged files were not read again.
    text = json.dumps(second.json())
    assert '"files_unmodified": 31' in text or (summary and summary["files_unmodified"] == 31), text

    snaps = ws.cli("snapshots", "--json")  # the full key
    assert snaps.code == 0, snaps.err
    assert len(snaps.json()["snapshots"]) == 2
    target = tmp_path / "restored"
    r = ws.cli("restore", "latest", "--target", str(target))
    assert r.code == 0, r.err
    assert _digest(target / str(ws.src).lstrip("/")) == _digest(ws.src)
    v = ws.cli("verify", "--full")
    assert v.code == 0, v.err


@pytest.mark.parametrize(
    "args",
    [
        ("snapshots",),
        ("ls", "latest"),
        ("restore", "latest", "--target", "/tmp/never-written-by-a-write-only-key"),
        ("verify",),
        ("prune",),
        ("forget", "latest"),
        ("key", "list"),
        ("key", "add"),
        ("key", "escrow", "--shares", "3", "--threshold", "2", "--out", "/tmp/never-escrowed"),
    ],
)
def test_every_read_and_delete_is_refused_with_exit_27(writer, args):
    ws = writer
    assert ws.cli("backup", passphrase=WRITER).code == 0
    before = sorted(p.name for p in (ws.repo / "snapshots").iterdir())
    r = ws.cli(*args, passphrase=WRITER, env={"AXISOR_BACKUP_NEW_PASSPHRASE": "another long passphrase"})
    assert r.code == 27, (args, r.code, r.out, r.err)
    assert "write-only key" in r.err and "Traceback" not in r.err
    assert sorted(p.name for p in (ws.repo / "snapshots").iterdir()) == before
    assert not Path("/tmp/never-written-by-a-write-only-key").exists()


def test_a_lost_cache_costs_a_full_scan_and_no_new_data(writer):
    ws = writer
    assert ws.cli("backup", passphrase=WRITER).code == 0
    size = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    for cache in ws.root.rglob("writer-cache"):
        shutil.rmtree(cache)
    r = ws.cli("backup", "--json", passphrase=WRITER)
    assert r.code == 0, r.err
    after = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    assert after - size < 64 * 1024  # trees and a header; the file data was deduplicated


def test_index_files_written_before_the_key_are_resealed_for_it(ws):
    """A repository with backups before the write-only key: the host deduplicates against them."""
    _fill(ws.src)
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    size = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    r = ws.cli("key", "add", "--write-only", env={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER})
    assert r.code == 0, r.err
    assert ws.cli("backup", passphrase=WRITER).code == 0
    after = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    assert after - size < 64 * 1024
    assert ws.cli("verify", "--full").code == 0


def test_a_write_only_key_pushes_wal_and_a_full_key_fetches_it(writer, tmp_path):
    """The server's OS user in physical mode holds such a key (`database archiving --setup`)."""
    ws = writer
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    segment = pg_wal / "000000010000000000000003"
    segment.write_bytes(os.urandom(1024 * 1024) * 16)
    state = {"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "state-of-the-db-host")}
    r = ws.cli("wal-push", str(segment), passphrase=WRITER, env=state)
    assert r.code == 0, r.err
    # archive_command runs again after a crash between the store and its answer: still 0.
    again = ws.cli("wal-push", str(segment), passphrase=WRITER, env=state)
    assert again.code == 0, again.err
    # Another host's write-only key cannot compare: it says so (exit 17), never "ok".
    other = ws.cli("wal-push", str(segment), passphrase=WRITER, env={"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "x")})
    assert other.code == 17, other.err
    assert "cannot read it to compare" in other.err
    # Reading it back is the full key's.
    refused = ws.cli("wal-fetch", segment.name, str(tmp_path / "nope"), passphrase=WRITER, env=state)
    assert refused.code == 27, refused.err
    got = tmp_path / "fetched"
    r = ws.cli("wal-fetch", segment.name, str(got))
    assert r.code == 0, r.err
    assert got.read_bytes() == segment.read_bytes()


def test_index_files_a_prune_writes_stay_readable_to_the_write_only_host(writer):
    """Prune and repair write index files through the same path as backups: under the writers'
    key. Before, prune sealed them under `enc`, and the host's next backup failed (exit 9)."""
    ws = writer
    (ws.src / "gone.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    assert ws.cli("backup").code == 0  # full key, with data only this snapshot has
    (ws.src / "gone.bin").unlink()
    first = ws.cli("snapshots", "--json").json()["snapshots"][0]["id"]
    assert ws.cli("backup").code == 0
    assert ws.cli("forget", first).code == 0
    r = ws.cli("prune", "--json")
    assert r.code == 0, r.err
    assert "index_files" in r.out
    size = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    r = ws.cli("backup", passphrase=WRITER)
    assert r.code == 0, r.err
    after = sum(p.stat().st_size for p in (ws.repo / "data").rglob("*") if p.is_file())
    assert after - size < 64 * 1024  # it read the new index: nothing stored twice

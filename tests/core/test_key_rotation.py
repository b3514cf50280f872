"""Master-key rotation (issue 17, item 4): `key rotate` gives a new encryption key for what
is written from now on and retires the old one into a keyring; every snapshot stays
restorable; the other key files (a passphrase's, a write-only key) are removed and named.
Real CLI, real repository."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

OTHER = "another passphrase of the team"
WRITER = "write only passphrase for the host"


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(src: Path, tag: str) -> None:
    for i in range(20):
        d = src / f"d{i % 4}"
        d.mkdir(exist_ok=True)
        (d / f"{tag}{i}.txt").write_bytes(os.urandom(300) * (i + 1))
    (src / f"{tag}.bin").write_bytes(os.urandom(2 * 1024 * 1024))


def _backup(ws) -> dict[str, str]:
    r = ws.cli("backup")
    assert r.code == 0, r.err
    return _digest(ws.src)


def _restores(ws, tmp_path: Path, expected: dict[str, dict[str, str]]) -> None:
    snaps = ws.cli("snapshots", "--json")
    assert snaps.code == 0, snaps.err
    ids = [s["id"] for s in snaps.json()["snapshots"]]
    assert len(ids) == len(expected)
    for n, (snap_id, want) in enumerate(zip(ids, expected.values(), strict=True)):
        target = tmp_path / f"restored-{n}-{os.urandom(3).hex()}"
        r = ws.cli("restore", snap_id, "--target", str(target))
        assert r.code == 0, r.err
        assert _digest(target / str(ws.src).lstrip("/")) == want


def test_rotate_keeps_every_snapshot_and_removes_the_other_keys(ws, tmp_path):
    _fill(ws.src, "a")
    assert ws.cli("init").code == 0
    other = ws.cli("key", "add", "--json", env={"AXISOR_BACKUP_NEW_PASSPHRASE": OTHER})
    writer = ws.cli("key", "add", "--write-only", "--json", env={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER})
    assert other.code == 0 and writer.code == 0, other.err + writer.err
    expected = {"first": _backup(ws)}

    r = ws.cli("key", "rotate", "--json")
    assert r.code == 0, r.err
    out = r.json()
    assert out["complete"] is True
    removed = " ".join(out["locations"][0]["removed_keys"])
    assert other.json()["id"] in removed and writer.json()["id"] in removed
    assert "write-only" in removed
    assert len(list((ws.repo / "keyring").iterdir())) == 1
    # The removed passphrases open nothing now.
    assert ws.cli("snapshots", passphrase=OTHER).code == 4
    assert ws.cli("backup", passphrase=WRITER).code == 4

    _fill(ws.src, "b")
    expected["second"] = _backup(ws)
    _restores(ws, tmp_path, expected)
    v = ws.cli("verify", "--full")
    assert v.code == 0, v.err + v.out

    # A second rotation: the keyring carries both retired keys, the old keyring is gone.
    r2 = ws.cli("key", "rotate", "--json")
    assert r2.code == 0, r2.err
    assert len(list((ws.repo / "keyring").iterdir())) == 1
    _fill(ws.src, "c")
    expected["third"] = _backup(ws)
    _restores(ws, tmp_path, expected)
    assert ws.cli("verify", "--full").code == 0


def test_a_write_only_key_added_after_rotation_backs_up(ws, tmp_path):
    _fill(ws.src, "a")
    assert ws.cli("init").code == 0
    expected = {"first": _backup(ws)}
    assert ws.cli("key", "rotate").code == 0
    w = ws.cli("key", "add", "--write-only", env={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER})
    assert w.code == 0, w.err
    _fill(ws.src, "b")
    r = ws.cli("backup", passphrase=WRITER)
    assert r.code == 0, r.err
    expected["second"] = _digest(ws.src)
    _restores(ws, tmp_path, expected)


def _retired_left(ws) -> dict:
    v = ws.cli("verify", "--json")
    assert v.code == 0, v.err + v.out
    return v.json()["retired_key"]


def test_prune_rewrite_reseals_everything_and_destroys_the_old_key(ws, tmp_path):
    _fill(ws.src, "a")
    assert ws.cli("init").code == 0
    expected = {"first": _backup(ws)}
    # A write-only host's backup: blobs, header and manifest under a session of the old key.
    w = ws.cli("key", "add", "--write-only", env={"AXISOR_BACKUP_NEW_PASSPHRASE": WRITER})
    assert w.code == 0, w.err
    (ws.src / "a.bin").unlink()
    (ws.src / "by-writer.bin").write_bytes(os.urandom(300_000))
    r = ws.cli("backup", passphrase=WRITER)
    assert r.code == 0, r.err
    expected["second"] = _digest(ws.src)
    assert ws.cli("key", "rotate").code == 0
    _fill(ws.src, "b")
    expected["third"] = _backup(ws)
    left = _retired_left(ws)
    assert left["packs"] > 0 and left["objects"] >= 2, left

    r = ws.cli("prune", "--rewrite", "--json")
    assert r.code == 0, r.err + r.out
    rw = r.json()["locations"][0]["rewrite"]
    assert rw["packs_rewritten"] > 0 and rw["old_key_destroyed"] is True, rw
    left = _retired_left(ws)
    assert left["packs"] == 0 and left["objects"] == 0 and left["retired_keys"] == 0, left
    rings = list((ws.repo / "keyring").iterdir())
    assert len(rings) == 1
    _restores(ws, tmp_path, expected)
    assert ws.cli("verify", "--full").code == 0


def test_an_interrupted_rewrite_completes_when_run_again(ws, tmp_path):
    """The first run dies after re-sealing one pack (a failure injected in-process through
    a sitecustomize on PYTHONPATH); the second run finishes."""
    assert ws.cli("init").code == 0
    for tag in "abc":
        _fill(ws.src, tag)
        _backup(ws)
    snaps = ws.cli("snapshots", "--json").json()["snapshots"]
    assert len(snaps) == 3
    assert ws.cli("key", "rotate").code == 0
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import core.maintenance.reseal as R\n"
        "orig = R.repack\n"
        "n = [0]\n"
        "async def failing(*a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] > 1:\n"
        "        raise RuntimeError('injected failure after one pack')\n"
        "    return await orig(*a, **k)\n"
        "R.repack = failing\n"
    )
    root = Path(__file__).resolve().parents[2]
    r = ws.cli("prune", "--rewrite", env={"PYTHONPATH": f"{inject}:{root}"})
    assert r.code != 0
    assert _retired_left(ws)["retired_keys"] == 1
    r = ws.cli("prune", "--rewrite", "--json")
    assert r.code == 0, r.err + r.out
    assert r.json()["locations"][0]["rewrite"]["old_key_destroyed"] is True
    assert _retired_left(ws)["packs"] == 0
    for n, s in enumerate(snaps):
        target = tmp_path / f"r{n}"
        assert ws.cli("restore", s["id"], "--target", str(target)).code == 0
    assert ws.cli("verify", "--full").code == 0


def test_the_sealed_object_table_matches_the_domains():
    from core.drills import report, restore_test_record
    from core.repository import pins, rollback
    from core.repository.retired import SEALED_OBJECTS
    from core.sources.postgres import wal

    table = {folder: ad for folder, ad, _hex in SEALED_OBJECTS}
    assert table[wal.WAL] == wal.AD_WAL
    assert table[pins.PINS] == pins.AD_PIN
    assert table[rollback.TOMBSTONES] == rollback.AD_TOMBSTONE
    assert table[report.PREFIX] == report.AD_DRILL
    assert table[restore_test_record.PREFIX] == restore_test_record.AD_RESTORE_TEST


def test_a_rotation_stopped_before_its_config_still_opens(ws):
    """Steps 1-2 done (a key file for the passphrase wrapping a new key), step 3 not: the
    passphrase opens two key files, and the one whose key opens the config is used."""
    from conftest import PASSPHRASE

    from core import crypto
    from core.repository import keys as keyfiles

    _fill(ws.src, "a")
    assert ws.cli("init").code == 0
    _backup(ws)
    for _ in range(3):  # several, so that one is listed before the real one
        stray = keyfiles.wrap(crypto.MasterKey.generate(), PASSPHRASE)
        (ws.repo / "keys" / stray.id).write_bytes(stray.encode())
    r = ws.cli("snapshots", "--json")
    assert r.code == 0, r.err
    assert len(r.json()["snapshots"]) == 1

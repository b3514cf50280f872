"""`key rotate` with a secondary location (provider = "local"): both locations rotate,
copies go on under the new key, and every snapshot restores from either location, also
after `prune --rewrite` (issue 17.4). Real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from locations_support import tree_digest


def _restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_a_secondary_rotates_with_the_primary_and_keeps_restoring(sites, tmp_path):
    offsite = sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    first = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    before = tree_digest(sites.ws.src)

    r = sites.ok("key", "rotate", "--json").json()
    assert [loc["location"] for loc in r["locations"]] == ["local", "offsite"]
    assert all(loc["rotated"] for loc in r["locations"]) and r["complete"] is True
    for where in (offsite, sites.ws.repo):  # each sealed on its own (fresh nonces): same version, one keyring
        assert json.loads((where / "config").read_text())["version"] == 3
        assert len(list((where / "keyring").iterdir())) == 1
        assert [p.name for p in (where / "keys").iterdir()] == [r["key"]["id"]]

    (sites.ws.src / "after-rotation.txt").write_text("written under the new key\n")
    sites.ok("backup")
    after = tree_digest(sites.ws.src)
    sites.ok("copy", "--to", "offsite")
    for snap, want, name in ((first, before, "a"), ("latest", after, "b")):
        sites.ok("restore", snap, "--from", "offsite", "--target", str(tmp_path / name))
        assert tree_digest(_restored(tmp_path / name, sites.ws.src)) == want

    sites.ok("prune", "--rewrite")
    shutil.rmtree(sites.ws.repo)  # the primary is lost: the secondary alone, by passphrase
    for snap, want, name in ((first, before, "c"), ("latest", after, "d")):
        sites.ok("restore", snap, "--from", "offsite", "--target", str(tmp_path / name))
        assert tree_digest(_restored(tmp_path / name, sites.ws.src)) == want


def test_an_unreachable_secondary_is_named_and_the_primary_still_rotates(sites, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the location's folder would be")
    sites.add_local("nas", blocker / "repo")
    sites.ok("init")
    r = sites.cli("key", "rotate", "--json")
    assert r.code == 7, r.err
    out = r.json()
    assert out["complete"] is False
    nas = [loc for loc in out["locations"] if loc["location"] == "nas"][0]
    assert nas["rotated"] is False and nas["problems"]
    assert [loc for loc in out["locations"] if loc["location"] == "local"][0]["rotated"] is True
    sites.ok("snapshots")

"""docs/OPERATIONS.md, "Restore when the primary location is lost": its commands, as
written, after the primary is deleted."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from locations_support import tree_digest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Restore when the primary location is lost"


def runbook_commands() -> list[str]:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("axisor-backup ")]


def test_runbook_restores_every_byte_and_reseeds_the_primary(sites, tmp_path):
    commands = runbook_commands()
    assert len(commands) == 6 and any("--from offsite" in c for c in commands)
    sites.add_local("offsite", tmp_path / "offsite")
    sites.ok("init")
    sites.ok("backup")
    (sites.ws.src / "users" / "late.txt").write_text("the last change before the loss\n")
    last = sites.ok("backup", "--json").json()["snapshots"][0]["id"]
    expected = tree_digest(sites.ws.src)
    shutil.rmtree(sites.ws.repo)

    target = tmp_path / "restore"
    outputs = {}
    for command in commands:
        args = [str(target) if a == "/srv/restore" else a for a in shlex.split(command)[1:]]
        r = sites.cli(*args)
        assert r.code == 0, (command, r.err)
        outputs[args[0]] = r
    assert "local (primary)" in outputs["locations"].out and "down" in outputs["locations"].out
    assert "-local offsite" in outputs["snapshots"].out
    assert tree_digest(target / str(sites.ws.src).lstrip("/")) == expected
    assert "no damage found" in outputs["verify"].out

    cat = sites.ok("snapshots", "--json").json()
    assert last in [s["id"] for s in cat["snapshots"]]
    assert all(c["state"] == "complete" for s in cat["snapshots"] for c in s["locations"])
    assert len(cat["snapshots"]) == 3  # two from before the loss, one taken on the new primary

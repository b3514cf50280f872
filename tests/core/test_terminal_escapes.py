"""No command prints a raw escape sequence, whatever the snapshot holds (docs/SECURITY.md).

A snapshot whose file name holds ESC sequences and a newline, whose manifest's host, user,
tags, paths and warnings hold them too, and whose file is damaged so that verify names it
and a restore fails on it: every command's stdout and stderr, text and JSON, has no raw
ESC (or other control character but newline and tab), and no line is forged.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest

import hostile_support as H
from restore_craft import Craft, dnode, fnode

axenv = H.axenv

EVIL = b"evil\x1b[2J\x1b]0;owned\x07\nFORGED line\x9b1m"
EVIL_TEXT = "x\x1b[31m\nFORGED\r\x1b]0;t\x07"


def _clean(text: str) -> None:
    bad = [ch for ch in text if not (ch in "\n\t" or ch.isprintable())]
    assert not bad, (bad, text)
    assert not any(line.startswith("FORGED") for line in text.splitlines()), text


@pytest.fixture
def hostile(axenv):
    from core.repository.snapshot import Snapshot

    axenv.init_fast()
    c = Craft(axenv)
    try:
        lost = os.urandom(32)  # in no index: verify names the file, a restore fails on it
        sub = c.tree([c.file(b"fine.txt", b"ok\n"), fnode(EVIL, size=5, content=(lost,))])
        for name in reversed(axenv.src.parts[1:]):
            sub = c.tree([dnode(os.fsencode(name), sub)])
        c.run(c.repo.flush())
        snap = Snapshot(
            time=datetime.now(timezone.utc).isoformat(),
            source="application/user_data",
            paths=(str(axenv.src), "/p" + EVIL_TEXT),
            tree=sub.hex(),
            type="full",
            backup_set=f"c{time.time_ns()}",
            hostname="host" + EVIL_TEXT,
            username="u" + EVIL_TEXT,
            tags=("tag" + EVIL_TEXT,),
            warnings=("warn " + EVIL_TEXT,),
            metadata={"root_links": [{"path": "/l" + EVIL_TEXT, "target": "/t" + EVIL_TEXT, "followed": True}]},
        )
        sid = c.run(c.repo.save_snapshot(snap))
    finally:
        c.close()
    return axenv, sid


def test_no_command_prints_a_raw_escape(hostile, tmp_path):
    env, sid = hostile
    runs = {
        "snapshots": env.cli("snapshots"),
        "show": env.cli("show", sid),
        "ls": env.cli("ls", "-l", sid),
        "verify": env.cli("verify"),
        "verify --full": env.cli("verify", "--full"),
        "restore": env.cli("restore", sid, "--target", str(tmp_path / "t")),
        # The top-level error printer: an error quoting what the operator typed.
        "ls missing": env.cli("ls", sid, "/no" + EVIL_TEXT.replace("\x00", "")),
        "snapshots json": env.cli("snapshots", json_out=True),
        "verify json": env.cli("verify", json_out=True),
        "show json": env.cli("show", sid, json_out=True),
        "restore json": env.cli("restore", sid, "--target", str(tmp_path / "j"), json_out=True),
    }
    for what, r in runs.items():
        _clean(r.stdout)
        _clean(r.stderr)
    v = runs["verify"]
    assert v.code == 6 and "evil\\x1b[2J" in v.stdout and "\\nFORGED line" in v.stdout, v
    assert runs["verify --full"].code == 6
    r = runs["restore"]
    # The damaged file is partial (exit 23): named, escaped, in the report.
    assert r.code == 23 and "evil\\x1b[2J" in r.stdout + r.stderr, r
    s = runs["show"]
    assert s.code == 0 and "hostx\\x1b" in s.stdout and "tagx\\x1b" in s.stdout, s
    assert "\\nFORGED" in s.stdout
    assert runs["snapshots"].code == 0 and "tagx\\x1b[31m\\nFORGED" in runs["snapshots"].stdout, runs["snapshots"]
    assert runs["ls missing"].code != 0 and "\\x1b" in runs["ls missing"].stderr, runs["ls missing"]

"""pre_command / post_command around one source's scan (issue 21, part 2): run in order,
with the allow-listed environment, undone whatever happens; failures named. Real CLI."""

from __future__ import annotations

import json
import time

from conftest import Workspace


def _hooks(ws: Workspace, pre: str | None, post: str | None, timeout: int = 60) -> None:
    lines = ["[[application.hooks]]", 'source = "user_data"', f"timeout_seconds = {timeout}"]
    if pre:
        lines.append(f"pre_command = {json.dumps(pre)}")
    if post:
        lines.append(f"post_command = {json.dumps(post)}")
    text = ws.write_config().read_text()
    ws.config.write_text(text.replace("[storage]", "\n".join(lines) + "\n[storage]"))


def test_the_pre_command_runs_before_the_scan_and_the_post_command_after(ws: Workspace, tmp_path) -> None:
    (ws.src / "data.txt").write_text("live\n")
    log = tmp_path / "hooks.log"
    _hooks(
        ws,
        f"sh -c 'echo frozen > {ws.src}/frozen.marker; env > {tmp_path}/pre.env; echo pre $AXISOR_SOURCE >> {log}'",
        f"sh -c 'rm {ws.src}/frozen.marker; echo post $AXISOR_HOOK >> {log}'",
    )
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 0, r.err
    assert log.read_text() == "pre application/user_data\npost post\n"
    assert not (ws.src / "frozen.marker").exists()
    ls = ws.cli("ls", "latest", "--json")
    assert "frozen.marker" in ls.out  # the scan saw what the pre_command set up
    env = (tmp_path / "pre.env").read_text()
    assert "AXISOR_BACKUP_PASSPHRASE" not in env and "correct horse" not in env


def test_a_failing_pre_command_fails_the_source_and_still_runs_the_post_command(ws: Workspace, tmp_path) -> None:
    (ws.src / "data.txt").write_text("live\n")
    undone = tmp_path / "undone"
    _hooks(ws, "sh -c 'echo cannot freeze the volume; exit 3'", f"touch {undone}")
    assert ws.cli("init").code == 0
    r = ws.cli("backup")
    assert r.code == 11, (r.code, r.out, r.err)
    assert "pre_command" in r.err + r.out and "exit 3" in r.err + r.out and "cannot freeze the volume" in r.err + r.out
    assert undone.exists()
    assert ws.cli("snapshots", "--json").json()["snapshots"] == []


def test_a_failing_post_command_is_a_warning_and_a_hung_one_is_stopped(ws: Workspace, tmp_path) -> None:
    (ws.src / "data.txt").write_text("live\n")
    _hooks(ws, None, "sh -c 'echo thaw failed >&2; exit 1'")
    assert ws.cli("init").code == 0
    r = ws.cli("backup", "--json")
    assert r.code == 7, (r.code, r.err)
    snap = r.json()["snapshots"][0]
    assert any("post_command" in w and "thaw failed" in w for w in snap["warnings"]), snap["warnings"]

    _hooks(ws, "sleep 30", None, timeout=1)
    started = time.monotonic()
    r = ws.cli("backup")
    assert r.code == 11 and "timed out after 1 s" in r.err + r.out
    assert time.monotonic() - started < 20


def test_hooks_are_checked_when_the_config_is_read(ws: Workspace) -> None:
    text = ws.write_config().read_text()
    bad = (
        '[[application.hooks]]\nsource = "user_data"\n'
        '[[application.hooks]]\nsource = "api_keys"\npre_command = "true"\n'
        '[[application.hooks]]\nsource = "log_files"\npost_command = "sh -c \'unclosed"\n'
    )
    ws.config.write_text(text.replace("[storage]", bad + "[storage]"))
    r = ws.cli("config", "check")
    assert r.code == 2, r.out + r.err
    out = r.out + r.err
    assert "application.hooks[0]: give pre_command, post_command or both" in out
    assert "application.hooks[1].source: must be a source of [application]" in out
    assert "application.hooks[2].post_command: does not split into words" in out

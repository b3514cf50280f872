"""The README demo: without a terminal it keeps its command-line steps only; on a terminal
(tmux) it ends in the console with a backup running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from console_support import ROOT, Tmux


def test_demo_without_a_terminal_stops_after_the_cli_steps(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    p = subprocess.run(
        [sys.executable, "-m", "app.demo", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "Done. Try:" in p.stdout and "opening the console" not in p.stdout
    # The history of its runs is the demo's own, not in the user's state folder.
    assert (tmp_path / "demo" / "state").is_dir()
    # A few days of history: the first backup set is dated three days back, the second one day.
    import re
    from datetime import date, timedelta

    days = {date.fromisoformat(d) for d in re.findall(r"^\w{8}  (\d{4}-\d{2}-\d{2}) ", p.stdout, re.M)}
    today = date.today()
    assert {today - timedelta(days=3), today - timedelta(days=1)} <= days, days


def test_demo_on_a_terminal_opens_the_console_with_a_running_backup(tmp_path: Path):
    sock = tmp_path / "tmux"
    sock.mkdir()
    tmux = Tmux(sock)
    try:
        tmux.run(
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            str(ROOT),
            sys.executable,
            "-m",
            "app.demo",
            "--watch-mib",
            "1",
            str(tmp_path / "demo"),
        )
        # Keep the pane (and its last words) after the demo exits, to read them.
        tmux.run("set-option", "-t", "console", "remain-on-exit", "on")
        screen = tmux.wait_for("Axisor Backup", timeout=240)
        screen = tmux.wait_for("app/user_data", timeout=60)
        assert "daemon engine" in screen  # the demo started the daemon: its schedule runs
        # Backed up, verified, a daemon for the schedule: nothing to warn about.
        tmux.wait_for("Health: OK", timeout=30)
        tmux.keys("j")
        # The Jobs screen itself, not the dashboard still drawn (at 80 columns its table hides
        # the origin column: the job database below says who submitted the demo's backup).
        screen = tmux.wait_for("Cancel job", timeout=30)
        assert "backup" in screen
        tmux.keys("C-q")
        deadline = time.monotonic() + 120
        while "The demo is in" not in (shown := tmux.screen()) and time.monotonic() < deadline:
            if "Leave the console?" in shown:  # the demo's backup still runs: leave, it goes on
                tmux.keys("C-q")
            time.sleep(0.2)
        assert "The demo is in" in tmux.screen()
    finally:
        subprocess.run([*tmux.base, "kill-server"], env=tmux.env, capture_output=True, timeout=30)
    config = (tmp_path / "demo" / "config.toml").read_text()
    assert "[schedule]" in config and "enabled = true" in config
    # The demo's watchable backup was submitted from the console, to the daemon.
    import sqlite3

    db = sqlite3.connect(tmp_path / "demo" / "state" / "jobs.sqlite3")
    try:
        origins = {kind_origin for kind_origin in db.execute("SELECT kind, origin FROM jobs")}
    finally:
        db.close()
    assert ("backup", "console") in origins, origins

"""End to end in a real terminal: the installed program under tmux, driven by keys through a
restore of real files from a real repository; the restored bytes are checked."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from console_support import PASSPHRASE, ROOT, Tmux


@pytest.fixture
def tmux(tmp_path: Path):
    sock = tmp_path / "tmux"
    sock.mkdir()
    t = Tmux(sock)
    yield t
    subprocess.run([*t.base, "kill-server"], env=t.env, capture_output=True, timeout=30)


def test_restore_a_source_through_the_wizard_in_tmux(platform, tmux, tmp_path: Path):
    target = tmp_path / "restored"
    # The passphrase reaches the program by environment (tmux passes its own on), never argv.
    program = [sys.executable, "-m", "app.cli", "--config", str(platform.config_path), "console", "--no-daemon"]
    tmux.env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    status = tmp_path / "exit-status"
    record = "import subprocess, sys; code = subprocess.call(sys.argv[2:]); open(sys.argv[1], 'w').write(str(code))"
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
        "-c",
        record,
        str(status),
        *program,
    )
    screen = tmux.wait_for("app/user_data")
    assert "embedded engine" in screen
    tmux.keys("r")
    tmux.wait_for("What do you want to restore?")
    tmux.keys("Down", "Enter")  # "One source, whole"
    tmux.wait_for("Which source?")
    tmux.keys("Enter")  # application/user_data comes first
    tmux.wait_for("Which point in time?")
    tmux.keys("Enter")  # the newest snapshot
    tmux.wait_for("Another folder")
    tmux.keys("Enter")  # the cursor starts on the safe choice
    tmux.wait_for("folder, e.g.")  # the folder field is open and focused
    tmux.type(str(target))
    tmux.keys("Enter")
    tmux.wait_for("Enter starts the restore")
    tmux.keys("Enter")
    screen = tmux.wait_for("RESTORE VALIDATED", timeout=120)
    tmux.keys("C-q")
    deadline = time.monotonic() + 30
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status.read_text() == "0"

    restored = target / str(platform.users).lstrip("/")
    assert (restored / "alice" / "notes.txt").read_bytes() == (platform.users / "alice" / "notes.txt").read_bytes()
    assert (restored / "carol" / "profile.json").read_text() == '{"name": "carol"}'
    assert not (restored / "bob" / "avatar.bin").exists()  # removed before the newest backup


def test_sixteen_colours_only_basic_colours_and_states_in_words(platform, tmux):
    """At 16 colours (TEXTUAL_COLOR_SYSTEM=standard, as on an old terminal over SSH) the
    console draws with the 16 basic colours only, and every state it shows is a word."""
    import re

    program = [sys.executable, "-m", "app.cli", "--config", str(platform.config_path), "console", "--no-daemon"]
    tmux.env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    tmux.env["TEXTUAL_COLOR_SYSTEM"] = "standard"
    tmux.run("new-session", "-d", "-s", "console", "-x", "80", "-y", "24", "-c", str(ROOT), *program)
    screen = tmux.wait_for("app/user_data")
    styled = tmux.run("capture-pane", "-p", "-e", "-t", "console")
    params = [p for seq in re.findall(r"\x1b\[([0-9;:]*)m", styled) for p in [seq]]
    assert params, "no styling at all"
    assert not any(re.search(r"(^|;)(38|48)[;:](5|2)", p) for p in params), (
        "256-colour or true-colour codes at 16 colours"
    )
    # States are spelled out, not only coloured.
    assert re.search(r"✔|✘|NO BACKUP|LATE|never|ok", screen)
    tmux.keys("C-q")

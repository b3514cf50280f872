"""Support for tests/console: a real platform for the console: files, a config, a repository with two backup sets,
and a console App wired to a real embedded engine whose state lives in the test folder."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core.config import Config, load_config
from core.service import BackupService

PASSPHRASE = "console test passphrase"
FROZEN = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
STORED_REPO = Path(__file__).resolve().parent / "console" / "data" / "repo"


@dataclass
class Platform:
    root: Path
    users: Path
    etc: Path
    repo: Path
    state: Path
    config_path: Path

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    def passphrase(self, _confirm: bool = False) -> str:
        return PASSPHRASE

    def app(self, **kwargs):
        from app.console import ConsoleApp

        kwargs.setdefault("prefer_daemon", False)
        return ConsoleApp(self.config, self.passphrase, config_path=self.config_path, **kwargs)


def write_platform(root: Path, *, schedule: bool = True) -> Platform:
    users, etc = root / "platform" / "users", root / "platform" / "etc"
    for d in (users / "alice", users / "bob", etc):
        d.mkdir(parents=True, exist_ok=True)
    (users / "alice" / "profile.json").write_text(json.dumps({"name": "alice", "plan": "pro"}))
    (users / "alice" / "notes.txt").write_bytes(b"alice's notes\n" * 300)
    (users / "bob" / "profile.json").write_text(json.dumps({"name": "bob", "plan": "free"}))
    (users / "bob" / "avatar.bin").write_bytes(os.urandom(50_000))
    (etc / "system.toml").write_text("[features]\nsimulations = true\n")
    state = root / "state"
    config = root / "config.toml"
    config.write_text(f"""[application]
user_data = {json.dumps([str(users)])}

[configuration]
system_settings = {json.dumps([str(etc)])}

[storage]
local_path = "{root / "repo"}"

[schedule]
enabled = {"true" if schedule else "false"}
cron_expression = "0 2 * * *"
timezone = "UTC"

[engine]
state_dir = "{state}"
""")
    return Platform(root, users, etc, root / "repo", state, config)


async def _backups(p: Platform) -> None:
    # Backups are jobs, as `axisor-backup backup` makes them: the job history is what
    # `status` and the dashboard's health read.
    from core.jobs.api import JobState, connect_engine

    svc = BackupService(p.config, p.passphrase)
    try:
        await svc.init()
    finally:
        await svc.close()
    engine = await connect_engine(p.config, p.passphrase, prefer_daemon=False)
    try:
        job = await engine.wait((await engine.submit("backup", {"type": "full"})).id)
        assert job.state == JobState.COMPLETED, job.error
        (p.users / "carol").mkdir()
        (p.users / "carol" / "profile.json").write_text('{"name": "carol"}')
        (p.users / "alice" / "notes.txt").write_bytes(b"alice's notes, edited\n" * 300)
        (p.users / "bob" / "avatar.bin").unlink()
        job = await engine.wait((await engine.submit("backup", {"type": "incremental", "tags": ["after-edit"]})).id)
        assert job.state == JobState.COMPLETED, job.error
    finally:
        await engine.close()


def build_platform(root: Path, *, schedule: bool = True) -> Platform:
    p = write_platform(root, schedule=schedule)
    asyncio.run(_backups(p))
    return p


async def settle(pilot, app) -> None:
    """Let workers and the messages they post finish (no sleeping on a clock). The event
    pump never finishes by design, so it is not waited for."""
    from textual.worker import WorkerCancelled, WorkerFailed

    for _ in range(4):
        await pilot.pause()
        for worker in [w for w in app.workers if w.group != "events"]:
            try:
                await worker.wait()
            except (WorkerCancelled, WorkerFailed):
                pass  # superseded by a newer exclusive worker, or reported by the screen
    await pilot.pause()


@asynccontextmanager
async def console(app, size: tuple[int, int] = (80, 24)):
    """Run ``app`` headless; afterwards close its engine as the real program does."""
    try:
        async with app.run_test(size=size) as pilot:
            await settle(pilot, app)
            yield pilot
    finally:
        await app.shutdown()


ROOT = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")


class Tmux:
    def __init__(self, tmp: Path) -> None:
        if TMUX is None:
            raise RuntimeError("tmux is missing: scripts/bootstrap installs it (apt-get install tmux)")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AXISOR_BACKUP", "TMUX"))},
            "TMUX_TMPDIR": str(tmp),
            "TERM": "xterm-256color",
        }
        self.base = [TMUX, "-L", "axisor-e2e"]

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, check=True, timeout=30
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def wait_for(self, marker: str, timeout: float = 60) -> str:
        # Polling the pane for a marker is the only way to know a terminal program is ready.
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if marker in text:
                return text
            time.sleep(0.1)
        raise AssertionError(f"{marker!r} never appeared; the screen was:\n{text}")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "console", *keys)

    def type(self, text: str) -> None:
        self.run("send-keys", "-t", "console", "-l", text)


# -- restore wizard steps --------------------------------------------------------------


async def choose(pilot, app, option_id: str) -> None:
    from textual.widgets import OptionList

    ol = app.screen.query_one(f"#{app.screen.step}-list", OptionList)
    ol.highlighted = next(i for i in range(ol.option_count) if ol.get_option_at_index(i).id == option_id)
    await pilot.press("enter")
    await settle(pilot, app)


async def pick_row(pilot, app, table_id: str, key: str) -> None:
    from textual.widgets import DataTable

    t = app.screen.query_one(table_id, DataTable)
    t.move_cursor(row=t.get_row_index(key))
    await settle(pilot, app)


async def wait_result(pilot, app, wiz) -> None:
    for _ in range(200):
        await settle(pilot, app)
        if wiz.step == "result":
            return
    raise AssertionError(f"wizard stuck at {wiz.step}")


# -- a console on the stored repository ------------------------------------------------


def stored_app(tmp_path: Path, *, read_only: bool = False):
    """A console on the stored repository of tests/console/data with the clock frozen two and a
    quarter hours after its backups: what the snapshot and layout tests draw."""
    from app.console import ConsoleApp

    shutil.copytree(STORED_REPO, tmp_path / "repo")
    (tmp_path / "src").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"""[application]
user_data = ["{tmp_path / "src"}"]
[configuration]
system_settings = ["{tmp_path / "src"}"]
[storage]
local_path = "{tmp_path / "repo"}"
[schedule]
enabled = true
cron_expression = "0 2 * * *"
[engine]
state_dir = "{tmp_path / "state"}"
""")
    cfg = load_config(config)
    asyncio.run(_history(cfg))
    return ConsoleApp(
        cfg, lambda _c: PASSPHRASE, config_path=config, read_only=read_only, prefer_daemon=False, now=lambda: FROZEN
    )


async def _history(cfg) -> None:
    """The job record of the backup that made the stored snapshots: the health the dashboard
    shows (as `status`) comes from the job history."""
    from core.jobs.api import JobState
    from core.jobs.record import Outcome, record_run

    made = datetime(2026, 11, 26, 9, 45, tzinfo=timezone.utc)
    snaps = [
        {"source": s, "id": "0" * 64, "time": made.isoformat()}
        for s in ("application/user_data", "configuration/system_settings")
    ]
    await record_run(
        cfg,
        "backup",
        {"type": "full"},
        made,
        Outcome(JobState.COMPLETED, {"snapshots": snaps, "exit_code": 0}),
        finished=made,
    )


def console_screens() -> list[type]:
    """Every ConsoleScreen class of screens/."""
    import importlib
    import inspect
    import pkgutil

    import screens
    from screens.base import ConsoleScreen

    found = []
    for mod in pkgutil.iter_modules(screens.__path__):
        module = importlib.import_module(f"screens.{mod.name}")
        found += [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, ConsoleScreen) and c is not ConsoleScreen and c.__module__ == module.__name__
        ]
    return found

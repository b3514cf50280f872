"""A scheduler on a real engine, a real repository and a real state database, with a clock
the test moves by hand. Jobs the scheduler submits really run (backups read real files);
only time is controlled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import Config, load_config
from core.jobs.engine import Engine
from core.schedule.runner import Scheduler, service_catalog
from core.schedule.state import ScheduleStore, store_path
from core.service import BackupService

PASSPHRASE = "correct horse battery staple"


def passphrase(confirm: bool) -> str:
    return PASSPHRASE


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.astimezone(UTC)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Rig:
    root: Path
    config: Config
    engine: Engine
    clock: Clock
    stores: list[ScheduleStore] = field(default_factory=list)

    async def scheduler(self) -> Scheduler:
        """A new scheduler on the same state database, as after a daemon restart."""
        store = await ScheduleStore.open(store_path(self.config))
        self.stores.append(store)
        return Scheduler(
            self.config, self.engine, store, clock=self.clock, catalog=service_catalog(lambda: self.config, passphrase)
        )

    async def restart_engine(self) -> None:
        """A new engine on the same state directory, as after a daemon restart."""
        self.engine = Engine(self.config, passphrase, directory=self.root / "state", workers=2)
        await self.engine.start()

    async def wait_all(self) -> None:
        for job in await self.engine.list(limit=1000):
            await self.engine.wait(job.id)

    async def snapshots(self) -> list:
        svc = BackupService(self.config, passphrase)
        try:
            snaps, _ = await svc.snapshots()
            return snaps
        finally:
            await svc.close()


def write_config(root: Path, schedule: str) -> Config:
    for name in ("db_dump", "logs", "data"):
        (root / "src" / name).mkdir(parents=True, exist_ok=True)
        (root / "src" / name / f"{name}.txt").write_text(f"{name} contents\n" * 50)
    text = "\n".join(
        [
            "[application]",
            f"user_data = {json.dumps([str(root / 'src' / 'data')])}",
            f"log_files = {json.dumps([str(root / 'src' / 'logs')])}",
            f"simulation_data = {json.dumps([str(root / 'src' / 'db_dump')])}",
            "[storage]",
            f'local_path = "{root / "repo"}"',
            "[engine]",
            f'state_dir = "{root / "state"}"',
            schedule.replace("{nas}", str(root / "nas")),
        ]
    )
    (root / "config.toml").write_text(text + "\n")
    return load_config(root / "config.toml")


@pytest.fixture
async def make_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator:
    monkeypatch.delenv("AXISOR_BACKUP_STATE_DIR", raising=False)
    rigs: list[Rig] = []

    async def make(schedule: str, *, start: datetime, init: bool = True) -> Rig:
        config = write_config(tmp_path, schedule)
        if init:
            svc = BackupService(config, passphrase)
            try:
                await svc.init()
            finally:
                await svc.close()
        engine = Engine(config, passphrase, directory=tmp_path / "state", workers=2)
        await engine.start()
        rig = Rig(tmp_path, config, engine, Clock(start.astimezone(UTC)))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if rig.engine.store is not None:
            await rig.engine.shutdown(grace=60, reason="test finished")
        for store in rig.stores:
            await store.close()

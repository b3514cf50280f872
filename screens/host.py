"""What a screen may ask of the console that hosts it.

Screens sit below the app: they know this protocol, never ``app.console`` itself (the
import-linter contracts in pyproject.toml forbid it). ``app.console.ConsoleApp`` is the one
implementation; a test may host screens in any App that has these members.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.config import Config
    from core.jobs.api import EngineClient, Job
    from core.service import BackupService


class ConsoleHost(Protocol):
    config: Config
    config_path: Path | None
    read_only: bool
    engine: EngineClient | None
    service: BackupService
    now: Callable[[], datetime]
    jobs: dict[str, Job]
    submitted: list[tuple[str, dict[str, Any]]]

    async def submit(self, kind: str, params: dict[str, Any]) -> Job | None: ...

    def running_jobs(self) -> list[Job]: ...

    def back(self) -> None: ...

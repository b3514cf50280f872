"""Where this host keeps its state: the job database, the daemon's socket, the location
monitor's samples, the WAL-push markers and the cached key.

The one rule, resolved once by whoever builds the engine or the service (the CLI, the
console, the daemon) and passed down: layers below the engine receive the folder, they
never look it up themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config

ENV_STATE_DIR = "AXISOR_BACKUP_STATE_DIR"


def resolve_state_dir(config: Config | None = None) -> Path:
    """$AXISOR_BACKUP_STATE_DIR, else ``[engine] state_dir``, else the platform's user state dir."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    if config is not None and config.engine.state_dir is not None:
        return config.engine.state_dir
    from platformdirs import user_state_dir

    return Path(user_state_dir("axisor-backup"))


__all__ = ["ENV_STATE_DIR", "resolve_state_dir"]

"""Finding and reading config.toml: the file's own problems (missing, not TOML) become
ConfigErrors like any other; what is in it is validate.py's business."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from core.config.model import ENV_CONFIG, Config, ConfigError, ConfigProblem
from core.config.validate import parse_config


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path).expanduser().absolute()
    problem: str | None = None
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        problem = f"file not found; copy config.toml.example there, or point {ENV_CONFIG} at your config"
    except IsADirectoryError:
        problem = "is a directory, not a config file"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)" and does not quote values.
        problem = f"invalid TOML: {exc}"
    if problem is not None:
        raise ConfigError([ConfigProblem("", problem)], path)
    return parse_config(data, base_dir=path.parent, path=path)


def default_config_path() -> Path:
    """$AXISOR_BACKUP_CONFIG, else ./config.toml if present, else the per-user config dir."""
    override = os.environ.get(ENV_CONFIG)
    if override:
        return Path(override).expanduser()
    local = Path("config.toml")
    if local.is_file():
        return local.absolute()
    from platformdirs import user_config_dir

    return Path(user_config_dir("axisor-backup")) / "config.toml"

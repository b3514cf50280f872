"""Finding and reading config.toml: the file's own problems (missing, not TOML) become
ConfigErrors like any other; what is in it is validate.py's business."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path

from core.config.model import ENV_CONFIG, Config, ConfigError, ConfigProblem
from core.config.validate import deprecations, insecure_endpoint, parse_config


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


def config_digest(path: Path, config: Config) -> str | None:
    """SHA-256 of the config file's bytes when they are exactly what ``config`` was validated
    from (read and validated again here, and equal), else None (edited since, unreadable).
    A daemon publishes it: a client holding the same bytes at the same path has nothing left
    to validate (app/backup_quick.py)."""
    path = Path(path).expanduser().absolute()
    try:
        data = path.read_bytes()
        again = parse_config(tomllib.loads(data.decode("utf-8")), base_dir=path.parent, path=path)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        return None
    return hashlib.sha256(data).hexdigest() if again == config else None


def config_notes(config: Config, shown_path: str) -> list[str]:
    """The warnings every command prints about its config (stderr, never --json's stdout):
    deprecated keys, then ``insecure_notes``."""
    return [f"warning: {shown_path}: {warning}" for warning in deprecations(config)] + insecure_notes(config)


def insecure_notes(config: Config) -> list[str]:
    """Locations allowed to send data unencrypted: allowed, but never quietly."""
    return [
        f"warning: location {loc.name} sends data and credentials unencrypted to {loc.endpoint} (allow_insecure = true)"
        for loc in config.storage.remote_storage
        if loc.allow_insecure and insecure_endpoint(loc.provider, loc.endpoint or "")
    ]


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

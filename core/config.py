"""config.toml -> frozen dataclasses, validated in one pass.

Every problem in a file is collected before anything is raised, so an operator fixes a
config in one edit instead of one error per run. Each problem names its dotted key path
(``storage.remote_storage[1].provider``) and never echoes a value that might be a secret.

Validation is table-driven: each section is a ``_Section`` mapping TOML keys to checks.
A check turns a raw TOML value into the typed value or raises ``_Invalid`` with a message;
the dataclasses own the defaults, so a key that is absent simply is not passed.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, available_timezones

__all__ = [
    "ApplicationConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ConfigurationConfig",
    "DatabaseConfig",
    "PassphraseError",
    "RemoteStorageConfig",
    "ScheduleConfig",
    "SourceSpec",
    "StorageConfig",
    "default_config_path",
    "load_config",
    "parse_config",
    "resolve_passphrase",
]

ENV_CONFIG = "AXISOR_BACKUP_CONFIG"
ENV_PASSPHRASE = "AXISOR_BACKUP_PASSPHRASE"
PROVIDERS = ("aws-s3", "gcp-storage", "azure-blob", "ftp", "sftp")

# Order matters: it is the order sources() reports, and so the order a backup set is taken.
APPLICATION_SOURCES = ("user_data", "automation_configs", "simulation_data", "log_files")
CONFIGURATION_SOURCES = ("environment_vars", "ssl_certificates", "api_keys", "system_settings")

# A command that never returns would hang a headless run forever; a minute is long enough
# for a hardware token touch or a password manager unlock.
PASSPHRASE_COMMAND_TIMEOUT = 60.0


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """One or more problems in a configuration; ``str()`` lists them one per line."""

    def __init__(self, problems: Any, path: str | Path | None = None) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.path: Path | None = Path(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.path}: " if self.path is not None else ""
        return "\n".join(f"{prefix}{problem}" for problem in self.problems)


class PassphraseError(Exception):
    """No usable passphrase; the message says which source failed and how to fix it."""


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    category: str
    paths: tuple[Path, ...]
    exclude: tuple[str, ...]
    retention_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationConfig:
    user_data: tuple[Path, ...] = ()
    automation_configs: tuple[Path, ...] = ()
    simulation_data: tuple[Path, ...] = ()
    log_files: tuple[Path, ...] = ()
    retention_days: int = 30
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationConfig:
    environment_vars: tuple[Path, ...] = ()
    ssl_certificates: tuple[Path, ...] = ()
    api_keys: tuple[Path, ...] = ()
    system_settings: tuple[Path, ...] = ()
    retention_days: int = 90
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    enabled: bool = False
    url: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password_file: Path | None = None
    passfile: Path | None = None
    mode: str = "logical"
    frequency: str = "daily"
    retention_days: int = 30
    compression: bool = True
    encryption: bool = True
    incremental: bool = False
    pg_bin_dir: Path | None = None
    application_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStorageConfig:
    provider: str
    name: str
    bucket_name: str | None = None
    endpoint: str | None = None
    region: str | None = None
    path_prefix: str = ""
    credentials_file: Path | None = None
    ca_bundle: Path | None = None
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None
    username: str | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    local_path: Path
    compression_level: int = 3
    compression: bool = True
    encryption: bool = True
    passphrase_file: Path | None = None
    passphrase_command: tuple[str, ...] | None = None
    pack_size_mib: int = 16
    remote_storage: tuple[RemoteStorageConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    enabled: bool = False
    cron_expression: str = "0 2 * * *"
    timezone: str = "UTC"
    parallel_backups: bool = False
    max_concurrent: int = 2
    full_every_days: int = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    application: ApplicationConfig = field(default_factory=ApplicationConfig)
    configuration: ConfigurationConfig = field(default_factory=ConfigurationConfig)
    storage: StorageConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    path: Path | None = None

    def sources(self) -> tuple[SourceSpec, ...]:
        """The enabled file sources, in the fixed order a backup set takes them."""
        found: list[SourceSpec] = []
        groups: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
            ("application", self.application, APPLICATION_SOURCES),
            ("configuration", self.configuration, CONFIGURATION_SOURCES),
        )
        for category, section, names in groups:
            for name in names:
                paths = getattr(section, name)
                if paths:
                    found.append(
                        SourceSpec(
                            name=f"{category}/{name}",
                            category=category,
                            paths=paths,
                            exclude=section.exclude,
                            retention_days=section.retention_days,
                        )
                    )
        return tuple(found)


# --------------------------------------------------------------------------- validation kit


class _Invalid(Exception):
    """A value failed its check; the message reads after '<key path>: '."""


class _Reported(Exception):
    """The problems were already recorded against deeper key paths."""


@dataclass(slots=True)
class _Ctx:
    base_dir: Path
    problems: list[ConfigProblem] = field(default_factory=list)

    def add(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(key, message))


Check = Callable[[Any, str, _Ctx], Any]
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class _Field:
    check: Check
    required: bool = False
    # Checked in place of a missing key; lets a missing section still report its own
    # required keys ("storage.local_path: required" rather than "storage: required").
    absent: Any = _ABSENT


@dataclass(frozen=True, slots=True)
class _Section:
    build: Callable[..., Any]
    fields: Mapping[str, _Field]
    # Keys people plausibly write (usually secrets) that get a specific refusal instead
    # of "unknown key".
    refused: Mapping[str, str] = field(default_factory=dict)
    # Cross-field rules, run on the values that passed their own checks.
    verify: Callable[[dict[str, Any], Mapping[str, Any], str, _Ctx], None] | None = None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(value: object) -> str:
    # Names as TOML spells them; datetime before date because it is a subclass.
    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        (datetime, "datetime"),
        (date, "date"),
        (time, "time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _hint(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _build(
    section: _Section, table: Mapping[str, Any], prefix: str, ctx: _Ctx, **extra: Any
) -> Any:
    before = len(ctx.problems)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        at = _join(prefix, key)
        spec = section.fields.get(key)
        if spec is None:
            if key in section.refused:
                ctx.add(at, section.refused[key])
            else:
                kind = "unknown section" if not prefix and isinstance(raw, dict) else "unknown key"
                hint = _hint(key, section.fields)
                if not hint:
                    hint = f"; expected one of: {', '.join(section.fields)}"
                ctx.add(at, kind + hint)
            continue
        _check_into(values, key, spec, raw, at, ctx)
    for key, spec in section.fields.items():
        if key in table:
            continue
        if spec.required:
            ctx.add(_join(prefix, key), "required")
        elif spec.absent is not _ABSENT:
            _check_into(values, key, spec, spec.absent, _join(prefix, key), ctx)
    if section.verify is not None:
        section.verify(values, table, prefix, ctx)
    if len(ctx.problems) > before:
        raise _Reported
    return section.build(**values, **extra)


def _check_into(
    values: dict[str, Any], key: str, spec: _Field, raw: Any, at: str, ctx: _Ctx
) -> None:
    try:
        values[key] = spec.check(raw, at, ctx)
    except _Invalid as exc:
        ctx.add(at, str(exc))
    except _Reported:
        pass


# --------------------------------------------------------------------------- checks


def _boolean(value: Any, at: str, ctx: _Ctx) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid(f"must be true or false (got {_type_name(value)})")


def _integer(lo: int, hi: int | None = None) -> Check:
    wanted = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"

    def check(value: Any, at: str, ctx: _Ctx) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be {wanted} (got {_type_name(value)})")
        if value < lo or (hi is not None and value > hi):
            raise _Invalid(f"must be {wanted} (got {value})")
        return value

    return check


def _string(value: Any, at: str, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string (got {_type_name(value)})")
    if not value:
        raise _Invalid("must not be empty")
    return value


def _any_string(value: Any, at: str, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string (got {_type_name(value)})")
    return value


def _matching(pattern: str, rule: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: Any, at: str, ctx: _Ctx) -> str:
        text = _string(value, at, ctx)
        if not compiled.fullmatch(text):
            raise _Invalid(f"{rule} (got {text!r})")
        return text

    return check


def _choice(*options: str) -> Check:
    listed = ", ".join(f"'{o}'" for o in options)

    def check(value: Any, at: str, ctx: _Ctx) -> str:
        text = _string(value, at, ctx)
        if text not in options:
            raise _Invalid(f"must be one of {listed} (got {text!r}){_hint(text, options)}")
        return text

    return check


def _resolve(text: str, ctx: _Ctx) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else ctx.base_dir / path


def _path(value: Any, at: str, ctx: _Ctx) -> Path:
    if not isinstance(value, str):
        raise _Invalid(f"must be a path string (got {_type_name(value)})")
    if not value:
        raise _Invalid("must not be empty")
    return _resolve(value, ctx)


def _list_of(item: Check, what: str, example: str, *, false_disables: bool = False) -> Check:
    def check(value: Any, at: str, ctx: _Ctx) -> tuple[Any, ...]:
        if false_disables and value is False:
            return ()
        if value is True and false_disables:
            raise _Invalid(f"give a list of {what}, e.g. {example}, or false to disable")
        if not isinstance(value, list):
            off = " or false" if false_disables else ""
            raise _Invalid(
                f"must be a list of {what}{off}, e.g. {example} (got {_type_name(value)})"
            )
        out, bad = [], False
        for index, entry in enumerate(value):
            try:
                out.append(item(entry, f"{at}[{index}]", ctx))
            except _Invalid as exc:
                ctx.add(f"{at}[{index}]", str(exc))
                bad = True
        if bad:
            raise _Reported
        return tuple(out)

    return check


def _argv(value: Any, at: str, ctx: _Ctx) -> tuple[str, ...]:
    # A string would need shell parsing, and shell=False is the point: the program and
    # its arguments are given exactly, nothing is interpolated.
    if isinstance(value, str):
        raise _Invalid(
            "must be a list of strings (program, then arguments), "
            'e.g. ["pass", "show", "axisor/backup"] (got string)'
        )
    argv = _list_of(_string, "strings", '["pass", "show", "axisor/backup"]')(value, at, ctx)
    if not argv:
        raise _Invalid('must name a program, e.g. ["pass", "show", "axisor/backup"]')
    program = argv[0]
    # "./get-passphrase" is relative to the config file like every other path, not to
    # whatever directory the program happens to be started from.
    if os.sep in program and not Path(program).expanduser().is_absolute():
        program = str(_resolve(program, ctx))
    return (program, *argv[1:])


def _must_stay_on(value: Any, at: str, ctx: _Ctx) -> bool:
    if _boolean(value, at, ctx) is False:
        raise _Invalid(
            "encryption cannot be disabled: every repository is encrypted "
            "(remove this key or set it to true)"
        )
    return True


def _timezone(value: Any, at: str, ctx: _Ctx) -> str:
    name = _string(value, at, ctx)
    try:
        ZoneInfo(name)
        return name
    # ZoneInfoNotFoundError is a KeyError; malformed keys ("../x") raise ValueError, and a
    # directory of the tz database ("Europe") can surface as an OSError.
    except (KeyError, ValueError, OSError):
        raise _Invalid(f"unknown time zone {name!r}{_hint(name, available_timezones())}") from None


_CRON_NAMES = frozenset(
    [
        "MON",
        "TUE",
        "WED",
        "THU",
        "FRI",
        "SAT",
        "SUN",
        "JAN",
        "FEB",
        "MAR",
        "APR",
        "MAY",
        "JUN",
        "JUL",
        "AUG",
        "SEP",
        "OCT",
        "NOV",
        "DEC",
    ]
)
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _cron(value: Any, at: str, ctx: _Ctx) -> str:
    # Only the shape is checked here; ranges and semantics belong to the scheduler's parser.
    text = _string(value, at, ctx)
    parts = text.split()
    if len(parts) != len(_CRON_FIELDS):
        raise _Invalid(
            f'must have 5 fields ({" ".join(_CRON_FIELDS)}), e.g. "0 2 * * *" (got {len(parts)})'
        )
    for name, part in zip(_CRON_FIELDS, parts):
        words = re.findall(r"[A-Za-z]+", part)
        shape_ok = re.fullmatch(r"[0-9A-Za-z*/,\-]+", part) is not None
        if not shape_ok or any(word.upper() not in _CRON_NAMES for word in words):
            raise _Invalid(
                f"{name} field {part!r} may only use digits, * / , - and names like MON or JAN"
            )
    return text


_NO_DB_PASSWORD = "put the password in password_file or PGPASSWORD, never in config.toml"
_NO_REMOTE_CREDENTIALS = (
    "credentials go in credentials_file or the provider's standard environment, never config.toml"
)


def _url_has_password(text: str) -> bool:
    parts = urlsplit(text)
    if parts.password:
        return True
    return any(key.lower() == "password" for key in parse_qs(parts.query))


def _pg_url(value: Any, at: str, ctx: _Ctx) -> str:
    # Messages here never include the URL: it is exactly where a password would be.
    text = _string(value, at, ctx)
    try:
        parts = urlsplit(text)
        has_password = _url_has_password(text)
    except ValueError:
        raise _Invalid("is not a valid URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise _Invalid("must be a libpq URL starting with postgresql://")
    if has_password:
        raise _Invalid(f"contains a password; {_NO_DB_PASSWORD}")
    return text


def _endpoint(value: Any, at: str, ctx: _Ctx) -> str:
    text = _string(value, at, ctx)
    if "://" in text:
        try:
            has_password = _url_has_password(text)
        except ValueError:
            raise _Invalid("is not a valid URL") from None
        if has_password:
            raise _Invalid(f"contains a password; {_NO_REMOTE_CREDENTIALS}")
    return text


# --------------------------------------------------------------------------- sections

_PATHS = _list_of(_path, "paths", '["/srv/axisor/data"]', false_disables=True)
_GLOBS = _list_of(_string, "glob patterns", '["*.tmp", "cache/"]')


def _category(build: Callable[..., Any], names: tuple[str, ...]) -> _Section:
    fields = {name: _Field(_PATHS) for name in names}
    fields["retention_days"] = _Field(_integer(1))
    fields["exclude"] = _Field(_GLOBS)
    return _Section(build, fields)


_APPLICATION = _category(ApplicationConfig, APPLICATION_SOURCES)
_CONFIGURATION = _category(ConfigurationConfig, CONFIGURATION_SOURCES)

_DATABASE = _Section(
    DatabaseConfig,
    {
        "enabled": _Field(_boolean),
        "url": _Field(_pg_url),
        "host": _Field(_string),
        "port": _Field(_integer(1, 65535)),
        "dbname": _Field(_string),
        "user": _Field(_string),
        "password_file": _Field(_path),
        "passfile": _Field(_path),
        "mode": _Field(_choice("logical", "physical")),
        "frequency": _Field(_choice("hourly", "daily", "weekly")),
        "retention_days": _Field(_integer(1)),
        "compression": _Field(_boolean),
        "encryption": _Field(_boolean),
        "incremental": _Field(_boolean),
        "pg_bin_dir": _Field(_path),
        "application_version": _Field(_string),
    },
    refused={"password": _NO_DB_PASSWORD},
)

# Which location field each provider cannot work without.
_PROVIDER_NEEDS = {
    "aws-s3": "bucket_name",
    "gcp-storage": "bucket_name",
    "azure-blob": "bucket_name",
    "ftp": "endpoint",
    "sftp": "endpoint",
}


def _verify_remote(
    values: dict[str, Any], table: Mapping[str, Any], prefix: str, ctx: _Ctx
) -> None:
    provider = values.get("provider")
    needed = _PROVIDER_NEEDS.get(provider or "")
    if needed and needed not in table:
        ctx.add(_join(prefix, needed), f"required for provider '{provider}'")


_REMOTE = _Section(
    RemoteStorageConfig,
    {
        "provider": _Field(_choice(*PROVIDERS), required=True),
        "name": _Field(
            _matching(r"[A-Za-z0-9_-]+", "may only use letters, digits, '_' and '-'"),
            required=True,
        ),
        "bucket_name": _Field(_string),
        "endpoint": _Field(_endpoint),
        "region": _Field(_string),
        "path_prefix": _Field(_any_string),
        "credentials_file": _Field(_path),
        "ca_bundle": _Field(_path),
        "known_hosts": _Field(_path),
        "host_key_fingerprint": _Field(_string),
        "username": _Field(_string),
        "key_file": _Field(_path),
    },
    refused={
        key: _NO_REMOTE_CREDENTIALS
        for key in (
            "access_key",
            "secret_key",
            "password",
            "account_key",
            "connection_string",
            "sas_token",
        )
    },
    verify=_verify_remote,
)


def _remote_list(value: Any, at: str, ctx: _Ctx) -> tuple[RemoteStorageConfig, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"must be an array of tables, written [[{at}]] (got {_type_name(value)})")
    built: list[RemoteStorageConfig] = []
    first_use: dict[str, str] = {}
    bad = False
    for index, entry in enumerate(value):
        where = f"{at}[{index}]"
        if not isinstance(entry, dict):
            ctx.add(where, f"must be a table, written [[{at}]] (got {_type_name(entry)})")
            bad = True
            continue
        # Names key the copies in job records and the UI, so two locations cannot share one.
        name = entry.get("name")
        if isinstance(name, str) and name:
            if name in first_use:
                ctx.add(
                    f"{where}.name", f"duplicate name {name!r} (already used by {first_use[name]})"
                )
                bad = True
            else:
                first_use[name] = where
        try:
            built.append(_build(_REMOTE, entry, where, ctx))
        except _Reported:
            bad = True
    if bad:
        raise _Reported
    return tuple(built)


_STORAGE = _Section(
    StorageConfig,
    {
        "local_path": _Field(_path, required=True),
        "compression_level": _Field(_integer(1, 22)),
        "compression": _Field(_boolean),
        "encryption": _Field(_must_stay_on),
        "passphrase_file": _Field(_path),
        "passphrase_command": _Field(_argv),
        "pack_size_mib": _Field(_integer(4, 128)),
        "remote_storage": _Field(_remote_list),
    },
    refused={
        "encryption_key": (
            "never put the key in config.toml; use storage.passphrase_file, "
            f"storage.passphrase_command or {ENV_PASSPHRASE}"
        ),
        "passphrase": (
            "never put the passphrase in config.toml; use storage.passphrase_file, "
            f"storage.passphrase_command or {ENV_PASSPHRASE}"
        ),
    },
)

_SCHEDULE = _Section(
    ScheduleConfig,
    {
        "enabled": _Field(_boolean),
        "cron_expression": _Field(_cron),
        "timezone": _Field(_timezone),
        "parallel_backups": _Field(_boolean),
        "max_concurrent": _Field(_integer(1, 16)),
        "full_every_days": _Field(_integer(1)),
    },
)


def _table(section: _Section) -> Check:
    def check(value: Any, at: str, ctx: _Ctx) -> Any:
        if not isinstance(value, dict):
            raise _Invalid(f"must be a table, written [{at}] (got {_type_name(value)})")
        return _build(section, value, at, ctx)

    return check


_ROOT = _Section(
    Config,
    {
        name: _Field(_table(section), absent={})
        for name, section in (
            ("database", _DATABASE),
            ("application", _APPLICATION),
            ("configuration", _CONFIGURATION),
            ("storage", _STORAGE),
            ("schedule", _SCHEDULE),
        )
    },
)

# Exposed for tests that keep the specs and the dataclasses in step.
SECTIONS: Mapping[str, _Section] = {
    "database": _DATABASE,
    "application": _APPLICATION,
    "configuration": _CONFIGURATION,
    "storage": _STORAGE,
    "storage.remote_storage": _REMOTE,
    "schedule": _SCHEDULE,
}


# --------------------------------------------------------------------------- loading


def parse_config(data: dict, *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate an already parsed TOML document; relative paths resolve against base_dir."""
    ctx = _Ctx(base_dir=Path(base_dir).expanduser().absolute())
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", f"must be a table (got {_type_name(data)})")], path)
    try:
        return _build(_ROOT, data, "", ctx, path=path)
    except _Reported:
        raise ConfigError(ctx.problems, path) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path).expanduser().absolute()
    problem: str | None = None
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        problem = (
            f"file not found; copy config.toml.example there, or point {ENV_CONFIG} at your config"
        )
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


# --------------------------------------------------------------------------- passphrase


def resolve_passphrase(
    storage: StorageConfig,
    *,
    env: Mapping[str, str] = os.environ,
    interactive: bool | None = None,
    confirm: bool = False,
) -> str:
    """The repository passphrase from the first configured source.

    Order: $AXISOR_BACKUP_PASSPHRASE (an empty value counts as unset), then
    storage.passphrase_file, then storage.passphrase_command, then a prompt when
    interactive. A configured source that fails is an error; it does not fall through
    to the next, so a broken setup is never papered over by a prompt.
    """
    from_env = env.get(ENV_PASSPHRASE)
    if from_env:
        return from_env
    if storage.passphrase_file is not None:
        return _passphrase_from_file(storage.passphrase_file)
    if storage.passphrase_command:
        return _passphrase_from_command(storage.passphrase_command)
    if interactive is None:
        interactive = _stdin_is_terminal()
    if interactive:
        return _passphrase_from_prompt(confirm)
    raise PassphraseError(
        f"no passphrase: set {ENV_PASSPHRASE}, storage.passphrase_file or "
        "storage.passphrase_command"
    )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin was closed
        return False


def _strip_newline(text: str) -> str:
    # Only the one newline an editor or `echo` adds; other whitespace may be meant.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _passphrase_from_file(path: Path) -> str:
    where = f"storage.passphrase_file {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PassphraseError(
            f"{where} does not exist; create it holding only the passphrase, "
            f"then run: chmod 600 {shlex.quote(str(path))}"
        ) from None
    except OSError as exc:
        raise PassphraseError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PassphraseError(f"{where} is not a regular file")
    # A passphrase others can read is no secret; refuse rather than use it.
    if os.name == "posix" and info.st_mode & 0o077:
        raise PassphraseError(
            f"{where} is readable by group or other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {shlex.quote(str(path))}"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PassphraseError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PassphraseError(f"{where} is not UTF-8 text") from None
    passphrase = _strip_newline(text)
    if not passphrase:
        raise PassphraseError(f"{where} is empty; write the passphrase into it")
    return passphrase


def _passphrase_from_command(argv: tuple[str, ...]) -> str:
    # Messages name the program only: arguments may carry tokens and output is the secret.
    where = f"storage.passphrase_command ({argv[0]})"
    failure: str | None = None
    result: subprocess.CompletedProcess[bytes] | None = None
    try:
        result = subprocess.run(
            list(argv),
            shell=False,
            stdin=subprocess.DEVNULL,  # the terminal may belong to the console UI
            capture_output=True,
            timeout=PASSPHRASE_COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        failure = f"{where}: program not found"
    except PermissionError:
        failure = f"{where}: program is not executable"
    except subprocess.TimeoutExpired:
        failure = f"{where} did not finish within {PASSPHRASE_COMMAND_TIMEOUT:g} seconds"
    except OSError as exc:
        failure = f"{where} could not be started: {exc.strerror or type(exc).__name__}"
    # Raised outside the except blocks so no exception holding the output is chained on.
    if failure is not None:
        raise PassphraseError(failure)
    assert result is not None
    if result.returncode < 0:
        raise PassphraseError(f"{where} was killed by signal {-result.returncode}")
    if result.returncode != 0:
        raise PassphraseError(
            f"{where} exited with status {result.returncode}; run it by hand to see why"
        )
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise PassphraseError(f"{where} printed something that is not UTF-8 text")
    passphrase = _strip_newline(text)
    if not passphrase:
        raise PassphraseError(f"{where} printed an empty passphrase")
    return passphrase


def _passphrase_from_prompt(confirm: bool) -> str:
    try:
        first = getpass.getpass("Repository passphrase: ")
        if not first:
            raise PassphraseError("empty passphrase: a repository passphrase cannot be empty")
        second = getpass.getpass("Repeat passphrase: ") if confirm else first
    except EOFError:
        raise PassphraseError("no passphrase: input ended at the prompt") from None
    if second != first:
        raise PassphraseError("passphrases do not match")
    return first

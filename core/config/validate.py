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
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, available_timezones

from core.config.model import (
    APPLICATION_SOURCES,
    BACKUP_TYPE_POLICIES,
    CONFIGURATION_SOURCES,
    DRILL_SCENARIOS,
    ENV_PASSPHRASE,
    PROVIDERS,
    SCHEDULE_TASKS,
    ApplicationConfig,
    Config,
    ConfigError,
    ConfigProblem,
    ConfigurationConfig,
    DatabaseConfig,
    DrillCheckConfig,
    DrillsConfig,
    EngineConfig,
    NotificationsConfig,
    Objective,
    ObjectivesConfig,
    RemoteStorageConfig,
    RetentionConfig,
    RetentionOverride,
    ScheduleConfig,
    ScheduleJobConfig,
    StorageConfig,
)

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


def _tables(section: _Section, *, unique_names: bool = False) -> Check:
    """An array of tables (``[[at]]``), each built with ``section``. With ``unique_names``
    no two may share a ``name``: names key copies, pause state and run history, and
    commands pick entries by them."""

    def check(value: Any, at: str, ctx: _Ctx) -> tuple:
        if not isinstance(value, list):
            raise _Invalid(f"must be an array of tables, written [[{at}]] (got {_type_name(value)})")
        built: list = []
        first_use: dict[str, str] = {}
        bad = False
        for index, entry in enumerate(value):
            where = f"{at}[{index}]"
            if not isinstance(entry, dict):
                ctx.add(where, f"must be a table, written [[{at}]] (got {_type_name(entry)})")
                bad = True
                continue
            name = entry.get("name")
            if unique_names and isinstance(name, str) and name:
                if name in first_use:
                    ctx.add(f"{where}.name", f"duplicate name {name!r} (already used by {first_use[name]})")
                    bad = True
                else:
                    first_use[name] = where
            try:
                built.append(_build(section, entry, where, ctx))
            except _Reported:
                bad = True
        if bad:
            raise _Reported
        return tuple(built)

    return check


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


def _folder(value: Any, at: str, ctx: _Ctx) -> Path:
    """A path that is a folder, or can be made one: not an existing file, not below one.
    Nothing is created here, and permissions are not judged (a repository on read-only
    media is a folder that can be read)."""
    path = _path(value, at, ctx)
    try:
        if path.exists():
            if not path.is_dir():
                raise _Invalid(f"{path} exists and is not a folder")
            return path
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise _Invalid(f"{path} cannot be created: {parent} is not a folder")
                break
    except OSError:
        pass  # cannot look (no permission on a folder above): the command says so when it runs
    return path


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
    # Ranges next, one field at a time so the message names the field that is wrong.
    from croniter import CroniterBadDateError, croniter

    for index, (name, part) in enumerate(zip(_CRON_FIELDS, parts)):
        alone = ["*"] * len(_CRON_FIELDS)
        alone[index] = part
        if not croniter.is_valid(" ".join(alone)):
            raise _Invalid(f"{name} field {part!r} is out of range ({_CRON_RANGES[name]})")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, ValueError, KeyError):
        raise _Invalid(f"{text!r} never matches a date (e.g. 31 in February)") from None
    return text


_CRON_RANGES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
}


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
    fields["follow_root_symlink"] = _Field(_boolean)
    return _Section(build, fields)


_APPLICATION = _category(ApplicationConfig, APPLICATION_SOURCES)
_CONFIGURATION = _category(ConfigurationConfig, CONFIGURATION_SOURCES)

def _verify_database(values: dict[str, Any], table: Mapping[str, Any], prefix: str, ctx: _Ctx) -> None:
    if values.get("backup_standby"):
        if values.get("mode", "logical") != "physical":
            ctx.add(_join(prefix, "backup_standby"), "only applies to mode = \"physical\" (a logical backup "
                    "reads a standby like any server)")
        if "primary_host" not in table and "primary_port" not in table:
            ctx.add(_join(prefix, "primary_host"), "required with backup_standby = true: where the primary "
                    "runs (primary_host and/or primary_port; user, dbname and password as configured)")
    else:
        for key in ("primary_host", "primary_port", "standby_timeout_seconds"):
            if key in table:
                ctx.add(_join(prefix, key), "only applies with backup_standby = true")


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
        "pitr_window_days": _Field(_integer(0, 3650)),
        "archive_timeout_seconds": _Field(_integer(1, 86400)),
        "row_checksums": _Field(_boolean),
        "globals_with_passwords": _Field(_boolean),
        "compression": _Field(_boolean),
        "encryption": _Field(_boolean),
        "incremental": _Field(_boolean),
        "pg_bin_dir": _Field(_path),
        "application_version": _Field(_string),
        "backup_standby": _Field(_boolean),
        "primary_host": _Field(_string),
        "primary_port": _Field(_integer(1, 65535)),
        "standby_timeout_seconds": _Field(_integer(1, 86400)),
    },
    refused={"password": _NO_DB_PASSWORD},
    verify=_verify_database,
)

# Which location field each provider cannot work without.
_PROVIDER_NEEDS = {
    "aws-s3": "bucket_name",
    "gcp-storage": "bucket_name",
    "azure-blob": "bucket_name",
    "ftp": "endpoint",
    "sftp": "endpoint",
    "local": "path",
}


def insecure_endpoint(provider: str, endpoint: str) -> bool:
    """An endpoint whose transport is not encrypted: http:// object storage, plain FTP."""
    scheme = endpoint.lower().partition("://")[0] if "://" in endpoint else ""
    if provider == "ftp":
        return scheme != "ftps"
    return scheme == "http"


def _verify_remote(
    values: dict[str, Any], table: Mapping[str, Any], prefix: str, ctx: _Ctx
) -> None:
    provider = values.get("provider")
    needed = _PROVIDER_NEEDS.get(provider or "")
    if needed and needed not in table:
        ctx.add(_join(prefix, needed), f"required for provider '{provider}'")
    endpoint = str(values.get("endpoint") or "")
    if insecure_endpoint(provider or "", endpoint) and not values.get("allow_insecure"):
        ctx.add(_join(prefix, "endpoint"), f"{endpoint} is not encrypted (credentials and data would cross the "
                "network in the clear): use https:// or ftps://, or set allow_insecure = true on this location")
    # "local" names the primary location (storage.local_path) in copies and the catalog.
    if values.get("name") == "local":
        ctx.add(_join(prefix, "name"), "'local' is the primary location's name; choose another")


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
        "path": _Field(_path),
        "concurrency": _Field(_integer(1, 64)),
        "timeout_seconds": _Field(_integer(1, 3600)),
        "retries": _Field(_integer(0, 20)),
        "allow_insecure": _Field(_boolean),
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


_STORAGE = _Section(
    StorageConfig,
    {
        "local_path": _Field(_folder, required=True),
        "compression_level": _Field(_integer(1, 22)),
        "compression": _Field(_boolean),
        "encryption": _Field(_must_stay_on),
        "passphrase_file": _Field(_path),
        "passphrase_command": _Field(_argv),
        "pack_size_mib": _Field(_integer(4, 128)),
        "remote_storage": _Field(_tables(_REMOTE, unique_names=True)),
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

# Keys of [[schedule.jobs]] that only mean something for one task.
_TASK_ONLY = {"sources": "backup", "type": "backup", "full": "verify", "locations": "copy"}


def _verify_schedule_job(
    values: dict[str, Any], table: Mapping[str, Any], prefix: str, ctx: _Ctx
) -> None:
    task = values.get("task")
    if task is None:
        return
    for key, owner in _TASK_ONLY.items():
        if key in table and task != owner:
            ctx.add(_join(prefix, key), f"only applies to task '{owner}' (this job's task is '{task}')")


_SCHEDULE_JOB = _Section(
    ScheduleJobConfig,
    {
        "name": _Field(
            _matching(r"[A-Za-z0-9_.-]+", "may only use letters, digits, '_', '.' and '-'"),
            required=True,
        ),
        "task": _Field(_choice(*SCHEDULE_TASKS), required=True),
        "cron": _Field(_cron, required=True),
        "timezone": _Field(_timezone),
        "sources": _Field(_list_of(_string, "source names", '["database"]')),
        "type": _Field(_choice(*BACKUP_TYPE_POLICIES)),
        "full": _Field(_boolean),
        "locations": _Field(_list_of(_string, "remote_storage names", '["offsite"]')),
        "jitter_seconds": _Field(_integer(0, 86400)),
        "enabled": _Field(_boolean),
    },
    verify=_verify_schedule_job,
)


def _verify_schedule_references(values: dict[str, Any], ctx: _Ctx) -> None:
    # Cross-section: a scheduled job may only name sources and locations that exist, or
    # the daemon would find out at 02:00 instead of `config check` now.
    schedule = values.get("schedule")
    if schedule is None:
        return
    sources: set[str] = set()
    for category, names in (("application", APPLICATION_SOURCES), ("configuration", CONFIGURATION_SOURCES)):
        section = values.get(category)
        configured = [n for n in names if section is not None and getattr(section, n)]
        sources.update(configured)
        sources.update(f"{category}/{n}" for n in configured)
        if configured:
            sources.add(category)
    database = values.get("database")
    if database is not None and database.enabled:
        sources.add("database")
    storage = values.get("storage")
    locations = {r.name for r in storage.remote_storage} if storage is not None else None
    for index, job in enumerate(schedule.jobs):
        at = f"schedule.jobs[{index}]"
        for position, name in enumerate(job.sources):
            if name not in sources:
                why = ("the database source is not enabled ([database] enabled = true)"
                       if name == "database" else "no such configured source")
                ctx.add(f"{at}.sources[{position}]", f"{why}: {name!r}{_hint(name, sources)}")
        for position, name in enumerate(job.locations):
            if locations is not None and name not in locations:
                ctx.add(f"{at}.locations[{position}]",
                        f"no [[storage.remote_storage]] named {name!r}{_hint(name, locations)}")


_SCHEDULE = _Section(
    ScheduleConfig,
    {
        "enabled": _Field(_boolean),
        "cron_expression": _Field(_cron),
        "timezone": _Field(_timezone),
        "parallel_backups": _Field(_boolean),
        "max_concurrent": _Field(_integer(1, 16)),
        "full_every_days": _Field(_integer(1)),
        "jobs": _Field(_tables(_SCHEDULE_JOB, unique_names=True)),
    },
)

_ENGINE = _Section(
    EngineConfig,
    {
        "state_dir": _Field(_folder),
        "shutdown_grace_seconds": _Field(_integer(0, 86400)),
        "metrics_file": _Field(_path),
        "stall_timeout_seconds": _Field(_integer(0, 86400)),
    },
)


def _webhook_url(value: Any, at: str, ctx: _Ctx) -> str:
    text = _string(value, at, ctx)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid("must be an http:// or https:// URL")
    return text


_NOTIFICATIONS = _Section(
    NotificationsConfig,
    {
        "webhook_url": _Field(_webhook_url),
        "command": _Field(_argv),
        "on_failure": _Field(_boolean),
        "on_success": _Field(_boolean),
        "timeout_seconds": _Field(_integer(1, 600)),
    },
)


_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?")


def _duration(value: Any, at: str, ctx: _Ctx) -> timedelta:
    text = value.strip() if isinstance(value, str) else None
    m = _DURATION.fullmatch(text) if text else None
    if m is None:
        raise _Invalid('must be a duration in weeks, days and hours, e.g. "14d", "36h" or "2w3d"')
    weeks, days, hours = (int(g) if g else 0 for g in m.groups())
    return timedelta(weeks=weeks, days=days, hours=hours)


_KEEP_FIELDS = {name: _Field(_integer(0, 100000)) for name in (
    "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")}
_KEEP_FIELDS["keep_within"] = _Field(_duration)
_KEEP_FIELDS["min_keep"] = _Field(_integer(1, 100000))

_RETENTION_OVERRIDE = _Section(RetentionOverride, dict(_KEEP_FIELDS))


def _table(section: _Section) -> Check:
    def check(value: Any, at: str, ctx: _Ctx) -> Any:
        if not isinstance(value, dict):
            raise _Invalid(f"must be a table, written [{at}] (got {_type_name(value)})")
        return _build(section, value, at, ctx)

    return check


_RETENTION = _Section(
    RetentionConfig,
    {**_KEEP_FIELDS,
     **{category: _Field(_table(_RETENTION_OVERRIDE))
        for category in ("database", "application", "configuration")}},
)

# Objectives need minutes and seconds too ("15m" for a database with WAL archiving).
_OBJECTIVE_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _objective_duration(value: Any, at: str, ctx: _Ctx) -> timedelta:
    text = value.strip() if isinstance(value, str) else None
    m = _OBJECTIVE_DURATION.fullmatch(text) if text else None
    if m is None:
        raise _Invalid('must be a duration such as "24h", "15m", "1h30m", "2d" or "90s"')
    w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    span = timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    if span <= timedelta(0):
        raise _Invalid("must be longer than zero")
    return span


def _objective_factor(value: Any, at: str, ctx: _Ctx) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 100:
        raise _Invalid(f"must be a number from 1 to 100 (got {value!r})")
    return float(value)


def _share(value: Any, at: str, ctx: _Ctx) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise _Invalid(f"must be a share above 0 and at most 1, e.g. 0.5 for 50 % (got {value!r})")
    return float(value)


# What an [objectives.<key>] table may name: a category or one of its sources.
_OBJECTIVE_KEYS = ("database", "application", "configuration",
                   *(f"application/{n}" for n in APPLICATION_SOURCES),
                   *(f"configuration/{n}" for n in CONFIGURATION_SOURCES))


def _objectives(value: Any, at: str, ctx: _Ctx) -> ObjectivesConfig:
    # Hand-written rather than a _Section: the per-source tables have open-ended names.
    if not isinstance(value, dict):
        raise _Invalid(f"must be a table, written [{at}] (got {_type_name(value)})")
    before = len(ctx.problems)
    top: dict[str, Any] = {}
    per_source: list[tuple[str, dict[str, timedelta]]] = []
    for key, raw in value.items():
        where = _join(at, key)
        if key in ("rpo", "rto"):
            _check_into(top, key, _Field(_objective_duration), raw, where, ctx)
        elif key == "critical_factor":
            _check_into(top, key, _Field(_objective_factor), raw, where, ctx)
        elif key == "suspicious_shrink":
            _check_into(top, key, _Field(_share), raw, where, ctx)
        elif key in _OBJECTIVE_KEYS:
            if not isinstance(raw, dict):
                ctx.add(where, f"must be a table, written [{at}.\"{key}\"] with rpo and/or rto")
                continue
            got: dict[str, timedelta] = {}
            for sub, sub_raw in raw.items():
                if sub in ("rpo", "rto"):
                    _check_into(got, sub, _Field(_objective_duration), sub_raw, _join(where, sub), ctx)
                else:
                    ctx.add(_join(where, sub), f"unknown key{_hint(sub, ('rpo', 'rto'))}; expected rpo or rto")
            per_source.append((key, got))
        else:
            known = ("rpo", "rto", "critical_factor", "suspicious_shrink", *_OBJECTIVE_KEYS)
            ctx.add(where, f"unknown key{_hint(key, known)}; "
                           "expected rpo, rto, critical_factor, suspicious_shrink or a source table such as "
                           "[objectives.database] or [objectives.\"application/user_data\"]")
    if len(ctx.problems) > before:
        raise _Reported
    base = ObjectivesConfig(**top)
    # A source table inherits what it leaves out from its category's table, then the defaults.
    categories = {k: v for k, v in per_source if "/" not in k}
    built = []
    for key, got in per_source:
        parent = categories.get(key.split("/", 1)[0], {}) if "/" in key else {}
        built.append((key, Objective(rpo=got.get("rpo") or parent.get("rpo") or base.rpo,
                                     rto=got.get("rto") or parent.get("rto") or base.rto)))
    return ObjectivesConfig(rpo=base.rpo, rto=base.rto, critical_factor=base.critical_factor,
                            suspicious_shrink=base.suspicious_shrink, sources=tuple(built))


def _expect_value(value: Any, at: str, ctx: _Ctx) -> str | int | float | bool:
    if not isinstance(value, str | int | float | bool):
        raise _Invalid(f"must be a string, number or boolean (got {_type_name(value)})")
    return value


def _relative_path(value: Any, at: str, ctx: _Ctx) -> str:
    text = _string(value, at, ctx)
    if Path(text).is_absolute() or ".." in Path(text).parts:
        raise _Invalid(f"must be relative to the restored source and stay inside it (got {text!r})")
    return text


def _verify_drill_check(values: dict[str, Any], table: Mapping[str, Any], prefix: str, ctx: _Ctx) -> None:
    has_sql, has_path = "sql" in table, "path" in table
    if has_sql == has_path:
        ctx.add(prefix, "give either sql (with expect) or path (with source), not both and not neither")
    elif has_sql and "expect" not in table:
        ctx.add(_join(prefix, "expect"), "required with sql")
    elif has_path and "source" not in table:
        ctx.add(_join(prefix, "source"), 'required with path (e.g. "application/user_data")')
    for key in ("expect",) if has_path else ("source",) if has_sql else ():
        if key in table:
            ctx.add(_join(prefix, key), f"only applies to {'sql' if key == 'expect' else 'path'} checks")


_DRILL_CHECK = _Section(
    DrillCheckConfig,
    {
        "name": _Field(_string, required=True),
        "sql": _Field(_string),
        "expect": _Field(_expect_value),
        "path": _Field(_relative_path),
        "source": _Field(_choice("database", *_OBJECTIVE_KEYS[3:])),
    },
    verify=_verify_drill_check,
)


_DRILLS = _Section(
    DrillsConfig,
    {
        "scenario": _Field(_choice(*DRILL_SCENARIOS)),
        "scratch": _Field(_choice("cluster", "database")),
        "table": _Field(_matching(r"[^.\s]+\.[^.\s]+", 'must be schema.table, e.g. "public.orders"')),
        "work_dir": _Field(_path),
        "os_user": _Field(_string),
        "checks": _Field(_tables(_DRILL_CHECK)),
    },
)

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
            ("engine", _ENGINE),
            ("notifications", _NOTIFICATIONS),
            ("retention", _RETENTION),
            ("drills", _DRILLS),
        )
    } | {"objectives": _Field(_objectives)},
    verify=lambda values, table, prefix, ctx: _verify_schedule_references(values, ctx),
)

# Exposed for tests that keep the specs and the dataclasses in step.
SECTIONS: Mapping[str, _Section] = {
    "database": _DATABASE,
    "application": _APPLICATION,
    "configuration": _CONFIGURATION,
    "storage": _STORAGE,
    "storage.remote_storage": _REMOTE,
    "schedule": _SCHEDULE,
    "schedule.jobs": _SCHEDULE_JOB,
    "engine": _ENGINE,
    "notifications": _NOTIFICATIONS,
    "retention": _RETENTION,
    "retention.database": _RETENTION_OVERRIDE,
    "drills": _DRILLS,
    "drills.checks": _DRILL_CHECK,
}


def parse_config(data: dict, *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate an already parsed TOML document; relative paths resolve against base_dir."""
    ctx = _Ctx(base_dir=Path(base_dir).expanduser().absolute())
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", f"must be a table (got {_type_name(data)})")], path)
    try:
        return _build(_ROOT, data, "", ctx, path=path)
    except _Reported:
        raise ConfigError(ctx.problems, path) from None

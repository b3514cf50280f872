"""config.toml -> frozen dataclasses, validated in one pass against model.py's declaration.

Every problem in a file is collected before anything is raised, so an operator fixes a
config in one edit instead of one error per run. Each problem names its dotted key path
(``storage.remote_storage[1].provider``) and never echoes a value that might be a secret.

pydantic-core reads each section into its dataclass (schema.validator): it finds missing and unknown keys, walks
arrays and nested tables, and runs each field's check (core/config/checks.py). Its errors
are worded here as ``config check`` always worded them ("did you mean" for a typo). What a
single field cannot know (rules across fields, sections and array entries) runs after,
on the raw document, whether or not the fields passed, so one run reports both. Problems
come out in the document's order.
"""

from __future__ import annotations

import shlex

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic_core import ValidationError

from core.config.checks import AT, ERROR, ERROR_AT, Check, Invalid, hint, type_name
from core.config.model import (
    APPLICATION_SOURCES,
    CONFIGURATION_SOURCES,
    OBJECTIVE_KEYS,
    Config,
    ConfigError,
    ConfigProblem,
    DatabaseConfig,
    DrillCheckConfig,
    HookConfig,
    Objective,
    ObjectivesConfig,
    RemoteStorageConfig,
    ScheduleJobConfig,
)
from core.config.schema import Key, class_at, keys, validator

Loc = tuple[str | int, ...]


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclasses.dataclass(slots=True)
class _Report:
    """Problems as found, each with where it sorts: ``phase`` 0 for a key's own problem,
    2 for a rule of the table at ``loc`` (after that table's keys, as before)."""

    document: Mapping[str, Any]
    found: list[tuple[Loc, int, ConfigProblem]] = dataclasses.field(default_factory=list)

    def add(self, loc: Loc, message: str, *, rule_of: Loc | None = None) -> None:
        where = rule_of if rule_of is not None else loc
        self.found.append((where, 0 if rule_of is None else 2, ConfigProblem(_dotted(loc), message)))

    def _order(self, item: tuple[Loc, int, ConfigProblem]) -> list[tuple[int, int]]:
        loc, phase, _ = item
        order: list[tuple[int, int]] = []
        node: Any = self.document
        for part in loc:
            if isinstance(node, dict) and part in node:
                order.append((0, list(node).index(part)))
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                order.append((0, part))
                node = node[part]
            else:  # a missing key: after the keys that are there
                order.append((1, 0))
                node = None
        if phase:
            order.append((phase, 0))
        return order

    def problems(self) -> list[ConfigProblem]:
        return [problem for *_, problem in sorted(self.found, key=self._order)]


# --------------------------------------------------------------------------- pydantic's errors


def _known(cls: type) -> list[str]:
    """The keys a section offers in "did you mean": deprecated ones are not suggested."""
    return [name for name, key in keys(cls).items() if key.deprecated is None]


def _unknown(cls: type, key: str, *, section: bool = False) -> str:
    refused: Mapping[str, str] = getattr(cls, "REFUSED", {})
    if key in refused:
        return refused[key]
    known = _known(cls)
    return ("unknown section" if section else "unknown key") + (
        hint(key, known) or f"; expected one of: {', '.join(known)}"
    )


def _word(root: type, error: Any, at: Loc) -> str:
    kind, loc = error["type"], at + tuple(error["loc"])
    if kind == ERROR:
        return str(error["msg"])
    if kind == ERROR_AT:
        return str(error["msg"]).replace(AT, _dotted(loc))
    if kind == "missing":
        return "required"
    if kind == "unexpected_keyword_argument":
        cls = class_at(root, tuple(error["loc"])[:-1])
        return _unknown(cls, str(loc[-1])) if cls is not None else "unknown key"
    if kind in ("dataclass_type", "dataclass_exact_type"):
        got = type_name(error["input"])
        if loc and isinstance(loc[-1], int):
            return f"must be a table, written [[{_dotted(loc[:-1])}]] (got {got})"
        return f"must be a table, written [{_dotted(loc)}] (got {got})"
    return str(error["msg"])  # not expected: every check words its own


def _section(cls: type, table: dict[str, Any], at: Loc, base_dir: Path, report: _Report) -> Any:
    """The section's dataclass, or None when it has problems (all of them reported)."""
    built: Any = None
    bad: set[Loc] = set()
    try:
        built = validator(cls).validate_python(table, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = at + tuple(error["loc"])
            bad.add(loc)
            report.add(loc, _word(cls, error, at))
    before = len(report.found)
    _rules(cls, table, at, bad, report)
    return built if built is not None and len(report.found) == before else None


# --------------------------------------------------------------------------- rules across keys

# A rule sees the table's raw keys (``table``), the ones that passed their own checks
# (``values``), and reports against the table's location.
Rule = Callable[[dict[str, Any], Mapping[str, Any], Loc, _Report], None]


def _database(values: dict[str, Any], table: Mapping[str, Any], at: Loc, report: _Report) -> None:
    if values.get("dump_jobs", 1) > 1 and values.get("mode", "logical") != "logical":
        report.add(
            at + ("dump_jobs",),
            'only applies to mode = "logical" (pg_dumps on one snapshot; a base backup is one stream)',
            rule_of=at,
        )
    if values.get("backup_standby"):
        if values.get("mode", "logical") != "physical":
            report.add(
                at + ("backup_standby",),
                'only applies to mode = "physical" (a logical backup reads a standby like any server)',
                rule_of=at,
            )
        if "primary_host" not in table and "primary_port" not in table:
            report.add(
                at + ("primary_host",),
                "required with backup_standby = true: where the primary "
                "runs (primary_host and/or primary_port; user, dbname and password as configured)",
                rule_of=at,
            )
    else:
        for key in ("primary_host", "primary_port", "standby_timeout_seconds"):
            if key in table:
                report.add(at + (key,), "only applies with backup_standby = true", rule_of=at)


# Which location field each provider cannot work without.
_PROVIDER_NEEDS = {
    "aws-s3": "bucket_name",
    "gcp-storage": "bucket_name",
    "azure-blob": "bucket_name",
    "ftp": "endpoint",
    "sftp": "endpoint",
    "ssh": "endpoint",
    "local": "path",
}


def insecure_endpoint(provider: str, endpoint: str) -> bool:
    """An endpoint whose transport is not encrypted: http:// object storage, plain FTP."""
    scheme = endpoint.lower().partition("://")[0] if "://" in endpoint else ""
    if provider == "ftp":
        return scheme != "ftps"
    return scheme == "http"


def _remote(values: dict[str, Any], table: Mapping[str, Any], at: Loc, report: _Report) -> None:
    provider = values.get("provider")
    needed = _PROVIDER_NEEDS.get(provider or "")
    if needed and needed not in table:
        report.add(at + (needed,), f"required for provider '{provider}'", rule_of=at)
    endpoint = str(values.get("endpoint") or "")
    if insecure_endpoint(provider or "", endpoint) and not values.get("allow_insecure"):
        report.add(
            at + ("endpoint",),
            f"{endpoint} is not encrypted (credentials and data would cross the "
            "network in the clear): use https:// or ftps://, or set allow_insecure = true on this "
            "location",
            rule_of=at,
        )
    # "local" names the primary location (storage.local_path) in copies and the catalog.
    if values.get("name") == "local":
        report.add(at + ("name",), "'local' is the primary location's name; choose another", rule_of=at)


def _schedule_job(values: dict[str, Any], table: Mapping[str, Any], at: Loc, report: _Report) -> None:
    task = values.get("task")
    if task is None:
        return
    for key, owner in ScheduleJobConfig.TASK_ONLY.items():
        if key in table and task != owner:
            report.add(at + (key,), f"only applies to task '{owner}' (this job's task is '{task}')", rule_of=at)


def _drill_check(values: dict[str, Any], table: Mapping[str, Any], at: Loc, report: _Report) -> None:
    kinds = [k for k in ("sql", "path", "paths_sql") if k in table]
    if len(kinds) != 1:
        report.add(
            at,
            "give one of sql (with expect), path (with source) or paths_sql (with source)",
            rule_of=at,
        )
        return
    kind = kinds[0]
    if kind == "sql" and "expect" not in table:
        report.add(at + ("expect",), "required with sql", rule_of=at)
    elif kind != "sql" and "source" not in table:
        report.add(at + ("source",), f'required with {kind} (e.g. "application/user_data")', rule_of=at)
    for key in ("expect",) if kind != "sql" else ("source",):
        if key in table:
            which = "sql" if key == "expect" else "path and paths_sql"
            report.add(at + (key,), f"only applies to {which} checks", rule_of=at)


def _hook(values: dict[str, Any], table: Mapping[str, Any], at: Loc, report: _Report) -> None:
    if "pre_command" not in table and "post_command" not in table:
        report.add(at, "give pre_command, post_command or both", rule_of=at)
    source, category = values.get("source"), at[0] if at else None
    names = APPLICATION_SOURCES if category == "application" else CONFIGURATION_SOURCES
    if source is not None and source not in names:
        report.add(at + ("source",), f"must be a source of [{category}]: one of {', '.join(names)}", rule_of=at)
    for key in ("pre_command", "post_command"):
        command = table.get(key)
        if isinstance(command, str):
            try:
                if not shlex.split(command):
                    report.add(at + (key,), "is empty", rule_of=at)
            except ValueError as exc:
                report.add(at + (key,), f"does not split into words ({exc}): check its quotes", rule_of=at)


_RULES: dict[type, Rule] = {
    DatabaseConfig: _database,
    RemoteStorageConfig: _remote,
    ScheduleJobConfig: _schedule_job,
    DrillCheckConfig: _drill_check,
    HookConfig: _hook,
}


def _rules(cls: type, table: Mapping[str, Any], at: Loc, bad: set[Loc], report: _Report) -> None:
    """The rules of the table at ``at`` and of every table below it."""

    def passed(loc: Loc) -> bool:
        return not any(b[: len(loc)] == loc for b in bad)

    declared = keys(cls)
    rule = _RULES.get(cls)
    if rule is not None:
        values = {k: v for k, v in table.items() if k in declared and passed(at + (k,))}
        rule(values, table, at, report)
    for name, key in declared.items():
        raw = table.get(name)
        if key.table is None or raw is None:
            continue
        if not key.array:
            if isinstance(raw, dict):
                _rules(key.table, raw, at + (name,), bad, report)
            continue
        if not isinstance(raw, list):
            continue
        first_use: dict[str, str] = {}
        for index, entry in enumerate(raw):
            if not isinstance(entry, dict):
                continue
            where = at + (name, index)
            entry_name = entry.get("name")
            # Names key copies, pause state and run history, and commands pick entries by them.
            if key.unique_names and isinstance(entry_name, str) and entry_name:
                if entry_name in first_use:
                    report.add(
                        where + ("name",), f"duplicate name {entry_name!r} (already used by {first_use[entry_name]})"
                    )
                else:
                    first_use[entry_name] = _dotted(where)
            _rules(key.table, entry, where, bad, report)


def _object_locks(built: dict[str, Any], report: _Report) -> None:
    """S3 Object Lock: aws-s3 only, and a lock period derived from the retention policy when
    none is given (the longest retention_days of the categories: a snapshot its category
    keeps stays undeletable as long)."""
    storage = built.get("storage")
    if storage is None:
        return
    days = max(
        (getattr(built.get(c), "retention_days", 0) or 0 for c in ("application", "configuration", "database")),
        default=30,
    )
    remotes = []
    for index, loc in enumerate(storage.remote_storage):
        if loc.object_lock is not None and loc.provider != "aws-s3":
            report.add(
                ("storage", "remote_storage", index, "object_lock"),
                f"S3 Object Lock is for provider aws-s3 (this is {loc.provider}); for an immutable "
                "location elsewhere use provider ssh behind `axisor-backup serve --append-only`",
            )
        if loc.object_lock is not None and loc.object_lock_days is None:
            loc = dataclasses.replace(loc, object_lock_days=days or 30)
        remotes.append(loc)
    built["storage"] = dataclasses.replace(storage, remote_storage=tuple(remotes))


def _schedule_references(built: Mapping[str, Any], report: _Report) -> None:
    # Cross-section: a scheduled job may only name sources and locations that exist, or
    # the daemon would find out at 02:00 instead of `config check` now.
    schedule = built.get("schedule")
    if schedule is None:
        return
    sources: set[str] = set()
    for category, names in (("application", APPLICATION_SOURCES), ("configuration", CONFIGURATION_SOURCES)):
        section = built.get(category)
        configured = [n for n in names if section is not None and getattr(section, n)]
        sources.update(configured)
        sources.update(f"{category}/{n}" for n in configured)
        if configured:
            sources.add(category)
    database = built.get("database")
    if database is not None and database.enabled:
        sources.add("database")
    storage = built.get("storage")
    locations = {r.name for r in storage.remote_storage} if storage is not None else None
    for index, job in enumerate(schedule.jobs):
        at: Loc = ("schedule", "jobs", index)
        for position, name in enumerate(job.sources):
            if name not in sources:
                why = (
                    "the database source is not enabled ([database] enabled = true)"
                    if name == "database"
                    else "no such configured source"
                )
                report.add(at + ("sources", position), f"{why}: {name!r}{hint(name, sources)}", rule_of=())
        for position, name in enumerate(job.locations):
            if locations is not None and name not in locations:
                report.add(
                    at + ("locations", position),
                    f"no [[storage.remote_storage]] named {name!r}{hint(name, locations)}",
                    rule_of=(),
                )


# --------------------------------------------------------------------------- objectives


def _objectives(value: dict[str, Any], report: _Report) -> ObjectivesConfig | None:
    # Hand-read: the per-source tables have open-ended names. The defaults' keys and checks
    # are ObjectivesConfig's declared ones.
    declared = keys(ObjectivesConfig)
    at: Loc = ("objectives",)
    before = len(report.found)
    top: dict[str, Any] = {}
    per_source: list[tuple[str, dict[str, Any]]] = []

    def read(into: dict[str, Any], key: str, spec: Key, raw: Any, loc: Loc) -> None:
        check = spec.check
        assert isinstance(check, Check)
        try:
            into[key] = check(raw)
        except Invalid as exc:
            report.add(loc, str(exc))

    for key, raw in value.items():
        if key in declared:
            read(top, key, declared[key], raw, at + (key,))
        elif key in OBJECTIVE_KEYS:
            if not isinstance(raw, dict):
                report.add(at + (key,), f'must be a table, written [objectives."{key}"] with rpo and/or rto')
                continue
            got: dict[str, Any] = {}
            for sub, sub_raw in raw.items():
                if sub in ("rpo", "rto"):
                    read(got, sub, declared[sub], sub_raw, at + (key, sub))
                else:
                    report.add(at + (key, sub), f"unknown key{hint(sub, ('rpo', 'rto'))}; expected rpo or rto")
            per_source.append((key, got))
        else:
            known = (*declared, *OBJECTIVE_KEYS)
            report.add(
                at + (key,),
                f"unknown key{hint(key, known)}; "
                "expected rpo, rto, critical_factor, suspicious_shrink or a source table such as "
                '[objectives.database] or [objectives."application/user_data"]',
            )
    if len(report.found) > before:
        return None
    base = ObjectivesConfig(**top)
    # A source table inherits what it leaves out from its category's table, then the defaults.
    categories = {k: v for k, v in per_source if "/" not in k}
    built = []
    for key, got in per_source:
        parent = categories.get(key.split("/", 1)[0], {}) if "/" in key else {}
        built.append(
            (
                key,
                Objective(
                    rpo=got.get("rpo") or parent.get("rpo") or base.rpo,
                    rto=got.get("rto") or parent.get("rto") or base.rto,
                ),
            )
        )
    return dataclasses.replace(base, sources=tuple(built))


# --------------------------------------------------------------------------- the document


def parse_config(data: dict[str, Any], *, base_dir: Path, path: Path | None = None) -> Config:
    """Validate an already parsed TOML document; relative paths resolve against base_dir."""
    base = Path(base_dir).expanduser().absolute()
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", f"must be a table (got {type_name(data)})")], path)
    report = _Report(data)
    sections = keys(Config)
    for name, raw in data.items():
        if name not in sections:
            report.add((name,), _unknown(Config, name, section=isinstance(raw, dict)))
        elif not isinstance(raw, dict):
            report.add((name,), f"must be a table, written [{name}] (got {type_name(raw)})")
    built: dict[str, Any] = {}
    for name, key in sections.items():
        # A missing section is read as an empty one, so it still reports its own required
        # keys ("storage.local_path: required" rather than "storage: required").
        raw = data.get(name, {})
        if not isinstance(raw, dict) or key.table is None:
            continue
        if name not in data and not any(k.required for k in keys(key.table).values()):
            built[name] = key.default  # all defaults: nothing to check (nor a validator to build)
            continue
        section = (
            _objectives(raw, report)
            if key.table is ObjectivesConfig
            else _section(key.table, raw, (name,), base, report)
        )
        if section is not None:
            built[name] = section
    _schedule_references(built, report)
    _object_locks(built, report)
    if report.found:
        raise ConfigError(report.problems(), path)
    return Config(**built, path=path)


def deprecations(config: Any, at: str = "") -> tuple[ConfigProblem, ...]:
    """Warnings for deprecated keys the config sets (model.py's ``Deprecated`` markers)."""
    found: list[ConfigProblem] = []
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return ()
    for name, key in keys(type(config)).items():
        value = getattr(config, name)
        where = f"{at}.{name}" if at else name
        if key.deprecated is not None and value is not None:
            found.append(ConfigProblem(where, key.deprecated))
        elif key.table is not None:
            for index, item in enumerate(value if key.array else (value,)):
                found.extend(deprecations(item, f"{where}[{index}]" if key.array else where))
    return tuple(found)

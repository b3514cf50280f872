"""Source names (core/config/sources.py): one resolution for a backup run, the backup job's
locks and a schedule. The three former copies are kept here as oracles: for any config and
any list of names, each caller resolves as it did (same sources, order, errors, messages),
the one stated exception being a disabled database named to the job (no lock now)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backup.job import _source_keys
from core.config import APPLICATION_SOURCES, CONFIGURATION_SOURCES, Config, parse_config
from core.config.sources import UnknownSource, select_sources
from core.errors import UsageError
from core.schedule.model import expand_sources
from core.service.backup import chosen_sources

ROOT = Path("/nonexistent")
SHORT = APPLICATION_SOURCES + CONFIGURATION_SOURCES
FULL = tuple(f"application/{n}" for n in APPLICATION_SOURCES) + tuple(
    f"configuration/{n}" for n in CONFIGURATION_SOURCES
)
NAMES = st.sampled_from(("database", "application", "configuration", "nope", "application/nope", "") + SHORT + FULL)


def make_config(files: set[str], database: bool) -> Config:
    data: dict = {"storage": {"local_path": str(ROOT / "repo")}, "database": {"enabled": database}}
    for full in files:
        category, short = full.split("/")
        data.setdefault(category, {})[short] = [str(ROOT / short)]
    return parse_config(data, base_dir=ROOT)


# -- the former copies, verbatim but for their names --------------------------------------


def old_service(config: Config, sources: list[str] | None):  # BackupService.backup
    specs = list(config.sources())
    database = config.database if config.database.enabled else None
    if not specs and database is None:
        raise UsageError(
            "no sources are configured: list paths under [application] or [configuration], "
            "or set [database] enabled = true"
        )
    if sources:
        known = {s.name: s for s in specs}
        short = {s.name.split("/", 1)[1]: s for s in specs}
        chosen = []
        want_database = False
        for name in sources:
            if name == "database":
                if database is None:
                    raise UsageError("the database source is not enabled: set [database] enabled = true")
                want_database = True
                continue
            spec = known.get(name) or short.get(name)
            if spec is None:
                if name in ("application", "configuration"):
                    chosen.extend(s for s in specs if s.category == name)
                    continue
                raise UsageError(f"unknown source {name!r}; configured: {', '.join(sorted(known))}")
            chosen.append(spec)
        specs = chosen
        database = database if want_database else None
    return specs, database


def old_keys(config: Config, names: list[str]) -> list[str]:  # core/backup/job.py
    specs = list(config.sources())
    every = [s.name for s in specs] + (["database"] if config.database.enabled else [])
    if not names:
        return [f"source:{n}" for n in every]
    chosen: set[str] = set()
    for name in names:
        for spec in specs:
            if name in (spec.name, spec.name.split("/", 1)[1], spec.category):
                chosen.add(spec.name)
        if name == "database":
            chosen.add("database")
    return [f"source:{n}" for n in sorted(chosen)]


def old_schedule(config: Config, names: list[str]) -> tuple[str, ...]:  # core/schedule/model.py
    available = (("database",) if config.database.enabled else ()) + tuple(s.name for s in config.sources())
    if not names:
        return available
    wanted: set[str] = set()
    for name in names:
        if name in available:
            wanted.add(name)
        elif name in ("application", "configuration"):
            wanted.update(s for s in available if s.startswith(name + "/"))
        elif name in APPLICATION_SOURCES and f"application/{name}" in available:
            wanted.add(f"application/{name}")
        elif name in CONFIGURATION_SOURCES and f"configuration/{name}" in available:
            wanted.add(f"configuration/{name}")
        else:
            raise UsageError(f"unknown source {name!r}; configured: {', '.join(available) or 'none'}")
    return tuple(s for s in available if s in wanted)


def outcome(call, *args):
    """The result, or the message of the UsageError (exit 2; UnknownSource is one) raised."""
    try:
        return "ok", call(*args)
    except UsageError as exc:
        return "refused", str(exc)


@settings(max_examples=300, deadline=None)
@given(files=st.sets(st.sampled_from(FULL)), database=st.booleans(), names=st.lists(NAMES, max_size=5))
def test_each_caller_resolves_as_before(files: set[str], database: bool, names: list[str]) -> None:
    config = make_config(files, database)
    assert outcome(expand_sources, config, names) == outcome(old_schedule, config, names)
    assert outcome(chosen_sources, config, names) == outcome(old_service, config, names)
    old = set(old_keys(config, names))
    if not database:  # the one change: a disabled database named to the job takes no lock
        old.discard("source:database")
    assert set(_source_keys(config, names)) == old


@pytest.mark.parametrize(
    ("names", "order", "expected"),
    [
        ([], "configured", ("database", "application/user_data", "application/log_files", "configuration/api_keys")),
        (["log_files", "database"], "configured", ("database", "application/log_files")),
        (["log_files", "database"], "named", ("application/log_files", "database")),
        (
            ["application", "log_files"],
            "named",
            ("application/user_data", "application/log_files", "application/log_files"),
        ),
        (["application", "log_files"], "configured", ("application/user_data", "application/log_files")),
        (["configuration/api_keys", "api_keys"], "configured", ("configuration/api_keys",)),
    ],
)
def test_names_resolve(names: list[str], order, expected) -> None:
    config = make_config({"application/user_data", "application/log_files", "configuration/api_keys"}, True)
    assert select_sources(config, names, order=order) == expected


def test_unknown_names_raise_or_are_skipped() -> None:
    config = make_config({"application/log_files"}, False)
    with pytest.raises(UnknownSource, match="unknown source 'database'; configured: application/log_files") as info:
        select_sources(config, ["log_files", "database"])
    assert info.value.database_disabled and info.value.configured == ("application/log_files",)
    assert select_sources(config, ["nope", "database", "log_files"], unknown="skip") == ("application/log_files",)
    assert select_sources(config, ["configuration"]) == ()  # a category with nothing configured: nothing

"""Schedules from config: configured jobs first, then the defaults that fill the gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import parse_config
from core.errors import UsageError
from core.schedule.model import expand_sources, find_schedule, schedules_from_config


def config(tmp_path: Path, **sections):
    data = {
        "storage": {"local_path": str(tmp_path / "repo")},
        "application": {"user_data": [str(tmp_path)], "log_files": [str(tmp_path)]},
        "configuration": {"api_keys": [str(tmp_path)]},
        **sections,
    }
    return parse_config(data, base_dir=tmp_path)


def test_database_frequency_gives_the_database_its_own_default_schedule(tmp_path):
    hourly = config(
        tmp_path,
        database={"enabled": True, "frequency": "hourly"},
        schedule={"cron_expression": "15 2 * * *", "timezone": "Europe/Berlin"},
    )
    found = {s.name: s for s in schedules_from_config(hourly)}
    assert (found["backup-database"].cron, found["backup-database"].sources) == ("15 * * * *", ("database",))
    assert found["backup-database"].timezone == "Europe/Berlin"
    assert found["backup"].sources == ("application/user_data", "application/log_files", "configuration/api_keys")
    weekly = config(tmp_path, database={"enabled": True, "frequency": "weekly"})
    assert {s.name: s.cron for s in schedules_from_config(weekly)}["backup-database"] == "0 2 * * 0"
    daily = config(tmp_path, database={"enabled": True})
    (backup,) = [s for s in schedules_from_config(daily) if s.task == "backup"]
    assert backup.sources[0] == "database"


def test_a_job_naming_the_database_replaces_its_default(tmp_path):
    cfg = config(
        tmp_path,
        database={"enabled": True, "frequency": "hourly"},
        schedule={
            "jobs": [
                {"name": "db", "task": "backup", "sources": ["database"], "cron": "*/30 * * * *"},
                {
                    "name": "everything-else",
                    "task": "backup",
                    "sources": ["application", "api_keys"],
                    "cron": "0 3 * * *",
                },
            ]
        },
    )
    found = [(s.name, s.sources, s.origin) for s in schedules_from_config(cfg) if s.task == "backup"]
    assert found == [
        ("db", ("database",), "config"),
        ("everything-else", ("application/user_data", "application/log_files", "configuration/api_keys"), "config"),
    ]


def test_source_names_and_lookups(tmp_path):
    cfg = config(tmp_path)
    assert expand_sources(cfg, ["log_files", "configuration"]) == ("application/log_files", "configuration/api_keys")
    with pytest.raises(UsageError, match="unknown source 'database'"):
        expand_sources(cfg, ["database"])
    with pytest.raises(UsageError, match="no schedule named 'x'; configured: backup, verify-quick, verify-full"):
        find_schedule(schedules_from_config(cfg), "x")

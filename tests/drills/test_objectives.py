"""Objectives: the [objectives] config with its key paths, and the achieved RPO per source
from real snapshot manifests and a recovery window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import ConfigError, parse_config
from core.drills.objectives import evaluate_objectives, worst
from core.repository.snapshot import Snapshot

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TREE = "ab" * 32


def config(objectives: dict | None = None, db: bool = True):
    data = {
        "storage": {"local_path": "/var/backups/axisor"},
        "application": {"user_data": ["/srv/data"]},
        "configuration": {"ssl_certificates": ["/etc/ssl/axisor"]},
    }
    if db:
        data["database"] = {"enabled": True, "url": "postgresql://db/axisor"}
    if objectives is not None:
        data["objectives"] = objectives
    return parse_config(data, base_dir=Path("/"))


def snap(source: str, age: timedelta, *, tags: tuple[str, ...] = (), sid: str = "1") -> Snapshot:
    return Snapshot(time=(NOW - age).isoformat(), source=source, paths=("/x",), tree=TREE, tags=tags, id=sid * 64)


@dataclass(frozen=True)
class Window:
    end: datetime | None


def test_defaults_categories_and_sources_inherit():
    c = config(
        {
            "rpo": "12h",
            "rto": "2h",
            "database": {"rpo": "15m"},
            "application": {"rto": "30m"},
            "application/user_data": {"rpo": "1h30m"},
        }
    )
    assert c.objectives.for_source("database").rpo == timedelta(minutes=15)
    assert c.objectives.for_source("database").rto == timedelta(hours=2)
    assert c.objectives.for_source("application/user_data").rpo == timedelta(hours=1, minutes=30)
    assert c.objectives.for_source("application/user_data").rto == timedelta(minutes=30)  # its category's
    assert c.objectives.for_source("configuration/ssl_certificates").rpo == timedelta(hours=12)
    d = config()
    assert d.objectives.rpo == timedelta(hours=26) and d.objectives.rto == timedelta(hours=4)


def test_bad_objectives_name_their_key_paths():
    with pytest.raises(ConfigError) as e:
        config(
            {
                "rpo": "soon",
                "rto": "0m",
                "critical_factor": 0.5,
                "databse": {"rpo": "1h"},
                "database": {"rpo": "1h", "rtp": "2h"},
                "application/user_data": "1h",
            }
        )
    text = str(e.value)
    assert 'objectives.rpo: must be a duration such as "24h"' in text
    assert "objectives.rto: must be longer than zero" in text
    assert "objectives.critical_factor: must be a number from 1 to 100" in text
    assert "objectives.databse: unknown key (did you mean 'database'?)" in text
    assert "objectives.database.rtp: unknown key (did you mean 'rto'?)" in text
    assert "objectives.application/user_data: must be a table" in text


def test_drill_checks_are_validated():
    base = {"storage": {"local_path": "/r"}}
    with pytest.raises(ConfigError) as e:
        parse_config(
            {
                **base,
                "drills": {
                    "scratch": "tmp",
                    "table": "orders",
                    "checks": [
                        {"name": "a", "sql": "SELECT 1"},
                        {"name": "b", "path": "/etc/x", "source": "application/user_data"},
                        {"name": "c", "path": "x"},
                        {"name": "d"},
                    ],
                },
            },
            base_dir=Path("/"),
        )
    text = str(e.value)
    assert "drills.scratch: must be one of 'cluster', 'database'" in text
    assert "drills.table: must be schema.table" in text
    assert "drills.checks[0].expect: required with sql" in text
    assert "drills.checks[1].path: must be relative to the restored source" in text
    assert "drills.checks[2].source: required with path" in text
    assert "drills.checks[3]: give one of sql (with expect), path (with source) or paths_sql" in text


def test_statuses_from_snapshot_ages():
    c = config({"rpo": "24h", "database": {"rpo": "1h"}})
    snaps = [
        snap("application/user_data", timedelta(hours=30), sid="a"),
        snap("application/user_data", timedelta(hours=5), sid="b"),
        # A safety snapshot is what a restore overwrote, not a backup: never counts.
        snap("application/user_data", timedelta(minutes=1), tags=("safety",), sid="c"),
        snap("database", timedelta(hours=1, minutes=30), sid="d"),
    ]
    got = {s.source: s for s in evaluate_objectives(c, snaps, NOW)}
    assert list(got) == ["application/user_data", "configuration/ssl_certificates", "database"]
    ud = got["application/user_data"]
    assert (ud.status, ud.achieved_rpo, ud.snapshot, ud.via) == ("ok", timedelta(hours=5), "b" * 8, "snapshot")
    assert got["database"].status == "warning"  # 1.5 h against 1 h: within twice the objective
    assert "over the 60m objective" in got["database"].message
    ssl = got["configuration/ssl_certificates"]
    assert (ssl.status, ssl.newest, ssl.via) == ("critical", None, "none")
    assert worst(got.values()) == "critical"
    assert ud.to_dict()["achieved_rpo_seconds"] == 5 * 3600


def test_the_pitr_window_is_the_newest_restorable_point():
    c = config({"database": {"rpo": "15m"}})
    snaps = [snap("database", timedelta(hours=20))]
    st = [s for s in evaluate_objectives(c, snaps, NOW, Window(NOW - timedelta(minutes=4))) if s.source == "database"][
        0
    ]
    assert (st.status, st.via, st.achieved_rpo) == ("ok", "pitr", timedelta(minutes=4))
    late = [s for s in evaluate_objectives(c, snaps, NOW, Window(NOW - timedelta(hours=3))) if s.source == "database"][
        0
    ]
    assert late.status == "critical"  # 3 h against 15 m


def test_now_must_be_aware_and_disabled_database_is_not_measured():
    with pytest.raises(ValueError):
        evaluate_objectives(config(), [], datetime(2026, 1, 1))
    assert [s.source for s in evaluate_objectives(config(db=False), [], NOW)] == [
        "application/user_data",
        "configuration/ssl_certificates",
    ]

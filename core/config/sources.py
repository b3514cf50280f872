"""Source names: what a name a user (or a schedule) gives stands for among the configured sources.

Every front door that takes source names resolves them here: a backup run
(core/service/backup.py), the backup job's per-source locks (core/backup/job.py) and a
schedule's sources (core/schedule/model.py). A name is a full source name
(``application/log_files``), its short name (``log_files``), a category (``application``,
``configuration``: its configured sources, perhaps none) or ``database`` (when
``[database] enabled``).

The callers differ on purpose in two ways, each a parameter of ``select_sources``:

- ``order``: a backup run takes the file sources in the order they were named, a source
  named twice (``application`` and ``log_files``) twice ("named"); a schedule keeps them in
  configured order, the database first, each once ("configured"); the job's locks are a
  set, sorted by the engine, so either does;
- ``unknown``: a run and a schedule refuse a name that stands for nothing ("raise",
  UnknownSource); the job's locks skip it ("skip"), as the run it guards refuses it a
  moment later with the service's own message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from core.config.model import Config
from core.errors import UsageError

DATABASE = "database"
CATEGORIES = ("application", "configuration")


class UnknownSource(UsageError):
    """A source name that stands for no configured source. ``configured``: every source
    a backup can name, in configured order; ``database_disabled``: the name is
    ``database`` and ``[database] enabled`` is false."""

    def __init__(self, name: str, configured: tuple[str, ...]) -> None:
        self.name = name
        self.configured = configured
        self.database_disabled = name == DATABASE
        super().__init__(f"unknown source {name!r}; configured: {', '.join(configured) or 'none'}")


def configured_sources(config: Config) -> tuple[str, ...]:
    """Every source a backup can name, in the order a backup set takes them."""
    names = [DATABASE] if config.database.enabled else []
    names.extend(spec.name for spec in config.sources())
    return tuple(names)


def source_matches(available: Sequence[str], name: str) -> tuple[str, ...] | None:
    """The sources of ``available`` (full names) that ``name`` stands for, in their order;
    None when it stands for none (a category with no configured source stands for ())."""
    if name in available:
        return (name,)
    if name in CATEGORIES:
        return tuple(s for s in available if s.startswith(name + "/"))
    full = [s for s in available if "/" in s and s.split("/", 1)[1] == name]
    return tuple(full) if full else None


def select_sources(
    config: Config,
    names: Sequence[str],
    *,
    order: Literal["configured", "named"] = "configured",
    unknown: Literal["raise", "skip"] = "raise",
) -> tuple[str, ...]:
    """User-given source names -> full source names (``database`` among them); no names:
    every configured source, in configured order. ``order`` and ``unknown``: see above.
    Names are checked in the order given, so the first bad one is the one reported."""
    available = configured_sources(config)
    if not names:
        return available
    chosen: list[str] = []
    for name in names:
        found = source_matches(available, name)
        if found is None:
            if unknown == "raise":
                raise UnknownSource(name, available)
            continue
        chosen.extend(found)
    if order == "named":
        return tuple(chosen)
    wanted = set(chosen)
    return tuple(s for s in available if s in wanted)


__all__ = ["CATEGORIES", "DATABASE", "UnknownSource", "configured_sources", "select_sources", "source_matches"]

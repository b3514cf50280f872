"""`axisor-backup config check [--connect]`: validate the config and report every problem, the
missing optional installs and deprecated keys; with --connect, the database's checks that do not wait."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from app.cli_database import checks_text
from app.cli_output import Output
from core.config import Config, ConfigError, ConfigProblem, deprecations, load_config
from core.errors import ArchivingNotReady, AxisorError, Exit

EXIT_OK = Exit.OK
EXIT_USAGE = Exit.USAGE


def config_check(config_path: Path, out: Output, connect: bool = False) -> int:
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        message = str(exc)
        out.emit(
            {
                "ok": False,
                "path": str(config_path),
                "problems": [{"key": p.key, "message": p.message} for p in exc.problems],
            },
            lambda: message,
        )
        return EXIT_USAGE
    missing = _missing_extras(cfg)
    if missing:
        message = "\n".join(f"{config_path}: {p}" for p in missing)
        out.emit(
            {
                "ok": False,
                "path": str(config_path),
                "problems": [{"key": p.key, "message": p.message} for p in missing],
            },
            lambda: message,
        )
        return EXIT_USAGE
    # The file sources, and the database when [database] is enabled (a backup takes it too).
    sources = [*(["database"] if cfg.database.enabled else []), *(s.name for s in cfg.sources())]
    line = (
        f"{config_path}: ok ({len(sources)} source{'' if len(sources) == 1 else 's'}: {', '.join(sources) or 'none'})"
    )
    # Deprecated keys do not fail the check; they are listed above the verdict (and in
    # JSON as "warnings", present only when there are some).
    warnings = deprecations(cfg)
    if warnings:
        line = "\n".join([*(f"{config_path}: warning: {w}" for w in warnings), line])
    extra = {"warnings": [{"key": w.key, "message": w.message} for w in warnings]} if warnings else {}
    if not connect:
        out.emit({"ok": True, "path": str(config_path), "sources": sources, **extra}, lambda: line)
        return EXIT_OK
    return _config_check_connect(cfg, config_path, sources, line, out, extra)


def _config_check_connect(
    cfg: Config, config_path: Path, sources: list[str], line: str, out: Output, extra: Mapping[str, object]
) -> int:
    """`config check --connect`: the checks of `database check` that do not wait (no WAL switch)."""
    from core.sources.postgres.dbcheck import run_checks
    from core.storage.local import LocalBackend

    if not cfg.database.enabled:
        out.emit(
            {"ok": True, "path": str(config_path), "sources": sources, **extra, "database": None},
            lambda: f"{line}\ndatabase: not enabled ([database] enabled = false), nothing to connect to",
        )
        return EXIT_OK
    try:
        report = asyncio.run(
            run_checks(
                cfg.database,
                config_path,
                LocalBackend(cfg.storage.local_path),
                passphrase_file=cfg.storage.passphrase_file,
                wait=False,
            )
        )
    except AxisorError as exc:
        Output.note(f"error: {exc}")
        return exc.exit_code
    out.emit(
        {"ok": report.ok, "path": str(config_path), "sources": sources, **extra, "database": report.as_dict()},
        lambda: f"{line}\n{checks_text(report)}",
    )
    return EXIT_OK if report.ok else ArchivingNotReady.exit_code


def _missing_extras(cfg: Config) -> list[ConfigProblem]:
    """Locations whose storage SDK (an optional install) is missing on this host."""
    from core.storage.extras import install_hint, missing_extra

    problems = []
    for i, loc in enumerate(cfg.storage.remote_storage):
        extra = missing_extra(loc.provider)
        if extra is not None:
            problems.append(
                ConfigProblem(
                    f"storage.remote_storage[{i}].provider",
                    f"'{loc.provider}' needs the optional {extra!r} support, which is not "
                    f"installed: {install_hint(extra)}",
                )
            )
    return problems

"""Job kinds: which runner does each kind of job. The engine asks ``runner_for(kind)``.

The runners live beside their domains and know only the contract in core/runner.py; this
table is where the engine, above them, takes them in. Each module is imported on first use:
importing the engine stays cheap (the drill and copy modules cost ~0.1 s), and one broken
module costs only its own kind.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from core import scrub
from core.errors import UsageError

# The runners' contract, re-exported: the engine and older callers import it from here.
from core.runner import (
    LOCK_WAIT_SECONDS,
    PRIMARY_LOCATION,
    JobCancelled,
    JobContext,
    JobFailed,
    Runner,
    retry_when_locked,
    snapshot_dict,
)

# kind -> (module, runner function).
KINDS: dict[str, tuple[str, str]] = {
    "backup": ("core.backup.job", "backup_runner"),
    "restore": ("core.restore.job", "restore_runner"),
    "verify": ("core.verify.job", "verify_runner"),
    "copy": ("core.locations.jobs", "copy_runner"),
    "prune": ("core.maintenance.jobs", "prune_runner"),
    "drill": ("core.drills.jobs", "drill_runner"),
    "restore-test": ("core.drills.restore_test_job", "restore_test_runner"),
    "probe": ("core.locations.probe_job", "probe_runner"),
}
_RUNNERS: dict[str, Runner] = {}


def register(kind: str, runner: Runner) -> None:
    """A kind beyond the table (tests register their own)."""
    _RUNNERS[kind] = runner


def runner_for(kind: str) -> Runner:
    if kind not in _RUNNERS and kind in KINDS:
        module, name = KINDS[kind]
        try:
            _RUNNERS[kind] = getattr(importlib.import_module(module), name)
        except ImportError as exc:  # one broken optional module must not stop backups
            logging.getLogger("axisor.jobs").error(
                "job kind not loaded", extra={"kind": kind, "module": module, "error": str(exc)}
            )
            raise UsageError(f"job kind {kind!r} cannot be loaded: {exc}") from exc
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise UsageError(f"unknown job kind {kind!r}; known: {', '.join(registered())}") from None


def registered() -> tuple[str, ...]:
    return tuple(sorted({*KINDS, *_RUNNERS}))


def refuse_secrets(params: Any, where: str = "params") -> None:
    """Refuse params that carry a password (a URL's, a query's or a conninfo's): job records
    and logs never hold secrets."""
    if isinstance(params, dict):
        for key, value in params.items():
            refuse_secrets(value, f"{where}.{key}")
    elif isinstance(params, list):
        for i, value in enumerate(params):
            refuse_secrets(value, f"{where}[{i}]")
    elif isinstance(params, str):
        form = scrub.find(params)
        if form:
            raise UsageError(
                f"{where} holds {form}; job records never hold secrets: "
                "put it in PGPASSWORD, a passfile or a credentials file instead"
            )


__all__ = [
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "KINDS",
    "LOCK_WAIT_SECONDS",
    "PRIMARY_LOCATION",
    "Runner",
    "refuse_secrets",
    "register",
    "registered",
    "retry_when_locked",
    "runner_for",
    "snapshot_dict",
]

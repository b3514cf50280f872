"""The environment a child process starts with: an allow-list, never ours whole.

Our own environment can hold the repository passphrase, a database password and cloud
keys. A child gets only what it needs to run (locale, time zone, paths) plus what its
kind needs: libpq's PG* settings for PostgreSQL clients, nothing more for a notification
command or a server we start. The passphrase command is the exception and is not started
from here: it is the operator's own secret tool and gets the operator's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

BASE = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
BASE_PREFIXES = ("LC_",)
# libpq's environment (the PostgreSQL manual, "Environment Variables"); PGPASSWORD only for
# clients, and only when the operator set it or the config gave a password.
LIBPQ = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGSSLNEGOTIATION",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
    "PGSYSCONFDIR",
    "PGLOCALEDIR",
)
# Where our own programs find their config and state: a server we start runs
# `axisor-backup wal-fetch` as its restore_command. Never the passphrase variables.
OURS = ("AXISOR_BACKUP_CONFIG", "AXISOR_BACKUP_STATE_DIR", "AXISOR_BACKUP_PROGRAM")


def child_env(
    extra: Mapping[str, str] | None = None,
    *,
    libpq: bool = False,
    password: bool = False,
    ours: bool = False,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The allowed part of ``source`` (default: our environment), then ``extra`` on top."""
    env = os.environ if source is None else source
    allowed = set(BASE) | (set(LIBPQ) if libpq else set()) | (set(OURS) if ours else set())
    if libpq and password:
        allowed.add("PGPASSWORD")
    out = {k: v for k, v in env.items() if k in allowed or k.startswith(BASE_PREFIXES)}
    out.setdefault("PATH", os.defpath)
    if extra:
        out.update(extra)
    return out

"""pg_dump's command line and environment for a logical backup, defined once for the dump the
backup run starts (dump_start.py) and the one started before the program has loaded
(prestart.py). Standard library and core.childenv only: prestart.py imports it before
anything heavy is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.childenv import child_env

# Output settings pg_dump leaves to the session; pinned for the dump and for validation
# (dumpsum.py), so a table's COPY text, and so its checksum, is the same on any server.
PGOPTIONS = "-c TimeZone=UTC -c bytea_output=hex"


def client_env(password: str | None, passfile: Path | None) -> dict[str, str]:
    """A PostgreSQL client program's environment: libpq's settings and a password, nothing
    else of ours (never the repository passphrase or cloud keys)."""
    env = child_env(libpq=True, password=True)
    if password is not None:
        env["PGPASSWORD"] = password
    elif passfile is not None:
        env["PGPASSFILE"] = str(passfile)
    return env


def dump_env(password: str | None, passfile: Path | None) -> dict[str, str]:
    """pg_dump's environment: ``client_env`` plus the pinned output settings."""
    env = client_env(password, passfile)
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} {PGOPTIONS}".strip()
    return env


def dump_argv(pg_dump: Path, snapshot: str, conninfo: str, options: Sequence[str] = ()) -> list[str]:
    """pg_dump writing an uncompressed custom-format archive to stdout from ``snapshot`` (an
    exported one); ``conninfo`` never holds a password (connection.py, prestart.py)."""
    return [
        str(pg_dump),
        "--format=custom",
        "--compress=0",
        f"--snapshot={snapshot}",
        "--no-password",
        *options,
        "-d",
        conninfo,
    ]

"""A location's secrets: reading its credentials_file (one error message per failure,
naming the file and never a value; S3/GCS, Azure and FTP each parse the text their own
way), and refusing a transport that would carry them in the clear."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.config import insecure_endpoint
from core.storage.backend import StorageError


def read_credentials_file(path: Path, where: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StorageError(f"{where}: credentials_file {path} does not exist") from None
    except OSError as exc:
        raise StorageError(f"{where}: credentials_file {path} cannot be read ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            # Like ssh with a private key: a secret every local user can read is no secret.
            raise StorageError(
                f"{where}: credentials_file {path} is readable or writable by every user "
                f"(mode {stat.S_IMODE(mode):04o}); chmod o-rwx {path}"
            )
        with os.fdopen(fd, encoding="utf-8", closefd=False) as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise StorageError(f"{where}: credentials_file {path} cannot be read ({type(exc).__name__})") from None
    finally:
        os.close(fd)


def refuse_insecure(loc: Any, endpoint: str) -> None:
    """Refuse an unencrypted endpoint unless the location says ``allow_insecure = true``
    (config validation says the same first; this holds for every way a backend is built
    from a config)."""
    if insecure_endpoint(loc.provider, endpoint) and not getattr(loc, "allow_insecure", False):
        raise StorageError(
            f"location {loc.name}: {endpoint} is not encrypted: use https:// or ftps://, "
            "or set allow_insecure = true on this location"
        )


def key_values(text: str, keys: Iterable[str]) -> dict[str, str]:
    """The ``name = value`` lines of ``text`` whose name is one of ``keys`` (quotes dropped)."""
    wanted = set(keys)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() in wanted:
            fields[name.strip()] = value.strip().strip('"')
    return fields

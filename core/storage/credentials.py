"""Reading a location's credentials_file: one error message per failure, naming the file
and never a value (S3/GCS, Azure and FTP each parse the text their own way)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from core.storage.backend import StorageError


def read_credentials_file(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StorageError(f"{where}: credentials_file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"{where}: credentials_file {path} cannot be read ({type(exc).__name__})") from None


def key_values(text: str, keys: Iterable[str]) -> dict[str, str]:
    """The ``name = value`` lines of ``text`` whose name is one of ``keys`` (quotes dropped)."""
    wanted = set(keys)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() in wanted:
            fields[name.strip()] = value.strip().strip('"')
    return fields

"""Which optional install ("extra") each storage provider needs.

The storage SDKs are extras (`axisor-backup[s3]`, `[azure]`, `[ftp]`, `[all]`) so the base
install stays small; a location whose SDK is missing is refused by name when it is used,
and listed by `config check`, instead of failing with an ImportError deep in a copy."""

from __future__ import annotations

import importlib.util

from core.errors import UsageError

# provider -> (extra, the module that proves it is installed)
EXTRAS: dict[str, tuple[str, str]] = {
    "aws-s3": ("s3", "aiobotocore"),
    "gcp-storage": ("s3", "aiobotocore"),
    "azure-blob": ("azure", "azure.storage.blob"),
    "ftp": ("ftp", "aioftp"),
}


class MissingExtra(UsageError):
    """A location's provider needs an optional install that this host lacks (exit 2)."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked in sys.modules
        return False


def missing_extra(provider: str) -> str | None:
    """The extra to install for ``provider``, or None when nothing is missing."""
    need = EXTRAS.get(provider)
    if need is None or _installed(need[1]):
        return None
    return need[0]


def install_hint(extra: str) -> str:
    return f"pip install 'axisor-backup[{extra}]' (from a checkout: uv sync --extra {extra})"


def require_extra(name: str, provider: str) -> None:
    extra = missing_extra(provider)
    if extra is not None:
        raise MissingExtra(
            f"location {name!r} (provider {provider}) needs the optional {extra!r} support, "
            f"which is not installed: {install_hint(extra)}"
        )


__all__ = ["EXTRAS", "MissingExtra", "install_hint", "missing_extra", "require_extra"]

"""Build a Backend from a location's config.

Every remote backend comes back wrapped in ``RetryingBackend`` so callers get retries,
timeouts and bounded concurrency without knowing which provider they hold; a location
with a bandwidth limit (limit_upload, limit_download) in ``ThrottledBackend`` on top. Provider
modules are imported only when used: a host without, say, the Azure SDK can still run
S3 and SFTP locations.
"""

from __future__ import annotations

from core.config import Config, RemoteStorageConfig, StorageConfig
from core.storage.backend import Backend
from core.storage.extras import require_extra
from core.storage.local import LocalBackend
from core.storage.throttle import throttled

__all__ = ["PRIMARY_NAME", "as_local", "open_backend", "open_location_backends", "open_primary"]

# The name the primary location (storage.local_path) goes by in copies, catalogs and the UI.
PRIMARY_NAME = "local"


def open_primary(storage: StorageConfig) -> Backend:
    """The backend of the primary repository (storage.local_path), with its limits."""
    return throttled(LocalBackend(storage.local_path), storage.limit_upload, storage.limit_download)


def as_local(backend: Backend) -> LocalBackend | None:
    """The LocalBackend under ``backend`` (itself, or under a bandwidth limit); None for
    any other kind of location."""
    inner = getattr(backend, "inner", None) if not isinstance(backend, LocalBackend) else backend
    return inner if isinstance(inner, LocalBackend) else None


def open_backend(loc: RemoteStorageConfig) -> Backend:
    """The backend for one ``[[storage.remote_storage]]`` entry (nothing connects yet)."""
    return throttled(_open_unlimited(loc), loc.limit_upload, loc.limit_download)


def _open_unlimited(loc: RemoteStorageConfig) -> Backend:
    from core.storage.retry import RetryPolicy, RetryingBackend

    policy = RetryPolicy(retries=loc.retries, timeout=float(loc.timeout_seconds))
    require_extra(loc.name, loc.provider)
    inner: Backend
    if loc.provider == "local":
        assert loc.path is not None  # config validation requires it
        # Unwrapped: a local disk has no transient failures worth retrying, and restore
        # and verify use LocalBackend.get_sync directly from worker threads.
        return LocalBackend(loc.path)
    if loc.provider in ("aws-s3", "gcp-storage"):
        from core.storage.s3 import S3Backend

        inner = S3Backend.from_config(loc)
    elif loc.provider == "sftp":
        from core.storage.sftp import SFTPBackend

        inner = SFTPBackend.from_config(loc)
    elif loc.provider == "ssh":
        from core.storage.ssh import SSHBackend

        inner = SSHBackend.from_config(loc)
    elif loc.provider == "azure-blob":
        from core.storage.azure import AzureBackend

        inner = AzureBackend.from_config(loc)
    elif loc.provider == "ftp":
        from core.storage.ftp import FTPBackend

        inner = FTPBackend.from_config(loc)
    else:  # config validation only lets known providers through
        raise ValueError(f"unknown storage provider {loc.provider!r}")
    return RetryingBackend(inner, policy, concurrency=loc.concurrency)


def open_location_backends(config: Config) -> list[tuple[str, Backend]]:
    """Every location by name: the primary (storage.local_path) first, then each remote
    in config order."""
    out: list[tuple[str, Backend]] = [(PRIMARY_NAME, open_primary(config.storage))]
    for loc in config.storage.remote_storage:
        out.append((loc.name, open_backend(loc)))
    return out

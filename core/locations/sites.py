"""Every configured location, opened lazily, with repositories sharing one master key.

The primary location is ``storage.local_path`` (name ``local``); each
``[[storage.remote_storage]]`` entry is another location. All of them hold replicas of
one repository: the same config object and key files, so one passphrase opens any of
them and packs are valid everywhere as they are. Only the first repository opened pays
for the passphrase's scrypt; the others are opened with the master key already unwrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core import crypto
from core.config import Config
from core.errors import AxisorError, DamagedObject, RepositoryNotFound, UsageError
from core.repository import keyring, repo_config
from core.repository.repository import Repository
from core.storage.backend import Backend, StorageError
from core.storage.factory import PRIMARY_NAME, open_backend
from core.storage.extras import MissingExtra

__all__ = ["LocationInfo", "LocationMismatch", "Sites", "PRIMARY_NAME", "is_unavailable", "open_with_master"]

PassphraseSource = Callable[[bool], str]


class LocationMismatch(UsageError):
    """A location holds a repository other than the one the primary holds."""


@dataclass(frozen=True, slots=True)
class LocationInfo:
    name: str
    provider: str  # "local" for the primary and for provider = "local" entries
    where: str  # a path or URL without credentials
    primary: bool


class Sites:
    """The locations of one config. Backends connect on first use; ``close`` closes them."""

    def __init__(
        self, config: Config, primary: Backend, passphrase: PassphraseSource, prepare: Callable[[Repository], None]
    ) -> None:
        self.config = config
        self._passphrase = passphrase
        self._prepare = prepare  # gives each opened repository the service's workers and settings
        self._remote = {loc.name: loc for loc in config.storage.remote_storage}
        if PRIMARY_NAME in self._remote:
            raise UsageError(
                f"storage.remote_storage: the name {PRIMARY_NAME!r} is reserved for the primary "
                "location (storage.local_path); choose another name"
            )
        self._backends: dict[str, Backend] = {PRIMARY_NAME: primary}
        self._repos: dict[str, Repository] = {}
        self._master: crypto.MasterKey | None = None
        self._retired: tuple[bytes, ...] = ()  # the opened location's retired keys (key rotate)

    @property
    def names(self) -> list[str]:
        """Primary first, then the remote locations in config order."""
        return [PRIMARY_NAME, *self._remote]

    @property
    def secondaries(self) -> list[str]:
        return list(self._remote)

    def check(self, name: str) -> str:
        if name != PRIMARY_NAME and name not in self._remote:
            raise UsageError(f"unknown location {name!r}; configured: {', '.join(self.names)}")
        return name

    def info(self, name: str) -> LocationInfo:
        self.check(name)
        if name == PRIMARY_NAME:
            return LocationInfo(name, "local", str(self.config.storage.local_path), True)
        loc = self._remote[name]
        try:
            where = self.backend(name).location
        except MissingExtra:  # this host cannot use it; say where it is all the same
            where = f"{loc.provider}:{loc.bucket_name or loc.endpoint or loc.path or ''}"
        return LocationInfo(name, loc.provider, where, False)

    def backend(self, name: str) -> Backend:
        self.check(name)
        if name not in self._backends:
            self._backends[name] = open_backend(self._remote[name])
        return self._backends[name]

    def adopt(self, name: str, repo: Repository) -> None:
        """Share a repository the caller already opened (the service's current one)."""
        self._repos[name] = repo
        if not repo.write_only:  # a write-only key opens no other location (repository() refuses)
            if self._master is None:
                self._master = repo.require_full("use other locations")
                self._retired = repo.retired

    async def repository(self, name: str) -> Repository:
        """The repository at ``name``, opened (index not loaded)."""
        if name in self._repos:
            return self._repos[name]
        backend = self.backend(name)
        if self._master is not None:
            repo = await open_with_master(backend, self._master, name, self._retired)
        else:
            repo = await Repository.open(backend, self._passphrase(False))
            self._master = repo.require_full("read the repository or its other locations")
            self._retired = repo.retired
        self._prepare(repo)
        self._repos[name] = repo
        return repo

    def forget(self, name: str) -> None:
        """Drop a cached repository (after a replica was created or failed midway)."""
        self._repos.pop(name, None)

    async def close(self) -> None:
        for name, backend in self._backends.items():
            if name != PRIMARY_NAME:  # the service closes the primary
                try:
                    await backend.close()
                except (AxisorError, OSError):
                    pass  # closing a connection that already broke must not hide the real result


async def open_with_master(
    backend: Backend, master: crypto.MasterKey, name: str, retired: tuple[bytes, ...] = ()
) -> Repository:
    """Open a replica without scrypt: its sealed config must open with ``master``. Its objects
    may be sealed under a key retired here or at the primary (copies are byte for byte): both
    keyrings' keys are tried."""
    public = await repo_config.read_public(backend)
    try:
        # A location the last rotation could not reach keeps its config under a retired key.
        config = repo_config.decode(public, crypto.Cipher(master, retired))
    except (crypto.DecryptError, ValueError, KeyError, TypeError):
        raise LocationMismatch(
            f"location {name!r} ({backend.location}) holds another repository (id {str(public.get('id'))[:8]}): "
            "its config does not open with this repository's key; point it at an empty place or at a replica"
        ) from None
    ring = await keyring.read(backend, master, retired)
    repo = Repository(backend, master, config, retired=tuple(dict.fromkeys(retired + ring.keys)))
    repo.keyring_damaged = ring.damaged
    return repo


def is_unavailable(exc: BaseException) -> bool:
    """Whether a failure means the location cannot serve now (down, lost, emptied, damaged,
    another repository), so another location may be tried; a wrong passphrase or an unknown
    snapshot is an answer about the request instead."""
    return isinstance(
        exc, (StorageError, RepositoryNotFound, DamagedObject, LocationMismatch, MissingExtra, OSError, TimeoutError)
    )

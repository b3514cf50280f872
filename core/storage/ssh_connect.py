"""One SSH connection as every SSH-borne location makes it (sftp: core/storage/sftp.py;
ssh, an `axisor-backup serve` at the other end: core/storage/ssh.py).

Trust: the server's host key must be in known_hosts (the configured file, else
~/.ssh/known_hosts) or match the pinned ``host_key_fingerprint``; otherwise the
connection is refused and the message carries the key's fingerprint, so an operator can
check it out of band and pin it. Authentication is by the configured key file, else the
SSH agent and the user's default keys. No OpenSSH config file is read: it could add hosts
or keys behind the operator's back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh

from core.storage.backend import StorageError
from core.storage.retry import TransientError


class HostKeyRefused(StorageError):
    """The server's host key is neither in known_hosts nor the pinned fingerprint."""


def parse_endpoint(endpoint: str, default_port: int) -> tuple[str, int, str | None, str]:
    """``host``, ``host:port``, ``[v6]:port`` or ``scheme://user@host:port/path`` ->
    (host, port, user, path)."""
    text = endpoint if "://" in endpoint else f"x://{endpoint}"
    parts = urlsplit(text)
    try:
        port = parts.port or default_port
    except ValueError:
        raise StorageError(f"endpoint {endpoint!r} has an invalid port") from None
    if not parts.hostname:
        raise StorageError(f"endpoint {endpoint!r} names no host")
    return parts.hostname, port, parts.username, parts.path


class _Client(asyncssh.SSHClient):
    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        # Called only for a key known_hosts does not vouch for.
        fingerprint = key.get_fingerprint("sha256")
        self.seen = fingerprint
        return self.pinned is not None and fingerprint == self.pinned


def reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


async def ssh_connect(
    location: str,
    host: str,
    port: int,
    username: str,
    *,
    known_hosts: Path | None,
    host_key_fingerprint: str | None,
    key_file: Path | None,
    timeout: float,
) -> asyncssh.SSHClientConnection:
    """A connection, or a StorageError naming ``location`` and what to do (a TransientError
    for what may pass: a refused or dropped connection, a timeout)."""
    if known_hosts is not None:
        if not known_hosts.is_file():
            raise StorageError(f"{location}: known_hosts file {known_hosts} does not exist")
        known: Any = str(known_hosts)
    elif host_key_fingerprint is not None:
        known = asyncssh.import_known_hosts("")  # trust only the pinned key
    else:
        default = Path.home() / ".ssh" / "known_hosts"
        known = str(default) if default.is_file() else asyncssh.import_known_hosts("")
    options: dict[str, Any] = dict(
        username=username,
        known_hosts=known,
        connect_timeout=timeout,
        keepalive_interval=max(5.0, timeout / 3),
        keepalive_count_max=3,
        config=None,
    )
    if key_file is not None:
        if not key_file.is_file():
            raise StorageError(f"{location}: key_file {key_file} does not exist")
        options["client_keys"] = [str(key_file)]
        options["agent_path"] = None
    client = _Client(host_key_fingerprint)
    try:
        conn, _ = await asyncssh.create_connection(lambda: client, host, port, **options)
    except asyncssh.HostKeyNotVerifiable:
        seen = client.seen or "unknown"
        raise HostKeyRefused(
            f"{location}: host key {seen} is not trusted; if it is the server's "
            f'(check out of band), add it to known_hosts or set host_key_fingerprint = "{seen}"'
        ) from None
    except asyncssh.PermissionDenied:
        raise StorageError(f"{location}: login refused for {username}; check key_file or the SSH agent") from None
    except asyncssh.KeyImportError:
        raise StorageError(
            f"{location}: key_file {key_file} cannot be read as a private key (encrypted keys need the SSH agent)"
        ) from None
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        raise TransientError(f"{location}: cannot connect ({reason(exc)})") from None
    return conn


class SSHEndpoint:
    """Where and as whom an SSH-borne location connects, shared by SFTPBackend and
    SSHBackend: the config's fields, and the connection made from them."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        username: str | None = None,
        root: str = "",
        known_hosts: Path | None = None,
        host_key_fingerprint: str | None = None,
        key_file: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        import getpass

        self.host = host
        self.port = port
        self.username = username or getpass.getuser()
        self.root = root
        self.known_hosts = known_hosts
        self.host_key_fingerprint = host_key_fingerprint
        self.key_file = key_file
        self.timeout = timeout

    @classmethod
    def from_config(cls, loc: Any) -> Any:
        """From a ``[[storage.remote_storage]]`` entry (sftp or ssh)."""
        host, port, user, path = parse_endpoint(loc.endpoint, 22)
        return cls(
            host,
            port=port,
            username=loc.username or user,
            root=loc.path_prefix or path or "",
            known_hosts=loc.known_hosts,
            host_key_fingerprint=loc.host_key_fingerprint,
            key_file=loc.key_file,
            timeout=float(loc.timeout_seconds),
        )

    @property
    def location(self) -> str:  # each backend names itself
        raise NotImplementedError

    @property
    def _host_text(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    async def _ssh(self) -> asyncssh.SSHClientConnection:
        return await ssh_connect(
            self.location,
            self.host,
            self.port,
            self.username,
            known_hosts=self.known_hosts,
            host_key_fingerprint=self.host_key_fingerprint,
            key_file=self.key_file,
            timeout=self.timeout,
        )


__all__ = ["HostKeyRefused", "SSHEndpoint", "parse_endpoint", "reason", "ssh_connect"]

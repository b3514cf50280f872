"""`axisor-backup serve --listen HOST:PORT`: the serve protocol (core/storage/serve.py) behind
its own SSH server (asyncssh), for a backup server without OpenSSH forced commands.

It has its own host key and two lists of client keys (OpenSSH authorized_keys format):
a key in ``--authorized-keys`` gets an append-only session (the backed-up hosts), a key in
``--trusted-keys`` a full one (the host that prunes). No shell, no port forwarding, no
SFTP: every session is the serve protocol on ``--path``, or on the folder below it that the
client's command asks for (app/cli_serve.py ``served_folder``'s rule). Passwords and
keyboard-interactive logins are refused.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import asyncssh

from core.storage.serve import Server
from core.storage.serve_wire import WireError

log = logging.getLogger(__name__)


class _Gate(asyncssh.SSHServer):
    """Public keys only; which list the key came from decides the session's policy."""

    def __init__(self, append: Any, trusted: Any) -> None:
        self.append, self.trusted = append, trusted
        self.append_only = True

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.trusted is not None and self.trusted.validate(key, "", "") is not None:
            self.append_only = False
            return True
        return self.append is not None and self.append.validate(key, "", "") is not None


async def listen(
    host: str,
    port: int,
    root: Path,
    *,
    host_key: Path,
    authorized_keys: Path | None,
    trusted_keys: Path | None,
    folder_for,
    ready=None,
) -> None:
    """Serve until SIGTERM or SIGINT. ``folder_for(root, command)`` picks the folder of a
    session (or returns a refusal string); ``ready(port)`` is called once listening."""
    append = asyncssh.read_authorized_keys(str(authorized_keys)) if authorized_keys else None
    trusted = asyncssh.read_authorized_keys(str(trusted_keys)) if trusted_keys else None

    def gate() -> _Gate:
        return _Gate(append, trusted)

    async def session(process: asyncssh.SSHServerProcess) -> None:
        # The key that logged in decided it (_Gate); when in doubt, append-only.
        append_only = getattr(process.get_extra_info("connection").get_owner(), "append_only", True)
        folder = folder_for(root, process.command or "")
        if isinstance(folder, str):
            process.stderr.write(f"axisor-backup serve: {folder}\n".encode())
            process.exit(2)
            return
        try:
            await Server(folder, append_only=append_only).serve(process.stdin, process.stdout)
        except WireError as exc:
            process.stderr.write(f"axisor-backup serve: {exc}\n".encode())
            process.exit(1)
            return
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError):
            return
        process.exit(0)

    server = await asyncssh.listen(
        host,
        port,
        server_factory=gate,
        server_host_keys=[str(host_key)],
        process_factory=session,
        encoding=None,
        allow_scp=False,
        sftp_factory=None,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=False,
    )
    bound = server.sockets[0].getsockname()[1]
    log.info("serving %s on %s:%s", root, host, bound)
    if ready is not None:
        ready(bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


__all__ = ["listen"]

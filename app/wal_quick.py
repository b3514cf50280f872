"""The program's entry point: a `wal-push` answered from its marker before the CLI's imports
(and a `wal-fetch` from the prefetch spool: app/wal_fetch_quick.py; a `backup` a running
daemon takes: app/backup_quick.py).

archive_command runs `axisor-backup wal-push %p` once per WAL file, one at a time, waiting for
each. After a push ahead (core/sources/postgres/wal_ahead.py) most runs are answered from a
marker in ~0.02 s, but importing the CLI, the engine and the config's validation costs ~0.35 s
of CPU before that: most of each run, so it, not storing, set the archive's throughput. This
module imports the standard library and the marker module only, and answers when it can be
sure; in every other case the full program runs, exactly as before.

It answers only when all of these hold:
- the command is exactly ``--config PATH wal-push FILE [--json]`` (archive_command's shape);
- the state folder is known without validating the config: $AXISOR_BACKUP_STATE_DIR, or the
  platform's default when the config sets no ``[engine] state_dir``;
- a *route* was recorded for this config file, byte for byte: the full wal-push, after
  pushing ahead, writes ``<state>/wal-ahead/routes/<sha256 of the config's path and
  bytes>.json`` naming the repository folder, its id and the marker folder;
- the repository folder's config still has that id (a re-initialised repository has another);
- the marker matches the file's size and SHA-256 (core/sources/postgres/wal_markers.py).
A marker used up here and not matching leaves the full push to store the file or find it
stored. What this path skips: the note about running as another OS user than the
repository's owner, which every full push still prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path


ROUTES = "routes"
ENV_STATE_DIR = "AXISOR_BACKUP_STATE_DIR"  # core/statedir.py's rule, read without importing the config
MAX_CONFIG_BYTES = 1024 * 1024
DIR_NAME = "wal-ahead"  # core/sources/postgres/wal_markers.py's, imported only for a push (dataclasses, ~10 ms)
SOCKET_NAME = "daemon.sock"  # core/jobs/client.py's, in the same state folder
DAEMON_TIMEOUT = 600.0  # a daemon that does not answer by then: the full program pushes


def route_key(config_path: Path, config_bytes: bytes) -> str:
    return hashlib.sha256(str(config_path.resolve()).encode() + b"\0" + config_bytes).hexdigest()


def quick_state_dir(config_bytes: bytes) -> Path | None:
    """The state folder the full program would use, when that is certain without its config
    validation; None otherwise."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().absolute()
    import tomllib

    try:
        doc = tomllib.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    engine = doc.get("engine", {})
    if not isinstance(engine, dict) or "state_dir" in engine:
        return None  # the config's own rules decide (relative paths, ~): the full program
    return _default_state_dir()


def _default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("axisor-backup"))


def _repository_id(repository: Path) -> str | None:
    try:
        with open(repository / "config", "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES)
        value = json.loads(raw).get("id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value.isalnum() else None


def remember(config_path: Path, state_dir: Path, repository: Path, passphrase_file: Path | None = None) -> None:
    """Record the route for this config (after a push ahead, or a wal-fetch); best effort.
    ``passphrase_file``: the config's storage.passphrase_file, which the quick wal-fetch
    reads (app/wal_fetch_quick.py) to check the cached key as the full program would."""
    try:
        config_bytes = config_path.read_bytes()
    except OSError:
        return
    if quick_state_dir(config_bytes) != state_dir.absolute():
        return
    repo_id = _repository_id(repository)
    if repo_id is None:
        return
    folder = state_dir / DIR_NAME / ROUTES
    path = folder / f"{route_key(config_path, config_bytes)}.json"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.write_text(
            json.dumps(
                {
                    "repository": str(repository.absolute()),
                    "id": repo_id,
                    "markers": str(state_dir / DIR_NAME / repo_id),
                    "passphrase_file": str(passphrase_file.absolute()) if passphrase_file else None,
                }
            )
        )
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


class Route:
    """What a full wal-push or wal-fetch recorded for one config file's exact bytes. A plain
    class, not a frozen dataclass: importing dataclasses costs ~7 ms, a tenth of a quick
    wal-fetch; nothing assigns to its fields after __init__."""

    __slots__ = ("markers", "passphrase_file", "repo_id", "repository", "state_dir")

    def __init__(
        self, state_dir: Path, repository: Path, repo_id: str, markers: Path, passphrase_file: Path | None
    ) -> None:
        self.state_dir = state_dir
        self.repository = repository
        self.repo_id = repo_id
        self.markers = markers
        self.passphrase_file = passphrase_file


def read_route(config_path: Path) -> Route | None:
    """The route recorded for this config file, if it still holds: the state folder is
    known without the config's validation and the repository folder still has that id."""
    try:
        config_bytes = config_path.read_bytes()
    except OSError:
        return None
    state_dir = quick_state_dir(config_bytes)
    if state_dir is None:
        return None
    try:
        doc = json.loads((state_dir / DIR_NAME / ROUTES / f"{route_key(config_path, config_bytes)}.json").read_text())
        passphrase_file = doc.get("passphrase_file")
        route = Route(
            state_dir,
            Path(doc["repository"]),
            str(doc["id"]),
            Path(doc["markers"]),
            Path(passphrase_file) if isinstance(passphrase_file, str) else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if _repository_id(route.repository) != route.repo_id or route.markers != state_dir / DIR_NAME / route.repo_id:
        return None
    return route


def _parse(argv: list[str]) -> tuple[Path, Path, bool] | None:
    """(config, file, json) for exactly ``--config PATH wal-push FILE [--json]``."""
    if len(argv) not in (4, 5) or argv[0] != "--config" or argv[2] != "wal-push":
        return None
    rest = argv[4:]
    if rest not in ([], ["--json"]) or argv[3].startswith("-"):
        return None
    return Path(argv[1]), Path(argv[3]), bool(rest)


def try_answer(argv: list[str]) -> int | None:
    """0 when the push is answered from its marker (printed like the full program's
    ``--json``); None when the full program must run."""
    started = time.monotonic()
    parsed = _parse(argv)
    if parsed is None:
        return None
    config_path, wal_file, as_json = parsed
    route = read_route(config_path)
    if route is None:
        return None
    from core.sources.postgres.wal_markers import Markers

    hit = Markers(route.markers).take(wal_file)
    if hit is None:
        return _through_daemon(route.state_dir / SOCKET_NAME, wal_file, route.repo_id, as_json, started)
    if as_json:
        _print({"already_archived": True, "from_marker": True, "name": hit.name, "size": hit.size}, started)
    return 0


def _print(doc: dict, started: float) -> None:
    doc = {"pushed_ahead": [], "through_daemon": False, **doc, "seconds": round(time.monotonic() - started, 3)}
    print(json.dumps(doc, indent=2, sort_keys=True))


def _through_daemon(sock_path: Path, wal_file: Path, repo_id: str, as_json: bool, started: float) -> int | None:
    """Hand the file to the running daemon (core/sources/postgres/wal_daemon.py), which
    answers once it is durable. None (the full program pushes) when no daemon answers, it
    serves another repository or user, or it fails for any reason but a conflict."""
    if not sock_path.exists():
        return None
    import socket

    request = {"op": "wal_push", "path": os.path.abspath(wal_file), "repository": repo_id}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(DAEMON_TIMEOUT)
            s.connect(str(sock_path))
            s.sendall(json.dumps(request).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                piece = s.recv(65536)
                if not piece:
                    return None
                reply += piece
        doc = json.loads(reply)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("ok") is True and isinstance(doc.get("result"), dict):
        r = doc["result"]
        if as_json:
            _print(
                {
                    "already_archived": bool(r.get("already_archived")),
                    "from_marker": False,
                    "name": r.get("name"),
                    "size": r.get("size"),
                    "through_daemon": True,
                },
                started,
            )
        return 0
    error = doc.get("error")
    if not isinstance(error, dict):
        return None
    if error.get("type") == "WalConflict":  # the full push would refuse it the same way
        print(f"error: {error.get('message', 'already archived with different content')}", file=sys.stderr)
        return int(error.get("exit_code", 17))
    return None


def quick(argv: list[str]) -> int | None:
    """The exit code of a command answered without the full program; None: run it."""
    if "wal-fetch" in argv:
        # restore_command answered from the prefetch spool (app/wal_fetch_quick.py).
        from app.wal_fetch_quick import try_fetch

        return try_fetch(argv)
    code = try_answer(argv)
    if code is None and "backup" in argv:
        # A backup a running daemon can take: submitted without the full program's imports.
        # Without a daemon, the full program runs it, its pg_dump started first.
        from app.backup_quick import try_backup

        code = try_backup(argv)
    return code


def exit_if_answered() -> None:
    code = quick(sys.argv[1:])
    if code is not None:
        sys.stdout.flush()
        sys.exit(code)


def main() -> int:
    """The `axisor-backup` command."""
    code = quick(sys.argv[1:])
    if code is not None:
        return code
    from app.cli import main as full

    return full()

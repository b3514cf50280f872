"""A `wal-fetch` answered from the prefetch spool before the CLI's imports.

restore_command runs `axisor-backup wal-fetch %f %p` once per WAL file, one at a time, and
recovery waits for each. With the spool (core/sources/postgres/wal_prefetch.py) most
segments are on local disk already, but a whole program run cost ~0.45 s of CPU in imports
against ~0.05 s of work: it, not storage, set the replay's pace. This module answers with
the standard library, AES-GCM (``cryptography``'s, ~10 ms to import) and two of our
standard-library modules, and keeps the follower (core/sources/postgres/wal_follow.py)
running so the spool stays ahead of replay.

It hands a spooled segment over only when everything the full program checks holds:
- the command is exactly ``--config PATH wal-fetch NAME DEST`` and NAME a segment (a
  ``.history``, ``.partial`` or ``.backup`` file, ``--from`` or ``--json``: the full program);
- the route a full wal-fetch recorded for this config file's exact bytes still holds
  (app/wal_quick.py: the state folder, the repository folder with the same id);
- the passphrase is the full program's ($AXISOR_BACKUP_PASSPHRASE, else the config's
  ``storage.passphrase_file`` under the same rules) and the cached wrapping key
  (core/repository/keycache.py: same ownership and mode checks) matches it and the
  repository's key file, and unwraps its master key;
- the segment's WAL manifest, read from the repository folder now (a local repository
  only) and opened with that key (sealed: the spool cannot forge it), names the segment and
  gives the size and SHA-256 the spooled file has.
A spooled file that does not match is deleted; in every case not answered here the full
program runs and behaves as it always did (a missing segment: exit 1 there).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import sys
from pathlib import Path

from app.wal_quick import Route, read_route
from core.repository import keycache_file
from core.repository.format import AD_KEY, KEYS
from core.sources.postgres import wal_spool

LOCK_FD_ENV = "AXISOR_BACKUP_FOLLOW_FD"  # the follower's inherited lock (app/cli_wal.py)
ENV_PASSPHRASE = "AXISOR_BACKUP_PASSPHRASE"  # core/config/model.py's, read without importing the config
AD_WAL = b"axisor/wal/v1"  # core/sources/postgres/wal.py's (tests hold these equal)
MAX_SMALL = 4096  # a key cache entry or a key file (both bounded so by their writers)
MAX_WAL_MANIFEST = 1024 * 1024  # core/sources/postgres/wal.py's
NONCE = 12


def try_fetch(argv: list[str], program: list[str] | None = None) -> int | None:
    """0 when the segment was handed over from the spool; None when the full program must
    run. ``program``: the argv that starts this program again, for the follower (default:
    how this process was started)."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    config_path, name, dest = parsed
    folder = dest.parent / wal_spool.DIR_NAME
    spooled = folder / name
    try:
        st = os.stat(spooled, follow_symlinks=False)
    except OSError:
        return None  # nothing spooled (the usual first call): the full program fetches
    if not stat.S_ISREG(st.st_mode):
        return None
    # Before the handover, so a follower's next round starts after this segment, not at it.
    wal_spool.note_asked(folder, name)
    route = read_route(config_path)
    expected = _archived(route, name) if route is not None else None
    if route is None or expected is None:
        return None
    try:
        if st.st_size != expected[0] or wal_spool.file_digest(spooled) != expected:
            os.unlink(spooled)  # never handed over; the full program fetches it again
            return None
        if _changed(st, os.stat(spooled, follow_symlinks=False)):
            return None  # replaced or written to while it was hashed: not what was checked
        os.replace(spooled, dest)
    except OSError:
        return None
    wal_spool.sweep_passed(folder, name)  # as the full program does for an archived segment
    following = wal_spool.next_segment(name, expected[0])
    if following is not None and (route.repository / "wal" / following).exists():
        _keep_following(folder, config_path, name, dest, program)
    else:
        wal_spool.tidy(folder)  # the archive's end (for now): no follower, nothing left behind
    return 0


def _changed(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) != (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


def _parse(argv: list[str]) -> tuple[Path, str, Path] | None:
    """(config, name, dest) for exactly ``--config PATH wal-fetch NAME DEST`` with NAME a segment."""
    if len(argv) != 5 or argv[0] != "--config" or argv[2] != "wal-fetch":
        return None
    name, dest = argv[3], argv[4]
    if not wal_spool.is_segment(name) or dest.startswith("-"):
        return None
    return Path(argv[1]), name, Path(dest).absolute()


def _archived(route: Route, name: str) -> tuple[int, str] | None:
    """(size, SHA-256) of ``name`` from its sealed WAL manifest in the repository folder,
    opened with the cached key; None when anything is not as the full program would have it."""
    enc_ident = _master_key(route)
    if enc_ident is None:
        return None
    sealed = _read_bounded(route.repository / "wal" / name, MAX_WAL_MANIFEST)
    if sealed is None:
        return None
    plain = _open_manifest(enc_ident, sealed, AD_WAL + name.encode("ascii"))
    try:
        d = json.loads(plain) if plain is not None else None
        if not isinstance(d, dict) or d.get("v") != 1 or d.get("name") != name:
            return None
        size, digest = d["size"], d["sha256"]
    except (ValueError, KeyError):
        return None
    if type(size) is not int or not isinstance(digest, str) or len(digest) != 64:
        return None
    return size, digest


def _master_key(route: Route) -> bytes | None:
    """The master key (enc || ident) through the cached wrapping key, as KeyCache.lookup
    gets it: the entry's check must match this passphrase and the key file as it is now."""
    passphrase = _passphrase(route)
    raw = keycache_file.read_private(route.state_dir / "keycache" / f"{route.repo_id}.json")
    if passphrase is None or raw is None:
        return None
    try:
        entry = json.loads(raw)
        kek = base64.b64decode(entry["kek"], validate=True)
        key_id = str(entry["key_id"])
        if not key_id.isalnum():
            return None
        key = json.loads(_read_bounded(route.repository / KEYS / key_id, MAX_SMALL) or b"null")
        if not isinstance(key, dict) or key.get("v") != 1 or key.get("kind", "full") != "full":
            return None  # a write-only key cannot fetch: the full program says so
        salt = base64.b64decode(key["salt"], validate=True)
        data = base64.b64decode(key["data"], validate=True)
        if not hmac.compare_digest(str(entry["check"]), keycache_file.check(kek, passphrase, salt, data)):
            return None
    except (ValueError, KeyError, TypeError):
        return None
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        master = AESGCM(kek).decrypt(data[:NONCE], data[NONCE:], AD_KEY)
    except (InvalidTag, ValueError):
        return None
    return master if len(master) == 64 else None


def _open_manifest(enc_ident: bytes, sealed: bytes, ad: bytes) -> bytes | None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(enc_ident[:32]).decrypt(sealed[:NONCE], sealed[NONCE:], ad)
    except (InvalidTag, ValueError):
        pass
    # Pushed with a write-only key (`database archiving --setup`): sealed under a session
    # key only the master key derives again; core.crypto's Cipher does that (~20 ms more).
    from core.crypto import Cipher, DecryptError, MasterKey

    try:
        return Cipher(MasterKey(enc=enc_ident[:32], ident=enc_ident[32:])).open(sealed, ad)
    except (DecryptError, ValueError):
        return None


def _passphrase(route: Route) -> str | None:
    """core/config/secrets.py's order and file rules; None for anything else (a command)."""
    from_env = os.environ.get(ENV_PASSPHRASE)
    if from_env:
        return from_env
    if route.passphrase_file is None:
        return None
    try:
        info = route.passphrase_file.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            return None  # the full program refuses it, and says why
        text = route.passphrase_file.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    return text or None


def _read_bounded(path: Path, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError:
        return None
    return raw if len(raw) <= limit else None


# -- the follower ----------------------------------------------------------------------


def _keep_following(folder: Path, config_path: Path, name: str, dest: Path, program: list[str] | None) -> None:
    """Start the follower when none runs (its lock is free), handing it the lock: it loads
    the index once and keeps the window after ``.asked`` spooled while replay goes on."""
    argv = program or _this_program()
    if argv is None:
        return
    fd = wal_spool.take_lock(folder)
    if fd is None:
        return  # one runs (or the spool is gone)
    try:
        os.set_inheritable(fd, True)
        env = _follower_env()
        env[LOCK_FD_ENV] = str(fd)
        devnull = [(os.POSIX_SPAWN_OPEN, n, os.devnull, os.O_RDWR, 0) for n in (0, 1, 2)]
        os.posix_spawn(
            argv[0],
            [*argv, "--config", str(config_path.absolute()), "wal-fetch", "--ahead", name, str(dest)],
            env,
            file_actions=devnull,
            setsid=True,  # not in the server's process group: the server's signals are for us
        )
    except OSError:
        pass  # no follower: the full program tops the spool up as before
    finally:
        os.close(fd)  # the child's copy holds the lock now


def _this_program() -> list[str] | None:
    """The argv that started this process, without its arguments: the installed script
    (interpreter + script) or ``python -m app.cli``; None when that cannot be told."""
    orig, args = list(getattr(sys, "orig_argv", [])), sys.argv[1:]
    if not orig or len(orig) <= len(args) or (args and orig[-len(args) :] != args):
        return None
    return [sys.executable, *orig[1 : len(orig) - len(args)]]


def _follower_env() -> dict[str, str]:
    """The allow-listed environment (core/childenv.py, our own variables included), plus
    what starts this same program again (PYTHONPATH and the like) and the passphrase when
    it came from the environment: the follower is this command's continuation."""
    from core.childenv import child_env

    env = child_env(ours=True)
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", ENV_PASSPHRASE):
        if os.environ.get(k):
            env[k] = os.environ[k]
    return env

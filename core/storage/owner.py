"""Which OS user owns a local repository, and whether another user can use it.

Every object is written 0600 (core/storage/local.py), so a repository only works for the
OS user that owns its files: in physical mode the server runs ``wal-push`` as its own OS
user (``postgres``), and a lock or pack written by anyone else stops WAL archiving. This
module names the owner, warns when a command runs as someone else, and lists what a
given user could not read or write. Mode bits only: ACLs are not consulted.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class OsUser:
    uid: int
    gid: int
    name: str

    @classmethod
    def of_uid(cls, uid: int, gid: int | None = None) -> OsUser:
        try:
            pw = pwd.getpwuid(uid)
            return cls(uid, pw.pw_gid if gid is None else gid, pw.pw_name)
        except KeyError:
            return cls(uid, uid if gid is None else gid, f"uid {uid}")

    def groups(self) -> frozenset[int]:
        """The user's primary and supplementary groups (from the group database)."""
        try:
            return frozenset(os.getgrouplist(self.name, self.gid))
        except (OSError, KeyError):
            return frozenset({self.gid})


def current_user() -> OsUser:
    return OsUser.of_uid(os.geteuid(), os.getegid())


def owner_of(path: Path) -> OsUser | None:
    """The owner of ``path``; None when it does not exist or cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return OsUser.of_uid(st.st_uid, st.st_gid)


def chown_target(root: Path) -> OsUser | None:
    """Run as root in a repository that belongs to another user: that user, to hand new
    files and folders to (a root-owned 0600 lock or pack would stop the owner's wal-push).
    None otherwise: nothing to hand over, or no right to."""
    if os.geteuid() != 0:
        return None
    owner = owner_of(root)
    return owner if owner is not None and owner.uid != 0 else None


def other_user_warning(root: Path, doing: str) -> str | None:
    """One line when ``doing`` runs as another OS user than the one owning the repository
    folder ``root``: both users named and what follows. None when they are the same."""
    owner = owner_of(root)
    me = current_user()
    if owner is None or owner.uid == me.uid:
        return None
    if me.uid == 0:
        return (
            f"{doing} runs as OS user {me.name}, but the repository {root} belongs to {owner.name}: "
            f"the files it creates there are handed to {owner.name} (chown), so that commands run as "
            f"{owner.name} (the server's wal-push) can still read them"
        )
    return (
        f"{doing} runs as OS user {me.name}, but the repository {root} belongs to {owner.name}: "
        f"the locks and packs it writes are readable by {me.name} only (0600), so commands run as "
        f"{owner.name} (the server's wal-push) fail on them and WAL archiving stalls; "
        f"run it as {owner.name} (sudo -u {owner.name})"
    )


def _allowed(st: os.stat_result, user: OsUser, groups: frozenset[int], want: int) -> bool:
    """Mode bits ``want`` (a mask of 4 read, 2 write, 1 execute) granted to ``user``."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in groups:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def can(path: Path, user: OsUser, want: int) -> bool | None:
    """Whether ``user`` has ``want`` (4 r, 2 w, 1 x) on ``path``; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _allowed(st, user, user.groups(), want)


@dataclass(frozen=True, slots=True)
class AccessReport:
    user: OsUser
    checked: int  # files and folders looked at
    problems: tuple[str, ...]  # the first few, each naming a path, its owner and mode
    total: int  # every problem found
    unseen: tuple[str, ...] = ()  # what this process itself could not look into: not judged


def repository_access(root: Path, user: OsUser, *, limit: int = 5) -> AccessReport:
    """What ``user`` could not use in the repository at ``root``: every folder must be
    readable, writable and searchable (new packs, index files, locks and WAL manifests are
    created there), every file readable. The folders leading to ``root`` must be searchable."""
    groups = user.groups()
    problems: list[str] = []
    total = checked = 0

    def bad(path: str, st: os.stat_result, need: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < limit:
            owner = OsUser.of_uid(st.st_uid).name
            problems.append(f"{path} (owner {owner}, mode {stat.filemode(st.st_mode)}) is not {need} by {user.name}")

    root = Path(root)
    for parent in reversed(root.resolve().parents):
        try:
            st = os.stat(parent)
        except OSError:
            continue
        checked += 1
        if not _allowed(st, user, groups, 1):
            bad(str(parent), st, "searchable")
    unseen: list[str] = []

    def unreadable(exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # gone meanwhile is fine; unreadable is not
            unseen.append(f"{exc.filename}: {exc.strerror}")

    for dirpath, _dirnames, filenames in os.walk(root, onerror=unreadable):
        for name, is_dir in [(dirpath, True)] + [(os.path.join(dirpath, f), False) for f in filenames]:
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue  # gone meanwhile (a lock refreshed, a temp file renamed)
            except OSError as exc:
                unreadable(exc)
                continue
            checked += 1
            if is_dir and not _allowed(st, user, groups, 7):
                bad(name, st, "readable and writable")
            elif not is_dir and stat.S_ISREG(st.st_mode) and not _allowed(st, user, groups, 4):
                bad(name, st, "readable")
    return AccessReport(user, checked, tuple(problems), total, tuple(unseen))

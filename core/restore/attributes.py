"""What a restore sets on each file, and how: the options (`restore --no-xattrs`,
`--no-acls`, `--file-flags`, `--numeric-owner`, `--preserve-privileges`, ...), the mode and
extended attributes wanted for a node under them, and stored owners mapped to this host's
ids. Shared by the restorer (core/restore/files.py) and the plan (core/restore/plan.py),
which must agree on what "already right" means."""

from __future__ import annotations

import grp
import pwd
import stat
import threading
from dataclasses import dataclass

from core.fsmeta.xattrs import CAPABILITY, is_acl
from core.repository.tree import DIR, FILE, Node
from core.text import shown

PRIVILEGE_BITS = stat.S_ISUID | stat.S_ISGID


@dataclass(frozen=True, slots=True)
class RestoreOptions:
    xattrs: bool = True  # --no-xattrs: none at all
    acls: bool = True  # --no-acls: not system.posix_acl_*
    file_flags: bool = False  # --file-flags: chattr flags, set last
    numeric_owner: bool = False  # --numeric-owner: ids only, names ignored
    preserve_privileges: bool = False  # --preserve-privileges: keep setuid/setgid and capabilities
    allow_untrusted_target: bool = False  # --allow-untrusted-target
    fsync: bool = True  # --no-fsync: do not flush the restore to disk before reporting success
    # --read-back: validation re-reads and re-chunks every restored file from disk, instead of
    # trusting the ids checked as each blob was written (core/restore/validate.py says what each proves).
    read_back: bool = False


def has_privileges(node: Node) -> bool:
    """A file the snapshot has setuid, setgid or file capabilities on."""
    return node.type == FILE and bool(node.mode & PRIVILEGE_BITS or any(n == CAPABILITY for n, _ in node.xattrs))


def wanted_mode(node: Node, opts: RestoreOptions) -> int:
    mode = stat.S_IMODE(node.mode)
    if node.type != DIR and not opts.preserve_privileges:
        mode &= ~PRIVILEGE_BITS
    return mode


def manages(name: bytes, opts: RestoreOptions) -> bool:
    """Whether the restore sets (and removes) attribute ``name``; others are left alone
    (an SELinux label is the policy's business)."""
    if not opts.xattrs:
        return False
    if is_acl(name):
        return opts.acls
    return name.startswith((b"user.", b"trusted.")) or name == CAPABILITY


def wanted_xattrs(node: Node, opts: RestoreOptions) -> list[tuple[bytes, bytes]]:
    if not opts.xattrs:
        return []
    out = []
    for name, value in node.xattrs:
        if is_acl(name) and not opts.acls:
            continue
        if name == CAPABILITY and not opts.preserve_privileges:
            continue
        out.append((name, value))
    return out


class Owners:
    """Stored owner -> ids on this host: by name when the name exists here (unless
    numeric), else the stored number; each unknown name is reported once."""

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self._users: dict[str, int | None] = {}
        self._groups: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def _lookup(self, cache: dict, name: str, fn) -> int | None:
        if name not in cache:
            try:
                cache[name] = fn(name)
            except KeyError:
                cache[name] = None
        return cache[name]

    def ids(self, node: Node, warn=None) -> tuple[int, int]:
        if self.numeric:
            return node.uid, node.gid
        uid, gid = node.uid, node.gid
        with self._lock:
            if node.user:
                known = node.user in self._users
                u = self._lookup(self._users, node.user, lambda n: pwd.getpwnam(n).pw_uid)
                if u is not None:
                    uid = u
                elif not known and warn:
                    warn(f"owner {shown(node.user)} does not exist here: restored as uid {node.uid}")
            if node.group:
                known = node.group in self._groups
                g = self._lookup(self._groups, node.group, lambda n: grp.getgrnam(n).gr_gid)
                if g is not None:
                    gid = g
                elif not known and warn:
                    warn(f"group {shown(node.group)} does not exist here: restored as gid {node.gid}")
        return uid, gid


__all__ = ["Owners", "PRIVILEGE_BITS", "RestoreOptions", "has_privileges", "manages", "wanted_mode", "wanted_xattrs"]

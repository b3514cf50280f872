"""Filesystem operations of a restore, all relative to directory descriptors.

A restore runs as root into folders that other users may write. Checking a path with
lstat and then acting on it by path lets such a user swap a folder for a symlink in
between (chmod a root file 0777, create or delete outside the target). So nothing here
resolves a path twice: the target is opened once, component by component, with
O_DIRECTORY|O_NOFOLLOW; every folder below it is opened from its parent's descriptor the
same way; files are created with O_CREAT|O_EXCL|O_NOFOLLOW relative to their folder's
descriptor and changed through their own descriptor; names are renamed, linked and removed
with ``dir_fd``. A symlink met on the way is refused, never followed.

:class:`DirCache` keeps a bounded number of folder descriptors keyed by path components
(relative to the target), and reopens an evicted one from its nearest open ancestor with
a chain of openat calls, so trees far deeper than PATH_MAX restore. It is thread-safe:
files are written on worker threads.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import RestoreRefused
from core.text import shown

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A regular file opened to read or to change its metadata: never follows a symlink, never
# blocks on a FIFO swapped in, never becomes our controlling terminal.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
CACHE_SIZE = 128

Parts = tuple[bytes, ...]


def display(target: Path | str, parts: Parts) -> str:
    """The full path of ``parts`` under ``target``, as one printable line."""
    base = os.fsencode(str(target)).rstrip(b"/")
    return shown(base + b"/" + b"/".join(parts)) if parts else shown(os.fsencode(str(target)))


def open_dir_at(dfd: int, name: bytes, *, create: bool, where: str, mode: int = 0o700) -> int:
    """Open folder ``name`` in ``dfd`` without following a symlink; create it if asked."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse_not_dir(dfd, name, where)
        raise
    try:
        os.mkdir(name, mode, dir_fd=dfd)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # no inode left: name the whole path
            raise OSError(exc.errno, exc.strerror, where) from None
        raise
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse_not_dir(dfd, name, where)
        raise


def _refuse_not_dir(dfd: int, name: bytes, where: str) -> None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        raise RestoreRefused(f"{where} changed while restoring; refusing to restore through it") from None
    if stat.S_ISLNK(st.st_mode):
        raise RestoreRefused(f"{where} is a symlink; refusing to restore through it")
    raise RestoreRefused(f"{where} exists and is not a folder; move it away first")


def untrusted_reason(st: os.stat_result) -> str | None:
    """Why a folder lets a user other than root change what is in it, or None."""
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}"
    sticky = bool(st.st_mode & stat.S_ISVTX)  # others cannot rename or remove root's entries
    if st.st_mode & stat.S_IWOTH and not sticky:
        return "writable by every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0 and not sticky:
        return f"writable by group {st.st_gid}"
    return None


def open_target(target: Path, *, create: bool, check_trust: bool) -> int | None:
    """A descriptor of the restore target, opened from / one component at a time.

    Symlinks in the target's own path are the operator's choice and are resolved first;
    the target itself may not be a dangling symlink. With ``check_trust`` (a restore run as
    root), every folder from / to the target must be writable only by root (see
    :func:`untrusted_reason`), else the restore is refused. None when the target does not
    exist and ``create`` is false."""
    target = Path(os.path.abspath(target))
    if os.path.islink(target) and not os.path.isdir(target):
        raise RestoreRefused(f"restore target {shown(str(target))} is a dangling symlink")
    real = os.path.realpath(target)
    parts = [os.fsencode(p) for p in Path(real).parts[1:]]
    fd = os.open("/", DIR_FLAGS)
    walked = "/"
    try:
        for name in parts:
            if check_trust:
                _check_trusted(fd, walked)
            walked = os.path.join(walked, os.fsdecode(name))
            try:
                nfd = open_dir_at(fd, name, create=create, where=shown(walked), mode=0o777)
            except FileNotFoundError:
                os.close(fd)
                return None
            except RestoreRefused:
                if os.fsencode(walked) == os.fsencode(real):
                    raise RestoreRefused(f"restore target {shown(str(target))} is not a folder") from None
                raise
            os.close(fd)
            fd = nfd
        if check_trust:
            _check_trusted(fd, walked)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_trusted(fd: int, where: str) -> None:
    why = untrusted_reason(os.fstat(fd))
    if why:
        raise RestoreRefused(
            f"refusing to restore as root into {shown(where)}: it is {why}, so another user could swap "
            "folders for symlinks while the restore runs; restore elsewhere and move the result, or "
            "pass --allow-untrusted-target if you trust every user who can write there"
        )


class _Entry:
    __slots__ = ("fd", "pins", "evicted")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pins = 0
        self.evicted = False


class DirCache:
    """Open folder descriptors below a root descriptor (see module doc)."""

    def __init__(self, root_fd: int, root: Path, size: int = CACHE_SIZE) -> None:
        self.root_fd = root_fd
        self.root = root
        self.size = size
        self._lock = threading.RLock()
        self._open: OrderedDict[Parts, _Entry] = OrderedDict()

    def where(self, parts: Parts) -> str:
        return display(self.root, parts)

    def _acquire(self, parts: Parts, create: bool) -> _Entry | None:
        """The pinned entry of ``parts`` (None for the root)."""
        with self._lock:
            if not parts:
                return None
            e = self._open.get(parts)
            if e is not None:
                self._open.move_to_end(parts)
                e.pins += 1
                return e
            i = len(parts) - 1
            while i > 0 and parts[:i] not in self._open:
                i -= 1
            base = self._open.get(parts[:i]) if i else None
            if base is not None:
                base.pins += 1
            try:
                while i < len(parts):
                    dfd = base.fd if base is not None else self.root_fd
                    fd = open_dir_at(dfd, parts[i], create=create, where=self.where(parts[: i + 1]))
                    i += 1
                    e = _Entry(fd)
                    e.pins = 1
                    self._open[parts[:i]] = e
                    self._release(base)
                    base = e
                    self._evict()
            except BaseException:
                self._release(base)
                raise
            return base

    def _release(self, e: _Entry | None) -> None:
        if e is None:
            return
        with self._lock:
            e.pins -= 1
            if e.evicted and e.pins == 0:
                os.close(e.fd)
                e.fd = -1

    def _evict(self) -> None:
        while len(self._open) > self.size:
            for key, e in self._open.items():
                if e.pins == 0:
                    break
            else:
                return  # everything is in use: grow for now
            del self._open[key]
            os.close(e.fd)
            e.fd = -1

    @contextmanager
    def dir(self, parts: Parts, *, create: bool = False) -> Iterator[int]:
        """The descriptor of folder ``parts``, held open for the ``with`` block.
        FileNotFoundError when a folder on the way is missing and ``create`` is false;
        RestoreRefused when one is a symlink or not a folder."""
        e = self._acquire(parts, create)
        try:
            yield self.root_fd if e is None else e.fd
        finally:
            self._release(e)

    def forget(self, parts: Parts) -> None:
        """Drop ``parts`` and everything below it (it was removed or replaced)."""
        with self._lock:
            n = len(parts)
            for key in [k for k in self._open if k[:n] == parts]:
                e = self._open.pop(key)
                if e.pins:
                    e.evicted = True
                else:
                    os.close(e.fd)

    def close(self) -> None:
        with self._lock:
            for e in self._open.values():
                if e.pins:
                    e.evicted = True
                else:
                    os.close(e.fd)
            self._open.clear()


def remove_tree_at(dfd: int, name: bytes) -> None:
    """Remove ``name`` in ``dfd`` and everything under it without following a symlink and
    without recursion (any depth); a symlink or file is just unlinked."""
    try:
        os.unlink(name, dir_fd=dfd)
        return
    except FileNotFoundError:
        return
    except (IsADirectoryError, PermissionError):
        pass
    top = os.open(name, DIR_FLAGS, dir_fd=dfd)
    stack: list[tuple[int, int, bytes]] = [(top, dfd, name)]  # (fd, parent fd, name in parent)
    try:
        while stack:
            fd, parent, own = stack[-1]
            sub = None
            with os.scandir(fd) as it:
                for entry in it:
                    n = os.fsencode(entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        sub = n
                        break
                    try:
                        os.unlink(n, dir_fd=fd)
                    except FileNotFoundError:
                        pass
            if sub is not None:
                stack.append((os.open(sub, DIR_FLAGS, dir_fd=fd), fd, sub))
                continue
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(own, dir_fd=parent)
            except FileNotFoundError:
                pass
    finally:
        for fd, _, _ in stack:
            os.close(fd)

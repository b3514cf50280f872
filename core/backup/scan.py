"""The scanner: counts what a backup will visit, running ahead of it, so that progress can
show totals, a percentage and an ETA (restic does the same).

It counts what the archiver counts (core/backup/archiver.py): regular files and their
sizes, below each configured path, the same excludes applied, symbolic links not followed
except a root the archiver follows. It stats only (no reads), keeps no list (memory stays
flat however big the tree), and stops when asked. Figures are a forecast: files that
appear or change while the backup runs make the final count differ, and nothing depends
on them but the progress display."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from core.backup.archiver import is_excluded


@dataclass(slots=True)
class ScanTotals:
    """Grows while the scan runs; ``done`` once every path was walked. ``stop``: set by the
    backup when it no longer needs the figures (it finished, failed or was cancelled)."""

    files: int = 0
    bytes: int = 0
    done: bool = False
    stop: bool = False


def scan_paths(
    paths: list[str | os.PathLike], exclude: tuple[str, ...], totals: ScanTotals, *, follow_root_symlink: bool = True
) -> None:
    """Walk ``paths`` (blocking: run it on a thread), adding to ``totals``."""
    try:
        for root in paths:
            if totals.stop:
                return
            _scan_root(os.fsencode(root), exclude, totals, follow_root_symlink)
    finally:
        totals.done = not totals.stop


# O_NOATIME as the archiver opens folders (root may use it on any): listing a folder must
# not change its access time, which the backup records (and users' tools may read).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_NOATIME if os.geteuid() == 0 else 0)


def _scan_root(root: bytes, exclude: tuple[str, ...], totals: ScanTotals, follow: bool) -> None:
    try:
        st = os.stat(root) if follow else os.lstat(root)
    except OSError:
        return  # the backup names a missing or unreadable root; the forecast just lacks it
    if stat.S_ISREG(st.st_mode):
        totals.files += 1
        totals.bytes += st.st_size
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    try:
        fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW if follow else _DIR_FLAGS)
    except OSError:
        return
    # Depth first through directory descriptors, one per level, as the archiver walks:
    # a path 3,000 folders deep is longer than any path the kernel takes.
    stack: list[tuple[int, bytes, list[bytes]]] = [(fd, root, _list(fd, root, exclude, totals))]
    try:
        while stack and not totals.stop:
            fd, path, subdirs = stack[-1]
            if not subdirs:
                os.close(fd)
                stack.pop()
                continue
            name = subdirs.pop()
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone or unreadable: the backup reports it, by name
            child_path = path + b"/" + name
            stack.append((child, child_path, _list(child, child_path, exclude, totals)))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _list(fd: int, path: bytes, exclude: tuple[str, ...], totals: ScanTotals) -> list[bytes]:
    """Count the folder's files; return its subfolders' names."""
    subdirs: list[bytes] = []
    try:
        with os.scandir(fd) as it:
            for entry in it:
                name = os.fsencode(entry.name)
                if exclude and is_excluded(exclude, path + b"/" + name, name):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(name)
                    elif entry.is_file(follow_symlinks=False):
                        totals.files += 1
                        totals.bytes += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    except OSError:
        pass
    return subdirs


def start_scan(specs: list, totals: dict[str, ScanTotals]) -> None:
    """Scan each source (``SourceSpec``s) in turn on a daemon thread, filling ``totals``
    by source name. A daemon thread, not an executor's: a stat stuck on a dead network
    mount must never hold up the program's exit (the backup's watchdog reports that)."""
    import threading

    for spec in specs:
        totals[spec.name] = ScanTotals()

    def run() -> None:
        for spec in specs:
            t = totals[spec.name]
            if t.stop:
                return
            scan_paths(list(spec.paths), tuple(spec.exclude), t, follow_root_symlink=spec.follow_root_symlink)

    threading.Thread(target=run, name="axisor-scan", daemon=True).start()


def stop_scan(totals: dict[str, ScanTotals]) -> None:
    for t in totals.values():
        t.stop = True


__all__ = ["ScanTotals", "scan_paths", "start_scan", "stop_scan"]

"""Extended attributes, all namespaces the process can read.

``user.*``, ``security.*`` (SELinux labels, ``security.capability``), ``system.posix_acl_*``
(the kernel's binary ACL form, see acl.py) and, for root, ``trusted.*``. Names and values
are raw bytes. Targets are a descriptor (files and folders: never re-resolved by path) or
a path (symlinks, which cannot be opened; callers pass a path relative to a directory
descriptor through /proc/self/fd so no long or raced path is resolved).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from core.repository.tree import MAX_XATTR_NAME, MAX_XATTR_VALUE, MAX_XATTRS

ACL_ACCESS = b"system.posix_acl_access"
ACL_DEFAULT = b"system.posix_acl_default"
ACL_NAMES = (ACL_ACCESS, ACL_DEFAULT)
CAPABILITY = b"security.capability"

# No xattr support at all on this filesystem (or for this kind of file): nothing to keep.
_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)

Target = int | bytes | str


@dataclass(frozen=True, slots=True)
class XattrRead:
    """The attributes read, and a line for each one that could not be."""

    pairs: tuple[tuple[bytes, bytes], ...]
    problems: tuple[str, ...] = ()


def is_acl(name: bytes) -> bool:
    return name in ACL_NAMES


def _follow(target: Target, follow: bool) -> dict:
    # A descriptor is the file itself: os refuses follow_symlinks with one.
    return {} if isinstance(target, int) else {"follow_symlinks": follow}


def read_xattrs(target: Target, *, follow: bool = False) -> XattrRead:
    """Every attribute of ``target``, sorted by name; problems named, never raised."""
    kw = _follow(target, follow)
    try:
        names = os.listxattr(target, **kw)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return XattrRead(())
        return XattrRead((), (f"extended attributes not listed: {exc.strerror}",))
    pairs: list[tuple[bytes, bytes]] = []
    problems: list[str] = []
    for name in sorted(os.fsencode(n) for n in names):
        shown = name.decode("utf-8", "backslashreplace")
        if len(pairs) >= MAX_XATTRS:
            problems.append(f"more than {MAX_XATTRS} extended attributes: the rest not kept")
            break
        if len(name) > MAX_XATTR_NAME:
            problems.append(f"extended attribute {shown}: name longer than {MAX_XATTR_NAME} bytes, not kept")
            continue
        try:
            value = os.getxattr(target, name, **kw)
        except OSError as exc:
            if exc.errno == errno.ENODATA:  # removed since it was listed
                continue
            problems.append(f"extended attribute {shown} not read: {exc.strerror}")
            continue
        if len(value) > MAX_XATTR_VALUE:
            problems.append(f"extended attribute {shown}: value over {MAX_XATTR_VALUE} bytes, not kept")
            continue
        pairs.append((name, value))
    return XattrRead(tuple(pairs), tuple(problems))


def write_xattr(target: Target, name: bytes, value: bytes, *, follow: bool = False) -> str | None:
    """Set one attribute; None when set, else why not (the caller warns, per file)."""
    try:
        os.setxattr(target, name, value, **_follow(target, follow))
    except OSError as exc:
        shown = name.decode("utf-8", "backslashreplace")
        return f"extended attribute {shown} not restored: {exc.strerror}"
    return None


def remove_xattr(target: Target, name: bytes, *, follow: bool = False) -> str | None:
    try:
        os.removexattr(target, name, **_follow(target, follow))
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        shown = name.decode("utf-8", "backslashreplace")
        return f"extended attribute {shown} not removed: {exc.strerror}"
    return None

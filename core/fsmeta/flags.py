"""Inode flags (what chattr sets and lsattr shows), through FS_IOC_GETFLAGS/SETFLAGS.

Only flags a user can set and that mean the same on every Linux filesystem are kept;
``e`` (extents), ``I`` (indexed folder) and the like describe one filesystem's layout
and are set by the kernel, so they are masked off when read.
"""

from __future__ import annotations

import errno
import fcntl
import struct

# linux/fs.h; _IOR('f', 1, long) / _IOW('f', 2, long) on 64-bit Linux. The kernel reads
# and writes an int, whatever the macro says.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602

FLAG_LETTERS: dict[int, str] = {
    0x00000001: "s",  # secure deletion
    0x00000002: "u",  # undeletable
    0x00000004: "c",  # compressed
    0x00000008: "S",  # synchronous updates
    0x00000010: "i",  # immutable
    0x00000020: "a",  # append only
    0x00000040: "d",  # no dump
    0x00000080: "A",  # no atime updates
    0x00004000: "j",  # data journalling
    0x00008000: "t",  # no tail merging
    0x00010000: "D",  # synchronous folder updates
    0x00020000: "T",  # top of folder hierarchy
    0x00800000: "C",  # no copy on write
    0x20000000: "P",  # project id inherited
}
KEPT = sum(FLAG_LETTERS)
IMMUTABLE = 0x10
APPEND = 0x20

_NO_FLAGS = (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS, errno.EBADF)


def get_flags(fd: int) -> int:
    """The kept flags of an open file or folder; 0 where the filesystem has none."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError as exc:
        if exc.errno in _NO_FLAGS:
            return 0
        raise
    return struct.unpack_from("=i", buf)[0] & KEPT


def set_flags(fd: int, flags: int) -> str | None:
    """Add ``flags`` to the file's own; None when set, else why not."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
        current = struct.unpack_from("=i", buf)[0]
        struct.pack_into("=i", buf, 0, current | (flags & KEPT))
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf)
    except OSError as exc:
        return f"file flags {letters(flags)} not restored: {exc.strerror}"
    return None


def letters(flags: int) -> str:
    """lsattr's letters, e.g. 'ia'."""
    return "".join(ch for bit, ch in FLAG_LETTERS.items() if flags & bit)

"""POSIX ACLs as the kernel stores them in system.posix_acl_* xattrs, shown as text.

The value is a little-endian header (u32 version = 2) followed by entries of
(u16 tag, u16 permissions, u32 id). Ids are numeric: a restore on another host keeps the
numbers, as getfacl --numeric would (docs/FORMAT.md).
"""

from __future__ import annotations

import grp
import pwd
import struct

_TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}
_NAMED = (0x02, 0x08)


def _name(tag: int, ident: int) -> str:
    try:
        return pwd.getpwuid(ident).pw_name if tag == 0x02 else grp.getgrgid(ident).gr_name
    except KeyError:
        return str(ident)


def to_text(value: bytes, *, names: bool = True) -> str:
    """'user::rw-,user:alice:r--,group::r-x,mask::r-x,other::---'; '?' for a malformed value."""
    if len(value) < 4 or (len(value) - 4) % 8 or struct.unpack_from("<I", value)[0] != 2:
        return "?"
    parts = []
    for off in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, off)
        kind = _TAGS.get(tag)
        if kind is None:
            return "?"
        who = (_name(tag, ident) if names else str(ident)) if tag in _NAMED else ""
        rwx = "".join(ch if perm & bit else "-" for bit, ch in ((4, "r"), (2, "w"), (1, "x")))
        parts.append(f"{kind}:{who}:{rwx}")
    return ",".join(parts)


def build(entries: list[tuple[int, int, int]]) -> bytes:
    """The xattr value for (tag, perm, id) entries; for tests and tools."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)

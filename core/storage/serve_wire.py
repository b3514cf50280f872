"""The wire of `axisor-backup serve` (docs/FORMAT.md "The serve protocol"): frames, and the
storage errors they carry, shared by the server (core/storage/serve.py) and the client
backend (core/storage/ssh.py).

A frame is a 4-byte big-endian length, a msgpack map (the header) of that length, then
``header["n"]`` bytes of payload (0 when absent). Both lengths are bounded before anything
is read, so neither side can be made to allocate what the other announces. Requests carry
an ``id``; responses echo it, so requests pipeline over one stream and answers may come
back in any order. A ``list`` answers with as many frames as it needs (each a page of
``[key, size]`` pairs as a msgpack list in the payload), the last one with ``"more": false``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from core.errors import AxisorError
from core.storage.backend import (
    LocationRefused,
    ObjectExists,
    ObjectNotFound,
    ObjectUnreadable,
    StorageError,
    StorageFull,
    StorageReadOnly,
)

VERSION = 1
LENGTH = struct.Struct(">I")
MAX_HEADER = 64 * 1024
# The largest payload either side accepts: a pack is pack_size (16 MiB by default, at most
# 128 MiB by config) plus its header; 1 GiB leaves room and still bounds a forged length.
MAX_PAYLOAD = 1024 * 1024 * 1024
# Objects per list frame; a page travels as a msgpack list of [key, size] in the payload
# (about 90 bytes an object: ~450 KB a frame).
LIST_PAGE = 5000

# Error kinds on the wire, and the exception each becomes on the client.
ERRORS: dict[str, type[AxisorError]] = {
    "not_found": ObjectNotFound,
    "exists": ObjectExists,
    "unreadable": ObjectUnreadable,
    "full": StorageFull,
    "read_only": StorageReadOnly,
    "refused": LocationRefused,
    "error": StorageError,
}


class WireError(StorageError):
    """The other side sent something that is not a frame of this protocol (a shell's banner
    in front of a forced command, a version this program does not speak, a forged length)."""


def error_kind(exc: BaseException) -> str:
    """The wire's name for a storage exception (most specific first)."""
    for kind, cls in (
        ("refused", LocationRefused),
        ("not_found", ObjectNotFound),
        ("exists", ObjectExists),
        ("unreadable", ObjectUnreadable),
        ("full", StorageFull),
        ("read_only", StorageReadOnly),
    ):
        if isinstance(exc, cls):
            return kind
    return "error"


def encode(header: dict[str, Any], payload: bytes | memoryview | None = None) -> list[bytes | memoryview]:
    """One frame as parts to write back to back (the payload is not copied)."""
    body = dict(header)
    body["n"] = len(payload) if payload is not None else 0
    head = msgpack.packb(body, use_bin_type=True)
    if len(head) > MAX_HEADER:
        raise WireError(f"a frame header of {len(head)} bytes is more than {MAX_HEADER}")
    return [LENGTH.pack(len(head)), head] + ([payload] if payload else [])


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    try:
        raw = await reader.readexactly(LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise WireError("the stream ended inside a frame") from None
    (size,) = LENGTH.unpack(raw)
    if size > MAX_HEADER:
        # b"SSH-", b"Last", b"Welc": printable text where a length belongs is a shell or a
        # banner talking, not the server: say so rather than "a 1.4 GB header".
        shown = raw.decode("ascii", "replace") if all(32 <= b < 127 for b in raw) else raw.hex()
        raise WireError(f"not an axisor-backup serve stream (a frame began with {shown!r})")
    try:
        header = msgpack.unpackb(await reader.readexactly(size), raw=False)
    except asyncio.IncompleteReadError:
        raise WireError("the stream ended inside a frame header") from None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise WireError(f"a frame header that is not msgpack ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("a frame header that is not a map")
    n = header.get("n", 0)
    if not isinstance(n, int) or n < 0 or n > MAX_PAYLOAD:
        raise WireError(f"a payload length of {n!r} (at most {MAX_PAYLOAD})")
    try:
        payload = await reader.readexactly(n) if n else b""
    except asyncio.IncompleteReadError:
        raise WireError("the stream ended inside a payload") from None
    return header, payload


__all__ = [
    "ERRORS",
    "LIST_PAGE",
    "MAX_HEADER",
    "MAX_PAYLOAD",
    "VERSION",
    "WireError",
    "encode",
    "error_kind",
    "read_frame",
]

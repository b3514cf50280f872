"""Text from outside (file names, server messages) made safe to show.

A file name can hold newlines, terminal escape sequences and bytes that are not UTF-8.
Shown raw, a name can rewrite the operator's terminal or forge lines of a report; so every
name or foreign message goes through ``shown`` before it reaches a terminal, a log line or
a warning. The result is one line, printable, and says exactly which bytes were there:
``\\n``, ``\\x1b``, ``\\xff`` for invalid UTF-8, ``\\\\`` for a backslash.
"""

from __future__ import annotations

import os
from datetime import datetime

from core.errors import UsageError

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def shown(value: bytes | str) -> str:
    """One printable line for a name or a message; bytes are decoded as the filesystem does."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if value.isprintable() and "\\" not in value:
        return value  # the common case, without building a new string
    out = []
    for ch in value:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def shown_path(path: bytes | str | os.PathLike) -> str:
    return shown(os.fsencode(path) if not isinstance(path, (bytes, str)) else path)


def shown_lines(text: str) -> str:
    """A message of our own, possibly several lines, made safe for a terminal as a whole:
    every control character but newline and tab (ESC, CR, backspace, C1 controls, ...)
    and every byte that was not UTF-8 is shown as an escape; newlines stay, because our
    multi-line messages use them. Backslashes are left alone, so text that went through
    ``shown`` already is unchanged. The last guard before stdout and stderr: names inside
    a message should still go through ``shown`` first, or a newline in one forges a line."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" or ch == "\t" or ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch == "\r":
            out.append("\\r")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def human_bytes(n: float | None, unknown: str = "?") -> str:
    """A size for people: '512 B', '1.5 MiB', '-2.0 KiB' (binary units, one decimal);
    ``unknown`` for None. The one formatter of sizes: CLI, console and reports alike."""
    if n is None:
        return unknown
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def parse_target_time(text: str) -> datetime:
    """A recovery target as typed (`--to-time`): ISO 8601; without an offset the local time
    zone of this machine is meant."""
    try:
        t = datetime.fromisoformat(text.strip().replace(" UTC", "+00:00"))
    except ValueError:
        raise UsageError(f"--to-time {text!r} is not a date and time (e.g. 2026-11-26T09:30:00+00:00)") from None
    return t if t.tzinfo else t.astimezone()

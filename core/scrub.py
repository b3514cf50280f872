"""Secrets out of everything we keep or send: job records, logs, webhooks, metrics.

Passwords reach us inside connection strings the operator typed: a URL's user info
(``postgresql://u:pw@h/db``), a query parameter (``?password=pw``, also ``sslpassword``),
or a libpq key=value conninfo (``host=h password=pw`` or ``password='p w'``). Each form
is replaced by ``***`` before text is stored or sent. ``find`` names the form, so a
command can refuse a secret where one must never be given (a job's parameters).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

# scheme://user:password@ (the password runs to the last @ before the host).
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/ \t\r\n:@]*:)(?P<secret>[^ \t\r\n/]*)(?=@)")
# ?password=... or &sslpassword=... in a URL's query.
_QUERY = re.compile(r"(?P<head>[?&](?:ssl)?pass(?:word)?=)(?P<secret>[^& \t\r\n#]*)", re.IGNORECASE)
# password=value or password = 'quoted \' value' in a key=value conninfo.
_CONNINFO = re.compile(
    r"(?P<head>(?<![\w?&])(?:ssl)?password\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^ \t\r\n']+)", re.IGNORECASE
)
_FORMS = (
    ("a URL with a password", _URL_USERINFO),
    ("a URL query with a password", _QUERY),
    ("a connection string with a password", _CONNINFO),
)


def find(text: str) -> str | None:
    """Which form of secret ``text`` holds, or None."""
    for what, pattern in _FORMS:
        m = pattern.search(text)
        if m and m.group("secret") not in ("", MASK, f"'{MASK}'"):
            return what
    return None


def scrub(text: str) -> str:
    for _, pattern in _FORMS:
        text = pattern.sub(lambda m: m.group("head") + MASK, text)
    return text


def scrub_value(value: Any) -> Any:
    """``scrub`` applied to every string in a JSON-like value (dict keys included)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v) for v in value]
    return value

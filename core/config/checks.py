"""The checks a config value passes, as markers on the fields of core/config/model.py.

Each marker gives a pydantic-core schema (``schema()``; schema.py assembles them into one
validator per section): pydantic-core walks the document, finds missing and unknown keys
and the items of arrays, and calls the marker on every value it meets. The marker turns the raw TOML value into the typed one or raises
``Invalid`` with the message ``config check`` prints after the key's dotted path. Checks
are strict on purpose: TOML has types, so ``"3"`` for an integer is a mistake to report,
not a value to coerce. ``rule`` is the check's one-line description for the key table in
docs/CONFIG.md (scripts/config-docs).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, available_timezones

from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from pydantic_core.core_schema import ValidationInfo, ValidatorFunctionWrapHandler

# The error type the translator in validate.py passes through word for word; in "AT" the
# marker's message wants the key path, which a pydantic validator is not told.
ERROR = "axisor"
ERROR_AT = "axisor_at"
AT = "\x00at\x00"


class Invalid(Exception):
    """A value failed its check; the message reads after '<key path>: '."""


def type_name(value: object) -> str:
    """A value's type as TOML spells it; datetime before date because it is a subclass."""
    for kind, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (dict, "table"),
        (datetime, "datetime"),
        (date, "date"),
        (time, "time"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def base_dir(info: ValidationInfo | None) -> Path:
    """Where relative paths resolve: the config file's folder, given as validation context."""
    context = info.context if info is not None else None
    found = context.get("base_dir") if isinstance(context, dict) else None
    return found if isinstance(found, Path) else Path.cwd()


class Check:
    """A leaf check: the whole value is this check's business (pydantic's own coercion is
    replaced, not run first)."""

    rule = ""

    def check(self, value: Any, info: ValidationInfo | None) -> Any:
        raise NotImplementedError

    def __call__(self, value: Any, info: ValidationInfo | None = None) -> Any:
        return self.check(value, info)

    def _validate(self, value: Any, info: ValidationInfo) -> Any:
        try:
            return self.check(value, info)
        except Invalid as exc:
            raise PydanticCustomError(ERROR, str(exc)) from None

    def schema(self) -> CoreSchema:
        return core_schema.with_info_plain_validator_function(self._validate)


class Boolean(Check):
    rule = "true | false"

    def check(self, value: Any, info: ValidationInfo | None) -> bool:
        if isinstance(value, bool):
            return value
        raise Invalid(f"must be true or false (got {type_name(value)})")


class MustStayOn(Boolean):
    rule = "true (the only value)"

    def check(self, value: Any, info: ValidationInfo | None) -> bool:
        if super().check(value, info) is False:
            raise Invalid(
                "encryption cannot be disabled: every repository is encrypted (remove this key or set it to true)"
            )
        return True


@dataclass(frozen=True)
class Integer(Check):
    """An integer from lo to hi (no upper bound when hi is None); never a boolean."""

    lo: int
    hi: int | None = None

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return f"integer {self.lo}-{self.hi}" if self.hi is not None else f"integer >= {self.lo}"

    def check(self, value: Any, info: ValidationInfo | None) -> int:
        wanted = f"an integer from {self.lo} to {self.hi}" if self.hi is not None else f"an integer >= {self.lo}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be {wanted} (got {type_name(value)})")
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise Invalid(f"must be {wanted} (got {value})")
        return value


@dataclass(frozen=True)
class String(Check):
    """A string; empty only when empty_ok."""

    empty_ok: bool = False

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return "string" if self.empty_ok else "non-empty string"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string (got {type_name(value)})")
        if not value and not self.empty_ok:
            raise Invalid("must not be empty")
        return value


_STRING = String()


@dataclass(frozen=True)
class Matching(Check):
    """A string matching pattern whole; message says what is allowed."""

    pattern: str
    message: str
    rule_text: str

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return self.rule_text

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        text = _STRING.check(value, info)
        if not re.fullmatch(self.pattern, text):
            raise Invalid(f"{self.message} (got {text!r})")
        return text


class Choice(Check):
    def __init__(self, *options: str) -> None:
        self.options = options

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return " | ".join(f'"{o}"' for o in self.options)

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        text = _STRING.check(value, info)
        if text not in self.options:
            listed = ", ".join(f"'{o}'" for o in self.options)
            raise Invalid(f"must be one of {listed} (got {text!r}){hint(text, self.options)}")
        return text


def resolve(text: str, info: ValidationInfo | None) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir(info) / path


class PathValue(Check):
    rule = "path"

    def check(self, value: Any, info: ValidationInfo | None) -> Path:
        if not isinstance(value, str):
            raise Invalid(f"must be a path string (got {type_name(value)})")
        if not value:
            raise Invalid("must not be empty")
        return resolve(value, info)


class Folder(PathValue):
    """A path that is a folder, or can be made one: not an existing file, not below one.
    Nothing is created here, and permissions are not judged (a repository on read-only
    media is a folder that can be read)."""

    rule = "path of a folder (need not exist yet)"

    def check(self, value: Any, info: ValidationInfo | None) -> Path:
        path = super().check(value, info)
        try:
            if path.exists():
                if not path.is_dir():
                    raise Invalid(f"{path} exists and is not a folder")
                return path
            for parent in path.parents:
                if parent.exists():
                    if not parent.is_dir():
                        raise Invalid(f"{path} cannot be created: {parent} is not a folder")
                    break
        except OSError:
            pass  # cannot look (no permission on a folder above): the command says so when it runs
        return path


class Timezone(Check):
    rule = 'IANA time zone, e.g. "Europe/Paris"'

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        name = _STRING.check(value, info)
        try:
            ZoneInfo(name)
            return name
        # ZoneInfoNotFoundError is a KeyError; malformed keys ("../x") raise ValueError, and a
        # directory of the tz database ("Europe") can surface as an OSError.
        except (KeyError, ValueError, OSError):
            raise Invalid(f"unknown time zone {name!r}{hint(name, available_timezones())}") from None


_CRON_NAMES = frozenset(
    (
        "MON",
        "TUE",
        "WED",
        "THU",
        "FRI",
        "SAT",
        "SUN",
        "JAN",
        "FEB",
        "MAR",
        "APR",
        "MAY",
        "JUN",
        "JUL",
        "AUG",
        "SEP",
        "OCT",
        "NOV",
        "DEC",
    )
)
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_CRON_RANGES = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT",
}


class Cron(Check):
    rule = "5-field cron expression"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        # The shape first, then each field's range alone so the message names the field
        # that is wrong, then whether the whole ever matches a date.
        text = _STRING.check(value, info)
        parts = text.split()
        if len(parts) != len(_CRON_FIELDS):
            raise Invalid(f'must have 5 fields ({" ".join(_CRON_FIELDS)}), e.g. "0 2 * * *" (got {len(parts)})')
        for name, part in zip(_CRON_FIELDS, parts):
            words = re.findall(r"[A-Za-z]+", part)
            shape_ok = re.fullmatch(r"[0-9A-Za-z*/,\-]+", part) is not None
            if not shape_ok or any(word.upper() not in _CRON_NAMES for word in words):
                raise Invalid(f"{name} field {part!r} may only use digits, * / , - and names like MON or JAN")
        from croniter import CroniterBadDateError, croniter

        for index, (name, part) in enumerate(zip(_CRON_FIELDS, parts)):
            alone = ["*"] * len(_CRON_FIELDS)
            alone[index] = part
            if not croniter.is_valid(" ".join(alone)):
                raise Invalid(f"{name} field {part!r} is out of range ({_CRON_RANGES[name]})")
        try:
            croniter(text, datetime(2000, 1, 1)).get_next(datetime)
        except (CroniterBadDateError, ValueError, KeyError):
            raise Invalid(f"{text!r} never matches a date (e.g. 31 in February)") from None
        return text


NO_DB_PASSWORD = "put the password in password_file or PGPASSWORD, never in config.toml"
NO_REMOTE_CREDENTIALS = "credentials go in credentials_file or the provider's standard environment, never config.toml"


def _url_has_password(text: str) -> bool:
    parts = urlsplit(text)
    if parts.password:
        return True
    return any(key.lower() == "password" for key in parse_qs(parts.query))


class PgUrl(Check):
    rule = "postgresql:// URL without a password"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        # Messages here never include the URL: it is exactly where a password would be.
        text = _STRING.check(value, info)
        try:
            parts = urlsplit(text)
            has_password = _url_has_password(text)
        except ValueError:
            raise Invalid("is not a valid URL") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise Invalid("must be a libpq URL starting with postgresql://")
        if has_password:
            raise Invalid(f"contains a password; {NO_DB_PASSWORD}")
        return text


class Endpoint(Check):
    rule = "host[:port] or URL, without credentials"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        text = _STRING.check(value, info)
        if "://" in text:
            try:
                has_password = _url_has_password(text)
            except ValueError:
                raise Invalid("is not a valid URL") from None
            if has_password:
                raise Invalid(f"contains a password; {NO_REMOTE_CREDENTIALS}")
        return text


class WebhookUrl(Check):
    rule = "http:// or https:// URL"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        text = _STRING.check(value, info)
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid("must be an http:// or https:// URL")
        return text


_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?")


class Duration(Check):
    rule = 'duration in weeks, days, hours: "14d", "36h", "2w3d"'

    def check(self, value: Any, info: ValidationInfo | None) -> timedelta:
        text = value.strip() if isinstance(value, str) else None
        m = _DURATION.fullmatch(text) if text else None
        if m is None:
            raise Invalid('must be a duration in weeks, days and hours, e.g. "14d", "36h" or "2w3d"')
        weeks, days, hours = (int(g) if g else 0 for g in m.groups())
        return timedelta(weeks=weeks, days=days, hours=hours)


# Objectives need minutes and seconds too ("15m" for a database with WAL archiving).
_OBJECTIVE_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class ObjectiveDuration(Check):
    rule = 'duration above zero: "24h", "15m", "1h30m", "2d", "90s"'

    def check(self, value: Any, info: ValidationInfo | None) -> timedelta:
        text = value.strip() if isinstance(value, str) else None
        m = _OBJECTIVE_DURATION.fullmatch(text) if text else None
        if m is None:
            raise Invalid('must be a duration such as "24h", "15m", "1h30m", "2d" or "90s"')
        w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        span = timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
        if span <= timedelta(0):
            raise Invalid("must be longer than zero")
        return span


class KibPerSecond(Check):
    """A bandwidth limit as restic takes it: KiB/s, a whole number; 0 means no limit."""

    rule = "integer >= 0, in KiB/s"

    def check(self, value: Any, info: ValidationInfo | None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            got = value if isinstance(value, int) and not isinstance(value, bool) else type_name(value)
            raise Invalid(f"must be a rate in KiB/s, an integer >= 0 (0: unlimited), e.g. 2048 for 2 MiB/s (got {got})")
        return value


class Factor(Check):
    rule = "number 1-100"

    def check(self, value: Any, info: ValidationInfo | None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 100:
            raise Invalid(f"must be a number from 1 to 100 (got {value!r})")
        return float(value)


class Share(Check):
    rule = "number above 0, at most 1"

    def check(self, value: Any, info: ValidationInfo | None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise Invalid(f"must be a share above 0 and at most 1, e.g. 0.5 for 50 % (got {value!r})")
        return float(value)


class ExpectValue(Check):
    rule = "string, number or boolean"

    def check(self, value: Any, info: ValidationInfo | None) -> str | int | float | bool:
        if not isinstance(value, str | int | float | bool):
            raise Invalid(f"must be a string, number or boolean (got {type_name(value)})")
        return value


class RelativePath(Check):
    rule = "relative path inside the restored source"

    def check(self, value: Any, info: ValidationInfo | None) -> str:
        text = _STRING.check(value, info)
        if Path(text).is_absolute() or ".." in Path(text).parts:
            raise Invalid(f"must be relative to the restored source and stay inside it (got {text!r})")
        return text


# --------------------------------------------------------------------------- arrays


class Wrap:
    """Checks around pydantic's own validation of an array: the array's shape here, each
    item by the item type's marker (so every bad item is reported, each at its index)."""

    rule = ""

    def before(self, value: Any) -> Any:
        return value

    def after(self, value: Any, info: ValidationInfo) -> Any:
        return value

    def _validate(self, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        try:
            value = self.before(value)
        except Invalid as exc:
            raise PydanticCustomError(ERROR_AT, str(exc)) from None
        if isinstance(value, tuple):  # already final (false disables a list)
            return value
        result = handler(value)
        try:
            return self.after(result, info)
        except Invalid as exc:
            raise PydanticCustomError(ERROR_AT, str(exc)) from None

    def schema(self, array: CoreSchema) -> CoreSchema:
        return core_schema.with_info_wrap_validator_function(self._validate, array)


@dataclass(frozen=True)
class ListOf(Wrap):
    """A TOML array of what (e.g. paths); with false_disables, false means an empty list."""

    what: str
    example: str
    false_disables: bool = False

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return f"list of {self.what}" + (", or false" if self.false_disables else "")

    def before(self, value: Any) -> Any:
        if self.false_disables and value is False:
            return ()
        if value is True and self.false_disables:
            raise Invalid(f"give a list of {self.what}, e.g. {self.example}, or false to disable")
        if not isinstance(value, list):
            off = " or false" if self.false_disables else ""
            raise Invalid(f"must be a list of {self.what}{off}, e.g. {self.example} (got {type_name(value)})")
        return value


_ARGV_EXAMPLE = '["pass", "show", "axisor/backup"]'


class Argv(ListOf):
    """A program and its arguments. A string would need shell parsing, and shell=False is
    the point: the program and its arguments are given exactly, nothing is interpolated."""

    def __init__(self) -> None:
        super().__init__("strings", _ARGV_EXAMPLE)

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return "list of strings: program, then arguments (no shell)"

    def before(self, value: Any) -> Any:
        if isinstance(value, str):
            raise Invalid(f"must be a list of strings (program, then arguments), e.g. {_ARGV_EXAMPLE} (got string)")
        return super().before(value)

    def after(self, value: Any, info: ValidationInfo) -> Any:
        if not value:
            raise Invalid(f"must name a program, e.g. {_ARGV_EXAMPLE}")
        program = value[0]
        # "./get-passphrase" is relative to the config file like every other path, not to
        # whatever directory the program happens to be started from.
        if os.sep in program and not Path(program).expanduser().is_absolute():
            program = str(resolve(program, info))
        return (program, *value[1:])


@dataclass(frozen=True)
class Tables(Wrap):
    """An array of tables (``[[at]]``). With ``unique_names`` no two may share a ``name``:
    names key copies, pause state and run history, and commands pick entries by them
    (validate.py reports duplicates, beside the entries' own problems)."""

    unique_names: bool = False

    @property
    def rule(self) -> str:  # type: ignore[override]  # computed here; a plain class attribute on Check
        return "array of tables" + (" (unique names)" if self.unique_names else "")

    def before(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise Invalid(f"must be an array of tables, written [[{AT}]] (got {type_name(value)})")
        return value


# --------------------------------------------------------------------------- declaration only


@dataclass(frozen=True)
class Doc:
    """What a key is for, one line, for the key table in docs/CONFIG.md."""

    text: str


@dataclass(frozen=True)
class Deprecated:
    """A key that is read but does nothing: still accepted (and type-checked) so an old
    config keeps loading, with a warning naming what to do; left out of config.toml.example."""

    advice: str

    @property
    def warning(self) -> str:
        return f"deprecated, does nothing: {self.advice}; remove this key"


class NotAKey:
    """A field filled by the loader, not written in config.toml (Config.path)."""

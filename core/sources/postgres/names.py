"""Qualified SQL names: one parser for ``--table``/``--schema``, the restore wizard and the keys
of a snapshot's table metadata.

Rules (PostgreSQL's own identifier rules, as psql patterns apply them):

- A name is parts separated by dots outside double quotes: ``schema.table``.
- Outside quotes letters fold to lower case (ASCII, as the server folds them); inside quotes
  everything is literal (dots, spaces, newlines, capitals) and ``""`` stands for ``"``. A part
  may mix both: ``Foo"Bar"`` is ``fooBar``.
- Outside quotes a part may hold letters, digits, ``_`` and ``$`` (not first) and non-ASCII
  characters; anything else (a space, a dash) must be quoted. ``*`` and ``?`` outside quotes are
  wildcards (any run of characters, one character), only there: ``sales.*``; inside quotes they
  are literal.
- A table name without a schema is looked up in every schema; more than one hit is refused with
  the candidates listed. A name with more than two unquoted-dot parts is refused; when it reads
  as some table's name with its dots (``dot.t.u`` for ``dot."t.u"`` or ``"dot.t".u``) the
  candidates are listed with the quoting that picks each.

Keys (``key``): a table's canonical text, ``schema.name`` with each part quoted unless it is a
plain lower-case identifier (``[a-z_][a-z0-9_]*``): ``public.orders``, ``"Sales Dept".orders``,
``dot."t.u"``, ``"dot.t".u``. The key parses back to the same pair, so it is unambiguous; plain
names look as they always did.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from collections.abc import Iterable

from core import text
from core.errors import UsageError

_PLAIN = re.compile(r"[a-z_][a-z0-9_]*\Z")
_UNQUOTED_OK = re.compile(r"[A-Za-z0-9_$*?\u0080-\U0010ffff]")


def quote(ident: str) -> str:
    """``ident`` quoted unless it is a plain lower-case identifier."""
    if _PLAIN.match(ident):
        return ident
    return '"' + ident.replace('"', '""') + '"'


def table_option(schema: str, name: str, option: str = "--table") -> str:
    """pg_dump's ``--table=`` (or another table ``option``) for exactly this table: every part
    quoted, so its pattern matching takes dots, capitals, ``*`` and newlines literally."""
    return f"{option}=" + ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def key(schema: str, name: str) -> str:
    """The canonical, unambiguous text of a table: see the module docstring."""
    return f"{quote(schema)}.{quote(name)}"


# The marker of snapshot metadata whose table keys are ``key``s (see logical_snapshot.TABLE_KEYS).
TABLE_KEYS = "sql-quoted-v1"


def legacy_key(old: str) -> str:
    """A key of a snapshot taken before TABLE_KEYS (``f"{schema}.{name}"``, unquoted) as a
    ``key``, split at the first dot (what those versions did; the dump's table of contents
    tells better, see logical_snapshot.snapshot_tables)."""
    schema, _, name = old.partition(".")
    return key(schema, name)


def metadata_tables(meta: dict) -> dict[str, int]:
    """A database snapshot's ``tables`` (row counts) by ``key``, whichever version wrote it."""
    found = meta.get("tables")
    tables: dict[str, int] = found if isinstance(found, dict) else {}
    if meta.get("table_keys") == TABLE_KEYS:
        return dict(tables)
    return {legacy_key(k): v for k, v in tables.items()}


def shown(schema: str, name: str) -> str:
    """One line for a message: the key, with control characters (a newline in a quoted
    name) escaped so the message stays one line per table."""
    return text.shown(key(schema, name))


@dataclass(frozen=True, slots=True)
class Part:
    text: str  # folded and unescaped
    pattern: str | None = None  # fnmatch pattern when the part has unquoted wildcards

    def matches(self, value: str) -> bool:
        return value == self.text if self.pattern is None else fnmatch.fnmatchcase(value, self.pattern)


def split(text: str, *, what: str = "name", wildcards: bool = True) -> list[Part]:
    """The parts of ``text``. Raises UsageError naming what is wrong."""
    parts: list[Part] = []
    cur: list[str] = []  # the literal text
    pat: list[str] = []  # the same as an fnmatch pattern
    wild = False
    started = False
    i, n = 0, len(text)

    def close() -> None:
        nonlocal cur, pat, wild, started
        if not started:
            raise UsageError(
                f"{what} {text!r}: an empty part (a dot at the start, the end, or next to "
                f'another); quote names that contain dots: "a.b"'
            )
        parts.append(Part("".join(cur), "".join(pat) if wild else None))
        cur, pat, wild, started = [], [], False, False

    while i < n:
        ch = text[i]
        if ch == '"':
            got = quoted_at(text, i)
            if got is None:
                raise UsageError(f"{what} {text!r}: a quote is not closed")
            s, after = got
            if not s:
                raise UsageError(f'{what} {text!r}: a zero-length quoted name ("")')
            cur.append(s)
            pat.append("".join("[" + c + "]" if c in "*?[]" else c for c in s))
            started = True
            i = after
        elif ch == ".":
            close()
            i += 1
        else:
            if not _UNQUOTED_OK.match(ch) or (ch in "*?" and not wildcards):
                hint = "a space" if ch == " " else "a newline" if ch == "\n" else repr(ch)
                raise UsageError(
                    f"{what} {text!r}: {hint} outside double quotes; quote the part that has it "
                    f"(e.g. '\"Sales Dept\".orders')"
                )
            if ch in "*?":
                wild = True
                cur.append(ch)
                pat.append(ch)
            else:
                low = ch.lower() if ch.isascii() else ch
                cur.append(low)
                pat.append("[" + low + "]" if low in "[]" else low)
            started = True
            i += 1
    close()
    return parts


def parse_key(text: str) -> tuple[str, str]:
    """A canonical key (or any exact ``schema.name``) back to its pair; ValueError if it is not one."""
    try:
        parts = split(text, wildcards=False)
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not schema.name")
    return parts[0].text, parts[1].text


def resolve_tables(specs: Iterable[str], tables: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (schema, name) pairs of ``tables`` that ``specs`` (``--table`` values) name, in the
    order of ``tables``. An exact name that is not there, a wildcard that matches nothing, an
    ambiguous bare name or an unquoted name with dots in it raise UsageError naming the
    candidates."""
    tables = list(dict.fromkeys(tables))
    chosen: set[tuple[str, str]] = set()
    problems: list[str] = []
    for spec in specs:
        parts = split(spec, what="--table")
        if len(parts) == 1:
            hits = [t for t in tables if parts[0].matches(t[1])]
            if len(hits) > 1 and parts[0].pattern is None:
                problems.append(
                    f"--table {spec!r} is in more than one schema: give one of " + ", ".join(shown(*t) for t in hits)
                )
                continue
        elif len(parts) == 2:
            hits = [t for t in tables if parts[0].matches(t[0]) and parts[1].matches(t[1])]
        else:
            flat = ".".join(p.text for p in parts)
            cands = [t for t in tables if f"{t[0]}.{t[1]}" == flat]
            problems.append(
                f"--table {spec!r} has {len(parts)} dot-separated parts; "
                + (
                    f"quote the dotted part, one of: {', '.join(shown(*t) for t in cands)}"
                    if cands
                    else 'quote a part that contains a dot ("a.b".c)'
                )
            )
            continue
        if not hits:
            problems.append(
                f"--table {spec!r}: "
                + ("no table matches" if any(p.pattern for p in parts) else "no such table")
                + _case_hint(parts, tables)
            )
            continue
        chosen.update(hits)
    if problems:
        raise UsageError("; ".join(problems))
    return [t for t in tables if t in chosen]


def resolve_schemas(specs: Iterable[str], schemas: Iterable[str]) -> list[str]:
    """The schemas ``specs`` (``--schema`` values) name: one part each, exact or a wildcard."""
    schemas = list(dict.fromkeys(schemas))
    chosen: set[str] = set()
    problems: list[str] = []
    for spec in specs:
        parts = split(spec, what="--schema")
        if len(parts) != 1:
            cands = [s for s in schemas if s == ".".join(p.text for p in parts)]
            problems.append(
                f"--schema {spec!r} has {len(parts)} dot-separated parts; a schema name with a "
                f"dot is quoted: " + (", ".join(quote(s) for s in cands) or '"a.b"')
            )
            continue
        hits = [s for s in schemas if parts[0].matches(s)]
        if not hits:
            low = [s for s in schemas if s.lower() == parts[0].text.lower() and parts[0].pattern is None]
            problems.append(
                f"--schema {spec!r}: no such schema"
                + (f" (unquoted names fold to lower case: did you mean {quote(low[0])}?)" if low else "")
            )
            continue
        chosen.update(hits)
    if problems:
        raise UsageError("; ".join(problems))
    return [s for s in schemas if s in chosen]


def _case_hint(parts: list[Part], tables: list[tuple[str, str]]) -> str:
    if any(p.pattern for p in parts):
        return ""
    want = tuple(p.text.lower() for p in parts)
    near = [t for t in tables if (t[1].lower(),) == want or (t[0].lower(), t[1].lower()) == want]
    if near:
        return " (unquoted names fold to lower case; quoted: " + ", ".join(shown(*t) for t in near[:5]) + ")"
    return ""


def quoted_at(text: str, start: int) -> tuple[str, int] | None:
    """The double-quoted identifier opening at ``text[start]`` (``""`` inside stands for one
    quote): its text and the index just past its closing quote; None when it is not closed."""
    lit: list[str] = []
    j, n = start + 1, len(text)
    while j < n:
        if text[j] == '"':
            if j + 1 < n and text[j + 1] == '"':
                lit.append('"')
                j += 2
                continue
            return "".join(lit), j + 1
        lit.append(text[j])
        j += 1
    return None


def split_list(text: str) -> list[str]:
    """A comma-separated list of identifiers as pg_dump writes them (``a, "B c", "d""e"``) to its
    names; unquoted ones are taken as written (pg_dump quotes every name that needs it)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            got = quoted_at(text, i)
            if got is None:
                raise ValueError(f"unclosed quote in {text!r}")
            out.append(got[0])
            i = got[1]
        else:
            j = i
            while j < n and text[j] != ",":
                j += 1
            out.append(text[i:j].strip())
            i = j
        while i < n and text[i] in " \t":
            i += 1
        if i < n:
            if text[i] != ",":
                raise ValueError(f"not a list of names: {text!r}")
            i += 1
    return out


def copy_columns(stmt: str) -> tuple[str, str, list[str]] | None:
    """``COPY schema.table (a, b) FROM stdin;`` (a TABLE DATA entry's copy statement) to
    (schema, table, columns); None for any other shape."""
    if not stmt.startswith("COPY "):
        return None
    i, n = 5, len(stmt)
    idents: list[str] = []
    while True:
        if i < n and stmt[i] == '"':
            got = quoted_at(stmt, i)
            if got is None:
                return None
            idents.append(got[0])
            i = got[1]
        else:
            j = i
            while j < n and stmt[j] not in '. ("':
                j += 1
            if j == i:
                return None
            idents.append(stmt[i:j])
            i = j
        if i < n and stmt[i] == ".":
            i += 1
            continue
        break
    if len(idents) != 2:
        return None
    rest = stmt[i:]
    tail = " FROM stdin;"
    body = rest.rstrip("\n")
    if not body.endswith(tail):
        return None
    body = body[: -len(tail)].strip()
    if not body:
        return idents[0], idents[1], []
    if not (body.startswith("(") and body.endswith(")")):
        return None
    try:
        return idents[0], idents[1], split_list(body[1:-1])
    except ValueError:
        return None

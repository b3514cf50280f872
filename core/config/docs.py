"""The key table of docs/CONFIG.md, written from model.py's declaration.

``python -m core.config.docs`` rewrites docs/CONFIG.md (scripts/config-docs runs it);
``--check`` exits 1 when the file differs from what the declaration gives, and
tests/core/test_config.py fails the same way, so the table cannot drift.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.config.model import OBJECTIVE_KEYS, Config
from core.config.schema import Key, keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md"


def sections(cls: type = Config, at: str = "") -> Iterator[tuple[str, bool, type]]:
    """Every table of the config, as (dotted name, is an array of tables, dataclass), the
    sections in declaration order, each followed by the tables below it."""
    for name, key in keys(cls).items():
        if key.table is None:
            continue
        where = f"{at}.{name}" if at else name
        yield where, key.array, key.table
        yield from sections(key.table, where)


def all_keys() -> Iterator[tuple[str, Key]]:
    """(dotted table name, key) for every plain key of every table; tables themselves
    (nested and arrays) are keys of their parent too."""
    for where, _, cls in sections():
        for key in keys(cls).values():
            yield where, key


def toml_value(value: Any) -> str:
    """A default as it is written in config.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f'"{seconds // size}{unit}"'
        return f'"{seconds}s"'
    return str(value)


def _default(key: Key) -> str:
    if key.required:
        return "required"
    if key.default is None:
        return "unset"
    return f"`{toml_value(key.default)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    lines = [
        "# Configuration keys",
        "",
        "<!-- Written by scripts/config-docs from core/config/model.py; do not edit by hand. -->",
        "",
        "Every key of config.toml, as core/config/model.py declares it: `config check` reads a",
        "file against the same declaration. Unknown keys are errors. config.toml.example",
        "explains each key at length; a key marked *unset* has no default. Deprecated keys are",
        "still accepted, with a warning on every command saying what to do.",
    ]
    # Tables of one kind ([retention.database], [retention.application], ...) share a table.
    groups: dict[type, list[tuple[str, bool]]] = {}
    for where, array, cls in sections():
        groups.setdefault(cls, []).append((where, array))
    for cls, names in groups.items():
        where = names[0][0]
        header = ", ".join(f"`[[{name}]]`" if array else f"`[{name}]`" for name, array in names)
        lines += ["", f"## {header}", "", "| Key | Value | Default | Meaning |", "|---|---|---|---|"]
        for key in keys(cls).values():
            check = key.check
            if key.table is not None:
                value = "array of tables" if key.array else "table"
                see = f"[[{where}.{key.name}]]" if key.array else f"[{where}.{key.name}]"
                lines.append(f"| `{key.name}` | {value} | | {_cell(key.doc)}; see `{see}` |")
                continue
            rule = check.rule if check is not None else ""
            meaning = key.doc
            if key.deprecated is not None:  # "deprecated, does nothing: ..."
                meaning = f"**deprecated**{key.deprecated.removeprefix('deprecated')}"
            lines.append(f"| `{key.name}` | {_cell(rule)} | {_cell(_default(key))} | {_cell(meaning)} |")
        if where == "objectives":
            names_ = ", ".join(f'`"{name}"`' for name in OBJECTIVE_KEYS)
            lines += [
                "",
                (
                    f'Tables `[objectives."<name>"]` with `rpo` and/or `rto` override the defaults '
                    f"for one category or source: {names_}. A source inherits from its category's table."
                ),
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} differs from core/config/model.py: run scripts/config-docs", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

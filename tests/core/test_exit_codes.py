"""One table of exit codes (core.errors.Exit): the documented table in docs/CLI.md says
the same codes, every exception names its code from it, and no module writes a bare one."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import core
from core.errors import AxisorError, Exit

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> set[int]:
    text = (ROOT / "docs" / "CLI.md").read_text()
    table = text.split("## Exit codes", 1)[1]
    return {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.M)}


def test_the_docs_table_lists_exactly_the_codes_of_exit():
    assert _documented() == {int(e) for e in Exit}


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def test_every_error_names_a_code_of_the_table():
    for info in pkgutil.walk_packages(core.__path__, "core."):
        importlib.import_module(info.name)
    for cls in {AxisorError} | _subclasses(AxisorError):
        assert cls.exit_code in set(Exit), f"{cls.__module__}.{cls.__name__}: exit code {cls.exit_code}"


# A result's or a failure's exit code written as a bare number.
_BARE = re.compile(
    r'"exit_code": \d|exit_code"\]\s*=\s*\d|exit_code\s*=\s*\d|JobFailed\([^)]*,\s*\d+\)|^\s*return (?:[2-9]|1\d|2\d|130)$'
)


def test_no_module_writes_a_bare_exit_code():
    found = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if _BARE.search(line) and "Exit." not in line:
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "use core.errors.Exit:\n" + "\n".join(found)

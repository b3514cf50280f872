"""docs/ARCHITECTURE.md gives every module a line (issue 20): a module added without one fails."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_has_a_line_in_the_architecture() -> None:
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for top in ("app", "core", "screens")
        for p in sorted((ROOT / top).rglob("*.py"))
        if p.name != "__init__.py"
        and "__pycache__" not in p.parts
        and str(p.relative_to(ROOT)) not in doc
        and p.name not in doc
    ]
    assert not missing, f"modules without a line in docs/ARCHITECTURE.md: {missing}"

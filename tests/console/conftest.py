"""Fixtures for the console tests (helpers: tests/console_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console_support import Platform, build_platform


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return build_platform(tmp_path)

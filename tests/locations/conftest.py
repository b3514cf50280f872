"""A workspace with several locations (see locations_support.Sites)."""

from __future__ import annotations

from pathlib import Path

import pytest

from locations_support import Sites, fill


@pytest.fixture
def sites(ws, tmp_path: Path) -> Sites:
    s = Sites(ws, tmp_path / "state")
    fill(ws.src)
    return s

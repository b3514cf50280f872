"""The cross-check's reading of paths that come from the restored database (outside text):
any value is answered, never raised on; a path climbing out of the restored folders, a NUL,
or a non-string is never "there"; one that is there is found, relative or absolute."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from core.drills.checks import _restored


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.text(), st.binary(), st.integers(), st.none(), st.floats()))
def test_any_value_is_answered_and_climbing_out_is_never_there(tmp_path_factory, value) -> None:
    root = tmp_path_factory.getbasetemp() / "restored" / "srv" / "app"
    root.mkdir(parents=True, exist_ok=True)
    (root / "inside.txt").write_text("x")
    found = _restored(value, [root], [Path("/srv/app")])
    assert isinstance(found, bool)
    if not isinstance(value, str) or "\0" in value or ".." in Path(value).parts:
        assert not found


def test_relative_and_absolute_paths_are_found_below_their_source(tmp_path: Path) -> None:
    root = tmp_path / "srv" / "app"  # the target joined with the configured path /srv/app
    (root / "a").mkdir(parents=True)
    (root / "a" / "b.pdf").write_text("x")
    sources = [Path("/srv/app")]
    assert _restored("a/b.pdf", [root], sources)
    assert _restored("/srv/app/a/b.pdf", [root], sources)
    assert not _restored("/srv/other/a/b.pdf", [root], sources)
    assert not _restored("a/../a/b.pdf", [root], sources)
    assert not _restored("a/missing.pdf", [root], sources)

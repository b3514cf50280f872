"""shown(): every name is one printable line that says which bytes it had."""

from hypothesis import given
from hypothesis import strategies as st

from core.text import shown


def test_hostile_names():
    assert shown(b"a\nb") == "a\\nb"
    assert shown(b"\x1b[31mred") == "\\x1b[31mred"
    assert shown(b"caf\xc3\xa9 \xff") == "café \\xff"
    assert shown("back\\slash") == "back\\\\slash"
    assert shown("plain name.txt") == "plain name.txt"


@given(st.binary(max_size=64))
def test_always_one_printable_line_and_distinct(raw):
    out = shown(raw)
    assert out.isprintable()
    assert shown(raw + b"\n") != out


@given(st.binary(max_size=32), st.binary(max_size=32))
def test_different_names_look_different(a, b):
    if a != b:
        assert shown(a) != shown(b)


def test_a_c1_control_and_a_stray_byte_differ():
    assert shown("\u0080".encode()) != shown(b"\x80")

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


def test_shown_lines_keeps_our_newlines_and_escapes_the_rest():
    from core.text import shown_lines

    assert shown_lines("error: one\n  two") == "error: one\n  two"
    assert shown_lines("a\x1b[2Jb\rc\x08d\x9be\u202ef") == "a\\x1b[2Jb\\rc\\x08d\\u009be\\u202ef"
    assert shown_lines("tab\tok") == "tab\tok"
    assert shown_lines(b"bad \xff".decode("utf-8", "surrogateescape")) == "bad \\xff"
    # Idempotent on what shown() made: names escaped once, never twice.
    name = shown(b"x\\y\n\x1b")
    assert shown_lines(f"file {name}") == f"file {name}"


@given(st.text(max_size=64))
def test_shown_lines_leaves_no_control_character_but_newline_and_tab(text):
    from core.text import shown_lines

    out = shown_lines(text)
    assert all(ch in "\n\t" or ch.isprintable() for ch in out)
    assert out.count("\n") == text.count("\n")


def test_human_bytes_is_the_one_size_formatter():
    from core.text import human_bytes

    assert [human_bytes(n) for n in (0, 512, 1536, 5 * 2**20, -2048)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "-2.0 KiB",
    ]
    assert human_bytes(3 * 2**50) == "3072.0 TiB"
    assert human_bytes(None) == "?" and human_bytes(None, unknown="-") == "-"

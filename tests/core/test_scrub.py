"""Every form of a password in a connection string is found and masked."""

from hypothesis import given
from hypothesis import strategies as st

from core.scrub import find, scrub, scrub_value

SECRET = "s3cr3t-Pw"


def test_forms():
    cases = [
        f"postgresql://app:{SECRET}@db/axisor",
        f"postgresql://db/axisor?user=app&password={SECRET}",
        f"postgresql://db/axisor?sslpassword={SECRET}&x=1",
        f"host=db user=app password={SECRET} dbname=axisor",
        f"host=db password = '{SECRET} with \\' quote' dbname=x",
        f"connection to server failed: host=db PASSWORD={SECRET}",
        f"s3://key:{SECRET}@bucket/x",
    ]
    for text in cases:
        assert find(text), text
        out = scrub(text)
        assert SECRET not in out and "***" in out, out
        assert find(out) is None


def test_harmless_text_is_left_alone():
    for text in (
        "postgresql://app@db/axisor",
        "host=db user=app dbname=axisor",
        "backup of /srv/password",
        "passwords are not in argv",
        "https://example.com/a:b",
    ):
        assert find(text) is None and scrub(text) == text


def test_nested_values():
    out = scrub_value({"target_db": f"host=x password={SECRET}", "list": [f"a://u:{SECRET}@h"], "n": 3})
    assert SECRET not in repr(out) and out["n"] == 3


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=" '\\@/&#?\n\t\r"),
        min_size=4,
        max_size=30,
    )
)
def test_any_password_value_is_masked(pw):
    for text in (f"postgresql://u:{pw}@h/db", f"postgresql://h/db?password={pw}", f"host=h password={pw}"):
        assert pw not in scrub(text).split("***", 1)[-1] or pw in "***"
        assert find(scrub(text)) is None

"""Key escrow (issue 17, item 4; core/repository/escrow.py): Shamir shares of the master key,
as property tests of the arithmetic and the share text, and end to end through the CLI:
shares written 0600 and never printed, `key recover --check` as the drill, a new passphrase
from k shares when every passphrase is lost."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import UsageError
from core.repository.escrow import Share, combine, make_shares, rebuild, split


@settings(max_examples=60, deadline=None)
@given(secret=st.binary(min_size=1, max_size=64), k=st.integers(2, 6), extra=st.integers(0, 4), seed=st.integers())
def test_any_k_shares_rebuild_the_secret_and_k_minus_one_do_not(secret, k, extra, seed):
    n = k + extra
    shares = split(secret, k, n)
    rnd = random.Random(seed)
    for subset in itertools.islice(itertools.combinations(shares, k), 10):
        chosen = list(subset)
        rnd.shuffle(chosen)
        assert combine(chosen) == secret
    # Fewer than k: Lagrange through k-1 points is some other polynomial's value at 0.
    if len(secret) >= 8:
        assert combine(shares[: k - 1]) != secret


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=64, max_size=64), k=st.integers(2, 255), x=st.integers(1, 255))
def test_a_share_reads_back_from_its_text_and_a_typo_is_caught(data, k, x):
    share = Share("ab" * 16, k, x, data)
    text = share.text()
    assert Share.parse(text) == share
    assert Share.parse("\n  " + text[:30] + "\n" + text[30:] + "  \n") == share  # wrapped on paper
    i = len("axisor-share-1-") + 40
    typo = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    with pytest.raises(UsageError):
        Share.parse(typo)


def test_rebuild_names_what_is_wrong():
    master = os.urandom(64)
    shares = make_shares("cd" * 16, master, 3, 5)
    assert rebuild(shares[1:4], "cd" * 16) == master
    with pytest.raises(UsageError, match="needs 3"):
        rebuild(shares[:2], "cd" * 16)
    with pytest.raises(UsageError, match="belong to repository"):
        rebuild(shares[:3], "ef" * 16)
    with pytest.raises(UsageError, match="needs 3"):
        rebuild([shares[0], shares[0], shares[1]], "cd" * 16)
    with pytest.raises(UsageError, match="different splits"):
        rebuild([shares[0], shares[1], make_shares("cd" * 16, master, 2, 3)[2]], "cd" * 16)
    with pytest.raises(UsageError):
        split(master, 1, 3)


def test_escrow_then_recover_when_every_passphrase_is_lost(ws, tmp_path):
    (ws.src / "a.txt").write_text("the data\n")
    assert ws.cli("init").code == 0
    assert ws.cli("backup").code == 0
    out = tmp_path / "escrow"
    r = ws.cli("key", "escrow", "--shares", "5", "--threshold", "3", "--out", str(out), "--json")
    assert r.code == 0, r.err
    files = sorted(out.iterdir())
    assert len(files) == 5 and all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    texts = [f.read_text().strip() for f in files]
    assert not any(t in r.out + r.err for t in texts)  # never on the screen
    assert ws.cli("key", "escrow", "--shares", "5", "--threshold", "3", "--out", str(out)).code == 2  # not empty

    # The drill: three keepers' shares prove the repository opens; no passphrase is asked for.
    r = ws.cli("key", "recover", "--check", str(files[0]), str(files[2]), str(files[4]), passphrase=None)
    assert r.code == 0 and "the repository opens" in r.out, r.err
    r = ws.cli("key", "recover", "--check", str(files[0]), str(files[1]), passphrase=None)
    assert r.code == 2 and "needs 3" in r.err, r.err

    # Every key file lost with its passphrase: three shares and a new passphrase bring it back.
    for key in (ws.repo / "keys").iterdir():
        key.unlink()
    new = tmp_path / "new-passphrase"
    new.write_text("the passphrase after the escrow\n")
    new.chmod(0o600)
    r = ws.cli(
        "key",
        "recover",
        str(files[1]),
        str(files[3]),
        str(files[4]),
        "--new-passphrase-file",
        str(new),
        passphrase=None,
    )
    assert r.code == 0 and "recovered: added key" in r.out, r.err
    r = ws.cli("restore", "latest", "--target", str(tmp_path / "back"), passphrase="the passphrase after the escrow")
    assert r.code == 0, r.err
    assert (tmp_path / "back" / str(ws.src).lstrip("/") / "a.txt").read_text() == "the data\n"

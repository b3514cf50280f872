"""The cipher with retired keys (`key rotate`): it seals under the current key only, and opens
what any of its keys (current or retired) sealed, through every path: whole objects, index
files (the writers' key), blobs, write-only sessions; what none of them sealed does not open."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from core import crypto

IDENT = os.urandom(32)
ENCS = [os.urandom(32) for _ in range(5)]


def _key(enc: bytes) -> crypto.MasterKey:
    return crypto.MasterKey(enc=enc, ident=IDENT)


@settings(max_examples=60, deadline=None)
@given(
    current=st.integers(0, 4),
    retired=st.sets(st.integers(0, 4), max_size=4),
    sealer=st.integers(0, 4),
    shared=st.booleans(),
    writer=st.booleans(),
    plain=st.binary(max_size=200),
    ad=st.binary(max_size=40),
)
def test_opens_iff_sealed_under_one_of_its_keys(current, retired, sealer, shared, writer, plain, ad):
    cipher = crypto.Cipher(_key(ENCS[current]), [ENCS[i] for i in retired])
    if writer and not shared:
        sealed = crypto.WriteOnlyCipher(_key(ENCS[sealer]).writer()).seal(plain, ad)
    else:
        sealed = crypto.Cipher(_key(ENCS[sealer])).seal(plain, ad, shared=shared)
    holds = sealer == current or sealer in retired
    try:
        assert cipher.open(sealed, ad, shared=shared) == plain
        assert holds
    except crypto.DecryptError:
        assert not holds
    # Blob path: nonce, ciphertext and tag apart.
    nonce = os.urandom(crypto.NONCE_SIZE)
    body = crypto.Cipher(_key(ENCS[sealer])).encrypt(nonce, plain, ad)
    try:
        assert cipher.decrypt(nonce, body, ad) == plain
        assert holds
    except crypto.DecryptError:
        assert not holds
    assert cipher.opens_shared(crypto.Cipher(_key(ENCS[sealer])).seal(plain, ad, shared=True), ad) == holds


@settings(max_examples=30, deadline=None)
@given(current=st.integers(0, 4), retired=st.sets(st.integers(0, 4), max_size=4), plain=st.binary(max_size=100))
def test_seals_under_the_current_key_only(current, retired, plain):
    cipher = crypto.Cipher(_key(ENCS[current]), [ENCS[i] for i in retired])
    sealed = cipher.seal(plain, b"ad")
    assert crypto.Cipher(_key(ENCS[current])).open(sealed, b"ad") == plain
    for i in retired - {current}:
        try:
            crypto.Cipher(_key(ENCS[i])).open(sealed, b"ad")
            raise AssertionError("opened under a retired key")
        except crypto.DecryptError:
            pass
    assert cipher.current_only().open(sealed, b"ad") == plain


def test_a_write_only_session_under_a_retired_key_opens():
    old, new = _key(ENCS[0]), _key(ENCS[1])
    w = crypto.WriteOnlyCipher(old.writer())
    nonce = os.urandom(crypto.NONCE_SIZE)
    body = w.encrypt(nonce, b"blob", b"ad")
    assert crypto.Cipher(new, [old.enc]).decrypt(nonce, body, b"ad", w.session) == b"blob"
    try:
        crypto.Cipher(new).decrypt(nonce, body, b"ad", w.session)
        raise AssertionError("opened without the retired key")
    except crypto.DecryptError:
        pass

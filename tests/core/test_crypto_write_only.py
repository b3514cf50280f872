"""Sealing across the two kinds of key (docs/FORMAT.md "Write-only keys"): what a write-only
writer seals, only the master key opens; index files both open; nothing else crosses."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import crypto
from core.errors import KeyRefused
from core.repository.blobs import open_blob, seal_blob
from core.repository.format import SESSION_SEALED
from core.repository.packer import Packer, decode_header

MASTER = crypto.MasterKey.generate()
FULL = crypto.Cipher(MASTER)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), level=st.sampled_from([0, 3]), blob_type=st.sampled_from([0, 1]))
def test_a_writers_blob_opens_with_the_master_key_only(data, level, blob_type):
    writer = crypto.WriteOnlyCipher(MASTER.writer())
    blob_id = writer.typed_id(blob_type, data)
    assert blob_id == FULL.typed_id(blob_type, data)  # same ids: deduplication across kinds
    sealed = seal_blob(writer, level, blob_type, blob_id, data)
    raw = sealed.head + sealed.body
    assert raw[0] & SESSION_SEALED and raw[1:33] == writer.session
    assert open_blob(FULL, blob_type, blob_id, raw, len(data), "test") == data
    with pytest.raises(KeyRefused):
        open_blob(writer, blob_type, blob_id, raw, len(data), "test")
    # Another master key, or a flipped bit anywhere, is damage.
    from core.errors import DamagedObject

    with pytest.raises(DamagedObject):
        open_blob(crypto.Cipher(crypto.MasterKey.generate()), blob_type, blob_id, raw, len(data), "test")
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 1
    with pytest.raises(DamagedObject):
        open_blob(FULL, blob_type, blob_id, bytes(flipped), len(data), "test")


@settings(max_examples=60, deadline=None)
@given(plain=st.binary(max_size=2048), ad=st.binary(min_size=1, max_size=64))
def test_objects_and_index_files_cross_as_documented(plain, ad):
    writer = crypto.WriteOnlyCipher(MASTER.writer())
    boxed = writer.seal(plain, ad)
    assert boxed[: crypto.SESSION_SIZE] == writer.session
    assert FULL.open(boxed, ad) == plain
    with pytest.raises(crypto.DecryptError):
        FULL.open(boxed, ad + b"x")
    with pytest.raises(KeyRefused):
        writer.open(FULL.seal(plain, ad), ad)
    # Index files: the writers' key, both ways; `enc`-sealed ones (version 1) the full key only.
    assert writer.open(FULL.seal(plain, ad, shared=True), ad, shared=True) == plain
    assert FULL.open(writer.seal(plain, ad, shared=True), ad, shared=True) == plain
    assert FULL.open(FULL.seal(plain, ad), ad, shared=True) == plain
    with pytest.raises(crypto.DecryptError):
        writer.open(FULL.seal(plain, ad), ad, shared=True)


def test_a_pack_a_writer_made_lists_its_blobs_for_the_master_key():
    writer = crypto.WriteOnlyCipher(MASTER.writer())
    p = Packer()
    for data in (os.urandom(100), b"", b"x" * 5000):
        b = seal_blob(writer, 3, 0, writer.typed_id(0, data), data)
        p.add(b.type, b.id, b.head, b.body, b.raw_length)
    _pack_id, parts, entries = p.finalize(writer)
    whole = b"".join(parts)
    header_len = int.from_bytes(whole[-8:-4], "little")
    start = len(whole) - 8 - header_len
    assert decode_header(FULL, whole[start:-8], start) == entries
    with pytest.raises(KeyRefused):
        decode_header(writer, whole[start:-8], start)


def test_each_writer_session_has_its_own_key_and_a_planted_session_is_refused():
    a, b = crypto.WriteOnlyCipher(MASTER.writer()), crypto.WriteOnlyCipher(MASTER.writer())
    assert a.session != b.session
    sealed = a.seal(b"manifest", b"ad")
    with pytest.raises(crypto.DecryptError):
        FULL.open(b.session + sealed[crypto.SESSION_SIZE :], b"ad")
    # A low-order point as the session key: refused, never an exception of another kind.
    with pytest.raises(crypto.DecryptError):
        FULL.decrypt(b"\0" * 12, b"\0" * 32, b"ad", session=b"\0" * 32)

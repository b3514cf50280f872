"""Key derivation, authenticated encryption and keyed ids.

One master key per repository: `enc` seals every object with AES-256-GCM, `ident`
keys the BLAKE3 hash that names blobs, so ids reveal nothing about content to anyone
without the key. Byte layouts are in docs/FORMAT.md.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = NONCE_SIZE + TAG_SIZE
KEY_SIZE = 32

# scrypt cost for passphrase-derived keys: ~32 MiB and ~0.1 s here, so opening a
# repository stays cheap while an offline guess still costs real memory.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


class DecryptError(Exception):
    """Authentication failed: wrong key, tampered bytes or wrong associated data."""


@dataclass(frozen=True, slots=True)
class MasterKey:
    enc: bytes
    ident: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(enc=os.urandom(KEY_SIZE), ident=os.urandom(KEY_SIZE))

    def to_bytes(self) -> bytes:
        return self.enc + self.ident

    @classmethod
    def from_bytes(cls, raw: bytes) -> MasterKey:
        if len(raw) != 2 * KEY_SIZE:
            raise DecryptError("master key has the wrong length")
        return cls(enc=raw[:KEY_SIZE], ident=raw[KEY_SIZE:])


class Cipher:
    """Seals and opens objects under one master key; safe to share across threads."""

    __slots__ = ("_aead", "_enc", "_ident")

    def __init__(self, key: MasterKey) -> None:
        self._aead = AESGCM(key.enc)
        self._enc = key.enc
        self._ident = key.ident

    def stream_opener(self, nonce: bytes, tag: bytes, ad: bytes) -> StreamOpener:
        """Check a sealed object's tag piece by piece (``update`` each piece of the
        ciphertext, then ``finalize``), holding no more than one piece: for objects too
        large to trust before they authenticate. The plaintext is never returned."""
        return StreamOpener(self._enc, nonce, tag, ad)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._ident).digest()

    def typed_id(self, blob_type: int, data: bytes | memoryview) -> bytes:
        """Data blobs: keyed BLAKE3 of the bytes. Other types hash a type prefix first, so a
        file whose bytes equal a tree's can never share the tree's id (the index is keyed by
        id alone)."""
        if blob_type == 0:
            return blake3.blake3(data, key=self._ident).digest()
        h = blake3.blake3(b"axisor-blob-type:%d\0" % blob_type, key=self._ident)
        h.update(data)
        return h.digest()

    def encrypt(self, nonce: bytes, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        """Ciphertext and tag, without the nonce (the caller stores it)."""
        return self._aead.encrypt(nonce, plaintext, ad)

    def decrypt(self, nonce: bytes | memoryview, sealed: bytes | memoryview, ad: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, sealed, ad)
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc

    def seal(self, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, ad)

    def open(self, sealed: bytes | memoryview, ad: bytes) -> bytes:
        if len(sealed) < SEAL_OVERHEAD:
            raise DecryptError("sealed object is shorter than its nonce and tag")
        mv = memoryview(sealed)
        try:
            return self._aead.decrypt(mv[:NONCE_SIZE], mv[NONCE_SIZE:], ad)
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc


class StreamOpener:
    __slots__ = ("_dec",)

    def __init__(self, key: bytes, nonce: bytes, tag: bytes, ad: bytes) -> None:
        if len(nonce) != NONCE_SIZE or len(tag) != TAG_SIZE:
            raise DecryptError("sealed object is shorter than its nonce and tag")
        self._dec = _Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
        self._dec.authenticate_additional_data(ad)

    def update(self, piece: bytes | memoryview) -> None:
        self._dec.update(piece)

    def finalize(self) -> None:
        try:
            self._dec.finalize()
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc


def derive_key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        passphrase.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=KEY_SIZE
    )


def seal_with(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def open_with(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    if len(sealed) < SEAL_OVERHEAD:
        raise DecryptError("sealed object is shorter than its nonce and tag")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], ad)
    except InvalidTag as exc:
        raise DecryptError("authentication failed") from exc


def content_hash(data: bytes | memoryview) -> bytes:
    """Unkeyed BLAKE3: names pack files, so anyone can check a pack's integrity."""
    return blake3.blake3(data).digest()


def content_hasher() -> blake3.blake3:
    return blake3.blake3()

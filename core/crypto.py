"""Key derivation, authenticated encryption and keyed ids.

One master key per repository: `enc` seals every object with AES-256-GCM, `ident`
keys the BLAKE3 hash that names blobs, so ids reveal nothing about content to anyone
without the key. Byte layouts are in docs/FORMAT.md.

Two more keys are derived from `enc`, so every repository has them without a format
change to its key files: the *writers' key* (`shared`), which seals index files so that
a write-only host can deduplicate against them, and an X25519 key pair. A write-only
key (``WriterKey``) holds `ident`, `shared` and the public half only: it seals what it
writes under a fresh session key agreed with the public key, which only a holder of the
master key can derive again (``Cipher.open`` and the blob reader do, by the session's
public key stored in front of each sealed object).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _Cipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.errors import KeyRefused

NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = NONCE_SIZE + TAG_SIZE
KEY_SIZE = 32

# scrypt cost for passphrase-derived keys: ~32 MiB and ~0.1 s here, so opening a
# repository stays cheap while an offline guess still costs real memory.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


# A session's public key, in front of everything a write-only writer seals.
SESSION_SIZE = 32
# Derivation labels (BLAKE3 keyed with `enc`): one per derived key, never reused.
_SHARED_LABEL = b"axisor/derive/writers-key/v1"
_BOX_LABEL = b"axisor/derive/x25519/v1"
_SESSION_LABEL = b"axisor/session/v1"
MAX_SESSIONS = 4096


class DecryptError(Exception):
    """Authentication failed: wrong key, tampered bytes or wrong associated data."""


class WriteOnly(KeyRefused):
    """A write-only key was asked to open something only the master key opens. Not a
    DecryptError: nothing is damaged, the key may not do it (exit 27)."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"this repository was opened with a write-only key: {what}. It may back up and push WAL; "
            "reading, restoring, verifying, pruning and forgetting need a full key (docs/SECURITY.md)"
        )


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

    def shared(self) -> bytes:
        """The writers' key: seals index files (readable by write-only keys)."""
        return blake3.blake3(_SHARED_LABEL, key=self.enc).digest()

    def box_private(self) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(blake3.blake3(_BOX_LABEL, key=self.enc).digest())

    def writer(self) -> WriterKey:
        """What a write-only key holds of this master key."""
        public = self.box_private().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return WriterKey(ident=self.ident, shared=self.shared(), public=public)


@dataclass(frozen=True, slots=True)
class WriterKey:
    """A write-only key: names blobs (`ident`), reads and writes index files (`shared`),
    seals to the repository's public key (`public`); opens nothing else."""

    ident: bytes
    shared: bytes
    public: bytes
    config: bytes = b""  # the sealed config's plaintext (chunker, pack size): a writer needs it


def _session_key(shared_secret: bytes, session: bytes, public: bytes) -> bytes:
    return blake3.blake3(_SESSION_LABEL + session + public, key=blake3.blake3(shared_secret).digest()).digest()


class _Generation:
    """What one `enc` derives: its AEAD, the writers' key and the X25519 box."""

    __slots__ = ("aead", "box", "enc", "public", "sessions", "shared", "shared_key")

    def __init__(self, enc: bytes, ident: bytes) -> None:
        key = MasterKey(enc=enc, ident=ident)
        self.enc = enc
        self.aead = AESGCM(enc)
        self.shared_key = key.shared()
        self.shared = AESGCM(self.shared_key)
        self.box = key.box_private()
        self.public = self.box.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.sessions: dict[bytes, AESGCM] = {}

    def session_aead(self, session: bytes) -> AESGCM:
        aead = self.sessions.get(session)
        if aead is None:
            try:
                secret = self.box.exchange(X25519PublicKey.from_public_bytes(session))
            except ValueError as exc:  # a low-order point: planted, never written by us
                raise DecryptError(f"bad session key ({exc})") from None
            if len(self.sessions) >= MAX_SESSIONS:
                self.sessions.clear()  # one a backup run or WAL push: a bound, not a cache policy
            aead = self.sessions[session] = AESGCM(_session_key(secret, session, self.public))
        return aead


class Cipher:
    """Seals and opens objects under one master key; safe to share across threads.

    Opens what write-only writers sealed too: their session key is derived again from the
    session's public key in front of the object (kept per session: one X25519 each).

    ``retired``: encryption keys replaced by `key rotate` (docs/FORMAT.md "Keyring"). Everything
    is sealed under the current `enc`; opening tries the current key first, then each retired
    one, so data written before a rotation stays readable until `prune --rewrite` re-seals it."""

    __slots__ = ("_current", "_gens", "_ident", "retired")

    readable = True
    session = b""  # a full key seals under `enc`: no session in front

    def __init__(self, key: MasterKey, retired: tuple[bytes, ...] | list[bytes] = ()) -> None:
        self._ident = key.ident
        self.retired = tuple(r for r in dict.fromkeys(retired) if r != key.enc)
        self._gens = [_Generation(key.enc, key.ident)] + [_Generation(r, key.ident) for r in self.retired]
        self._current: Cipher | None = None if self.retired else self

    def handoff(self) -> tuple[MasterKey, tuple[bytes, ...]]:
        """What rebuilds this cipher (``Cipher(*handoff())``) in a worker process of ours,
        sent over a socket only that process holds (core/restore/writer_proc.py)."""
        return MasterKey(enc=self._gens[0].enc, ident=self._ident), self.retired

    def current_only(self) -> Cipher:
        """The same key without the retired ones: what opens with it is under the current key."""
        if self._current is None:
            self._current = Cipher(MasterKey(enc=self._gens[0].enc, ident=self._ident))
        return self._current

    def session_aead(self, session: bytes | memoryview) -> AESGCM:
        """The AEAD of a write-only writer's session, by its public key (current key)."""
        return self._gens[0].session_aead(bytes(session))

    def stream_opener(self, nonce: bytes, tag: bytes, ad: bytes, *, key: bytes | None = None) -> StreamOpener:
        """Check a sealed object's tag piece by piece (``update`` each piece of the
        ciphertext, then ``finalize``), holding no more than one piece: for objects too
        large to trust before they authenticate. The plaintext is never returned.
        ``key``: another key than `enc` (``stream_keys``)."""
        return StreamOpener(key or self._gens[0].enc, nonce, tag, ad)

    def stream_keys(self, head: bytes, *, shared: bool = False) -> list[tuple[bytes, int]]:
        """The (key, nonce offset) pairs an object starting with ``head`` (at least
        SESSION_SIZE bytes) may be sealed under, for ``stream_opener``: the current key's
        first, then each retired key's."""
        keys: list[tuple[bytes, int]] = []
        for gen in self._gens:
            if shared:
                keys.append((gen.shared_key, 0))
            keys.append((gen.enc, 0))
            with contextlib.suppress(ValueError):
                secret = gen.box.exchange(X25519PublicKey.from_public_bytes(head[:SESSION_SIZE]))
                keys.append((_session_key(secret, head[:SESSION_SIZE], gen.public), SESSION_SIZE))
        return keys

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._ident).digest()

    def typed_id(self, blob_type: int, data: bytes | memoryview) -> bytes:
        """Data blobs: keyed BLAKE3 of the bytes. Other types hash a type prefix first, so a
        file whose bytes equal a tree's can never share the tree's id (the index is keyed by
        id alone)."""
        return typed_id(self._ident, blob_type, data)

    def encrypt(self, nonce: bytes, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        """Ciphertext and tag, without the nonce (the caller stores it); under the current key."""
        return self._gens[0].aead.encrypt(nonce, plaintext, ad)

    def decrypt(
        self, nonce: bytes | memoryview, sealed: bytes | memoryview, ad: bytes, session: bytes | memoryview = b""
    ) -> bytes:
        for gen in self._gens:
            try:
                aead = gen.session_aead(bytes(session)) if session else gen.aead
                return aead.decrypt(nonce, sealed, ad)
            except (InvalidTag, DecryptError):
                continue
        raise DecryptError("authentication failed")

    def seal(self, plaintext: bytes | memoryview, ad: bytes, *, shared: bool = False) -> bytes:
        """``shared``: under the writers' key (index files), else under `enc` (current key)."""
        nonce = os.urandom(NONCE_SIZE)
        gen = self._gens[0]
        return nonce + (gen.shared if shared else gen.aead).encrypt(nonce, plaintext, ad)

    def opens_shared(self, sealed: bytes | memoryview, ad: bytes) -> bool:
        """Whether ``sealed`` is sealed under a writers' key (not `enc`, as before it existed)."""
        mv = memoryview(sealed)
        for gen in self._gens:
            try:
                gen.shared.decrypt(mv[:NONCE_SIZE], mv[NONCE_SIZE:], ad)
                return True
            except (InvalidTag, ValueError):
                pass
        return False

    def open(self, sealed: bytes | memoryview, ad: bytes, *, shared: bool = False) -> bytes:
        """Opens what any writer of the repository sealed: ``shared`` objects under the
        writers' key (or `enc`, as before that key existed), the others under `enc` or, from
        a write-only writer, under its session key; with the current key, then each retired one."""
        if len(sealed) < SEAL_OVERHEAD:
            raise DecryptError("sealed object is shorter than its nonce and tag")
        mv = memoryview(sealed)
        for gen in self._gens:
            for aead in (gen.shared, gen.aead) if shared else (gen.aead,):
                try:
                    return aead.decrypt(mv[:NONCE_SIZE], mv[NONCE_SIZE:], ad)
                except InvalidTag:
                    pass
            if not shared and len(mv) >= SESSION_SIZE + SEAL_OVERHEAD:
                with contextlib.suppress(InvalidTag, DecryptError):
                    aead = gen.session_aead(bytes(mv[:SESSION_SIZE]))
                    return aead.decrypt(
                        mv[SESSION_SIZE : SESSION_SIZE + NONCE_SIZE], mv[SESSION_SIZE + NONCE_SIZE :], ad
                    )
        raise DecryptError("authentication failed")


class WriteOnlyCipher:
    """The cipher of a write-only key: seals under a session key only the master key can
    derive again, opens index files (the writers' key) and nothing else. One session per
    instance: a fresh X25519 key pair, its public half written in front of every object."""

    __slots__ = ("_aead", "_ident", "_shared", "_shared_key", "session")

    readable = False

    def __init__(self, key: WriterKey) -> None:
        ephemeral = X25519PrivateKey.generate()
        self.session = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        secret = ephemeral.exchange(X25519PublicKey.from_public_bytes(key.public))
        self._aead = AESGCM(_session_key(secret, self.session, key.public))
        self._ident = key.ident
        self._shared_key = key.shared
        self._shared = AESGCM(key.shared)

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._ident).digest()

    def typed_id(self, blob_type: int, data: bytes | memoryview) -> bytes:
        return typed_id(self._ident, blob_type, data)

    def encrypt(self, nonce: bytes, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        """Under the session key; the caller stores ``session`` and the nonce in front."""
        return self._aead.encrypt(nonce, plaintext, ad)

    def seal(self, plaintext: bytes | memoryview, ad: bytes, *, shared: bool = False) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        if shared:
            return nonce + self._shared.encrypt(nonce, plaintext, ad)
        return self.session + nonce + self._aead.encrypt(nonce, plaintext, ad)

    def open(self, sealed: bytes | memoryview, ad: bytes, *, shared: bool = False) -> bytes:
        if not shared:
            raise WriteOnly("a write-only key opens index files only")
        if len(sealed) < SEAL_OVERHEAD:
            raise DecryptError("sealed object is shorter than its nonce and tag")
        mv = memoryview(sealed)
        try:
            return self._shared.decrypt(mv[:NONCE_SIZE], mv[NONCE_SIZE:], ad)
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc

    def decrypt(self, *_args, **_kw) -> bytes:
        raise WriteOnly("a write-only key cannot open blobs")

    def stream_keys(self, head: bytes, *, shared: bool = False) -> list[tuple[bytes, int]]:
        if not shared:
            raise WriteOnly("a write-only key opens index files only")
        return [(self._shared_key, 0)]

    def stream_opener(self, nonce: bytes, tag: bytes, ad: bytes, *, key: bytes | None = None) -> StreamOpener:
        if key is None:
            raise WriteOnly("a write-only key opens index files only")
        return StreamOpener(key, nonce, tag, ad)


AnyCipher = Cipher | WriteOnlyCipher


def typed_id(ident: bytes, blob_type: int, data: bytes | memoryview) -> bytes:
    if blob_type == 0:
        return blake3.blake3(data, key=ident).digest()
    h = blake3.blake3(b"axisor-blob-type:%d\0" % blob_type, key=ident)
    h.update(data)
    return h.digest()


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

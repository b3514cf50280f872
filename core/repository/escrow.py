"""Key escrow: the master key split into Shamir shares, k of n needed to rebuild it.

For the day every passphrase is lost (the people who knew it left, the safe burned): `key
escrow` prints n shares of the repository's master key, any k of which rebuild it, fewer
than k tell nothing about it (Shamir's secret sharing over GF(2^8), byte by byte, with
coefficients from the OS's random source). `key recover` takes k shares, checks that the
rebuilt key opens this repository's config, and adds a key file for a new passphrase;
with `--check` it only proves the shares work (the escrow drill).

A share is one line of text (docs/FORMAT.md "Escrow shares"):

    axisor-share-1-<repository id 32 hex>-<k>-<x>-<data base32, no padding>-<check 8 hex>

``x`` (1..255) is the share's point; ``data`` the 64 bytes of the master key's polynomial
values at x; ``check`` the first 4 bytes of BLAKE2b over everything before it, so a typo
is caught before arithmetic turns it into a wrong key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import UsageError

PREFIX = "axisor-share-1"
_SHARE = re.compile(r"axisor-share-1-([0-9a-f]{32})-(\d{1,3})-(\d{1,3})-([A-Z2-7]+)-([0-9a-f]{8})")


def _exp_log() -> tuple[list[int], list[int]]:
    """GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1 and generator 3."""
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= (x << 1) ^ (0x11B if x & 0x80 else 0)  # x * 3
        x &= 0xFF
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_EXP, _LOG = _exp_log()


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError
    return 0 if a == 0 else _EXP[_LOG[a] + 255 - _LOG[b]]


def split(secret: bytes, k: int, n: int) -> list[tuple[int, bytes]]:
    """n shares (x, values) of ``secret``; any k rebuild it."""
    if not 2 <= k <= n <= 255:
        raise UsageError(f"shares: need 2 <= threshold <= shares <= 255 (got {k} of {n})")
    coefficients = [[b, *secrets.token_bytes(k - 1)] for b in secret]
    shares = []
    for x in range(1, n + 1):
        out = bytearray()
        for coeffs in coefficients:
            y = 0
            for c in reversed(coeffs):  # Horner
                y = _mul(y, x) ^ c
            out.append(y)
        shares.append((x, bytes(out)))
    return shares


def combine(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """The secret from k or more shares (Lagrange at 0)."""
    xs = [x for x, _ in shares]
    if len(set(xs)) != len(xs):
        raise UsageError("the same share was given twice")
    size = len(shares[0][1])
    if any(len(v) != size for _, v in shares):
        raise UsageError("shares of different lengths: they come from different splits")
    out = bytearray(size)
    for i, (xi, vi) in enumerate(shares):
        weight = 1
        for j, (xj, _) in enumerate(shares):
            if i != j:
                weight = _mul(weight, _div(xj, xj ^ xi))
        for pos in range(size):
            out[pos] ^= _mul(vi[pos], weight)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Share:
    repository: str
    threshold: int
    x: int
    data: bytes

    def text(self) -> str:
        body = (
            f"{PREFIX}-{self.repository}-{self.threshold}-{self.x}-{base64.b32encode(self.data).decode().rstrip('=')}"
        )
        return f"{body}-{hashlib.blake2b(body.encode(), digest_size=4).hexdigest()}"

    @classmethod
    def parse(cls, text: str) -> Share:
        m = _SHARE.fullmatch("".join(text.split()))
        if m is None:
            raise UsageError(f"not an escrow share (axisor-share-1-...): {text.strip()[:40]!r}")
        body = m.group(0).rsplit("-", 1)[0]
        if hashlib.blake2b(body.encode(), digest_size=4).hexdigest() != m.group(5):
            raise UsageError(f"share {m.group(3)} does not match its check digits: mistyped or damaged")
        data = m.group(4)
        raw = base64.b32decode(data + "=" * (-len(data) % 8))
        k, x = int(m.group(2)), int(m.group(3))
        if not (2 <= k <= 255 and 1 <= x <= 255):
            raise UsageError(f"share {x}: threshold {k} or point out of range")
        return cls(m.group(1), k, x, raw)


def make_shares(repository_id: str, master: bytes, k: int, n: int) -> list[Share]:
    return [Share(repository_id, k, x, data) for x, data in split(master, k, n)]


def rebuild(shares: Sequence[Share], repository_id: str) -> bytes:
    """The master key from the given shares of this repository (UsageError naming what is
    wrong: another repository's share, too few, a mix of splits)."""
    if not shares:
        raise UsageError("give the escrow shares (files, or - for standard input)")
    foreign = [s.x for s in shares if s.repository != repository_id]
    if foreign:
        raise UsageError(f"share(s) {foreign} belong to repository {shares[0].repository[:8]}, not {repository_id[:8]}")
    k = shares[0].threshold
    if any(s.threshold != k for s in shares):
        raise UsageError("shares of different splits (their thresholds differ)")
    if len({s.x for s in shares}) < k:
        raise UsageError(f"{len({s.x for s in shares})} different share(s) given; this split needs {k}")
    return combine([(s.x, s.data) for s in shares[:k]])


__all__ = ["Share", "combine", "make_shares", "rebuild", "split"]

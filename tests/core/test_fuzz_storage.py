"""Fuzzing what is read from storage: every parser of a stored object, fed arbitrary bytes
and arbitrary well-formed-but-wrong structures, either returns a value or raises the one
error its caller turns into "damaged object" (exit 9). Never another exception (a
traceback), never a hang (each example has a deadline), never an unbounded allocation.

Parsers see plaintext here: the ciphertext layer (AES-GCM) refuses anything not written
with the key, so these inputs stand for a writer who holds the key, or for damage that
happens to authenticate (which it cannot), i.e. the worst case.
"""

from __future__ import annotations

import json
import os
import resource
from datetime import timedelta

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import crypto
from core.repository import repo_config
from core.repository.index import IndexFormatError, decode_index
from core.repository.keys import KeyFile, KeyFileDamaged
from core.repository.lock import _decode as decode_lock
from core.repository.packer import PackFormatError, decode_header, parse_trailer
from core.repository.snapshot import Snapshot
from core.repository.tree import Tree, TreeFormatError

EXAMPLES = int(os.environ.get("AXISOR_FUZZ_EXAMPLES", "400"))  # CI: a fixed budget (~20 s)
fuzz = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])

# JSON-like and msgpack-like values of every shape, shallow and nested.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(
            st.text(max_size=8)
            | st.sampled_from(
                [
                    "v",
                    "nodes",
                    "packs",
                    "n",
                    "t",
                    "m",
                    "u",
                    "g",
                    "mt",
                    "c",
                    "st",
                    "x",
                    "hz",
                    "rd",
                    "fl",
                    "s",
                    "time",
                    "tree",
                    "summary",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(max_size=10)
            | st.sampled_from(
                [
                    "v",
                    "time",
                    "source",
                    "tree",
                    "summary",
                    "paths",
                    "tags",
                    "metadata",
                    "exclusive",
                    "host",
                    "pid",
                    "created",
                    "expires",
                    "kdf",
                    "n",
                    "r",
                    "p",
                    "salt",
                    "data",
                    "sum",
                    "user",
                ]
            ),
            inner,
            max_size=8,
        )
    ),
    max_leaves=25,
)


def _packb(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _memory_is_bounded() -> None:
    # ru_maxrss is the process's peak (KiB): the whole module must stay far below 200 MB
    # above what the test process already used.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 1_500_000


@fuzz
@given(st.binary(max_size=2000) | values.map(_packb))
def test_tree(raw):
    try:
        Tree.decode(raw)
    except TreeFormatError:
        pass


@fuzz
@given(
    st.lists(values, max_size=4).map(lambda nodes: _packb({"v": 1, "nodes": nodes}))
    | st.lists(values, max_size=4).map(lambda nodes: _packb({"v": 2, "nodes": nodes}))
)
def test_tree_nodes(raw):
    try:
        Tree.decode(raw)
    except TreeFormatError:
        pass


@fuzz
@given(
    st.binary(max_size=2000)
    | values.map(_packb)
    | st.lists(values, max_size=3).map(lambda packs: _packb({"v": 1, "packs": packs}))
)
def test_index(raw):
    try:
        decode_index(raw)
    except IndexFormatError:
        pass


@fuzz
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_snapshot_manifest(raw):
    try:
        Snapshot.decode(raw, "0" * 64)
    except (ValueError, TypeError, KeyError):  # load_snapshot's DamagedObject
        pass


@fuzz
@given(st.binary(max_size=5000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_key_file(raw):
    try:
        KeyFile.decode("k", raw)
    except KeyFileDamaged:
        pass


@fuzz
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_lock(raw):
    try:
        decode_lock("locks/x", raw)
    except (ValueError, KeyError, TypeError):  # list_locks ignores it
        pass


CIPHER = crypto.Cipher(crypto.MasterKey.generate())


@fuzz
@given(st.binary(max_size=64), st.integers(0, 2**40))
def test_pack_trailer(trailer, size):
    try:
        parse_trailer(trailer[-8:] if len(trailer) >= 8 else trailer, size)
    except PackFormatError:
        pass


@fuzz
@given(st.binary(max_size=500) | values.map(_packb), st.integers(0, 2**32))
def test_pack_header(plain, offset):
    sealed = CIPHER.seal(plain, b"axisor/pack-header/v1")  # authenticates: only the shape is wrong
    try:
        decode_header(CIPHER, sealed, offset)
    except PackFormatError:
        pass


@fuzz
@given(json_values)
def test_repository_config(secret):
    public = {"version": 1, "id": "0" * 32, "created": "2026-01-01T00:00:00+00:00"}
    public["sealed"] = (
        __import__("base64")
        .b64encode(CIPHER.seal(json.dumps(secret).encode(), b"axisor/config/v1" + public["id"].encode()))
        .decode()
    )
    try:
        config = repo_config.decode(public, CIPHER)
    except (crypto.DecryptError, ValueError, KeyError):  # Repository.open's DamagedObject
        return
    # A config that opens carries chunker and pack sizes a backup may act on: bounded.
    ch = config.chunker
    assert 64 <= ch.min_size <= ch.avg_size <= ch.max_size <= repo_config.MAX_CHUNK
    assert 0 < config.pack_size <= repo_config.MAX_PACK_SIZE


def test_memory_stayed_bounded():
    _memory_is_bounded()

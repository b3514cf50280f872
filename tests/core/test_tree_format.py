"""Tree blobs: every node round-trips, versions are chosen and checked, bounds hold."""

from __future__ import annotations

import stat

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.repository.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    MAX_XATTRS,
    SYMLINK,
    Node,
    Tree,
    TreeFormatError,
    tree_version,
)

ID = bytes(32)
names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)
xattr_lists = st.dictionaries(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
    st.binary(max_size=300),
    max_size=5,
).map(lambda d: tuple(sorted(d.items())))


@st.composite
def holes_and_size(draw):
    cuts = sorted(set(draw(st.lists(st.integers(0, 1 << 40), max_size=8))))
    size = draw(st.integers(0, 1 << 41))
    pairs = [(cuts[i], cuts[i + 1] - cuts[i]) for i in range(0, len(cuts) - 1, 2) if cuts[i + 1] > cuts[i]]
    size = max(size, cuts[-1] if cuts else 0)
    return tuple(pairs), size


@st.composite
def nodes(draw):
    kind = draw(st.sampled_from((FILE, DIR, SYMLINK, CHARDEV, BLOCKDEV, FIFO)))
    common = dict(
        name=draw(names),
        type=kind,
        mode=draw(st.integers(0, 2**32 - 1)),
        uid=draw(st.integers(0, 2**32 - 1)),
        gid=draw(st.integers(0, 2**32 - 1)),
        mtime_ns=draw(st.integers(-(2**62), 2**62)),
        atime_ns=draw(st.integers(0, 2**62)),
        user=draw(st.text(max_size=8)),
        group=draw(st.text(max_size=8)),
        xattrs=draw(xattr_lists),
        flags=draw(st.integers(0, 2**32 - 1)),
    )
    if kind == FILE:
        holes, size = draw(holes_and_size())
        common.update(
            size=size,
            holes=holes,
            inode=draw(st.integers(0, 2**63)),
            dev=draw(st.integers(0, 2**63)),
            nlink=draw(st.integers(1, 2**32 - 1)),
            content=tuple(draw(st.lists(st.just(ID), max_size=3))),
        )
    elif kind == DIR:
        common["subtree"] = ID
    elif kind == SYMLINK:
        common["target"] = draw(st.binary(max_size=100))
    elif kind in (CHARDEV, BLOCKDEV):
        common["rdev"] = draw(st.integers(0, 2**64 - 1))
    return Node(**common)


@settings(max_examples=300, deadline=None)
@given(st.lists(nodes(), max_size=6, unique_by=lambda n: n.name))
def test_every_node_round_trips(ns):
    tree = Tree(list(ns))
    raw = tree.encode()
    back = Tree.decode(raw)
    assert back.nodes == sorted(ns, key=lambda n: n.name)
    version = msgpack.unpackb(raw)["v"]
    assert version == (2 if any(n.type in (CHARDEV, BLOCKDEV, FIFO) or n.holes for n in ns) else 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(nodes(), max_size=20, unique_by=lambda n: n.name))
def test_encoding_node_by_node_gives_the_whole_documents_bytes(ns):
    # Tree.encode packs one node at a time (peak RSS, issue 19); the bytes must stay those
    # of packb over the whole document, as docs/FORMAT.md and stored trees' ids rely on.
    tree = Tree(list(ns))
    raw = tree.encode()
    version = tree_version(tree.nodes)
    whole = msgpack.packb({"v": version, "nodes": [n.to_wire() for n in tree.nodes]}, use_bin_type=True)
    assert raw == whole


def _file(**kw) -> Node:
    base = dict(name=b"f", type=FILE, mode=stat.S_IFREG | 0o644, uid=0, gid=0, mtime_ns=0, size=100)
    base.update(kw)
    return Node(**base)


def test_plain_tree_stays_version_1_and_old_bytes_still_read():
    # Bytes as format version 1 wrote them before xattrs, flags and holes existed.
    old = msgpack.packb(
        {
            "v": 1,
            "nodes": [
                {
                    "n": b"f",
                    "t": "file",
                    "m": 0o100644,
                    "u": 0,
                    "g": 0,
                    "mt": 5,
                    "at": 0,
                    "ct": 0,
                    "s": 0,
                    "i": 1,
                    "dv": 2,
                    "l": 1,
                    "c": [],
                }
            ],
        },
        use_bin_type=True,
    )
    node = Tree.decode(old).nodes[0]
    assert node.xattrs == () and node.flags == 0 and node.holes == ()
    assert Tree([node]).encode() == old  # nothing new: the same bytes, the same id, dedup holds


@pytest.mark.parametrize(
    "wire, why",
    [
        ({"v": 4, "nodes": []}, "newer"),
        (
            {"v": 2, "nodes": [{"n": b"d.part1", "t": "file", "m": 0o100600, "u": 0, "g": 0, "mt": 0, "dp": 1}]},
            "needs version 3",
        ),
        (
            {
                "v": 3,
                "nodes": [{"n": b"d", "t": "dir", "m": 0o40700, "u": 0, "g": 0, "mt": 0, "st": b"x" * 32, "dp": 1}],
            },
            "not on a file",
        ),
        ({"v": 1, "nodes": [{"n": b"p", "t": "fifo", "m": 0o10644, "u": 0, "g": 0, "mt": 0}]}, "needs version 2"),
    ],
)
def test_versions_are_checked(wire, why):
    with pytest.raises(TreeFormatError, match=why):
        Tree.decode(msgpack.packb(wire, use_bin_type=True))


@pytest.mark.parametrize(
    "node",
    [
        _file(holes=((50, 60),)),  # past the end
        _file(holes=((10, 20), (20, 5))),  # overlapping
        _file(holes=((10, 0),)),  # empty
        _file(xattrs=((b"user.b", b""), (b"user.a", b""))),  # unsorted
        _file(xattrs=((b"user.a", b""), (b"user.a", b""))),  # repeated
        _file(xattrs=((b"user.a", bytes(65 * 1024)),)),  # too large
        _file(xattrs=tuple((b"user.%06d" % i, b"") for i in range(MAX_XATTRS + 1))),
    ],
)
def test_bounds_are_enforced_on_read(node):
    raw = msgpack.packb({"v": 2, "nodes": [node.to_wire()]}, use_bin_type=True)
    with pytest.raises(TreeFormatError):
        Tree.decode(raw)


def test_data_size_is_size_less_holes():
    assert _file(size=100, holes=((0, 10), (50, 20))).data_size == 70

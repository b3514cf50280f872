"""Tree blobs: one per directory, listing its entries sorted by name.

Names are raw bytes (os.fsencode), so names that are not valid UTF-8 survive. Trees are
msgpack maps with short keys; see docs/FORMAT.md ("Trees", "Versioning policy").

A tree is written with the lowest version that can represent it: version 1 unless a node
needs what a version-1 reader would refuse or restore wrongly (a device node, a FIFO, a
sparse file's holes); then version 2; version 3 when a file is a part of a database dump
split in parts (``part``, key ``dp``: a reader without parts would restore part 0 alone).
Extended attributes and file flags are optional keys a version-1 reader ignores: it
restores the file, without them, as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import msgpack

from core.repository.format import ID_SIZE

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"
FIFO = "fifo"
NODE_TYPES = (FILE, DIR, SYMLINK, CHARDEV, BLOCKDEV, FIFO)
DEVICES = (CHARDEV, BLOCKDEV)
# Types a version-1 reader does not know: a tree holding one is written as version 2.
_V2_TYPES = frozenset((CHARDEV, BLOCKDEV, FIFO))
TREE_VERSIONS = (1, 2, 3)
MAX_PART = 1 << 16  # dump parts: dump_jobs is at most 16

# Bounds on what a tree may carry, checked before anything acts on it (a tree is read from
# storage: a writer without the key cannot forge one, but a damaged or hostile writer with
# the key must not make a restore allocate without limit). Linux allows names of 255
# bytes and values of 64 KiB; no filesystem we know keeps more than a few hundred names.
MAX_XATTRS = 4096
MAX_XATTR_NAME = 255
MAX_XATTR_VALUE = 64 * 1024
MAX_HOLES = 1 << 20


class TreeFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Node:
    name: bytes
    type: str
    mode: int  # full st_mode bits (type and permissions)
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int = 0
    ctime_ns: int = 0
    size: int = 0
    inode: int = 0
    dev: int = 0
    nlink: int = 1
    content: tuple[bytes, ...] = ()
    subtree: bytes | None = None
    target: bytes = b""
    user: str = ""
    group: str = ""
    # Device number of a character or block device (st_rdev).
    rdev: int = 0
    # Extended attributes, POSIX ACLs (system.posix_acl_access/_default, the kernel's
    # binary form) and file capabilities (security.capability) included: (name, value)
    # pairs sorted by name.
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    # Inode flags as FS_IOC_GETFLAGS returns them (chattr: i, a, d, ...); 0 when none.
    flags: int = 0
    # A sparse file's holes: (offset, length) pairs, sorted, not overlapping, inside
    # ``size``. The content blobs hold only the bytes outside them, in file order.
    holes: tuple[tuple[int, int], ...] = ()
    # The part number (1, 2, ...) of a file that is one part of a database dump taken in
    # parts (docs/FORMAT.md, "dump_parts"); 0 for every other file (part 0 is the dump itself).
    part: int = 0

    @property
    def data_size(self) -> int:
        """The bytes the content blobs hold: the size less the holes."""
        return self.size - sum(length for _, length in self.holes)

    @property
    def needs_v2(self) -> bool:
        return self.type in _V2_TYPES or bool(self.holes)

    @property
    def needs_v3(self) -> bool:
        return self.part != 0

    def to_wire(self) -> dict:
        d: dict = {
            "n": self.name,
            "t": self.type,
            "m": self.mode,
            "u": self.uid,
            "g": self.gid,
            "mt": self.mtime_ns,
            "at": self.atime_ns,
            "ct": self.ctime_ns,
        }
        if self.user:
            d["un"] = self.user
        if self.group:
            d["gn"] = self.group
        if self.type == FILE:
            d.update(s=self.size, i=self.inode, dv=self.dev, l=self.nlink, c=list(self.content))
            if self.holes:
                d["hz"] = [list(h) for h in self.holes]
        elif self.type == DIR:
            d["st"] = self.subtree
        elif self.type == SYMLINK:
            d["tg"] = self.target
        elif self.type in DEVICES:
            d["rd"] = self.rdev
        if self.xattrs:
            d["x"] = [list(x) for x in self.xattrs]
        if self.flags:
            d["fl"] = self.flags
        if self.part:
            d["dp"] = self.part
        return d

    def _check(self) -> None:
        """Reject what msgpack can carry but a restore must never act on."""
        if not all(isinstance(c, bytes) and len(c) == ID_SIZE for c in self.content):
            raise TreeFormatError("file content is not a list of blob ids")
        if self.subtree is not None and not (isinstance(self.subtree, bytes) and len(self.subtree) == ID_SIZE):
            raise TreeFormatError("folder subtree is not a blob id")
        if not isinstance(self.target, bytes):
            raise TreeFormatError("symlink target is not bytes")
        if not isinstance(self.user, str) or not isinstance(self.group, str):
            raise TreeFormatError("user or group name is not text")
        if not (0 <= self.uid < 2**32 and 0 <= self.gid < 2**32 and 0 <= self.mode < 2**32):
            raise TreeFormatError("uid, gid or mode out of range")
        if not (0 <= self.size < 2**63 and 0 < self.nlink < 2**32):
            raise TreeFormatError("size or link count out of range")
        if not (0 <= self.rdev < 2**64 and 0 <= self.flags < 2**32):
            raise TreeFormatError("device number or flags out of range")
        if not 0 <= self.part < MAX_PART or (self.part and self.type != FILE):
            raise TreeFormatError("dump part number out of range or not on a file")
        self._check_xattrs()
        self._check_holes()

    def _check_xattrs(self) -> None:
        if len(self.xattrs) > MAX_XATTRS:
            raise TreeFormatError(f"more than {MAX_XATTRS} extended attributes")
        last = None
        for pair in self.xattrs:
            if not (len(pair) == 2 and isinstance(pair[0], bytes) and isinstance(pair[1], bytes)):
                raise TreeFormatError("extended attribute is not a (name, value) pair of bytes")
            name, value = pair
            if not (0 < len(name) <= MAX_XATTR_NAME and b"\0" not in name and len(value) <= MAX_XATTR_VALUE):
                raise TreeFormatError("extended attribute name or value out of bounds")
            if last is not None and name <= last:
                raise TreeFormatError("extended attributes not sorted or repeated")
            last = name

    def _check_holes(self) -> None:
        if len(self.holes) > MAX_HOLES:
            raise TreeFormatError(f"more than {MAX_HOLES} holes")
        end = 0
        for hole in self.holes:
            if not (len(hole) == 2 and all(isinstance(v, int) for v in hole)):
                raise TreeFormatError("hole is not an (offset, length) pair")
            off, length = hole
            if off < end or length <= 0 or off + length > self.size:
                raise TreeFormatError("holes overlap, are unsorted or lie outside the file")
            end = off + length

    @classmethod
    def from_wire(cls, d: dict) -> Node:
        try:
            if not isinstance(d, dict):
                raise TreeFormatError("a node is not a map")
            get = d.get
            node_type = d["t"]
            if node_type not in NODE_TYPES:
                raise TreeFormatError(f"unknown node type {node_type!r}")
            name = d["n"]
            if not isinstance(name, bytes):
                raise TreeFormatError("node name is not bytes")
            # In field order (see _FIELDS). A node per file of every tree read: a restore
            # or a re-run decodes tens of thousands, so the frozen dataclass's __init__
            # (one object.__setattr__ by name per field, keywords parsed) is skipped for
            # the slots' own setters; _check below is what makes the node trustworthy.
            values = (
                name,
                node_type,
                int(d["m"]),
                int(d["u"]),
                int(d["g"]),
                int(d["mt"]),
                int(get("at", 0)),
                int(get("ct", 0)),
                int(get("s", 0)),
                int(get("i", 0)),
                int(get("dv", 0)),
                int(get("l", 1)),
                tuple(get("c", ())),
                get("st"),
                get("tg", b""),
                get("un", ""),
                get("gn", ""),
                int(get("rd", 0)),
                _pairs(get("x", _ABSENT), "x"),
                int(get("fl", 0)),
                _pairs(get("hz", _ABSENT), "hz"),
                int(get("dp", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TreeFormatError(f"malformed tree node: {exc}") from None
        node = _new_node(cls)
        for setter, value in zip(_SETTERS, values):
            setter(node, value)
        try:
            node._check()
        except (TypeError, ValueError) as exc:
            raise TreeFormatError(f"malformed tree node: {exc}") from None
        return node


# Node's fields in declaration order, and each slot's setter (bypasses the frozen
# __setattr__, as the generated __init__ does, only faster): from_wire's fast path.
_FIELDS = tuple(f.name for f in fields(Node))
_SETTERS = tuple(getattr(Node, name).__set__ for name in _FIELDS)
_new_node = object.__new__


_ABSENT = object()


def _pairs(value: object, key: str) -> tuple:
    """A wire list of pairs (xattrs, holes) as a tuple of tuples; absent is empty."""
    if value is _ABSENT:
        return ()
    items = _list(value, key)
    return tuple(_pair(x) for x in items) if items else ()


def _list(value: object, key: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise TreeFormatError(f"node key {key!r} is not a list")
    return value


def _pair(value: object) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise TreeFormatError("expected a pair")
    return (value[0], value[1])


def tree_version(nodes: list[Node]) -> int:
    """The lowest version that represents ``nodes`` (see the module docstring)."""
    return max((3 if n.needs_v3 else 2 if n.needs_v2 else 1 for n in nodes), default=1)


@dataclass(slots=True)
class Tree:
    nodes: list[Node] = field(default_factory=list)

    def encode(self) -> bytes:
        self.nodes.sort(key=lambda n: n.name)
        version = tree_version(self.nodes)
        # Node by node into one buffer: the bytes packb gives for {"v": ..., "nodes": [...]},
        # without every node's dict alive at once (~440 bytes each: 8 MiB for a folder of
        # 17,847 entries, at the peak of a backup of system folders).
        packer = msgpack.Packer(use_bin_type=True, autoreset=False)
        packer.pack_map_header(2)
        packer.pack("v")
        packer.pack(version)
        packer.pack("nodes")
        packer.pack_array_header(len(self.nodes))
        for n in self.nodes:
            packer.pack(n.to_wire())
        return packer.bytes()

    @classmethod
    def decode(cls, raw: bytes) -> Tree:
        try:
            d = msgpack.unpackb(raw, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise TreeFormatError(f"tree is not valid msgpack: {exc}") from None
        if not isinstance(d, dict) or not isinstance(d.get("nodes"), list):
            raise TreeFormatError("tree has no node list")
        version = d.get("v")
        if version not in TREE_VERSIONS:
            raise TreeFormatError(
                f"tree version {version!r} is not one this program reads ({', '.join(map(str, TREE_VERSIONS))}): "
                "it was written by a newer axisor-backup; upgrade to restore it"
            )
        nodes = [Node.from_wire(n) for n in d["nodes"]]
        if version == 1 and any(n.needs_v2 for n in nodes):
            raise TreeFormatError("version-1 tree holds a node that needs version 2")
        if version < 3 and any(n.needs_v3 for n in nodes):
            raise TreeFormatError(f"version-{version} tree holds a dump part, which needs version 3")
        return cls(nodes)

    def find(self, name: bytes) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

"""Tree blobs: one per directory, listing its entries sorted by name.

Names are raw bytes (os.fsencode), so names that are not valid UTF-8 survive. Trees are
msgpack maps with short keys; see docs/FORMAT.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from core.repository.format import ID_SIZE

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
NODE_TYPES = (FILE, DIR, SYMLINK)


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

    def to_wire(self) -> dict:
        d: dict = {
            "n": self.name, "t": self.type, "m": self.mode, "u": self.uid, "g": self.gid,
            "mt": self.mtime_ns, "at": self.atime_ns, "ct": self.ctime_ns,
        }
        if self.user:
            d["un"] = self.user
        if self.group:
            d["gn"] = self.group
        if self.type == FILE:
            d.update(s=self.size, i=self.inode, dv=self.dev, l=self.nlink, c=list(self.content))
        elif self.type == DIR:
            d["st"] = self.subtree
        elif self.type == SYMLINK:
            d["tg"] = self.target
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

    @classmethod
    def from_wire(cls, d: dict) -> Node:
        try:
            node_type = d["t"]
            if node_type not in NODE_TYPES:
                raise TreeFormatError(f"unknown node type {node_type!r}")
            name = d["n"]
            if not isinstance(name, bytes):
                raise TreeFormatError("node name is not bytes")
            node = cls(
                name=name, type=node_type, mode=int(d["m"]), uid=int(d["u"]), gid=int(d["g"]),
                mtime_ns=int(d["mt"]), atime_ns=int(d.get("at", 0)), ctime_ns=int(d.get("ct", 0)),
                size=int(d.get("s", 0)), inode=int(d.get("i", 0)), dev=int(d.get("dv", 0)),
                nlink=int(d.get("l", 1)), content=tuple(d.get("c", ())), subtree=d.get("st"),
                target=d.get("tg", b""), user=d.get("un", ""), group=d.get("gn", ""),
            )
            node._check()
            return node
        except (KeyError, TypeError, ValueError) as exc:
            raise TreeFormatError(f"malformed tree node: {exc}") from None


@dataclass(slots=True)
class Tree:
    nodes: list[Node] = field(default_factory=list)

    def encode(self) -> bytes:
        self.nodes.sort(key=lambda n: n.name)
        return msgpack.packb({"v": 1, "nodes": [n.to_wire() for n in self.nodes]}, use_bin_type=True)

    @classmethod
    def decode(cls, raw: bytes) -> Tree:
        try:
            d = msgpack.unpackb(raw, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise TreeFormatError(f"tree is not valid msgpack: {exc}") from None
        if not isinstance(d, dict) or d.get("v") != 1 or not isinstance(d.get("nodes"), list):
            raise TreeFormatError("tree has no version-1 node list")
        return cls([Node.from_wire(n) for n in d["nodes"]])

    def find(self, name: bytes) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

"""A node's attributes in words, for `ls --long`, `ls --json` and the console's file view.

One description for every screen, so the CLI and the console never disagree about what a
snapshot kept. Pure: takes a tree node, returns text; nothing here touches a filesystem.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass

from core.fsmeta import acl
from core.fsmeta.flags import letters
from core.fsmeta.xattrs import ACL_ACCESS, ACL_DEFAULT, CAPABILITY
from core.repository.tree import DEVICES, Node
from core.text import shown


@dataclass(frozen=True, slots=True)
class Attribute:
    kind: str  # acl, default acl, capability, xattr, flags, sparse, device, privileges
    text: str


def _value(value: bytes) -> str:
    if len(value) <= 48:
        try:
            text = value.decode("utf-8")
            if text.isprintable():
                return f'"{text}"'
        except UnicodeDecodeError:
            pass
    return f"({len(value)} bytes)"


def attributes(node: Node) -> list[Attribute]:
    out: list[Attribute] = []
    privileges = [
        w
        for bit, w in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"))
        if node.mode & bit and not (w == "setgid" and node.type == "dir")
    ]  # a setgid folder is not a privilege
    for name, value in node.xattrs:
        if name == ACL_ACCESS:
            out.append(Attribute("acl", acl.to_text(value)))
        elif name == ACL_DEFAULT:
            out.append(Attribute("default acl", acl.to_text(value)))
        elif name == CAPABILITY:
            privileges.append("file capabilities")
            out.append(Attribute("capability", f"{len(value)} bytes"))
        else:
            out.append(Attribute("xattr", f"{shown(name)} = {_value(value)}"))
    if node.flags:
        out.append(Attribute("flags", letters(node.flags)))
    if node.holes:
        hole_bytes = node.size - node.data_size
        out.append(Attribute("sparse", f"{len(node.holes)} holes, {hole_bytes} of {node.size} bytes not stored"))
    if node.type in DEVICES:
        out.append(Attribute("device", f"{os.major(node.rdev)},{os.minor(node.rdev)}"))
    if privileges:
        out.append(Attribute("privileges", ", ".join(privileges)))
    return out


def marks(node: Node) -> str:
    """A few characters for a table cell: '+' ACL, '@' other xattrs, 's' sparse, flag letters."""
    names = {n for n, _ in node.xattrs}
    m = ""
    if names & {ACL_ACCESS, ACL_DEFAULT}:
        m += "+"
    if names - {ACL_ACCESS, ACL_DEFAULT}:
        m += "@"
    if node.holes:
        m += "s"
    if node.mode & (stat.S_ISUID | stat.S_ISGID) and node.type == "file" or CAPABILITY in names:
        m += "!"
    if node.flags:
        m += " " + letters(node.flags)
    return m


def as_json(node: Node) -> dict:
    """The attributes of ``ls --json``: names and values as text where they are text."""
    d: dict = {}
    if node.xattrs:
        d["xattrs"] = {n.decode("utf-8", "surrogateescape"): _json_value(n, v) for n, v in node.xattrs}
    if node.flags:
        d["flags"] = letters(node.flags)
    if node.holes:
        d["holes"] = [list(h) for h in node.holes]
    if node.type in DEVICES:
        d["rdev"] = [os.major(node.rdev), os.minor(node.rdev)]
    return d


def _json_value(name: bytes, value: bytes) -> str:
    if name in (ACL_ACCESS, ACL_DEFAULT):
        return acl.to_text(value, names=False)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()

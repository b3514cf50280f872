"""What `ls --long`, `ls --json` and the console's file view say a snapshot kept."""

from __future__ import annotations

import os
import stat

import hostile_support as H
from core.fsmeta import acl
from core.fsmeta.describe import as_json, attributes, marks
from core.repository.tree import CHARDEV, DIR, FILE, Node

axenv = H.axenv

ACL = acl.build([(1, 6, 0xFFFFFFFF), (2, 4, 0), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])


def _node(**kw) -> Node:
    base = dict(name=b"f", type=FILE, mode=stat.S_IFREG | 0o644, uid=0, gid=0, mtime_ns=0)
    base.update(kw)
    return Node(**base)


def test_every_attribute_is_described():
    node = _node(
        mode=stat.S_IFREG | stat.S_ISUID | 0o755,
        size=100,
        holes=((0, 60),),
        flags=0x30,
        xattrs=((b"security.capability", b"\x01" * 20), (b"system.posix_acl_access", ACL), (b"user.note", b"hello")),
    )
    described = {a.kind: a.text for a in attributes(node)}
    assert described["acl"] == "user::rw-,user:root:r--,group::r--,mask::r--,other::---"
    assert described["xattr"] == 'user.note = "hello"'
    assert described["flags"] == "ia"
    assert described["sparse"] == "1 holes, 60 of 100 bytes not stored"
    assert described["privileges"] == "setuid, file capabilities"
    assert marks(node) == "+@s! ia"
    j = as_json(node)
    assert j["xattrs"]["system.posix_acl_access"].startswith("user::rw-,user:0:r--")
    assert j["flags"] == "ia" and j["holes"] == [[0, 60]]


def test_default_acl_device_and_plain():
    d = _node(
        type=DIR,
        mode=stat.S_IFDIR | stat.S_ISGID | 0o2775,
        subtree=bytes(32),
        xattrs=((b"system.posix_acl_default", ACL),),
    )
    assert [a.kind for a in attributes(d)] == ["default acl"]  # a setgid folder is no privilege
    dev = _node(type=CHARDEV, mode=stat.S_IFCHR | 0o600, rdev=os.makedev(1, 3))
    assert as_json(dev)["rdev"] == [1, 3]
    assert attributes(_node()) == [] and marks(_node()) == ""


def test_ls_shows_hostile_names_escaped(axenv):
    (axenv.src / "evil\x1b[2Jname\n").write_bytes(b"x")
    (axenv.src / os.fsdecode(b"bad\xffutf8")).write_bytes(b"y")
    axenv.init_fast()
    axenv.backup()
    out = axenv.cli("ls", "latest", "--long")
    assert out.code == 0, out
    assert "\x1b" not in out.stdout
    assert "evil\\x1b[2Jname\\n" in out.stdout and "bad\\xffutf8" in out.stdout

"""Every build reads every repository format it ever wrote (docs/FORMAT.md, "Versioning policy").

tests/format_corpus/<version>/<name>/ holds a repository written by an older (or this) build
with tests/format_corpus/make_corpus.py, its passphrase, and manifest.json: what each snapshot
must restore to. For each such folder, on a copy of the repository, the real CLI must list the
snapshots, verify everything (``verify --full``) and restore every snapshot exactly: type,
permission bits, mtime, size, SHA-256, symlink target and hard links of every path, and
where the manifest has them (v1/attributes and later) extended attributes, inode flags,
holes and device numbers. The versions of the trees a corpus holds must be the manifest's
``tree_versions`` (version 1 only when absent). New format versions only add folders.

Restores run with ``--file-flags``, and as root with ``--preserve-privileges``. As another
user what only root can restore (devices, chattr +i/+a, security.capability and trusted.*
attributes, setuid/setgid bits) may be missing and the restore may warn about it (exit 7);
everything else must still be exact.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import fs_shapes

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "format_corpus"
FOLDERS = sorted(p.parent for p in CORPUS.glob("v*/*/manifest.json"))
# What `init` creates (docs/FORMAT.md, "Layout of a location"); git keeps no empty folder.
LAYOUT = ["data", "index", "snapshots", "keys", "locks"] + [f"data/{i:02x}" for i in range(256)]
IS_ROOT = os.geteuid() == 0
# Attributes compared where the manifest lists xattrs (others, e.g. security.selinux, are the
# host's business), and those only root can restore.
XATTR_PREFIXES = ("user.", "trusted.", "system.posix_acl_", "security.capability")
ROOT_ONLY_XATTRS = ("trusted.", "security.capability")
ROOT_ONLY_NOTE = (
    "(not root: devices, chattr flags, security.capability/trusted.* attributes and "
    "setuid/setgid bits were allowed to be missing; nothing else was)"
)


def test_there_is_a_corpus_for_every_format_version_up_to_this_one():
    from core.repository.format import REPO_VERSION

    versions = {p.parent.name for p in FOLDERS}
    missing = [f"v{v}" for v in range(1, REPO_VERSION + 1) if f"v{v}" not in versions]
    assert not missing, (
        f"no corpus folder for format version(s) {', '.join(missing)}: run "
        "tests/format_corpus/make_corpus.py (docs/FORMAT.md, 'Versioning policy')"
    )


class World:
    def __init__(self, folder: Path, tmp: Path) -> None:
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        self.tmp = tmp
        self.repo = tmp / "repo"
        shutil.copytree(folder / "repo", self.repo)
        for sub in LAYOUT:
            (self.repo / sub).mkdir(exist_ok=True)
        (tmp / "state").mkdir()
        (tmp / "unused-source").mkdir()
        self.cfg = tmp / "config.toml"
        self.cfg.write_text(
            f"[application]\nuser_data = [{json.dumps(str(tmp / 'unused-source'))}]\n"
            f"[storage]\nlocal_path = {json.dumps(str(self.repo))}\n",
            encoding="utf-8",
        )
        self.passphrase = (folder / "passphrase").read_text(encoding="utf-8").rstrip("\n")

    def cli(self, *args: str) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env.update(
            AXISOR_BACKUP_PASSPHRASE=self.passphrase,
            AXISOR_BACKUP_STATE_DIR=str(self.tmp / "state"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        p = subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(self.cfg), "--json", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        return p.returncode, p.stdout, p.stderr

    def must(self, *args: str) -> dict:
        code, out, err = self.cli(*args)
        assert code == 0, (
            f"corpus {self.name}: `axisor-backup {' '.join(args)}` exited {code}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
        return json.loads(out)

    @property
    def name(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}"


@pytest.fixture(params=FOLDERS, ids=[f"{p.parent.name}/{p.name}" for p in FOLDERS])
def world(request, tmp_path: Path) -> World:
    return World(request.param, tmp_path)


def test_snapshots_lists_every_snapshot_of_the_corpus(world: World):
    listed = {s["id"]: s for s in world.must("snapshots")["snapshots"]}
    problems = []
    for want in world.manifest["snapshots"]:
        got = listed.pop(want["id"], None)
        if got is None:
            problems.append(f"snapshot {want['id'][:8]} ({want['source']}): not listed")
            continue
        for key in ("source", "type"):
            if got[key] != want[key]:
                problems.append(f"snapshot {want['id'][:8]}: {key} {got[key]!r}, expected {want[key]!r}")
        if got["summary"]["total_files"] != want["total_files"]:
            problems.append(
                f"snapshot {want['id'][:8]}: summary.total_files {got['summary']['total_files']}, "
                f"expected {want['total_files']}"
            )
    problems += [f"snapshot {i[:8]}: listed but not in manifest.json" for i in listed]
    assert not problems, f"corpus {world.name}:\n" + "\n".join(problems)


def test_verify_full_finds_no_damage(world: World):
    report = world.must("verify", "--full")
    assert report["ok"], f"corpus {world.name}: verify --full reports damage:\n{json.dumps(report, indent=1)}"
    assert report["snapshots_checked"] == len(world.manifest["snapshots"]), report


def test_every_snapshot_restores_exactly(world: World):
    problems: list[str] = []
    targets = []
    try:
        for n, want in enumerate(world.manifest["snapshots"]):
            target = world.tmp / f"restore-{n}"
            targets.append(target)
            # The corpus keeps a setuid file: restores strip such bits unless root asks to keep
            # them, and this test compares every mode bit the format stored.
            keep = ["--preserve-privileges"] if IS_ROOT else []
            args = ("restore", want["id"], "--target", str(target), "--file-flags", *keep)
            label = f"snapshot {want['id'][:8]} ({want['source']})"
            if IS_ROOT:
                world.must(*args)
            else:
                problems += [f"{label} {p}" for p in restore_as_user(world, args, want)]
            root = target / want["restore_root"] if want["restore_root"] else target
            problems += [f"{label} {p}" for p in compare(root, want["entries"], skip_root=not want["restore_root"])]
    finally:
        for target in targets:
            fs_shapes.unfreeze(target)  # a restored chattr +a file cannot be removed otherwise
    assert not problems, (
        f"corpus {world.name}: restored trees differ from manifest.json:\n"
        + "\n".join(problems)
        + ("" if IS_ROOT else "\n" + ROOT_ONLY_NOTE)
    )


def restore_as_user(world: World, args: tuple[str, ...], want: dict) -> list[str]:
    """Run a restore as a user other than root: exit 0, or 7 with warnings that only name
    paths holding what needs root."""
    code, out, err = world.cli(*args)
    if code not in (0, 7):
        return [f"`axisor-backup {' '.join(args)}` exited {code}\n{out}\n{err}"]
    if code == 0:
        return []
    root_only = [rel for rel, e in want["entries"].items() if needs_root(e)]
    return [
        f"warning about a path that needs no root: {w}"
        for w in json.loads(out).get("warnings", [])
        if not any(rel in w for rel in root_only)
    ]


def needs_root(e: dict) -> bool:
    return (
        e["type"] in ("chardev", "blockdev")
        or bool(e.get("flags"))
        or bool(e.get("mode", 0) & 0o6000)
        or any(n.startswith(ROOT_ONLY_XATTRS) for n in e.get("xattrs", {}))
    )


def test_tree_versions_are_the_manifests(world: World):
    """v1/attributes holds version-2 trees (FIFO, devices, holes) and version-1 trees that
    carry only optional keys (x): a writer uses the lowest version that can represent a tree."""
    want = world.manifest.get("tree_versions", [1])
    got = asyncio.run(tree_versions(world.repo, world.passphrase))
    assert sorted(got) == sorted(want), (
        f"corpus {world.name}: trees of versions {dict(sorted(got.items()))} (version: count), manifest says {want}"
    )


async def tree_versions(repo_path: Path, passphrase: str) -> dict[int, int]:
    from core.repository.format import BlobType
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    repo = await Repository.open(LocalBackend(repo_path), passphrase)
    await repo.load_index()
    snaps, damaged = await repo.list_snapshots()
    assert not damaged, damaged
    seen: set[bytes] = set()
    todo = [bytes.fromhex(s.tree) for s in snaps]
    counts: dict[int, int] = {}
    while todo:
        tid = todo.pop()
        if tid in seen:
            continue
        seen.add(tid)
        raw = msgpack.unpackb(await repo.load_blob(BlobType.TREE, tid), raw=False)
        counts[raw["v"]] = counts.get(raw["v"], 0) + 1
        todo += [n["st"] for n in raw["nodes"] if n.get("st")]
    return counts


def compare(root: Path, expected: dict[str, dict], *, skip_root: bool = False) -> list[str]:
    """One line per path and field that differs: '<path>: <field> <got>, expected <want>'."""
    broot = os.fsencode(str(root))
    found: dict[str, bytes] = {}
    if not skip_root:
        found["."] = broot
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            found[os.fsdecode(os.path.relpath(p, broot))] = p
    problems = [f"{rel}: missing" for rel in expected if rel not in found]
    problems += [f"{rel}: present, but not in the snapshot" for rel in found if rel not in expected]
    for rel, want in expected.items():
        p = found.get(rel)
        if p is None:
            continue
        st = os.lstat(p)
        kind = (
            "symlink"
            if stat.S_ISLNK(st.st_mode)
            else "dir"
            if stat.S_ISDIR(st.st_mode)
            else "file"
            if stat.S_ISREG(st.st_mode)
            else "chardev"
            if stat.S_ISCHR(st.st_mode)
            else "blockdev"
            if stat.S_ISBLK(st.st_mode)
            else "fifo"
            if stat.S_ISFIFO(st.st_mode)
            else oct(stat.S_IFMT(st.st_mode))
        )
        got: dict = {"type": kind, "mtime_ns": st.st_mtime_ns}
        if kind != "symlink":  # a symlink's own mode is 0777 on Linux, whatever was stored
            got["mode"] = stat.S_IMODE(st.st_mode)
        if kind == "symlink":
            got["target"] = os.fsdecode(os.readlink(p))
        if kind == "file":
            with open(p, "rb") as f:
                data = f.read()
            got["size"] = len(data)
            got["sha256"] = hashlib.sha256(data).hexdigest()
            if "hardlink" in want:
                head = found.get(want["hardlink"])
                same = head is not None and os.lstat(head).st_ino == st.st_ino
                got["hardlink"] = want["hardlink"] if same else "(not linked)"
            elif st.st_nlink > 1:
                got["hardlink"] = f"(linked, {st.st_nlink} names)"
        if kind in ("chardev", "blockdev"):
            got["rdev"] = st.st_rdev
        got.update(extended(p, st, want, probe_in=os.path.dirname(broot)))
        if not IS_ROOT:
            lenient(want, got)
        for field in sorted(set(want) | set(got)):
            if field == "mode" and kind == "symlink":
                continue
            if got.get(field) != want.get(field):
                g, w = got.get(field), want.get(field)
                if field == "mode":
                    g, w = (oct(g) if g is not None else g), (oct(w) if w is not None else w)
                problems.append(f"{rel}: {field} {g!r}, expected {w!r}")
    if not IS_ROOT:
        problems = [
            p for p in problems if not any(p == f"{rel}: missing" and needs_root(expected[rel]) for rel in expected)
        ]
    return problems


def extended(p: bytes, st: os.stat_result, want: dict, *, probe_in: bytes) -> dict:
    """The fields only newer manifests have, read only when ``want`` has them. Whether the
    filesystem keeps holes is probed in ``probe_in`` (outside the compared tree: a probe file
    would change a compared folder's mtime)."""
    from core.fsmeta import flags as fsflags

    got: dict = {}
    if "xattrs" in want:
        got["xattrs"] = {
            n: os.getxattr(p, n, follow_symlinks=False).hex()
            for n in sorted(os.listxattr(p, follow_symlinks=False))
            if n.startswith(XATTR_PREFIXES)
        }
    if "flags" in want and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            got["flags"] = fsflags.get_flags(fd)
        finally:
            os.close(fd)
    if "holes" in want and stat.S_ISREG(st.st_mode):
        got["holes"] = want["holes"] if keeps_holes(probe_in) else "(not checked: no holes here)"
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            for off, length in want["holes"]:
                try:
                    data = os.lseek(fd, off, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno != errno.ENXIO:
                        raise
                    continue  # nothing but hole from off to the end
                if data < off + length:
                    got["holes"] = f"data at {data}, inside the stored hole [{off}, {length}]"
                    break
        finally:
            os.close(fd)
    return got


_KEEPS_HOLES: dict[bytes, bool] = {}


def keeps_holes(folder: bytes) -> bool:
    """Whether the filesystem of ``folder`` keeps a 1 MiB hole as a hole (tmpfs, ext4, xfs,
    btrfs do; some network filesystems do not): probed once with a file of its own."""
    if folder not in _KEEPS_HOLES:
        probe = os.path.join(folder, b".hole-probe")
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, 1 << 20)
            os.pwrite(fd, b"x", (1 << 20) - 1)
            try:
                _KEEPS_HOLES[folder] = os.lseek(fd, 0, os.SEEK_DATA) > 0
            except OSError:
                _KEEPS_HOLES[folder] = False
        finally:
            os.close(fd)
            os.unlink(probe)
    return _KEEPS_HOLES[folder]


def lenient(want: dict, got: dict) -> None:
    """As a user other than root, let ``got`` lack what only root can restore (in place)."""
    if "flags" in got and got["flags"] == 0:
        got["flags"] = want.get("flags", 0)
    if "xattrs" in got:
        for name, value in want.get("xattrs", {}).items():
            if name.startswith(ROOT_ONLY_XATTRS) and name not in got["xattrs"]:
                got["xattrs"][name] = value
    if "mode" in got and "mode" in want and got["mode"] == want["mode"] & ~0o6000:
        got["mode"] = want["mode"]

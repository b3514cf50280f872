"""Every build reads every repository format it ever wrote (docs/FORMAT.md, "Versioning policy").

tests/format_corpus/<version>/<name>/ holds a repository written by an older (or this) build
with tests/format_corpus/make_corpus.py, its passphrase, and manifest.json: what each snapshot
must restore to. For each such folder, on a copy of the repository, the real CLI must list the
snapshots, verify everything (``verify --full``) and restore every snapshot exactly: type,
permission bits, mtime, size, SHA-256, symlink target and hard links of every path. New
format versions only add folders; this file does not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "format_corpus"
FOLDERS = sorted(p.parent for p in CORPUS.glob("v*/*/manifest.json"))
# What `init` creates (docs/FORMAT.md, "Layout of a location"); git keeps no empty folder.
LAYOUT = ["data", "index", "snapshots", "keys", "locks"] + [f"data/{i:02x}" for i in range(256)]


def test_there_is_a_corpus_for_every_format_version_up_to_this_one():
    from core.repository.format import REPO_VERSION

    versions = {p.parent.name for p in FOLDERS}
    missing = [f"v{v}" for v in range(1, REPO_VERSION + 1) if f"v{v}" not in versions]
    assert not missing, (f"no corpus folder for format version(s) {', '.join(missing)}: run "
                         "tests/format_corpus/make_corpus.py (docs/FORMAT.md, 'Versioning policy')")


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
        self.cfg.write_text(f"[application]\nuser_data = [{json.dumps(str(tmp / 'unused-source'))}]\n"
                            f"[storage]\nlocal_path = {json.dumps(str(self.repo))}\n", encoding="utf-8")
        self.passphrase = (folder / "passphrase").read_text(encoding="utf-8").rstrip("\n")

    def cli(self, *args: str) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env.update(AXISOR_BACKUP_PASSPHRASE=self.passphrase, AXISOR_BACKUP_STATE_DIR=str(self.tmp / "state"),
                   PYTHONDONTWRITEBYTECODE="1")
        p = subprocess.run([sys.executable, "-m", "app.cli", "--config", str(self.cfg), "--json", *args],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr

    def must(self, *args: str) -> dict:
        code, out, err = self.cli(*args)
        assert code == 0, (f"corpus {self.name}: `axisor-backup {' '.join(args)}` exited {code}\n"
                           f"--- stdout ---\n{out}\n--- stderr ---\n{err}")
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
            problems.append(f"snapshot {want['id'][:8]}: summary.total_files {got['summary']['total_files']}, "
                            f"expected {want['total_files']}")
    problems += [f"snapshot {i[:8]}: listed but not in manifest.json" for i in listed]
    assert not problems, f"corpus {world.name}:\n" + "\n".join(problems)


def test_verify_full_finds_no_damage(world: World):
    report = world.must("verify", "--full")
    assert report["ok"], f"corpus {world.name}: verify --full reports damage:\n{json.dumps(report, indent=1)}"
    assert report["snapshots_checked"] == len(world.manifest["snapshots"]), report


def test_every_snapshot_restores_exactly(world: World):
    problems: list[str] = []
    for n, want in enumerate(world.manifest["snapshots"]):
        target = world.tmp / f"restore-{n}"
        # The corpus keeps a setuid file: restores strip such bits unless root asks to keep
        # them, and this test compares every mode bit the format stored.
        keep = ["--preserve-privileges"] if os.geteuid() == 0 else []
        world.must("restore", want["id"], "--target", str(target), *keep)
        root = target / want["restore_root"] if want["restore_root"] else target
        label = f"snapshot {want['id'][:8]} ({want['source']})"
        problems += [f"{label} {p}" for p in compare(root, want["entries"], skip_root=not want["restore_root"])]
    assert not problems, f"corpus {world.name}: restored trees differ from manifest.json:\n" + "\n".join(problems)


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
        kind = ("symlink" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
                else "file" if stat.S_ISREG(st.st_mode) else oct(stat.S_IFMT(st.st_mode)))
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
        for field in sorted(set(want) | set(got)):
            if field == "mode" and kind == "symlink":
                continue
            if got.get(field) != want.get(field):
                g, w = got.get(field), want.get(field)
                if field == "mode":
                    g, w = (oct(g) if g is not None else g), (oct(w) if w is not None else w)
                problems.append(f"{rel}: {field} {g!r}, expected {w!r}")
    return problems

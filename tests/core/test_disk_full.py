"""A full disk at every write step of init, backup, prune, copy and restore (a restore's
safety snapshot, its target, a point-in-time restore's data directory), on real small
tmpfs mounts (root only; a host that refuses the mount skips with the reason).

Each command is first run on a roomy copy of the same repository (the *probe*) to list
the objects it writes, in order, with the pages each takes on the tmpfs. Then, from the
same starting state each time, the disk is filled so that exactly the space of the
objects before step k is left (half of step k's object, for big ones), and the command
must stop at step k: exit 10, one `error:` line naming the location and the object (or
the restore target and the file), no traceback, no hang. The source, or the files at the
restore target, are untouched (or whole), nothing is left half-written under a real name
(no zero-length object, no new snapshot), and once the filler is deleted `verify --full`
passes and the same command succeeds. The steps failed are each kind of write the probe
lists: the lock, the last pack (others were written before it), the index file and the
snapshot manifest; at `init` the key file and the config; at a new replica its key file
and config.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PASSPHRASE, ROOT

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a small tmpfs"
)

PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024


# --------------------------------------------------------------------------- the disks


class Disk:
    """A tmpfs of its own; ``fill(leave)`` leaves exactly ``leave`` bytes free."""

    def __init__(self, mnt: Path) -> None:
        self.mnt = mnt
        self.filler = mnt / "filler"

    def fill(self, leave: int) -> None:
        self.free()
        st = os.statvfs(self.mnt)
        with open(self.filler, "wb") as fh:
            fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
        st = os.statvfs(self.mnt)
        assert st.f_bavail * st.f_frsize == leave, "the tmpfs did not fill to the byte asked"

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(name: str, size: str = "48m") -> Disk:
        mnt = tmp_path / name
        mnt.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)], capture_output=True, text=True
        )
        if done.returncode:  # root in a container without CAP_SYS_ADMIN: say so, do not error
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
        mounted.append(mnt)
        return Disk(mnt)

    yield mount
    for mnt in mounted:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    base: Path
    src: Path
    repo: Path
    config: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
        env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
        # A hang is one of the bugs this guards against: the timeout fails the test, not the suite.
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "--config", str(self.config), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        r = self.cli(*args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        return r

    def verified(self, *extra: str) -> None:
        r = self.cli("verify", "--full", *extra)
        assert r.returncode == 0 and "no damage found" in r.stdout, (r.returncode, r.stdout, r.stderr)

    def snapshot_ids(self, repo: Path | None = None) -> set[str]:
        return {p.name for p in ((repo or self.repo) / "snapshots").iterdir()}


def make_world(base: Path, repo: Path, extra: str = "") -> World:
    src = base / "src"
    src.mkdir()
    config = base / "config.toml"
    config.write_text(
        f'[application]\nuser_data = ["{src}"]\n[storage]\nlocal_path = "{repo}"\npack_size_mib = 4\n'
        f'{extra}\n[engine]\nstate_dir = "{base / "state"}"\n'
    )
    w = World(base, src, repo, config)
    write_source(w, seed=1)
    return w


def write_source(w: World, seed: int, big: tuple[int, ...] = (0, 1)) -> None:
    """Two big files (3 and 2 MiB: two 4 MiB packs) and 240 small ones in 4 folders (so
    that an index file spans several pages: a fill can land inside it)."""
    rnd = random.Random(seed)
    for i in big:
        (w.src / f"big{i}").write_bytes(rnd.randbytes((3 - i) * MiB))
    for i in range(240):
        d = w.src / f"d{i % 4}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(rnd.randbytes(rnd.randint(1, 4000)) if seed == 1 else rnd.randbytes(200))


def digest(folder: Path, skip: tuple[str, ...] = ("filler",)) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def files_of(repo: Path) -> dict[str, os.stat_result]:
    return {p.relative_to(repo).as_posix(): p.stat() for p in repo.rglob("*") if p.is_file()}


def pages(size: int) -> int:
    return -(-size // PAGE)


@dataclass(frozen=True)
class Step:
    key: str  # the object written (relative to the repository)
    leave: int  # bytes left free so that this write is the one that finds the disk full


def probe_steps(golden: Path, live: Path, run) -> list[Step]:
    """Run the command on a roomy copy (``run()``), then list what it wrote in write order,
    each with the free space that makes that write the one to fail: the pages of every
    earlier write (and of the lock, which lives through the run) plus half of this one."""
    reset(golden, live)
    before = files_of(live)
    run()
    after = files_of(live)
    # The documented write order (tmpfs times are coarse: two writes may share one): a new
    # replica's keys and config, the lock, packs, index, snapshot manifests.
    new = sorted(
        (k for k in after if k not in before or after[k].st_ino != before[k].st_ino),
        key=lambda k: (ORDER.index(kind(k)), after[k].st_mtime_ns),
    )
    used = 0
    steps: list[Step] = []
    for key in new:
        if ORDER.index(kind(key)) > ORDER.index("locks") and not any(s.key == "locks/" for s in steps):
            steps.append(Step("locks/", used * PAGE))
            used += 1
        n = pages(after[key].st_size)
        steps.append(Step(key, (used + n // 2) * PAGE))
        used += n
    return steps


def kind(key: str) -> str:
    return key.split("/")[0]


def fail_at(disk: Disk, steps: list[Step], step: Step, restart, command) -> subprocess.CompletedProcess:
    """``restart()`` then ``command()`` on a disk full at ``step``: exit 10 naming the kind of
    object of ``step``. The probe's page count can be a page off (blobs go into packs in
    the order the workers finish them, so each pack's size, rounded up to pages, varies
    from run to run): a neighbour's kind named moves the fill by a page and tries again."""
    kinds = [kind(s.key) for s in steps]
    want = kind(step.key)
    leave = step.leave
    named = []
    for _attempt in range(6):
        restart()
        disk.fill(leave)
        r = command()
        if r.returncode == 0 and leave >= PAGE:
            # Everything fitted: this run's writes came out a page smaller than the probe's.
            named.append((leave, "fitted"))
            disk.free()
            leave -= PAGE
            continue
        line = assert_full(r, "no space left")
        got = line.split("while writing ", 1)[1].split("/", 1)[0].split(";", 1)[0]
        if got == want:
            return r
        named.append((leave, got))
        disk.free()
        leave += PAGE if kinds.index(got) < kinds.index(want) else -PAGE
    raise AssertionError(f"no fill made the write of {step.key} fail: {named}")


# pins/: the tripwire's, after the snapshot when a backup changed everything (this test's does).
ORDER = ["keys", "config", "locks", "data", "index", "snapshots", "pins", "forgotten"]


def forget_seen(w: World) -> None:
    """Putting the repository back to ``golden`` is a rollback, and the host would rightly
    refuse its next backup (core/repository/rollback.py): this test rolls back on purpose."""
    shutil.rmtree(w.base / "state" / "seen", ignore_errors=True)


def reset(golden: Path, live: Path) -> None:
    if live.exists():
        shutil.rmtree(live)
    if golden.exists():
        shutil.copytree(golden, live, symlinks=True)


def runbook_blocks(title: str) -> list[list[list[str]]]:
    """The ```sh blocks of a docs/OPERATIONS.md section: per block, each line's arguments
    after ``axisor-backup``."""
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text[start : end if end != -1 else None], re.S):
        lines = [shlex.split(ln, comments=True) for ln in block.strip().splitlines() if ln.strip()]
        assert all(argv[0] == "axisor-backup" for argv in lines), lines
        out.append([argv[1:] for argv in lines])
    return out


def pick(steps: list[Step], *prefixes: str) -> list[Step]:
    """The last write of each kind asked for: for packs, one that fails after others were
    written (what a stopped run leaves behind is the interesting part)."""
    out = []
    for prefix in prefixes:
        kind_steps = [s for s in steps if s.key.startswith(prefix)]
        assert kind_steps, (prefix, steps)
        out.append(kind_steps[-1])
    return out


def assert_full(r: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 10, no traceback, one `error:` line naming each of ``names``; that line. (Pack
    names differ from the probe's, encryption is randomised: name the kind, ``data/``.)"""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 10, (r.returncode, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


def assert_nothing_half_written(repo: Path) -> None:
    """No object under a real name is empty (a zero-length object reads as damage later);
    ``.tmp-*`` leftovers of the failed write are allowed (prune removes old ones)."""
    empty = [k for k, st in files_of(repo).items() if st.st_size == 0 and not k.rsplit("/", 1)[-1].startswith(".tmp-")]
    assert empty == []


# --------------------------------------------------------------------------- backup


def test_init_and_backup_disk_full_at_each_write_step(tmp_path, tmpfs):
    disk = tmpfs("repo-disk")
    w = make_world(tmp_path, disk.mnt / "repo")
    # init writes the key file (one page), then the config: a failed config takes its key
    # back, else the next init's repository would open with the orphan's key (exit 9).
    for what, leave in (("keys/", 0), ("config", PAGE)):
        disk.fill(leave)
        assert_full(w.cli("init"), f"{w.repo}: no space left while writing {what}")
        disk.free()
        assert files_of(w.repo) == {}
    w.ok("init")
    w.ok("backup")
    golden = tmp_path / "golden"
    shutil.copytree(w.repo, golden)
    write_source(w, seed=2)  # new content everywhere: packs, trees, index, snapshot
    source = digest(w.src)
    steps = probe_steps(golden, w.repo, lambda: forget_seen(w) or w.ok("backup"))
    snapshots = w.snapshot_ids(golden)
    for step in pick(steps, "locks/", "data/", "index/", "snapshots/"):
        r = fail_at(disk, steps, step, lambda: reset(golden, w.repo) or forget_seen(w), lambda: w.cli("backup"))
        assert_full(r, f"{w.repo}: no space left while writing {kind(step.key)}/")
        disk.free()
        assert_nothing_half_written(w.repo)
        assert w.snapshot_ids() == snapshots, step  # no snapshot of a half-finished backup
        assert digest(w.src) == source
        if step != steps[0]:  # (the lock step wrote nothing at all)
            w.verified()  # packs without an index, an index without a snapshot: still valid
    # docs/OPERATIONS.md, "The repository disk filled up", as written: the first block on
    # the full disk, the second once space is freed; then the new backup restores bit-exact.
    first, second = runbook_blocks("The repository disk filled up")
    disk.fill(0)
    for argv in first:
        w.ok(*argv)
    disk.free()
    for argv in second:
        w.ok(*argv)
    assert len(w.snapshot_ids()) == len(snapshots) + 1
    out = tmp_path / "restored"
    w.ok("restore", "latest", "--target", str(out))
    assert digest(out / w.src.relative_to("/")) == source


# --------------------------------------------------------------------------- prune


def test_prune_disk_full_at_each_write_step(tmp_path, tmpfs):
    disk = tmpfs("repo-disk")
    w = make_world(tmp_path, disk.mnt / "repo")
    w.ok("init")
    w.ok("backup")
    first = w.snapshot_ids()
    # big0 (3 MiB of the first 4 MiB pack) and the small files change, big1 stays: prune
    # deletes the second pack and repacks the first (more than half of it unused).
    write_source(w, seed=2, big=(0,))
    w.ok("backup")
    w.ok("forget", *first)
    golden = tmp_path / "golden"
    shutil.copytree(w.repo, golden)
    steps = probe_steps(golden, w.repo, lambda: w.ok("prune"))
    assert any(s.key.startswith("data/") for s in steps), steps  # a repack happens
    kept = w.snapshot_ids(golden)
    source = digest(w.src)
    for step in pick(steps, "locks/", "data/", "index/"):
        r = fail_at(disk, steps, step, lambda: reset(golden, w.repo), lambda: w.cli("prune"))
        assert_full(r, f"prune failed at local: {w.repo}: no space left while writing {kind(step.key)}/")
        disk.free()
        assert_nothing_half_written(w.repo)
        assert w.snapshot_ids() == kept
        if step != steps[0]:
            w.verified()
    w.ok("prune")
    w.verified()
    out = tmp_path / "restored"
    w.ok("restore", "latest", "--target", str(out))
    assert digest(out / w.src.relative_to("/")) == source


# --------------------------------------------------------------------------- copy


def test_copy_to_a_full_location_at_each_write_step(tmp_path, tmpfs):
    disk = tmpfs("offsite-disk")
    offsite = disk.mnt / "offsite"
    w = make_world(
        tmp_path,
        tmp_path / "repo",
        f'[[storage.remote_storage]]\nprovider = "local"\nname = "offsite"\npath = "{offsite}"\n',
    )
    w.ok("init")
    w.ok("backup")
    source_repo = digest(w.repo, skip=())
    # The first copy creates the replica (keys, config), the second adds to it.
    empty = tmp_path / "golden-empty"  # does not exist: the location's folder is new
    steps = probe_steps(empty, offsite, lambda: w.ok("copy", "--to", "offsite"))
    assert [kind(s.key) for s in steps[:3]] == ["keys", "config", "locks"], steps
    for step in pick(steps, "keys/", "config"):  # a replica half made: keys but no config
        r = fail_at(disk, steps, step, lambda: reset(empty, offsite), lambda: w.cli("copy", "--to", "offsite"))
        assert_full(r, f"{offsite}: no space left while writing {kind(step.key)}")
        disk.free()
        assert_nothing_half_written(offsite)
        assert digest(w.repo, skip=()) == source_repo  # the source location is only read
        w.ok("copy", "--to", "offsite")  # space freed: the copy completes the replica
    # A backup whose copy finds the location full still succeeds, and says so.
    write_source(w, seed=2)
    disk.fill(0)
    r = w.ok("backup")
    assert "warning: not copied to location offsite" in r.stderr and "no space left" in r.stderr, r.stderr
    disk.free()
    golden = tmp_path / "golden"
    shutil.copytree(offsite, golden)
    steps = probe_steps(golden, offsite, lambda: w.ok("copy", "--to", "offsite"))
    present = w.snapshot_ids(golden)
    for step in pick(steps, "locks/", "data/", "index/", "snapshots/"):
        r = fail_at(disk, steps, step, lambda: reset(golden, offsite), lambda: w.cli("copy", "--to", "offsite"))
        assert_full(r, f"{offsite}: no space left while writing {kind(step.key)}/")
        disk.free()
        assert_nothing_half_written(offsite)
        assert w.snapshot_ids(offsite) == present
        if step != steps[0]:
            w.verified("--from", "offsite")
    w.ok("copy", "--to", "offsite")
    w.verified("--from", "offsite")
    assert w.snapshot_ids(offsite) == w.snapshot_ids()


# --------------------------------------------------------------------------- restore


def restore_world(tmp_path: Path, repo: Path, target: Path) -> tuple[World, dict[str, str], dict[str, str]]:
    """A repository whose latest snapshot is source version 2, and ``target`` holding version 1
    of the same files where the restore puts them (so it replaces them: a safety snapshot
    first), besides a file of its own. Returns the world, the target's files and version 2's."""
    w = make_world(tmp_path, repo)
    w.ok("init")
    for p in w.src.rglob("*"):  # small old versions: the restore needs the space of all of version 2
        if p.is_file():
            dest = target / p.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"version 1 " + p.read_bytes()[:1000])
    (target / "own.txt").write_text("not in any snapshot\n")
    write_source(w, seed=2)
    w.ok("backup")
    return w, digest(target), {(w.src.relative_to("/") / k).as_posix(): v for k, v in digest(w.src).items()}


def test_restore_safety_snapshot_on_a_full_repository(tmp_path, tmpfs):
    """A restore over existing files commits a safety snapshot first: a full repository at
    any of its writes stops the restore before the target is touched."""
    disk = tmpfs("repo-disk")
    target = tmp_path / "target"
    w, old, new = restore_world(tmp_path, disk.mnt / "repo", target)
    golden = tmp_path / "golden"
    shutil.copytree(w.repo, golden)
    shutil.copytree(target, tmp_path / "target-before")
    restore = ("restore", "latest", "--target", str(target))
    steps = probe_steps(golden, w.repo, lambda: w.ok(*restore))
    shutil.rmtree(target)
    shutil.copytree(tmp_path / "target-before", target)
    snapshots = w.snapshot_ids(golden)
    # No room for the lock: reading goes on without one, but the safety snapshot is a write.
    reset(golden, w.repo)
    disk.fill(0)
    assert_full(w.cli(*restore), "the safety snapshot", f"cannot be written: no space left: {w.repo}")
    assert digest(target) == old
    for step in pick(steps, "data/", "index/", "snapshots/"):
        r = fail_at(disk, steps, step, lambda: reset(golden, w.repo), lambda: w.cli(*restore))
        assert_full(r, f"{w.repo}: no space left while writing {kind(step.key)}/")
        disk.free()
        assert digest(target) == old  # not one file touched
        assert_nothing_half_written(w.repo)
        assert w.snapshot_ids() == snapshots
    w.verified()
    w.ok(*restore)
    got = digest(target)
    assert {k: got[k] for k in new} == new and got["own.txt"] == old["own.txt"]


def test_restore_into_a_full_target(tmp_path, tmpfs):
    """The target's disk fills while files are written: exit 10 naming the target and the
    file, each file is its old content or its restored one (never a half-written one over
    its name, no temp file left), and with space freed the restore completes. A target
    out of inodes (folders, files) is full too."""
    disk = tmpfs("target-disk", "16m")
    few = tmpfs("few-inodes", "16m,nr_inodes=12")
    target = disk.mnt / "target"
    w, old, new = restore_world(tmp_path, tmp_path / "repo", target)
    before = tmp_path / "target-before"
    shutil.copytree(target, before)
    restore = ("restore", "latest", "--target", str(target))
    st = os.statvfs(disk.mnt)
    room = st.f_bavail * st.f_frsize
    need = sum(pages(p.stat().st_size) for p in w.src.rglob("*") if p.is_file())  # pages the restore writes
    for leave in (0, need // 3, 2 * need // 3):
        reset(before, target)
        disk.fill(min(leave * PAGE, room))
        r = w.cli(*restore)
        assert_full(r, f"the restore target {target} is full: No space left on device while writing {target}/")
        disk.free()
        got = digest(target)
        assert [p for p in target.rglob(".axisor-restore-*")] == []
        assert set(got) <= set(old) | set(new)
        mixed = [k for k, v in got.items() if v != old.get(k) and v != new.get(k)]
        assert mixed == [], "half-written files under their names"
    w.ok(*restore)
    got = digest(target)
    assert {k: got[k] for k in new} == new and got["own.txt"] == old["own.txt"]
    assert w.cli("verify").returncode == 0
    # 12 inodes: the folders on the way take most, the files run out.
    r = w.cli("restore", "latest", "--target", str(few.mnt / "t"))
    assert_full(r, f"the restore target {few.mnt / 't'} is full: No space left on device while ")
    assert [p for p in few.mnt.rglob(".axisor-restore-*")] == []


async def test_pitr_base_backup_extract_into_a_full_target_dir(tmp_path, tmpfs):
    """`restore --to-time` extracts the stored base backup (a tar) into --target-dir: a full
    disk there is exit 10 naming the folder, not "restore refused" (12). The tar is stored
    and read back through a real repository; the PostgreSQL side is tested in
    tests/postgres/test_pitr.py."""
    import io
    import tarfile

    from core.backup.stream import StreamWriter
    from core.errors import StorageFull
    from core.repository.repository import Repository
    from core.sources.postgres.pitr import _extract
    from core.storage.local import LocalBackend

    disk = tmpfs("pgdata-disk", "1m")
    repo = await Repository.create(LocalBackend(tmp_path / "repo"), PASSPHRASE, pack_size=4 * MiB)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("PG_VERSION", "base/1/1259", "base/1/2608"):
            data = random.Random(name).randbytes(700_000) if name.startswith("base") else b"15\n"
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    writer = StreamWriter(repo)
    ids, _size = await writer.store(buf)
    await writer.drain()
    await repo.flush()
    target = disk.mnt / "pgdata"
    target.mkdir(mode=0o700)
    with pytest.raises(StorageFull) as info:
        await _extract(repo, ids, target)
    assert str(info.value).startswith(
        f"the restore target {target} is full: No space left on device while extracting the base backup"
    )

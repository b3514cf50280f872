"""The fault-injection matrix: one small world, faults planted in copies of its repository,
and the operator's sequence run against each copy through the real CLI (in-process:
``app.cli.main`` with its stdout and stderr captured; a Python exception that escapes it
is a traceback, recorded as such).

The world (built once per module): a source of eight small files in three folders, backed
up twice (S0 before ``vol/gone.txt`` existed, S1 after), two WAL files archived with
``wal-push``, and a stale lock a crashed process left. Then ``vol/gone.txt`` is deleted
from the source: a file whose data only the repository holds, so a fault that destroys its
blobs destroys it for good and the product must *name* it. Every other file is still on
disk: a fault that destroys their blobs must cost at most one backup (the healing one).

The repository is made with a pack size of 1 byte, so every blob is alone in its pack and
each fault hits exactly one known object: the tree of ``sub/`` (files still on disk), the
data of ``vol/gone.txt`` (not on disk any more), and so on. The format allows any pack
size; the program reads whatever the sealed config says.

Each cell (object x fault x backend) runs: verify --full -> restore S1 (before any repair)
-> the repair steps of its row -> backup -> repair snapshots (where it applies) -> verify
--full -> restore of the new snapshot and of S1 (or what `repair snapshots` made of it),
and measures: exit code of each step, no traceback, intact files restored bit-exact, lost
files named, collateral loss (a file that did not depend on the faulted object and did
not come back) = 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

PASSPHRASE = "fault matrix passphrase"
NOBODY = 65534
# WAL file names: one is the victim of the "wal" row, the other must stay fetchable.
WAL_KEEP = "000000010000000000000001"
WAL_VICTIM = "000000010000000000000002"

OBJECTS = ("config", "key", "index", "snapshot", "tree", "pack", "lock", "wal")
FAULTS = ("deleted", "truncated", "flipped", "replaced", "unreadable", "zero-length")
FAULT_TEXT = {
    "deleted": "deleted",
    "truncated": "truncated to half",
    "flipped": "one byte flipped",
    "replaced": "replaced by another valid object of its kind",
    "unreadable": "permissions removed (mode 000)",
    "zero-length": "zero-length",
}

# The source: path -> content. ``vol/gone.txt`` is deleted after S1; ``late.txt`` is new
# in S1 (not in S0).
FILES = {
    "keep/a.txt": b"alpha\n" * 300,
    "keep/b.bin": bytes(range(256)) * 40,
    "sub/c.txt": b"gamma " * 500,
    "sub/d.txt": b"delta\n" * 700,
    "sub/deep/e.txt": b"epsilon " * 200,
    "vol/f.txt": b"phi\n" * 900,
    "vol/gone.txt": b"only the repository holds this now\n" * 40,
    "late.txt": b"written between S0 and S1\n" * 60,
}
GONE = "vol/gone.txt"
WAL_CONTENT = {WAL_KEEP: bytes(range(256)) * 256, WAL_VICTIM: b"\x07wal-two" * 8192}


# --------------------------------------------------------------------------- the CLI in-process


@dataclass
class Run:
    args: tuple[str, ...]
    code: int | str  # an int, or "traceback"
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"axisor-backup {' '.join(self.args)} -> {self.code}\n--- out ---\n{self.out}\n--- err ---\n{self.err}"


def cli(cfg: Path, state: Path, *args: str, as_user: int | None = None) -> Run:
    """``axisor-backup --config cfg ARGS`` in this process; ``as_user``: with that effective
    uid/gid (root bypasses file modes, so a removed permission only shows as another user)."""
    from app import cli as app_cli

    saved = {
        k: os.environ.get(k) for k in ("AXISOR_BACKUP_PASSPHRASE", "AXISOR_BACKUP_STATE_DIR", "AXISOR_BACKUP_CONFIG")
    }
    os.environ["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    os.environ["AXISOR_BACKUP_STATE_DIR"] = str(state)
    out, err = io.StringIO(), io.StringIO()
    code: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _effective(as_user):
            try:
                # _main, not main: main leaves with os._exit when an earlier test in this
                # process abandoned a stalled read (core/backup/watchdog.py), and would take
                # pytest with it, exit status 0, half the suite not run.
                code = app_cli._main(["--config", str(cfg), *args])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - the finding: the product let an exception out
                traceback.print_exc(file=err)
                code = "traceback"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(tuple(args), code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _effective(uid: int | None):
    if uid is None or os.geteuid() != 0:
        yield
        return
    # Real and effective ids both (the product asks getuid() whether it runs as root); the
    # saved ids stay root's, so this process gets them back.
    # Modules that read the uid once at import see it as a process started as that user would.
    from core.backup import archiver
    from core.restore import files, plan, writer

    groups = os.getgroups()
    os.setgroups([])
    os.setresgid(uid, uid, 0)
    os.setresuid(uid, uid, 0)
    files._IS_ROOT = plan._IS_ROOT = writer._IS_ROOT = False
    archiver._EUID = uid
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)
        files._IS_ROOT = plan._IS_ROOT = writer._IS_ROOT = True
        archiver._EUID = 0


def chown_tree(path: Path, uid: int) -> None:
    os.chown(path, uid, uid, follow_symlinks=False)
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    base: Path
    src: Path
    repo: Path  # the pristine repository (never changed after build)
    other_repo: Path  # another repository with the same passphrase (for "replaced")
    s0: str
    s1: str
    victims: dict[str, str]  # object -> storage key in the repository
    substitutes: dict[str, bytes]  # object -> bytes of another valid object of its kind
    depends: dict[str, frozenset[str]]  # object -> S1 files whose restore needs it


def _config_text(repo: Path, src: Path, remote: str = "") -> str:
    return (
        f"[application]\nuser_data = [{json.dumps(str(src))}]\n"
        f"[storage]\nlocal_path = {json.dumps(str(repo))}\n{remote}"
    )


def _create_repo(path: Path) -> None:
    from core import crypto
    from core.repository.repository import Repository
    from core.storage.local import LocalBackend

    saved = crypto.SCRYPT_N
    crypto.SCRYPT_N = 2**10  # cheap key derivation, recorded in the key file
    try:
        # pack_size 1: every blob alone in its pack (see the module's docstring).
        asyncio.run(Repository.create(LocalBackend(path), PASSPHRASE, pack_size=1))
    finally:
        crypto.SCRYPT_N = saved


def _lock_body(pid: int, operation: str) -> bytes:
    import socket

    return json.dumps(
        {
            "exclusive": False,
            "host": socket.gethostname(),
            "pid": pid,
            "start": "1",
            "operation": operation,
            "created": "2026-01-01T00:00:00+00:00",
            "refreshed": "2026-01-01T00:00:00+00:00",
            "expires": "2026-01-01T00:30:00+00:00",
        }
    ).encode()


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def build_world(base: Path) -> World:
    """Source, repository (S0, S1, two WAL files, a stale lock), another repository; the
    world is readable by everyone so cells can run as another user."""
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    src = base / "src"
    for rel, data in FILES.items():
        if rel == "late.txt":
            continue
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    repo, other = base / "repo", base / "other"
    _create_repo(repo)
    _create_repo(other)
    cfg, state = base / "config.toml", base / "state"
    cfg.write_text(_config_text(repo, src))
    with _one_blob_per_pack():
        s0, s1 = _two_backups(cfg, state, src)
    return _finish_world(base, src, repo, other, cfg, state, s0, s1)


@contextlib.contextmanager
def _one_blob_per_pack():
    """pack_size 1 ships each blob alone only while an upload slot is free when it is
    added: with both slots busy (a loaded host), the blobs added meanwhile join the waiting
    pack, so sub/'s tree could share its pack with vol/'s one run and not the next, and the
    tree row's outcome with it. Enough slots that none is ever waited for: the same packs
    on every run."""
    from core.repository import repository

    saved = repository.MAX_UPLOADS, repository.LOCAL_UPLOADS
    repository.MAX_UPLOADS = repository.LOCAL_UPLOADS = 1 << 20
    try:
        yield
    finally:
        repository.MAX_UPLOADS, repository.LOCAL_UPLOADS = saved


def _two_backups(cfg: Path, state: Path, src: Path) -> tuple[str, str]:
    r = cli(cfg, state, "--json", "backup")
    assert r.code == 0, r
    s0 = r.json["snapshots"][0]["id"]
    (src / "late.txt").write_bytes(FILES["late.txt"])
    r = cli(cfg, state, "--json", "backup")
    assert r.code == 0, r
    s1 = r.json["snapshots"][0]["id"]
    return s0, s1


def _finish_world(base: Path, src: Path, repo: Path, other: Path, cfg: Path, state: Path, s0: str, s1: str) -> World:
    wal_dir = base / "pg_wal"
    wal_dir.mkdir()
    for name, data in WAL_CONTENT.items():
        (wal_dir / name).write_bytes(data)
        r = cli(cfg, state, "wal-push", str(wal_dir / name))
        assert r.code == 0, r
    # The other repository gets a backup too: its snapshot is a valid object of another repository.
    other_cfg = base / "other.toml"
    other_cfg.write_text(_config_text(other, src))
    assert cli(other_cfg, state, "backup").code == 0
    lock_key = f"locks/{os.urandom(16).hex()}"
    (repo / lock_key).write_bytes(_lock_body(_dead_pid(), "backup"))
    # Every command of a cell once as root: a cell run as another user cannot import a
    # module from the interpreter's 0700 home later.
    for args in (
        ("verify", "--full"),
        ("restore", "latest", "--target", str(base / "warm")),
        ("wal-fetch", WAL_KEEP, str(base / "warm-wal")),
        ("repair", "packs", "--dry-run"),
        ("repair", "snapshots", "--dry-run"),
        ("snapshots",),
        ("ls", "latest"),
    ):
        r = cli(cfg, state, *args)
        assert r.code == 0, r
    (src / GONE).unlink()

    victims, substitutes, depends = asyncio.run(_find_victims(repo, s0, s1))
    victims["lock"] = lock_key
    substitutes["lock"] = _lock_body(_dead_pid() - 1, "prune")
    depends["lock"] = frozenset()
    substitutes["config"] = (other / "config").read_bytes()
    (other_key,) = (other / "keys").iterdir()
    substitutes["key"] = other_key.read_bytes()
    for p in base.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    if os.geteuid() == 0:
        chown_tree(src, NOBODY)  # the cells back it up as that user
    return World(base, src, repo, other, s0, s1, victims, substitutes, depends)


async def _find_victims(path: Path, s0: str, s1: str):
    from core.repository.repository import Repository
    from core.restore.walk import display, walk
    from core.storage.local import LocalBackend

    repo = await Repository.open(LocalBackend(path), PASSPHRASE)
    await repo.load_index()
    snap = await repo.load_snapshot(s1)
    files: dict[str, tuple[bytes, ...]] = {}
    folders: dict[str, bytes] = {}  # folder (relative; "" is src itself) -> its tree's id
    sub_tree = None
    async for parts, node in walk(repo, bytes.fromhex(snap.tree)):
        shown = display(parts)
        if shown.endswith("/src") and node.type == "dir" and node.subtree is not None:
            folders[""] = node.subtree
        if "/src/" not in shown:
            continue
        rel = shown.split("/src/", 1)[1]
        if node.type == "dir" and node.subtree is not None:
            folders[rel] = node.subtree
        if node.type == "dir" and rel == "sub":
            sub_tree = node.subtree
        if node.content:
            files[rel] = node.content
    assert sub_tree is not None and set(files) == set(FILES), files.keys()

    def key_of(blob: bytes) -> str:
        h = repo.index.lookup(blob).pack_id.hex()
        return f"data/{h[:2]}/{h}"

    (key_id,) = [p.name for p in (path / "keys").iterdir()]
    gone_pack = key_of(files[GONE][0])
    assert len(files[GONE]) == 1
    tree_pack = key_of(sub_tree)
    in_tree_pack = [b for b in (*folders.values(), *(x for c in files.values() for x in c)) if key_of(b) == tree_pack]
    assert set(in_tree_pack) == {sub_tree}, "sub/'s tree shares its pack: the tree row would differ between runs"
    other_pack = key_of(files["keep/a.txt"][0])
    # The index file naming the most packs: the backups' (the WAL pushes write small ones).
    sizes = {}
    for f in (path / "index").iterdir():
        sizes[f"index/{f.name}"] = len(await repo.read_index_file(f"index/{f.name}"))
    index_key = max(sizes, key=sizes.get)
    other_index = min(sizes, key=sizes.get)
    in_victim_index = {p for p, _size, _e in await repo.read_index_file(index_key)}
    victims = {
        "config": "config",
        "key": f"keys/{key_id}",
        "index": index_key,
        "snapshot": f"snapshots/{s1}",
        "tree": tree_pack,
        "pack": gone_pack,
        "wal": f"wal/{WAL_VICTIM}",
    }
    substitutes = {
        "index": (path / other_index).read_bytes(),
        "snapshot": (path / "snapshots" / s0).read_bytes(),
        "tree": (path / other_pack).read_bytes(),
        "pack": (path / other_pack).read_bytes(),
        "wal": (path / "wal" / WAL_KEEP).read_bytes(),
    }
    everything = frozenset(FILES)
    depends = {
        "config": everything,
        "key": everything,
        "snapshot": everything,
        # An index file loses nothing by itself: the packs still carry their headers.
        "index": frozenset(
            rel for rel, blobs in files.items() if any(repo.index.lookup(b).pack_id in in_victim_index for b in blobs)
        ),
        # Every file below a folder whose tree is in the victim pack (the archiver may pack
        # sub's tree with its siblings'; which ones share a pack is the packer's business).
        "tree": frozenset(
            rel
            for rel in files
            if any(
                key_of(tree) == tree_pack and (folder == "" or rel.startswith(folder + "/"))
                for folder, tree in folders.items()
            )
        ),
        "pack": frozenset({GONE}),
        "wal": frozenset(),
    }
    return victims, substitutes, depends


# --------------------------------------------------------------------------- faults


def plant(repo: Path, world: World, obj: str, fault: str) -> Path:
    """Put ``fault`` on ``obj``'s object in the repository at ``repo``; its path."""
    path = repo / world.victims[obj]
    data = path.read_bytes()
    if fault == "deleted":
        path.unlink()
    elif fault == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif fault == "flipped":
        path.write_bytes(_flipped(obj, data))
    elif fault == "replaced":
        path.write_bytes(world.substitutes[obj])
    elif fault == "unreadable":
        os.chmod(path, 0)
    elif fault == "zero-length":
        path.write_bytes(b"")
    else:
        raise ValueError(fault)
    return path


def _flipped(obj: str, data: bytes) -> bytes:
    """One byte changed. Inside base64 text (config, key file) it becomes another base64
    character, so the object still parses and the change is found where it matters (the
    seal, the checksum), the same way on every run."""
    at = _flip_offset(obj, data)
    if obj in ("config", "key"):
        new = ord("B") if data[at] == ord("A") else ord("A")
    else:
        new = data[at] ^ 0x01
    return data[:at] + bytes([new]) + data[at + 1 :]


def _flip_offset(obj: str, data: bytes) -> int:
    """A byte that matters: inside the sealed part of the config, the wrapped key of a key
    file, the pid of a lock; the middle of any sealed object."""
    if obj == "config":
        return data.index(b'"sealed": "') + 20
    if obj == "key":
        return data.index(b'"data": "') + 20
    if obj == "lock":
        return data.index(b'"pid": ') + 8
    return len(data) // 2


# --------------------------------------------------------------------------- one cell


@dataclass
class Step:
    name: str
    code: int | str
    note: str = ""


@dataclass
class CellResult:
    obj: str
    fault: str
    backend: str
    steps: list[Step] = field(default_factory=list)
    intact_expected: int = 0
    intact_restored: int = 0
    lost: list[str] = field(default_factory=list)  # S1 files not restored bit-exact at the end
    named: list[str] = field(default_factory=list)  # those of them some output named
    collateral: list[str] = field(default_factory=list)  # lost though they did not depend on the object
    tracebacks: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step, for tuning (not in the document)
    refused: str = ""  # every step refused: the first error line
    untouched: bool | None = None  # after a refusal: every other object as it was

    def code(self, name: str) -> int | str | None:
        return next((s.code for s in self.steps if s.name == name), None)

    def codes(self) -> dict[str, int | str]:
        return {s.name: s.code for s in self.steps}


def _restored(target: Path, src: Path, rel: str) -> Path:
    return target / str(src).lstrip("/") / rel


def _same(target: Path, src: Path, rel: str) -> bool:
    """``rel`` restored under ``target`` bit-exact."""
    p = _restored(target, src, rel)
    return p.is_file() and p.read_bytes() == FILES[rel]


def _partial_paths(run: Run) -> set[str]:
    try:
        data = run.json
    except ValueError:
        return set()
    out = set()
    for row in data.get("restored", []) if isinstance(data, dict) else []:
        for p in row.get("partial", []):
            out.add(p["path"].split("/src/", 1)[-1])
    return out


def _repair_lost(run: Run) -> set[str]:
    try:
        data = run.json
    except ValueError:
        return set()
    out = set()
    for loc in data.get("locations", []):
        for f in loc.get("repaired", []) + loc.get("forgotten", []):
            for x in f.get("lost", []):
                out.add(x["path"].split("/src/", 1)[-1])
    return out


def _named_in(text: str, rel: str) -> bool:
    return rel in text or rel.split("/")[0] + " (folder)" in text


# Repair steps per object (the runbook's, docs/OPERATIONS.md); "packs" reads every pack
# whole, which a flipped or replaced pack needs (its size is right).
def repair_steps(obj: str, fault: str) -> tuple[str, ...]:
    if obj in ("index", "tree", "pack"):
        whole = fault in ("flipped", "replaced") and obj != "index"
        return ("index", "packs") if whole else ("index",)
    return ()


def snapshots_repair(obj: str) -> bool:
    return obj in ("index", "tree", "pack")


@dataclass
class Cell:
    """Where one cell runs: its own copy of the repository, config, state folder, targets."""

    world: World
    root: Path
    cfg: Path
    state: Path
    user: int | None
    location: str | None = None  # a remote location's name: the faults are planted there
    where: Path | None = None  # the faulted repository's folder (local or the SFTP server's)
    bucket: str | None = None  # an S3 location's bucket

    def run(self, *args: str) -> Run:
        return cli(self.cfg, self.state, *args, as_user=self.user)


def local_cell(world: World, root: Path, obj: str, fault: str) -> Cell:
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    repo = root / "repo"
    # Root reads a mode-000 file: a removed permission is only seen by another user.
    user = NOBODY if os.geteuid() == 0 and fault == "unreadable" else None
    # Hard links: the program never changes an object in place (it writes a new file and
    # renames it, and deletes by unlinking), so a linked copy is private to the cell; the
    # victim is copied before its fault, and a cell that changes owners copies everything.
    shutil.copytree(world.repo, repo, symlinks=True, copy_function=shutil.copy2 if user else os.link)
    victim = repo / world.victims[obj]
    victim.unlink()
    shutil.copy2(world.repo / world.victims[obj], victim)
    cfg, state = root / "config.toml", root / "state"
    cfg.write_text(_config_text(repo, world.src))
    state.mkdir()
    if user is not None:
        chown_tree(root, user)
    cell = Cell(world, root, cfg, state, user, None, repo)
    plant(repo, world, obj, fault)
    return cell


def run_cell(cell: Cell, obj: str, fault: str, backend: str = "local") -> CellResult:
    """The operator's sequence against a faulted copy; every step's exit code recorded."""
    w = cell.world
    res = CellResult(obj, fault, backend)
    at = ("--from", cell.location) if cell.location else ()
    loc = ("--location", cell.location) if cell.location else ()

    def step(name: str, *args: str) -> Run:
        started = time.monotonic()
        r = cell.run(*args)
        res.seconds[name] = round(time.monotonic() - started, 2)
        res.runs.append(r)
        res.steps.append(Step(name, r.code))
        if r.code == "traceback" or "Traceback (most recent call last)" in r.err:
            res.tracebacks.append(f"{name}: {r.err.strip().splitlines()[-1]}")
        return r

    step("verify", "--json", "verify", "--full", *at)
    # --no-fsync: durability is not what a cell measures, and a flush of a shared disk is slow.
    # A remote cell restores before any repair only for a deleted pack (a partial restore there
    # is then filled from the primary); elsewhere it runs verify -> repair -> backup -> verify
    # -> restore alone: a remote command costs 0.2-0.5 s of CPU, and the suite's time is bounded.
    before = None
    if not cell.location or (obj, fault) == ("pack", "deleted"):
        before = step("restore", "--json", "restore", w.s1, "--no-fsync", "--target", str(cell.root / "before"), *at)
    for what in repair_steps(obj, fault):
        step(f"repair {what}", "--json", "repair", what, *loc)
    if obj == "snapshot" and fault != "deleted" and not cell.location:
        # A manifest that does not open is left alone by repair; `forget ID` removes it.
        step("forget", "forget", w.s1)
    step("backup", "--json", "backup")
    repaired_s1 = w.s1
    snap_run = None
    if snapshots_repair(obj):
        snap_run = step("repair snapshots", "--json", "repair", "snapshots", *loc)
        with contextlib.suppress(ValueError, KeyError):
            for loc_row in snap_run.json["locations"]:
                for f in loc_row.get("repaired", []):
                    if f["id"] == w.s1:
                        repaired_s1 = f["new_id"]
    step("verify after", "--json", "verify", "--full", *at)
    on_disk = {rel for rel in FILES if rel != GONE}
    if cell.location:
        # S1 first; the newest snapshot only when S1's restore did not bring back every file
        # still on disk (a remote command is dear; S1 holds the same content).
        final = step(
            "restore S1", "--json", "restore", repaired_s1, "--no-fsync", "--target", str(cell.root / "s1"), *at
        )
        if not all(_same(cell.root / "s1", w.src, rel) for rel in on_disk):
            step(
                "restore latest",
                "--json",
                "restore",
                "latest",
                "--no-fsync",
                "--target",
                str(cell.root / "latest"),
                *at,
            )
    else:
        step("restore latest", "--json", "restore", "latest", "--no-fsync", "--target", str(cell.root / "latest"), *at)
        final = step(
            "restore S1", "--json", "restore", repaired_s1, "--no-fsync", "--target", str(cell.root / "s1"), *at
        )
    latest_run = res.code("restore latest") is not None
    got_fill: set[str] = set()
    fill = None
    if cell.location and before is not None and before.code == 23:
        fill = cell.root / "before"  # the partial restore named an intact copy at the primary
    elif cell.location and not all(_same(cell.root / "s1", w.src, rel) for rel in FILES):
        fill = cell.root / "filled"  # S1 did not come back whole from the location
    if fill is not None:
        # What the location could not give back, from the primary (`restore --from local`).
        step("fill --from local", "--json", "restore", w.s1, "--from", "local", "--no-fsync", "--target", str(fill))
        got_fill = {rel for rel in FILES if _same(fill, w.src, rel)}
        res.steps[-1].note = "filled" if got_fill == set(FILES) else "not filled"
    if obj == "wal":
        for name in (WAL_KEEP, WAL_VICTIM):
            dest = cell.root / f"fetched-{name}"
            r = step(f"wal-fetch {name[-1]}", "wal-fetch", *at, name, str(dest))
            ok = r.code == 0 and dest.is_file() and dest.read_bytes() == WAL_CONTENT[name]
            res.steps[-1].note = "bit-exact" if ok else "not fetched"

    # What came back: the new snapshot holds every file still on disk; S1 every file it had.
    deps = w.depends[obj]
    got_latest = {rel for rel in on_disk if _same(cell.root / "latest", w.src, rel)}
    got_s1 = {rel for rel in FILES if _same(cell.root / "s1", w.src, rel)}
    # A file is lost when S1's restore lacks it and no snapshot made after the fault has it.
    lost = sorted(rel for rel in FILES if rel not in got_s1 and rel not in got_latest)
    everything_said = "\n".join(r.out + r.err for r in res.runs)
    named = sorted(
        rel
        for rel in lost
        if rel
        in (
            (_partial_paths(before) if before else set())
            | _partial_paths(final)
            | (_repair_lost(snap_run) if snap_run else set())
        )
        or _named_in(everything_said, rel)
    )
    # Without a restore of the newest snapshot (a remote cell whose S1 came back whole) only
    # S1's files are counted: nothing is claimed that was not restored.
    res.intact_expected = (len(on_disk) if latest_run else 0) + len([rel for rel in FILES if rel not in deps])
    res.intact_restored = len(got_latest) + len([rel for rel in got_s1 if rel not in deps])
    res.lost = lost
    res.named = named
    # Another location held it, and `restore --from` brought it back: not lost.
    res.lost = [rel for rel in res.lost if rel not in got_fill]
    res.named = [rel for rel in res.named if rel not in got_fill]
    res.collateral = sorted(rel for rel in res.lost if rel not in deps)
    if obj == "snapshot":
        # A manifest that does not open cannot list its files: naming the manifest is all
        # anyone can do (verify does); a deleted one leaves no trace to name.
        victim = w.victims["snapshot"]
        res.named = sorted(rel for rel in res.lost if victim in everything_said)
    if obj == "wal":
        fetched = {s.name: s.note for s in res.steps if s.name.startswith("wal-fetch")}
        if fetched[f"wal-fetch {WAL_KEEP[-1]}"] != "bit-exact":
            res.collateral.append(f"WAL {WAL_KEEP}")
        if fetched[f"wal-fetch {WAL_VICTIM[-1]}"] != "bit-exact":
            res.lost.append(f"WAL {WAL_VICTIM}")
            if w.victims["wal"] in everything_said:
                res.named.append(f"WAL {WAL_VICTIM}")
    # Refused at every step (nothing could open the location): nothing was restored, and
    # nothing was lost either if the location is as it was.
    codes = [s.code for s in res.steps]
    if cell.location:
        # The backup writes the primary (its copy to the location is reported, not its exit
        # code): refused is every step that reads the location stopping alike.
        codes = [s.code for s in res.steps if s.name != "backup" and not s.name.startswith("fill")]
    if all(isinstance(c, int) and c not in (0, 23) for c in codes) and len(set(codes)) == 1:
        res.refused = f"exit {codes[0]}: {_scrub(_first_error(res.runs[0]), cell.root)}"
        res.untouched = _same_tree(cell.where, w.repo, w.victims[obj]) if cell.where else None
        res.lost, res.named, res.collateral = [], [], []
    return res


def _scrub(text: str, root: Path) -> str:
    """The message without what differs between runs: the cell's folder and random ids."""
    import re

    text = text.replace(str(root), "<cell>")
    # A remote location's name: the server's port, the cell's folder or bucket.
    text = re.sub(r"sftp://[^\s/]+(?:/[^\s/]+)*?/sftp-[0-9a-f]{12}", "<location>", text)
    text = re.sub(r"s3://s3-[0-9a-f]{12}/repo/ at http://127\.0\.0\.1:\d+", "<location>", text)
    return re.sub(r"\b[0-9a-f]{16,}\b", lambda m: m.group(0)[:0] + "<id>", text)


def _first_error(run: Run) -> str:
    return next((line for line in run.err.splitlines() if line.startswith("error: ")), run.err.strip()[:200])


def _same_tree(faulted: Path, pristine: Path, victim: str) -> bool:
    """Every object of the pristine repository but the victim is still there, byte for byte
    (locks aside): a refusal wrote and removed nothing."""
    for p in pristine.rglob("*"):
        rel = p.relative_to(pristine).as_posix()
        if not p.is_file() or rel == victim or rel.startswith("locks/"):
            continue
        q = faulted / rel
        if not q.is_file() or q.read_bytes() != p.read_bytes():
            return False
    return True


# --------------------------------------------------------------------------- the document


DOC_HEAD = """# Reliability: the fault matrix

Generated by `tests/faults/test_fault_matrix.py`; do not edit by hand. A test fails when
this file differs from what the suite measures. Regenerate it with:

    scripts/reliability-matrix

**The world.** One source of 8 small files in 3 folders, backed up twice (S0, then S1),
two WAL files archived with `wal-push`, and a stale lock left by a dead process. Then
`vol/gone.txt` is deleted from the source: only the repository holds it now. The
repository's pack size is 1 byte, so every blob is alone in its pack and a fault hits
exactly one object: *tree* is the pack holding the tree of `sub/` (3 files still on
disk), *pack* the pack holding `vol/gone.txt`, *index* the backups' index file, *snapshot*
S1's manifest, *key* the only key file, *WAL* the manifest of the second WAL file.

**Each cell** plants one fault in a fresh copy of the repository and runs, through the
real CLI: `verify --full`, `restore S1` (before any repair), the repair steps of the
runbook (docs/OPERATIONS.md) where one applies, `backup` (the healing one), `repair
snapshots` (index, tree, pack), `verify --full`, then `restore latest` and `restore` of S1
(or of what `repair snapshots` made of it); the WAL row also runs `wal-fetch` for both WAL
files.

Columns: the exit code of each step in that order (docs/CLI.md, "Exit codes"); *intact*:
files that did not depend on the faulted object (in S1, plus every file of the newest
snapshot) restored bit-exact, of how many; *lost*: files (or WAL files) no restore brings
back, and whether an output named them; *collateral*: files lost that did not depend on
the faulted object (must be 0). *refused*: every step stopped with the same clear error
naming the object and the runbook, and the location was left as it was.

**Remote cells** (sections *sftp* and *s3*) plant the same faults in a copy of the same
repository kept as a remote location of a whole primary: an OpenSSH server's folder, an S3
bucket (moto). Every step reads or repairs that location (`--from`, `--location`); the
`backup` writes the primary and copies to the location, so its exit code is the primary's.
A remote cell restores before any repair only for a deleted pack. It restores S1 first, and
the newest snapshot only when S1 did not come back whole (*intact* then counts S1's files
alone); whatever the location could not give back is then restored from the primary
(`fill --from local`), and is lost only if that fails too. *refused* there: every step
reading the location stopped alike and the location was left as it was.
"""


def steps_text(r: CellResult) -> str:
    parts = []
    for s in r.steps:
        name = {"restore": "restore S1", "restore S1": "restore S1", "verify after": "verify"}.get(s.name, s.name)
        parts.append(f"{name} {s.code}" + (f" ({s.note})" if s.note else ""))
    return " → ".join(parts)


def outcome_text(r: CellResult, known: str | None) -> str:
    if r.tracebacks:
        return "**FAILED: traceback**"
    if r.refused:
        text = "refused" + ("" if r.untouched else ", **location changed**")
    elif r.collateral:
        text = "**FAILED: collateral loss**"
    elif r.lost and len(r.named) < len(r.lost):
        text = "lost, **not named**"
    elif r.lost:
        text = "lost, named"
    elif r.code("backup") not in (0, None):
        text = f"backup refused (exit {r.code('backup')}), nothing lost"
    else:
        text = "healed" if any(s.code not in (0,) for s in r.steps) else "no effect"
    return text + (f" — *known limitation: {known}*" if known else "")


def render(results: list[CellResult], known: dict[tuple[str, str, str], str], skipped: dict[str, str]) -> str:
    lines = [DOC_HEAD]
    backends = []
    for r in results:
        if r.backend not in backends:
            backends.append(r.backend)
    total = {"cells": 0, "survived": 0, "collateral": 0, "known": 0, "unnamed": 0}
    for backend in backends:
        rows = [r for r in results if r.backend == backend]
        lines.append(f"## {backend}\n")
        if backend in skipped:
            lines.append(skipped[backend] + "\n")
        lines.append("| Object | Fault | Steps (exit codes) | Outcome | Intact | Lost (named) | Collateral |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in rows:
            k = known.get((r.obj, r.fault, r.backend))
            lost = ", ".join(f"`{x}`" + ("" if x in r.named else " (**unnamed**)") for x in r.lost) or "none"
            intact = "—" if r.refused else f"{r.intact_restored}/{r.intact_expected}"
            outcome = outcome_text(r, k)
            if r.refused:
                outcome += ": " + r.refused.replace("`", "'").replace("|", "/")
            lines.append(
                f"| {r.obj} | {FAULT_TEXT[r.fault]} | {steps_text(r)} | {outcome} | {intact} | {lost} | "
                f"{len(r.collateral)} |"
            )
            total["cells"] += 1
            total["collateral"] += len(r.collateral)
            total["known"] += bool(k)
            total["unnamed"] += len(r.lost) > len(r.named)
            total["survived"] += not (r.tracebacks or r.collateral or (r.refused and not r.untouched))
        lines.append("")
    lines.append("## Totals\n")
    lines.append(f"- cells tried: {total['cells']}")
    lines.append(
        f"- survived (no traceback, the documented exit codes, nothing lost that did not depend on "
        f"the faulted object): {total['survived']}"
    )
    lines.append(f"- files lost that were intact before the fault (collateral): {total['collateral']}")
    lines.append(
        f"- cells where something was lost without being named: {total['unnamed']} (each a known "
        "limitation: the only trace of what was lost was the object the fault deleted)"
    )
    lines.append(f"- known limitations (marked in the tables): {total['known']}")
    return "\n".join(lines) + "\n"


def faulted_bytes(world: World, obj: str, fault: str) -> bytes | None:
    """The victim's bytes after ``fault`` (None: deleted), for storage reached by a client."""
    data = (world.repo / world.victims[obj]).read_bytes()
    if fault == "deleted":
        return None
    if fault == "truncated":
        return data[: len(data) // 2]
    if fault == "flipped":
        return _flipped(obj, data)
    if fault == "replaced":
        return world.substitutes[obj]
    if fault == "zero-length":
        return b""
    raise ValueError(fault)


# --------------------------------------------------------------------------- remote cells
#
# A remote cell's primary is a copy of the world's repository, and so is its remote
# location (a verbatim copy is a valid location); the fault goes to the remote one. The
# remote copy comes from one template per backend, built once: on SFTP a folder under the
# server's root copied on disk, on S3 a bucket whose objects are copied server-side.
# Cells run in a few worker processes at once: most of a remote command is waiting for the
# server, and the suite's time is bounded.


def _s3_client(server):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIATESTKEY",
        aws_secret_access_key="test-secret-key",
    )


def remote_template(world: World, kind: str, server) -> str:
    """The world's repository at ``server``, once: the SFTP folder's path, or the S3 bucket."""
    if kind == "sftp":
        where = Path(server.root) / f"template-{os.urandom(6).hex()}"
        # Only the folders that hold something, as an SFTP location has them (folders are made
        # on first write): 256 empty data/XX folders would cost a round trip each per listing.
        for p in world.repo.rglob("*"):
            if p.is_file():
                q = where / p.relative_to(world.repo)
                q.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                shutil.copyfile(p, q)
                q.chmod(0o600)
        return str(where)
    bucket = f"template-{os.urandom(6).hex()}"
    s3 = _s3_client(server)
    s3.create_bucket(Bucket=bucket)
    for p in world.repo.rglob("*"):
        if p.is_file():
            s3.put_object(Bucket=bucket, Key=f"repo/{p.relative_to(world.repo).as_posix()}", Body=p.read_bytes())
    return bucket


def remote_cell(world: World, root: Path, obj: str, fault: str, kind: str, server, template: str) -> Cell:
    from locations_support import remote_fields, remote_toml
    from servers import remote_config

    root.mkdir(parents=True)
    repo = root / "repo"
    shutil.copytree(world.repo, repo, symlinks=True, copy_function=os.link)  # see local_cell
    loc = remote_config(kind, server)
    where = None
    if kind == "sftp":
        where = Path(server.root) / loc.path_prefix.removeprefix(server.prefix_base).strip("/")
        shutil.copytree(template, where)
        if server.username == "nobody":
            chown_tree(where, NOBODY)  # the login's files, its modes count
        plant(where, world, obj, fault)
    else:
        s3 = _s3_client(server)
        s3.create_bucket(Bucket=loc.bucket_name)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=template)
        for o in (o for page in pages for o in page.get("Contents", [])):
            s3.copy_object(Bucket=loc.bucket_name, Key=o["Key"], CopySource={"Bucket": template, "Key": o["Key"]})
        new = faulted_bytes(world, obj, fault)
        key = f"repo/{world.victims[obj]}"
        if new is None:
            s3.delete_object(Bucket=loc.bucket_name, Key=key)
        else:
            s3.put_object(Bucket=loc.bucket_name, Key=key, Body=new)
    cfg, state = root / "config.toml", root / "state"
    cfg.write_text(_config_text(repo, world.src, remote_toml("vault", **remote_fields(loc))))
    state.mkdir()
    return Cell(world, root, cfg, state, None, "vault", where, loc.bucket_name if kind == "s3" else None)


def _s3_untouched(server, bucket: str, template: str, victim: str) -> bool:
    """Every object of the template but the victim is in ``bucket``, the same bytes (locks aside)."""
    s3 = _s3_client(server)

    def objects(b: str) -> dict[str, str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b)
        return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}

    mine, pristine = objects(bucket), objects(template)
    return all(
        mine.get(k) == etag for k, etag in pristine.items() if k != f"repo/{victim}" and not k.startswith("repo/locks/")
    )


def run_remote(world: World, base: Path, obj: str, fault: str, kind: str, server, template: str) -> CellResult:
    """One remote cell from start to end (a worker process runs it); its folder removed."""
    started, cpu = time.monotonic(), time.process_time()
    root = base / f"{kind}-{obj}-{fault}"
    cell = remote_cell(world, root, obj, fault, kind, server, template)
    try:
        res = run_cell(cell, obj, fault, backend=kind)
        res.seconds["cell"] = round(time.monotonic() - started, 2)
        res.seconds["cell cpu"] = round(time.process_time() - cpu, 2)
        if res.refused and cell.bucket:
            res.untouched = _s3_untouched(server, cell.bucket, template, world.victims[obj])
        return res
    finally:
        shutil.rmtree(cell.root, ignore_errors=True)
        if cell.where is not None:
            shutil.rmtree(cell.where, ignore_errors=True)


def run_remote_cells(
    world: World, base: Path, cells: list[tuple[str, str, str]], servers: dict, templates: dict[str, str], workers: int
) -> dict[tuple[str, str, str], CellResult]:
    """Every (backend, object, fault) of ``cells`` in ``workers`` processes; their results."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from dataclasses import replace

    # A server value crosses into the workers without its callables (they stay here).
    plain = {k: replace(v, drop_connections=None) if hasattr(v, "drop_connections") else v for k, v in servers.items()}
    # spawn, not fork: this process runs server threads (moto, event loops) whose locks a fork
    # would copy held.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            c: pool.submit(run_remote, world, base, c[1], c[2], c[0], plain[c[0]], templates[c[0]]) for c in cells
        }
        return {c: f.result() for c, f in futures.items()}

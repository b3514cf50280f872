"""`prune --rewrite`: seal again under the current key what is still under a retired one.

After `key rotate` the old encryption key stays in the keyring so old data opens. This pass,
under the exclusive lock, re-seals it, then destroys the old key:

* packs whose header opens only with a retired key: their indexed blobs are opened, checked
  and sealed again under the current key into new packs (core/maintenance/repack.py does the
  re-sealing), one old pack at a time; then new index files, then the old ones and the old
  packs deleted, the way prune drops packs. A blob already in a pack under the current key (a
  run interrupted after it wrote that pack) is not written again;
* every other sealed object (index files, snapshot manifests, WAL manifests, pins,
  tombstones, drill reports, restore-test records): each sealed again under the same name by
  delete-then-put (the name is the keyed hash or the id of the plaintext, which does not change);
* when a whole pass found nothing left under a retired key: a keyring with no retired key is
  written and the old keyring objects deleted; the old key is gone from the repository.

Memory: one old pack's blobs and the new pack being filled, objects one by one (plus the index
entries prune holds anyway). Interrupted: run it again; it skips what is under the current key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core import crypto
from core.maintenance.repack import repack
from core.repository import keyring
from core.repository.format import AD_INDEX, INDEX, pack_key
from core.repository.index import IndexedPack
from core.repository.lock import Lock
from core.repository.repository import Repository
from core.repository.retired import SEALED_OBJECTS, retired_packs
from core.repository.rewrite import ensure_sole_holder, write_index
from core.storage.backend import LocationRefused, ObjectNotFound, ObjectUnreadable, replace_object

Progress = Callable[[str, int, int | None], None]


@dataclass
class ResealReport:
    packs_rewritten: int = 0
    packs_written: int = 0
    bytes_rewritten: int = 0
    objects_resealed: dict[str, int] = field(default_factory=dict)  # folder -> count
    problems: list[str] = field(default_factory=list)  # what could not be re-sealed, by name
    retired_before: int = 0
    old_key_destroyed: bool = False

    def to_dict(self) -> dict:
        return {
            "packs_rewritten": self.packs_rewritten,
            "packs_written": self.packs_written,
            "bytes_rewritten": self.bytes_rewritten,
            "objects_resealed": dict(self.objects_resealed),
            "problems": list(self.problems),
            "retired_keys_before": self.retired_before,
            "old_key_destroyed": self.old_key_destroyed,
        }


async def reseal(repo: Repository, lock: Lock, progress: Progress | None = None) -> ResealReport:
    """The pass described in the module doc; the caller holds ``lock`` (exclusive)."""
    progress = progress or (lambda phase, done, total: None)
    cipher = repo.cipher
    assert isinstance(cipher, crypto.Cipher)
    report = ResealReport(retired_before=len(cipher.retired))
    if not cipher.retired:
        return report
    current = cipher.current_only()
    packs, index_files = await _indexed(repo)
    old, damaged = await retired_packs(repo, packs)
    report.problems += damaged
    old_set = set(old)
    # Blobs already under the current key elsewhere: an interrupted run's new packs, adopted.
    have = {e.id for pid, (_s, entries) in packs.items() if pid not in old_set for e in entries}
    written: list[IndexedPack] = []
    total = sum(packs[pid][0] for pid in old)
    for pack_id in old:
        size, entries = packs[pack_id]
        keep = [e for e in entries if e.id not in have]
        if keep:
            new = await repack(repo, [(pack_id, keep)], repo.config.pack_size)
            written += new
            have.update(e.id for _p, _s, es in new for e in es)
            report.packs_written += len(new)
        report.packs_rewritten += 1
        report.bytes_rewritten += size
        progress("re-sealing packs", report.bytes_rewritten, total)
    stay = [(pid, size, list(entries)) for pid, (size, entries) in packs.items() if pid not in old_set]
    stale_index = [k for k in sorted(index_files) if not await _index_current(repo, current, k)]
    if old or stale_index:
        progress("writing index", 0, None)
        new_index, new_files = await write_index(repo, stay + written)
        await ensure_sole_holder(lock, "prune --rewrite", "deleting index files and old packs", "nothing was deleted")
        for key in sorted(k for k in index_files if k not in new_files):
            await _delete(repo, key, report)
        for pack_id in old:
            await _delete(repo, pack_key(pack_id), report)
        new_index.files = set(new_files)
        repo.replace_index(new_index)
        report.objects_resealed[INDEX] = len(new_files)
    for folder, ad, hex_name in SEALED_OBJECTS:
        await _reseal_folder(repo, current, folder, ad, hex_name, report, progress)
    if not report.problems:
        await ensure_sole_holder(lock, "prune --rewrite", "destroying the retired keys", "they were kept")
        await _destroy_old_key(repo, report)
    return report


async def _indexed(repo: Repository) -> tuple[dict[bytes, tuple[int, list]], set[str]]:
    packs: dict[bytes, tuple[int, list]] = {}
    files: set[str] = set()
    async for info in repo.backend.list(f"{INDEX}/"):
        for pack_id, size, entries in await repo.read_index_file(info.key, info.size):
            packs.setdefault(pack_id, (size, list(entries)))
        files.add(info.key)
    return packs, files


async def _index_current(repo: Repository, current: crypto.Cipher, key: str) -> bool:
    sealed = await repo.backend.get(key)
    ad = AD_INDEX + bytes.fromhex(key.rsplit("/", 1)[-1])
    try:
        current.open(sealed, ad, shared=True)
        return True
    except crypto.DecryptError:
        return False


async def _delete(repo: Repository, key: str, report: ResealReport) -> None:
    try:
        await repo.backend.delete(key)
    except ObjectNotFound:
        pass
    except LocationRefused as exc:
        report.problems.append(f"{key} not deleted ({exc})")


async def _reseal_folder(
    repo: Repository,
    current: crypto.Cipher,
    folder: str,
    ad_prefix: bytes,
    hex_name: bool,
    report: ResealReport,
    progress: Progress,
) -> None:
    """Each object of ``folder`` under a retired key sealed again, same name: delete, then put
    (the old bytes put back should the put fail)."""
    cipher = repo.cipher
    done = 0
    async for info in repo.backend.list(f"{folder}/"):
        name = info.key[len(folder) + 1 :]
        try:
            ad = ad_prefix + (bytes.fromhex(name) if hex_name else name.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            continue  # not one of ours (verify names such objects)
        try:
            sealed = await repo.backend.get(info.key)
        except (ObjectNotFound, ObjectUnreadable):
            continue
        try:
            current.open(sealed, ad)
            continue
        except crypto.DecryptError:
            pass
        try:
            plain = cipher.open(sealed, ad)
        except crypto.DecryptError:
            report.problems.append(f"{info.key} opens with no key (damaged): not re-sealed")
            continue
        try:
            await replace_object(repo.backend, info.key, sealed, current.seal(plain, ad))
        except LocationRefused as exc:
            report.problems.append(f"{info.key} not re-sealed ({exc})")
            continue
        done += 1
        progress(f"re-sealing {folder}", done, None)
    if done:
        report.objects_resealed[folder] = done


async def _destroy_old_key(repo: Repository, report: ResealReport) -> None:
    """Nothing left under a retired key: a keyring without any, the old keyrings deleted."""
    master = repo.require_full("destroy retired keys")
    ring = await keyring.read(repo.backend, master)
    key, sealed = keyring.encode(master, [])
    await repo.backend.put(key, sealed)
    for obj in ring.objects:
        await _delete(repo, obj, report)
    report.old_key_destroyed = not report.problems

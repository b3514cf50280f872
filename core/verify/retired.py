"""How much of a repository is still sealed under a key retired by `key rotate`: what
`prune --rewrite` has left to do. Packs by their header (a ranged read each), the other
sealed objects one by one. A count that did not run is None, never zero."""

from __future__ import annotations

from dataclasses import dataclass, field

from core import crypto
from core.errors import DamagedObject
from core.repository.format import AD_INDEX, INDEX
from core.repository.repository import Repository
from core.repository.retired import SEALED_OBJECTS, retired_packs
from core.storage.backend import ObjectNotFound, ObjectUnreadable


@dataclass
class RetiredUse:
    retired_keys: int  # retired keys the keyring holds (0: the old key is destroyed)
    packs: int = 0  # indexed packs whose header opens only with a retired key
    bytes: int = 0  # their size
    objects: int = 0  # other sealed objects (index files, manifests, pins, ...) under a retired key
    by_folder: dict[str, int] = field(default_factory=dict)
    keyring_damaged: list[str] = field(default_factory=list)  # keyring objects that did not open

    def to_dict(self) -> dict:
        return {
            "retired_keys": self.retired_keys,
            "packs": self.packs,
            "bytes": self.bytes,
            "objects": self.objects,
            "by_folder": dict(self.by_folder),
            "keyring_damaged": list(self.keyring_damaged),
        }


async def count_retired(repo: Repository) -> RetiredUse:
    """The count over the whole repository (the index loaded). With no retired key nothing can
    be under one: what opens with no key at all is damage, which verify reports as such."""
    cipher = repo.cipher
    assert isinstance(cipher, crypto.Cipher)
    use = RetiredUse(len(cipher.retired), keyring_damaged=list(repo.keyring_damaged))
    if not cipher.retired:
        return use
    current = cipher.current_only()
    sizes: dict[bytes, tuple[int, list]] = {pid: (size, []) for pid, size in repo.index.packs()}
    old, _damaged = await retired_packs(repo, sizes)  # damaged packs: verify's own finding
    use.packs = len(old)
    use.bytes = sum(sizes[p][0] for p in old)
    kinds = [(INDEX, AD_INDEX, True, True)] + [(f, a, h, False) for f, a, h in SEALED_OBJECTS]
    for folder, ad_prefix, hex_name, shared in kinds:
        async for info in repo.backend.list(f"{folder}/"):
            name = info.key[len(folder) + 1 :]
            try:
                ad = ad_prefix + (bytes.fromhex(name) if hex_name else name.encode("ascii"))
                sealed = await repo.backend.get(info.key)
            except (ValueError, UnicodeEncodeError, ObjectNotFound, ObjectUnreadable, DamagedObject):
                continue
            try:
                current.open(sealed, ad, shared=shared)
                continue
            except crypto.DecryptError:
                pass
            try:
                cipher.open(sealed, ad, shared=shared)
            except crypto.DecryptError:
                continue  # opens with no key: damage, reported by verify's own checks
            use.objects += 1
            use.by_folder[folder] = use.by_folder.get(folder, 0) + 1
    return use

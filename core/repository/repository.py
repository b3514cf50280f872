"""One repository inside one location: open/create, blobs in packs, index, snapshots.

Write order (the invariants in docs/FORMAT.md): packs, then the index files naming them,
then trees are already inside packs, then the snapshot manifest last. Every object is
immutable; a crash at any point leaves unreferenced packs at worst, which the next
backup adopts (``adopt_unindexed_packs``) instead of uploading again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core import crypto
from core.errors import AxisorError, DamagedObject, SnapshotNotFound
from core.repository import indextable
from core.repository import keyring
from core.repository import keys as keyfiles
from core.repository import repo_config
from core.repository.blobs import SealedBlob, open_blob, seal_blob
from core.repository.format import (
    AD_INDEX,
    AD_PACK_HEADER,
    AD_SNAPSHOT,
    DATA,
    INDEX,
    KEYS,
    PACK_TRAILER,
    SNAPSHOTS,
    BlobType,
    pack_id_from_key,
    pack_key,
)
from core.repository.own_cache import OwnCache
from core.repository.index import Index, IndexedPack, IndexFormatError, PackEntry, decode_index, encode_index
from core.repository.packer import Packer, PackFormatError, decode_header, parse_trailer
from core.repository.snapshot import Snapshot, is_safety
from core.repository.tree import Tree, TreeFormatError
from core.repository.treecache import TreeCache
from core.storage.backend import Backend, ObjectExists, ObjectNotFound, ObjectUnreadable, StorageError

if TYPE_CHECKING:  # the caches are imported only by the callers that use one
    from core.repository.keycache import KeyMemory


def max_pack_bytes(config: repo_config.RepoConfig) -> int:
    """The largest pack a writer of this repository can make (docs/FORMAT.md, "Limits")."""
    blobs = config.pack_size + max(config.chunker.max_size, MAX_TREE_BLOB) + MIN_SEALED_BLOB
    header = crypto.SEAL_OVERHEAD + (blobs // MIN_SEALED_BLOB + 1) * MAX_HEADER_ENTRY
    return blobs + header + PACK_TRAILER.size


class ForeignPack(DamagedObject):
    """An object under data/ that is not a pack of this repository (junk, planted, or
    another repository's): named in warnings, never adopted, never read whole."""


# How many finished packs an index file collects before it is written, so a long backup
# killed midway loses at most this many packs' worth of index (and adopts them anyway).
PACKS_PER_INDEX = 64
# Packs uploading at once; each is held whole in memory until its put returns, and one more
# fills meanwhile. Remote storage: two, so one upload's round trips leave the link busy with
# the other. Local storage (a backend with ``get_sync``): one. A local put is a write and an
# fsync, shorter than filling the next pack, so a second pack in flight only held 16 MiB
# more: first backup of the mixed bench set 164 -> 149 MiB peak RSS, no slower
# (bench/RESULTS.md, "Peak memory (issue 19)").
MAX_UPLOADS = 2
LOCAL_UPLOADS = 1
PACK_CACHE = 6  # remote storage: whole packs kept while walking trees or restoring (~16 MiB each)

# What storage hands us is bounded before it is trusted (docs/FORMAT.md, "Limits"). A pack
# this repository writes holds blobs of at most pack_size plus one blob (a chunk is at most
# chunker.max; a tree is one blob whatever its size, and a folder of a million entries makes
# a tree of about 100 MiB before compression), then a header of at most MAX_HEADER_ENTRY
# bytes per blob (each blob is at least MIN_SEALED_BLOB bytes), then the trailer.
MIN_SEALED_BLOB = 29
MAX_HEADER_ENTRY = 72  # msgpack of [type, bin(32), three ints < 2^64]
MAX_TREE_BLOB = 128 * 1024 * 1024
# A header longer than this is authenticated in pieces before it is read whole, so a planted
# trailer claiming a huge header costs a stream, never the memory.
HEADER_READ_WHOLE = 1024 * 1024
# Ranged reads of an unindexed pack being hashed: memory stays at one piece.
HASH_PIECE = 4 * 1024 * 1024
# Sealed index files and snapshot manifests, at most (checked against the listed size before
# a byte is read). Writers stay far below: an index file names at most 64 packs (a backup)
# or 100,000 blobs (prune, repair, adoption), about 5 MiB; a manifest is a few KiB, a
# database's with 100,000 tables a few MiB. Larger ones are damaged objects, never read.
MAX_INDEX_FILE = 256 * 1024 * 1024
MAX_SNAPSHOT_FILE = 64 * 1024 * 1024
# Index files and manifests beyond this are authenticated in pieces before they are read
# whole: a planted one costs a stream, not its size in memory.
OBJECT_READ_WHOLE = 16 * 1024 * 1024
# Blob entries an index file a writer puts holds, at most (a pack's entries are never split).
INDEX_FILE_ENTRIES = 100_000


@dataclass
class WriteStats:
    blobs: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    packs: int = 0
    by_type: dict[int, list[int]] = field(default_factory=lambda: {0: [0, 0, 0], 1: [0, 0, 0]})


class Repository:
    def __init__(
        self,
        backend: Backend,
        master: crypto.MasterKey | crypto.WriterKey,
        config: repo_config.RepoConfig,
        key: keyfiles.KeyFile | None = None,
        executor: Executor | None = None,
        retired: tuple[bytes, ...] = (),
    ) -> None:
        self.backend = backend
        self.master = master  # kept to wrap new key files (key add / passwd)
        # Encryption keys retired by `key rotate` (core/repository/keyring.py): opened with,
        # never sealed with. A write-only key has none: it derives from the current key only.
        self.retired = retired if isinstance(master, crypto.MasterKey) else ()
        # Keyring objects that did not open (named by verify; fatal only where a key is needed).
        self.keyring_damaged: tuple[str, ...] = ()
        self.cipher: crypto.AnyCipher = (
            crypto.Cipher(master, self.retired)
            if isinstance(master, crypto.MasterKey)
            else crypto.WriteOnlyCipher(master)
        )
        # A write-only key's memory of what this host wrote (core/repository/own_cache.py):
        # set by the session where there is a state folder; None: every backup is a full scan.
        self.own: OwnCache | None = None
        self.config = config
        self.key = key
        self.executor = executor
        self.index = Index()
        # Local folder for the on-disk index table of a large repository (Service sets it
        # to the state folder's index-cache/); None: such a table is built in the system's
        # temp folder and not kept.
        self.index_cache_dir: Path | None = None
        self.compression_level = 3
        self._packer = Packer()
        self._pending: set[bytes] = set()  # ids in the packer or uploading
        self._uploads: set[asyncio.Task] = set()
        self._upload_slots = asyncio.Semaphore(LOCAL_UPLOADS if hasattr(backend, "get_sync") else MAX_UPLOADS)
        self._ship_lock = asyncio.Lock()
        self._unwritten: list[IndexedPack] = []
        self._failure: BaseException | None = None
        self.stats = WriteStats()
        # Remote storage: tree packs read whole, once (a walk loads trees one by one, and a
        # ranged GET per tree is a round trip each); a few kept, least recently used out.
        self._packs: OrderedDict[str, asyncio.Future] = OrderedDict()
        self.trees = TreeCache()  # plaintext of recently opened trees: a second walk decrypts none
        # Indexed packs the last listing found missing or of another size (adopt_unindexed_packs).
        self.unusable_packs: set[bytes] = set()
        # Objects under data/ the last adoption found not to be packs of this repository:
        # key -> why (named by the backup as warnings; verify names them too).
        self.foreign_packs: dict[str, str] = {}
        # Sizes of manifests seen in the last listing (snapshot_ids): a read bounded by them needs no stat.
        self._listed_sizes: dict[str, int] = {}

    # -- opening ------------------------------------------------------------------------

    @classmethod
    async def create(cls, backend: Backend, passphrase: str, pack_size: int = 16 * 1024 * 1024) -> Repository:
        if await backend.exists():
            raise AxisorError(f"a repository already exists at {backend.location}")
        if await repo_config.holds_objects(backend):
            # Its config was lost: a new one beside the old key files would leave two
            # repositories' objects in one folder, and the old data unreadable for good.
            raise AxisorError(
                f"{backend.location} holds a repository's key files or snapshots without a config; "
                f"not making another one there: {repo_config.LOST_CONFIG}"
            )
        await backend.create()
        master = crypto.MasterKey.generate()
        cipher = crypto.Cipher(master)
        config = repo_config.RepoConfig.new(pack_size)
        key = await asyncio.to_thread(keyfiles.wrap, master, passphrase)
        # The key goes first: a config without a key would be a repository nobody can open.
        await keyfiles.store_key(backend, key)
        try:
            await backend.put("config", config.encode(cipher))
        except BaseException:
            # No config, no repository: take the key back (a delete needs no space), or the
            # next `init` would find the passphrase opening this orphan's master key first
            # and its own config unreadable (exit 9 on every command).
            with contextlib.suppress(Exception):
                await backend.delete(f"{KEYS}/{key.id}")
            raise
        return cls(backend, master, config, key)

    @classmethod
    async def open(
        cls,
        backend: Backend,
        passphrase: str,
        *,
        key_cache_dir: Path | None = None,
        key_memory: KeyMemory | None = None,
    ) -> Repository:
        """Open with a passphrase. ``key_cache_dir`` (the WAL path only): keep the derived
        wrapping key there so the next run skips scrypt (core/repository/keycache.py);
        ``key_memory`` (the daemon's jobs, a one-shot backup's): the same, in this process's memory."""
        public = await repo_config.read_public(backend)
        cache = None
        if key_cache_dir is not None:
            from core.repository.keycache import KeyCache

            cache = KeyCache(key_cache_dir, str(public.get("id", "")))
        elif key_memory is not None:
            await key_memory.settled()  # a derivation started ahead: its entry, not a second scrypt
            cache = key_memory.cache(str(public.get("id", "")))
        # A `key rotate` interrupted between its new key file and the config leaves two key
        # files for the passphrase: the one whose master key opens the config is the one.
        skip: frozenset[str] = frozenset()
        first: DamagedObject | None = None
        while True:
            try:
                master, key = await keyfiles.unlock(backend, passphrase, cache, skip)
            except AxisorError:
                if first is None:
                    raise
                raise first from None
            ring = None
            try:
                if isinstance(master, crypto.WriterKey):
                    config = repo_config.decode_secret(public, master.config)
                else:
                    # A replica the last rotation could not reach keeps its config under a retired key.
                    ring = await keyring.read(backend, master)
                    config = repo_config.decode(public, crypto.Cipher(master, ring.keys))
                break
            except (crypto.DecryptError, ValueError, KeyError) as exc:
                first = first or DamagedObject(
                    "config",
                    f"cannot be opened with the master key of keys/{key.id} ({exc}): the "
                    "config or that key file is damaged or belongs to another repository; "
                    f"{repo_config.LOST_CONFIG}",
                )
                skip = skip | {key.id}
        if ring is None:
            return cls(backend, master, config, key)
        repo = cls(backend, master, config, key, retired=ring.keys)
        repo.keyring_damaged = ring.damaged
        return repo

    @property
    def write_only(self) -> bool:
        """Opened with a write-only key: backs up and pushes WAL, reads nothing back."""
        return not self.cipher.readable

    def require_full(self, what: str) -> crypto.MasterKey:
        """The master key, or KeyRefused (exit 27) naming ``what`` was refused."""
        if not isinstance(self.master, crypto.MasterKey):
            raise crypto.WriteOnly(f"it may not {what}")
        return self.master

    def sibling(self) -> Repository:
        """The same repository (storage, key, config, worker pool) with its own packer,
        pending set and empty index: for writers that run at the same time and each flush
        alone (parallel WAL pushes). Sharing one packer would let one writer's flush or
        abort take the other's half-sealed blobs with it."""
        twin = Repository(self.backend, self.master, self.config, self.key, self.executor, self.retired)
        twin.keyring_damaged = self.keyring_damaged
        twin.compression_level = self.compression_level
        twin.own = self.own
        return twin

    async def _run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- index --------------------------------------------------------------------------

    async def load_index(self, *, strict: bool = True, use_cache: bool = True) -> list[DamagedObject]:
        """Load every index file not loaded yet. Damaged ones are returned, or raised if strict.

        With ``index_cache_dir``, a large index is kept there between runs (an on-disk table,
        core/repository/indextable.py): reused when every index file it was built from is
        still listed (index files never change: their names are their content's hash), the
        files listed since loaded on top of it. Not ``use_cache`` (verify): every index file
        is read, so one damaged since the table was built is found."""
        damaged: list[DamagedObject] = []
        listing = [info async for info in self.backend.list(f"{INDEX}/")]
        cache = self._index_cache() if self._index_is_empty() else None
        if cache is not None:
            path, tag = cache
            cached = None
            if use_cache:
                cached = await asyncio.to_thread(Index.from_cache, path, tag, spill_dir=path.parent)
            if cached is not None and cached.files <= {info.key for info in listing}:
                self.index = cached
            elif cached is not None:
                cached.close()  # index files gone (prune, repair): built again below
            self.index.spill_dir, self.index.cache_tag = path.parent, tag
        for info in listing:
            if info.key in self.index.files:
                continue
            try:
                for pack_id, size, entries in await self.read_index_file(info.key, info.size):
                    self.index.add_pack(pack_id, size, entries)
                self.index.files.add(info.key)
            except DamagedObject as exc:
                if strict:
                    raise DamagedObject(
                        exc.key, f"{exc.reason}; `axisor-backup repair index` rebuilds the index from the packs"
                    ) from None
                damaged.append(exc)
        if cache is not None and self.index.on_disk:
            # Everything in it came from the files just loaded: worth keeping. The sort a
            # large index waits for happens here, off the event loop.
            await asyncio.to_thread(self.index.save_table, cache[0])
        return damaged

    def _index_is_empty(self) -> bool:
        return not self.index.files and not self.index.on_disk and not self.index.pack_ids()

    def _index_cache(self) -> tuple[Path, bytes] | None:
        """Where this repository's index table is kept at this location, and its tag."""
        if self.index_cache_dir is None:
            return None
        tag = crypto.content_hash(
            b"axisor/index-cache/v1\0" + self.config.id.encode() + b"\0" + str(self.backend.location).encode()
        )
        try:
            self.index_cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return None  # no cache: the index is built in the temp folder instead
        indextable.sweep(self.index_cache_dir)
        return self.index_cache_dir / f"{self.config.id}-{tag.hex()[:16]}.axidx", tag

    def replace_index(self, index: Index) -> None:
        """Hold ``index`` (its ``files`` set) instead of the loaded one. For prune and repair,
        once they have replaced the index files on storage: the old in-memory index names
        packs they delete next, and a writer deduplicating against it would lose data."""
        if index.spill_dir is None:
            index.spill_dir = self.index_cache_dir
        self.index = index

    async def read_index_file(self, key: str, size: int | None = None) -> list[IndexedPack]:
        """``size``: the listed size, when the caller has a listing (saves a stat)."""
        raw = await self._open_object(key, AD_INDEX, MAX_INDEX_FILE, size)
        try:
            return decode_index(raw)
        except IndexFormatError as exc:
            raise DamagedObject(key, str(exc)) from None

    async def _open_object(self, key: str, ad_prefix: bytes, limit: int, size: int | None = None) -> bytes:
        """Read and decrypt an index or snapshot object and check its name matches its content.

        Bounded before it is read: larger than ``limit`` (by the listed size, or a stat) it
        is damaged and not read; larger than OBJECT_READ_WHOLE, its tag is checked over
        ranged reads first, so a planted object never costs its size in memory."""
        try:
            object_id = bytes.fromhex(key.rsplit("/", 1)[-1])
        except ValueError:
            raise DamagedObject(key, "name is not a hex id (a foreign file in the repository?)") from None
        try:
            if size is None:
                size = self._listed_sizes.get(key)
            if size is None:
                size = await repo_config.listed_size(self.backend, key)
            if size is not None and size > limit:
                raise DamagedObject(
                    key, f"{size} bytes, more than this program ever writes there (at most {limit}); not read"
                )
            if size is not None and size > OBJECT_READ_WHOLE:
                await self._authenticate_object(key, size, ad_prefix + object_id, shared=ad_prefix == AD_INDEX)
            sealed = await self.backend.get(key)
        except ObjectNotFound:
            raise DamagedObject(key, "missing") from None
        except ObjectUnreadable as exc:
            raise DamagedObject(key, exc.reason) from None
        try:
            plain = self.cipher.open(sealed, ad_prefix + object_id, shared=ad_prefix == AD_INDEX)
        except crypto.DecryptError as exc:
            raise DamagedObject(key, f"does not authenticate ({exc}); truncated or tampered") from None
        if self.cipher.blob_id(plain) != object_id:
            raise DamagedObject(key, "content does not match its name")
        return plain

    async def store_object(self, folder: str, ad_prefix: bytes, plain: bytes) -> str:
        """Seal and put a content-named object (index file, snapshot manifest) under the key
        its kind takes (``seals_shared``); its key. Every writer of index files goes
        through here: one sealed under `enc` in a version-2 repository would be unreadable
        to every write-only host."""
        return await self._store_object(folder, ad_prefix, plain)

    async def _store_object(self, folder: str, ad_prefix: bytes, plain: bytes) -> str:
        object_id = self.cipher.blob_id(plain)
        key = f"{folder}/{object_id.hex()}"
        try:
            await self.backend.put(
                key, self.cipher.seal(plain, ad_prefix + object_id, shared=self.seals_shared(ad_prefix))
            )
        except ObjectExists:
            pass  # same content, same name: already durable
        return key

    def seals_shared(self, ad_prefix: bytes) -> bool:
        """Index files go under the writers' key from format version 2 on (a write-only host
        deduplicates against them); a version-1 repository keeps `enc`, which older
        programs read, until its first write-only key upgrades it (core/service/keys.py)."""
        return ad_prefix == AD_INDEX and (self.config.version >= 2 or self.write_only)

    async def pack_sizes(self) -> dict[bytes, int]:
        """Pack id -> listed size of every object under data/ named like a pack (one listing)."""
        sizes: dict[bytes, int] = {}
        async for info in self.backend.list(f"{DATA}/"):
            pack_id = pack_id_from_key(info.key)
            if pack_id is not None:
                sizes[pack_id] = info.size
        return sizes

    async def adopt_unindexed_packs(self) -> int:
        """Index packs a killed backup uploaded but never indexed, so nothing is sent twice.

        The same listing shows which indexed packs are gone or have another size than
        their index entry (lost, truncated): their blobs are dropped from the index held
        in memory, so this writer stores them again rather than reference data that is not
        there (FORMAT.md, Invariant 4). The index files are left as they are (`repair
        index` rewrites them).

        An unindexed object is checked cheaply first (its listed size, then its trailer and
        header, which a file made without the key fails) and hashed with ranged reads, so
        a planted file costs neither memory nor a whole read. One that is not a pack of
        this repository is named in ``foreign_packs`` (the backup warns) and left alone."""
        adopted = 0
        on_storage: dict[bytes, int] = {}
        unindexed = []
        self.foreign_packs = {}
        async for info in self.backend.list(f"{DATA}/"):
            pack_id = pack_id_from_key(info.key)
            if pack_id is None:
                continue
            on_storage[pack_id] = info.size
            if not self.index.has_pack(pack_id):
                unindexed.append(info)
        self.unusable_packs = {p for p, size in self.index.packs() if on_storage.get(p) != size}
        self.index.drop_packs(self.unusable_packs)
        if self.write_only:
            # Its headers are sealed to the repository's key: only a full key can check
            # that a pack is ours before adopting it. A full-key backup or `repair index` will.
            return 0
        for info in unindexed:
            pack_id = pack_id_from_key(info.key)
            assert pack_id is not None
            try:
                entries = await self.check_unindexed_pack(pack_id, info.size)
            except ForeignPack as exc:
                self.foreign_packs[exc.key] = exc.reason
                continue
            except (DamagedObject, StorageError):
                continue  # verify reports it; adopting a bad pack would hide data loss
            self.index.add_pack(pack_id, info.size, entries)
            self._unwritten.append((pack_id, info.size, entries))
            adopted += 1
        if adopted:
            await self._write_index()
        return adopted

    async def check_unindexed_pack(self, pack_id: bytes, size: int, *, hash_content: bool = True) -> list[PackEntry]:
        """The header entries of a pack no index names, after checking it is one of ours:
        its size within what this repository writes, its trailer and header (authenticated
        before they are read whole), and (``hash_content``) its BLAKE3 against its name,
        computed over ranged reads. ForeignPack names what is not a pack of this repository;
        DamagedObject, a pack of ours whose content changed."""
        key = pack_key(pack_id)
        limit = max_pack_bytes(self.config)
        if size > limit:
            raise ForeignPack(
                key,
                f"{size} bytes, larger than any pack of this repository (at most {limit}): "
                "not a pack of this repository; it was not read",
            )
        try:
            entries = await self.read_pack_header(pack_id, size, untrusted=True)
        except DamagedObject as exc:
            raise ForeignPack(key, f"not a pack of this repository ({exc.reason})") from None
        if hash_content:
            h = crypto.content_hasher()
            for offset in range(0, size, HASH_PIECE):
                piece = await self.backend.get(key, offset, min(HASH_PIECE, size - offset))
                if len(piece) != min(HASH_PIECE, size - offset):
                    raise DamagedObject(key, "shorter than listed (changed while read?)")
                await self._run(h.update, piece)
            if h.digest() != pack_id:
                raise DamagedObject(key, "content does not match its name (bit rot or tampering)")
        return entries

    async def read_pack_header(self, pack_id: bytes, size: int, *, untrusted: bool = False) -> list[PackEntry]:
        """A pack's header entries, from its trailer and sealed header (ranged reads).
        ``untrusted``: the pack is named by no index, so its header length is only what the
        trailer claims; a long header is authenticated in pieces before it is read whole."""
        key = pack_key(pack_id)
        try:
            tail_len = min(size, PACK_TRAILER.size + 64 * 1024)
            tail = await self.backend.get(key, size - tail_len, tail_len)
            header_len = parse_trailer(tail[-PACK_TRAILER.size :], size)
            header_start = size - PACK_TRAILER.size - header_len
            if header_len + PACK_TRAILER.size <= tail_len:
                sealed = tail[tail_len - PACK_TRAILER.size - header_len : tail_len - PACK_TRAILER.size]
            else:
                if untrusted and header_len > HEADER_READ_WHOLE:
                    await self._authenticate_streamed(key, header_start, header_len)
                sealed = await self.backend.get(key, header_start, header_len)
            return decode_header(self.cipher, sealed, header_start)
        except PackFormatError as exc:
            raise DamagedObject(key, str(exc)) from None

    async def _authenticate_object(self, key: str, size: int, ad: bytes, *, shared: bool = False) -> None:
        """Check a sealed object's tag over ranged reads (nonce || ciphertext || tag)."""
        if size < crypto.SEAL_OVERHEAD:
            raise DamagedObject(key, "shorter than a sealed object")
        try:
            await self._authenticate_range(key, 0, size, ad, HASH_PIECE, shared=shared)
        except crypto.DecryptError as exc:
            raise DamagedObject(key, f"does not authenticate ({exc}); truncated or tampered") from None

    async def _authenticate_streamed(self, key: str, start: int, length: int) -> None:
        """Check a sealed pack header's tag over ranged reads, holding one piece at a time."""
        try:
            await self._authenticate_range(key, start, length, AD_PACK_HEADER, HEADER_READ_WHOLE)
        except crypto.DecryptError as exc:
            raise PackFormatError(f"pack header does not authenticate: {exc}") from None

    async def _authenticate_range(
        self, key: str, start: int, length: int, ad: bytes, piece: int, *, shared: bool = False
    ) -> None:
        """Check the tag of the sealed bytes at [start, start + length) over ranged reads,
        under each key they may be sealed with (`enc`, the writers' key, a write-only
        session: crypto.Cipher.stream_keys); DecryptError when none authenticates them."""
        head = await self.backend.get(key, start, min(length, crypto.SESSION_SIZE + crypto.NONCE_SIZE))
        tag = await self.backend.get(key, start + length - crypto.TAG_SIZE, crypto.TAG_SIZE)
        end = start + length - crypto.TAG_SIZE
        for secret, at in self.cipher.stream_keys(head, shared=shared):
            if at + crypto.NONCE_SIZE > end - start:
                continue
            check = self.cipher.stream_opener(head[at : at + crypto.NONCE_SIZE], tag, ad, key=secret)
            for offset in range(start + at + crypto.NONCE_SIZE, end, piece):
                chunk = await self.backend.get(key, offset, min(piece, end - offset))
                await self._run(check.update, chunk)  # the plaintext is dropped unread
            try:
                check.finalize()
                return
            except crypto.DecryptError:
                continue
        raise crypto.DecryptError("authentication failed")

    # -- writing blobs ------------------------------------------------------------------

    def has_blob(self, blob_id: bytes) -> bool:
        return blob_id in self.index or blob_id in self._pending

    def claim(self, blob_id: bytes) -> bool:
        """Reserve a blob for writing; False when it is stored or already on its way."""
        if blob_id in self.index or blob_id in self._pending:
            return False
        self._pending.add(blob_id)
        return True

    def seal(self, blob_type: int, blob_id: bytes, data: bytes | memoryview) -> SealedBlob:
        """Compress and encrypt (worker thread)."""
        return seal_blob(self.cipher, self.compression_level, blob_type, blob_id, data)

    async def add_sealed(self, blob: SealedBlob) -> None:
        if self._failure:
            raise self._failure
        self._pending.add(blob.id)
        self._packer.add(blob.type, blob.id, blob.head, blob.body, blob.raw_length)
        self.stats.blobs += 1
        self.stats.raw_bytes += blob.raw_length
        self.stats.stored_bytes += blob.length
        t = self.stats.by_type.setdefault(blob.type, [0, 0, 0])
        t[0] += 1
        t[1] += blob.raw_length
        t[2] += blob.length
        if self._packer.size >= self.config.pack_size:
            async with self._ship_lock:
                # Whoever waited here while another pack shipped finds a fresh packer.
                if self._packer.size >= self.config.pack_size:
                    await self._ship_pack()

    async def save_blob(self, blob_type: int, data: bytes) -> bytes:
        """Store one blob (deduplicated) and return its id. For trees and small metadata."""
        blob_id = self.cipher.typed_id(blob_type, data)
        if self.claim(blob_id):
            await self.add_sealed(await self._run(self.seal, blob_type, blob_id, data))
        return blob_id

    async def _ship_pack(self) -> None:
        # Take the upload slot before swapping packers: at most MAX_UPLOADS (LOCAL_UPLOADS)
        # packs upload while one more fills, so memory stays flat however slow the storage is.
        if not self._packer.entries:
            return
        await self._upload_slots.acquire()
        packer, self._packer = self._packer, Packer()
        task = asyncio.create_task(self._upload(packer))
        self._uploads.add(task)
        task.add_done_callback(self._upload_done)

    def _upload_done(self, task: asyncio.Task) -> None:
        self._uploads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failure = self._failure or task.exception()  # raised by the next add or flush

    async def _upload(self, packer: Packer) -> None:
        try:
            pack_id, parts, entries = await self._run(packer.finalize, self.cipher)
            try:
                await self.backend.put(pack_key(pack_id), parts)
            except ObjectExists:
                pass  # identical bytes already stored (content-named)
            # The pack's buffers are garbage now: free them before the index work below
            # (which may await writing an index file) rather than after it.
            del parts
            packer.parts = []
            self.index.add_pack(pack_id, packer.size, entries)
            self._unwritten.append((pack_id, packer.size, entries))
            self.stats.packs += 1
            for e in entries:
                self._pending.discard(e.id)
            if len(self._unwritten) >= PACKS_PER_INDEX:
                await self._write_index()
        except BaseException as exc:
            self._failure = self._failure or exc
            raise
        finally:
            self._upload_slots.release()

    async def _write_index(self) -> None:
        batch, self._unwritten = self._unwritten, []
        # At most INDEX_FILE_ENTRIES blobs a file (a pack's entries stay together), so every
        # index file stays far below MAX_INDEX_FILE however small the blobs.
        while batch:
            count, n = 0, 0
            while n < len(batch) and (n == 0 or count + len(batch[n][2]) <= INDEX_FILE_ENTRIES):
                count += len(batch[n][2])
                n += 1
            part, batch = batch[:n], batch[n:]
            key = await self._store_object(INDEX, AD_INDEX, encode_index(part))
            self.index.files.add(key)

    async def flush(self) -> None:
        """Make every blob added so far durable and indexed. Call before saving a snapshot."""
        await self._ship_pack()
        while self._uploads:
            await asyncio.gather(*list(self._uploads), return_exceptions=True)
        if self._failure:
            raise self._failure
        await self._write_index()

    async def abort(self) -> None:
        """Stop uploads after a failure; what is stored stays valid (and is adopted later)."""
        for t in list(self._uploads):
            t.cancel()
        await asyncio.gather(*list(self._uploads), return_exceptions=True)
        self._packer = Packer()
        self._pending.clear()

    # -- reading blobs ------------------------------------------------------------------

    async def load_blob(self, blob_type: int, blob_id: bytes, *, index: Index | None = None) -> bytes:
        """``index``: where to look the blob up instead of the repository's own (prune plans
        with an index of its own)."""
        loc = (self.index if index is None else index).lookup(blob_id)
        if loc is None:
            raise DamagedObject(f"blob {blob_id.hex()}", "not in any index")
        key = pack_key(loc.pack_id)
        get_sync = getattr(self.backend, "get_sync", None)
        if get_sync is not None:
            # A local read is cheap: read and open in one trip to a worker thread.
            return await self._run(self._load_blob_sync, get_sync, key, blob_type, blob_id, loc)
        try:
            if blob_type == BlobType.TREE:
                pack = await self.whole_pack(key)
                if loc.offset + loc.length > len(pack):
                    raise DamagedObject(key, f"shorter ({len(pack)} bytes) than the index says")
                sealed: bytes | memoryview = memoryview(pack)[loc.offset : loc.offset + loc.length]
            else:
                sealed = await self.backend.get(key, loc.offset, loc.length)
        except ObjectNotFound:
            raise DamagedObject(key, "pack is missing") from None
        except StorageError as exc:
            raise DamagedObject(key, str(exc)) from None
        return await self._run(open_blob, self.cipher, blob_type, blob_id, sealed, loc.raw_length, key)

    async def whole_pack(self, key: str) -> bytes:
        """A whole pack, read once and kept among the few most recently used (remote storage)."""
        fut = self._packs.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self.backend.get(key))
            self._packs[key] = fut
            while len(self._packs) > PACK_CACHE:
                self._packs.popitem(last=False)
        else:
            self._packs.move_to_end(key)
        try:
            return await asyncio.shield(fut)
        except BaseException:
            if self._packs.get(key) is fut and fut.done():
                del self._packs[key]
            raise

    def _load_blob_sync(self, get_sync: Callable, key: str, blob_type: int, blob_id: bytes, loc) -> bytes:
        try:
            sealed = get_sync(key, loc.offset, loc.length)
        except ObjectNotFound:
            raise DamagedObject(key, "pack is missing") from None
        except StorageError as exc:
            raise DamagedObject(key, str(exc)) from None
        return open_blob(self.cipher, blob_type, blob_id, sealed, loc.raw_length, key)

    async def load_tree(self, tree_id: bytes, *, index: Index | None = None) -> Tree:
        if self.write_only:
            raw = self.own.tree(tree_id) if self.own is not None else None
            if raw is None:
                raise crypto.WriteOnly("it may not read trees this host did not write")
            return self._decode_tree(tree_id, raw)
        raw = self.trees.get(tree_id)
        # Kept bytes are that tree's for good, but whether it is still stored is the index's
        # to say (a pack dropped by repair, pruned meanwhile): a tree not indexed is not loaded.
        if raw is None or tree_id not in (self.index if index is None else index):
            raw = await self.load_blob(BlobType.TREE, tree_id, index=index)
            self.trees.put(tree_id, raw)
        return self._decode_tree(tree_id, raw)

    @staticmethod
    def _decode_tree(tree_id: bytes, raw: bytes) -> Tree:
        try:
            return Tree.decode(raw)
        except TreeFormatError as exc:
            raise DamagedObject(f"tree {tree_id.hex()}", str(exc)) from None

    async def reference_tree(self, tree_id: bytes) -> Tree | None:
        """A previous snapshot's tree to compare with; None when it is lost or damaged (its
        pack gone, dropped by `repair index`): a writer then reads that folder again and
        stores its trees anew instead of failing."""
        try:
            return await self.load_tree(tree_id)
        except (DamagedObject, crypto.WriteOnly):
            return None  # write-only: a tree this host's cache lost is read again the same way

    async def reference_trees(self, tree_ids: Sequence[bytes]) -> list[Tree | None]:
        """Several reference trees (as reference_tree: None for one lost or damaged), from
        local storage in one trip to the worker pool: a walk prefetches every subfolder's
        tree of a folder, and on a re-run of many small folders the trips themselves (one
        thread hand-off each) cost more than reading and opening the trees."""
        get_sync = getattr(self.backend, "get_sync", None)
        if get_sync is None or self.write_only:
            return list(await asyncio.gather(*(self.reference_tree(t) for t in tree_ids)))
        # The tree cache and the index are the event loop's: looked up here, filled after.
        # One index lookup a tree (a large index answers from disk): where it is, or None.
        locs = [self.index.lookup(t) for t in tree_ids]
        kept = [self.trees.get(t) if loc is not None else None for t, loc in zip(tree_ids, locs)]
        wanted = [(t, loc) for t, loc, raw in zip(tree_ids, locs, kept) if raw is None and loc is not None]
        loaded = await self._run(self._open_trees_sync, get_sync, wanted) if wanted else {}
        out: list[Tree | None] = []
        for t, raw in zip(tree_ids, kept):
            if raw is None:
                raw = loaded.get(t)
                if raw is None:
                    out.append(None)
                    continue
                self.trees.put(t, raw)
            try:
                out.append(Tree.decode(raw))
            except TreeFormatError:
                out.append(None)
        return out

    def _open_trees_sync(self, get_sync: Callable, wanted: list) -> dict[bytes, bytes]:
        opened: dict[bytes, bytes] = {}
        for tree_id, loc in wanted:
            try:
                opened[tree_id] = self._load_blob_sync(get_sync, pack_key(loc.pack_id), BlobType.TREE, tree_id, loc)
            except DamagedObject:
                pass  # the caller reads that folder again
        return opened

    async def save_tree(self, tree: Tree) -> bytes:
        raw = tree.encode()
        tree_id = await self.save_blob(BlobType.TREE, raw)
        if self.own is not None:
            self.own.put_tree(tree_id, raw)
        return tree_id

    # -- snapshots ----------------------------------------------------------------------

    async def save_snapshot(self, snap: Snapshot) -> str:
        plain = snap.encode()
        key = await self._store_object(SNAPSHOTS, AD_SNAPSHOT, plain)
        snapshot_id = key.rsplit("/", 1)[-1]
        if self.own is not None:
            self.own.put_snapshot(snapshot_id, snap.source, snap.time, plain)
        return snapshot_id

    async def load_snapshot(self, snapshot_id: str, size: int | None = None) -> Snapshot:
        """``size``: the listed size, when the caller has a listing (saves a stat)."""
        key = f"{SNAPSHOTS}/{snapshot_id}"
        if self.write_only:
            raise crypto.WriteOnly("it may not read snapshots")
        raw = await self._open_object(key, AD_SNAPSHOT, MAX_SNAPSHOT_FILE, size)
        try:
            return Snapshot.decode(raw, snapshot_id)
        except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
            raise DamagedObject(key, f"malformed manifest: {exc}") from None

    async def snapshot_ids(self) -> list[str]:
        ids = []
        async for info in self.backend.list(f"{SNAPSHOTS}/"):
            self._listed_sizes[info.key] = info.size  # bounds the read that may follow, without a stat
            ids.append(info.key.rsplit("/", 1)[-1])
        return ids

    async def writer_snapshots(self) -> tuple[list[Snapshot], list[DamagedObject], set[str]]:
        """What a backup compares with: every snapshot (and the damaged ones) and the ids
        listed. A write-only key reads none: it gets the ones this host wrote and still
        keeps (core/repository/own_cache.py) among those listed, and every id listed."""
        if not self.write_only:
            snaps, damaged = await self.list_snapshots()
            return snaps, damaged, {s.id for s in snaps} | {d.key.rsplit("/", 1)[-1] for d in damaged}
        listed = set(await self.snapshot_ids())
        own: list[Snapshot] = []
        for sid, plain in self.own.snapshots() if self.own is not None else []:
            if sid in listed:
                try:
                    own.append(Snapshot.decode(plain, sid))
                except (ValueError, TypeError, KeyError, json.JSONDecodeError):
                    continue  # a cache row that does not parse: as if absent
        own.sort(key=lambda s: (s.datetime, s.source))
        return own, [], listed

    async def list_snapshots(self) -> tuple[list[Snapshot], list[DamagedObject]]:
        if self.write_only:
            raise crypto.WriteOnly("it may not list snapshots")
        snaps: list[Snapshot] = []
        damaged: list[DamagedObject] = []
        async for info in self.backend.list(f"{SNAPSHOTS}/"):
            sid = info.key.rsplit("/", 1)[-1]
            try:
                snaps.append(await self.load_snapshot(sid, info.size))
            except DamagedObject as exc:
                damaged.append(exc)
        snaps.sort(key=lambda s: (s.datetime, s.source))
        return snaps, damaged

    async def resolve_refs(self, refs: list[str], source: str | None = None) -> list[Snapshot]:
        """Snapshot references -> snapshots. Bare ``latest`` means every snapshot of the
        newest backup set that is not a safety snapshot (the copy a restore took of what it
        overwrote: after a restore, "latest" must still mean the newest backup, not that);
        anything else goes to ``find_snapshot``."""
        out: list[Snapshot] = []
        for ref in refs:
            if ref == "latest" and source is None:
                snaps, _ = await self.list_snapshots()
                snaps = [s for s in snaps if not is_safety(s)]
                if not snaps:
                    raise SnapshotNotFound(f"no snapshots in {self.backend.location}")
                newest = snaps[-1].backup_set
                out.extend(s for s in snaps if s.backup_set == newest)
            else:
                out.append(await self.find_snapshot(ref, source))
        return out

    async def find_snapshot(self, ref: str, source: str | None = None) -> Snapshot:
        """Resolve ``latest``, ``latest:SOURCE`` or a unique id prefix."""
        if ref == "latest" or ref.startswith("latest:"):
            want = ref.partition(":")[2] or source
            snaps, _ = await self.list_snapshots()
            # A database restore's safety snapshot carries the source "database": only a
            # reference that names a safety source may resolve to one.
            wants_safety = bool(want and want.startswith("safety/"))
            snaps = [s for s in snaps if (want is None or s.source == want) and (wants_safety or not is_safety(s))]
            if not snaps:
                raise SnapshotNotFound(f"no snapshots{' of ' + want if want else ''} in {self.backend.location}")
            return snaps[-1]
        return await self.load_snapshot(await self.resolve_id(ref))

    async def resolve_id(self, ref: str) -> str:
        """A unique snapshot id prefix -> the full id, without opening the manifest."""
        matches = [sid for sid in await self.snapshot_ids() if sid.startswith(ref.lower())]
        if not matches:
            raise SnapshotNotFound(f"no snapshot with id {ref!r} in {self.backend.location}")
        if len(matches) > 1:
            raise SnapshotNotFound(
                f"snapshot id prefix {ref!r} is ambiguous ({len(matches)} matches): give more characters"
            )
        return matches[0]

"""Worker processes that write batches of small files, so a restore of many small files
uses every core.

Why processes: writing a small file is a handful of system calls (create, write, owner,
mode, times, rename), each returning into Python. On threads, every return waits for the
one interpreter lock held by another thread (the walk, the other writers): on a tree of
system folders, 50,000 files made 400,000 lock hand-overs and the restore ran at half
restic's speed. A process has its own lock.

Each worker is this module run as ``python -m core.restore.writer_proc FD``: FD is its end
of a Unix socket pair, the only way in. It is sent, once, the key material (never argv or
the environment), the repository's local path, the target and the options; then batches:
the files (core/restore/writer.py FileJob) with the descriptors of their folders, passed
as SCM_RIGHTS. The restorer opens (and creates) those folders through its DirCache, as for
its own threads, so the walk's checks (no symlink followed, a swapped folder refused) stay
in one place; the worker only ever works relative to a descriptor it was given. It reads
the blobs from the repository's packs itself, writes the files with the same FileWriter
the threads use, and answers with what its Sink recorded (counts, proofs, warnings, partial
files) and the error that stopped the batch, if any, which the restorer replays and raises.

Local storage only (the worker reads packs by path); other storage keeps the threads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from core.childenv import child_env
from core.crypto import Cipher
from core.errors import RestoreRefused
from core.restore.attributes import RestoreOptions
from core.restore.fsops import Parts
from core.restore.writer import DirOf, FileJob, FileWriter, Sink, fetch_sync

# A worker that has not started within this long is not used (the restore keeps its threads).
READY_SECONDS = 60
# A batch's folder descriptors go in one message: the kernel passes at most 253 (SCM_MAX_FD).
MAX_FDS = 200
_HEAD = struct.Struct("!IQ")  # a message's head: descriptors sent with it, payload length


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return bytes(buf)


def _send(sock: socket.socket, obj: object, fds: Sequence[int] = ()) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    head = _HEAD.pack(len(fds), len(payload))
    if fds:
        socket.send_fds(sock, [head], list(fds))
    else:
        sock.sendall(head)
    sock.sendall(payload)


def _recv(sock: socket.socket) -> tuple[object, list[int]]:
    head, fds, _flags, _addr = socket.recv_fds(sock, _HEAD.size, MAX_FDS + 1)
    if not head:
        raise EOFError
    head += _recv_exact(sock, _HEAD.size - len(head))
    nfds, length = _HEAD.unpack(head)
    if len(fds) != nfds:
        for fd in fds:
            os.close(fd)
        raise EOFError
    return pickle.loads(_recv_exact(sock, length)), fds


class _Recorder:
    """A Sink that keeps what it was told, for the restorer to replay."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple]] = []

    def warn(self, *args) -> None:
        self.events.append(("warn", args))

    def placed(self, *args) -> None:
        self.events.append(("placed", args))

    def partial(self, *args) -> None:
        self.events.append(("partial", args))

    def cleared(self, *args) -> None:
        self.events.append(("cleared", args))

    def flagged(self, *args) -> None:
        self.events.append(("flagged", args))


def _portable(exc: BaseException) -> BaseException:
    """The error as the restorer can raise it: ours and OSError travel as they are."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RestoreRefused(f"a restore worker process failed: {type(exc).__name__}: {exc}")


def serve(sock: socket.socket) -> None:
    """The worker's loop: the set-up message, then batches until the socket closes."""
    from core.storage.local import LocalBackend

    setup, _ = _recv(sock)
    assert isinstance(setup, dict)
    recorder = _Recorder()
    writer = FileWriter(Cipher(*setup["cipher"]), Path(setup["target"]), setup["options"], recorder)
    get_sync = LocalBackend(setup["root"]).get_sync
    _send(sock, "ready")
    while True:
        try:
            batch, fds = _recv(sock)
        except EOFError:
            return
        recorder.events = []
        error: BaseException | None = None
        try:
            jobs: list[FileJob] = batch[0]  # type: ignore[index]
            parents: list[Parts] = batch[1]  # type: ignore[index]
            dirs = dict(zip(parents, fds))
            pieces = [p for j in jobs for p in j.pieces]
            writer.write_small(jobs, fetch_sync(get_sync, pieces), lambda parts: contextlib.nullcontext(dirs[parts]))
        except Exception as exc:
            error = _portable(exc)
        finally:
            for fd in fds:
                os.close(fd)
        _send(sock, (recorder.events, error))


class _Worker:
    def __init__(self, proc: subprocess.Popen, sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.broken = False

    def call(self, batch: object, fds: list[int]) -> tuple[list[tuple[str, tuple]], BaseException | None]:
        try:
            _send(self.sock, batch, fds)
            reply, _ = _recv(self.sock)
        except (EOFError, OSError) as exc:
            self.broken = True
            code = self.proc.poll()
            raise RestoreRefused(
                f"a restore worker process ended unexpectedly ({'exit code ' + str(code) if code is not None else exc})"
            ) from None
        return reply  # type: ignore[return-value]


class WriterPool:
    """Worker processes writing small-file batches; ``write`` blocks (call it on a thread)."""

    def __init__(self, workers: list[_Worker]) -> None:
        self._workers = workers
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for w in workers:
            self._idle.put(w)

    @classmethod
    def start(cls, n: int, cipher: Cipher, root: Path, target: Path, options: RestoreOptions) -> WriterPool:
        setup = {"cipher": cipher.handoff(), "root": str(root), "target": str(target), "options": options}
        # The worker imports what the restorer imported, from where it imported it.
        env = child_env({"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        workers = []
        try:
            for _ in range(n):
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                with theirs:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "core.restore.writer_proc", str(theirs.fileno())],
                        pass_fds=(theirs.fileno(),),
                        env=env,
                        stdin=subprocess.DEVNULL,
                    )
                workers.append(_Worker(proc, ours))
                _send(ours, setup)
            for w in workers:  # each has imported what it needs and holds the key
                w.sock.settimeout(READY_SECONDS)
                ready, _ = _recv(w.sock)
                if ready != "ready":
                    raise EOFError
                w.sock.settimeout(None)
        except BaseException:
            cls(workers).close()
            raise
        return cls(workers)

    def write(self, jobs: list[FileJob], dir_of: DirOf, sink: Sink) -> None:
        """Write ``jobs`` in one worker; what it recorded is replayed on ``sink``."""
        for group in _by_folders(jobs, MAX_FDS):
            parents = list(dict.fromkeys(j.parts[:-1] for j in group))
            worker = self._idle.get()
            try:
                if worker.broken:  # the restore is failing already: never wait for another
                    raise RestoreRefused("a restore worker process ended unexpectedly")
                with contextlib.ExitStack() as stack:
                    fds = [stack.enter_context(dir_of(p)) for p in parents]
                    events, error = worker.call((group, parents), fds)
            finally:
                self._idle.put(worker)  # broken or not: no other thread may wait for it forever
            for name, args in events:
                getattr(sink, name)(*args)
            if error is not None:
                raise error

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.sock.close()
        for w in self._workers:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


def _by_folders(jobs: list[FileJob], most: int) -> list[list[FileJob]]:
    """``jobs`` in runs whose files lie in at most ``most`` folders."""
    groups: list[list[FileJob]] = [[]]
    seen: set[Parts] = set()
    for job in jobs:
        parent = job.parts[:-1]
        if parent not in seen and len(seen) >= most:
            groups.append([])
            seen = set()
        seen.add(parent)
        groups[-1].append(job)
    return groups


def main(argv: list[str]) -> int:
    # Ctrl-C is the restorer's to handle: a worker finishes its batch and sees the socket close.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[0])) as sock:
        try:
            serve(sock)
        except (EOFError, OSError):
            # The restorer went away (it ended, failed or was killed): nothing to tell,
            # and no traceback on the terminal the two share.
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

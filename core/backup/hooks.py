"""A source's pre_command and post_command, run around its scan (`[[application.hooks]]`,
`[[configuration.hooks]]`): quiesce the application, or take a filesystem snapshot (LVM,
btrfs, ZFS) and mount it where the source's paths are, so the files match one instant.

Each command is split into words (no shell: a `;` or `$VAR` is an argument, not syntax),
runs in `/` with the allow-listed environment (core/childenv.py, never a passphrase or a
cloud key) plus ``AXISOR_SOURCE`` and ``AXISOR_HOOK`` (``pre`` or ``post``), with no input,
in its own process group, killed whole after its timeout. What it prints is kept (the last
4 KiB, escaped when shown) for the message.

A pre_command that fails fails the source (its snapshot is not taken: a scan of a volume
that was not frozen or mounted would be a lie) and the post_command still runs, as it does
after every scan whatever its outcome: what the pre_command set up is always undone. A
post_command that fails is a warning on the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from dataclasses import dataclass

from core.childenv import child_env
from core.text import shown

OUTPUT_KEPT = 4096


@dataclass(frozen=True, slots=True)
class HookRun:
    kind: str  # "pre" | "post"
    command: str
    ok: bool
    why: str  # "" when ok; else "exit 3", "timed out after 300 s", "cannot run: ..."
    output: str  # the last OUTPUT_KEPT bytes, decoded with replacement
    seconds: float

    def describe(self) -> str:
        """Said in the source's own result or snapshot, so without its name (it is there)."""
        tail = shown(self.output.strip()[-300:]) if self.output.strip() else "no output"
        return f"{self.kind}_command {shown(self.command)!r} failed ({self.why}): {tail}"


async def run_hook(kind: str, command: str, source: str, timeout: float) -> HookRun:
    started = time.monotonic()
    argv = shlex.split(command)  # validated when the config was read
    env = child_env({"AXISOR_SOURCE": source, "AXISOR_HOOK": kind})
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd="/",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return HookRun(kind, command, False, f"cannot run: {exc.strerror or exc}", "", time.monotonic() - started)
    kept = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while piece := await proc.stdout.read(65536):
            kept.extend(piece)
            del kept[:-OUTPUT_KEPT]

    reader = asyncio.ensure_future(drain())
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.gather(reader, proc.wait())), timeout)
        why = "" if proc.returncode == 0 else f"exit {proc.returncode}"
    except TimeoutError:
        why = f"timed out after {timeout:g} s"
        _kill_group(proc.pid)
        await proc.wait()
        reader.cancel()
    except asyncio.CancelledError:
        _kill_group(proc.pid)  # the run was cancelled: its hook must not outlive it
        raise
    output = bytes(kept).decode("utf-8", "replace")
    return HookRun(kind, command, not why, why, output, time.monotonic() - started)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


__all__ = ["HookRun", "run_hook"]

"""Child processes of the test process, read from /proc (shared by the PostgreSQL tests that
check a backup leaves no pg_dump behind)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def children(name: str) -> list[int]:
    """Our child processes named ``name`` that have not been reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm == name:
            found.append(int(stat.parent.name))
    return found


def logging_bin(bindir: Path, real: Path, log: Path, logged: tuple[str, ...], linked: tuple[str, ...] = ()) -> Path:
    """A pg_bin_dir whose ``logged`` programs append "<name> <args>" to ``log`` and then run the
    real ones in ``real``; ``linked`` are the real programs as they are."""
    bindir.mkdir()
    for name in logged:
        (bindir / name).write_text(f'#!/bin/sh\nprintf "{name} %s\\n" "$*" >> "{log}"\nexec "{real / name}" "$@"\n')
        (bindir / name).chmod(0o755)
    for name in linked:
        (bindir / name).symlink_to(real / name)
    return bindir


def running(names: tuple[str, ...], *needles: str) -> list[int]:
    """Processes (any parent) whose program is one of ``names`` and whose arguments include
    every one of ``needles`` (each a substring of some argument)."""
    found = []
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmd.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).decode(errors="replace") in names:
            if all(any(n.encode() in a for a in argv[1:]) for n in needles):
                found.append(int(cmd.parent.name))
    return found


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` and reap it; killed if it has not gone within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

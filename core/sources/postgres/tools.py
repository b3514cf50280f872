"""Finding pg_dump, pg_restore and psql, and checking their major version fits the server.

Order: ``database.pg_bin_dir``; else ``pg_config --bindir``; else the newest
``/usr/lib/postgresql/<major>/bin`` (Debian's layout; /usr/bin only holds pg_wrapper
links); else PATH. Every program is run with an argument list, never a shell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import ToolVersionMismatch

TOOLS = ("pg_dump", "pg_restore", "psql")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    path: Path
    version: str  # e.g. "15.18"
    major: int


@dataclass(frozen=True, slots=True)
class Tools:
    bin_dir: Path | None
    pg_dump: Tool
    pg_restore: Tool


def _candidate_dirs(pg_bin_dir: Path | None) -> list[Path | None]:
    if pg_bin_dir is not None:
        return [Path(pg_bin_dir)]  # configured: nowhere else
    dirs: list[Path | None] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
            )
            if out.returncode == 0 and out.stdout.strip():
                dirs.append(Path(out.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired):
            pass
    if _DEBIAN_ROOT.is_dir():
        majors = sorted((int(p.name) for p in _DEBIAN_ROOT.iterdir() if p.name.isdigit()), reverse=True)
        dirs.extend(_DEBIAN_ROOT / str(m) / "bin" for m in majors)
    dirs.append(None)  # PATH
    return dirs


def version_of(path: Path) -> tuple[str, int]:
    """(version, major) from ``path --version``; ToolVersionMismatch when it does not say."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolVersionMismatch(f"cannot run {path}: {exc}") from None
    m = _VERSION.search(out.stdout)
    if out.returncode != 0 or not m:
        raise ToolVersionMismatch(
            f"{path} --version did not report a PostgreSQL version: {(out.stdout + out.stderr).strip()[:200]!r}"
        )
    return f"{m.group(1)}.{m.group(2) or 0}", int(m.group(1))


def find_tool(name: str, pg_bin_dir: Path | None = None) -> Tool:
    path = locate_tool(name, pg_bin_dir)
    version, major = version_of(path)
    return Tool(name, path, version, major)


def locate_tool(name: str, pg_bin_dir: Path | None = None) -> Path:
    """Where ``name`` is, by the order above, without running it (prestart.py: no time for
    ``--version`` before pg_dump starts; the run checks it once loaded)."""
    tried: list[str] = []
    for d in _candidate_dirs(pg_bin_dir):
        if d is None:
            found = shutil.which(name)
            tried.append("PATH")
            if found:
                path = Path(found)
                break
        else:
            tried.append(str(d))
            p = d / name
            if p.is_file() and shutil.which(str(p)):
                path = p
                break
    else:
        raise ToolVersionMismatch(
            f"{name} not found (looked in {', '.join(tried)}); install the PostgreSQL client "
            f"programs or set database.pg_bin_dir"
        )
    return path


def find_tools(pg_bin_dir: Path | None = None) -> Tools:
    return Tools(pg_bin_dir, find_tool("pg_dump", pg_bin_dir), find_tool("pg_restore", pg_bin_dir))


def server_major(server_version_num: int) -> int:
    return server_version_num // 10000


def check_dump_tool(tool: Tool, server_version_num: int, server_version: str) -> None:
    """pg_dump refuses (or misreads) a newer server: say so before anything runs."""
    major = server_major(server_version_num)
    if tool.major < major:
        raise ToolVersionMismatch(
            f"{tool.path} is version {tool.version}, older than the server ({server_version}); "
            f"pg_dump must be at least major version {major}: install it and set database.pg_bin_dir"
        )


def check_restore_tool(tool: Tool, dump_major: int, dump_version: str) -> None:
    """pg_restore cannot read an archive written by a newer pg_dump ("unsupported version")."""
    if tool.major < dump_major:
        raise ToolVersionMismatch(
            f"{tool.path} is version {tool.version}, older than the pg_dump that wrote this snapshot "
            f"({dump_version}); pg_restore must be at least major version {dump_major}: install it "
            f"and set database.pg_bin_dir"
        )

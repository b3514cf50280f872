"""A finished backup job told to the user: its snapshots (text or --json on stdout), its
warnings and errors (stderr), and the command's exit code. Shared by the full command line
(app/cli_jobs.py) and the quick daemon client (app/backup_quick.py), so it imports only
what printing needs: the quick client must not pay for the rest of the program."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any

from core.errors import Exit, SourceError
from core.text import human_bytes, shown, shown_lines


def note(message: str) -> None:
    try:
        print(shown_lines(message), file=sys.stderr, flush=True)
    except OSError:
        pass  # the terminal is gone


def _bytes(n: float | None) -> str:
    return human_bytes(n, unknown="-")  # a table cell: "-" where a size is not known


def copy_text(r: Any) -> str:
    if r.error:
        return (
            f"NOT copied to {r.target}: {r.error}\n  {len(r.pending)} snapshots pending there; the next "
            f"backup or `axisor-backup copy --to {r.target}` catches up"
        )
    made = f" (created a replica at {r.target})" if r.created else ""
    return (
        f"copied {len(r.copied)} snapshots from {r.source} to {r.target}{made}: {r.packs_copied} packs, "
        f"{_bytes(r.bytes_copied)}"
        + (f"; {len(r.present)} were already there" if r.present else "")
        + (f"; indexed {r.packs_indexed} packs left by an interrupted copy" if r.packs_indexed else "")
        + (f"; {len(r.wal_copied)} WAL files" if r.wal_copied else "")
    )


def backup_outcome(job: dict[str, Any], out: Any) -> int:
    """Print a finished backup job (its JSON form, core/jobs/codec.py ``job_to_dict``) and
    return the command's exit code."""
    result = job.get("result") or {}
    if job["state"] == "cancelled":
        note(f"backup cancelled (job {job['id']}); the repository is unchanged up to the last finished snapshot")
        return Exit.INTERRUPTED
    if "snapshots" not in result:  # failed before any source: passphrase, lock, repository
        note(f"error: {job['error']}")
        return int(result.get("exit_code") or 1)
    snaps: list[dict[str, Any]] = result["snapshots"]
    failed: list[dict[str, Any]] = result.get("failed") or []
    copies: list[dict[str, Any]] = result.get("copies") or []
    data = {
        "backup_set": result["backup_set"],
        "snapshots": snaps,
        "failed": [{"source": f["source"], "error": f["error"]} for f in failed],
        "copies": copies,
        "job": job["id"],
        "warnings": list(result.get("warnings") or []),
    }

    def text() -> str:
        lines = [f"backup set {result['backup_set']}"]
        for s in snaps:
            m = s["summary"]
            lines.append(
                f"  {s['short_id']} {s['source']} ({s['type']}): {m['total_files']} files, "
                f"{human_bytes(m['total_bytes'])}; new {m['files_new']}, changed {m['files_changed']}, "
                f"unmodified {m['files_unmodified']}, removed {m['files_removed']}; added "
                f"{human_bytes(m['data_added'])} ({human_bytes(m['data_added_packed'])} stored)"
            )
            lines.extend(f"    warning: {w}" for w in s.get("warnings") or [])
        lines.extend(f"  {f['source']}: FAILED: {f['error']}" for f in failed)
        lines.extend(copy_text(SimpleNamespace(**c)) for c in copies)
        return "\n".join(lines)

    try:
        out.emit(data, text)
    except OSError:
        pass
    for w in result.get("warnings") or []:
        note(f"warning: {shown(w)}")
    for c in copies:
        for w in c.get("warnings") or []:
            note(f"warning: {shown(w)}")
        if c.get("error"):
            note(f"warning: not copied to location {c['target']} ({c['error']}); the next backup catches up")
    if result.get("record_error"):
        # The snapshots are committed, but the job's record (what `status` and `jobs` read) is not.
        note(f"error: the backup's snapshots are committed, but its job record is not: {result['record_error']}")
        return int(result.get("exit_code") or 1)
    if failed:
        for f in failed:
            note(f"error: {f['source']}: {f['error']}")
        return int(failed[0].get("code") or SourceError.exit_code)
    if result.get("partial"):
        note(f"backup finished with warnings: some files were not read completely (exit {Exit.WARNINGS:d})")
        return Exit.WARNINGS
    return Exit.OK


def detach_from_terminal() -> None:
    """The terminal hung up: the work goes on (here, or in the daemon); write nothing more to it."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)

"""`axisor-backup unlock [--all]`: remove stale locks (with --all, live ones too) and say which and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.cli_output import Output
from core.errors import Exit

if TYPE_CHECKING:
    from core.service import BackupService

EXIT_OK = Exit.OK


async def cmd_unlock(svc: BackupService, args, out: Output) -> int:
    from datetime import datetime, timezone

    from core.repository.lock import age_text

    removed = await svc.unlock(remove_all=args.all)
    now = datetime.now(timezone.utc)
    live = [r for r in removed if not r.stale]

    def one(r) -> dict:
        i = r.info
        return {
            "key": i.key,
            "description": i.describe(),
            "host": i.host,
            "pid": i.pid,
            "operation": i.operation,
            "exclusive": i.exclusive,
            "created": i.created.isoformat(),
            "age_seconds": round(i.age_seconds(now), 3),
            "stale": r.stale,
            "reason": r.reason or "live; removed because of --all",
        }

    def line(r) -> str:
        i = r.info
        kind = "exclusive" if i.exclusive else "shared"
        why = f"stale: {r.reason}" if r.stale else "LIVE, removed because of --all"
        return (
            f"removed {kind} lock {i.key} by {i.operation} (host {i.host}, pid {i.pid}, age "
            f"{age_text(i.age_seconds(now))}): {why}"
        )

    def text() -> str:
        if not removed:
            return "no stale locks" + ("" if args.all else " (live locks are kept; --all removes them too)")
        lines = [line(r) for r in removed]
        if live:
            lines.append(
                f"--all removed {len(live)} live lock{'s' if len(live) != 1 else ''}: if "
                f"{'those processes are' if len(live) != 1 else 'that process is'} still running, "
                "the repository is no longer protected from them"
            )
        return "\n".join(lines)

    out.emit([one(r) for r in removed], text)
    if live and out.json:
        Output.note(f"warning: --all removed {len(live)} live lock{'s' if len(live) != 1 else ''}")
    return EXIT_OK

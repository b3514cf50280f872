"""The text of a file restore's outcome: the plan of a --dry-run, or what was written, stripped,
warned, validated, and each partial file with its missing ranges, intact copies elsewhere and
the command that fills it in."""

from __future__ import annotations

import shlex

from core.text import human_bytes, shown


def _outcome_text(o, args) -> str:
    c = o.plan.counts()
    s = o.snapshot
    if o.stats is None:
        lines = [
            f"{s.short_id} {s.source} into {args.target} would: create {c['create']}, overwrite "
            f"{c['overwrite']}, fix metadata of {c['metadata']}, remove {c['remove']}; {c['unchanged']} "
            f"already right" + (f"; {c['conflict']} in the way" if c["conflict"] else "")
        ]
        for ch in o.plan.changes:
            if ch.action != "unchanged":
                lines.append(
                    f"  {ch.action:<9} {ch.kind:<7} {shown(str(ch.path))}" + (f"  ({ch.reason})" if ch.reason else "")
                )
        return "\n".join(lines)
    st = o.stats
    lines = [
        f"restored {s.short_id} {s.source}: {st.files} files written, "
        + (f"{st.partial_count} PARTIAL, " if st.partial_count else "")
        + f"{st.unchanged} already right, "
        f"{st.metadata} re-stamped, {st.removed} removed, {st.dirs} folders, {st.symlinks} symlinks, "
        f"{st.hardlinks} hard links, {human_bytes(st.bytes)} into {args.target}"
    ]
    if st.special:
        lines.append(f"{st.special} devices and FIFOs")
    if st.stripped_count:
        lines.append(
            f"{st.stripped_count} files had setuid/setgid/capabilities stripped (restore them with "
            "--preserve-privileges, as root):"
        )
        lines.extend(f"  {p}" for p in st.stripped_listed())  # shown already (fsops.display)
    if st.warning_count:
        lines.append(f"{st.warning_count} warnings:")
        lines.extend(f"  WARNING {w}" for w in st.warnings_listed())
    if st.partial_count:
        lines.extend(_partial_text(o, args))
    if st.partial_cleared:
        lines.append(
            f"removed {st.partial_cleared} .axisor-partial files left by an earlier partial restore "
            "(those files are whole now)"
        )
    if o.safety_snapshot:
        lines.append(
            f"safety snapshot {o.safety_snapshot.short_id} holds what was there before "
            f"(undo: axisor-backup rollback {o.restore_id})"
        )
    if o.validation:
        v = o.validation
        how = (
            f"{v.files - v.read_back} checked as written, {v.read_back} read back"
            if v.method == "written"
            else "read back"
        )
        lines.append(
            f"validated: {v.files} files ({human_bytes(v.bytes)}) and {v.symlinks} symlinks ({how}) "
            + ("match the snapshot" if v.ok else f"— {len(v.mismatches)} DIFFER:")
            + (f" ({v.partial} partial files not read back: listed above)" if v.partial else "")
        )
        lines.extend(f"  {m}" for m in v.mismatches)
    return "\n".join(lines)


def _ranges_text(ranges: list[tuple[int, int]], limit: int = 8) -> str:
    shown_ranges = [f"{off}-{off + length - 1}" for off, length in ranges[:limit]]
    more = len(ranges) - limit
    return ", ".join(shown_ranges) + (f", ... and {more} more" if more > 0 else "")


def _partial_text(o, args) -> list[str]:
    """The partial files of one outcome: name, missing ranges, damaged objects, where the
    restored part is, and where an intact copy is (with the command that fills them in)."""
    from core.restore.outcome import MAX_LISTED

    s = o.snapshot
    lines = [
        f"{len(o.partial)} files could NOT be restored in full (their missing bytes are holes in the "
        "copy kept as NAME.axisor-partial; an existing file at NAME was left as it was):"
    ]
    fills: dict[tuple[str, str], list] = {}
    for pf in o.partial[:MAX_LISTED]:
        lines.append(
            f"  PARTIAL {pf.path}: {human_bytes(pf.missing_bytes)} of {human_bytes(pf.size)} missing, "
            f"bytes {_ranges_text(pf.missing)}"
        )
        for obj, reason in pf.damaged[:4]:
            lines.append(f"    damaged: {shown(obj)}: {shown(reason)}")
        if len(pf.damaged) > 4:
            lines.append(f"    ... and {len(pf.damaged) - 4} more damaged objects")
        if pf.kept_as:
            lines.append(
                f"    restored part kept as {pf.kept_as}"
                + ("; the existing file there was left as it was" if pf.existing else "")
            )
        if pf.note:
            lines.append(f"    {pf.note}")
        for loc, sid in pf.intact:
            lines.append(
                f"    intact copy: location {loc}, snapshot {sid[:8]}"
                + ("" if sid == s.id else " (another snapshot, same content at this path)")
            )
        if not pf.intact:
            lines.append("    no intact copy found in another location")
    for pf in o.partial:
        for loc, sid in pf.intact[:1]:
            fills.setdefault((loc, sid), []).append(pf)
    more = len(o.partial) - MAX_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more (all in --json)")
    target = shlex.quote(str(args.target))
    for (loc, sid), files in fills.items():
        if sid == s.id:
            lines.append(
                f"fill them in ({len(files)} files): axisor-backup restore {sid[:8]} --from {shlex.quote(loc)} "
                f"--target {target}"
            )
        else:
            # A name that is not printable as it is cannot go into a command line here.
            plain = [display(pf.inner) for pf in files if shown(display(pf.inner)) == display(pf.inner)]
            if len(plain) < len(files):
                lines.append(
                    f"note: {len(files) - len(plain)} of them have names that need escaping: take their "
                    "paths from --json"
                )
            incl = " ".join(f"--include {shlex.quote(glob_escape(p))}" for p in plain[:20])
            lines.append(
                f"fill them in ({len(files)} files): axisor-backup restore {sid[:8]} --from {shlex.quote(loc)} "
                f"--target {target} {incl}" + (" ..." if len(plain) > 20 else "")
            )
    for n in o.notes:
        lines.append(f"note: {n}")
    return lines


def display(parts: tuple[bytes, ...]) -> str:
    from core.restore.walk import display as inner

    return inner(parts)


def glob_escape(path: str) -> str:
    """A path as an --include glob that matches exactly it (fnmatch's * ? [ bracketed)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)

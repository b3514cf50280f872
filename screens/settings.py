"""Settings: the effective configuration (secrets masked), its validation problems, and
edits of schedules and retention written back to config.toml (tomli-w) after validation."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import tomli_w
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Header, Input, Label, Static

from core.config import Config, ConfigError, parse_config
from screens.footer import KeyFooter
from screens.base import ConsoleScreen
from screens.confirm import ConfirmScreen
from screens.messages import DataLoaded

_SECRET_KEY = re.compile(r"(password|passphrase|secret|token|webhook_url|credentials)$", re.I)

# (dotted key, label, kind): what the Settings screen may change
EDITABLE = (
    ("schedule.enabled", "Scheduler on (true/false)", "bool"),
    ("schedule.cron_expression", "Default backup cron", "str"),
    ("schedule.timezone", "Schedule time zone", "str"),
    ("schedule.full_every_days", "Full backup every N days", "int"),
    ("retention.keep_last", "Keep last N", "int"),
    ("retention.keep_daily", "Keep daily", "int"),
    ("retention.keep_weekly", "Keep weekly", "int"),
    ("retention.keep_monthly", "Keep monthly", "int"),
    ("retention.min_keep", "Always keep newest N", "int"),
    ("application.retention_days", "Application retention days", "int"),
    ("configuration.retention_days", "Configuration retention days", "int"),
    ("database.retention_days", "Database retention days", "int"),
)


def masked(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if _SECRET_KEY.search(key) and not key.endswith(("_file", "_command")):
        return "••••••"
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        if parts.password:
            return value.replace(f":{parts.password}@", ":••••••@")
    return value


def effective_lines(obj: Any, prefix: str = "") -> list[str]:
    """The config as ``key = value`` lines, every secret masked."""
    out: list[str] = []
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                out.extend(effective_lines(value, key + "."))
            elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
                for i, item in enumerate(value):
                    out.extend(effective_lines(item, f"{key}[{i}]."))
            else:
                out.append(f"{key} = {_show(masked(key, value))}")
    return out


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, timedelta):
        return f"{value.total_seconds() / 86400:g} days"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def current_value(config: Config, dotted: str) -> Any:
    obj: Any = config
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def apply_edits(raw: dict, edits: dict[str, Any]) -> dict:
    """A copy of the raw TOML document with ``edits`` (dotted keys) set."""
    doc = tomllib.loads(tomli_w.dumps(raw))  # deep copy through the same types
    for dotted, value in edits.items():
        table = doc
        *parents, leaf = dotted.split(".")
        for p in parents:
            table = table.setdefault(p, {})
        table[leaf] = value
    return doc


def parse_edit(kind: str, text: str, label: str) -> Any:
    text = text.strip()
    if kind == "bool":
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{label}: type true or false")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{label}: not a whole number: {text!r}") from None
    return text


def write_config(path: Path, doc: dict) -> None:
    """Atomically replace ``path`` (same mode), keeping the previous file as ``path.bak``."""
    data = tomli_w.dumps(doc).encode()
    mode = os.stat(path).st_mode & 0o777 if path.exists() else 0o600
    if path.exists():
        shutil.copy2(path, path.with_suffix(path.suffix + ".bak"))
    tmp = path.with_name(f".{path.name}.axisor-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SettingsScreen(ConsoleScreen):
    MUTATING = frozenset({"save"})
    BINDINGS = [
        Binding(
            "ctrl+s",
            "save",
            "Save",
            id="settings.save",
            tooltip="Validate the edits and write them to config.toml (asks first)",
        ),
        Binding("f5,ctrl+r", "reload", "Reload", id="settings.reload", tooltip="Read config.toml again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings-body"):
            yield Static("", markup=False, id="settings-problems")
            yield Static("Edit (Tab moves, Ctrl+S validates and saves)", classes="section-title")
            for dotted, label, _ in EDITABLE:
                with Horizontal(classes="setting-row"):
                    yield Label(label, classes="setting-label")
                    yield Input(
                        id="edit-" + dotted.replace(".", "-"), classes="setting-input", disabled=self.console.read_only
                    )
            yield Static("Effective configuration (secrets masked)", classes="section-title")
            yield Static("", markup=False, id="settings-effective")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        self._load()

    def action_reload(self) -> None:
        self._load()

    @work(exclusive=True, group="settings", exit_on_error=False)
    async def _load(self) -> None:
        path = self.console.config_path
        problems: list[str] = []
        config = self.console.config
        if path is not None:
            try:
                config = await asyncio.to_thread(_load, path)
            except ConfigError as exc:
                problems = [f"{p.key}: {p.message}" for p in exc.problems] or [str(exc)]
        self.post_message(DataLoaded("settings", (config, problems)))

    def on_data_loaded(self, message: DataLoaded) -> None:
        config, problems = cast("tuple[Config, list[str]]", message.data)  # as _load posts it
        self.problems = problems
        if not problems:
            self.console.config = config
        self._draw(self.console.config)

    def _draw(self, config: Config) -> None:
        where = self.console.config_path or "(no file)"
        self.query_one("#settings-problems", Static).update(
            f"{where}: "
            + (
                "✔ valid"
                if not self.problems
                else f"✘ {len(self.problems)} problem(s):\n" + "\n".join(f"  {p}" for p in self.problems)
            )
        )
        for dotted, _, _ in EDITABLE:
            self.query_one("#edit-" + dotted.replace(".", "-"), Input).value = _show(current_value(config, dotted))
        self.query_one("#settings-effective", Static).update("\n".join(effective_lines(config)))

    def edits(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for dotted, label, kind in EDITABLE:
            text = self.query_one("#edit-" + dotted.replace(".", "-"), Input).value
            value = parse_edit(kind, text, label)
            if value != current_value(self.console.config, dotted):
                out[dotted] = value
        return out

    def action_save(self) -> None:
        path = self.console.config_path
        if path is None:
            self.notify("no config file to write to", severity="error")
            return
        try:
            edits = self.edits()
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        if not edits:
            self.notify("nothing changed")
            return
        raw = tomllib.loads(path.read_text())
        doc = apply_edits(raw, edits)
        try:
            parse_config(doc, base_dir=path.parent, path=path)
        except ConfigError as exc:
            self.problems = [f"{p.key}: {p.message}" for p in exc.problems] or [str(exc)]
            self.query_one("#settings-problems", Static).update(
                "✘ not saved, the edits do not validate:\n" + "\n".join(f"  {p}" for p in self.problems)
            )
            return
        listing = "\n".join(f"  {k} = {_show(v)}" for k, v in edits.items())
        self.app.push_screen(
            ConfirmScreen(
                f"Write {len(edits)} change(s) to {path}?",
                detail=listing + f"\nThe previous file is kept as {path.name}.bak; comments in the file are not kept.",
            ),
            lambda yes: self._write(path, doc) if yes else None,
        )

    def _write(self, path: Path, doc: dict) -> None:
        if self.console.read_only:
            return
        write_config(path, doc)
        self.console.submitted.append(("config-write", {"path": str(path)}))
        self.notify(f"saved {path}; the daemon picks it up on reload (SIGHUP)")
        self._load()


def _load(path: Path) -> Config:
    from core.config import load_config

    return load_config(path)

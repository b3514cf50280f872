"""Reading the declaration in model.py back: which keys a section has, what each one's
check, default and documentation are, and the pydantic-core validator of a section built
from them. validate.py uses it, docs.py writes the key table from it.

The validator is assembled here from pydantic-core's schema builders rather than by
pydantic's own model layer: the same engine and error locations, without importing and
running pydantic's schema generation (about half a second on a busy host) in every
command, wal-push included, which PostgreSQL runs once per WAL segment."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Union

from pydantic_core import CoreSchema, SchemaValidator, core_schema

from core.config.checks import Check, Deprecated, Doc, NotAKey, Tables, Wrap

_MISSING: Any = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class Key:
    """One config.toml key of a section."""

    name: str
    annotation: Any  # the field's type, Annotated stripped
    markers: tuple[Any, ...]
    default: Any  # dataclasses.MISSING when required
    # The dataclass of a nested table ([retention.database]) or of an array of tables'
    # entries ([[storage.remote_storage]]); None for a plain value.
    table: type | None
    array: bool

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def check(self) -> Check | Wrap | None:
        return next((m for m in self.markers if isinstance(m, Check | Wrap)), None)

    @property
    def doc(self) -> str:
        return next((m.text for m in self.markers if isinstance(m, Doc)), "")

    @property
    def deprecated(self) -> str | None:
        """The warning a config setting this key gets; None for a key in use."""
        return next((m.warning for m in self.markers if isinstance(m, Deprecated)), None)

    @property
    def unique_names(self) -> bool:
        return any(isinstance(m, Tables) and m.unique_names for m in self.markers)


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The type under any (nested) Annotated, and every marker met on the way."""
    markers: list[Any] = []
    while typing.get_origin(annotation) is typing.Annotated:
        markers.extend(annotation.__metadata__)
        annotation = annotation.__origin__
    return annotation, tuple(markers)


def _non_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not NoneType]
        if len(rest) == 1:
            return rest[0]
    return annotation


@functools.cache
def keys(cls: type) -> dict[str, Key]:
    """The keys of a section's dataclass, in declaration order (fields marked NotAKey left out)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    found: dict[str, Key] = {}
    for f in dataclasses.fields(cls):
        annotation, markers = _unwrap(hints[f.name])
        if any(isinstance(m, NotAKey) for m in markers):
            continue
        base = _non_none(annotation)
        table: type | None = None
        array = False
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            table = base
        elif typing.get_origin(base) is tuple:
            item, _ = _unwrap(typing.get_args(base)[0])
            if dataclasses.is_dataclass(item) and isinstance(item, type):
                table, array = item, True
        default: Any = f.default
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        found[f.name] = Key(f.name, annotation, markers, default, table, array)
    return found


def class_at(root: type, loc: tuple[str | int, ...]) -> type | None:
    """The dataclass of the table at ``loc`` (a pydantic error location below ``root``)."""
    cls: type | None = root
    parts = list(loc)
    while parts and cls is not None:
        part = parts.pop(0)
        key = keys(cls).get(str(part))
        if key is None or key.table is None:
            return None
        cls = key.table
        if key.array:
            if not parts or not isinstance(parts[0], int):
                return None
            parts.pop(0)
    return cls


def _item_check(annotation: Any) -> Check:
    """The check of an array's items: ``tuple[Annotated[X, check], ...]``."""
    _, markers = _unwrap(typing.get_args(_non_none(annotation))[0])
    found = next((m for m in markers if isinstance(m, Check)), None)
    if found is None:
        raise TypeError(f"array items of {annotation!r} declare no check")
    return found


def _value_schema(key: Key) -> CoreSchema:
    check = key.check
    if key.table is not None:
        table = _dataclass_schema(key.table)
        if not key.array:
            return table
        array = core_schema.tuple_schema([table], variadic_item_index=0)
        return check.schema(array) if isinstance(check, Wrap) else array
    if isinstance(check, Check):
        return check.schema()
    if isinstance(check, Wrap):
        items = core_schema.tuple_schema([_item_check(key.annotation).schema()], variadic_item_index=0)
        return check.schema(items)
    raise TypeError(f"{key.name} declares no check")


def _dataclass_schema(cls: type) -> CoreSchema:
    fields = []
    declared = keys(cls)
    for f in dataclasses.fields(cls):
        if f.name not in declared:
            continue  # NotAKey: filled by the loader, its default otherwise
        key = declared[f.name]
        schema = _value_schema(key)
        if f.default_factory is not dataclasses.MISSING:
            schema = core_schema.with_default_schema(schema, default_factory=f.default_factory)
        elif f.default is not dataclasses.MISSING:
            schema = core_schema.with_default_schema(schema, default=f.default)
        fields.append(core_schema.dataclass_field(f.name, schema, kw_only=True))
    # Unknown keys are errors, so a typo never silently turns a setting off.
    args = core_schema.dataclass_args_schema(cls.__name__, fields, extra_behavior="forbid")
    return core_schema.dataclass_schema(cls, args, [f.name for f in dataclasses.fields(cls)], frozen=True, slots=True)


@functools.cache
def validator(cls: type) -> SchemaValidator:
    """The pydantic-core validator reading a section's table into its dataclass."""
    return SchemaValidator(_dataclass_schema(cls))

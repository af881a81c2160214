"""Validation of mapped rows against the resolved schema, one vectorized check per field.

Checked (only on fields that hold values, so an unmapped part of a large schema costs nothing):

- ``required`` at every object level: a required field must be present when its object is (the root
  object is always present) -> INGEST-1555-400;
- strings: ``maxLength``, ``minLength``, ``enum``, ``pattern`` (RE2 syntax, searched anywhere in the
  value as JSON Schema does; a pattern RE2 cannot compile is not checked), ``format`` email and uri;
- integers and numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``enum``
  -> INGEST-1401-400.

Types and date/date-time formats need no check: conversion to the column type already enforced them.
``meta:enum`` lists suggested values only and is not enforced, as on the platform.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays
from headwater.engines.mapping.results import INVALID_VALUE, REQUIRED_MISSING, Describe, show

# (input rows, code, schema path, values, describe)
Sink = Callable[[pa.Array, str, str, pa.Array | None, Describe], None]
_FORMATS = {
    "email": (r"^[^@\s]+@[^@\s]+$", "is not a valid email address"),
    "uri": (r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$", "is not a valid URI"),
}


def validate(
    resolved: dict[str, Any], target: pa.Schema, columns: list[pa.Array], rows: pa.Array | None, sink: Sink
) -> None:
    """Check ``columns`` (the target's, possibly only some rows: ``rows`` are their input rows)."""
    children = [
        (f.name, _props(resolved).get(f.name) or {}, col) for f, col in zip(target, columns, strict=True)
    ]
    _object(resolved, children, None, rows, "", sink)


def _props(node: dict[str, Any]) -> dict[str, Any]:
    props = node.get("properties")
    return props if isinstance(props, dict) else {}


def _rows(rows: pa.Array | None, where: pa.Array) -> pa.Array:
    return where if rows is None else rows.take(where)


def _object(
    node: dict[str, Any],
    children: list[tuple[str, dict[str, Any], pa.Array]],
    present: pa.Array | None,
    rows: pa.Array | None,
    path: str,
    sink: Sink,
) -> None:
    required = node.get("required")
    wanted = set(required) if isinstance(required, list) else set()
    for name, schema, arr in children:
        where = f"{path}.{name}" if path else name
        if name in wanted:
            missing = pc.is_null(arr) if present is None else pc.and_(present, pc.is_null(arr))
            if arrays.any_true(missing):
                sink(_rows(rows, arrays.positions(missing)), REQUIRED_MISSING, where, None, _missing)
        if arr.null_count < len(arr) and isinstance(schema, dict):
            _field(schema, arr, rows, where, sink)


def _missing(_value: Any) -> str:
    return "required field is missing"


def _field(schema: dict[str, Any], arr: pa.Array, rows: pa.Array | None, path: str, sink: Sink) -> None:
    kind = arr.type
    if pa.types.is_struct(kind):
        props = _props(schema)
        children = [(f.name, props.get(f.name) or {}, pc.struct_field(arr, [i])) for i, f in enumerate(kind)]
        _object(schema, children, pc.is_valid(arr), rows, path, sink)
    elif pa.types.is_list(kind):
        items = schema.get("items")
        if isinstance(items, dict):
            _inside(items, arr, rows, path + "[*]", sink)
    elif pa.types.is_map(kind):
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            entries = arrays.map_entries(arr)
            flat = pc.struct_field(pc.list_flatten(entries), [1])
            _inside(values, entries, rows, path + ".*", sink, flat)
    elif pa.types.is_string(kind) and schema.get("type") == "string":
        _string(schema, arr, rows, path, sink)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        _number(schema, arr, rows, path, sink)


def _inside(
    schema: dict[str, Any],
    lists: pa.Array,
    rows: pa.Array | None,
    path: str,
    sink: Sink,
    flat: pa.Array | None = None,
) -> None:
    """Check the elements of a list (or the values of a map, given as ``flat``) against ``schema``."""
    values = pc.list_flatten(lists) if flat is None else flat
    if values.null_count < len(values):
        _field(schema, values, _element_rows(lists, rows), path, sink)


def _element_rows(lists: pa.Array, rows: pa.Array | None) -> pa.Array:
    parents = pc.list_parent_indices(lists).cast(pa.int64())
    return parents if rows is None else rows.take(parents)


def _fail(
    sink: Sink, arr: pa.Array, rows: pa.Array | None, path: str, bad: pa.Array, describe: Describe
) -> None:
    bad = arrays.truthy(bad)
    if arrays.any_true(bad):
        sink(_rows(rows, arrays.positions(bad)), INVALID_VALUE, path, arr.filter(bad), describe)


def _string(schema: dict[str, Any], arr: pa.Array, rows: pa.Array | None, path: str, sink: Sink) -> None:
    longest, shortest = schema.get("maxLength"), schema.get("minLength")
    if isinstance(longest, int) or isinstance(shortest, int):
        length = pc.utf8_length(arr)
        if isinstance(longest, int):
            _fail(
                sink,
                arr,
                rows,
                path,
                pc.greater(length, longest),
                _text(f"is longer than {longest} characters"),
            )
        if isinstance(shortest, int):
            _fail(
                sink,
                arr,
                rows,
                path,
                pc.less(length, shortest),
                _text(f"is shorter than {shortest} characters"),
            )
    _enum(schema, arr, rows, path, sink)
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and _usable(pattern):
        matched = pc.match_substring_regex(arr, pattern=pattern)
        _fail(sink, arr, rows, path, pc.invert(matched), _text(f"does not match the pattern {pattern!r}"))
    fmt = _FORMATS.get(str(schema.get("format")))
    if fmt is not None:
        _fail(sink, arr, rows, path, pc.invert(pc.match_substring_regex(arr, pattern=fmt[0])), _text(fmt[1]))


def _number(schema: dict[str, Any], arr: pa.Array, rows: pa.Array | None, path: str, sink: Sink) -> None:
    checks = (
        ("minimum", pc.less, "is less than the minimum"),
        ("maximum", pc.greater, "is greater than the maximum"),
        ("exclusiveMinimum", pc.less_equal, "is not greater than"),
        ("exclusiveMaximum", pc.greater_equal, "is not less than"),
    )
    for key, kernel, words in checks:
        bound = schema.get(key)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            _fail(sink, arr, rows, path, kernel(arr, bound), _text(f"{words} {bound}"))
    _enum(schema, arr, rows, path, sink)


def _enum(schema: dict[str, Any], arr: pa.Array, rows: pa.Array | None, path: str, sink: Sink) -> None:
    allowed = schema.get("enum")
    if not isinstance(allowed, list) or not allowed:
        return
    try:
        value_set = pa.array(allowed, arr.type)
    except (pa.ArrowException, ValueError, TypeError):
        return
    listed = ", ".join(str(v) for v in allowed[:12]) + (", ..." if len(allowed) > 12 else "")
    inside = pc.is_in(arr, value_set=value_set)
    _fail(
        sink, arr, rows, path, pc.and_(pc.is_valid(arr), pc.invert(inside)), _text(f"is not one of: {listed}")
    )


def _text(words: str) -> Describe:
    return lambda value: f"{show(value)} {words}"


@functools.lru_cache(maxsize=512)
def _usable(pattern: str) -> bool:
    """Whether RE2 compiles this pattern (JSON Schema patterns are ECMA 262; most are RE2 too)."""
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern=pattern)
    except (pa.ArrowException, ValueError):
        return False
    return True

"""Values whose type is not their destination field's: type violations, never converted to text.

:func:`check` walks one mapped array against the destination's JSON Schema and reports, with the exact
path (``person.name.firstName``), every value a text field must not take:

- an object or an array for a text field (only an open object holds JSON text), always;
- a number or a boolean for a text field when ``strict``: without a mapping set (XDM messages, records
  copied as they are) a value is validated as AEP's streaming validation does, by JSON type
  (``expected type: String, found: Integer``). A mapping set's ATTRIBUTE keeps converting numbers and
  booleans to text, as Data Prep's implicit conversions do.

Fields holding dates (``format`` date or date-time) and numeric or boolean fields are left to
:mod:`.coerce`, which fails what it cannot convert. Reported values are not removed: the caller fails
their rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays
from headwater.engines.mapping.coerce import jsonable
from headwater.engines.mapping.results import Describe
from headwater.engines.xdm_arrow import is_json_text, json_type

# (destination path, positions in the array checked, the offending values, describe)
Violation = Callable[[str, pa.Array, pa.Array, Describe], None]


def found_type(kind: pa.DataType) -> str:
    """The JSON type name of an Arrow type, as the reference's messages spell it."""
    if pa.types.is_boolean(kind):
        return "Boolean"
    if pa.types.is_integer(kind):
        return "Integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "Number"
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return "Object"
    if arrays.is_list(kind):
        return "Array"
    if arrays.is_text(kind):
        return "String"
    return str(kind)


def check(arr: pa.Array, schema: dict[str, Any], path: str, strict: bool, violation: Violation) -> None:
    """Report the values of ``arr`` that the field ``schema`` (at ``path``) must not take."""
    _check(arrays.normalize(arr), schema if isinstance(schema, dict) else {}, path, strict, violation, None)


def _check(
    arr: pa.Array,
    schema: dict[str, Any],
    path: str,
    strict: bool,
    violation: Violation,
    rows: pa.Array | None,
) -> None:
    kind = arr.type
    if pa.types.is_null(kind) or len(arr) == arr.null_count:
        return
    expected = json_type(schema)
    if expected == "string" and not _is_date(schema):
        nested = pa.types.is_struct(kind) or pa.types.is_map(kind) or arrays.is_list(kind)
        scalar = arrays.is_numeric(kind) or pa.types.is_boolean(kind)
        if nested or (strict and scalar):
            _report(arr, path, violation, rows)
        return
    if expected == "object" and pa.types.is_struct(kind) and not is_json_text(schema):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else None
        extra = schema.get("additionalProperties")
        children = arr.flatten()  # the parent's nulls applied to each field
        for index in range(kind.num_fields):
            name = kind.field(index).name
            child = props.get(name) if props else (extra if isinstance(extra, dict) else None)
            if isinstance(child, dict):
                _check(arrays.normalize(children[index]), child, f"{path}.{name}", strict, violation, rows)
        return
    if expected == "array" and arrays.is_list(kind) and isinstance(schema.get("items"), dict):
        flat = arrays.normalize(pc.list_flatten(arr))
        parents = pc.list_parent_indices(arr).cast(pa.int64())
        below = parents if rows is None else rows.take(parents)
        _check(flat, schema["items"], path, strict, violation, below)


def _is_date(schema: dict[str, Any]) -> bool:
    return schema.get("format") in ("date", "date-time")


def _report(arr: pa.Array, path: str, violation: Violation, rows: pa.Array | None) -> None:
    where = arrays.positions(pc.is_valid(arr))
    found = found_type(arr.type)

    def describe(value: Any) -> str:
        text = orjson.dumps(jsonable(value), default=str).decode()
        text = text if len(text) <= 80 else text[:77] + "..."
        return f"expected type: String, found: {found} ({text} is not converted to text)"

    violation(path, where if rows is None else rows.take(where), arr.take(where), describe)

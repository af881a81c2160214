"""The Arrow shape of a fully resolved XDM schema: the columns of a dataset and of mapped batches.

:func:`arrow_schema` turns what ``SchemaRegistry.resolve`` returns into a ``pa.Schema``, deterministically
(same input, same schema; field order is property order):

    XDM / JSON Schema                                      Arrow
    object with properties                                 struct<...> (property order)
    object with only additionalProperties (a map)          map<string, V>
    object with neither (an open object, e.g. ``_repo``)   string holding the object as JSON text
    array with items                                       list<item: T>   (no items: list<string>)
    string                                                 string
    string, format date                                    date32
    string, format date-time                               timestamp[us, tz=UTC]
    integer (any meta:xdmType: long, int, short, byte)     int64
    number                                                 float64
    boolean                                                bool

Every field is nullable. XDM ``required`` is enforced by validating mapped rows, not by Arrow
nullability, so that a row failing validation can still be represented (and kept with its reason).
Integers are all int64: XDM's narrower ``int``/``short``/``byte`` keep their bounds as ``minimum`` /
``maximum``, which validation checks, and one integer width keeps schema evolution of a table simple.
An open object has no fields to become columns, and Parquet has no empty struct, so it is JSON text.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
_SCALARS: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}
_STRING_FORMATS: dict[str, pa.DataType] = {"date": pa.date32(), "date-time": UTC_TIMESTAMP}


def arrow_schema(resolved: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of a resolved XDM schema (its top-level properties become the columns)."""
    return pa.schema(_fields(resolved))


def arrow_type(node: dict[str, Any]) -> pa.DataType:
    """The Arrow type of one field's JSON Schema (see the module table)."""
    kind = _type_name(node)
    if kind == "object":
        return _object_type(node)
    if kind == "array":
        items = node.get("items")
        return pa.list_(arrow_type(items) if isinstance(items, dict) else pa.string())
    if kind == "string":
        fmt = node.get("format")
        return _STRING_FORMATS.get(fmt, pa.string()) if isinstance(fmt, str) else pa.string()
    return _SCALARS.get(kind, pa.string())


def is_json_text(node: dict[str, Any]) -> bool:
    """True for an open object (no properties, no additionalProperties): stored as JSON text."""
    return _type_name(node) == "object" and not _properties(node) and not _map_values(node)


def json_type(node: dict[str, Any]) -> str:
    """The JSON type of one field's JSON Schema (``["string", "null"]`` is ``string``; no type is
    ``object`` when the node has properties, else ``string``)."""
    return _type_name(node)


def field_paths(schema: pa.Schema) -> list[str]:
    """Dotted paths of the leaves of an Arrow schema (``person.name.firstName``).

    A list of structs contributes its items' leaves as ``name[*].leaf``; lists of scalars and maps are
    leaves themselves, as in ``headwater.services.schemas.leaf_paths``.
    """
    out: list[str] = []
    for field in schema:
        _leaf_paths(field.type, field.name, out)
    return out


def _leaf_paths(kind: pa.DataType, path: str, out: list[str]) -> None:
    if pa.types.is_struct(kind):
        for child in kind:
            _leaf_paths(child.type, f"{path}.{child.name}", out)
    elif pa.types.is_list(kind) and pa.types.is_struct(kind.value_type):
        _leaf_paths(kind.value_type, path + "[*]", out)
    else:
        out.append(path)


def _fields(node: dict[str, Any]) -> list[pa.Field]:
    return [pa.field(name, arrow_type(child), nullable=True) for name, child in _properties(node).items()]


def _object_type(node: dict[str, Any]) -> pa.DataType:
    fields = _fields(node)
    if fields:
        return pa.struct(fields)
    values = _map_values(node)
    if values is not None:
        return pa.map_(pa.string(), arrow_type(values))
    return pa.string()


def _properties(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    props = node.get("properties")
    if not isinstance(props, dict):
        return {}
    return {name: child for name, child in props.items() if isinstance(child, dict)}


def _map_values(node: dict[str, Any]) -> dict[str, Any] | None:
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _type_name(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first non-null type
        kind = next((k for k in kind if k != "null"), None)
    if kind is None and (_properties(node) or _map_values(node) is not None):
        return "object"
    return kind if isinstance(kind, str) else "string"


def type_name(kind: pa.DataType) -> str:
    """An Arrow type in the words of XDM (the reverse of the module table, for people and for the explore
    API's ``columns[].type``): string, integer, number, boolean, date, date-time, object, array, map."""
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind):
        return "date-time"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_map(kind):
        return "map"
    if pa.types.is_struct(kind):
        return "object"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "array"
    return "string"

"""Checks on the fields a tenant defines in its field groups.

Every field is a JSON Schema with a ``type`` among the XDM scalar and container types; objects have
``properties`` (or only ``additionalProperties``: a map), arrays have ``items``. Field names are letters,
digits, ``_`` and ``-`` so that dotted paths stay unambiguous. Each field gets a ``meta:xdmType`` if it
has none, the way the Schema Registry annotates fields.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

from headwater.services.validation import join_path

TYPES = ("string", "number", "integer", "boolean", "object", "array")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}$")
MAX_DEPTH = 24
_INT32 = 2**31


def check_properties(props: Any, where: str, errors: list[dict[str, str]], depth: int = 0) -> dict[str, Any]:
    """Validate a ``properties`` map; return it with ``meta:xdmType`` filled in."""
    if not isinstance(props, dict):
        errors.append({"path": where, "message": "must be an object mapping field names to field schemas"})
        return {}
    out: dict[str, Any] = {}
    for name, node in props.items():
        path = f"{where}.{name}"
        if not NAME.match(name):
            errors.append(
                {
                    "path": path,
                    "message": "is not a valid field name: use letters, digits, _ and - "
                    "(at most 128, no dots or spaces)",
                }
            )
            continue
        out[name] = check_field(node, path, errors, depth + 1)
    return out


def check_field(node: Any, path: str, errors: list[dict[str, str]], depth: int) -> dict[str, Any]:
    if not isinstance(node, dict):
        errors.append({"path": path, "message": "must be an object: a JSON Schema with a type"})
        return {}
    if depth > MAX_DEPTH:
        errors.append({"path": path, "message": f"nests deeper than {MAX_DEPTH} levels"})
        return {}
    if "$ref" in node:
        errors.append(
            {
                "path": f"{path}.$ref",
                "message": "references to data types are not supported; define the fields inline",
            }
        )
        return {}
    kind = node.get("type")
    if kind not in TYPES:
        errors.append({"path": f"{path}.type", "message": "must be one of " + ", ".join(TYPES)})
        return dict(node)
    field = dict(node)
    if kind == "object":
        _check_object(node, field, path, errors, depth)
    elif kind == "array":
        items = node.get("items")
        if not isinstance(items, dict):
            errors.append(
                {"path": f"{path}.items", "message": "is required for an array: the schema of its items"}
            )
        else:
            field["items"] = check_field(items, f"{path}.items", errors, depth + 1)
    field.setdefault("meta:xdmType", xdm_type(field))
    return field


def _check_object(
    node: dict[str, Any], field: dict[str, Any], path: str, errors: list[dict[str, str]], depth: int
) -> None:
    props, extra = node.get("properties"), node.get("additionalProperties")
    if props is None and isinstance(extra, dict):
        field["additionalProperties"] = check_field(extra, f"{path}.additionalProperties", errors, depth + 1)
        return
    if props is None:
        errors.append(
            {
                "path": f"{path}.properties",
                "message": "is required for an object (or additionalProperties for a map)",
            }
        )
        return
    field["properties"] = check_properties(props, f"{path}.properties", errors, depth)
    required = node.get("required")
    if required is None:
        return
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        errors.append({"path": f"{path}.required", "message": "must be a list of field names"})
        return
    for name in required:
        if not isinstance(props, dict) or name not in props:
            errors.append(
                {"path": f"{path}.required", "message": f"names {name!r}, which is not a field here"}
            )


def xdm_type(field: dict[str, Any]) -> str:
    kind = field.get("type")
    if kind == "string":
        return {"date-time": "date-time", "date": "date"}.get(str(field.get("format")), "string")
    if kind == "integer":
        low, high = field.get("minimum"), field.get("maximum")
        fits = isinstance(low, int) and isinstance(high, int) and low >= -_INT32 and high < _INT32
        return "int" if fits else "long"
    if kind == "object" and "properties" not in field and isinstance(field.get("additionalProperties"), dict):
        return "map"
    return str(kind)


def check_json_schema(schema: dict[str, Any], where: str, errors: list[dict[str, str]]) -> None:
    """Refuse keyword values JSON Schema itself rejects (``"minimum": "x"``), naming the keyword."""
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        errors.append(
            {
                "path": join_path(where, exc.absolute_path),
                "message": f"is not valid JSON Schema: {exc.message[:200]}",
            }
        )

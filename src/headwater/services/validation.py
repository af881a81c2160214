"""JSON Schema validation with errors that name the field and never echo secret values.

``coerce`` first turns numbers sent as strings into numbers where the schema asks for one (the
reference documents send ``"interval": "30"``); ``validate`` then reports every violation as
``{"path": "scheduleParams.interval", "message": "must be >= 15"}``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from headwater.errors import ValidationFailed

_INT = re.compile(r"^-?\d+$")
_NUM = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


@functools.lru_cache(maxsize=512)
def _validator(schema_json: bytes) -> Draft7Validator:
    return Draft7Validator(orjson.loads(schema_json))


def validator_for(schema: dict[str, Any]) -> Draft7Validator:
    return _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def coerce(value: Any, schema: dict[str, Any] | None) -> Any:
    """Return ``value`` with numeric strings converted where ``schema`` wants integer or number."""
    if not isinstance(schema, dict):
        return value
    types = schema.get("type")
    wanted = set(types) if isinstance(types, list) else {types}
    if isinstance(value, str) and "string" not in wanted:
        if "integer" in wanted and _INT.match(value):
            return int(value)
        if "number" in wanted and _NUM.match(value):
            number = float(value)
            return int(number) if number.is_integer() and "." not in value else number
        if "boolean" in wanted and value in ("true", "false"):
            return value == "true"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: coerce(v, props.get(k, extra if isinstance(extra, dict) else None)) for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(v, schema["items"]) for v in value]
    return value


def check(instance: Any, schema: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Every violation of ``schema`` by ``instance``, as field-naming messages (no values echoed)."""
    errors = []
    for error in sorted(validator_for(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        errors.extend(_describe(error, prefix))
    return errors


def validate(instance: Any, schema: dict[str, Any], prefix: str = "", code: str | None = None) -> None:
    errors = check(instance, schema, prefix)
    if errors:
        raise ValidationFailed(errors, code=code)


def join_path(prefix: str, parts: Any) -> str:
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def _describe(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    path = join_path(prefix, error.absolute_path)
    kind, expected = error.validator, error.validator_value
    if kind in ("if", "allOf", "anyOf", "oneOf") and error.context:
        best = sorted(error.context, key=lambda e: (len(e.absolute_path), str(e.validator)))
        out: list[dict[str, str]] = []
        for sub in best:
            out.extend(_describe(sub, prefix))
        return _unique(out)
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return [{"path": join_path(path, [missing]), "message": "is required"}]
    message = _message(str(kind), expected)
    if kind == "not" and isinstance(expected, dict):
        names = [r["required"][0] for r in expected.get("anyOf", []) if r.get("required")]
        if names:
            return [
                {"path": join_path(path, [n]), "message": "is not allowed here"}
                for n in names
                if isinstance(error.instance, dict) and n in error.instance
            ]
    return [{"path": path or "(body)", "message": message}]


_MESSAGES: dict[str, Any] = {
    "type": lambda v: "must be of type " + (v if isinstance(v, str) else " or ".join(map(str, v))),
    "enum": lambda v: "must be one of " + ", ".join(map(str, v)),
    "const": lambda v: f"must be {v!r}",
    "minimum": lambda v: f"must be >= {v}",
    "maximum": lambda v: f"must be <= {v}",
    "exclusiveMinimum": lambda v: f"must be > {v}",
    "exclusiveMaximum": lambda v: f"must be < {v}",
    "minLength": lambda v: f"must have at least {v} characters",
    "maxLength": lambda v: f"must have at most {v} characters",
    "pattern": lambda v: f"must match the pattern {v}",
    "format": lambda v: f"must be a valid {v}",
    "minItems": lambda v: f"must have at least {v} items",
    "maxItems": lambda v: f"must have at most {v} items",
    "additionalProperties": lambda v: "has properties that are not allowed here",
    "not": lambda v: "is not allowed in this combination",
}


def _message(kind: str, expected: Any) -> str:
    render = _MESSAGES.get(kind)
    try:
        return str(render(expected)) if render else f"is invalid ({kind})"
    except TypeError:
        return f"is invalid ({kind})"


def _unique(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        key = (e["path"], e["message"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out

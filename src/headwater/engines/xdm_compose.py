"""Composition of XDM schemas into one plain JSON Schema, and paths inside it.

A class or field group (the "xed" shape) contributes the properties of the ``#/definitions/...`` its
``allOf`` points at. :class:`Composer` deep-merges those contributions: objects merge field by field and
union their ``required`` lists; a leaf defined twice must have the same type, otherwise the conflict is
recorded with the path that clashes.

Paths are dotted (``person.name.firstName``); the items of an array are ``[*]``
(``productListItems[*].SKU``). :func:`field_at` also accepts ``[n]``, ``[]`` and steps into an array's
items implicitly (``productListItems.SKU``), the way mapping destinations are written.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

ITEMS = "[*]"
_INDEX = re.compile(r"\[(\*|\d*)\]$")


def part_sources(part: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (where, object schema) pieces a class or field group contributes, in ``allOf`` order.

    ``where`` locates the piece in the part (``definitions.loyalty``). A part without ``allOf``
    contributes every definition; top-level ``properties`` are contributed too.
    """
    definitions = part.get("definitions")
    definitions = definitions if isinstance(definitions, dict) else {}
    names: list[str] = []
    all_of = part.get("allOf")
    if isinstance(all_of, list):
        for entry in all_of:
            ref = entry.get("$ref") if isinstance(entry, dict) else None
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                names.append(ref[len("#/definitions/") :])
    else:
        names = list(definitions)
    out = [
        (f"definitions.{n}", definitions[n])
        for n in dict.fromkeys(names)
        if isinstance(definitions.get(n), dict)
    ]
    if isinstance(part.get("properties"), dict):
        out.append(("", part))
    return out


class Composer:
    """Merge classes and field groups into one object schema (``root``); conflicts go to ``errors``."""

    def __init__(self) -> None:
        self.root: dict[str, Any] = {"type": "object", "properties": {}}
        self.errors: list[dict[str, str]] = []
        self._origin: dict[str, str] = {}

    def add(self, part: dict[str, Any], label: str) -> None:
        for _, source in part_sources(part):
            self._merge_object(self.root, source, "", label)

    def _merge_object(self, target: dict[str, Any], source: dict[str, Any], path: str, label: str) -> None:
        incoming = source.get("properties")
        incoming = incoming if isinstance(incoming, dict) else {}
        props = target.setdefault("properties", {}) if incoming else {}
        for name, node in incoming.items():
            if not isinstance(node, dict):
                continue
            where = join(path, name)
            if name not in props:
                props[name] = copy.deepcopy(node)
                self._origin[where] = label
            else:
                self._merge_node(props[name], node, where, label)
        required = source.get("required")
        if isinstance(required, list) and required:
            merged = list(target.get("required") or [])
            merged += [r for r in required if isinstance(r, str) and r not in merged]
            target["required"] = merged

    def _merge_node(self, existing: dict[str, Any], node: dict[str, Any], path: str, label: str) -> None:
        old_type, new_type = existing.get("type"), node.get("type")
        if old_type != new_type:
            self.errors.append(
                {
                    "path": path,
                    "message": f"is defined as {describe_type(existing)} by {self.origin(path)} and as "
                    f"{describe_type(node)} by {label}; a field can have only one type",
                }
            )
        elif old_type == "object":
            self._merge_object(existing, node, path, label)
        elif (
            old_type == "array"
            and isinstance(existing.get("items"), dict)
            and isinstance(node.get("items"), dict)
        ):
            self._merge_node(existing["items"], node["items"], path + ITEMS, label)

    def origin(self, path: str) -> str:
        while path:
            if path in self._origin:
                return self._origin[path]
            path = parent_path(path)
        return "another part"


def describe_type(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"array of {describe_type(node['items'])}"
    return str(kind) if kind is not None else "untyped"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def parent_path(path: str) -> str:
    if path.endswith(ITEMS):
        return path[: -len(ITEMS)]
    return path.rsplit(".", 1)[0] if "." in path else ""


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every field below ``schema`` as (path, node, required-in-its-parent), parents before children."""
    props = schema.get("properties")
    raw = schema.get("required")
    required: list[Any] = raw if isinstance(raw, list) else []
    for name, node in (props if isinstance(props, dict) else {}).items():
        if not isinstance(node, dict):
            continue
        where = join(path, name)
        yield where, node, name in required
        yield from _walk_children(node, where)


def _walk_children(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    if isinstance(node.get("properties"), dict):
        yield from walk(node, path)
    items = node.get("items")
    if node.get("type") == "array" and isinstance(items, dict):
        yield path + ITEMS, items, False
        yield from _walk_children(items, path + ITEMS)


def leaf_paths(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted path -> JSON Schema of every leaf field (not objects with properties, not array wrappers).

    An array of scalars is a leaf (``loyalty.loyaltyID``); an array of objects contributes its items'
    leaves (``productListItems[*].SKU``); a map (object with only ``additionalProperties``) is a leaf.
    """
    leaves: dict[str, dict[str, Any]] = {}
    for path, node, _ in walk(resolved):
        if path.endswith(ITEMS):
            continue
        if isinstance(node.get("properties"), dict) and node["properties"]:
            continue
        items = node.get("items")
        if (
            node.get("type") == "array"
            and isinstance(items, dict)
            and isinstance(items.get("properties"), dict)
        ):
            continue
        leaves[path] = node
    return leaves


def split_path(dotted: str) -> list[str] | None:
    """``a.b[0].c`` -> ``["a", "b", "[0]", "c"]``; ``\\.`` escapes a dot in a name. None if malformed."""
    parts: list[str] = []
    for raw in re.split(r"(?<!\\)\.", dotted):
        name = raw.replace("\\.", ".")
        brackets: list[str] = []
        while (match := _INDEX.search(name)) is not None:
            brackets.insert(0, match.group(0))
            name = name[: match.start()]
        if not name and not (brackets and parts):
            return None
        if name:
            parts.append(name)
        parts.extend(brackets)
    return parts or None


def field_at(resolved: dict[str, Any], dotted_path: str) -> dict[str, Any] | None:
    """The JSON Schema of the field at ``dotted_path`` (a leaf or an object), or None if absent."""
    parts = split_path(dotted_path) if isinstance(dotted_path, str) else None
    return field_at_parts(resolved, parts) if parts else None


def field_at_parts(resolved: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    node: Any = resolved
    for part in parts:
        if not isinstance(node, dict):
            return None
        if part.startswith("["):
            node = node.get("items") if node.get("type") == "array" else None
            continue
        while node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = node["items"]
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if isinstance(props, dict) and isinstance(props.get(part), dict):
            node = props[part]
        elif isinstance(extra, dict):
            node = extra
        else:
            return None
    return node if isinstance(node, dict) else None


def pointer_parts(pointer: str) -> list[str] | None:
    """``/personalEmail/address`` -> ``["personalEmail", "address"]`` (RFC 6901 unescaping)."""
    if not pointer.startswith("/") or pointer == "/":
        return None
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def require_path(schema: dict[str, Any], parts: list[str]) -> None:
    """Mark the field at ``parts`` and every object above it required (in place)."""
    node = schema
    for name in parts:
        props = node.get("properties")
        if not isinstance(props, dict) or not isinstance(props.get(name), dict):
            return
        required = node.setdefault("required", [])
        if name not in required:
            required.append(name)
        node = props[name]


def strip_text(node: Any, root: bool = True) -> Any:
    """A copy without ``title`` / ``description`` below the root (the ``-notext`` media types)."""
    if isinstance(node, list):
        return [strip_text(v, False) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not root and key in ("title", "description") and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: strip_text(field, False) for name, field in value.items()}
        else:
            out[key] = strip_text(value, False)
    return out


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy where every object with ``properties`` refuses unknown keys (``additionalProperties: false``).

    The platform rejects extraneous fields in XDM data; validators of ingested records should use this.
    """
    out = copy.deepcopy(schema)
    stack = [out]
    while stack:
        node = stack.pop()
        if isinstance(node.get("properties"), dict):
            node.setdefault("additionalProperties", False)
            stack.extend(v for v in node["properties"].values() if isinstance(v, dict))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append(node[key])
    return out

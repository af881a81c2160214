"""RFC 6902 JSON Patch over RFC 6901 pointers: add, remove, replace (plus move, copy, test).

``apply`` works on a copy and raises :class:`ValidationFailed` naming the operation that cannot apply,
so a bad patch changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from headwater.errors import ValidationFailed


def apply(
    doc: dict[str, Any], patch: Any, protected: frozenset[str] = frozenset(), service: str = "FLOW"
) -> dict[str, Any]:
    """Apply ``patch`` to a copy of ``doc``; errors carry the code ``{service}-1410-400``."""
    try:
        return _apply(doc, patch, protected)
    except ValidationFailed as exc:
        if service == "FLOW":
            raise
        raise ValidationFailed(exc.errors, code=f"{service}-1410-400") from exc


def _apply(doc: dict[str, Any], patch: Any, protected: frozenset[str]) -> dict[str, Any]:
    if not isinstance(patch, list) or not patch:
        raise ValidationFailed(
            [{"path": "(body)", "message": "must be a non-empty JSON Patch array of {op, path, value}"}],
            code="FLOW-1410-400",
        )
    result = copy.deepcopy(doc)
    for index, operation in enumerate(patch):
        where = f"[{index}]"
        if not isinstance(operation, dict):
            _fail(where, "must be an object with op and path")
        op = str(operation.get("op", "")).lower()
        path = operation.get("path")
        if op not in ("add", "remove", "replace", "move", "copy", "test"):
            _fail(f"{where}.op", "must be one of add, remove, replace, move, copy, test")
        if not isinstance(path, str):
            _fail(f"{where}.path", "is required and must be a JSON Pointer string like /name")
        tokens = _tokens(path, f"{where}.path")
        if tokens and tokens[0] in protected:
            _fail(f"{where}.path", f"/{tokens[0]} is read-only")
        if op in ("add", "replace", "test") and "value" not in operation:
            _fail(f"{where}.value", "is required for " + op)
        value = copy.deepcopy(operation.get("value"))
        if op == "add":
            _add(result, tokens, value, where)
        elif op == "remove":
            _remove(result, tokens, where)
        elif op == "replace":
            _remove(result, tokens, where)
            _add(result, tokens, value, where)
        elif op == "test":
            if _get(result, tokens, where) != value:
                _fail(f"{where}.value", "test failed: the value at path differs")
        else:
            source = operation.get("from")
            if not isinstance(source, str):
                _fail(f"{where}.from", "is required for " + op)
            from_tokens = _tokens(source, f"{where}.from")
            moved = copy.deepcopy(_get(result, from_tokens, where))
            if op == "move":
                _remove(result, from_tokens, where)
            _add(result, tokens, moved, where)
    return result


def _fail(path: str, message: str) -> None:
    raise ValidationFailed([{"path": path, "message": message}], code="FLOW-1410-400")


def _tokens(pointer: str, where: str) -> list[str]:
    if pointer == "":
        _fail(where, "may not replace the whole document")
    if not pointer.startswith("/"):
        _fail(where, "must start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(doc: Any, tokens: list[str], where: str) -> Any:
    target = doc
    for token in tokens[:-1]:
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            _fail(f"{where}.path", f"/{'/'.join(tokens)} does not exist")
    return target


def _get(doc: Any, tokens: list[str], where: str) -> Any:
    parent = _parent(doc, tokens, where)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    _fail(f"{where}.path", f"/{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any, where: str) -> None:
    parent = _parent(doc, tokens, where)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            _fail(f"{where}.path", f"array index {last!r} is out of range")
    else:
        _fail(f"{where}.path", f"/{'/'.join(tokens[:-1])} is not an object or array")


def _remove(doc: Any, tokens: list[str], where: str) -> None:
    parent = _parent(doc, tokens, where)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        _fail(f"{where}.path", f"/{'/'.join(tokens)} does not exist")

"""Merging a profile's fragments under a merge policy: a pure function of its arguments.

A fragment is what one dataset holds about one person at one time: ``(dataset_id, ts_ms, attributes)``,
the attributes an XDM object. The merged profile is built leaf by leaf:

- objects merge field by field, at every depth; every other value is a leaf. Arrays are leaves: the
  winning fragment's array replaces the others whole (XDM arrays such as ``phoneNumbers`` are lists of a
  person's items in one source; concatenating them across sources would duplicate them);
- a ``None`` value is no value: it never overrides another fragment's;
- ``timestampOrdered``: per leaf, the newest fragment that has it wins;
- ``dataSetPrecedence``: per leaf, the fragment of the highest dataset in ``attributeMerge.order`` that
  has it wins, the newest among that dataset's fragments. As AEP documents, a dataset not in ``order``
  is not merged at all;
- ties (same precedence and time) go to the fragment that comes later in the list;
- when fragments disagree on a path's type (an object in one, a scalar in another) the winning value
  replaces what was there, object or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

Path = tuple[str, ...]


class Fragment(NamedTuple):
    dataset_id: str
    ts_ms: int
    attributes: Mapping[str, Any]


def merge(fragments: Iterable[Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """The merged attributes of ``fragments`` (Fragments, or anything with ``dataset_id``, ``ts_ms`` and
    ``attributes``, or 3-tuples in that order) under ``policy`` (a merge policy as the API renders it).
    ValueError for an attribute merge type other than timestampOrdered and dataSetPrecedence.

    The result's objects are new; its leaf values (arrays among them) are the fragments' own, not copies.
    """
    ranked = _ranked([_fragment(f) for f in fragments], policy.get("attributeMerge") or {})
    leaves: dict[Path, Any] = {}
    objects: set[Path] = set()  # paths that have held an object (a superset: entries may be stale)
    for fragment in ranked:  # lowest priority first: later ones overwrite
        for path, value in _leaves(fragment.attributes, ()):
            _set(leaves, objects, path, value)
    return _unflatten(leaves)


def _ranked(fragments: list[Fragment], attribute_merge: Mapping[str, Any]) -> list[Fragment]:
    merge_type = attribute_merge.get("type", "timestampOrdered")
    indexed = list(enumerate(fragments))
    if merge_type == "timestampOrdered":
        return [f for _, f in sorted(indexed, key=lambda p: (p[1].ts_ms, p[0]))]
    if merge_type == "dataSetPrecedence":
        order = list(attribute_merge.get("order") or [])
        rank = {dataset: len(order) - i for i, dataset in enumerate(order)}
        kept = [(i, f) for i, f in indexed if f.dataset_id in rank]
        return [f for _, f in sorted(kept, key=lambda p: (rank[p[1].dataset_id], p[1].ts_ms, p[0]))]
    raise ValueError(f"unknown attributeMerge.type {merge_type!r}")


def _fragment(value: Any) -> Fragment:
    if isinstance(value, Fragment):
        return value
    if isinstance(value, tuple):
        return Fragment(*value)
    return Fragment(value.dataset_id, value.ts_ms, value.attributes)


def _leaves(value: Mapping[str, Any], prefix: Path) -> Iterable[tuple[Path, Any]]:
    for key, item in value.items():
        path = (*prefix, key)
        if isinstance(item, Mapping):
            yield from _leaves(item, path)
        elif item is not None:
            yield path, item


def _set(leaves: dict[Path, Any], objects: set[Path], path: Path, value: Any) -> None:
    """Set one leaf, dropping what it displaces: a scalar at one of its prefixes, or leaves under it.
    Only a path that has held an object is scanned for leaves under it (a type conflict, rare)."""
    for depth in range(1, len(path)):
        leaves.pop(path[:depth], None)
        objects.add(path[:depth])
    if path in objects:
        for other in [p for p in leaves if len(p) > len(path) and p[: len(path)] == path]:
            del leaves[other]
    leaves[path] = value


def _unflatten(leaves: Mapping[Path, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in leaves.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out

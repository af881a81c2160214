"""Assembling mapped values into the nested columns of the target schema.

Each mapping writes one node of the target: a leaf (``person.name.firstName``), a whole object, a key of
a map (``identityMap.Email``), or a field inside an array of objects (``items[*].sku``, also written
``items.sku``). :class:`Dest` is the tree of the nodes some mapping writes; :func:`build_columns` turns
one array per mapping into the target's columns:

- a leaf is the mapped value converted to the field's type (:mod:`.coerce`);
- an object is present in a row when any of its fields is; a mapping of the whole object gives its
  fields, and mappings of fields inside it take precedence;
- an array of objects gets one item per element of the list values mapped into it (``items[*].sku``
  from a list), all such lists of a row having the same length (otherwise the row fails); a single value
  mapped into it is repeated on every item, or makes one item when no list is mapped there;
- a map gets one entry per mapped key whose value is present.

Unmapped fields are null. Failures name the input row even for values inside arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, coerce, typecheck
from headwater.engines.mapping.results import Describe

ITEMS = "[*]"
# (rule index, input rows of the failing values, the values, describe)
RuleSink = Callable[[int | None, pa.Array, pa.Array, Describe], None]
# (destination path, input rows of the values of the wrong type, the values, describe)
TypeSink = Callable[[str, pa.Array, pa.Array, Describe], None]


class DestinationError(ValueError):
    """A destination that is not a field of the schema, or that conflicts with another mapping."""


@dataclass
class Dest:
    """A node of the target that mappings write (``rule``) or write inside (``children``)."""

    path: str
    schema: dict[str, Any]
    arrow: pa.DataType
    children: dict[str, Dest] = field(default_factory=dict)
    rule: int | None = None

    def rules(self) -> list[int]:
        found = [self.rule] if self.rule is not None else []
        for child in self.children.values():
            found += child.rules()
        return found


def root(resolved: dict[str, Any], target: pa.Schema) -> Dest:
    return Dest("", resolved, pa.struct(list(target)))


def place(tree: Dest, parts: list[str], rule: int, destination: str) -> Dest:
    """Add the node ``parts`` (``split_path`` output) for ``rule``; DestinationError if impossible.

    On error the tree is left as it was.
    """
    created: list[tuple[Dest, str]] = []
    try:
        node = tree
        for part in parts:
            if part.startswith("["):
                if not arrays.is_list(node.arrow):
                    raise DestinationError(f"{node.path or 'the schema'} is not an array")
                node = _items(node, created)
                continue
            while arrays.is_list(node.arrow):
                node = _items(node, created)
            node = _named(node, part, created)
        if node.rule is not None:
            raise DestinationError(f"{destination!r} is mapped twice")
        _check_nesting(tree, node, destination)
    except DestinationError:
        for parent, key in reversed(created):
            del parent.children[key]
        raise
    node.rule = rule
    return node


def _items(node: Dest, created: list[tuple[Dest, str]]) -> Dest:
    return _child(node, ITEMS, node.schema.get("items") or {}, node.arrow.value_type, created)


def _named(node: Dest, name: str, created: list[tuple[Dest, str]]) -> Dest:
    if pa.types.is_struct(node.arrow):
        index = node.arrow.get_field_index(name)
        if index < 0:
            raise DestinationError(f"{_join(node.path, name)!r} is not a field of the schema")
        props = node.schema.get("properties") or {}
        return _child(node, name, props.get(name) or {}, node.arrow.field(index).type, created)
    if pa.types.is_map(node.arrow):
        values = node.schema.get("additionalProperties") or {}
        return _child(node, name, values, node.arrow.item_type, created)
    raise DestinationError(f"{node.path!r} has no fields (it is not an object)")


def _child(
    node: Dest, key: str, schema: dict[str, Any], kind: pa.DataType, created: list[tuple[Dest, str]]
) -> Dest:
    if key not in node.children:
        path = node.path + ITEMS if key == ITEMS else _join(node.path, key)
        node.children[key] = Dest(path, schema, kind)
        created.append((node, key))
    return node.children[key]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _check_nesting(tree: Dest, target: Dest, destination: str) -> None:
    """Whole arrays and maps cannot be mapped together with mappings inside them."""
    stack = [tree]
    while stack:
        node = stack.pop()
        whole = node.rule is not None or node is target
        if whole and node.children and not pa.types.is_struct(node.arrow):
            raise DestinationError(
                f"{node.path!r} is mapped as a whole and also inside it ({destination!r}); "
                "map one or the other"
            )
        stack.extend(node.children.values())


# --- building ---
@dataclass
class _Build:
    values: dict[int, pa.Array]
    sink: RuleSink
    depths: dict[int, int]  # rule -> list depth of its destination type
    types: TypeSink | None = None  # values of the wrong type (typecheck), by their exact path
    strict: bool = False  # no mapping set: numbers and booleans are not text either


def build_columns(
    tree: Dest,
    target: pa.Schema,
    n: int,
    values: dict[int, pa.Array],
    sink: RuleSink,
    depths: dict[int, int],
    types: TypeSink | None = None,
    strict: bool = False,
) -> list[pa.Array]:
    """The target's columns (length ``n``) from one row-level array per rule; values of the wrong type
    for their field (:mod:`.typecheck`) go to ``types``."""
    state = _Build(values, sink, depths, types, strict)
    columns = []
    for target_field in target:
        child = tree.children.get(target_field.name)
        columns.append(
            pa.nulls(n, target_field.type) if child is None else _build(child, n, values, None, state)
        )
    return columns


def _build(node: Dest, n: int, vals: dict[int, pa.Array], rows: pa.Array | None, state: _Build) -> pa.Array:
    if not node.children:
        assert node.rule is not None
        _typecheck(node, vals[node.rule], rows, state)
        return coerce.coerce(vals[node.rule], node.arrow, _report(state, node.rule, rows))
    if pa.types.is_struct(node.arrow):
        return _struct(node, n, vals, rows, state)
    if pa.types.is_map(node.arrow):
        return _map(node, n, vals, rows, state)
    return _list(node, n, vals, rows, state)


def _typecheck(node: Dest, arr: pa.Array, rows: pa.Array | None, state: _Build) -> None:
    sink = state.types
    if sink is None:
        return

    def violation(path: str, where: pa.Array, values: pa.Array, describe: Describe) -> None:
        sink(path, where if rows is None else rows.take(where), values, describe)

    typecheck.check(arr, node.schema, node.path, state.strict, violation)


def _report(state: _Build, rule: int | None, rows: pa.Array | None) -> Any:
    def report(where: pa.Array, values: pa.Array, describe: Describe) -> None:
        state.sink(rule, where if rows is None else rows.take(where), values, describe)

    return report


def _struct(node: Dest, n: int, vals: dict[int, pa.Array], rows: pa.Array | None, state: _Build) -> pa.Array:
    base = None
    if node.rule is not None:
        _typecheck(node, vals[node.rule], rows, state)
        base = coerce.coerce(vals[node.rule], node.arrow, _report(state, node.rule, rows))
    children: list[pa.Array] = []
    present = pc.is_valid(base) if base is not None else None
    for index, child_field in enumerate(node.arrow):
        below = pc.struct_field(base, [index]) if base is not None else None
        child = node.children.get(child_field.name)
        if child is None:
            children.append(below if below is not None else pa.nulls(n, child_field.type))
            continue
        built = _build(child, n, vals, rows, state)
        if below is not None:
            built = pc.if_else(pc.is_valid(built), built, below)
        children.append(built)
        valid = pc.is_valid(built)
        present = valid if present is None else pc.or_(present, valid)
    mask = pc.invert(present) if present is not None else None
    return pa.StructArray.from_arrays(children, fields=list(node.arrow), mask=mask)


def _map(node: Dest, n: int, vals: dict[int, pa.Array], rows: pa.Array | None, state: _Build) -> pa.Array:
    where: list[pa.Array] = []
    keys: list[pa.Array] = []
    items: list[pa.Array] = []
    counts = arrays.broadcast(0, n, pa.int64())
    for key, child in node.children.items():
        built = _build(child, n, vals, rows, state)
        valid = pc.is_valid(built)
        found = arrays.positions(valid)
        where.append(found)
        keys.append(arrays.broadcast(key, len(found), pa.string()))
        items.append(built.filter(valid))
        counts = pc.add(counts, pc.cast(valid, pa.int64()))
    order = pc.sort_indices(pa.concat_arrays(where))  # stable: entries keep the mappings' key order
    return pa.MapArray.from_arrays(
        arrays.list_offsets(counts),
        pa.concat_arrays(keys).take(order),
        pa.concat_arrays(items).take(order),
        type=node.arrow,
        mask=pc.equal(counts, 0),
    )


def _list(node: Dest, n: int, vals: dict[int, pa.Array], rows: pa.Array | None, state: _Build) -> pa.Array:
    item = node.children[ITEMS]
    rules = item.rules()
    current = {r: arrays.normalize(vals[r]) for r in rules}
    spread = [r for r in rules if arrays.list_depth(current[r].type) > state.depths[r]]
    if spread:
        lengths = {r: arrays.list_lengths(current[r]) for r in spread}
        count = lengths[spread[0]] if len(spread) == 1 else pc.max_element_wise(*lengths.values())
        _mismatches(node, spread, current, lengths, count, rows, state)
    else:
        present = [pc.is_valid(current[r]) for r in rules]
        count = pc.cast(present[0] if len(present) == 1 else _any(present), pa.int64())
    offsets = arrays.list_offsets(count)
    total = offsets[-1].as_py()
    parents = pc.list_parent_indices(pa.ListArray.from_arrays(offsets, pa.nulls(total))).cast(pa.int64())
    starts64 = offsets.cast(pa.int64())
    within = pc.subtract(arrays.arange(total), starts64.take(parents))
    inner: dict[int, pa.Array] = {}
    for r in rules:
        value = current[r]
        if r not in spread:
            inner[r] = value.take(parents)
            continue
        begin = value.offsets.slice(0, len(value)).cast(pa.int64()).take(parents)
        inside = pc.and_(pc.is_valid(value).take(parents), pc.less(within, lengths[r].take(parents)))
        index = pc.if_else(inside, pc.add(begin, within), pa.scalar(None, pa.int64()))
        inner[r] = arrays.normalize(value.values.take(index))
    element_rows = parents if rows is None else rows.take(parents)
    items = _build(item, total, inner, element_rows, state)
    return pa.ListArray.from_arrays(offsets, items, type=node.arrow, mask=pc.equal(count, 0))


def _any(masks: list[pa.Array]) -> pa.Array:
    out = masks[0]
    for mask in masks[1:]:
        out = pc.or_(out, mask)
    return out


def _mismatches(
    node: Dest,
    spread: list[int],
    current: dict[int, pa.Array],
    lengths: dict[int, pa.Array],
    count: pa.Array,
    rows: pa.Array | None,
    state: _Build,
) -> None:
    def describe(size: Any) -> str:
        return f"its list of {size} element(s) does not line up with the other lists mapped into {node.path}"

    for r in spread:
        bad = arrays.truthy(pc.and_(pc.is_valid(current[r]), pc.not_equal(lengths[r], count)))
        if arrays.any_true(bad):
            where = arrays.positions(bad)
            state.sink(r, where if rows is None else rows.take(where), lengths[r].filter(bad), describe)

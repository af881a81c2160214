"""The identities of XDM rows, and the links between the identities of one row.

A row's identities come from its identity fields (the schema's identity descriptors, the mapping's
identity flags: an :class:`IdentityField` each) and from its ``identityMap``, which XDM defines as a map
from namespace to a list of ``{id, authenticatedState, primary}``. In Arrow that map is either
``map<string, list<struct>>`` (the schema leaves the namespaces open) or ``struct<ns: list<struct>>``
(the schema names them); both are read.

:func:`identities` gives one Arrow row per identity (``row``, ``namespace``, ``id``, ``primary``),
sorted by input row, nulls and empty values dropped, each identity once per row. It is vectorized:
there is a loop over fields and map chunks, never over rows. :func:`links` joins each row's identities
to the row's primary one (its first identity when none is primary): a star, n-1 links for n identities.
:func:`identities_of` and :func:`star` do the same for one JSON record, for the streaming path.

Namespace codes of the standard namespaces are written in their canonical case (``ecid`` → ``ECID``),
and an identityMap key that is a standard namespace's id (``"4"``) becomes its code, so the same
identity has one spelling whatever source it came from. Other codes are kept as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.identity.namespaces import standard

IDENTITY_MAP = "identityMap"
SCHEMA = pa.schema(
    [("row", pa.int64()), ("namespace", pa.string()), ("id", pa.string()), ("primary", pa.bool_())]
)
LINK_SCHEMA = pa.schema(
    [
        ("namespace_a", pa.string()),
        ("id_a", pa.string()),
        ("namespace_b", pa.string()),
        ("id_b", pa.string()),
        ("row", pa.int64()),
    ]
)


@dataclass(frozen=True)
class IdentityField:
    """A field holding an identity: its dotted XDM path (``_tenant.crmId``, ``personalEmail.address``),
    the namespace code of its values, and whether it is the schema's primary identity."""

    path: str
    namespace: str
    primary: bool = False


class Identity(NamedTuple):
    namespace: str
    id: str
    primary: bool


def canonical_code(code: str) -> str:
    """A standard namespace's code in its own case (also from its id as text); other codes unchanged."""
    ns = standard(int(code)) if code.isdigit() else standard(code)
    return ns.code if ns is not None else code


def identities(
    table: pa.Table, fields: Sequence[IdentityField], identity_map: str = IDENTITY_MAP
) -> pa.Table:
    """The identities of every row of ``table`` (module docstring), as a table of :data:`SCHEMA`.

    The ``identity_map`` column is read when the table has it. A path that names no field of the table
    is a ValueError, since it means the identity descriptors and the schema disagree.
    """
    parts = [_field(table, f) for f in fields]
    if identity_map in table.column_names:
        parts.extend(_identity_map(table.column(identity_map)))
    found = pa.concat_tables([pa.table(p, schema=SCHEMA) for p in parts]) if parts else SCHEMA.empty_table()
    return _dedupe(found) if found.num_rows else found


def links(found: pa.Table) -> pa.Table:
    """Links (:data:`LINK_SCHEMA`) from each row's identities to its anchor: the row's first primary
    identity, or its first identity when none is primary. ``found`` is sorted by row (as
    :func:`identities` gives it)."""
    rows = found.column("row").to_numpy()
    if rows.size == 0:
        return LINK_SCHEMA.empty_table()
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    group = np.cumsum(np.r_[False, rows[1:] != rows[:-1]])
    position = np.arange(rows.size)
    primary = found.column("primary").to_numpy(zero_copy_only=False)
    first_primary = np.minimum.reduceat(np.where(primary, position, rows.size), starts)
    anchor = np.where(first_primary < rows.size, first_primary, starts)[group]
    other = np.flatnonzero(position != anchor)
    namespace, ids = found.column("namespace"), found.column("id")
    return pa.table(
        [
            namespace.take(anchor[other]),
            ids.take(anchor[other]),
            namespace.take(other),
            ids.take(other),
            pa.array(rows[other], pa.int64()),
        ],
        schema=LINK_SCHEMA,
    )


def identities_of(
    record: Mapping[str, Any], fields: Sequence[IdentityField], identity_map: str = IDENTITY_MAP
) -> list[Identity]:
    """The identities of one JSON record, as :func:`identities` finds them in a row: fields first, then
    the identityMap, each identity once (primary if any occurrence is)."""
    found: list[Identity] = []
    for f in fields:
        found.extend(Identity(canonical_code(f.namespace), v, f.primary) for v in _values_at(record, f.path))
    entries = record.get(identity_map)
    if isinstance(entries, Mapping):
        for code, items in entries.items():
            for item in items if isinstance(items, list) else []:
                value = item.get("id") if isinstance(item, Mapping) else None
                if _present(value):
                    found.append(Identity(canonical_code(str(code)), str(value), item.get("primary") is True))
    return _dedupe_list(found)


def star(found: Sequence[Identity]) -> list[tuple[Identity, Identity]]:
    """The links of one record's identities, as :func:`links` makes them: (anchor, other) pairs."""
    if not found:
        return []
    anchor = next((i for i in found if i.primary), found[0])
    return [(anchor, other) for other in found if other is not anchor]


def _field(table: pa.Table, f: IdentityField) -> dict[str, Any]:
    head, *rest = f.path.split(".")
    if head not in table.column_names:
        raise ValueError(f"identity field {f.path!r}: the table has no column {head!r}")
    values = table.column(head).combine_chunks()
    for name in rest:
        if not pa.types.is_struct(values.type) or values.type.get_field_index(name) < 0:
            raise ValueError(f"identity field {f.path!r}: no field {name!r} there")
        values = pc.struct_field(values, name)
    rows = np.arange(len(values), dtype=np.int64)
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        rows = pc.list_parent_indices(values).to_numpy().astype(np.int64)
        values = values.flatten()
    return _keep(rows, pa.repeat(pa.scalar(canonical_code(f.namespace)), len(values)), values, f.primary)


def _identity_map(column: pa.ChunkedArray) -> Iterable[dict[str, Any]]:
    offset = 0
    for chunk in column.chunks:
        if pa.types.is_map(chunk.type):
            rows, index = _entries(chunk)
            codes = _canonical_codes(chunk.keys.take(pa.array(index)))
            yield from _items(offset + rows, codes, chunk.items.take(pa.array(index)))
        elif pa.types.is_struct(chunk.type):
            for i in range(chunk.type.num_fields):
                name = chunk.type.field(i).name
                lists = pc.struct_field(chunk, i)
                rows = np.arange(len(lists), dtype=np.int64) + offset
                yield from _items(rows, pa.repeat(pa.scalar(canonical_code(name)), len(lists)), lists)
        else:
            raise ValueError(f"identityMap must be a map or a struct of lists, not {chunk.type}")
        offset += len(chunk)


def _entries(array: pa.MapArray) -> tuple[np.ndarray, np.ndarray]:
    """(row, index into the map's children) of every entry of a possibly sliced map with nulls."""
    offsets = np.asarray(array.offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    lengths[~array.is_valid().to_numpy(zero_copy_only=False)] = 0
    rows = np.repeat(np.arange(len(array), dtype=np.int64), lengths)
    firsts = np.cumsum(lengths) - lengths
    index = np.arange(lengths.sum(), dtype=np.int64) - np.repeat(firsts - offsets[:-1], lengths)
    return rows, index


def _items(rows: np.ndarray, codes: pa.Array, lists: pa.Array) -> Iterable[dict[str, Any]]:
    """The identities of ``lists`` (one list of identity items per entry, with its row and code)."""
    if len(lists) == 0:
        return
    entry = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    items = lists.flatten()
    if items.type.get_field_index("primary") >= 0:
        primary: Any = pc.fill_null(pc.struct_field(items, "primary"), False)
    else:
        primary = False
    yield _keep(rows[entry], codes.take(pa.array(entry)), pc.struct_field(items, "id"), primary)


def _keep(rows: np.ndarray, codes: pa.Array, values: pa.Array, primary: Any) -> dict[str, Any]:
    """The columns of the identities whose value is present (not null, not blank)."""
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    present = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0), False)
    mask = present.to_numpy(zero_copy_only=False)
    if isinstance(primary, bool):
        flags = pa.array(np.full(int(mask.sum()), primary), pa.bool_())
    else:
        flags = primary.filter(present)
    return {
        "row": rows[mask],
        "namespace": codes.filter(present),
        "id": values.filter(present),
        "primary": flags,
    }


def _canonical_codes(codes: pa.Array) -> pa.Array:
    """Each code in :func:`canonical_code`'s spelling, computed once per distinct code."""
    encoded = pc.dictionary_encode(codes)
    names = [canonical_code(str(c)) for c in encoded.dictionary.to_pylist()]
    return pa.array(names, pa.string()).take(encoded.indices)


def _dedupe(found: pa.Table) -> pa.Table:
    """Each (row, namespace, id) once, primary if any occurrence is; sorted by row, then first seen.

    ``found`` holds the parts (one per field) one after the other, each sorted by row, so a stable sort
    by row is first-seen order. Only a row holding two identities of one namespace can hold a
    duplicate: the ids of those alone are compared.
    """
    rows = found.column("row").to_numpy()
    namespace = _codes(found.column("namespace"))
    primary = found.column("primary").to_numpy(zero_copy_only=False).copy()
    keep = np.ones(rows.size, np.bool_)
    shared = np.flatnonzero(_repeated(rows * (int(namespace.max()) + 1) + namespace))
    if shared.size:
        key = _key(rows[shared], namespace[shared], _codes(found.column("id").take(shared)))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        keep[shared] = False
        keep[shared[first]] = True
        primary[shared] = (np.bincount(inverse, weights=primary[shared]) > 0)[inverse]
    order = np.flatnonzero(keep)
    order = order[np.argsort(rows[order], kind="stable")]
    return pa.table(
        [
            pa.array(rows[order], pa.int64()),
            found.column("namespace").take(order),
            found.column("id").take(order),
            pa.array(primary[order], pa.bool_()),
        ],
        schema=SCHEMA,
    )


def _key(rows: np.ndarray, namespace: np.ndarray, values: np.ndarray) -> np.ndarray:
    """One key per (row, namespace, id) code triple: an int64 when it fits, else a structured array."""
    n_ns, n_values = int(namespace.max()) + 1, int(values.max()) + 1
    if (int(rows.max()) + 1) * n_ns * n_values < 2**62:
        return np.asarray((rows * n_ns + namespace) * n_values + values)
    triples = np.empty(rows.size, [("r", np.int64), ("n", np.int64), ("v", np.int64)])
    triples["r"], triples["n"], triples["v"] = rows, namespace, values
    return triples


def _repeated(keys: np.ndarray) -> np.ndarray:
    """True where the key occurs more than once."""
    if int(keys.max()) < 4 * keys.size + 1024:
        return np.asarray(np.bincount(keys)[keys] > 1)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return np.asarray(counts[inverse] > 1)


def _codes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense int64 codes of the values (equal values, equal codes)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    codes: np.ndarray = pc.dictionary_encode(values).indices.to_numpy().astype(np.int64)
    return codes


def _dedupe_list(found: list[Identity]) -> list[Identity]:
    primary: dict[tuple[str, str], bool] = {}
    for i in found:
        primary[(i.namespace, i.id)] = primary.get((i.namespace, i.id), False) or i.primary
    return [Identity(ns, value, p) for (ns, value), p in primary.items()]


def _values_at(record: Mapping[str, Any], path: str) -> list[str]:
    node: Any = record
    for name in path.split("."):
        node = node.get(name) if isinstance(node, Mapping) else None
    values = node if isinstance(node, list) else [node]
    return [str(v) for v in values if _present(v) and not isinstance(v, (dict, list, bool))]


def _present(value: Any) -> bool:
    return value is not None and str(value).strip() != ""

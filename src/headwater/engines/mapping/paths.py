"""Source paths: which part of an input batch a mapping reads.

Syntax (Data Prep's):

    first_name                     a top-level column
    data.identifiers.cio_id        fields of struct columns, step by step
    First Name                     a top-level column whose name has spaces (no escaping needed)
    ${First Name}                  the same, written as in expressions
    a\\.b                           a column literally named ``a.b`` (``\\.`` escapes a dot)
    items[0].sku                   ``[n]``: the n-th element (0-based) of a list; null when absent
    items[*].sku                   ``[*]``: every element, giving a list (``items.sku`` does the same)
    identityMap.Email              a key of a map column

A text equal to a top-level column name is that column, whatever it contains. A path that names
nothing in the batch (a missing column or field, a step into a scalar) reads as all nulls: a missing
source is not an error, only a missing *required* destination is (validation says so).

Extraction is zero-copy where Arrow allows it (struct fields, ``[*]``) and one ``take`` for ``[n]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays

EVERY = "[*]"
_BRACKET = re.compile(r"\[(\*|\d+)\]$")


@dataclass(frozen=True)
class SourcePath:
    """A parsed source path. ``steps`` are field names, ``"[*]"`` or integer indexes."""

    text: str
    steps: tuple[str | int, ...]

    def read(self, batch: pa.RecordBatch) -> pa.Array | None:
        """The values at this path (one per row), or None when the batch has nothing there."""
        names = batch.schema.names
        if self.text in names:
            return arrays.normalize(batch.column(names.index(self.text)))
        if not self.steps or not isinstance(self.steps[0], str) or self.steps[0] not in names:
            return None
        column = arrays.normalize(batch.column(names.index(self.steps[0])))
        return _walk(column, self.steps[1:])


def parse(text: str) -> SourcePath:
    """Parse a source path; a text that is not a well-formed path is kept as a column name."""
    inner = text[2:-1] if text.startswith("${") and text.endswith("}") else text
    return SourcePath(inner, _steps(inner) or (inner,))


def _steps(text: str) -> tuple[str | int, ...] | None:
    out: list[str | int] = []
    for raw in re.split(r"(?<!\\)\.", text):
        name = raw.replace("\\.", ".")
        brackets: list[str | int] = []
        while (match := _BRACKET.search(name)) is not None:
            token = match.group(1)
            brackets.insert(0, EVERY if token == "*" else int(token))
            name = name[: match.start()]
        if not name and not (brackets and out):
            return None
        if name:
            out.append(name)
        out.extend(brackets)
    return tuple(out) or None


def _walk(arr: pa.Array, steps: tuple[str | int, ...]) -> pa.Array | None:
    if not steps:
        return arr
    step, rest = steps[0], steps[1:]
    kind = arr.type
    if pa.types.is_map(kind) and isinstance(step, str):
        return _walk(arrays.normalize(pc.map_lookup(arr, pa.scalar(step), "first")), rest)
    if arrays.is_list(kind):
        if isinstance(step, int):
            return _walk(_element(arr, step), rest)
        return _each(arr, rest if step == EVERY else steps)
    if pa.types.is_struct(kind) and isinstance(step, str) and step != EVERY:
        index = kind.get_field_index(step)
        if index < 0:
            return None
        return _walk(arrays.normalize(pc.struct_field(arr, [index])), rest)
    return None


def _element(arr: pa.Array, index: int) -> pa.Array:
    """The ``index``-th element of each list; null where the list is null or too short."""
    lengths = arrays.list_lengths(arr)
    starts = arr.offsets.slice(0, len(arr)).cast(pa.int64())
    inside = pc.and_(pc.greater(lengths, index), pc.is_valid(arr))
    where = pc.if_else(inside, pc.add(starts, index), pa.scalar(None, pa.int64()))
    return arrays.normalize(arr.values.take(where))


def _each(arr: pa.Array, rest: tuple[str | int, ...]) -> pa.Array | None:
    """Apply ``rest`` to every element of each list, keeping the lists' shape."""
    inner = _walk(arrays.normalize(arr.values), rest)
    if inner is None:
        return None
    return pa.ListArray.from_arrays(arr.offsets, inner, mask=pc.is_null(arr))

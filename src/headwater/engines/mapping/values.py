"""Typing rules shared by expression operators and functions: literals, text, common types, equality."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, coerce, datetimes
from headwater.engines.mapping.results import Describe


def ignore(_where: pa.Array, _values: pa.Array, _describe: Describe) -> None:
    """A report that drops failures (for conversions where a failure simply means null)."""


def literal(value: Any, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n)
    if isinstance(value, bool):
        return arrays.broadcast(value, n, pa.bool_())
    if isinstance(value, int):
        return arrays.broadcast(value, n, pa.int64())
    if isinstance(value, float):
        return arrays.broadcast(value, n, pa.float64())
    return arrays.broadcast(str(value), n, pa.string())


def text(arr: pa.Array) -> pa.Array:
    """Any value as text (numbers as written, true/false, ISO 8601 date-times, JSON for structures)."""
    return coerce.coerce(arr, pa.string(), ignore)


def instants(arr: pa.Array, report: Any, unit: str | None = None) -> pa.Array:
    """Date-times from date-times, dates, ISO text or epoch numbers (``unit``: "s", "ms" or by size)."""
    arr = arrays.normalize(arr)
    kind = arr.type
    if arrays.is_numeric(kind):
        return datetimes.from_epoch(arr, report, unit)
    if arrays.is_text(kind):
        return datetimes.parse_iso(arr, report)
    return coerce.coerce(arr, datetimes.UTC, report)


def common_type(kinds: list[pa.DataType]) -> pa.DataType | None:
    """The type values of these types are compared or combined as (None: all null)."""
    kinds = [k for k in kinds if not pa.types.is_null(k)]
    if not kinds:
        return None
    if all(k == kinds[0] for k in kinds):
        return kinds[0]
    if all(pa.types.is_integer(k) or pa.types.is_boolean(k) for k in kinds):
        return pa.int64()
    if all(arrays.is_numeric(k) or pa.types.is_boolean(k) for k in kinds):
        return pa.float64()
    if all(pa.types.is_timestamp(k) or pa.types.is_date(k) for k in kinds):
        return datetimes.UTC
    return pa.string()


def unify(values: list[pa.Array]) -> list[pa.Array]:
    """The arrays converted to their common type (text when nothing else fits)."""
    values = [arrays.normalize(v) for v in values]
    kind = common_type([v.type for v in values])
    if kind is None:
        return values
    return [v if v.type == kind else coerce.coerce(v, kind, ignore) for v in values]


def comparable(left: pa.Array, right: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Both sides in one type for a comparison: text meeting a number is read as a number."""
    left, right = arrays.normalize(left), arrays.normalize(right)
    lk, rk = left.type, right.type
    if arrays.is_text(lk) and (arrays.is_numeric(rk) or pa.types.is_boolean(rk)):
        left = coerce.coerce(left, pa.float64() if arrays.is_numeric(rk) else pa.bool_(), ignore)
    elif arrays.is_text(rk) and (arrays.is_numeric(lk) or pa.types.is_boolean(lk)):
        right = coerce.coerce(right, pa.float64() if arrays.is_numeric(lk) else pa.bool_(), ignore)
    elif arrays.is_text(lk) and (pa.types.is_timestamp(rk) or pa.types.is_date(rk)):
        left = instants(left, ignore)
    elif arrays.is_text(rk) and (pa.types.is_timestamp(lk) or pa.types.is_date(lk)):
        right = instants(right, ignore)
    unified = unify([left, right])
    return unified[0], unified[1]


def equal(left: pa.Array, right: pa.Array) -> pa.Array:
    """Null-safe equality: two nulls are equal, a null and a value are not; never null."""
    left, right = comparable(left, right)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return pc.and_(pc.is_null(left), pc.is_null(right))
    if not _orderable(left.type):
        left, right = text(left), text(right)
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    return pc.or_(both_null, arrays.truthy(pc.equal(left, right)))


def _orderable(kind: pa.DataType) -> bool:
    return not (pa.types.is_nested(kind) or pa.types.is_map(kind))


def compare(op: str, left: pa.Array, right: pa.Array) -> pa.Array:
    if op == "==":
        return equal(left, right)
    if op == "!=":
        return pc.invert(equal(left, right))
    left, right = comparable(left, right)
    if pa.types.is_null(left.type) or pa.types.is_null(right.type):
        return pa.nulls(len(left), pa.bool_())
    if not _orderable(left.type):
        left, right = text(left), text(right)
    kernel = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}[op]
    return kernel(left, right)


def element(arr: pa.Array, index: pa.Array) -> pa.Array:
    """``arr[i][index[i]]`` for a list array; null where out of range."""
    lengths = arrays.list_lengths(arr)
    starts = arr.offsets.slice(0, len(arr)).cast(pa.int64())
    inside = pc.and_(pc.and_(pc.greater_equal(index, 0), pc.less(index, lengths)), pc.is_valid(arr))
    where = pc.if_else(arrays.truthy(inside), pc.add(starts, index), pa.scalar(None, pa.int64()))
    return arrays.normalize(arr.values.take(where))

"""Small Arrow helpers shared by the mapping engine, and the bisecting error boundary.

:func:`bisect` is how one bad row never fails a whole batch: a vectorized step that raises (an Arrow
cast meeting ``2024-02-30``, a checked overflow) is retried on halves of its input until the failing
rows are isolated; only those fail, with the error's first line as the reason. A clean batch runs the
step once; ``k`` bad rows among ``n`` cost about ``2k log2(n/k)`` extra calls on shrinking slices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# Errors a vectorized step may raise because of the data (never programming errors such as TypeError).
DATA_ERRORS: tuple[type[BaseException], ...] = (pa.ArrowException, ValueError, ArithmeticError)
_PER_ROW_BELOW = 16


def arange(n: int, start: int = 0) -> pa.Array:
    """``[start, start + n)`` as int64, built without a Python loop."""
    if n == 0:
        return pa.array([], pa.int64())
    ones = pa.repeat(pa.scalar(1, pa.int64()), n)
    return pc.add(pc.cumulative_sum(ones), start - 1)


def broadcast(value: Any, n: int, kind: pa.DataType | None = None) -> pa.Array:
    """An array of ``n`` copies of a Python value (or of an Arrow scalar)."""
    scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value, kind)
    return pa.repeat(scalar, n)


def normalize(arr: pa.Array) -> pa.Array:
    """Decode dictionaries and view/large variants so that kernels see plain types."""
    kind = arr.type
    if pa.types.is_dictionary(kind):
        return normalize(arr.dictionary_decode())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return arr.cast(pa.string())
    if pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return arr.cast(pa.binary())
    if pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_list_view(kind):
        return arr.cast(pa.list_(kind.value_field))
    return arr


def map_entries(arr: pa.Array) -> pa.Array:
    """A map array as ``list<struct<key, value>>`` (list kernels must not be given maps directly)."""
    kind = arr.type
    entry = pa.struct([kind.key_field.with_name("key"), kind.item_field.with_name("value")])
    return arr.cast(pa.list_(entry))


def list_depth(kind: pa.DataType) -> int:
    """How many list levels a type has (``list<list<string>>`` -> 2; a map counts as none)."""
    depth = 0
    while is_list(kind):
        depth, kind = depth + 1, kind.value_type
    return depth


def is_list(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_list_view(kind)
    )


def is_numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def truthy(mask: pa.Array) -> pa.Array:
    """A bool array with nulls read as False."""
    return pc.fill_null(mask, False)


def positions(mask: pa.Array) -> pa.Array:
    """Indices (int64) where ``mask`` is true."""
    return pc.indices_nonzero(mask).cast(pa.int64())


def any_true(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def list_offsets(lengths: pa.Array) -> pa.Array:
    """Offsets (int32) ``[0, l0, l0 + l1, ...]`` of lists with these lengths (nulls count as 0)."""
    filled = pc.fill_null(lengths.cast(pa.int64()), 0)
    sums = pc.cumulative_sum(filled) if len(filled) else pa.array([], pa.int64())
    return pa.concat_arrays([pa.array([0], pa.int64()), sums]).cast(pa.int32())


def list_lengths(arr: pa.Array) -> pa.Array:
    """Length of each list (0 for a null list), int64."""
    return pc.fill_null(pc.list_value_length(arr).cast(pa.int64()), 0)


def mask_at(n: int, rows: list[int]) -> pa.Array:
    """A bool array of length ``n``, true at ``rows`` (built in O(len(rows)) Python steps)."""
    bits = bytearray((n + 7) // 8)
    for row in rows:
        bits[row >> 3] |= 1 << (row & 7)
    return pa.BooleanArray.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bytes(bits))])


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


class TooManyFailures(Exception):
    """Raised by :func:`bisect` when more rows fail than its ``limit`` (``failures`` so far)."""

    def __init__(self, failures: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(failures)} rows failed")
        self.failures = failures


def bisect(
    step: Callable[[int, int], pa.Array],
    n: int,
    fallback_type: pa.DataType,
    errors: tuple[type[BaseException], ...] = DATA_ERRORS,
    limit: int | None = None,
) -> tuple[pa.Array, list[tuple[int, str]]]:
    """Run ``step(offset, length)`` over ``[0, n)``; rows whose slice keeps raising ``errors`` fail.

    Returns the concatenated result (null at failed rows) and ``[(row, reason)]`` for the failures.
    TooManyFailures once more than ``limit`` rows have failed.
    """
    pieces: list[tuple[int, pa.Array | None]] = []
    failures: list[tuple[int, str]] = []
    _bisect(step, 0, n, pieces, failures, errors, limit)
    kinds = [p.type for _, p in pieces if p is not None]
    kind = next((k for k in kinds if not pa.types.is_null(k)), kinds[0] if kinds else fallback_type)
    parts = [p if p is not None else pa.nulls(1, kind) for _, p in sorted(pieces, key=lambda x: x[0])]
    parts = [p if p.type == kind else p.cast(kind) for p in parts]
    if not parts:
        return pa.nulls(0, kind), failures
    return (parts[0] if len(parts) == 1 else pa.concat_arrays(parts)), failures


def _bisect(
    step: Callable[[int, int], pa.Array],
    offset: int,
    length: int,
    pieces: list[tuple[int, pa.Array | None]],
    failures: list[tuple[int, str]],
    errors: tuple[type[BaseException], ...],
    limit: int | None,
) -> None:
    try:
        pieces.append((offset, step(offset, length)))
        return
    except errors as exc:
        if length == 1:
            pieces.append((offset, None))
            failures.append((offset, first_line(exc)))
            if limit is not None and len(failures) > limit:
                raise TooManyFailures(failures) from exc
            return
    if length <= _PER_ROW_BELOW:
        for row in range(offset, offset + length):
            _bisect(step, row, 1, pieces, failures, errors, limit)
        return
    half = length // 2
    _bisect(step, offset, half, pieces, failures, errors, limit)
    _bisect(step, offset + half, length - half, pieces, failures, errors, limit)


def guarded(
    fn: Callable[[pa.Array], pa.Array],
    arr: pa.Array,
    kind: pa.DataType,
    report: Any,
    reason: str | None = None,
) -> pa.Array:
    """``fn(arr)``; positions where it raises are null in the result and reported.

    ``report`` is a :data:`headwater.engines.mapping.results.Report`; the message is the offending
    value and ``reason``, or the error's first line when no reason is given.
    """
    result, failures = bisect(lambda offset, length: fn(arr.slice(offset, length)), len(arr), kind)
    if not failures:
        return result
    where = pa.array([row for row, _ in failures], pa.int64())
    if reason:
        report(where, arr.take(where), lambda value: f"{_show(value)} {reason}")
        return result
    values = arr.take(where).to_pylist()
    texts = [f"{_show(v)}: {why}" for v, (_, why) in zip(values, failures, strict=True)]
    report(where, pa.array(texts, pa.string()), str)
    return result


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

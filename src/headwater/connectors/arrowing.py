"""JSON records to Arrow, as the HTTP API connectors (Salesforce, Dynamics) read them: pages of records
transposed into columns and cut into chunks, typed arrays built from JSON values, and the exact window
filter ``S < delta <= E`` (see connectors/base.py) applied to each batch.

The typed builders raise Arrow's own errors (``ArrowInvalid``, ``ArrowTypeError``, ``ValueError``) for a
value that does not fit; the connector turns them into its protocol error, naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP = pa.timestamp("us", tz="UTC")


def column_chunks(
    pages: Iterable[list[dict[str, Any]]], keys: list[str], size: int
) -> Iterator[list[list[Any]]]:
    """The values of ``keys`` in the records of ``pages``, one list per key, ``size`` rows at a time
    (fewer only at the end)."""
    pending: list[list[Any]] = [[] for _ in keys]
    for records in pages:
        for values, page_values in zip(pending, transpose(records, keys), strict=True):
            values.extend(page_values)
        while len(pending[0]) >= size:
            yield [values[:size] for values in pending]
            pending = [values[size:] for values in pending]
    if pending[0]:
        yield pending


def transpose(records: list[dict[str, Any]], keys: list[str]) -> list[Sequence[Any]]:
    """The values of ``keys`` in ``records``, one sequence per key (built in C when every key is there)."""
    if len(keys) > 1:
        try:
            return list(zip(*map(itemgetter(*keys), records), strict=True)) or [() for _ in keys]
        except (KeyError, TypeError):
            pass
    return [[r.get(k) if isinstance(r, dict) else None for r in records] for k in keys]


# -- windows ---------------------------------------------------------------------------------------------


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive value is taken to be UTC already."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ceil_second(value: datetime) -> datetime:
    """``value`` rounded up to a whole second (query languages whose literals carry no fraction)."""
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def window_batch(
    arrays: list[pa.Array],
    schema: pa.Schema,
    delta: int | None,
    start: datetime | None,
    end: datetime | None,
) -> pa.RecordBatch:
    """The first ``len(schema)`` of ``arrays`` as a batch; with ``delta`` (the index of the delta column
    in ``arrays``), only the rows whose delta lies in the window."""
    outputs = len(schema)
    if delta is not None:
        mask = window_mask(arrays[delta], start, end)
        arrays = [pc.filter(a, mask) for a in arrays[:outputs]]
    return pa.RecordBatch.from_arrays(arrays[:outputs], schema=schema)


def window_mask(delta: pa.Array, start: datetime | None, end: datetime | None) -> pa.Array:
    """``start < delta <= end`` (dates compare as midnight UTC); without ``start``, null deltas are in."""
    instants = delta.cast(pa.timestamp("us")).cast(TIMESTAMP) if pa.types.is_date32(delta.type) else delta
    mask: pa.Array | None = None
    if start is not None:
        mask = pc.greater(instants, pa.scalar(start, type=TIMESTAMP))
    if end is not None:
        upper = pc.less_equal(instants, pa.scalar(end, type=TIMESTAMP))
        mask = upper if mask is None else pc.and_(mask, upper)
    assert mask is not None
    if start is None:
        mask = pc.or_kleene(mask, pc.is_null(instants))
    return pc.fill_null(mask, False)


# -- typed arrays ----------------------------------------------------------------------------------------


def typed_array(values: Sequence[Any], data_type: pa.DataType, text: Callable[[Any], str | None]) -> pa.Array:
    """``values`` (as JSON gave them) as an array of ``data_type``; ``text`` renders a value that is not a
    string for a string column."""
    if data_type == TIMESTAMP:
        return timestamps(pa.array(values, pa.string()))
    if data_type == pa.date32():
        return pa.array(values, pa.string()).cast(pa.date32())
    if data_type == pa.string():
        return strings(values, text)
    if data_type == pa.int64():
        return integers(values)
    return pa.array(values, data_type)


def timestamps(strings: pa.Array) -> pa.Array:
    try:
        return strings.cast(TIMESTAMP)
    except pa.ArrowInvalid:
        # A date-only value ("2024-01-15") in a datetime field: read it as midnight UTC.
        fixed = [
            None if s is None else (s + "T00:00:00Z" if len(s) == 10 else s) for s in strings.to_pylist()
        ]
        return pa.array(fixed, pa.string()).cast(TIMESTAMP)


def strings(values: Sequence[Any], text: Callable[[Any], str | None]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([text(v) for v in values], pa.string())


def integers(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values, pa.float64()).cast(pa.int64())  # 3.0 -> 3; 3.5 raises ArrowInvalid

"""Plain Python rows (JSON records) as Arrow, and Arrow values back as plain JSON-ready Python."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa


def to_batch(rows: list[dict[str, Any]]) -> pa.RecordBatch:
    """Rows as an Arrow batch, types inferred (nested objects become structs). A field whose values
    have no common type (``1`` in one row, ``"x"`` in another) is read as text."""
    if not rows:
        return pa.RecordBatch.from_pylist([])
    try:
        return pa.RecordBatch.from_struct_array(pa.array(rows))
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        pass
    names = list(dict.fromkeys(key for row in rows for key in row))
    columns = []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns.append(pa.array(values))
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            columns.append(pa.array([_as_text(v) for v in values], pa.string()))
    return pa.RecordBatch.from_arrays(columns, names=names)


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def plain(value: Any) -> Any:
    """An Arrow-read value as JSON-ready Python: ISO 8601 times, maps as objects, decimals as numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):  # a map's entries
            return {str(k): plain(v) for k, v in value}
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value

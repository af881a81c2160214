"""Arrow columns as PostgreSQL sees them: a type OID and size per column, each value in text format.

Values are written as PostgreSQL's own output functions write them with ``DateStyle = ISO`` and
``TimeZone = UTC`` (what the endpoint reports at startup), so a driver's text parsers read them
unchanged: ``t``/``f``, ``Infinity``, ``2024-05-01 10:00:00+00``, ``\\x0a0b``. Structs, lists and maps
have no PostgreSQL type of their own here: they are ``json``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON = 16, 17, 20, 21, 23, 25, 114
FLOAT4, FLOAT8, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC = (
    700,
    701,
    1082,
    1083,
    1114,
    1184,
    1186,
    1700,
)
UUID = 2950
_SIZES = {BOOL: 1, INT2: 2, INT4: 4, INT8: 8, FLOAT4: 4, FLOAT8: 8, DATE: 4, TIME: 8, TIMESTAMP: 8}
_SIZES |= {TIMESTAMPTZ: 8, INTERVAL: 16, UUID: 16}

Encoder = Callable[[Any], str]


def type_oid(arrow: pa.DataType) -> int:
    """The PostgreSQL type a column of ``arrow`` is described as."""
    if pa.types.is_dictionary(arrow):
        return type_oid(arrow.value_type)
    checks: list[tuple[Callable[[pa.DataType], bool], int]] = [
        (pa.types.is_boolean, BOOL),
        (lambda t: t in (pa.int8(), pa.int16(), pa.uint8()), INT2),
        (lambda t: t in (pa.int32(), pa.uint16()), INT4),
        (lambda t: t in (pa.int64(), pa.uint32()), INT8),
        (pa.types.is_uint64, NUMERIC),
        (lambda t: t in (pa.float16(), pa.float32()), FLOAT4),
        (pa.types.is_float64, FLOAT8),
        (pa.types.is_decimal, NUMERIC),
        (pa.types.is_date, DATE),
        (pa.types.is_time, TIME),
        (lambda t: pa.types.is_timestamp(t) and t.tz is not None, TIMESTAMPTZ),
        (pa.types.is_timestamp, TIMESTAMP),
        (lambda t: pa.types.is_duration(t) or pa.types.is_interval(t), INTERVAL),
        (
            lambda t: (
                pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            ),
            BYTEA,
        ),
        (_is_nested, JSON),
    ]
    return next((oid for check, oid in checks if check(arrow)), TEXT)


def type_size(oid: int) -> int:
    return _SIZES.get(oid, -1)


def columns(schema: pa.Schema) -> list[tuple[str, int, int]]:
    """A RowDescription's columns for ``schema``: (name, type oid, type size)."""
    return [(field.name, type_oid(field.type), type_size(type_oid(field.type))) for field in schema]


def text_rows(table: pa.Table) -> Iterator[list[bytes | None]]:
    """The rows of ``table``, each value in PostgreSQL's text format (None for NULL)."""
    encoders = [_encoder(type_oid(field.type)) for field in table.schema]
    for batch in table.to_batches(max_chunksize=4096):
        values = [column.to_pylist() for column in batch.columns]
        for row in zip(*values, strict=True):
            yield [
                None if v is None else enc(v).encode("utf-8") for v, enc in zip(row, encoders, strict=True)
            ]


def _is_nested(arrow: pa.DataType) -> bool:
    return bool(pa.types.is_nested(arrow))


def _encoder(oid: int) -> Encoder:
    return {
        BOOL: lambda v: "t" if v else "f",
        FLOAT4: _float,
        FLOAT8: _float,
        NUMERIC: _numeric,
        DATE: lambda v: v.isoformat(),
        TIME: lambda v: v.isoformat(),
        TIMESTAMP: _timestamp,
        TIMESTAMPTZ: _timestamptz,
        INTERVAL: _interval,
        BYTEA: lambda v: "\\x" + bytes(v).hex(),
        JSON: lambda v: json.dumps(v, default=_json_default, ensure_ascii=False, separators=(",", ":")),
    }.get(oid, str)


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _numeric(value: decimal.Decimal | int) -> str:
    return format(value, "f") if isinstance(value, decimal.Decimal) else str(value)


def _timestamp(value: dt.datetime) -> str:
    return value.isoformat(sep=" ")


def _timestamptz(value: dt.datetime) -> str:
    text = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    return text + "+00"


def _interval(value: Any) -> str:
    """PostgreSQL's ``postgres`` interval style: ``1 mon 2 days 03:04:05.000006``."""
    if isinstance(value, dt.timedelta):
        months, days, micros = 0, value.days, value.seconds * 1_000_000 + value.microseconds
    else:  # pyarrow's MonthDayNano
        months, days, micros = int(value.months), int(value.days), int(value.nanoseconds) // 1000
    parts = [f"{months} mon{'s' if abs(months) != 1 else ''}"] if months else []
    parts += [f"{days} day{'s' if abs(days) != 1 else ''}"] if days else []
    if micros or not parts:
        sign, micros = ("-" if micros < 0 else ""), abs(micros)
        seconds, fraction = divmod(micros, 1_000_000)
        clock = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        parts.append(clock + (f".{fraction:06d}" if fraction else ""))
    return " ".join(parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)

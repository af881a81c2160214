"""Bound parameters (``$1``, ``$2``... of the extended protocol) written into the SQL as literals.

The query engine takes one SQL text, so a Bind's values become SQL literals at the places of their
placeholders: a number only when it parses as one, everything else a quoted string (quotes doubled;
DuckDB's strings know no backslash escapes), cast to the type the client declared. Placeholders inside
string literals, quoted identifiers, dollar quotes and comments are left alone. This is not the
security boundary (the engine is: whatever the text says, it runs one SELECT over the sandbox's
tables); it keeps a value from changing what the statement means.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import struct
import uuid
from collections.abc import Sequence

from headwater.pgwire import types as t
from headwater.pgwire.errors import PgError
from headwater.pgwire.sqltext import placeholders

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_CASTS = {t.DATE: "DATE", t.TIME: "TIME", t.TIMESTAMP: "TIMESTAMP", t.TIMESTAMPTZ: "TIMESTAMPTZ"}
_CASTS |= {t.INTERVAL: "INTERVAL", t.JSON: "JSON", 3802: "JSON", t.UUID: "UUID", t.BYTEA: "BLOB"}
_INTEGERS = {t.INT2, t.INT4, t.INT8, 26}  # 26: oid
_FLOATS = {t.FLOAT4, t.FLOAT8, t.NUMERIC}


def placeholder_count(sql: str) -> int:
    """The highest ``$n`` of ``sql`` outside literals and comments (0 without placeholders)."""
    return max((n for _, _, n in placeholders(sql)), default=0)


def bind(sql: str, oids: Sequence[int], values: Sequence[bytes | None], formats: Sequence[int]) -> str:
    """``sql`` with each ``$n`` replaced by the literal of ``values[n-1]``; see the module."""
    literals = [_literal(_oid(oids, i), v, _format(formats, i, len(values))) for i, v in enumerate(values)]
    out, at = [], 0
    for start, end, number in placeholders(sql):
        if number > len(literals):
            raise PgError(
                "08P01", f"The statement uses ${number} but only {len(literals)} values were bound."
            )
        out += [sql[at:start], literals[number - 1]]
        at = end
    return "".join([*out, sql[at:]])


def _oid(oids: Sequence[int], index: int) -> int:
    return oids[index] if index < len(oids) else 0


def _format(formats: Sequence[int], index: int, count: int) -> int:
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    if len(formats) != count:
        raise PgError("08P01", f"Bind has {len(formats)} parameter format codes for {count} values.")
    return formats[index]


def _literal(oid: int, value: bytes | None, fmt: int) -> str:
    if value is None:
        return "NULL"
    text = _binary_text(oid, value) if fmt == 1 else _decode(value)
    if oid == t.BOOL:
        if text.strip().lower() not in (
            "t",
            "true",
            "f",
            "false",
            "1",
            "0",
            "y",
            "yes",
            "n",
            "no",
            "on",
            "off",
        ):
            raise PgError("22P02", f"invalid input syntax for type boolean: {text!r}")
        return "TRUE" if text.strip().lower() in ("t", "true", "1", "y", "yes", "on") else "FALSE"
    if oid in _INTEGERS or oid in _FLOATS:
        pattern = _INTEGER if oid in _INTEGERS else _NUMBER
        if not pattern.match(text.strip()) and text.strip() not in ("NaN", "Infinity", "-Infinity"):
            raise PgError("22P02", f"invalid input syntax for a number: {text!r}")
        if pattern.match(text.strip()):
            number = text.strip()
            return f"CAST({number} AS DOUBLE)" if oid in (t.FLOAT4, t.FLOAT8) else f"({number})"
        return f"CAST('{text.strip()}' AS DOUBLE)"
    quoted = "'" + text.replace("'", "''") + "'"
    cast = _CASTS.get(oid)
    return f"CAST({quoted} AS {cast})" if cast else quoted


def _decode(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PgError("22021", "A bound parameter is not valid UTF-8 (client_encoding is UTF8).") from exc
    if "\0" in text:
        raise PgError("22021", "A bound parameter contains a NUL character.")
    return text


def _binary_text(oid: int, value: bytes) -> str:
    """A parameter sent in binary format, as text (the common scalar types; others are refused)."""
    layouts = {
        t.INT2: "!h",
        t.INT4: "!i",
        t.INT8: "!q",
        26: "!I",
        t.FLOAT4: "!f",
        t.FLOAT8: "!d",
        t.BOOL: "!?",
    }
    if oid in layouts:
        try:
            (number,) = struct.unpack(layouts[oid], value)
        except struct.error as exc:
            raise PgError("22P03", f"A binary parameter of type {oid} has {len(value)} bytes.") from exc
        return ("true" if number else "false") if oid == t.BOOL else repr(number)
    if oid in (0, t.TEXT, 1043, 1042, 19, 705, t.JSON):  # unknown, text, varchar, bpchar, name, json
        return _decode(value)
    try:
        special = _binary_special(oid, value)
    except (struct.error, ValueError, OverflowError, IndexError) as exc:
        raise PgError("22P03", f"A binary parameter of type {oid} is malformed.") from exc
    if special is not None:
        return special
    raise PgError("0A000", f"Binary parameters of type {oid} are not supported: send them in text format.")


_EPOCH = dt.datetime(2000, 1, 1)  # PostgreSQL's binary dates and times count from here


def _binary_special(oid: int, value: bytes) -> str | None:
    """Dates, times, numerics, UUIDs, bytea and jsonb in binary format, as text; None for other types."""
    if oid == t.DATE:
        (days,) = struct.unpack("!i", value)
        return (_EPOCH.date() + dt.timedelta(days=days)).isoformat()
    if oid in (t.TIMESTAMP, t.TIMESTAMPTZ):
        (micros,) = struct.unpack("!q", value)
        moment = _EPOCH + dt.timedelta(microseconds=micros)
        return moment.isoformat(sep=" ") + ("+00" if oid == t.TIMESTAMPTZ else "")
    if oid == t.TIME:
        (micros,) = struct.unpack("!q", value)
        return (dt.datetime.min + dt.timedelta(microseconds=micros)).time().isoformat()
    if oid == t.INTERVAL:
        micros, days, months = struct.unpack("!qii", value)
        return f"{months} months {days} days {micros} microseconds"
    if oid == t.NUMERIC:
        return _binary_numeric(value)
    if oid == t.UUID:
        return str(uuid.UUID(bytes=value))
    if oid == t.BYTEA:
        return "".join(f"\\x{byte:02x}" for byte in value)  # DuckDB's blob literal
    if oid == 3802 and value[:1] == b"\x01":  # jsonb: a version byte, then the text
        return _decode(value[1:])
    return None


def _binary_numeric(value: bytes) -> str:
    count, weight, sign, scale = struct.unpack("!hhHh", value[:8])
    digits = struct.unpack(f"!{count}h", value[8 : 8 + 2 * count])
    if sign == 0xC000:
        return "NaN"
    number = decimal.Decimal(0)
    for index, digit in enumerate(digits):
        number += decimal.Decimal(digit).scaleb(4 * (weight - index))
    text = format(number.quantize(decimal.Decimal(1).scaleb(-scale)) if scale else number, "f")
    return ("-" if sign == 0x4000 else "") + text

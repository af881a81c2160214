"""Conversion of mapped values to the Arrow type of their destination field, one array at a time.

What converts (anything else fails the row, naming the value and the expected type):

    to string      any scalar (numbers as written, true/false, instants as ISO 8601 with Z, dates as
                   yyyy-MM-dd); structs, lists and maps as JSON text (open objects are JSON text)
    to int64       integers (in range), whole floats, true/false (1/0), text such as "42", " -7 ", "42.0"
    to float64     numbers, true/false, text such as "4.5", "-1e3", ".5"
    to bool        true/false, integers 0/1, text true/false/yes/no/y/n/t/f/1/0 (any case)
    to timestamp   instants (any unit; naive ones are UTC), dates (midnight UTC), epoch numbers (seconds
                   below 1e11 in magnitude, milliseconds above), ISO 8601 text (no offset means UTC)
    to date        dates, instants (their UTC date), yyyy-MM-dd text or any ISO 8601 date-time text,
                   epoch numbers
    to list<T>     lists (each element converted), or a single value, which becomes a one-element list
    to struct      structs, field by field by name (fields the destination lacks are dropped)
    to map<s, V>   maps (keys as text, values converted)

Conversions are vectorized: text is screened with a regular expression and cast by Arrow; a cast that
still fails (an out-of-range value) is isolated by bisection, so only its row fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, datetimes
from headwater.engines.mapping.results import Report, show
from headwater.engines.xdm_arrow import type_name

_INTEGER_TEXT = r"^[+-]?\d{1,19}(\.0*)?$"
_NUMBER_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_NULL_TEXT = pa.scalar(None, pa.string())


def describe_type(kind: pa.DataType) -> str:
    """An Arrow type in XDM's words with its article, for messages: "an integer", "a date-time"."""
    name = type_name(kind)
    return ("an " if name[0] in "aeiou" else "a ") + name


def coerce(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    """``arr`` as ``target``; values that cannot convert are null and reported (positions in ``arr``)."""
    arr = arrays.normalize(arr)
    source = arr.type
    if source == target:
        return arr
    if pa.types.is_null(source):
        return pa.nulls(len(arr), target)
    if len(arr) == arr.null_count:
        return pa.nulls(len(arr), target)
    converter = _CONVERTERS.get(_kind(target))
    if converter is None:
        raise TypeError(f"no conversion to {target}")
    result = converter(arr, target, report)
    return result if result.type == target else result.cast(target)


def _kind(target: pa.DataType) -> str:
    for name, test in (
        ("string", pa.types.is_string),
        ("int", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("bool", pa.types.is_boolean),
        ("timestamp", pa.types.is_timestamp),
        ("date", pa.types.is_date),
        ("map", pa.types.is_map),
        ("list", pa.types.is_list),
        ("struct", pa.types.is_struct),
    ):
        if test(target):
            return name
    return "other"


def _fail(report: Report, arr: pa.Array, bad: pa.Array, target: pa.DataType, why: str = "") -> None:
    bad = arrays.truthy(bad)
    if arrays.any_true(bad):
        expected = describe_type(target)
        report(
            arrays.positions(bad),
            arr.filter(bad),
            lambda v: f"cannot convert {show(v)} to {expected}{why}",
        )


def _fail_all(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    _fail(report, arr, pc.is_valid(arr), target, f" ({describe_type(arr.type)} value)")
    return pa.nulls(len(arr), target)


def _screened(arr: pa.Array, pattern: str, target: pa.DataType, report: Report) -> pa.Array:
    """Trimmed text where it matches ``pattern``, null elsewhere (non-matching values reported)."""
    text = pc.utf8_trim_whitespace(arr)
    ok = arrays.truthy(pc.match_substring_regex(text, pattern))
    _fail(report, arr, pc.and_(pc.is_valid(arr), pc.invert(ok)), target)
    return pc.if_else(ok, text, _NULL_TEXT)


def _quick(arr: pa.Array, target: pa.DataType) -> pa.Array | None:
    """Arrow's own cast when every value takes it (the common case), else None."""
    try:
        return pc.cast(arr, target)
    except (pa.ArrowInvalid, ValueError):
        return None


def _cast(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    expected = f"out of range for {describe_type(target)}"
    return arrays.guarded(lambda a: pc.cast(a, target), arr, target, report, f"is {expected}")


# --- per destination type ---
def _to_string(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if pa.types.is_timestamp(kind):
        return datetimes.to_iso(arr)
    if pa.types.is_date(kind) or arrays.is_numeric(kind) or pa.types.is_boolean(kind):
        return pc.cast(arr, pa.string())
    if pa.types.is_binary(kind):
        return arrays.guarded(
            lambda a: pc.cast(a, pa.string()), arr, pa.string(), report, "is not UTF-8 text"
        )
    return json_text(arr)


def json_text(arr: pa.Array) -> pa.Array:
    """Each value as JSON text (structs, lists and maps; per row, for open objects and previews)."""
    return pa.array(
        [None if v is None else orjson.dumps(jsonable(v), default=str).decode() for v in arr.to_pylist()],
        pa.string(),
    )


def jsonable(value: Any) -> Any:
    """A ``to_pylist`` value with maps (lists of key/value tuples) turned into objects."""
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return {str(k): jsonable(v) for k, v in value}
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _to_int(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if arrays.is_text(kind):
        quick = _quick(arr, target)
        if quick is not None:
            return quick
        text = _screened(arr, _INTEGER_TEXT, target, report)
        whole = pc.replace_substring_regex(text, pattern=r"\.0*$", replacement="")
        return _cast(whole, target, report)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        fractional = pc.not_equal(pc.floor(arr), arr) if pa.types.is_floating(kind) else None
        if fractional is not None:
            fractional = pc.or_(arrays.truthy(fractional), arrays.truthy(pc.is_nan(arr)))
            _fail(report, arr, fractional, target, " (it is not a whole number)")
            arr = pc.if_else(fractional, pa.scalar(None, kind), arr)
        return _cast(arr, target, report)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return _cast(arr, target, report)
    return _fail_all(arr, target, report)


def _to_float(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if arrays.is_text(kind):
        number = _quick(arr, target)
        if number is None:
            number = _cast(_screened(arr, _NUMBER_TEXT, target, report), target, report)
        return _finite(arr, number, target, report)
    if arrays.is_numeric(kind) or pa.types.is_boolean(kind):
        return _finite(arr, _cast(arr, target, report), target, report)
    return _fail_all(arr, target, report)


def _finite(arr: pa.Array, number: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    """NaN and infinities have no JSON form: they fail their rows."""
    bad = pc.invert(arrays.truthy(pc.is_finite(number)))
    bad = pc.and_(bad, pc.is_valid(number))
    if not arrays.any_true(bad):
        return number
    _fail(report, arr, bad, target, " (it is not a finite number)")
    return pc.if_else(bad, pa.scalar(None, number.type), number)


def _to_bool(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if arrays.is_text(kind):
        text = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        yes, no = pc.is_in(text, value_set=pa.array(_TRUE)), pc.is_in(text, value_set=pa.array(_FALSE))
        _fail(report, arr, pc.and_(pc.is_valid(arr), pc.invert(pc.or_(yes, no))), target)
        return pc.if_else(yes, True, pc.if_else(no, pa.scalar(False), pa.scalar(None, pa.bool_())))
    if pa.types.is_integer(kind):
        ok = pc.is_in(arr, value_set=pa.array([0, 1], kind))
        _fail(report, arr, pc.and_(pc.is_valid(arr), pc.invert(ok)), target, " (only 0 and 1 are)")
        return pc.cast(pc.if_else(ok, arr, pa.scalar(None, kind)), target)
    return _fail_all(arr, target, report)


def _to_timestamp(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if pa.types.is_timestamp(kind):
        instants = arr if kind.tz is not None else pc.cast(arr, pa.timestamp(kind.unit, tz="UTC"))
        return pc.cast(instants, target, safe=False)
    if pa.types.is_date(kind):
        return pc.cast(arr, target)
    if arrays.is_text(kind):
        return datetimes.parse_iso(arr, report)
    if arrays.is_numeric(kind):
        return datetimes.from_epoch(arr, report)
    return _fail_all(arr, target, report)


def _to_date(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    kind = arr.type
    if pa.types.is_timestamp(kind) or arrays.is_text(kind) or arrays.is_numeric(kind):
        return pc.cast(_to_timestamp(arr, datetimes.UTC, report), target)
    return _fail_all(arr, target, report)


def _to_list(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    if not arrays.is_list(arr.type):  # a single value becomes a one-element list
        present = pc.is_valid(arr)
        items = coerce(arr.filter(present), target.value_type, _shifted(report, arrays.positions(present)))
        offsets = arrays.list_offsets(pc.cast(present, pa.int64()))
        return pa.ListArray.from_arrays(offsets, items, type=target, mask=pc.invert(present))
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).cast(pa.int64())
    items = coerce(flat, target.value_type, _shifted(report, parents))
    offsets = arrays.list_offsets(arrays.list_lengths(arr))
    return pa.ListArray.from_arrays(offsets, items, type=target, mask=pc.is_null(arr))


def _to_struct(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    if not pa.types.is_struct(arr.type):
        return _fail_all(arr, target, report)
    children = []
    for field in target:
        index = arr.type.get_field_index(field.name)
        if index < 0:
            children.append(pa.nulls(len(arr), field.type))
            continue
        children.append(coerce(pc.struct_field(arr, [index]), field.type, report))
    return pa.StructArray.from_arrays(children, fields=list(target), mask=pc.is_null(arr))


def _to_map(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    if pa.types.is_struct(arr.type):
        return _struct_to_map(arr, target, report)
    if not pa.types.is_map(arr.type):
        return _fail_all(arr, target, report)
    entries = arrays.map_entries(arr)
    parents = pc.list_parent_indices(entries).cast(pa.int64())
    flat = pc.list_flatten(entries)
    keys = coerce(pc.struct_field(flat, [0]), pa.string(), _shifted(report, parents))
    items = coerce(pc.struct_field(flat, [1]), target.item_type, _shifted(report, parents))
    offsets = arrays.list_offsets(arrays.list_lengths(entries))
    return pa.MapArray.from_arrays(offsets, keys, items, type=target, mask=pc.is_null(arr))


def _struct_to_map(arr: pa.Array, target: pa.DataType, report: Report) -> pa.Array:
    """A JSON object read as a struct (its keys became fields), as a map: each row's entries are its
    fields that hold a value, in field order (``identityMap`` sent as ``{"ECID": [...], "Email": [...]}``)."""
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    rows = len(arr)
    present = np.zeros((rows, len(names)), dtype=bool)
    values = []
    for j in range(len(names)):
        child = pc.struct_field(arr, [j])
        present[:, j] = pc.and_(pc.is_valid(arr), pc.is_valid(child)).to_numpy(zero_copy_only=False)
        values.append(coerce(child, target.item_type, report))
    row_of, field_of = np.nonzero(present)  # row-major: each row's fields in order
    flat = pa.concat_arrays(values) if values else pa.array([], target.item_type)
    items = flat.take(pa.array(field_of * rows + row_of, pa.int64()))
    keys = pa.array(names, pa.string()).take(pa.array(field_of, pa.int64()))
    offsets = pa.array(np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32))
    return pa.MapArray.from_arrays(offsets, keys, items, type=target, mask=pc.is_null(arr))


def _shifted(report: Report, parents: pa.Array) -> Report:
    """A report for elements that names their parents' positions instead."""

    def shifted(where: pa.Array, values: pa.Array, describe: Any) -> None:
        report(parents.take(where), values, describe)

    return shifted


_CONVERTERS = {
    "string": _to_string,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "timestamp": _to_timestamp,
    "date": _to_date,
    "list": _to_list,
    "struct": _to_struct,
    "map": _to_map,
}

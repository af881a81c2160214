"""The functions of the expression language (documented in :mod:`headwater.engines.mapping.expressions`).

Each implementation takes whole Arrow arrays (one value per row) and returns one; arguments the table
marks constant arrive as Python values. A value a function cannot handle is reported through
:meth:`Env.fail` and becomes null, which fails that row only. The hashes loop over rows in Python
(hashlib: Arrow has no hashing kernel for text); everything else, ``uuid`` included, runs in Arrow kernels.
``iif`` and ``coalesce`` choose which rows each argument counts for, so :mod:`.evaluate` runs them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays, coerce, datetimes, values
from headwater.engines.mapping.results import Describe, Report, show

# Sizes an expression may produce. A value (one row's result of one function) is at most MAX_VALUE_BYTES;
# a longer one fails its row. The functions whose output can be far larger than their input are bounded
# before they run: lpad/rpad widths at MAX_PAD_WIDTH characters (checked when the expression is saved),
# replacestr per row from the number of matches. Every function result of one evaluation (one
# expression over one batch) together is at most Budget.total bytes; past it the batch's rows fail.
MAX_VALUE_BYTES = 1024 * 1024
MAX_PAD_WIDTH = 65_536
MIN_BUDGET_BYTES = 64 * 1024 * 1024
BUDGET_BYTES_PER_ROW = 64 * 1024


@dataclass
class Budget:
    """The bytes the function results of one evaluation may still take (shared by its calls)."""

    total: int = MIN_BUDGET_BYTES
    spent: int = 0
    exhausted: bool = False

    @classmethod
    def for_rows(cls, n: int) -> Budget:
        return cls(max(MIN_BUDGET_BYTES, n * BUDGET_BYTES_PER_ROW))


@dataclass
class Env:
    """What a function sees besides its arguments: the row count, the run's time, where to fail rows,
    and the size budget of the evaluation it is part of."""

    n: int
    now: datetime
    report: Report  # positions are rows of the batch being evaluated
    budget: Budget = field(default_factory=Budget)

    def fail(self, bad: pa.Array, vals: pa.Array, describe: Describe) -> None:
        bad = arrays.truthy(bad)
        if arrays.any_true(bad):
            self.report(arrays.positions(bad), vals.filter(bad), describe)


Impl = Callable[[Env, list[Any]], pa.Array]


@dataclass(frozen=True)
class Spec:
    impl: Impl | None  # None: a lazy form evaluated by the evaluator (iif, coalesce)
    min_args: int
    max_args: int | None
    constants: dict[int, tuple[type, ...]] = field(default_factory=dict)  # position -> literal types
    check: Callable[[list[Any]], str | None] | None = None  # validates constants before any data


# --- strings ---
def _unary_text(kernel: Callable[[pa.Array], pa.Array]) -> Impl:
    return lambda env, args: kernel(values.text(args[0]))


def _concat(env: Env, args: list[Any]) -> pa.Array:
    texts = [values.text(a) for a in args]
    if len(texts) == 1:
        return texts[0]
    joined = pc.binary_join_element_wise(*texts, "", null_handling="replace", null_replacement="")
    all_null = functools.reduce(pc.and_, [pc.is_null(t) for t in texts])
    return pc.if_else(all_null, pa.scalar(None, pa.string()), joined)


def _substr(env: Env, args: list[Any]) -> pa.Array:
    start, length = args[1], args[2] if len(args) > 2 else None
    stop = None if length is None or (start < 0 <= start + length) else start + length
    if stop is None:
        return pc.utf8_slice_codeunits(values.text(args[0]), start)
    return pc.utf8_slice_codeunits(values.text(args[0]), start, stop)


def _left(env: Env, args: list[Any]) -> pa.Array:
    return pc.utf8_slice_codeunits(values.text(args[0]), 0, max(args[1], 0))


def _right(env: Env, args: list[Any]) -> pa.Array:
    text = values.text(args[0])
    if args[1] <= 0:
        return pc.utf8_slice_codeunits(text, 0, 0)
    return pc.utf8_slice_codeunits(text, -args[1])


def _pad(kernel: Callable[..., pa.Array]) -> Impl:
    def pad(env: Env, args: list[Any]) -> pa.Array:
        return kernel(values.text(args[0]), width=max(args[1], 0), padding=args[2] if len(args) > 2 else " ")

    return pad


def _replacestr(env: Env, args: list[Any]) -> pa.Array:
    text, find, repl = values.text(args[0]), args[1], args[2]
    growth = len(repl.encode()) - len(find.encode())
    if growth > 0:  # rows whose result would pass the value limit fail before the kernel runs
        size = pc.add(pc.binary_length(text), pc.multiply(pc.count_substring(text, pattern=find), growth))
        over = arrays.truthy(pc.greater(size, MAX_VALUE_BYTES))
        if arrays.any_true(over):
            env.fail(over, size, _too_long)
            text = pc.if_else(over, pa.scalar(None, pa.string()), text)
    return pc.replace_substring(text, pattern=find, replacement=repl)


def _too_long(size: Any) -> str:
    return f"the result would be {size} bytes, more than the {MAX_VALUE_BYTES} an expression value may be"


def _split(env: Env, args: list[Any]) -> pa.Array:
    return pc.split_pattern(values.text(args[0]), pattern=args[1])


def _join(env: Env, args: list[Any]) -> pa.Array:
    sep, rest = args[0], args[1:]
    if len(rest) == 1 and arrays.is_list(arrays.normalize(rest[0]).type):
        lists = coerce.coerce(rest[0], pa.list_(pa.string()), values.ignore)
        flat, parents = pc.list_flatten(lists), pc.list_parent_indices(lists)
        keep = pc.is_valid(flat)
        counts = pc.value_counts(parents.filter(keep))
        lengths = _counts_per_row(counts, len(lists))
        compact = pa.ListArray.from_arrays(
            arrays.list_offsets(lengths), flat.filter(keep), mask=pc.is_null(lists)
        )
        return pc.binary_join(compact, sep)
    texts = [values.text(a) for a in rest]
    return pc.binary_join_element_wise(*texts, sep, null_handling="skip")


def _counts_per_row(counts: pa.Array, n: int) -> pa.Array:
    """Dense per-row counts from ``value_counts`` of row indices."""
    rows = counts.field("values").cast(pa.int64())
    found = pc.index_in(arrays.arange(n), value_set=rows)
    return pc.fill_null(pc.take(counts.field("counts"), found), 0)


def _equals(fold: bool) -> Impl:
    def equals(env: Env, args: list[Any]) -> pa.Array:
        left, right = values.text(args[0]), values.text(args[1])
        if fold:
            left, right = pc.utf8_lower(left), pc.utf8_lower(right)
        return values.equal(left, right)

    return equals


def _matches(env: Env, args: list[Any]) -> pa.Array:
    return pc.match_substring_regex(values.text(args[0]), pattern=args[1])


def _size(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    kind = arr.type
    if pa.types.is_null(kind):
        return pa.nulls(len(arr), pa.int64())
    if pa.types.is_map(kind):
        return pc.list_value_length(arrays.map_entries(arr)).cast(pa.int64())
    if arrays.is_list(kind):
        return pc.list_value_length(arr).cast(pa.int64())
    return pc.utf8_length(values.text(arr)).cast(pa.int64())


def _is_empty(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    kind = arr.type
    if pa.types.is_null(kind):
        return arrays.broadcast(True, len(arr), pa.bool_())
    if pa.types.is_map(kind) or arrays.is_list(kind):
        empty = pc.equal(_size(env, [arr]), 0)
    elif arrays.is_text(kind):
        empty = pc.equal(arr, "")
    else:
        empty = pc.is_null(arr)
    return pc.fill_null(empty, True)


# --- numbers and conversion ---
def _to_integer(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    if pa.types.is_floating(arr.type) or pa.types.is_decimal(arr.type):
        arr = pc.trunc(arr.cast(pa.float64()))
    return coerce.coerce(arr, pa.int64(), env.report)


def _to_float(env: Env, args: list[Any]) -> pa.Array:
    return coerce.coerce(args[0], pa.float64(), env.report)


def _to_string(env: Env, args: list[Any]) -> pa.Array:
    return coerce.coerce(args[0], pa.string(), env.report)


def _extreme(kernel: Callable[..., pa.Array]) -> Impl:
    def extreme(env: Env, args: list[Any]) -> pa.Array:
        unified = values.unify(list(args))
        if pa.types.is_null(unified[0].type):
            return unified[0]
        if pa.types.is_nested(unified[0].type):
            unified = [values.text(a) for a in unified]
        return kernel(*unified, skip_nulls=True)

    return extreme


# --- dates and times ---
def _now(env: Env, args: list[Any]) -> pa.Array:
    return arrays.broadcast(pa.scalar(env.now, datetimes.UTC), env.n)


def _timestamp(env: Env, args: list[Any]) -> pa.Array:
    return arrays.broadcast(int(env.now.timestamp() * 1000), env.n, pa.int64())


def _date(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    zone = args[2] if len(args) > 2 else "UTC"
    if len(args) < 2 or not arrays.is_text(arr.type):
        return values.instants(arr, env.report)
    return datetimes.parse_with(arr, _pattern(args[1]), env.report, zone)


def _format(unit: str) -> Impl:
    def format_(env: Env, args: list[Any]) -> pa.Array:
        zone = args[2] if len(args) > 2 else "UTC"
        return datetimes.format_with(values.instants(args[0], env.report, unit), _pattern(args[1]), zone)

    return format_


_PARTS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "year": pc.year,
    "quarter": pc.quarter,
    "month": pc.month,
    "week": pc.iso_week,
    "day": pc.day,
    "dayofyear": pc.day_of_year,
    "dayofweek": lambda t: pc.day_of_week(t, count_from_zero=False, week_start=1),
    "hour": pc.hour,
    "minute": pc.minute,
    "second": pc.second,
    "millisecond": pc.millisecond,
}


def _date_part(env: Env, args: list[Any]) -> pa.Array:
    ts = values.instants(args[1], env.report)
    return _PARTS[args[0].lower()](ts).cast(pa.int64())


@functools.lru_cache(maxsize=256)
def _pattern(text: str) -> datetimes.DatePattern:
    return datetimes.compile_pattern(text)


def _check_pattern(position: int) -> Callable[[list[Any]], str | None]:
    def check(args: list[Any]) -> str | None:
        if len(args) <= position:
            return None
        try:
            _pattern(args[position])
        except datetimes.PatternError as exc:
            return str(exc)
        return _check_zone(args, position + 1)

    return check


def _check_zone(args: list[Any], position: int) -> str | None:
    if len(args) <= position:
        return None
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("us")), timezone=args[position])
    except (pa.ArrowException, ValueError):
        return f"unknown time zone {args[position]!r} (use an IANA name such as Europe/Paris, or UTC)"
    return None


# --- lists, nulls and logic ---
def _first(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    if not arrays.is_list(arr.type):
        return arr
    return values.element(arr, arrays.broadcast(0, len(arr), pa.int64()))


def _last(env: Env, args: list[Any]) -> pa.Array:
    arr = arrays.normalize(args[0])
    if not arrays.is_list(arr.type):
        return arr
    return values.element(arr, pc.subtract(arrays.list_lengths(arr), 1))


def _nullify(env: Env, args: list[Any]) -> pa.Array:
    return pa.nulls(env.n)


def _decode(env: Env, args: list[Any]) -> pa.Array:
    key, rest = args[0], args[1:]
    pairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
    default = rest[-1] if len(rest) % 2 else pa.nulls(len(key))
    unified = values.unify([v for _, v in pairs] + [default])
    result = unified[-1]
    for (candidate, _), value in zip(reversed(pairs), reversed(unified[:-1]), strict=True):
        result = pc.if_else(values.equal(key, candidate), value, result)
    return result


# --- identifiers and hashes ---
_HEX = pa.array(list("0123456789abcdef"))
_VARIANT = pa.array(["8", "9", "a", "b"])


def _uuid(env: Env, args: list[Any]) -> pa.Array:
    """Random (version 4) UUIDs: random bytes as hex text, cut and stamped by Arrow kernels."""
    n = env.n
    if n == 0:
        return pa.array([], pa.string())
    digits = os.urandom(16 * n).hex().encode()
    offsets = pc.multiply(arrays.arange(n + 1), 32).cast(pa.int32())
    hexes = pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(digits))

    def cut(start: int, stop: int) -> pa.Array:
        return pc.utf8_slice_codeunits(hexes, start, stop)

    variant = _VARIANT.take(pc.bit_wise_and(pc.index_in(cut(16, 17), value_set=_HEX), 3))
    return pc.binary_join_element_wise(
        cut(0, 8),
        cut(8, 12),
        pc.binary_join_element_wise("4", cut(13, 16), ""),
        pc.binary_join_element_wise(variant, cut(17, 20), ""),
        cut(20, 32),
        "-",
    )


# Hashes: per-row Python (hashlib), as Arrow has no hashing kernel for text.


def _digest(algorithm: str) -> Impl:
    def digest(env: Env, args: list[Any]) -> pa.Array:
        texts = values.text(args[0]).to_pylist()
        out = [None if t is None else hashlib.new(algorithm, t.encode()).hexdigest() for t in texts]
        return pa.array(out, pa.string())

    return digest


def _crc32(env: Env, args: list[Any]) -> pa.Array:
    texts = values.text(args[0]).to_pylist()
    return pa.array([None if t is None else zlib.crc32(t.encode()) for t in texts], pa.int64())


def _nonempty(position: int, what: str) -> Callable[[list[Any]], str | None]:
    def check(args: list[Any]) -> str | None:
        return f"{what} must not be empty" if len(args) > position and args[position] == "" else None

    return check


def _pad_args(args: list[Any]) -> str | None:
    if isinstance(args[1], int) and args[1] > MAX_PAD_WIDTH:
        return f"the width must be at most {MAX_PAD_WIDTH} characters, not {args[1]}"
    if len(args) > 2 and len(args[2]) != 1:
        return f"the padding must be exactly one character, not {show(args[2])}"
    return None


def _bounded(impl: Impl) -> Impl:
    """``impl`` whose text values over MAX_VALUE_BYTES fail their rows (and become null), and whose
    result is charged to the evaluation's budget: once the budget is spent, every row fails."""

    def bounded(env: Env, args: list[Any]) -> pa.Array:
        if env.budget.exhausted:
            return pa.nulls(env.n)
        result = impl(env, args)
        if isinstance(result, pa.ChunkedArray):
            result = result.combine_chunks()
        if pa.types.is_string(result.type) or pa.types.is_large_string(result.type):
            size = pc.binary_length(result)
            over = arrays.truthy(pc.greater(size, MAX_VALUE_BYTES))
            if arrays.any_true(over):
                env.fail(over, size, _too_long)
                result = pc.if_else(over, pa.scalar(None, result.type), result)
        env.budget.spent += result.nbytes
        if env.budget.spent > env.budget.total:
            env.budget.exhausted = True
            total = env.budget.total
            env.fail(
                pa.array([True] * env.n),
                pa.nulls(env.n),
                lambda _: (
                    f"the expression's values for this batch pass {total} bytes; map fewer or smaller values"
                ),
            )
            return pa.nulls(env.n)
        return result

    return bounded


def _check_regex(args: list[Any]) -> str | None:
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), pattern=args[1])
    except (pa.ArrowException, ValueError) as exc:
        return f"invalid regular expression {show(args[1])}: {arrays.first_line(exc)}"
    return None


def _check_part(args: list[Any]) -> str | None:
    if str(args[0]).lower() not in _PARTS:
        return f"unknown date part {show(args[0])}; use one of {', '.join(_PARTS)}"
    return None


_INT, _STR = (int,), (str,)
FUNCTIONS: dict[str, Spec] = {
    "concat": Spec(_concat, 1, None),
    "lower": Spec(_unary_text(pc.utf8_lower), 1, 1),
    "lcase": Spec(_unary_text(pc.utf8_lower), 1, 1),
    "upper": Spec(_unary_text(pc.utf8_upper), 1, 1),
    "ucase": Spec(_unary_text(pc.utf8_upper), 1, 1),
    "trim": Spec(_unary_text(pc.utf8_trim_whitespace), 1, 1),
    "ltrim": Spec(_unary_text(pc.utf8_ltrim_whitespace), 1, 1),
    "rtrim": Spec(_unary_text(pc.utf8_rtrim_whitespace), 1, 1),
    "substr": Spec(_substr, 2, 3, {1: _INT, 2: _INT}),
    "left": Spec(_left, 2, 2, {1: _INT}),
    "right": Spec(_right, 2, 2, {1: _INT}),
    "lpad": Spec(_pad(pc.utf8_lpad), 2, 3, {1: _INT, 2: _STR}, _pad_args),
    "rpad": Spec(_pad(pc.utf8_rpad), 2, 3, {1: _INT, 2: _STR}, _pad_args),
    "replacestr": Spec(_replacestr, 3, 3, {1: _STR, 2: _STR}, _nonempty(1, "the text to find")),
    "split": Spec(_split, 2, 2, {1: _STR}, _nonempty(1, "the separator")),
    "join": Spec(_join, 2, None, {0: _STR}),
    "equals": Spec(_equals(False), 2, 2),
    "equalsignorecase": Spec(_equals(True), 2, 2),
    "matches_regex": Spec(_matches, 2, 2, {1: _STR}, _check_regex),
    "len": Spec(_size, 1, 1),
    "size_of": Spec(_size, 1, 1),
    "is_empty": Spec(_is_empty, 1, 1),
    "to_integer": Spec(_to_integer, 1, 1),
    "to_bigint": Spec(_to_integer, 1, 1),
    "to_float": Spec(_to_float, 1, 1),
    "to_decimal": Spec(_to_float, 1, 1),
    "to_string": Spec(_to_string, 1, 1),
    "min": Spec(_extreme(pc.min_element_wise), 1, None),
    "max": Spec(_extreme(pc.max_element_wise), 1, None),
    "now": Spec(_now, 0, 0),
    "timestamp": Spec(_timestamp, 0, 0),
    "date": Spec(_date, 1, 3, {1: _STR, 2: _STR}, _check_pattern(1)),
    "format": Spec(_format("ms"), 2, 3, {1: _STR, 2: _STR}, _check_pattern(1)),
    "dformat": Spec(_format("ms"), 2, 3, {1: _STR, 2: _STR}, _check_pattern(1)),
    "date_part": Spec(_date_part, 2, 2, {0: _STR}, _check_part),
    "iif": Spec(None, 3, 3),
    "coalesce": Spec(None, 1, None),
    "decode": Spec(_decode, 3, None),
    "first": Spec(_first, 1, 1),
    "last": Spec(_last, 1, 1),
    "nullify": Spec(_nullify, 0, 0),
    "uuid": Spec(_uuid, 0, 0),
    "guid": Spec(_uuid, 0, 0),
    "sha1": Spec(_digest("sha1"), 1, 1),
    "sha256": Spec(_digest("sha256"), 1, 1),
    "sha512": Spec(_digest("sha512"), 1, 1),
    "md5": Spec(_digest("md5"), 1, 1),
    "crc32": Spec(_crc32, 1, 1),
}
# Every function's result is bounded (see MAX_VALUE_BYTES); iif and coalesce only choose among results.
FUNCTIONS = {
    name: Spec(_bounded(spec.impl), spec.min_args, spec.max_args, spec.constants, spec.check)
    if spec.impl is not None
    else spec
    for name, spec in FUNCTIONS.items()
}

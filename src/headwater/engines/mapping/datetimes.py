"""Dates and times over Arrow arrays: ISO 8601 parsing, epoch numbers, and Java-style patterns.

Every instant is a ``timestamp[us, tz=UTC]``. Parsing is vectorized: a pattern becomes an RE2 regular
expression with named groups (``pyarrow.compute.extract_regex``), the captured parts are reassembled
into a canonical ISO string and cast by Arrow. Impossible dates that match the shape (``2024-02-30``)
are found by :func:`headwater.engines.mapping.arrays.guarded` and fail only their rows.

Pattern letters (java.time.format.DateTimeFormatter, the subset Data Prep users write):

    yyyy / uuuu  year (4 digits)             yy   two-digit year (parsed as 20yy)
    MM / M       month number                MMM  Jan ... Dec       MMMM  January ... December
    dd / d       day of month                EEE  Mon ... Sun       EEEE  Monday ... (ignored when parsing)
    HH / H       hour 0-23                   hh / h  hour 1-12, with  a  (AM / PM)
    mm / m       minute                      ss / s  second
    S...         fraction of second, as many digits as letters (SSS = milliseconds)
    X XX XXX     zone offset: Z, +02, +0200, +02:00      x / Z / ZZZZZ  the same without Z for zero
    'text'       literal text ('' is a quote); other non-letters are literal (- : / . T space ...)

Zone names (``z``, ``VV``) are not supported: write an offset, or pass a zone to ``date``/``format``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from headwater.engines.mapping import arrays
from headwater.engines.mapping.results import Describe, Report, show

UTC = pa.timestamp("us", tz="UTC")
NAIVE = pa.timestamp("us")
EPOCH_SECONDS_BELOW = 100_000_000_000  # |n| below this is epoch seconds, above it epoch milliseconds
_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)"
_ZONED = re.compile(r"T.*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?)?" + _OFFSET + "?$"
).pattern
_IMPOSSIBLE = "is not a valid date and time (a day, hour or minute out of range)"
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


class PatternError(ValueError):
    """A date pattern that cannot be used (unknown letter, zone names, a part given twice)."""


# --- ISO 8601 and epochs ---
def parse_iso(strings: pa.Array, report: Report, zone: str = "UTC") -> pa.Array:
    """Parse ISO 8601 date-times (``2024-01-05T10:00:00Z``, ``2024-01-05 10:00``, ``2024-01-05``).

    Text without an offset is in ``zone``. Digits only are epoch seconds or milliseconds
    (:func:`from_epoch`). Anything else is reported and null.

    Arrow's cast does the common case (every value with an offset, or every one without) at once; when
    a few values differ, only those go through the slower normalizing path.
    """
    quick = _quick_cast(strings, zone)
    if quick is not None:
        return quick
    n = len(strings)
    try:
        cast, failed = arrays.bisect(lambda o, k: pc.cast(strings.slice(o, k), UTC), n, UTC, limit=n // 64)
    except arrays.TooManyFailures:
        return _parse_iso_slowly(strings, report, zone)
    rows = [row for row, _ in failed]
    where = pa.array(rows, pa.int64())

    def shifted(at: pa.Array, values: pa.Array, describe: Describe) -> None:
        report(where.take(at), values, describe)

    fixed = _parse_iso_slowly(strings.take(where), shifted, zone)
    return pc.replace_with_mask(cast, arrays.mask_at(n, rows), fixed)


def _parse_iso_slowly(strings: pa.Array, report: Report, zone: str) -> pa.Array:
    text = pc.utf8_trim_whitespace(strings)
    text = pc.replace_substring_regex(text, pattern=r"^(\d{4}-\d{2}-\d{2})$", replacement=r"\1T00:00:00")
    text = pc.replace_substring_regex(text, pattern=r"([.,]\d{6})\d+", replacement=r"\1")
    text = pc.replace_substring_regex(text, pattern=r"[,]", replacement=".")
    text = pc.replace_substring_regex(text, pattern=r"z$", replacement="Z")
    shaped = arrays.truthy(pc.match_substring_regex(text, _ISO))
    zoned = arrays.truthy(pc.match_substring_regex(text, _OFFSET + "$"))
    with_zone = pc.if_else(pc.and_(shaped, zoned), text, pa.scalar(None, pa.string()))
    local = pc.if_else(pc.and_(shaped, pc.invert(zoned)), text, pa.scalar(None, pa.string()))
    aware = arrays.guarded(lambda a: pc.cast(a, UTC), with_zone, UTC, report, _IMPOSSIBLE)
    naive = arrays.guarded(lambda a: pc.cast(a, NAIVE), local, NAIVE, report, _IMPOSSIBLE)
    result = pc.coalesce(aware, in_zone(naive, zone))
    digits = arrays.truthy(pc.match_substring_regex(text, r"^[+-]?\d{1,19}$"))
    if arrays.any_true(digits):
        numbers = pc.cast(pc.if_else(digits, text, pa.scalar(None, pa.string())), pa.int64())
        result = pc.coalesce(result, from_epoch(numbers, report))
    bad = pc.and_(pc.is_valid(strings), pc.invert(pc.or_(shaped, digits)))
    _report(report, strings, bad, "is not an ISO 8601 date-time such as 2024-01-05T10:00:00Z")
    return result


def _quick_cast(strings: pa.Array, zone: str) -> pa.Array | None:
    """The common case in one Arrow cast: every value ISO 8601 with an offset, or every one without."""
    try:
        return pc.cast(strings, UTC)
    except (pa.ArrowInvalid, ValueError):
        pass
    # A failing cast to naive timestamps is slow (~0.7 s per million values carrying offsets), so it
    # is only tried when the first values have no offset.
    sample = [v for v in strings.slice(0, 64).to_pylist() if isinstance(v, str)]
    if any(_ZONED.search(v.strip()) for v in sample):
        return None
    try:
        return in_zone(pc.cast(strings, NAIVE), zone)
    except (pa.ArrowInvalid, ValueError):
        return None


def in_zone(naive: pa.Array, zone: str) -> pa.Array:
    """Wall-clock times in ``zone`` (an IANA name or an offset such as +02:00) as UTC instants."""
    if zone in ("UTC", "Z", "+00:00"):
        return pc.cast(naive, UTC)
    return pc.cast(
        pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest"), UTC
    )


def from_epoch(numbers: pa.Array, report: Report, unit: str | None = None) -> pa.Array:
    """Epoch numbers as instants: seconds below 1e11 in magnitude, milliseconds above (or ``unit``)."""
    values = numbers.cast(pa.float64()) if pa.types.is_decimal(numbers.type) else numbers
    small = pc.less(pc.abs(values), EPOCH_SECONDS_BELOW) if unit is None else None
    if unit == "s":
        small = pc.is_valid(values)
    elif unit == "ms":
        small = pc.is_null(values)

    def convert(a: pa.Array, factor: int) -> pa.Array:
        scaled = pc.multiply_checked(a, factor)
        if pa.types.is_floating(scaled.type):
            scaled = pc.cast(pc.round(scaled), pa.int64())
        return pc.cast(scaled, pa.int64()).cast(UTC)

    seconds = pc.if_else(small, values, pa.scalar(None, values.type))
    millis = pc.if_else(small, pa.scalar(None, values.type), values)
    return pc.coalesce(
        arrays.guarded(lambda a: convert(a, 1_000_000), seconds, UTC, report),
        arrays.guarded(lambda a: convert(a, 1_000), millis, UTC, report),
    )


def to_iso(ts: pa.Array) -> pa.Array:
    """UTC instants as ISO 8601 text with a ``Z``; sub-second digits only when the array needs them."""
    instants = pc.cast(ts, UTC)
    micros = pc.cast(instants, pa.int64())
    unit = "us"
    if pc.all(pc.equal(pc.remainder(micros, 1_000_000), 0)).as_py() is not False:
        unit = "s"
    elif pc.all(pc.equal(pc.remainder(micros, 1000), 0)).as_py() is not False:
        unit = "ms"
    coarse = pc.cast(instants, pa.timestamp(unit, tz="UTC"))
    return pc.strftime(coarse, format="%Y-%m-%dT%H:%M:%SZ")


def _report(report: Report, values: pa.Array, bad: pa.Array, what: str) -> None:
    bad = arrays.truthy(bad)
    if arrays.any_true(bad):
        report(arrays.positions(bad), values.filter(bad), lambda v: f"{show(v)} {what}")


# --- Java-style patterns ---
@dataclass
class _Part:
    letter: str  # pattern letter, or "" for literal text
    count: int = 0
    text: str = ""


@dataclass
class DatePattern:
    """A compiled Java-style pattern: a regex for parsing and a recipe for formatting."""

    source: str
    parts: list[_Part]
    regex: str = ""
    groups: dict[str, str] = field(default_factory=dict)  # group name -> pattern letter


_PARSE_LETTERS = set("yuMLdHhmsSaEXxZ")


def compile_pattern(pattern: str) -> DatePattern:
    """Tokenize a Java-style date pattern (PatternError names the first problem)."""
    parts: list[_Part] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            end = i + 1
            text = ""
            while True:
                if end >= len(pattern):
                    raise PatternError(f"unterminated quote in date pattern {pattern!r}")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text, end = text + "'", end + 2
                        continue
                    break
                text, end = text + pattern[end], end + 1
            parts.append(_Part("", text=text if end > i + 1 else "'"))
            i = end + 1
        elif char.isalpha():
            run = len(pattern[i:]) - len(pattern[i:].lstrip(char))
            if char not in _PARSE_LETTERS:
                hint = " (zone names are not supported: use X for an offset)" if char in "zVO" else ""
                raise PatternError(f"unsupported letter {char!r} in date pattern {pattern!r}{hint}")
            parts.append(_Part(char, run))
            i += run
        else:
            parts.append(_Part("", text=char))
            i += 1
    compiled = DatePattern(pattern, parts)
    compiled.regex, compiled.groups = _regex(parts, pattern)
    return compiled


def _regex(parts: list[_Part], pattern: str) -> tuple[str, dict[str, str]]:
    out, groups = ["^"], {}
    for part in parts:
        if not part.letter:
            out.append("".join(c if c.isalnum() else f"\\x{{{ord(c):x}}}" for c in part.text))
            continue
        name, body = _group(part)
        if name == "ignore":
            out.append(f"(?:{body})")
            continue
        if name in groups:
            raise PatternError(f"date pattern {pattern!r} gives the {name} twice")
        groups[name] = part.letter
        out.append(f"(?P<{name}>{body})")
    out.append("$")
    return "".join(out), groups


def _group(part: _Part) -> tuple[str, str]:
    letter, n = part.letter, part.count
    digits = r"\d{2}" if n == 2 else r"\d{1,2}"
    if letter in "yu":
        return ("year2", r"\d{2}") if n == 2 else ("year", r"\d{4}")
    if letter in "ML":
        if n >= 3:
            return "monthname", r"[A-Za-z]{3}" if n == 3 else r"[A-Za-z]+"
        return "month", digits
    table = {"d": "day", "H": "hour", "h": "hour12", "m": "minute", "s": "second"}
    if letter in table:
        return table[letter], digits
    if letter == "S":
        return "fraction", rf"\d{{{n}}}"
    if letter == "a":
        return "ampm", r"[AaPp][Mm]"
    if letter == "E":
        return "ignore", r"[A-Za-z]+"
    return "offset", _OFFSET


def parse_with(strings: pa.Array, pattern: DatePattern, report: Report, zone: str = "UTC") -> pa.Array:
    """Parse text with a compiled pattern; rows that do not match are reported and null."""
    text = pc.utf8_trim_whitespace(strings)
    parts = pc.extract_regex(text, pattern=pattern.regex)
    matched = pc.is_valid(parts)
    _report(
        report,
        strings,
        pc.and_(pc.is_valid(strings), pc.invert(matched)),
        f"does not match {pattern.source!r}",
    )
    if not pattern.groups:
        return pa.nulls(len(strings), UTC)
    names = list(pattern.groups)

    def get(name: str) -> pa.Array:
        return pc.struct_field(parts, [names.index(name)])

    have = set(names)
    year = get("year") if "year" in have else _prefixed(get("year2"), "20") if "year2" in have else None
    iso = pc.binary_join_element_wise(
        _or(year, "1970"),
        "-",
        _month(get, have),
        "-",
        _pad(get("day")) if "day" in have else _const("01"),
        "T",
        _hour(get, have),
        ":",
        _pad(get("minute")) if "minute" in have else _const("00"),
        ":",
        _pad(get("second")) if "second" in have else _const("00"),
        ".",
        _fraction(get("fraction")) if "fraction" in have else _const("000000"),
        "",
    )
    _report(report, strings, pc.and_(matched, pc.is_null(iso)), "has an unknown month name")

    def original(where: pa.Array, _values: pa.Array, describe: Describe) -> None:
        report(where, strings.take(where), describe)

    if "offset" in have:
        iso = pc.binary_join_element_wise(iso, _normal_offset(get("offset")), "")
        return arrays.guarded(lambda a: pc.cast(a, UTC), iso, UTC, original, _IMPOSSIBLE)
    naive = arrays.guarded(lambda a: pc.cast(a, NAIVE), iso, NAIVE, original, _IMPOSSIBLE)
    return in_zone(naive, zone)


def _const(text: str) -> pa.Scalar:
    return pa.scalar(text)


def _or(value: pa.Array | None, default: str) -> pa.Array | pa.Scalar:
    return value if value is not None else _const(default)


def _pad(value: pa.Array, width: int = 2) -> pa.Array:
    return pc.utf8_lpad(value, width=width, padding="0")


def _prefixed(value: pa.Array, prefix: str) -> pa.Array:
    return pc.binary_join_element_wise(prefix, value, "")


def _month(get: Callable[[str], pa.Array], have: set[str]) -> pa.Array | pa.Scalar:
    if "month" in have:
        return _pad(get("month"))
    if "monthname" not in have:
        return _const("01")
    names = pc.utf8_lower(get("monthname"))
    full = pc.index_in(names, value_set=pa.array(_MONTHS))
    short = pc.index_in(names, value_set=pa.array([m[:3] for m in _MONTHS]))
    index = pc.coalesce(full, short)  # unknown names stay null and fail the cast below
    return _pad(pc.cast(pc.add(index, 1), pa.string()))


def _hour(get: Callable[[str], pa.Array], have: set[str]) -> pa.Array | pa.Scalar:
    if "hour" in have:
        return _pad(get("hour"))
    if "hour12" not in have:
        return _const("00")
    hour = pc.remainder(pc.cast(get("hour12"), pa.int64()), 12)
    if "ampm" in have:
        pm = pc.equal(pc.utf8_lower(get("ampm")), "pm")
        hour = pc.add(hour, pc.if_else(pm, 12, 0))
    return _pad(pc.cast(hour, pa.string()))


def _fraction(value: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(pc.utf8_rpad(value, width=6, padding="0"), 0, 6)


def _normal_offset(value: pa.Array) -> pa.Array:
    text = pc.replace_substring_regex(value, pattern=r"^[Zz]$", replacement="+00:00")
    text = pc.replace_substring_regex(text, pattern=r"^([+-]\d{2})(\d{2})$", replacement=r"\1:\2")
    return pc.replace_substring_regex(text, pattern=r"^([+-]\d{2})$", replacement=r"\1:00")


# --- formatting ---
_STRFTIME = {
    ("y", 2): "%y",
    ("u", 2): "%y",
    ("M", 2): "%m",
    ("L", 2): "%m",
    ("M", 3): "%b",
    ("L", 3): "%b",
    ("d", 2): "%d",
    ("H", 2): "%H",
    ("h", 2): "%I",
    ("m", 2): "%M",
    ("a", 1): "%p",
    ("E", 4): "%A",
}


def format_with(ts: pa.Array, pattern: DatePattern, zone: str = "UTC") -> pa.Array:
    """Format instants with a compiled pattern, in ``zone`` (an IANA name or UTC)."""
    local = pc.cast(ts, pa.timestamp("us", tz=zone)) if zone != "UTC" else ts
    pieces: list[pa.Array | str] = []
    fmt = ""
    for part in pattern.parts:
        spec = _strftime(part)
        if spec is not None:
            fmt += spec
            continue
        if fmt:
            pieces.append(pc.strftime(local, format=fmt))
            fmt = ""
        pieces.append(_component(local, part, zone))
    if fmt:
        pieces.append(pc.strftime(local, format=fmt))
    if not pieces:
        return pc.cast(pa.repeat(pa.scalar(""), len(ts)), pa.string())
    result = pc.binary_join_element_wise(*pieces, "")
    return pc.if_else(pc.is_valid(ts), result, pa.scalar(None, pa.string()))


def _strftime(part: _Part) -> str | None:
    if not part.letter:
        return part.text.replace("%", "%%")
    if part.letter in "yu" and part.count != 2:
        return "%Y"
    if part.letter in "ML" and part.count >= 4:
        return "%B"
    if part.letter == "E":
        return "%A" if part.count >= 4 else "%a"
    return _STRFTIME.get((part.letter, min(part.count, 4) if part.letter in "ML" else part.count))


def _component(local: pa.Array, part: _Part, zone: str) -> pa.Array:
    letter, n = part.letter, part.count
    number: pa.Array | None = None
    if letter == "s":
        number = pc.second(local)
    elif letter in "ML":
        number = pc.month(local)
    elif letter == "d":
        number = pc.day(local)
    elif letter == "H":
        number = pc.hour(local)
    elif letter == "m":
        number = pc.minute(local)
    elif letter == "h":
        hour = pc.remainder(pc.hour(local), 12)
        number = pc.if_else(pc.equal(hour, 0), 12, hour)
    if number is not None:
        text = pc.cast(number, pa.string())
        return _pad(text, 2) if n >= 2 else text
    if letter == "S":
        micros = pc.remainder(pc.cast(pc.cast(local, UTC), pa.int64()), 1_000_000)
        digits = _pad(pc.cast(micros, pa.string()), 6)
        return pc.utf8_rpad(pc.utf8_slice_codeunits(digits, 0, min(n, 6)), width=n, padding="0")
    # zone offsets
    offset = pc.strftime(local, format="%z")  # +0200
    colon = pc.replace_substring_regex(offset, pattern=r"^([+-]\d{2})(\d{2})$", replacement=r"\1:\2")
    if letter == "X" and n == 1:
        text = pc.replace_substring_regex(offset, pattern=r"^([+-]\d{2})00$", replacement=r"\1")
    elif (letter == "X" and n >= 3) or (letter == "Z" and n >= 5) or (letter == "x" and n >= 3):
        text = colon
    else:
        text = offset
    if letter == "X" or (letter == "Z" and n >= 5):
        text = pc.replace_substring_regex(text, pattern=r"^\+00(:?00)?$", replacement="Z")
    return text

"""Java date patterns (``dd/MM/yyyy HH:mm:ss``, as AEP's ``deltaColumn.dateFormat`` takes them) as
strptime formats (``%d/%m/%Y %H:%M:%S``).

Supported letters: ``yyyy``/``yy`` (``uuuu``), ``MM``/``M``, ``MMM``/``MMMM`` (month names), ``dd``/``d``,
``HH``/``H``, ``hh``/``h`` with ``a``, ``mm``/``m``, ``ss``/``s``, ``S``… (a fraction of a second),
``EEE``/``EEEE`` (day names) and the offsets ``X``, ``XX``, ``XXX``, ``x``…, ``Z``… (``Z``, ``+01:00``,
``+0100``); text in single quotes (``'T'``), punctuation and a lone ``T`` (document 002 writes
``yyyy-MM-ddTHH:mm:ssZ`` for Dynamics) are literal. ``YYYY`` and ``DD`` are read as
``yyyy`` and ``dd``: AEP's own example writes ``YYYY-MM-DD`` for a calendar date. Anything else (week
fields, day of year, zone names, eras) is refused, as is a pattern without a year, a month and a day.
"""

from __future__ import annotations

_FIXED = {
    "yyyy": "%Y",
    "uuuu": "%Y",
    "YYYY": "%Y",
    "yy": "%y",
    "uu": "%y",
    "YY": "%y",
    "MMMM": "%B",
    "MMM": "%b",
    "MM": "%m",
    "M": "%m",
    "dd": "%d",
    "d": "%d",
    "DD": "%d",
    "HH": "%H",
    "H": "%H",
    "hh": "%I",
    "h": "%I",
    "mm": "%M",
    "m": "%M",
    "ss": "%S",
    "s": "%S",
    "a": "%p",
    "EEEE": "%A",
    "EEE": "%a",
    "E": "%a",
}
_OFFSETS = {"X", "XX", "XXX", "x", "xx", "xxx", "Z", "ZZ", "ZZZ"}
_NEEDED = {"%Y": "year", "%m": "month", "%d": "day"}


class UnsupportedPattern(ValueError):
    """A pattern :func:`strptime_format` cannot translate; the message says why."""


def strptime_format(pattern: str) -> str:
    """The strptime format of the Java date pattern ``pattern`` (UnsupportedPattern if there is none)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise UnsupportedPattern("must be a date pattern such as yyyy-MM-dd HH:mm:ss")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                raise UnsupportedPattern(f"{pattern!r} has an unclosed quote")
            literal = pattern[i + 1 : end] or "'"  # '' is a quote
            out.append(literal.replace("%", "%%"))
            i = end + 1
            continue
        if not char.isalpha():
            out.append("%%" if char == "%" else char)
            i += 1
            continue
        j = i
        while j < len(pattern) and pattern[j] == char:
            j += 1
        token = pattern[i:j]
        if token in _FIXED:
            out.append(_FIXED[token])
        elif char == "S":
            out.append("%f")
        elif token in _OFFSETS:
            out.append("%z")
        elif token == "T":  # document 002 writes yyyy-MM-ddTHH:mm:ssZ (Java wants 'T'): a literal
            out.append("T")
        else:
            raise UnsupportedPattern(
                f"{token!r} in {pattern!r} is not supported: use yyyy, MM, dd, HH, mm, ss, SSS, a zone "
                "offset (XXX or Z) and literal text in quotes"
            )
        i = j
    fmt = "".join(out)
    missing = [name for code, name in _NEEDED.items() if code not in fmt and not _alias(code, fmt)]
    if missing:
        raise UnsupportedPattern(f"{pattern!r} has no {', '.join(missing)}: a delta value must be a date")
    return fmt


def _alias(code: str, fmt: str) -> bool:
    return (code == "%Y" and "%y" in fmt) or (code == "%m" and ("%b" in fmt or "%B" in fmt))

"""The statements the Query Service accepts beyond a SELECT, recognised by their prefix.

    CREATE TABLE name AS select          (CTAS: a new dataset holding the SELECT's rows)
    CREATE TABLE name AS (select)
    INSERT INTO name select              (the SELECT's rows appended to the dataset whose table is name)

Only the prefix is read here; what follows it is handed, as it is, to the query engine
(headwater.lake.query), which accepts one SELECT and refuses everything else. Any other SQL (a SELECT,
or a statement the engine refuses: COPY, ATTACH, a second statement...) is a plain query. A table name
is an unquoted identifier (letters, digits, underscores, not starting with a digit); it is kept lowercase,
as dataset table names are (services/catalogsvc.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SELECT, CTAS, INSERT = "SELECT", "CTAS", "INSERT_INTO"
NAME = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
_CTAS = re.compile(rf"^\s*CREATE\s+TABLE\s+({NAME})\s+AS\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(rf"^\s*INSERT\s+INTO\s+({NAME})\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_STARTS = re.compile(r"^\s*(CREATE|INSERT)\b", re.IGNORECASE)
IDENTIFIER = re.compile(rf"^{NAME}$")


@dataclass(frozen=True)
class Statement:
    """What a query's SQL asks for: ``kind`` (SELECT, CTAS, INSERT_INTO), the ``select`` the engine runs,
    and the ``table`` a CTAS creates or an INSERT INTO appends to (None for a SELECT)."""

    kind: str
    select: str
    table: str | None = None


class StatementError(ValueError):
    """A CREATE or INSERT that is not in one of the accepted forms."""


def parse(sql: str) -> Statement:
    """The statement ``sql`` is (see the module); StatementError for CREATE/INSERT in another form."""
    for kind, pattern in ((CTAS, _CTAS), (INSERT, _INSERT)):
        match = pattern.match(sql)
        if match is not None:
            return Statement(kind, _unwrapped(match.group(2)), match.group(1).lower())
    found = _STARTS.match(sql)
    if found is not None:
        word = found.group(1).upper()
        form = "CREATE TABLE name AS SELECT ..." if word == "CREATE" else "INSERT INTO name SELECT ..."
        raise StatementError(
            f"{word} statements run here only as {form} (an unquoted table name, then one SELECT)."
        )
    return Statement(SELECT, sql)


def _unwrapped(select: str) -> str:
    """``(SELECT ...)`` without its outer parentheses, and without a trailing semicolon."""
    text = select.strip().rstrip(";").strip()
    if text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        return text[1:-1].strip()
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0

"""A scanner of SQL text that knows where literals and comments are: statement boundaries (``;``) and
``$n`` placeholders count only outside ``'strings'``, ``"identifiers"``, ``$tag$ strings $tag$``,
``-- comments`` and ``/* comments */``."""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql`` (a simple Query may carry several), blank ones left out."""
    parts, at = [], 0
    for start, end, kind in _scan(sql):
        if kind == -1:
            parts.append(sql[at:start])
            at = end
    parts.append(sql[at:])
    return [p for p in parts if not _only_comments(p)]


def placeholders(sql: str) -> list[tuple[int, int, int]]:
    """(start, end, number) of each ``$n`` placeholder."""
    return [(start, end, kind) for start, end, kind in _scan(sql) if kind > 0]


def _only_comments(sql: str) -> bool:
    return not re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL).strip()


def _scan(sql: str) -> list[tuple[int, int, int]]:
    """(start, end, kind): kind -1 for a ``;``, n for a ``$n``."""
    found: list[tuple[int, int, int]] = []
    i, size = 0, len(sql)
    while i < size:
        ch = sql[i]
        if ch in "'\"":
            i = quoted_end(sql, i, ch)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = size if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = size if end < 0 else end + 2
        elif ch == ";":
            found.append((i, i + 1, -1))
            i += 1
        elif ch == "$":
            i = _dollar(sql, i, found)
        else:
            i += 1
    return found


def quoted_end(sql: str, i: int, quote: str, escapes: bool = False) -> int:
    """Where the quoted text that opens at ``i`` ends (past its closing quote; doubled quotes are part
    of it, and with ``escapes``, as in ``E'...'``, so is a backslash-escaped one)."""
    i += 1
    while i < len(sql):
        if sql[i] == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        if escapes and sql[i] == "\\" and i + 1 < len(sql):
            i += 1
        i += 1
    return i


def _dollar(sql: str, i: int, found: list[tuple[int, int, int]]) -> int:
    """Past a ``$n`` placeholder (recorded) or a ``$tag$...$tag$`` string that starts at ``i``."""
    prev = sql[i - 1] if i else " "
    if prev.isalnum() or prev == "_":
        return i + 1
    end = i + 1
    while end < len(sql) and sql[end].isdigit():
        end += 1
    if end > i + 1:
        found.append((i, end, int(sql[i + 1 : end])))
        return end
    tag = _DOLLAR_TAG.match(sql, i)
    if tag is None:
        return i + 1
    close = sql.find(tag.group(0), tag.end())
    return len(sql) if close < 0 else close + len(tag.group(0))

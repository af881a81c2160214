"""Statements the endpoint answers itself, before the query engine: what drivers and psql send around
their queries (``BEGIN``/``COMMIT``, ``SET``, ``SHOW``, ``SELECT version()``) and Query Service's
``SHOW TABLES``. Catalog queries (``pg_catalog``, ``information_schema``: psql's
``\\d`` commands) go to the emulated catalog (catalog.py).

Everything else goes to the engine, which runs one SELECT (DuckDB's ``DESCRIBE t`` and ``SHOW t``
included) over the sandbox's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from headwater import __version__
from headwater.pgwire.errors import PgError

SERVER_VERSION = "15.0"
VERSION = f"PostgreSQL {SERVER_VERSION} (Headwater {__version__} Query Service, DuckDB engine)"
# Reported at startup and again when a SET changes one (GUC_REPORT parameters of PostgreSQL).
REPORTED = {
    "server_version": SERVER_VERSION,
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "off",
    "default_transaction_read_only": "on",
    "in_hot_standby": "off",
}
_OTHER_SETTINGS = {
    "transaction_isolation": "read committed",
    "transaction_read_only": "on",
    "search_path": "public",
    "max_identifier_length": "63",
    "statement_timeout": "0",
    "lc_messages": "C",
}
_LEADING_COMMENTS = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)*", re.DOTALL)
_SET = re.compile(
    r"^SET\s+(?:SESSION\s+|LOCAL\s+)?(?:(TIME\s+ZONE)|([\w.]+)\s*(?:=|\bTO\b))\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_TRANSACTION = {
    "BEGIN": ("BEGIN", b"T"),
    "START": ("START TRANSACTION", b"T"),
    "COMMIT": ("COMMIT", b"I"),
    "END": ("COMMIT", b"I"),
    "ROLLBACK": ("ROLLBACK", b"I"),
    "ABORT": ("ROLLBACK", b"I"),
}
_NO_OPS = {"RESET": "RESET", "DISCARD": "DISCARD ALL", "DEALLOCATE": "DEALLOCATE", "SAVEPOINT": "SAVEPOINT"}
_NO_OPS |= {"RELEASE": "RELEASE", "UNLISTEN": "UNLISTEN"}


@dataclass
class Answer:
    """What a statement answered: rows (a table, possibly empty) or only a command tag."""

    tag: str
    table: pa.Table | None = None
    transaction: bytes | None = None  # the transaction status after it (b"I" idle, b"T" in a block)
    reported: dict[str, str] = field(default_factory=dict)  # ParameterStatus to send


@dataclass
class SessionState:
    """One connection's settings (what SET changed) and who it is for SHOW and version()."""

    user: str
    database: str
    settings: dict[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        known = {**REPORTED, **_OTHER_SETTINGS, "session_authorization": self.user}
        lowered = {k.lower(): k for k in known} | {k.lower(): k for k in self.settings}
        key = lowered.get(name.lower())
        return None if key is None else self.settings.get(key, known.get(key))


def normalize(sql: str) -> str:
    """The statement without leading comments, surrounding blanks or trailing semicolons."""
    return _LEADING_COMMENTS.sub("", sql, count=1).strip().rstrip(";").strip()


def answer(sql: str, state: SessionState) -> Answer | None:
    """The endpoint's own answer to ``sql`` (already :func:`normalize`d), or None for the engine."""
    words = sql.split(None, 2)
    first = words[0].upper() if words else ""
    if first in _TRANSACTION:
        tag, status = _TRANSACTION[first]
        return Answer(tag, transaction=status)
    if first in _NO_OPS:
        return Answer(_NO_OPS[first])
    if first == "SET":
        return _set(sql, state)
    if first == "SHOW" and len(words) >= 2:
        return _show(" ".join(words[1:]), state)
    return _function_query(sql, state)


def _set(sql: str, state: SessionState) -> Answer:
    match = _SET.match(sql)
    if match is None:  # SET TRANSACTION ..., SET SESSION CHARACTERISTICS ...: nothing to keep
        return Answer("SET")
    name = "TimeZone" if match.group(1) else match.group(2)
    value = match.group(3).strip().strip("'\"")
    if name.lower() == "client_encoding" and value.upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise PgError("22023", f"client_encoding {value!r} is not supported: this endpoint speaks UTF8 only.")
    canonical = next((k for k in REPORTED if k.lower() == name.lower()), name)
    if canonical.lower() == "client_encoding":
        value = "UTF8"
    state.settings[canonical] = value
    return Answer("SET", reported={canonical: value} if canonical in REPORTED else {})


# SHOW's multi-word names (SQL's spellings), as PostgreSQL answers them: the setting they name.
_SHOW_ALIASES = {
    "TRANSACTION ISOLATION LEVEL": "transaction_isolation",
    "TIME ZONE": "TimeZone",
    "SESSION AUTHORIZATION": "session_authorization",
}


def _show(name: str, state: SessionState) -> Answer | None:
    key = name.strip().strip('"')
    key = _SHOW_ALIASES.get(" ".join(key.upper().split()), key)
    if key == "session_authorization":
        return Answer("SHOW", pa.table({key: [state.user]}))
    if key.upper() == "ALL":
        names = sorted({*REPORTED, *_OTHER_SETTINGS, *state.settings}, key=str.lower)
        values = [state.value(n) or "" for n in names]
        return Answer("SHOW", pa.table({"name": names, "setting": values, "description": [""] * len(names)}))
    if key.upper() == "TABLES":
        return None  # the session lists the sandbox's tables
    value = state.value(key)
    if value is None:
        return None  # DuckDB's SHOW <table> describes a table: the engine answers
    return Answer("SHOW", pa.table({key.lower(): [value]}))


def _function_query(sql: str, state: SessionState) -> Answer | None:
    """``SELECT version()`` and its kind: one value about the session, as PostgreSQL names it."""
    match = re.fullmatch(
        r"SELECT\s+(?:pg_catalog\.)?(\w+)\s*(\(\s*\))?(?:\s+AS\s+(\w+))?", sql, re.IGNORECASE
    )
    if match is None:
        return None
    function, called, alias = match.group(1).lower(), match.group(2) is not None, match.group(3)
    values = {
        "version": (VERSION, True),
        "current_database": (state.database, True),
        "current_schema": ("public", True),
        "current_user": (state.user, False),
        "session_user": (state.user, False),
        "user": (state.user, False),
        "pg_backend_pid": ("0", True),
    }
    if function not in values or values[function][1] != called:
        return None
    value = values[function][0]
    column = alias or function
    if function == "pg_backend_pid":
        return Answer("SELECT 1", pa.table({column: pa.array([0], pa.int32())}))
    return Answer("SELECT 1", pa.table({column: [value]}))

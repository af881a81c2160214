"""The metadata database's unavailability as one named error, :class:`~headwater.errors.MetadataUnavailable`.

SQLAlchemy calls ``handle_error`` for every failed statement and for a failed connect; the listener raises
MetadataUnavailable (503, transient) in place of the driver's error when the database, not the statement,
is at fault: a dropped or refused connection (SQLAlchemy's ``is_disconnect``), PostgreSQL's operational
errors (server restarting or shutting down, too many connections, a statement cancelled), and SQLite's
locked, busy, full or failing file. Integrity and programming errors pass through unchanged: they are the
caller's to handle or a bug, not an outage.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine, ExceptionContext

from headwater.errors import MetadataUnavailable

_SQLITE_OUTAGES = ("locked", "busy", "disk i/o", "disk is full", "unable to open", "readonly database")


def install(engine: Engine) -> None:
    """Make ``engine`` raise MetadataUnavailable when its database cannot answer."""
    event.listen(engine, "handle_error", _translate)


def _translate(context: ExceptionContext) -> None:
    original = context.original_exception
    if context.is_disconnect or _is_outage(original, context.dialect.name if context.dialect else ""):
        internal = f"{type(original).__name__}: {str(original).strip()[:300]}"
        raise MetadataUnavailable(internal) from context.sqlalchemy_exception or original


def _is_outage(error: BaseException, dialect: str) -> bool:
    if dialect == "postgresql":
        import psycopg

        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    if dialect == "sqlite":
        import sqlite3

        text = str(error).lower()
        return isinstance(error, sqlite3.OperationalError) and any(o in text for o in _SQLITE_OUTAGES)
    return False

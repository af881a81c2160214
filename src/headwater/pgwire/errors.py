"""What the wire endpoint answers for an error: a SQLSTATE and a message, as an ErrorResponse.

    PgError               one ErrorResponse (``sqlstate``, message, ``fatal`` closes the connection)
    ProtocolViolation     (codec.py) the client broke the protocol: 08P01, then the connection closes

:func:`from_exception` maps everything else: the query engine's errors by their type and by the DuckDB
error they wrap (``__cause__``), the platform's authentication errors, a backend's unavailability, and
anything unexpected (XX000, logged, the connection stays usable).
"""

from __future__ import annotations

import logging

from headwater.errors import Forbidden, HeadwaterError, NotFound, Unauthenticated

log = logging.getLogger("headwater.pgwire")

SYNTAX_ERROR = "42601"
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_PASSWORD = "28P01"
INVALID_AUTHORIZATION = "28000"
INVALID_CATALOG_NAME = "3D000"
PROTOCOL_VIOLATION = "08P01"
UNDEFINED_TABLE = "42P01"

# DuckDB's exception classes by name (as the engine wraps them) -> SQLSTATE.
_DUCKDB_STATES = {
    "ParserException": SYNTAX_ERROR,
    "SyntaxException": SYNTAX_ERROR,
    "CatalogException": "42P01",  # undefined_table (also a function that does not exist)
    "BinderException": "42703",  # undefined_column and other binding errors
    "ConversionException": "22P02",  # invalid_text_representation
    "OutOfRangeException": "22003",  # numeric_value_out_of_range
    "InvalidInputException": "22023",  # invalid_parameter_value
    "PermissionException": "42501",  # insufficient_privilege
    "InterruptException": "57014",  # query_canceled
    "OutOfMemoryException": "53200",  # out_of_memory
}


class PgError(Exception):
    """An ErrorResponse to send: ``fatal`` ends the session after it (authentication failures)."""

    def __init__(self, sqlstate: str, message: str, *, fatal: bool = False, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate, self.message, self.fatal, self.hint = sqlstate, message, fatal, hint


def from_exception(exc: BaseException) -> PgError:
    """The ErrorResponse for an exception raised while serving a statement."""
    from headwater.lake.query import QueryError, QueryLimitExceeded, QueryRefused

    if isinstance(exc, PgError):
        return exc
    from headwater.pgwire.catalog import UnknownRelation

    if isinstance(exc, UnknownRelation):
        return PgError(UNDEFINED_TABLE, exc.detail)
    if isinstance(exc, QueryLimitExceeded):
        return PgError("54000", exc.detail)  # program_limit_exceeded
    if isinstance(exc, QueryError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else None
        if cause in _DUCKDB_STATES:
            return PgError(_DUCKDB_STATES[cause], exc.detail)
        if isinstance(exc, QueryRefused):
            return PgError(FEATURE_NOT_SUPPORTED, exc.detail)
        if exc.detail.startswith("The SQL does not parse"):
            return PgError(SYNTAX_ERROR, exc.detail)
        return PgError("42000", exc.detail)
    if isinstance(exc, Unauthenticated):
        return PgError(INVALID_PASSWORD, exc.detail, fatal=True)
    if isinstance(exc, Forbidden) and exc.code == "403027":
        return PgError(INVALID_CATALOG_NAME, exc.detail, fatal=True)
    if isinstance(exc, Forbidden):
        return PgError(INVALID_AUTHORIZATION, exc.detail, fatal=True)
    if isinstance(exc, NotFound):
        return PgError("42P01", exc.detail)
    if isinstance(exc, HeadwaterError) and exc.transient:
        return PgError("58000", exc.detail)  # system_error: a backend did not answer; retry later
    if isinstance(exc, HeadwaterError) and exc.status < 500:
        return PgError("42000", exc.detail)
    log.exception("pgwire: unexpected error serving a statement", exc_info=exc)
    return PgError("XX000", "Internal error: the statement failed unexpectedly; the server log has details.")

"""How PostgreSQL failures become connector errors (see ``connectors/errors.py``).

    server error (SQLSTATE)                         connector error
    28000, 28P01    login refused                   AuthenticationFailed
    42501           no privilege on the table       AuthenticationFailed  (grant SELECT to the user)
    3D000           unknown database                SourceNotFound
    42P01, 3F000    unknown table or schema         SourceNotFound
    42703, 22xxx    unknown column, bad value       InvalidSourceParams
    08, 53, 57, 58  connection, resources, shutdown SourceUnavailable (transient)
    40001, 40P01    serialization, deadlock         SourceUnavailable (transient)
    anything else                                   ConnectorError (terminal)

libpq reports a failed connection without a SQLSTATE, so connection failures are classified once, here,
from libpq's message: a login the server refused is terminal, a server that cannot be reached is
transient. Every message goes through :func:`scrub`, which removes the password and URI credentials.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from headwater.connectors.errors import (
    AuthenticationFailed,
    ConnectorError,
    InvalidSourceParams,
    SourceNotFound,
    SourceUnavailable,
)

if TYPE_CHECKING:
    import psycopg

_TRANSIENT_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_STATES = {"40001", "40P01"}
_LOGIN_REFUSED = (
    "password authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "authentication failed",
    "role ",  # role "x" does not exist
    "permission denied for database",
    "is not permitted to log in",
)
_URI_CREDENTIALS = re.compile(r"(\w+://[^:/@\s]*):[^@\s]*@")
_PASSWORD_KEYWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def translate(exc: psycopg.Error, secrets: list[str], relation: str | None = None) -> ConnectorError:
    """The connector error for ``exc``; ``relation`` names the table being read, if any."""
    state = exc.sqlstate
    text = scrub(_server_message(exc), secrets)
    if state is None:
        import psycopg

        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return _connect_failure(text)
        return ConnectorError(f"PostgreSQL client error: {text}.")
    subject = relation or "the table"
    if state in ("28000", "28P01"):
        return AuthenticationFailed(f"PostgreSQL refused the login ({text}): fix the username or password.")
    if state == "42501":
        return AuthenticationFailed(
            f"The connection's user may not read {subject}: grant it SELECT ({text})."
        )
    if state == "3D000":
        return SourceNotFound(f"{text}: fix the connection's database name.")
    if state in ("42P01", "3F000"):
        return SourceNotFound(
            f"{subject} does not exist ({text}); pick a table from the connection's explore."
        )
    if state == "42703" or state.startswith("22"):
        return InvalidSourceParams(f"Reading {subject} failed: {text}.")
    if state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES:
        return SourceUnavailable(f"PostgreSQL is unavailable ({text}); the run can be retried.")
    return ConnectorError(f"PostgreSQL failed reading {subject}: {text} (SQLSTATE {state}).")


def _connect_failure(text: str) -> ConnectorError:
    lowered = text.lower()
    if "does not exist" in lowered and "database" in lowered:
        return SourceNotFound(f"{text}: fix the connection's database name.")
    if any(marker in lowered for marker in _LOGIN_REFUSED):
        return AuthenticationFailed(f"PostgreSQL refused the login ({text}): fix the username or password.")
    return SourceUnavailable(
        f"Cannot connect to PostgreSQL ({text}); check the host and port, or retry later."
    )


def _server_message(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.sqlstate else None
    if primary:
        return primary
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text.removeprefix("connection failed: ")


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` without the given secrets, URI credentials or ``password=`` values."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URI_CREDENTIALS.sub(r"\1:***@", text)
    return _PASSWORD_KEYWORD.sub(r"\1***", text)

"""Connector errors. Retry decisions are made by type (``transient``), never by parsing messages.

    ConnectorError                 a HeadwaterError (headwater/errors.py); ``transient`` says whether
                                   retrying later may succeed
    ├── AuthenticationFailed       credentials refused (terminal: fix the connection)
    ├── InvalidSourceParams        the source connection names something impossible (terminal)
    ├── SourceNotFound             the table, object or file does not exist (terminal)
    ├── OutboundRefused            the target host is not allowed by HEADWATER_OUTBOUND_ALLOW (terminal)
    │   └── HostUnresolved         its name does not resolve (transient: DNS may answer later)
    ├── SourceUnavailable          connect errors, timeouts, 5xx (transient)
    └── RateLimited                the source asked us to slow down (transient; ``retry_after`` seconds)

Each connector's own errors (connectors/<name>/errors.py) derive from these. Through the API a
connector error is a 400 ("Connection refused by the source"), a transient one a 503 ("Service
Unavailable"), with its code and message. Messages say what to do next. Connector errors never contain
secrets.
"""

from __future__ import annotations

from headwater.errors import HeadwaterError


class ConnectorError(HeadwaterError):
    """The external system refused, failed or could not be reached; ``message`` is the detail. The HTTP
    status follows ``transient`` (503, else 400), whether a class or an instance sets it."""

    status, title, code = 400, "Connection refused by the source", "CONNECTOR-2000-400"
    transient = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        if self.transient:
            self.status, self.title = 503, "Service Unavailable"


class AuthenticationFailed(ConnectorError):
    code = "CONNECTOR-2001-401"


class InvalidSourceParams(ConnectorError):
    code = "CONNECTOR-2002-400"


class SourceNotFound(ConnectorError):
    code = "CONNECTOR-2003-404"


class OutboundRefused(ConnectorError):
    code = "CONNECTOR-2004-403"


class HostUnresolved(OutboundRefused):
    transient = True
    code = "CONNECTOR-2007-503"


class SourceUnavailable(ConnectorError):
    transient = True
    code = "CONNECTOR-2005-503"


class RateLimited(ConnectorError):
    transient = True
    code = "CONNECTOR-2006-429"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

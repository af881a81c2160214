"""What the Microsoft Dynamics connector raises: the shared connector errors, specialised. Callers decide
on retrying by the shared base types and their ``transient`` marker, never by these names or messages.

    ConnectorError
    ├── AuthenticationFailed
    │   └── DynamicsLoginFailed       token refused, privileges missing, or no usable credentials (terminal)
    ├── InvalidSourceParams
    │   └── DynamicsQueryRejected     a column, delta column or filter the Web API refuses (terminal)
    ├── SourceNotFound
    │   └── DynamicsEntityNotFound    no such entity (terminal)
    ├── SourceUnavailable
    │   └── DynamicsUnavailable       5xx, connect errors and timeouts that outlived the retries (transient)
    ├── RateLimited
    │   └── DynamicsRateLimited       429 service protection limits (transient; ``retry_after`` seconds)
    └── DynamicsProtocolError         a response the connector cannot read (terminal)

Messages say what to do next and never contain a client secret, password or token: text that comes
from a server passes through :func:`headwater.connectors.http.scrub` first.
"""

from __future__ import annotations

from headwater.connectors.errors import (
    AuthenticationFailed,
    ConnectorError,
    InvalidSourceParams,
    RateLimited,
    SourceNotFound,
    SourceUnavailable,
)


class DynamicsLoginFailed(AuthenticationFailed):
    pass


class DynamicsQueryRejected(InvalidSourceParams):
    pass


class DynamicsEntityNotFound(SourceNotFound):
    pass


class DynamicsUnavailable(SourceUnavailable):
    pass


class DynamicsRateLimited(RateLimited):
    pass


class DynamicsProtocolError(ConnectorError):
    code = "CONNECTOR-2007-502"

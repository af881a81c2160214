"""What the Salesforce connector raises: the shared connector errors, specialised. Callers decide on
retrying by the shared base types and their ``transient`` marker, never by these names or messages.

    ConnectorError
    ├── AuthenticationFailed
    │   └── SalesforceLoginFailed      login refused, or the connection lacks credentials (terminal)
    ├── InvalidSourceParams
    │   └── SalesforceQueryRejected    a column, delta column or query Salesforce refuses (terminal)
    ├── SourceNotFound
    │   └── SalesforceObjectNotFound   no such sObject, or not queryable (terminal)
    ├── SourceUnavailable
    │   └── SalesforceUnavailable      5xx, connect errors and timeouts that outlived the retries (transient)
    ├── RateLimited
    │   └── SalesforceRateLimited      429 or REQUEST_LIMIT_EXCEEDED (transient; ``retry_after`` seconds)
    └── SalesforceProtocolError        a response the connector cannot read (terminal)

Messages say what to do next and never contain a password, security token, client secret or session
id: text that comes from the server passes through :func:`headwater.connectors.http.scrub` first.
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


class SalesforceLoginFailed(AuthenticationFailed):
    pass


class SalesforceQueryRejected(InvalidSourceParams):
    pass


class SalesforceObjectNotFound(SourceNotFound):
    pass


class SalesforceUnavailable(SourceUnavailable):
    pass


class SalesforceRateLimited(RateLimited):
    pass


class SalesforceProtocolError(ConnectorError):
    code = "CONNECTOR-2007-502"

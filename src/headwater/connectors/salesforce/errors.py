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
id: text that comes from the server passes through :func:`scrub` first.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def scrub(text: str, secrets: Iterable[str | None], limit: int = 300) -> str:
    """``text`` (from a server) shortened, with every secret in ``secrets`` masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The HTTP destination's errors, part of the one tree (``headwater/errors.py``).

    ConnectorError (connectors/errors.py)
    └── DestinationError     base; ``transient`` (per instance) says whether trying again may help
        ├── TransportError   no HTTP response was obtained; ``kind`` says why (client.py lists the kinds)
        └── AuthError        the destination's credentials could not be obtained (auth.py says when)

A delivery retries what is transient and dead-letters the rest. Should one of these reach the API, it is
a 503 when transient, else a 400, like any connector error. Messages never contain secrets.
"""

from __future__ import annotations

from typing import Literal

from headwater.connectors.errors import ConnectorError

Kind = Literal["connect", "timeout", "tls", "protocol", "refused"]


class DestinationError(ConnectorError):
    """A send to the destination failed before an answer could be used."""

    code = "CONNECTOR-2008-400"

    def __init__(self, message: str, *, transient: bool) -> None:
        self.transient = transient
        super().__init__(message)
        if transient:
            self.code = "CONNECTOR-2008-503"


class TransportError(DestinationError):
    """No HTTP response was obtained. ``kind`` says why; connect, timeout and protocol are transient."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message, transient=kind in ("connect", "timeout", "protocol"))
        self.kind: Kind = kind


class AuthError(DestinationError):
    """The destination's credentials could not be obtained (or are not usable as configured).
    ``token_status`` is the token endpoint's HTTP status, when it answered."""

    def __init__(self, message: str, *, transient: bool, token_status: int | None = None) -> None:
        super().__init__(message, transient=transient)
        self.token_status = token_status

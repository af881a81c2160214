"""Headwater's exception tree. Every error a client can cause maps to one HTTP status and a stable code.

    HeadwaterError                  base; carries status, code, title, detail, report, ``transient``
    ├── BadRequest (400)            malformed input
    │   └── ValidationFailed (400)  input that parses but breaks a rule; report.errors names each field
    ├── Unauthenticated (401)       no or bad credentials
    ├── Forbidden (403)             credentials valid, access not allowed
    ├── NotFound (404)              absent, or not visible to this organization and sandbox
    ├── Conflict (409)              the resource is in use or already exists
    ├── PreconditionFailed (412)    If-Match names a stale etag
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── PreconditionRequired (428)  If-Match missing
    ├── Transient (503)             retrying later may succeed (``transient = True``)
    │   └── Unavailable (503)       a backend did not answer; a safe detail, the specifics in ``internal``
    │       ├── LogUnavailable      the streaming log (local segments, JetStream); also a ConnectionError
    │       ├── MetadataUnavailable the metadata database (SQLite, PostgreSQL)
    │       └── LakeUnavailable     the lake's files
    └── ConnectorError (400, 503 when transient)   an external system refused or failed
        │                           (connectors/errors.py; codes CONNECTOR-20xx)
        ├── AuthenticationFailed, InvalidSourceParams, SourceNotFound, OutboundRefused
        ├── SourceUnavailable, RateLimited, HostUnresolved      transient
        ├── <connector>/errors.py   each source connector's own, under the ones above
        └── DestinationError        the HTTP destination (connectors/http_destination/errors.py):
            ├── TransportError      no HTTP response; transient for connect, timeout, protocol
            └── AuthError           the destination's credentials could not be obtained

``transient`` is the one word for "retrying later may succeed": retry decisions read it, never a
message. Outside the tree, by design: the metadata store's StoreError family (AlreadyExists, StaleWrite,
...: services turn them into Conflict or PreconditionFailed), and the request template's TemplateInvalid
and RenderError (ValueErrors with ``transient = False``: the engines stay free of HTTP).

A backend's unavailability is shown to clients and in run documents by its ``detail``, which names the
backend and nothing more (a Viewer reads runs: no host, URL, path or credential); ``str()`` of the error,
which logs and tracebacks print, adds the ``internal`` specifics.

Codes look like ``FLOW-1439-404``: a service prefix, a number per kind of error, the status.
They are stable: clients may branch on them. Messages say what to do next.
"""

from __future__ import annotations

from typing import Any

ERROR_TYPE_BASE = "https://ns.adobe.com/aep/errors/"


class HeadwaterError(Exception):
    status = 500
    title = "Internal error"
    code = "HW-1000-500"
    transient = False

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.report = dict(report or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        report = {"code": self.code, **self.report}
        if request_id:
            report["request-id"] = request_id
        return {
            "type": ERROR_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "report": report,
        }


class BadRequest(HeadwaterError):
    status, title, code = 400, "Bad request", "HW-1400-400"


class ValidationFailed(BadRequest):
    """Input that breaks a rule. ``errors`` is a list of ``{"path", "message"}`` naming each field."""

    title, code = "Validation failed", "HW-1422-400"

    def __init__(self, errors: list[dict[str, str]], *, code: str | None = None, detail: str | None = None):
        first = errors[0] if errors else {"path": "", "message": "invalid"}
        where = f"{first['path']}: " if first.get("path") else ""
        text = detail or where + first["message"]
        if not detail and len(errors) > 1:
            text += f" (and {len(errors) - 1} more)"
        super().__init__(text, code=code, report={"errors": errors})
        self.errors = errors


class Unauthenticated(HeadwaterError):
    status, title, code = 401, "Unauthorized", "HW-1401-401"


class Forbidden(HeadwaterError):
    status, title, code = 403, "Forbidden", "HW-1403-403"


class NotFound(HeadwaterError):
    status, title, code = 404, "Resource not found", "HW-1404-404"


class MethodNotAllowed(HeadwaterError):
    status, title, code = 405, "Method not allowed", "HW-1405-405"


class Conflict(HeadwaterError):
    status, title, code = 409, "Conflict", "HW-1409-409"


class PreconditionFailed(HeadwaterError):
    status, title, code = 412, "Precondition failed", "HW-1412-412"


class PayloadTooLarge(HeadwaterError):
    status, title, code = 413, "Payload too large", "HW-1413-413"


class UnsupportedMediaType(HeadwaterError):
    status, title, code = 415, "Unsupported media type", "HW-1415-415"


class PreconditionRequired(HeadwaterError):
    status, title, code = 428, "Precondition required", "HW-1428-428"


class Transient(HeadwaterError):
    status, title, code, transient = 503, "Service unavailable", "HW-1503-503", True


class Unavailable(Transient):
    """A backend did not answer or refused: nothing was done that the caller must undo, and retrying later
    may succeed. ``detail`` is safe to show; ``internal`` (the host, the path, the driver's message) only
    reaches logs, through ``str()``."""

    backend = "A backend"

    def __init__(self, internal: str = "", *, detail: str | None = None, code: str | None = None) -> None:
        super().__init__(detail or f"{self.backend} is not available; retry later.", code=code)
        self.internal = internal

    def __str__(self) -> str:
        return f"{self.detail} ({self.internal})" if self.internal else self.detail


class LogUnavailable(Unavailable, ConnectionError):
    """The streaming log (local segments or JetStream) did not take or give records. An append was not
    acknowledged (some of its records may be stored anyway and be read twice after a retry). Also a
    ConnectionError, so code that guards I/O with ``except OSError`` keeps catching it."""

    backend, code = "The streaming log", "LOG-1503-503"


class MetadataUnavailable(Unavailable):
    """The metadata database did not answer (PostgreSQL unreachable or restarting, SQLite locked past its
    timeout or its disk failing). The statement's transaction did not commit."""

    backend, code = "The metadata database", "META-1503-503"


class LakeUnavailable(Unavailable):
    """The lake's files could not be read or written (disk full or failing, a path gone). A commit that
    raises this did not happen: Iceberg's snapshot is swapped only after every file is written."""

    backend, code = "The lake", "LAKE-1503-503"


def not_found(kind: str, ident: str, service: str = "FLOW") -> NotFound:
    return NotFound(
        f"No {kind} with id {ident!r} in this organization and sandbox. Check the id and the "
        "x-gw-ims-org-id / x-sandbox-name headers.",
        code=f"{service}-1439-404" if service == "FLOW" else f"{service}-1404-404",
        report={"id": ident, "type": kind},
    )

"""Request bodies: a size limit per route family, a read timeout, and answers a client can read.

    client ──► BodyLimits ──► InletFastPath / AuditTrail / routing ──► handler
               │ Content-Length over the family's limit: 413 at once, the app is not called
               │ receive(): counts bytes (413 once past the limit), 408 after a silence of body_timeout
               └ send(): a response that starts before the body is read holds back until the rest of the
                 body is read and dropped (bounded), so the client's writes succeed and it reads the answer

Why drain: a server that answers and closes while the client is still writing makes the kernel reset
the connection (unread bytes at close send an RST), and the client sees "connection reset" or "broken
pipe" instead of the answer. Clients such as urllib and requests write the whole body before reading
anything. Reading the rest (up to :data:`DRAIN_BYTES` within :data:`DRAIN_SECONDS`) and discarding it
costs the server nothing but bandwidth, which the client could spend anyway. A client that asked
``Expect: 100-continue`` and was sent nothing yet is not drained: it has not sent the body and will not
(the answer replaces the ``100 Continue``); the connection is closed after the answer instead.

The limits, one per family (the handlers check the same numbers, in their own words):

=================================================  ===================  ===========================
family                                              limit                error shape
=================================================  ===================  ===========================
streaming inlets ``/collection/…``                  1 MB                 Data Collection problem
uploads ``PUT …/connections/{id}/files/{path}``     5 GB                 platform
Data 360 bulk ``PUT /api/v1/ingest/jobs/{id}/…``    150 MB               platform (INGEST-1413-413)
Data 360 ingestion (``/api/v1/ingest``, events)     200 KB               platform (INGEST-1413-413)
batch files ``PUT|PATCH /import/batches/…/files/…`` 5 GB                 platform
everything else (control plane, tokens, console)    1 MB                 platform (HW-1413-413)
=================================================  ===================  ===========================
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.errors import HeadwaterError, PayloadTooLarge

DRAIN_BYTES = 256 * 1024 * 1024
DRAIN_SECONDS = 30.0

_UPLOAD = re.compile(r"^/data/foundation/flowservice/connections/[^/]+/files/.+")
_BATCH_FILE = re.compile(r"^/data/foundation/import/batches/[^/]+/datasets/[^/]+/files/.+")
_BULK = re.compile(r"^/api/v1/ingest/jobs/[^/]+/batches/?$")


class RequestTimeout(HeadwaterError):
    status, title, code = 408, "Request timeout", "HW-1408-408"


class BodyTooLarge(PayloadTooLarge):
    """Raised from ``receive`` when a body passes its family's limit; rendered as a 413."""


@dataclass(frozen=True)
class Family:
    name: str
    limit: int
    code: str = "HW-1413-413"

    def too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"The request body is larger than {self.limit} bytes, the most this API takes.",
            code=self.code,
            report={"limitBytes": self.limit},
        )


@functools.cache
def _families() -> dict[str, Family]:
    """The families, with the limits their handlers use (imported once, on first use: the route modules
    import the application's pieces)."""
    from headwater.api.responses import MAX_CONTROL_BODY
    from headwater.api.routes.collection import MAX_BODY as INLET_BODY
    from headwater.api.routes.uploads import MAX_UPLOAD_BYTES
    from headwater.services.batchingest import MAX_FILE_BYTES as BATCH_FILE_BYTES
    from headwater.services.data360.bulk import MAX_FILE_BYTES
    from headwater.services.data360.ingest import MAX_BODY as INGEST_BODY

    return {
        "inlet": Family("inlet", INLET_BODY),
        "upload": Family("upload", MAX_UPLOAD_BYTES),
        "bulk": Family("bulk", MAX_FILE_BYTES, "INGEST-1413-413"),
        "ingest": Family("ingest", INGEST_BODY, "INGEST-1413-413"),
        "control": Family("control", MAX_CONTROL_BODY),
        "batchfile": Family("batchfile", BATCH_FILE_BYTES),
    }


def family_of(method: str, path: str) -> Family:
    """The route family of a request, which decides its body limit."""
    families = _families()
    if path.startswith("/collection/"):
        return families["inlet"]
    if method == "PUT" and _UPLOAD.match(path):
        return families["upload"]
    if method in ("PUT", "PATCH") and _BATCH_FILE.match(path):
        return families["batchfile"]
    if method == "PUT" and _BULK.match(path):
        return families["bulk"]
    if path.startswith(("/api/v1/ingest", "/server/events")):
        return families["ingest"]
    return families["control"]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class BodyLimits:
    """ASGI middleware enforcing :func:`family_of`'s limits and ``body_timeout`` on every request."""

    def __init__(self, app: ASGIApp, body_timeout: float) -> None:
        self.app = app
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        declared = int(length) if length is not None and length.strip().isdigit() else None
        if not chunked and not declared:
            await self.app(scope, receive, send)  # no body: nothing to count, wait for or drain
            return
        family = family_of(scope["method"], scope["path"])
        body = _Body(scope, receive, send, family, self.body_timeout)
        if declared is not None and declared > family.limit:
            await body.answer(family.too_large())
            return
        try:
            await self.app(scope, body.receive, body.send)
        except (BodyTooLarge, RequestTimeout) as exc:  # raised where no exception handler renders it
            if body.started:
                raise
            await body.answer(exc)


class _Body:
    """One request's body as the app reads it, and its response held until the body is consumed."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, family: Family, timeout: float):
        self.scope = scope
        self.upstream = receive
        self.downstream = send
        self.family = family
        self.timeout = timeout
        self.size = 0
        self.done = False  # the whole body was received (or the client left)
        self.stalled = False  # the client went silent mid-body: do not wait for it again
        self.read_any = False
        self.started = False  # a response start went downstream
        self.held: Message | None = None

    async def receive(self) -> Message:
        if self.done:
            return await self.upstream()  # after the body: disconnect notices only, never timed
        self.read_any = True
        try:
            async with asyncio.timeout(self.timeout):
                message = await self.upstream()
        except TimeoutError:
            self.stalled = True
            raise RequestTimeout(
                f"The request body stopped arriving: nothing for {self.timeout:g} seconds.",
                report={"timeoutSeconds": self.timeout},
            ) from None
        self._count(message)
        if self.size > self.family.limit:
            raise self.family.too_large()
        return message

    def _count(self, message: Message) -> None:
        if message["type"] == "http.disconnect":
            self.done = True
            return
        self.size += len(message.get("body", b""))
        if not message.get("more_body", False):
            self.done = True

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.done:
            self.held = message  # released with the first body message, once the body is consumed
            return
        if self.held is not None:
            start, self.held = self.held, None
            if not await self._drain():
                start = _closing(start)
            self.started = True
            await self.downstream(start)
        elif message["type"] == "http.response.start":
            self.started = True
        await self.downstream(message)

    async def answer(self, error: HeadwaterError) -> None:
        """Send ``error`` in the family's shape, after draining what the client is still sending."""
        if self.family.name == "inlet":
            from headwater.api.routes.collection import PROBLEM

            kind = "inlet" if error.status == 413 else "timeout"
            document: dict[str, Any] = {
                "type": f"{PROBLEM}/{kind}",
                "status": error.status,
                "title": "Payload Too Large" if error.status == 413 else "Request Timeout",
                "report": {"message": error.detail, **error.report},
            }
        else:
            document = error.body(_request_id(self.scope))
        payload = orjson.dumps(document)
        await self.send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": payload})

    async def _drain(self) -> bool:
        """Read and drop the rest of the body, within the bounds. True when the connection can be reused
        (nothing is left unread); False when it must close after the answer."""
        if self.stalled:
            return False
        if not self.read_any and (_header(self.scope, b"expect") or b"").lower() == b"100-continue":
            return False  # the client waits for 100 Continue and has sent no body
        deadline = time.monotonic() + DRAIN_SECONDS
        drained = 0
        while not self.done:
            left = min(deadline - time.monotonic(), self.timeout)
            if left <= 0 or drained > DRAIN_BYTES:
                return False
            try:
                async with asyncio.timeout(left):
                    message = await self.upstream()
            except TimeoutError:
                return False
            before = self.size
            self._count(message)
            drained += self.size - before
        return True


def _closing(start: Message) -> Message:
    headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"connection"]
    return {**start, "headers": [*headers, (b"connection", b"close")]}


def _request_id(scope: Scope) -> str | None:
    value = _header(scope, b"x-request-id")
    return value.decode("latin-1").strip() or None if value else None

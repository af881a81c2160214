"""The audit trail: an ASGI middleware that records every platform write after its handler has run and
before its answer leaves.

    request  ──► AuditTrail ──► routing ──► platform_actor (scope["state"]: actor, permission) ──► handler
    client   ◄── held here until the event is stored ◄── http.response.start, http.response.body

``request.state`` is Starlette's view of ``scope["state"]``, one dict per request that every middleware
and the request object share: platform_actor writes the actor and the permission into it (before it
checks the permission, so refusals are seen too), and this middleware reads them once the response
starts.

GET, HEAD and OPTIONS pass untouched, as do the streaming inlets (``/collection/…``), which the
InletFastPath middleware answers ahead of this one anyway. A write with no platform actor (token
endpoints, ingestion, sign-in) or whose permission is ``read`` (previews) has its messages forwarded as
they come. Any other write has its response start and body held (bodies of writes are small; past
:data:`MAX_HELD` bytes the event is written without the answer's id and the rest streams), its event
stored, then the response sent: a 2xx the client receives means its event is stored.
Events are written by group commit (services/audit.py ``GroupCommit``): the events of calls that finish
while an audit commit runs share the next one. If the audit write fails, the error is logged with the
event and the call is answered all the same.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.edge import calls
from headwater.services import access, audit

log = logging.getLogger("headwater.audit")

MAX_HELD = 1024 * 1024
_PASS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_INLETS = "/collection/"


class AuditTrail:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _PASS_METHODS or scope["path"].startswith(_INLETS):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # the dict request.state writes into (uvicorn always provides one)
        held = _HeldResponse(scope, send)
        try:
            await self.app(scope, receive, held.send)
        except Exception:
            await held.crashed()  # ServerErrorMiddleware turns the exception into a 500 after this
            raise


class _HeldResponse:
    """The ``send`` of one write request: forwards, or holds until the event is stored."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.downstream = send
        self.passing = False  # forwarding as messages come: not audited, or already recorded
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0

    async def send(self, message: Message) -> None:
        if self.passing:
            await self.downstream(message)
        elif message["type"] == "http.response.start":
            if self._audited():
                self.start = message
            else:
                self.passing = True
                await self.downstream(message)
        elif message["type"] == "http.response.body" and self.start is not None:
            body: bytes = message.get("body", b"")
            self.chunks.append(body)
            self.size += len(body)
            more = bool(message.get("more_body", False))
            if more and self.size <= MAX_HELD:
                return
            await self._record(self.start["status"], self._answer() if not more else None)
            await self._release(more)
        else:  # anything else before the body ends (trailers, extensions): record, release, forward
            if self.start is not None:
                await self._record(self.start["status"], None)
                await self._release(True)
            self.passing = True
            await self.downstream(message)

    async def crashed(self) -> None:
        """The handler raised: record a 500 unless the event is already stored or nobody was acting."""
        if not self.passing and self._audited():
            self.passing = True
            await self._record(500, None)

    def _audited(self) -> bool:
        state = self.scope["state"]
        return state.get("actor") is not None and state.get("permission", access.READ) != access.READ

    def _answer(self) -> Any:
        assert self.start is not None
        headers = dict(self.start.get("headers", ()))
        if b"json" not in headers.get(b"content-type", b""):
            return None
        try:
            return orjson.loads(b"".join(self.chunks))
        except orjson.JSONDecodeError:
            return None

    async def _release(self, more: bool) -> None:
        assert self.start is not None
        self.passing = True
        await self.downstream(self.start)
        await self.downstream(
            {"type": "http.response.body", "body": b"".join(self.chunks), "more_body": more}
        )
        self.chunks = []

    async def _record(self, status_code: int, answer: Any) -> None:
        scope = self.scope
        state = scope["state"]
        try:
            route = scope.get("route")
            client = scope.get("client")
            call = audit.Call(
                actor=state["actor"],
                permission=str(state.get("permission")),
                method=scope["method"],
                template=getattr(route, "path", None) or scope["path"],
                path=scope["path"],
                path_params=scope.get("path_params") or {},
                status_code=status_code,
                answer=answer,
                address=client[0] if client else None,
                request_id=_request_id(scope),
            )
            event = audit.event_for(call)
            await writer(scope["app"].state).add(event)
        except Exception:  # audit.record logs store failures itself; this is anything before it
            log.exception("could not record the audit event of %s %s", scope["method"], scope["path"])


def writer(state: Any) -> audit.GroupCommit:
    """The application's audit writer, made on first use (inside the server's event loop)."""
    writer: audit.GroupCommit | None = getattr(state, "audit_writer", None)
    if writer is None:
        services = state.services

        async def write(events: list[Any]) -> bool:
            return await calls.write(services, audit.record, services.store, events)

        writer = state.audit_writer = audit.GroupCommit(write)
    return writer


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and value.strip():
            return str(value.decode("latin-1").strip())
    return uuid.uuid4().hex

"""Streaming inlets: ``POST /collection/{inletId}`` and ``POST /collection/batch/{inletId}``.

They follow Adobe's Data Collection Service: one message answers 200 with an ``xactionId``; a batch of
messages always answers 207 with one response per message, in order. A 2xx is sent only once the
messages are durable in the streaming log. Errors use the service's own problem shape
(``http://ns.adobe.com/adobecloud/problem/data-collection-service/...``), not the platform's.

What is refused at once (4xx) and what is acknowledged: a body that is not a message at all is refused
(empty, not JSON, not UTF-8, ``NaN``/``Infinity``, not an object, nested deeper than
:data:`MAX_DEPTH`, over 1 MB), and so is one that cannot be routed (unknown flow, another organization's
header, a dataset or schema that is not the flow's). Anything else is acknowledged without looking at
its fields (as the reference does when synchronous validation is off) and then either lands or becomes a
row error of its flow's run, with its reason (runtime/streaming.py): an acknowledged message never stops
the ones behind it.

An inlet that requires authentication takes a token of its organization's API client whose role has
``ingest-data`` (a Viewer's token is refused with 403), like the Data 360 Ingestion API.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.connectors.customerio import webhook
from headwater.container import Services
from headwater.services import access
from headwater.services.jsonbody import MAX_DEPTH, shallow, within_depth
from headwater.services.streaming import Inlet, MessageRejected

router = APIRouter(tags=["Streaming ingestion"])

MAX_BODY = 1024 * 1024
PROBLEM = "http://ns.adobe.com/adobecloud/problem/data-collection-service"
_PID = os.getpid() % 10_000


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _problem(status: int, title: str, message: str, kind: str = "inlet", **extra: Any) -> Response:
    return _json(
        status,
        {
            "type": f"{PROBLEM}/{kind}",
            "status": status,
            "title": title,
            "report": {"message": message, **extra},
        },
    )


async def _read_body(request: Request) -> bytes | Response:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return _problem(413, "Payload Too Large", f"The request body is over {MAX_BODY} bytes (1 MB).")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return _problem(413, "Payload Too Large", f"The request body is over {MAX_BODY} bytes (1 MB).")
        chunks.append(chunk)
    return b"".join(chunks)


def _authorize(svc: Services, inlet: Inlet, request: Request) -> Response | None:
    if not inlet.auth_required:
        return None
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if not header or not token.strip():
        return _problem(
            401,
            "Authorization",
            f"[{inlet.inlet_id}] Ims service token is empty",
            kind="data-collection-service-authorization",
        )
    claims = svc.tokens.verify(token.strip()) if scheme.lower() == "bearer" else None
    client = svc.clients.get(claims.client_id) if claims is not None else None
    if (
        claims is None
        or claims.org_id != inlet.scope.org_id
        or client is None
        or not client.enabled
        or client.org_id != inlet.scope.org_id
    ):
        return _problem(
            403,
            "Forbidden",
            f"[{inlet.inlet_id}] the access token is not valid for this inlet: expired, malformed, of a "
            "disabled client, or of another organization",
            kind="data-collection-service-authorization",
        )
    if access.INGEST_DATA not in access.permissions_of(client.role, org_admin=client.role == "Admin"):
        denied = access.denied(
            access.INGEST_DATA,
            client.role,
            inlet.sandbox_name,
            f"sending messages to inlet [{inlet.inlet_id}]",
        )
        return _problem(
            403,
            "Forbidden",
            f"[{inlet.inlet_id}] {denied.detail}",
            kind="data-collection-service-authorization",
            permission=access.INGEST_DATA,
            role=client.role,
        )
    return None


async def _prepare(request: Request, inlet_id: str) -> tuple[Services, Inlet, bytes] | Response:
    svc: Services = request.app.state.services
    inlet = svc.streams.inlet(inlet_id)
    if inlet is None:
        return _problem(404, "Not Found", f"Inlet [{inlet_id}] does not exist.")
    refused = _authorize(svc, inlet, request)
    if refused is not None:
        return refused
    body = await _read_body(request)
    if isinstance(body, Response):
        return body
    signed = [f for f in inlet.flows if f.signing_key]
    if signed:  # a Customer.io source with a webhook signing key: the request must be signed with it
        why = webhook.check_signature(
            signed[0].signing_key or "",
            body,
            request.headers.get(webhook.SIGNATURE_HEADER),
            request.headers.get(webhook.TIMESTAMP_HEADER),
        )
        if why is not None:
            return _problem(401, "Invalid Signature", why, kind="data-collection-service-authorization")
    return svc, inlet, body


def _flow_hint(request: Request) -> str | None:
    return request.headers.get("x-adobe-flow-id") or request.query_params.get("x-adobe-flow-id") or None


def _parse(body: bytes) -> Any:
    """The body as JSON (strict: UTF-8, no NaN or Infinity); MessageRejected when it is not, or when it
    is empty."""
    if not body.strip():
        raise MessageRejected("The body is empty: send one JSON message.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MessageRejected(f"The body is not valid JSON: {exc}") from exc


def _check_depth(message: Any) -> None:
    """MessageRejected when ``message`` nests objects and arrays deeper than :data:`MAX_DEPTH` levels
    (the streaming log and the lake could not keep it; refused now rather than acknowledged and lost)."""
    if not within_depth(message, MAX_DEPTH):
        raise MessageRejected(
            f"The message nests objects and arrays more than {MAX_DEPTH} levels deep: at most "
            f"{MAX_DEPTH} are accepted."
        )


@router.post("/collection/{inlet_id}", summary="Send one message to a streaming inlet")
async def collect_one(inlet_id: str, request: Request) -> Response:
    """Takes one XDM envelope (``header``/``body.xdmEntity``) or one raw JSON record (routed by the
    ``x-adobe-flow-id`` header or query parameter, shaped by that flow's mapping). 200 once durable.
    With ``?syncValidation=true`` the message is validated against the schema first (400 on failure)."""
    prepared = await _prepare(request, inlet_id)
    if isinstance(prepared, Response):
        return prepared
    svc, inlet, body = prepared
    received = int(time.time() * 1000)
    try:
        message = _parse(body)
        if not shallow(body, MAX_DEPTH):
            _check_depth(message)
        flow_id, kind, record = svc.streams.route(inlet, message, _flow_hint(request))
    except MessageRejected as exc:
        return _problem(exc.status, "Bad Request", exc.message)
    sync = request.query_params.get("syncValidation") or request.query_params.get("synchronousValidation")
    validation: dict[str, Any] = {"skipped": True}
    if sync and sync.lower() == "true" and flow_id:
        from headwater.runtime.streamvalidation import validate_message

        report = validate_message(svc, inlet.scope, flow_id, kind, record)
        if report is not None:
            return _json(
                400,
                {
                    "type": f"{PROBLEM}/inlet",
                    "status": 400,
                    "title": "Invalid XDM Message Format",
                    "report": {
                        "message": f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.scope.org_id}] "
                        "Message is invalid",
                        "cause": {"_streamingValidation": [report]},
                    },
                },
            )
        validation = {"status": "pass"}
    try:
        offsets = await svc.streams.publish_routed(inlet, flow_id, [record], kind=kind)
    except Exception:
        return _problem(503, "Service Unavailable", "The streaming log is not available; retry with backoff.")
    return _json(
        200,
        {
            "inletId": inlet.inlet_id,
            "xactionId": f"{received}:{_PID}:{offsets[0]}",
            "receivedTimeMs": received,
            "syncValidation": validation,
        },
    )


@router.post(
    "/collection/batch/{inlet_id}", summary="Send several messages to a streaming inlet", status_code=207
)
async def collect_batch(inlet_id: str, request: Request) -> Response:
    """Takes ``{"messages": [...]}`` and always answers 207 with one response per message, in order: an
    ``xactionId`` for each message accepted (durable), or ``statusCode`` and ``message``."""
    prepared = await _prepare(request, inlet_id)
    if isinstance(prepared, Response):
        return prepared
    svc, inlet, body = prepared
    received = int(time.time() * 1000)
    try:
        parsed = _parse(body)
    except MessageRejected as exc:
        return _problem(400, "Bad Request", exc.message)
    messages = parsed.get("messages") if isinstance(parsed, dict) else None
    if not isinstance(messages, list):
        return _problem(400, "Bad Request", 'The body must be {"messages": [...]}: "messages" is missing.')
    hint = _flow_hint(request)
    responses: list[dict[str, Any]] = []
    by_flow: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for index, message in enumerate(messages):
        try:
            _check_depth(message)
            flow_id, kind, record = svc.streams.route(inlet, message, hint)
        except MessageRejected as exc:
            responses.append({"statusCode": exc.status, "message": exc.message})
            continue
        responses.append({})
        by_flow.setdefault((flow_id, kind), []).append((index, record))
    batch_id = f"{received}:{_PID}"
    for (flow_id, kind), items in by_flow.items():
        try:
            offsets = await svc.streams.publish_routed(inlet, flow_id, [r for _, r in items], kind=kind)
        except Exception:
            for index, _ in items:
                responses[index] = {
                    "statusCode": 503,
                    "message": "The streaming log is not available; retry.",
                }
            continue
        for (index, _), offset in zip(items, offsets, strict=True):
            responses[index] = {"xactionId": f"{batch_id}:{offset}"}
    return _json(
        207,
        {"inletId": inlet.inlet_id, "batchId": batch_id, "receivedTimeMs": received, "responses": responses},
    )


class InletFastPath:
    """ASGI middleware that serves the two inlet routes before FastAPI's routing and dependency machinery,
    which took about half of a single-message request's time. The routes above stay registered, so the
    OpenAPI document describes them; requests to them are answered here, by the same functions."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith("/collection/"):
            rest = path[len("/collection/") :]
            batch = rest.startswith("batch/")
            inlet_id = rest[len("batch/") :] if batch else rest
            if inlet_id and "/" not in inlet_id:
                request = Request(scope, receive)
                handler = collect_batch if batch else collect_one
                response = await handler(inlet_id, request)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

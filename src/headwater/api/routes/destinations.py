"""Destinations and activation: the Test Request of an HTTP destination, and dead letters.

POST /data/foundation/flowservice/targetConnections/test        test a request before saving it
POST /data/foundation/flowservice/targetConnections/{id}/test   test a saved destination
GET  /data/foundation/flowservice/deadLetters[?property=flowId==…]
GET  /data/foundation/flowservice/deadLetters/{id}
POST /data/foundation/flowservice/deadLetters/{id}/replay
POST /data/foundation/flowservice/deadLetters/replay            {"ids": [...]} or {"flowId": "…"}
DELETE /data/foundation/flowservice/deadLetters/{id}             discard one
GET  /data/foundation/flowservice/jwks[?connectionId=…]          the mTLS certificates' keys
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, json_body
from headwater.api.routes.crud import list_response
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import ValidationFailed
from headwater.runtime.delivery import destination
from headwater.services import jwks, listing
from headwater.services.tenancy import Actor

PREFIX = "/data/foundation/flowservice"
TAG = "Destinations"
router = APIRouter()

_TEST = {
    "type": "object",
    "properties": {
        "variables": {"type": "object", "description": "Test values of the request's ${variables}."},
        "baseConnectionId": {"type": "string", "description": "A saved destination connection (its auth)."},
        "auth": {
            "type": "object",
            "properties": {"specName": {"type": "string"}, "params": {"type": "object"}},
        },
        "params": {"type": "object", "description": "The request: method, url, headers, timeouts, body."},
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    f"{PREFIX}/targetConnections/test",
    summary="Send a test request of an unsaved destination",
    tags=[TAG],
    openapi_extra=_body(_TEST),
)
async def test_unsaved(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """Renders the request with ``variables`` and sends it for real. The answer holds the request as sent
    (secrets masked), the response (status, headers, body truncated) or the transport error, and the
    elapsed time. Template and variable problems are a 400 before anything is sent."""
    body = await json_body(request)
    return JSONResponse(await destination.test_unsaved(services(request), actor, body))


@router.post(
    f"{PREFIX}/targetConnections/{{ident}}/test",
    summary="Send a test request of a saved destination",
    tags=[TAG],
    openapi_extra=_body({"type": "object", "properties": {"variables": {"type": "object"}}}),
)
async def test_saved(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    body = await json_body(request)
    return JSONResponse(await destination.test_saved(services(request), actor, ident, body))


@router.get(f"{PREFIX}/jwks", summary="The JWK Set of the mTLS certificates presented", tags=[TAG])
async def key_set(
    request: Request, connectionId: str | None = None, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    """The public key of each client certificate Headwater presents in mutual TLS to this sandbox's
    destinations (``connectionId``: one destination connection's), as a JWK Set with ``x5c`` chains."""
    svc = services(request)
    if connectionId is not None:
        await calls.read(svc, svc.connections.get, actor, connectionId)  # 404 outside the sandbox
    body = await calls.read(svc, jwks.key_set, svc.store, actor.scope, connectionId)
    return JSONResponse(body, media_type="application/jwk-set+json")


@router.get(f"{PREFIX}/deadLetters", summary="List dead letters", tags=[TAG])
async def list_dead_letters(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """Filter with ``property=flowId==…`` or ``property=state==dead``; newest first by default."""
    svc = services(request)
    coll = svc.dead_letters
    query = listing.parse_query(request.query_params.multi_items())
    docs, next_offset, total = await calls.read(
        svc, listing.run, coll.store, coll.kind, actor.scope, query, coll.render
    )
    return list_response(docs, query, next_offset, total, f"{PREFIX}/deadLetters")


@router.get(f"{PREFIX}/deadLetters/{{ident}}", summary="Get a dead letter", tags=[TAG])
async def get_dead_letter(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    svc = services(request)
    resource = await calls.read(svc, svc.dead_letters.get, actor, ident)
    return JSONResponse({"items": [svc.dead_letters.render(resource)]})


@router.delete(
    f"{PREFIX}/deadLetters/{{ident}}", summary="Discard a dead letter", tags=[TAG], status_code=204
)
async def delete_dead_letter(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> Response:
    svc = services(request)
    await calls.write(svc, svc.dead_letters.delete, actor, ident)
    return Response(status_code=204)


@router.post(f"{PREFIX}/deadLetters/{{ident}}/replay", summary="Replay a dead letter", tags=[TAG])
async def replay_one(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    await calls.read(svc, svc.dead_letters.get, actor, ident)  # 404 when absent
    return JSONResponse(await destination.replay(svc, actor, [ident]))


@router.post(
    f"{PREFIX}/deadLetters/replay",
    summary="Replay dead letters",
    tags=[TAG],
    openapi_extra=_body(
        {
            "type": "object",
            "properties": {
                "ids": {"type": "array", "items": {"type": "string"}, "maxItems": destination.MAX_REPLAY},
                "flowId": {"type": "string", "description": "every dead letter of this flow (up to 1000)"},
            },
        }
    ),
)
async def replay_many(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    flow_id = body.get("flowId") if isinstance(body, dict) else None
    if ids is None and isinstance(flow_id, str):
        query = listing.parse_query(
            [
                ("property", f"flowId=={flow_id}"),
                ("property", "state==dead"),
                ("limit", str(destination.MAX_REPLAY)),
            ]
        )
        docs, _, _ = await calls.read(
            svc, listing.run, svc.store, "deadLetter", actor.scope, query, svc.dead_letters.render
        )
        ids = [d["id"] for d in docs]
        if not ids:
            return JSONResponse({"results": []})
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValidationFailed(
            [{"path": "ids", "message": "must be an array of dead letter ids (or give flowId)"}]
        )
    return JSONResponse(await destination.replay(svc, actor, ids))

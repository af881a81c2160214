"""Real-Time Customer Profile's merge policy API under /data/core/ups/config/mergePolicies.

As AEP answers: a list is ``{"_page": {totalCount, pageSize}, "children": [...], "_links": {"next":
{"href"}}}`` (``href`` empty on the last page); create, get, PUT and PATCH answer 200 with the policy;
DELETE answers 200 with an empty body. No If-Match is needed; one that is sent must be current (412).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.merge_policies import GRAPH_TYPES, MERGE_TYPES, SCHEMA_CLASSES, MergePolicies
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

PREFIX = "/data/core/ups/config/mergePolicies"
TAG = "Real-Time Customer Profile"
router = APIRouter()

_POLICY = {
    "type": "object",
    "required": ["name", "schema", "identityGraph", "attributeMerge"],
    "properties": {
        "name": {"type": "string"},
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": list(SCHEMA_CLASSES)}},
        },
        "identityGraph": {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": list(GRAPH_TYPES)}},
        },
        "attributeMerge": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": list(MERGE_TYPES)},
                "order": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "dataSetPrecedence: dataset ids, highest precedence first",
                },
            },
        },
        "isActiveOnEdge": {"type": "boolean"},
        "default": {"type": "boolean", "description": "Making a policy the default unsets the previous one."},
    },
}
_PATCH = {
    "oneOf": [
        {"type": "array", "items": {"type": "object"}, "description": "JSON Patch"},
        {
            "type": "object",
            "description": 'One operation, e.g. {"op": "add", "path": "/default", "value": true}',
        },
    ]
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _policies(request: Request) -> MergePolicies:
    return services(request).merge_policies


def _answer(coll: MergePolicies, resource: Resource) -> JSONResponse:
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.get(PREFIX, tags=[TAG], summary="List merge policies")
async def list_policies(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _policies(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(PREFIX, tags=[TAG], summary="Create a merge policy", openapi_extra=_body(_POLICY))
async def create_policy(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _policies(request)
    body = await json_body(request)
    return _answer(coll, await calls.write(services(request), coll.create, actor, body))


@router.get(f"{PREFIX}/{{ident}}", tags=[TAG], summary="Get a merge policy")
async def get_policy(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _policies(request).find, actor, ident))


@router.put(f"{PREFIX}/{{ident}}", tags=[TAG], summary="Replace a merge policy", openapi_extra=_body(_POLICY))
async def put_policy(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _policies(request)
    body = await json_body(request)
    if_match = request.headers.get("if-match")
    return _answer(coll, await calls.write(services(request), coll.put, actor, ident, body, if_match))


@router.patch(
    f"{PREFIX}/{{ident}}", tags=[TAG], summary="Update fields of a merge policy", openapi_extra=_body(_PATCH)
)
async def patch_policy(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _policies(request)
    body = await json_body(request, patch=True)
    if_match = request.headers.get("if-match")
    return _answer(coll, await calls.write(services(request), coll.patch, actor, ident, body, if_match))


@router.delete(f"{PREFIX}/{{ident}}", tags=[TAG], summary="Delete a merge policy")
async def delete_policy(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    await calls.write(services(request), _policies(request).delete, actor, ident)
    return Response(status_code=200)

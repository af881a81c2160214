"""Conversion (Data Prep) API under /data/foundation/conversion: mapping sets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, created, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import BadRequest
from headwater.services.conversion import MappingSets
from headwater.services.tenancy import Actor

PREFIX = "/data/foundation/conversion"
TAG = "Conversion"
router = APIRouter()

_MAPPING = {
    "type": "object",
    "properties": {
        "sourceType": {
            "type": "string",
            "enum": ["ATTRIBUTE", "STATIC", "EXPRESSION"],
            "description": "Also text/x.schema-path (ATTRIBUTE) and text/x.aep-xl (EXPRESSION).",
        },
        "source": {
            "type": "string",
            "description": "Source path, constant or expression (alias sourceAttribute).",
        },
        "destination": {
            "type": "string",
            "description": "Path in the output schema (alias destinationXdmPath).",
        },
        "sourceAttribute": {"type": "string"},
        "destinationXdmPath": {"type": "string"},
        "identity": {"type": "boolean"},
        "primaryIdentity": {"type": "boolean"},
        "namespaceCode": {"type": ["string", "null"]},
        "identityGroup": {"type": ["string", "null"]},
    },
}
_MAPPING_SET = {
    "type": "object",
    "required": ["mappings"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "xdmSchema": {
            "type": "string",
            "description": "$id of the output schema (or outputSchema.schemaRef.id).",
        },
        "xdmVersion": {"type": "string"},
        "outputSchema": {
            "type": "object",
            "properties": {
                "schemaRef": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "contentType": {"type": "string"}},
                }
            },
        },
        "inputSchema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "version": {"type": "string"}},
        },
        "mappings": {"type": "array", "items": _MAPPING},
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _mapping_sets(request: Request) -> MappingSets:
    return services(request).mapping_sets


@router.post(
    f"{PREFIX}/mappingSets",
    tags=[TAG],
    summary="Create a mapping set",
    status_code=201,
    openapi_extra=_body(_MAPPING_SET),
)
async def create_mapping_set(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _mapping_sets(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return created(coll.render(resource), resource.etag)


@router.get(f"{PREFIX}/mappingSets", tags=[TAG], summary="List mapping sets")
async def list_mapping_sets(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _mapping_sets(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.get(
    f"{PREFIX}/mappingSets/{{ident}}", tags=[TAG], summary="Get a mapping set (optionally ?version=N)"
)
async def get_mapping_set(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    body, etag = await _mapping_set(ident, request, actor)
    return JSONResponse(body, headers={"ETag": etag})


async def _mapping_set(ident: str, request: Request, actor: Actor) -> tuple[dict[str, Any], str]:
    coll = _mapping_sets(request)
    raw = request.query_params.get("version")
    if raw is not None and not raw.isdigit():
        raise BadRequest(
            "version must be a non-negative integer.", code="CONV-1402-400", report={"parameter": "version"}
        )
    resource = await calls.read(
        services(request), coll.get, actor, ident, int(raw) if raw is not None else None
    )
    return coll.render(resource), resource.etag


@router.get(
    f"{PREFIX}/mappingSets/{{ident}}/mappings",
    tags=[TAG],
    summary="The mappings of a mapping set (optionally ?version=N)",
)
async def get_mapping_set_mappings(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    """As on the platform: a JSON array of the mapping set's mappings, each with its ``id``."""
    body, etag = await _mapping_set(ident, request, actor)
    return JSONResponse(body.get("mappings", []), headers={"ETag": etag})


@router.put(
    f"{PREFIX}/mappingSets/{{ident}}",
    tags=[TAG],
    summary="Replace a mapping set (new version)",
    openapi_extra=_body(_MAPPING_SET),
)
async def put_mapping_set(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    coll = _mapping_sets(request)
    body = await json_body(request)
    resource = await calls.write(
        services(request), coll.put, actor, ident, body, request.headers.get("if-match")
    )
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.delete(f"{PREFIX}/mappingSets/{{ident}}", tags=[TAG], summary="Delete a mapping set", status_code=204)
async def delete_mapping_set(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> Response:
    await calls.write(services(request), _mapping_sets(request).delete, actor, ident)
    return Response(status_code=204)

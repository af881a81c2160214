"""Catalog API under /data/foundation/catalog: datasets.

Catalog's conventions differ from the Flow Service's: objects come back as a map keyed by id
(``{"5c8c...": {...}}``), create/update/delete answer with references (``["@/dataSets/{id}"]``), lists
page with ``limit`` (default 50, at most 100) and ``start``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.catalogsvc import DataSets, project
from headwater.services.tenancy import Actor

PREFIX = "/data/foundation/catalog"
TAG = "Catalog"
router = APIRouter()

_SCHEMA_REF = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "description": "$id of a schema in this sandbox"},
        "contentType": {"type": "string", "example": "application/vnd.adobe.xed-full+json;version=1"},
    },
}
_TAGS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
_DATASET = {
    "type": "object",
    "required": ["name", "schemaRef"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "schemaRef": _SCHEMA_REF,
        "tags": _TAGS,
        "fileDescription": {"type": "object"},
    },
}
_DATASET_PATCH = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "tags": _TAGS,
                "fileDescription": {"type": "object"},
            },
        },
        {"type": "array", "description": "JSON Patch", "items": {"type": "object"}},
    ]
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _datasets(request: Request) -> DataSets:
    return services(request).datasets


def _ref(ident: str) -> list[str]:
    return [f"@/dataSets/{ident}"]


@router.post(
    f"{PREFIX}/dataSets",
    tags=[TAG],
    summary="Create a dataset",
    status_code=201,
    openapi_extra=_body(_DATASET),
)
async def create_dataset(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """``?requestDataSource=true`` is accepted and has no further effect."""
    body = await json_body(request)
    resource = await calls.write(services(request), _datasets(request).create, actor, body)
    return JSONResponse(_ref(resource.id), status_code=201, headers={"ETag": resource.etag})


@router.get(f"{PREFIX}/dataSets", tags=[TAG], summary="List datasets")
async def list_datasets(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _datasets(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.get(
    f"{PREFIX}/dataSets/{{ident}}", tags=[TAG], summary="Get one or more datasets (comma-separated ids)"
)
async def get_dataset(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _datasets(request)
    resources = await calls.read(services(request), coll.get_many, actor, ident.split(","))
    props = request.query_params.get("properties")
    fields = [p.strip() for p in props.split(",") if p.strip()] if props else None
    headers = {"ETag": resources[0].etag} if len(resources) == 1 else None
    return JSONResponse({r.id: project(coll.render(r), fields) for r in resources}, headers=headers)


@router.patch(
    f"{PREFIX}/dataSets/{{ident}}",
    tags=[TAG],
    summary="Update a dataset's name, description or tags",
    openapi_extra=_body(_DATASET_PATCH),
)
async def patch_dataset(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    body = await json_body(request, patch=True)
    resource = await calls.write(
        services(request), _datasets(request).update, actor, ident, body, request.headers.get("if-match")
    )
    return JSONResponse(_ref(resource.id), headers={"ETag": resource.etag})


@router.delete(f"{PREFIX}/dataSets/{{ident}}", tags=[TAG], summary="Delete a dataset")
async def delete_dataset(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    await calls.write(services(request), _datasets(request).delete, actor, ident)
    return JSONResponse(_ref(ident))

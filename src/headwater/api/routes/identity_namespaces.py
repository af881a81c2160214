"""Identity Service's namespace API under /data/core/idnamespace: standard and custom namespaces.

As AEP answers: the list is a bare array, one namespace is an object, a create answers 200 with the
namespace; ids are integers; there is no DELETE (a namespace, once made, stays).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.identity_namespaces import ID_TYPES, IdentityNamespaces
from headwater.services.tenancy import Actor

PREFIX = "/data/core/idnamespace/identities"
TAG = "Identity Service"
router = APIRouter()

_NAMESPACE = {
    "type": "object",
    "required": ["name", "code", "idType"],
    "properties": {
        "name": {"type": "string", "example": "Loyalty Member"},
        "code": {
            "type": "string",
            "example": "Loyalty",
            "description": "Unique in the sandbox, case-insensitively; a letter, then letters, digits, _.",
        },
        "idType": {"type": "string", "enum": list(ID_TYPES)},
        "description": {"type": "string"},
    },
}
_UPDATE = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "code": {"type": "string", "description": "May be sent; cannot change."},
        "idType": {"type": "string", "description": "May be sent; cannot change."},
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _namespaces(request: Request) -> IdentityNamespaces:
    return services(request).namespaces


@router.get(PREFIX, tags=[TAG], summary="List identity namespaces (standard and the sandbox's custom ones)")
async def list_namespaces(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _namespaces(request).list_all, actor))


@router.get(f"{PREFIX}/{{ident}}", tags=[TAG], summary="Get an identity namespace by its numeric id")
async def get_namespace(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _namespaces(request).find, actor, ident))


@router.post(
    PREFIX, tags=[TAG], summary="Create a custom identity namespace", openapi_extra=_body(_NAMESPACE)
)
async def create_namespace(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _namespaces(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource))


@router.put(
    f"{PREFIX}/{{ident}}",
    tags=[TAG],
    summary="Update a custom identity namespace's name and description",
    openapi_extra=_body(_UPDATE),
)
async def put_namespace(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _namespaces(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.put, actor, ident, body)
    return JSONResponse(coll.render(resource))

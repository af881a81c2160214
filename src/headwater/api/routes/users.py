"""Changing a user: ``PATCH /data/core/identity/users/{id|username}`` with any of ``email``, ``roles``,
``admin``, ``enabled`` and ``password`` (organization admins: permission ``manage-users``). Listing,
creating and disabling users live with the rest of the identity API in oauth.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services import access
from headwater.services.tenancy import Actor

router = APIRouter()

ROLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'Sandbox name (or "*" for every other sandbox) -> role. '
    "Absent on create: Viewer everywhere.",
    "additionalProperties": {"type": "string", "enum": list(access.ROLES)},
    "example": {"prod": "Developer", "*": "Viewer"},
}
_CHANGES = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "roles": ROLES_SCHEMA,
        "admin": {"type": "boolean", "description": "An organization admin: Admin in every sandbox."},
        "enabled": {"type": "boolean"},
        "password": {"type": "string", "minLength": 12, "description": "A new console password."},
    },
}


@router.patch(
    "/data/core/identity/users/{ident}",
    summary="Change a user's email, roles, admin flag, enabled flag or password",
    tags=["Identity"],
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _CHANGES}}}},
)
async def update_user(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    user = await calls.write(svc, svc.identity.users.update, actor, ident, body)
    doc = svc.identity.users.render(user)
    return JSONResponse({"items": [doc]}, headers={"ETag": doc["etag"]})

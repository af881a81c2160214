"""Sandbox Management: ``GET /data/foundation/sandbox-management/sandboxes`` lists the organization's
sandboxes in the reference's shape (the console's sandbox picker reads it); ``POST`` creates one, for
organization admins (permission ``manage-sandboxes``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, created, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import ValidationFailed
from headwater.services.resources import require_object
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Sandbox

router = APIRouter()


def _sandbox(sandbox: Sandbox) -> dict[str, Any]:
    return {
        "name": sandbox.name,
        "title": sandbox.title,
        "state": "active",
        "type": sandbox.type,
        "region": "local",
        "isDefault": sandbox.name == "prod",
        "createdDate": sandbox.created_at,
    }


@router.get(
    "/data/foundation/sandbox-management/sandboxes",
    tags=["Sandbox Management"],
    summary="List the organization's sandboxes",
)
async def list_sandboxes(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    found = await calls.read(svc, svc.store.list_sandboxes, actor.org.id)
    items = sorted((_sandbox(s) for s in found), key=lambda s: (not s["isDefault"], s["name"]))
    return JSONResponse(
        {"sandboxes": items, "_page": {"limit": len(items), "count": len(items)}, "_links": {}}
    )


_NEW_SANDBOX = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$", "example": "acme-dev"},
        "title": {"type": "string", "example": "Acme development"},
        "type": {"type": "string", "enum": ["development", "production"], "default": "development"},
    },
}


@router.post(
    "/data/foundation/sandbox-management/sandboxes",
    tags=["Sandbox Management"],
    summary="Create a sandbox (organization admins)",
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _NEW_SANDBOX}}}
    },
)
async def create_sandbox(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = require_object(await json_body(request))
    errors: list[dict[str, str]] = []
    name, title, kind = body.get("name"), body.get("title"), body.get("type", "development")
    if not isinstance(name, str):
        errors.append({"path": "name", "message": "is required: 1-63 lowercase letters, digits and hyphens"})
    if title is not None and (not isinstance(title, str) or not title.strip() or len(title) > 200):
        errors.append({"path": "title", "message": "must be a non-empty string of at most 200 characters"})
    if kind not in ("development", "production"):
        errors.append({"path": "type", "message": "must be development or production"})
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(name, str)
    sandbox = await calls.write(svc, svc.tenancy.create_sandbox, actor.org.id, name, title, kind)
    svc.sandboxes.clear()  # a lookup of the name a moment ago may have cached its absence
    return created({**_sandbox(sandbox), "id": sandbox.id})

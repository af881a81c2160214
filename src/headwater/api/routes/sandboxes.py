"""Sandbox Management (read only): ``GET /data/foundation/sandbox-management/sandboxes`` lists the
organization's sandboxes in the reference's shape; the console's sandbox picker reads it. Creating
sandboxes stays with ``headwater sandboxes create`` until roles exist (issue 7)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api import calls
from headwater.api.auth import platform_actor, services
from headwater.api.responses import JSONResponse
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

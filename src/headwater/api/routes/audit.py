"""Audit Query: ``GET /data/foundation/audit/events`` lists the organization's audit events (every
sandbox), newest first, for organization admins (permission ``view-user-activity-log``). The events are
written by the edge/audit.py middleware; their shape and filters are services/audit.py's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services import audit
from headwater.services.tenancy import Actor

router = APIRouter()

EVENTS = "/data/foundation/audit/events"

_EXAMPLE_EVENT = {
    "id": "6ecc125d-da03-4882-a944-88c707ddc3f7",
    "requestId": "5YGdpTX5PvRrdqCfrCT8p8lWphZPzxl8",
    "permissionResource": "Sources",
    "permissionType": "WRITE",
    "permission": "manage-sources",
    "assetType": "connections",
    "assetId": "9b1c4c39-6a43-4d2c-8a7e-2f0e0f6c2b11",
    "action": "Create",
    "status": "Allow",
    "statusCode": 201,
    "failureCode": "",
    "timestamp": "2026-11-23T10:00:00.000+0000",
    "imsOrgId": "5E1A6F2B9C3D4E5F60718293@AdobeOrg",
    "sandboxName": "prod",
    "userEmail": "3f2a9c0e1b7d4e56a8c9d0e1f2a3b4c5@AdobeID",
    "clientId": "3f2a9c0e1b7d4e56a8c9d0e1f2a3b4c5",
    "role": "Developer",
    "method": "POST",
    "path": "/data/foundation/flowservice/connections",
    "clientIp": "10.0.0.12",
}
_EVENT = {
    "type": "object",
    "properties": {
        **{k: {"type": "string"} for k in _EXAMPLE_EVENT if k != "statusCode"},
        "statusCode": {"type": "integer"},
        "action": {"type": "string", "enum": list(audit.ACTIONS.values())},
        "status": {"type": "string", "enum": list(audit.OUTCOMES.values())},
        "sandboxName": {"type": ["string", "null"], "description": "null for organization-wide calls"},
        "assetId": {"type": ["string", "null"]},
    },
}
_LINK = {"type": "object", "properties": {"href": {"type": "string"}}}
_PAGE = {
    "type": "object",
    "properties": {
        "_embedded": {"type": "object", "properties": {"events": {"type": "array", "items": _EVENT}}},
        "_page": {
            "type": "object",
            "properties": {n: {"type": "integer"} for n in ("limit", "start", "count", "totalElements")},
        },
        "_links": {"type": "object", "properties": {"self": _LINK, "next": _LINK}},
    },
}
_LIST_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": audit.MAX_LIMIT, "default": 50},
        },
        {"name": "start", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {
            "name": "property",
            "in": "query",
            "description": "Repeatable filter NAME OP VALUE, all must hold: action==create, status==deny, "
            "user==ada@example.com (or userEmail), clientId, role, assetType, assetId, permission, "
            "sandboxName, statusCode (all ==), timestamp>= > <= < (ISO 8601 or epoch milliseconds).",
            "schema": {"type": "array", "items": {"type": "string"}},
            "style": "form",
            "explode": True,
            "example": ["action==create", "timestamp>=2026-11-23T00:00:00Z"],
        },
    ],
    "responses": {
        "200": {
            "description": "A page of events, newest first",
            "content": {
                "application/json": {
                    "schema": _PAGE,
                    "example": {
                        "_embedded": {"events": [_EXAMPLE_EVENT]},
                        "_page": {"limit": 50, "start": 0, "count": 1, "totalElements": 1},
                        "_links": {"self": {"href": f"{EVENTS}?limit=50&start=0"}},
                    },
                }
            },
        },
        "400": {"description": "A bad limit, start or property; report.parameter names it"},
        "403": {"description": "The caller is not an organization admin (view-user-activity-log)"},
    },
}


@router.get(
    EVENTS,
    tags=["Audit Query"],
    summary="List the organization's audit events (organization admins)",
    openapi_extra=_LIST_DOC,
)
async def list_events(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """Every write through the API, allowed, denied or failed, in every sandbox of the organization."""
    svc = services(request)
    query = audit.parse_query(request.query_params.multi_items())
    events, total = await calls.pooled(
        svc.store.list_audit, actor.org.id, query.filters, query.limit, query.start
    )
    return JSONResponse(audit.page(events, total, query, EVENTS))

"""Console pages: the organization's users, audit log and sandboxes, for organization admins (the
permissions ``manage-users``, ``view-user-activity-log`` and ``manage-sandboxes``; anyone else gets a 403
page naming the permission). The users page's role fields come from the organization's sandboxes; the
behaviour is in ``static/users.js``, ``static/audit.js`` and ``static/sandboxes.js``, through
``/data/core/identity/users``, ``/data/foundation/audit/events`` and
``/data/foundation/sandbox-management/sandboxes``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.services import access
from headwater.web.app import page

router = APIRouter(include_in_schema=False)
#: The audit log's filters: (value sent as property=action==…, label).
ACTIONS = [("create", "Create"), ("update", "Update"), ("delete", "Delete"), ("execute", "Execute")]
STATUSES = [("allow", "Allow"), ("deny", "Deny"), ("failure", "Failure")]
PAGE_SIZES = (10, 25, 50, 100)


@router.get("/console/users")
async def users(request: Request) -> Response:
    return page(
        request,
        "organization/users.html",
        "Users",
        needs=access.MANAGE_USERS,
        roles=list(access.ROLES),
        default_role=access.DEFAULT_USER_ROLE,
        every_sandbox=access.EVERY_SANDBOX,
    )


@router.get("/console/audit")
async def audit(request: Request) -> Response:
    return page(
        request,
        "organization/audit.html",
        "Audit",
        needs=access.VIEW_AUDIT_LOG,
        actions=ACTIONS,
        statuses=STATUSES,
        page_sizes=PAGE_SIZES,
    )


#: The sandbox types the Sandbox Management API takes: (value, label).
SANDBOX_TYPES = [("development", "Development"), ("production", "Production")]


@router.get("/console/sandboxes")
async def sandboxes(request: Request) -> Response:
    return page(
        request,
        "organization/sandboxes.html",
        "Sandboxes",
        needs=access.MANAGE_SANDBOXES,
        sandbox_types=SANDBOX_TYPES,
    )

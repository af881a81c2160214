"""Console pages: the organization's users and audit log, for organization admins (the permissions
``manage-users`` and ``view-user-activity-log``; anyone else gets a 403 page naming the permission). The
users page's role fields come from the organization's sandboxes; the behaviour is in ``static/users.js``
and ``static/audit.js``, through ``/data/core/identity/users`` and ``/data/foundation/audit/events``."""

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

"""Console pages: Data 360 setup (document 000). External client apps, server-to-server connectors with
their schema, and data streams. The pages are shells; ``static/data360.js`` does the work through the API
(``/data/core/identity/externalClientApps``, ``/services/data/v62.0/ssot/...``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.container import services
from headwater.services.data360.apppolicy import (
    ACCESS_TOKEN_SECONDS,
    IP_RELAXATION,
    REFRESH_TOKEN_POLICIES,
    SESSION_TIMEOUTS,
    TIMED,
    UNITS,
)
from headwater.services.data360.identity import ADMIN_APPROVED, PERMITTED_USERS, SCOPES
from headwater.web.app import page

router = APIRouter(include_in_schema=False)
BASE = "/console/data360"
#: The OAuth scopes as document 000 lists them (refresh_token and offline_access go together).
SCOPE_GROUPS = [
    ("Manage user data via APIs", ["api"]),
    ("Perform requests at any time", ["refresh_token", "offline_access"]),
    ("Manage Data 360 Ingestion API data", ["cdp_ingest_api"]),
    ("Perform ANSI SQL queries on Data 360 data", ["cdp_query_api"]),
]
assert sorted(s for _, names in SCOPE_GROUPS for s in names) == sorted(SCOPES)
POLICIES: dict[str, Any] = {
    "scope_groups": SCOPE_GROUPS,
    "permitted_users": list(PERMITTED_USERS),
    "admin_approved": ADMIN_APPROVED,
    "ip_relaxation": list(IP_RELAXATION),
    "session_timeouts": list(SESSION_TIMEOUTS.items()),
    "default_session": ACCESS_TOKEN_SECONDS,
    "refresh_token_policies": list(REFRESH_TOKEN_POLICIES),
    "refresh_timed": list(TIMED),
    "validity_units": list(UNITS),
}


@router.get(f"{BASE}/apps")
async def apps(request: Request) -> Response:
    return page(request, "data360/apps.html", "External client apps")


@router.get(f"{BASE}/apps/new")
async def new_app(request: Request) -> Response:
    return page(request, "data360/app_new.html", "New external client app", **POLICIES)


@router.get(f"{BASE}/apps/{{app_id}}")
async def app(request: Request, app_id: str) -> Response:
    base_url = services(request).settings.base_url.rstrip("/")
    return page(
        request, "data360/app.html", "External client app", app_id=app_id, base_url=base_url, **POLICIES
    )


@router.get(f"{BASE}/connectors")
async def connectors(request: Request) -> Response:
    return page(request, "data360/connectors.html", "Server-to-server connectors")


@router.get(f"{BASE}/connectors/{{connector_id}}")
async def connector(request: Request, connector_id: str) -> Response:
    return page(request, "data360/connector.html", "Connector", connector_id=connector_id)


@router.get(f"{BASE}/streams")
async def streams(request: Request) -> Response:
    return page(request, "data360/streams.html", "Data streams")


@router.get(f"{BASE}/streams/new")
async def new_stream(request: Request) -> Response:
    return page(request, "data360/stream_new.html", "New data stream")


@router.get(f"{BASE}/streams/{{stream_id}}")
async def stream(request: Request, stream_id: str, dataspace: str = "") -> Response:
    return page(request, "data360/stream.html", "Data stream", stream_id=stream_id, dataspace=dataspace)

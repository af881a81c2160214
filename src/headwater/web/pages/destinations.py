"""Console pages: destinations (document 003). The list, the four-step wizard and a saved destination's
facts with its Test Request; the behaviour is in ``static/destinations.js``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.catalog import ids
from headwater.services.destinations import ICONS
from headwater.web.app import page

router = APIRouter(include_in_schema=False)
#: Connection and read timeouts offered by the request step, in milliseconds (1000 is the default).
TIMEOUTS_MS = (250, 500, 1000, 2000, 3000, 5000, 10000, 15000, 30000, 60000)


@router.get("/console/destinations")
async def destinations(request: Request) -> Response:
    return page(request, "destinations/list.html", "Destinations", spec_id=ids.HTTP_DESTINATION)


@router.get("/console/destinations/new")
async def new_destination(request: Request) -> Response:
    return page(
        request,
        "destinations/new.html",
        "Add destination",
        spec_id=ids.HTTP_DESTINATION,
        icons=ICONS,
        timeouts=TIMEOUTS_MS,
    )


@router.get("/console/destinations/{connection_id}")
async def destination(request: Request, connection_id: str) -> Response:
    return page(
        request,
        "destinations/detail.html",
        "Destination",
        spec_id=ids.HTTP_DESTINATION,
        connection_id=connection_id,
    )

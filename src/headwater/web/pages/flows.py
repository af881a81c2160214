"""Console pages: dataflows (list with state, schedule and last run; a detail page with the runs chart,
errors and row samples, enable/disable and schedule edits) and the Create dataflow wizard
(``static/flow-wizard.js``). The behaviour is in ``static/flows.js``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.catalog import ids
from headwater.web.app import page

router = APIRouter(include_in_schema=False)


@router.get("/console/flows")
async def flows(request: Request) -> Response:
    return page(request, "flows/list.html", "Dataflows")


@router.get("/console/flows/new")
async def new_flow(request: Request, connection: str = "") -> Response:
    """The Create dataflow wizard; ``?connection=`` starts it on that source account."""
    return page(
        request,
        "flows/new.html",
        "Create dataflow",
        connection=connection,
        lake_spec_id=ids.DATA_LAKE,
    )


@router.get("/console/flows/{ident}")
async def flow(request: Request, ident: str) -> Response:
    return page(request, "flows/detail.html", "Dataflow", ident=ident)

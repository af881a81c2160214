"""Console pages: dataflows (list with state, schedule and last run; a detail page with the runs chart,
errors and row samples, enable/disable and schedule edits; the Create dataflow wizard). The behaviour is in
``static/flows.js`` and ``static/flow-wizard.js``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.web.app import page

router = APIRouter(include_in_schema=False)


@router.get("/console/flows")
async def flows(request: Request) -> Response:
    return page(request, "flows/list.html", "Dataflows")


@router.get("/console/flows/new")
async def new(request: Request, connection: str = "") -> Response:
    """The Create dataflow wizard; ``connection`` preselects an account (the sources wizard returns here)."""
    return page(request, "flows/new.html", "Create dataflow", connection=connection)


@router.get("/console/flows/{ident}")
async def flow(request: Request, ident: str) -> Response:
    return page(request, "flows/detail.html", "Dataflow", ident=ident)

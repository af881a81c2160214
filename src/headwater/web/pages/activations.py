"""Console pages: activations. Activation flows with their delivery counts, and one flow's runs and dead
letters with Replay; the behaviour is in ``static/activations.js``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.catalog import ids
from headwater.engines.latency import LATENCY_BOUNDS
from headwater.web.app import page

router = APIRouter(include_in_schema=False)
#: The upper bounds of a run's ``deliverySummary.latencyHistogram`` buckets: p50/p99 over several runs.
BOUNDS = ",".join(str(bound) for bound in LATENCY_BOUNDS)


@router.get("/console/activations")
async def activations(request: Request) -> Response:
    return page(
        request,
        "activations/list.html",
        "Activations",
        spec_id=ids.ACTIVATION,
        destination_spec_id=ids.HTTP_DESTINATION,
        bounds=BOUNDS,
    )


@router.get("/console/activations/{flow_id}")
async def activation(request: Request, flow_id: str) -> Response:
    return page(request, "activations/detail.html", "Activation", flow_id=flow_id, bounds=BOUNDS)

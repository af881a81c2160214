"""Console pages: activations. Activation flows with their delivery counts, one flow's runs and dead
letters with Replay (``static/activations.js``), and the wizard that creates an activation flow from a
streaming source, a dataset or an audience to a destination's request (``static/activation-wizard.js``)."""

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


#: How often a dataset's activation runs, in the wizard: ("frequency:interval" of its scheduleParams, or ""
#: for none, label).
SCHEDULES = [
    ("", "Only when a run is started (POST /runs)"),
    ("minute:15", "Every 15 minutes"),
    ("hour:1", "Every hour"),
    ("day:1", "Every day"),
]


@router.get("/console/activations/new")
async def new_activation(request: Request) -> Response:
    return page(
        request,
        "activations/new.html",
        "Create activation",
        spec_id=ids.ACTIVATION,
        destination_spec_id=ids.HTTP_DESTINATION,
        lake_spec_id=ids.DATA_LAKE,
        profile_spec_id=ids.PROFILE_SERVICE,
        streaming_spec_ids=",".join(sorted(ids.STREAMING_CONNECTION_SPECS)),
        schedules=SCHEDULES,
    )


@router.get("/console/activations/{flow_id}")
async def activation(request: Request, flow_id: str) -> Response:
    return page(request, "activations/detail.html", "Activation", flow_id=flow_id, bounds=BOUNDS)

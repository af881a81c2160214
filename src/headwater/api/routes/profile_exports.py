"""Real-Time Customer Profile's export jobs (``/data/core/ups/export/jobs``), in AEP's shapes.

Create answers 200 with the job (status ``NEW``, an integer ``id``); list is ``{"records", "page",
"link"}``, newest first; DELETE cancels and answers 200 ``{"status", "message"}``. Creating needs
``view-profiles`` and ``manage-segments``, cancelling ``manage-segments``, reading ``read``
(services/access.py; the reasons are in services/profiles/exports.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.profiles.exports import ProfileExportJobs
from headwater.services.tenancy import Actor

JOBS = "/data/core/ups/export/jobs"
TAG = "Real-Time Customer Profile"
router = APIRouter()

_STATUS = {"type": "array", "items": {"type": "string", "enum": ["realized", "existing", "exited"]}}
_JOB = {
    "type": "object",
    "required": ["destination"],
    "properties": {
        "fields": {
            "type": "string",
            "description": "Comma-separated dotted paths of the destination schema to export (every "
            "attribute when left out); identityMap and segmentMembership are always exported.",
            "example": "person.name,personalEmail.address",
        },
        "mergePolicy": {
            "type": "object",
            "description": "When left out: the policy the segments share, else the sandbox's default.",
            "properties": {"id": {"type": "string"}, "version": {"type": "integer", "example": 1}},
        },
        "filter": {
            "type": "object",
            "properties": {
                "segments": {
                    "type": "array",
                    "description": "The audiences to export (every profile of the sandbox when left out).",
                    "items": {
                        "type": "object",
                        "required": ["segmentId"],
                        "properties": {
                            "segmentId": {"type": "string"},
                            "segmentNs": {"type": "string", "enum": ["ups"]},
                            "status": {**_STATUS, "description": 'Default ["realized", "existing"].'},
                        },
                    },
                },
                "segmentQualificationTime": {
                    "type": "object",
                    "properties": {
                        "startTime": {"type": "string", "format": "date-time"},
                        "endTime": {"type": "string", "format": "date-time"},
                    },
                },
                "fromIngestTimestamp": {"type": "string", "format": "date-time"},
                "emptyProfiles": {"type": "boolean", "description": "Also profiles with events only."},
            },
        },
        "destination": {
            "type": "object",
            "required": ["datasetId"],
            "properties": {
                "datasetId": {
                    "type": "string",
                    "description": "A dataset of the XDM Individual Profile class that is not enabled for "
                    "profile.",
                },
                "segmentPerBatch": {"type": "boolean", "enum": [False]},
            },
        },
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": ["_xdm.context.profile"]}},
        },
        "evaluationInfo": {
            "type": "object",
            "properties": {
                "segmentation": {"type": "boolean", "description": "Evaluate the segments first."}
            },
        },
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _jobs(request: Request) -> ProfileExportJobs:
    return services(request).profile_exports


@router.get(
    JOBS,
    tags=[TAG],
    summary="List profile export jobs, newest first",
    description="``limit`` (20, at most 100), ``offset`` (``page.pageOffset`` of the previous page), "
    "``status`` (NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED).",
)
async def list_jobs(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(
    JOBS,
    tags=[TAG],
    summary="Export profiles (an audience's members) to a dataset",
    openapi_extra=_body(_JOB),
)
async def create_job(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource))


@router.get(f"{JOBS}/{{ident}}", tags=[TAG], summary="Get a profile export job")
async def get_job(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _jobs(request).find, actor, ident))


@router.delete(f"{JOBS}/{{ident}}", tags=[TAG], summary="Cancel a profile export job")
async def cancel_job(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.write(services(request), _jobs(request).cancel, actor, ident))

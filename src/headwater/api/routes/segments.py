"""The Segmentation Service API: segment definitions (``/data/core/ups/segment/definitions``) and segment
jobs (``/data/core/ups/segment/jobs``), in AEP's shapes.

Definitions: create answers 200 with the definition (AEP's answer), list is ``{"segments", "page",
"link"}``, PATCH takes a JSON Patch (no If-Match needed), DELETE answers 200 with an empty body. Jobs:
create answers 200 with the job (status ``NEW``), list is ``{"_page", "children", "_links"}``.
Previews and estimates (``/data/core/ups/preview``, ``/estimate``): POST answers 200 ``{"state":
"RESULT_READY", "previewId"}``. Writes need ``manage-segments``; previews, which show profiles, need
``view-profiles`` (services/access.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services.segments.definitions import SegmentDefinitions
from headwater.services.segments.jobs import SegmentJobs
from headwater.services.segments.previews import Previews
from headwater.services.tenancy import Actor

DEFINITIONS = "/data/core/ups/segment/definitions"
JOBS = "/data/core/ups/segment/jobs"
PREVIEW = "/data/core/ups/preview"
ESTIMATE = "/data/core/ups/estimate"
TAG = "Segmentation Service"
router = APIRouter()

_DEFINITION = {
    "type": "object",
    "required": ["name", "expression"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "expression": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["PQL"]},
                "format": {"type": "string", "enum": ["pql/text"]},
                "value": {"type": "string", "example": 'homeAddress.countryCode = "US"'},
            },
        },
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string", "enum": ["_xdm.context.profile"]}},
        },
        "mergePolicyId": {"type": "string", "description": "The sandbox's default policy when left out."},
        "evaluationInfo": {
            "type": "object",
            "description": "batch, continuous (streaming) and synchronous, each {enabled: bool}",
        },
    },
}
_JOB = {
    "type": "object",
    "required": ["segments"],
    "properties": {
        "segments": {
            "type": "array",
            "items": {"type": "object", "properties": {"segmentId": {"type": "string"}}},
            "description": 'Definitions to evaluate; {"segmentId": "*"} for every batch-enabled one.',
        }
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _definitions(request: Request) -> SegmentDefinitions:
    return services(request).segment_definitions


def _jobs(request: Request) -> SegmentJobs:
    return services(request).segment_jobs


@router.get(DEFINITIONS, tags=[TAG], summary="List segment definitions")
async def list_definitions(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _definitions(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(DEFINITIONS, tags=[TAG], summary="Create a segment definition", openapi_extra=_body(_DEFINITION))
async def create_definition(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _definitions(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.get(f"{DEFINITIONS}/{{ident}}", tags=[TAG], summary="Get a segment definition")
async def get_definition(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _definitions(request).find, actor, ident))


@router.patch(f"{DEFINITIONS}/{{ident}}", tags=[TAG], summary="Update a segment definition (JSON Patch)")
async def patch_definition(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    coll = _definitions(request)
    body = await json_body(request, patch=True)
    if_match = request.headers.get("if-match")
    resource = await calls.write(services(request), coll.patch, actor, ident, body, if_match)
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.delete(
    f"{DEFINITIONS}/{{ident}}", tags=[TAG], summary="Delete a segment definition and its membership"
)
async def delete_definition(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    await calls.write(services(request), _definitions(request).delete, actor, ident)
    return Response(status_code=200)


@router.get(JOBS, tags=[TAG], summary="List segment jobs, newest first")
async def list_jobs(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(JOBS, tags=[TAG], summary="Start a segment job", openapi_extra=_body(_JOB))
async def create_job(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource))


@router.get(f"{JOBS}/{{ident}}", tags=[TAG], summary="Get a segment job")
async def get_job(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _jobs(request).find, actor, ident))


_PREVIEW = {
    "type": "object",
    "required": ["predicateExpression"],
    "properties": {
        "predicateExpression": {"type": "string", "example": 'homeAddress.city = "Oslo"'},
        "predicateType": {"type": "string", "enum": ["pql/text"]},
        "predicateModel": {"type": "string", "enum": ["_xdm.context.profile"]},
        "mergePolicyId": {"type": "string"},
    },
}


def _previews(request: Request) -> Previews:
    return services(request).segment_previews


@router.post(
    PREVIEW,
    tags=[TAG],
    summary="Preview an audience (evaluates every profile)",
    openapi_extra=_body(_PREVIEW),
)
async def create_preview(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _previews(request)
    body = await json_body(request)
    return JSONResponse(coll.render(await calls.pooled(coll.create, actor, body)))


@router.get(f"{PREVIEW}/{{ident}}", tags=[TAG], summary="The qualifying profiles of a preview, paged")
async def get_preview(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _previews(request)
    params = dict(request.query_params)
    return JSONResponse(await calls.pooled(coll.results, actor, ident, params))


@router.delete(f"{PREVIEW}/{{ident}}", tags=[TAG], summary="Forget a preview")
async def delete_preview(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    await calls.write(services(request), _previews(request).delete, actor, ident)
    return Response(status_code=200)


@router.get(f"{ESTIMATE}/{{ident}}", tags=[TAG], summary="The size of a preview's audience")
async def get_estimate(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _previews(request).estimate, actor, ident))

"""Query Service (``/data/foundation/query/queries``), after Adobe Experience Platform's.

Create answers 202 with the query (``state: SUBMITTED``); it runs asynchronously (runtime/queryjobs.py).
List is ``{"queries", "_page", "_links", "version"}``; ``PATCH {"op": "cancel"}`` answers 202
``{"message", "statusCode"}``; ``DELETE`` hides the query (AEP's soft delete). A SELECT's rows are read in
pages at ``GET /queries/{id}/results`` (Headwater's, see docs/api.md). Query templates
(``/query-templates``): create and replace answer 202 with the template, list ``{"templates", ...}``,
DELETE 202 ``{"message", "statusCode"}``. Permissions are in services/queryservice.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import bearer_token, platform_actor
from headwater.errors import NotFound
from headwater.services.queryservice import BASE, QueryJobs
from headwater.services.querytemplates import BASE as TEMPLATES
from headwater.services.querytemplates import QueryTemplates
from headwater.services.tenancy import Actor

TAG = "Query Service"
router = APIRouter()

_QUERY = {
    "type": "object",
    "required": ["dbName", "sql"],
    "properties": {
        "dbName": {
            "type": "string",
            "description": "The sandbox: SANDBOX:all or SANDBOX.",
            "example": "prod:all",
        },
        "sql": {
            "type": "string",
            "description": "One SELECT, CREATE TABLE name AS SELECT ..., or INSERT INTO name SELECT ...; "
            "tables are the sandbox's datasets by their table name.",
            "example": "SELECT count(*) AS n FROM my_table",
        },
        "name": {"type": "string"},
        "description": {"type": "string"},
    },
}
_CANCEL = {"type": "object", "required": ["op"], "properties": {"op": {"type": "string", "enum": ["cancel"]}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _jobs(request: Request) -> QueryJobs:
    return services(request).query_jobs


@router.get(
    BASE,
    tags=[TAG],
    summary="List queries",
    description="``orderby`` (-created by default; created, updated), ``limit`` (20, at most 1000), "
    "``start`` (an offset), ``property`` (state==X, id==X), ``excludeSoftDeleted`` (true).",
)
async def list_queries(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(BASE, tags=[TAG], summary="Run a query (asynchronously)", openapi_extra=_body(_QUERY))
async def create_query(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource), status_code=202)


@router.get(f"{BASE}/{{ident}}", tags=[TAG], summary="Get a query")
async def get_query(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _jobs(request).find, actor, ident))


@router.patch(f"{BASE}/{{ident}}", tags=[TAG], summary="Cancel a query", openapi_extra=_body(_CANCEL))
async def cancel_query(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    body = await json_body(request)
    answer = await calls.write(services(request), _jobs(request).cancel, actor, ident, body)
    return JSONResponse(answer, status_code=202)


@router.delete(f"{BASE}/{{ident}}", tags=[TAG], summary="Delete a query (soft delete)")
async def delete_query(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.write(services(request), _jobs(request).soft_delete, actor, ident))


@router.get(
    f"{BASE}/{{ident}}/results",
    tags=[TAG],
    summary="Read a SELECT's rows",
    description="A page of a SUCCESS SELECT's rows, kept for HEADWATER_QUERY_RESULTS_HOURS: ``start`` (an "
    "offset), ``limit`` (100, at most 10,000; a page holds at most 16 MB). Headwater's, not AEP's.",
)
async def query_results(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _jobs(request)
    return JSONResponse(await calls.pooled(coll.results, actor, ident, request.query_params.multi_items()))


# --- query templates ---
_TEMPLATE = {
    "type": "object",
    "required": ["sql", "name"],
    "properties": {
        "sql": {"type": "string", "example": "SELECT * FROM my_table WHERE country = $country"},
        "name": {"type": "string"},
        "queryParameters": {
            "type": "object",
            "description": "Default values of the $name placeholders (a query's queryParameters win).",
            "additionalProperties": {"type": "string"},
        },
    },
}


def _templates(request: Request) -> QueryTemplates:
    return services(request).query_templates


@router.get(
    TEMPLATES,
    tags=[TAG],
    summary="List query templates",
    description="``orderby`` (-created by default; created, updated), ``limit`` (20, at most 1000), "
    "``start`` (an offset), ``property`` (name==X, userId==X).",
)
async def list_templates(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _templates(request)
    return JSONResponse(await calls.pooled(coll.query, actor, request.query_params.multi_items()))


@router.post(TEMPLATES, tags=[TAG], summary="Create a query template", openapi_extra=_body(_TEMPLATE))
async def create_template(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _templates(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource), status_code=202)


@router.get(f"{TEMPLATES}/{{ident}}", tags=[TAG], summary="Get a query template")
async def get_template(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    return JSONResponse(await calls.read(services(request), _templates(request).find, actor, ident))


@router.put(
    f"{TEMPLATES}/{{ident}}", tags=[TAG], summary="Replace a query template", openapi_extra=_body(_TEMPLATE)
)
async def put_template(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _templates(request)
    body = await json_body(request)
    resource = await calls.write(services(request), coll.put, actor, ident, body)
    return JSONResponse(coll.render(resource), status_code=202)


@router.delete(f"{TEMPLATES}/{{ident}}", tags=[TAG], summary="Delete a query template")
async def delete_template(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    answer = await calls.write(services(request), _templates(request).remove, actor, ident)
    return JSONResponse(answer, status_code=202)


@router.get(
    "/data/foundation/query/connection_parameters",
    tags=[TAG],
    summary="Connection parameters of the PostgreSQL wire endpoint (psql, psycopg, BI tools)",
)
async def connection_parameters(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """AEP's answer: the sandbox's database, the endpoint's host and port, and a password. The password is
    the caller's own access token (the endpoint's password is an access token), so it lasts as long as
    that token; ``compressedToken`` is the same token (Headwater has no shorter form)."""
    settings = services(request).settings
    if settings.pgwire_port is None:
        raise NotFound(
            "The PostgreSQL wire endpoint is off on this server: set HEADWATER_PGWIRE_PORT.",
            code="QRY-1404-404",
        )
    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    wildcard = settings.pgwire_host in ("0.0.0.0", "::", "")
    host = public or (request.url.hostname if wildcard else settings.pgwire_host) or settings.pgwire_host
    token = bearer_token(request)  # a console session has none to hand out: 401, as any API call
    return JSONResponse(
        {
            "username": actor.org.id,
            "dbName": f"{actor.sandbox.name}:all",
            "host": host,
            "version": 1,
            "port": settings.pgwire_port,
            "token": token,
            "compressedToken": token,
            "websocketHost": host,
        }
    )

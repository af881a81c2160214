"""Data 360-shaped APIs: server-to-server connectors and data streams (Data Cloud Connect REST API paths,
platform authentication), and the Ingestion API (ingestion tokens).

Control plane, under ``/services/data/{version}/ssot`` (any ``vNN.N``), scoped to the org and sandbox
of the platform headers:

    POST   /connections                              create a connector (201)
    GET    /connections[?connectorType=StreamingApp]  {"connections": [...], "totalSize"}
    GET    /connections/{id|name}                     one connector (with its Source ID)
    PATCH  /connections/{id|name}                     {"label": "new app name"}
    DELETE /connections/{id|name}                     204; 409 while data streams use it
    GET    /connections/{id}/schema                   View Full Schema: the document as uploaded
    PUT    /connections/{id}/schema                   upload / Update Schema (additive only)
    POST   /connections/{id}/schema/actions/preview   validate and show, save nothing
    POST   /data-streams[?dataspace=]                 deploy events (201 {"dataStreams": [...]})
    POST   /data-streams/actions/preview              the review step, create nothing
    GET    /data-streams[?dataspace=&connectorId=]    {"dataStreams": [...], "totalSize"}
    GET    /data-streams/{id|name}[?dataspace=]
    GET    /data-streams/{id|name}/metrics[?dataspace=]  records received, processed, failed per refresh
    PATCH  /data-streams/{id|name}[?dataspace=]       {"label", "refreshCadenceSeconds"}
    DELETE /data-streams/{id|name}[?dataspace=&shouldDeleteDataLakeObject=true]

A data space is a sandbox of the organization; none (or ``default``) is ``prod``.

Ingestion API (``Authorization: Bearer <ingestion token>``; the token names org and data space):

    POST   /server/events/{appSourceId}               {"events": [...]} -> 204
    POST   /api/v1/ingest/sources/{source}/{object}   {"data": [...]} -> 202 {"accepted": true}
    POST   /api/v1/ingest/sources/{source}/{object}/actions/test   validate only -> 200
    DELETE /api/v1/ingest/sources/{source}/{object}?ids=a,b        -> 202
    POST   /api/v1/ingest/jobs; GET /api/v1/ingest/jobs[/{id}]; PUT /api/v1/ingest/jobs/{id}/batches
    PATCH  /api/v1/ingest/jobs/{id} {"state": "UploadComplete"|"Aborted"}; DELETE /api/v1/ingest/jobs/{id}
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import client_host, platform_actor
from headwater.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from headwater.services.data360.connectors import IngestionConnectors
from headwater.services.data360.ingest import MAX_BODY, parse_ids
from headwater.services.jsonbody import parse_json
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Scope

router = APIRouter()
SSOT = "/services/data/{version}/ssot"
TAG, INGEST_TAG = "Data 360 connectors and data streams", "Data 360 Ingestion API"
_VERSION = re.compile(r"^v\d{1,3}\.\d$")


def _d360(request: Request) -> IngestionConnectors:
    return services(request).ingestion_connectors


def _version(version: str, request: Request) -> None:
    if not _VERSION.match(version):
        raise NotFound(f"No such endpoint: {request.method} {request.url.path}.", code="HW-1404-404")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


# --- connectors ---
@router.post(
    f"{SSOT}/connections", tags=[TAG], summary="Create a server-to-server connector", status_code=201
)
async def create_connector(
    version: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    coll = _d360(request).connectors
    resource = await calls.write(services(request), coll.create, actor, body)
    return JSONResponse(coll.render(resource), status_code=201, headers={"ETag": resource.etag})


@router.get(f"{SSOT}/connections", tags=[TAG], summary="List server-to-server connectors")
async def list_connectors(
    version: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    coll = _d360(request).connectors
    wanted = request.query_params.get("connectorType")
    items = await calls.read(services(request), lambda: coll.store.list(coll.kind, actor.scope).items)
    docs = [coll.render(r) for r in items] if wanted in (None, "StreamingApp") else []
    return JSONResponse({"connections": docs, "totalSize": len(docs)})


@router.get(f"{SSOT}/connections/{{ident}}", tags=[TAG], summary="Get a connector")
async def get_connector(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    coll = _d360(request).connectors
    resource = await calls.read(services(request), coll.get, actor, ident)
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.patch(f"{SSOT}/connections/{{ident}}", tags=[TAG], summary="Rename a connector (its app name)")
async def patch_connector(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    coll = _d360(request).connectors
    resource = await calls.write(
        services(request), coll.update, actor, ident, body, request.headers.get("if-match")
    )
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.delete(f"{SSOT}/connections/{{ident}}", tags=[TAG], summary="Delete a connector", status_code=204)
async def delete_connector(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> Response:
    _version(version, request)
    await calls.write(services(request), _d360(request).connectors.delete, actor, ident)
    return Response(status_code=204)


@router.get(f"{SSOT}/connections/{{ident}}/schema", tags=[TAG], summary="View Full Schema (as uploaded)")
async def get_schema(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    document = await calls.read(services(request), _d360(request).connectors.uploaded_schema, actor, ident)
    return JSONResponse(document)


@router.put(
    f"{SSOT}/connections/{{ident}}/schema", tags=[TAG], summary="Upload or update (additively) the schema"
)
async def put_schema(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    view = await calls.write(
        services(request),
        _d360(request).connectors.put_schema,
        actor,
        ident,
        body,
        request.headers.get("if-match"),
    )
    return JSONResponse(view)


@router.post(
    f"{SSOT}/connections/{{ident}}/schema/actions/preview",
    tags=[TAG],
    summary="Preview a schema (saves nothing)",
)
async def preview_schema(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    view = await calls.pooled(_d360(request).connectors.preview_schema, actor, ident, body)
    return JSONResponse(view)


# --- data streams ---
@router.post(
    f"{SSOT}/data-streams",
    tags=[TAG],
    summary="Deploy data streams from a connector's events",
    status_code=201,
)
async def create_streams(
    version: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    streams = _d360(request).data_streams
    created = await calls.write(
        services(request), streams.create_streams, actor, body, request.query_params.get("dataspace")
    )
    return JSONResponse({"dataStreams": [streams.render(s) for s in created]}, status_code=201)


@router.post(
    f"{SSOT}/data-streams/actions/preview", tags=[TAG], summary="Review data streams before deploying"
)
async def preview_streams(
    version: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    streams = _d360(request).data_streams
    view = await calls.pooled(streams.preview, actor, body, request.query_params.get("dataspace"))
    return JSONResponse(view)


@router.get(f"{SSOT}/data-streams", tags=[TAG], summary="List the data streams of a data space")
async def list_streams(
    version: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    streams = _d360(request).data_streams
    params = request.query_params

    def load() -> list[dict[str, Any]]:
        space = streams.in_space(actor, params.get("dataspace"))
        connector = params.get("connectorId") or params.get("connectorName")
        return [streams.render(s) for s in streams.list_in(space, connector)]

    docs = await calls.pooled(load)
    return JSONResponse({"dataStreams": docs, "totalSize": len(docs)})


@router.get(f"{SSOT}/data-streams/{{ident}}", tags=[TAG], summary="Get a data stream")
async def get_stream(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    streams = _d360(request).data_streams
    space = await calls.read(
        services(request), streams.in_space, actor, request.query_params.get("dataspace")
    )
    resource = await calls.read(services(request), streams.get, space, ident)
    return JSONResponse(streams.render(resource), headers={"ETag": resource.etag})


@router.get(
    f"{SSOT}/data-streams/{{ident}}/metrics",
    tags=[TAG],
    summary="A data stream's ingestion counts: records received, processed and failed, per refresh",
)
async def stream_metrics(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    d360 = _d360(request)
    space = request.query_params.get("dataspace")
    view = await calls.pooled(d360.data_streams.metrics, actor, ident, space, lambda: d360.ingest.streams.log)
    return JSONResponse(view)


@router.patch(
    f"{SSOT}/data-streams/{{ident}}", tags=[TAG], summary="Rename a data stream or change its cadence"
)
async def patch_stream(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    body = await json_body(request)
    streams = _d360(request).data_streams
    resource = await calls.write(
        services(request),
        streams.update,
        actor,
        ident,
        body,
        request.query_params.get("dataspace"),
        request.headers.get("if-match"),
    )
    return JSONResponse(streams.render(resource), headers={"ETag": resource.etag})


@router.delete(f"{SSOT}/data-streams/{{ident}}", tags=[TAG], summary="Delete a data stream")
async def delete_stream(
    version: str, ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    _version(version, request)
    params = request.query_params
    kept = await calls.write(
        services(request),
        _d360(request).data_streams.remove,
        actor,
        ident,
        params.get("dataspace"),
        _flag(params.get("shouldDeleteDataLakeObject")),
    )
    return JSONResponse({"id": ident, "deleted": True, "keptResources": kept})


# --- the Ingestion API ---
async def _scope(request: Request) -> Scope:
    svc = services(request)
    principal = await calls.read(
        svc, _d360(request).ingest.principal, request.headers.get("authorization"), client_host(request)
    )
    return Scope(principal.org_id, principal.sandbox_id)


async def _ingest_json(request: Request, required: bool = True) -> Any:
    """A JSON body of at most 200 KB (413 above), as the Ingestion API takes."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY:
        raise PayloadTooLarge(f"A request is at most {MAX_BODY // 1024} KB.", code="INGEST-1413-413")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(f"A request is at most {MAX_BODY // 1024} KB.", code="INGEST-1413-413")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip() and not required:
        return None
    if kind != "application/json" and not kind.endswith("+json"):
        raise BadRequest(
            "A valid content-type must be specified: send Content-Type: application/json.",
            code="HW-1415-400",
            title="BadRequestError",
            report={"header": "Content-Type"},
        )
    try:
        return parse_json(raw)
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise BadRequest(f"The request body is not valid JSON: {exc}"[:300], code="HW-1402-400") from exc


@router.post(
    "/server/events/{app_source_id}",
    tags=[INGEST_TAG],
    summary="Send server-to-server events",
    status_code=204,
)
async def server_events(app_source_id: str, request: Request) -> Response:
    svc = services(request)
    scope = await _scope(request)
    body = await _ingest_json(request)
    ingest = _d360(request).ingest
    per_flow = await calls.read(svc, ingest.check_events, scope, app_source_id, body)
    for flow_id, records in per_flow.items():
        await ingest.publish(scope, flow_id, records)
    return Response(status_code=204)


@router.post(
    "/api/v1/ingest/sources/{source}/{obj}", tags=[INGEST_TAG], summary="Insert records", status_code=202
)
async def insert_records(source: str, obj: str, request: Request) -> JSONResponse:
    svc = services(request)
    scope = await _scope(request)
    body = await _ingest_json(request)
    ingest = _d360(request).ingest
    route, records = await calls.read(svc, ingest.check_data, scope, source, obj, body, request.url.path)
    await ingest.publish(scope, route.flow_id, records)
    return JSONResponse({"accepted": True}, status_code=202)


@router.post(
    "/api/v1/ingest/sources/{source}/{obj}/actions/test", tags=[INGEST_TAG], summary="Validate records"
)
async def test_records(source: str, obj: str, request: Request) -> JSONResponse:
    svc = services(request)
    scope = await _scope(request)
    body = await _ingest_json(request)
    _, records = await calls.read(
        svc, _d360(request).ingest.check_data, scope, source, obj, body, request.url.path
    )
    return JSONResponse({"accepted": True, "records": len(records), "failedRecords": 0})


@router.delete(
    "/api/v1/ingest/sources/{source}/{obj}", tags=[INGEST_TAG], summary="Delete records", status_code=202
)
async def delete_records(source: str, obj: str, request: Request) -> JSONResponse:
    svc = services(request)
    scope = await _scope(request)
    query = request.query_params.get("ids")
    body = await _ingest_json(request, required=False) if query is None else None
    ids, path = parse_ids(query, body)
    ingest = _d360(request).ingest
    route = await calls.read(svc, ingest.check_deletes, scope, source, obj, ids, path)
    assert ids is not None
    await ingest.publish(scope, route.flow_id, [{"key": i.strip()} for i in ids], kind="delete")
    return JSONResponse({"accepted": True}, status_code=202)


# --- bulk jobs ---
@router.post("/api/v1/ingest/jobs", tags=[INGEST_TAG], summary="Create a bulk job", status_code=201)
async def create_job(request: Request) -> JSONResponse:
    from headwater.services.data360.bulk import render

    svc = services(request)
    principal = await calls.read(
        svc, _d360(request).ingest.principal, request.headers.get("authorization"), client_host(request)
    )
    scope = Scope(principal.org_id, principal.sandbox_id)
    body = await _ingest_json(request)
    job = await calls.write(svc, _d360(request).bulk.create, scope, principal.username, body)
    return JSONResponse(render(job), status_code=201)


@router.get("/api/v1/ingest/jobs", tags=[INGEST_TAG], summary="List bulk jobs")
async def list_jobs(request: Request) -> JSONResponse:
    scope = await _scope(request)
    params = dict(request.query_params)
    return JSONResponse(await calls.read(services(request), _d360(request).bulk.list, scope, params))


@router.get("/api/v1/ingest/jobs/{ident}", tags=[INGEST_TAG], summary="Get a bulk job")
async def get_job(ident: str, request: Request) -> JSONResponse:
    from headwater.services.data360.bulk import render

    scope = await _scope(request)
    return JSONResponse(render(await calls.read(services(request), _d360(request).bulk.get, scope, ident)))


@router.put(
    "/api/v1/ingest/jobs/{ident}/batches", tags=[INGEST_TAG], summary="Upload a CSV file", status_code=202
)
async def upload_batch(ident: str, request: Request) -> JSONResponse:
    from headwater.services.data360.bulk import render

    scope = await _scope(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "text/csv":
        raise UnsupportedMediaType(
            "Upload job data as Content-Type: text/csv (UTF-8, comma-delimited, RFC 4180).",
            code="INGEST-1415-415",
            report={"header": "Content-Type"},
        )
    job = await _d360(request).bulk.upload(scope, ident, request.stream())
    return JSONResponse(render(job), status_code=202)


@router.patch("/api/v1/ingest/jobs/{ident}", tags=[INGEST_TAG], summary="Close or abort a bulk job")
async def patch_job(ident: str, request: Request) -> JSONResponse:
    from headwater.services.data360.bulk import render

    scope = await _scope(request)
    body = await _ingest_json(request)
    job = await calls.write(services(request), _d360(request).bulk.set_state, scope, ident, body)
    return JSONResponse(render(job))


@router.delete("/api/v1/ingest/jobs/{ident}", tags=[INGEST_TAG], summary="Delete a bulk job", status_code=204)
async def delete_job(ident: str, request: Request) -> Response:
    scope = await _scope(request)
    await calls.write(services(request), _d360(request).bulk.delete, scope, ident)
    return Response(status_code=204)

"""The Data Cloud Query API (services/data360/queryapi.py), authenticated with a Data 360 token
(``Authorization: Bearer`` the access_token of POST /services/a360/token), which names the data space:

    POST /api/v2/query                 {"sql": "SELECT ..."} -> the first batch
    GET  /api/v2/query/{nextBatchId}   the next batch
    GET  /api/v1/metadata[?entityName=&entityCategory=&entityType=]   {"metadata": [tables]}

Errors answer as Salesforce's REST APIs do: the status, and ``[{"errorCode", "message"}]`` (the engine's
refusals of the SQL are 400s saying what to change).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from headwater.api.responses import JSONResponse
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import client_host
from headwater.errors import BadRequest, HeadwaterError, Unauthenticated
from headwater.services.jsonbody import parse_json
from headwater.services.tenancy import Actor

router = APIRouter()
TAG = "Data 360 Query API"
MAX_BODY = 256 * 1024
# The errorCode of a status, as Salesforce's REST APIs name them.
_CODES = {400: "BAD_REQUEST", 401: "INVALID_SESSION_ID", 403: "INSUFFICIENT_ACCESS", 404: "NOT_FOUND"}
_ERRORS: dict[str, Any] = {
    "description": "[{errorCode, message}]",
    "content": {
        "application/json": {
            "schema": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"errorCode": {"type": "string"}, "message": {"type": "string"}},
                },
            }
        }
    },
}
_COLUMN = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "example": "VARCHAR"},
        "placeInOrder": {"type": "integer"},
        "typeCode": {"type": "integer", "description": "The JDBC type code.", "example": 12},
    },
}
_BATCH: dict[str, Any] = {
    "description": "One batch of rows",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": {"type": "array", "items": {}}},
                    "arrowStream": {
                        "type": "string",
                        "description": "Instead of data, with the header enable-arrow-stream: true: the "
                        "rows as an Arrow IPC stream, base64.",
                    },
                    "startTime": {"type": "string"},
                    "endTime": {"type": "string"},
                    "rowCount": {"type": "integer", "description": "Rows in this batch."},
                    "queryId": {"type": "string"},
                    "nextBatchId": {"type": "string", "description": "Absent on the last batch."},
                    "done": {"type": "boolean"},
                    "metadata": {"type": "object", "additionalProperties": _COLUMN},
                },
            }
        }
    },
}
_FAILURES: dict[int | str, dict[str, Any]] = {str(status): _ERRORS for status in _CODES}
_QUERY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["sql"],
                    "properties": {
                        "sql": {"type": "string", "example": "SELECT * FROM events__dll LIMIT 10"}
                    },
                }
            }
        },
    },
    "responses": {"200": _BATCH, **_FAILURES},
}


def _failure(exc: HeadwaterError) -> JSONResponse:
    code = exc.code if exc.code in _CODES.values() else _CODES.get(exc.status, "UNKNOWN_EXCEPTION")
    body = [{"errorCode": code, "message": exc.detail}]
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _actor(request: Request) -> Actor:
    svc = services(request)
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    principal = (
        await calls.read(svc, svc.identity.verify_ingestion_token, token.strip())
        if scheme.lower() == "bearer" and token.strip()
        else None
    )
    if principal is None:
        raise Unauthenticated(
            "Session expired or invalid: send 'Authorization: Bearer <token>' with a Data 360 token from "
            "POST /services/a360/token.",
            code="INVALID_SESSION_ID",
        )
    return await calls.read(svc, svc.data_cloud_queries.actor, principal, client_host(request))


def _arrow(request: Request) -> bool:
    """The rows as an Arrow stream (``arrowStream``), as the connector's get_pandas_dataframe asks."""
    return request.headers.get("enable-arrow-stream", "").strip().lower() == "true"


async def _body(request: Request) -> Any:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest(f"The request body is larger than {MAX_BODY // 1024} KB.", code="BAD_REQUEST")
        chunks.append(chunk)
    try:
        return parse_json(b"".join(chunks))
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}"[:300], code="BAD_REQUEST") from exc


@router.post("/api/v2/query", tags=[TAG], summary="Run a SQL query (first batch)", openapi_extra=_QUERY_DOC)
async def query(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        actor = await _actor(request)
        body = await _body(request)
        answer = await calls.pooled(svc.data_cloud_queries.query, actor, body, _arrow(request))
    except HeadwaterError as exc:
        return _failure(exc)
    return JSONResponse(answer)


@router.get(
    "/api/v2/query/{batch_id}",
    tags=[TAG],
    summary="Get the next batch of a query",
    responses={"200": _BATCH, **_FAILURES},
)
async def next_batch(batch_id: str, request: Request) -> JSONResponse:
    svc = services(request)
    try:
        actor = await _actor(request)
        answer = await calls.pooled(svc.data_cloud_queries.batch, actor, batch_id, _arrow(request))
    except HeadwaterError as exc:
        return _failure(exc)
    return JSONResponse(answer)


@router.get(
    "/api/v1/metadata",
    tags=[TAG],
    summary="List the data space's tables and their fields",
    responses={
        "200": {"description": "{metadata: [{name, displayName, category, fields, ...}]}"},
        **_FAILURES,
    },
)
async def metadata(request: Request) -> JSONResponse:
    svc = services(request)
    try:
        actor = await _actor(request)
        params = dict(request.query_params)
        answer = await calls.pooled(svc.data_cloud_queries.metadata, actor, params)
    except HeadwaterError as exc:
        return _failure(exc)
    return JSONResponse(answer)

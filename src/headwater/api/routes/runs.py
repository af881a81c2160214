"""Flow runs (``/data/foundation/flowservice/runs``), catalog batches, row errors and dataset previews."""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from headwater.api.responses import JSONResponse, json_body
from headwater.api.routes.crud import list_response
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import BadRequest, NotFound
from headwater.services import listing
from headwater.services.tenancy import Actor
from headwater.stores.objectfiles import unavailable
from headwater.stores.rowerrors import RowErrorFiles

FS = "/data/foundation/flowservice"
CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
router = APIRouter()

_RUN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["flowId"],
                    "properties": {
                        "flowId": {"type": "string"},
                        "params": {
                            "type": "object",
                            "properties": {
                                "windowStartTime": {
                                    "type": ["integer", "string"],
                                    "description": "epoch seconds or ISO 8601",
                                },
                                "windowEndTime": {"type": ["integer", "string"]},
                            },
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    f"{FS}/runs",
    tags=["Flow Service"],
    summary="Run a flow now (on demand)",
    status_code=201,
    openapi_extra=_RUN_BODY,
)
async def create_run(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    run = await calls.write(svc, svc.runs.create_and_queue, actor, body)
    return JSONResponse(svc.runs.render(run), status_code=201, headers={"ETag": run.etag})


@router.get(f"{FS}/runs", tags=["Flow Service"], summary="List runs (e.g. ?property=flowId==ID)")
async def list_runs(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    # Newest first, as AEP's monitoring lists runs; ?orderby=createdAt lists the oldest first.
    query = listing.parse_query(request.query_params.multi_items(), default_order="-createdAt")
    docs, next_offset, total = await calls.pooled(
        listing.run, svc.store, "run", actor.scope, query, svc.runs.render
    )
    return list_response(docs, query, next_offset, total, f"{FS}/runs")


@router.get(f"{FS}/runs/{{ident}}", tags=["Flow Service"], summary="Get a run with its metrics")
async def get_run(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    run = await calls.read(svc, svc.runs.get, actor, ident)
    return JSONResponse({"items": [svc.runs.render(run)]}, headers={"ETag": run.etag})


@router.get(f"{CATALOG}/batches", tags=["Catalog"], summary="List batches (?dataSet=ID)")
async def list_batches(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    params = request.query_params
    query = listing.parse_query(
        [(k, v) for k, v in params.multi_items() if k in ("limit", "start", "orderby", "property")],
        service="CAT",
    )
    dataset = params.get("dataSet")

    def keep(doc: dict[str, Any]) -> bool:
        return dataset is None or any(o.get("id") == dataset for o in doc.get("relatedObjects", []))

    docs, _, _ = await calls.pooled(
        listing.run, svc.store, "batch", actor.scope, query, svc.batches.render, keep if dataset else None
    )
    return JSONResponse({d["id"]: d for d in docs})


@router.get(f"{CATALOG}/lastBatches", tags=["Catalog"], summary="The newest batch of each dataset")
async def last_batches(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """``?dataSetId=`` for one dataset's, ``limit`` 1..100 (20); keyed by batch id as ``/batches``."""
    svc = services(request)
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise BadRequest(
            "limit must be an integer from 1 to 100.", code="CAT-1400-400", report={"parameter": "limit"}
        )
    dataset = request.query_params.get("dataSetId")
    found = await calls.read(svc, svc.batches.last, actor, dataset, int(raw))
    return JSONResponse({b.id: svc.batches.render(b) for b in found})


@router.get(f"{CATALOG}/batches/{{ident}}", tags=["Catalog"], summary="Get a batch")
async def get_batch(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    batch = await calls.read(svc, svc.batches.get, actor, ident)
    return JSONResponse({batch.id: svc.batches.render(batch)})


@router.get(
    f"{EXPORT}/batches/{{ident}}/meta",
    tags=["Catalog"],
    summary="A batch's diagnostics: ?path=row_errors lists, ?path=row_errors/row_errors.json reads",
)
async def batch_meta(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    svc = services(request)
    batch = await calls.read(svc, svc.batches.get, actor, ident)
    path = request.query_params.get("path", "")
    row_errors = RowErrorFiles.of(svc.settings)
    base = f"{EXPORT}/batches/{batch.id}/meta"
    if path in ("row_errors", "row_errors/row_errors.json"):
        with unavailable("listing row errors"):
            size = await run_in_threadpool(row_errors.size, batch.id)
    if path == "row_errors":
        items = []
        if size is not None:
            items.append(
                {
                    "name": "row_errors.json",
                    "length": size,
                    "_links": {"self": {"href": f"{base}?path=row_errors/row_errors.json"}},
                }
            )
        return JSONResponse({"data": items, "_page": {"limit": 100, "count": len(items)}})
    if path == "row_errors/row_errors.json":
        if size is None:
            raise NotFound("This batch has no row errors.", code="CAT-1404-404")
        chunks = row_errors.chunks(batch.id)
        with unavailable("reading row errors"):  # the first chunk before the answer's status is sent
            first = await run_in_threadpool(next, chunks, b"")
        body = itertools.chain([first], chunks)
        return StreamingResponse(body, media_type="application/x-ndjson")
    if path == "input_files":
        return JSONResponse({"data": [], "_page": {"limit": 100, "count": 0}})
    raise BadRequest(
        "path must be row_errors, row_errors/row_errors.json or input_files.",
        code="CAT-1400-400",
        report={"parameter": "path"},
    )


@router.get(f"{CATALOG}/dataSets/{{ident}}/preview", tags=["Catalog"], summary="Rows of a dataset (?limit=N)")
async def preview_dataset(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    svc = services(request)
    limit = listing.int_param("limit", request.query_params.get("limit", "10"), 1, 1000, "CAT")
    dataset = await calls.read(svc, svc.datasets.get, actor, ident)

    def rows() -> list[dict[str, Any]]:
        table = svc.lake.load(actor.scope, dataset.id)
        if table is None:
            return []
        data: list[dict[str, Any]] = svc.lake.scan(table, limit=limit).read_all().slice(0, limit).to_pylist()
        return data

    data = await calls.pooled(rows)
    return JSONResponse({"data": data, "_page": {"limit": limit, "count": len(data)}})


@router.get(
    f"{FS}/connections/{{ident}}/explore",
    tags=["Flow Service"],
    summary="Explore a connection: ?objectType=root, or ?objectType=table&object=NAME",
)
async def explore(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    from headwater.runtime.explore import explore_connection

    svc = services(request)
    params = request.query_params
    result = await calls.pooled(
        explore_connection, svc, actor, ident, params.get("objectType", "root"), params.get("object")
    )
    return JSONResponse(result)


@router.get(
    f"{FS}/connections/{{ident}}/test",
    tags=["Flow Service"],
    summary="Test a connection: reach the source with its saved settings",
)
async def test_connection(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    from headwater.runtime.explore import test_connection as run_test

    return JSONResponse(await calls.pooled(run_test, services(request), actor, ident))

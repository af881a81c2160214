"""Batch Ingestion API (``/data/foundation/import/batches``), after Adobe Experience Platform's.

    POST /batches                                         create a batch {datasetId, inputFormat}: 201
    PUT  /batches/{B}/datasets/{D}/files/{name}           a whole file (application/octet-stream): 200
    POST /batches/{B}/datasets/{D}/files/{name}?action=INITIALIZE    start a chunked file: 201
    PATCH|PUT …/files/{name} + Content-Range: bytes s-e/t a chunk of it (idempotent): 200
    POST /batches/{B}/datasets/{D}/files/{name}?action=COMPLETE      the chunks cover the file: 201
    POST /batches/{B}?action=COMPLETE                     queue the batch's promotion: 200, processing
    POST /batches/{B}?action=ABORT                        drop the batch's files: 200

The batch then reads at ``GET /data/foundation/catalog/batches/{B}`` (status, metrics, errors) and its
row errors at ``GET /data/foundation/export/batches/{B}/meta?path=row_errors``. Every call needs the
``ingest-data`` permission in the sandbox (services/access.py); another sandbox's batch is a 404.
Staging is services/batchingest.py; the queue, services/batchqueue.py; promotion, runtime/batchingest.py,
run by a worker after COMPLETE answered (clients poll the catalog batch until it is final, as AEP's).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import Services, services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import BadRequest
from headwater.services.batchingest import BatchIngestion, check_file_name, parse_content_range
from headwater.services.ingeststaging import bad
from headwater.services.tenancy import Actor

PREFIX = "/data/foundation/import/batches"
TAG = "Batch ingestion"
FILE = f"{PREFIX}/{{batchId}}/datasets/{{datasetId}}/files/{{fileName:path}}"
router = APIRouter()

_CREATE = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["datasetId", "inputFormat"],
                    "properties": {
                        "datasetId": {"type": "string"},
                        "inputFormat": {
                            "type": "object",
                            "required": ["format"],
                            "properties": {"format": {"type": "string", "enum": ["json", "parquet", "csv"]}},
                        },
                        "enableErrorDiagnostics": {"type": "boolean", "default": True},
                        "partialIngestionPercentage": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 100,
                            "description": "fail the batch (nothing committed) when more rows fail",
                        },
                    },
                }
            }
        },
    }
}
_OCTETS = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "parameters": [
        {
            "name": "Content-Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "example": "bytes 0-1048575/5242880"},
            "description": "a chunk of a file started with ?action=INITIALIZE (end inclusive)",
        }
    ],
}


def _action(value: str | None, allowed: tuple[str, ...]) -> str:
    action = (value or "").upper()
    if action not in allowed:
        raise BadRequest(
            f"action must be {' or '.join(allowed)}.", code="INGEST-1400-400", report={"parameter": "action"}
        )
    return action


def _ingestion(svc: Services) -> BatchIngestion:
    return svc.batch_ingestion


def _batch_doc(svc: Services, resource: Any) -> dict[str, Any]:
    return {"id": resource.id, **svc.batches.render(resource)}


@router.post(PREFIX, tags=[TAG], summary="Create a batch", status_code=201, openapi_extra=_CREATE)
async def create_batch(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    body = await json_body(request)
    ingestion = _ingestion(svc)
    batch = await calls.write(svc, ingestion.create, actor, body)
    return JSONResponse(ingestion.render_created(batch), status_code=201)


@router.put(
    FILE, tags=[TAG], summary="Upload a file, or a chunk of one (Content-Range)", openapi_extra=_OCTETS
)
async def put_file(
    batchId: str,
    datasetId: str,
    fileName: str,
    request: Request,
    actor: Actor = Depends(platform_actor),
) -> JSONResponse:
    header = request.headers.get("content-range")
    return await _upload(request, actor, batchId, datasetId, fileName, header)


@router.patch(
    FILE, tags=[TAG], summary="Upload a chunk of a large file (Content-Range)", openapi_extra=_OCTETS
)
async def patch_file(
    batchId: str,
    datasetId: str,
    fileName: str,
    request: Request,
    actor: Actor = Depends(platform_actor),
) -> JSONResponse:
    header = request.headers.get("content-range")
    if header is None:
        raise bad("A chunk needs a Content-Range header: bytes START-END/TOTAL.", "Content-Range")
    return await _upload(request, actor, batchId, datasetId, fileName, header)


async def _upload(
    request: Request,
    actor: Actor,
    batch_id: str,
    dataset_id: str,
    file_name: str,
    header: str | None,
) -> JSONResponse:
    """A whole file, or with a Content-Range ``header`` the part of one that it names."""
    svc = services(request)
    ingestion = _ingestion(svc)
    name = check_file_name(file_name)
    batch = await calls.read(svc, ingestion.loading, actor, batch_id, dataset_id)
    if header is not None:
        span = parse_content_range(header)
        written = await ingestion.put_chunk(batch, name, span, request.stream())
        return JSONResponse(
            {"name": name, "range": f"bytes {span.start}-{span.end}/{span.total}", "size": written}
        )
    size = await ingestion.put_file(batch, name, request.stream())
    return JSONResponse({"name": name, "size": size})


@router.post(
    FILE,
    tags=[TAG],
    summary="Large file upload: ?action=INITIALIZE starts a chunked file, ?action=COMPLETE ends it",
    status_code=201,
)
async def file_action(
    batchId: str,
    datasetId: str,
    fileName: str,
    request: Request,
    actor: Actor = Depends(platform_actor),
) -> JSONResponse:
    svc = services(request)
    ingestion = _ingestion(svc)
    action = _action(request.query_params.get("action"), ("INITIALIZE", "COMPLETE"))
    name = check_file_name(fileName)
    batch = await calls.read(svc, ingestion.loading, actor, batchId, datasetId)
    if action == "INITIALIZE":
        await calls.pooled(ingestion.initialize, batch, name)
        return JSONResponse({"name": name}, status_code=201)
    size = await calls.pooled(ingestion.complete_file, batch, name)
    return JSONResponse({"name": name, "size": size}, status_code=201)


@router.post(
    f"{PREFIX}/{{batchId}}",
    tags=[TAG],
    summary="?action=COMPLETE queues the batch's files for its dataset (a worker promotes them); "
    "?action=ABORT drops them",
)
async def batch_action(
    batchId: str,
    request: Request,
    actor: Actor = Depends(platform_actor),
) -> JSONResponse:
    svc = services(request)
    ingestion = _ingestion(svc)
    action = _action(request.query_params.get("action"), ("COMPLETE", "ABORT"))
    if action == "ABORT":
        batch = await calls.write(svc, ingestion.abort, actor, batchId, svc.ledger.save)
    else:
        batch = await calls.write(svc, ingestion.complete, actor, batchId, svc.batch_queue, svc.ledger.save)
    return JSONResponse({batch.id: _batch_doc(svc, batch)})

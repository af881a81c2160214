"""Uploading files into an "Uploaded files" connection, which flows then read like a local folder.

``PUT /data/foundation/flowservice/connections/{id}/files/{path}`` streams the body (any content type)
to ``HOME/uploads/{connection id}/{path}``: written under a temporary name, synced, then renamed, so a
flow never reads half a file. ``GET …/files`` lists them; ``DELETE …/files/{path}`` removes one.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response

from headwater.api import calls
from headwater.api.auth import platform_actor, services
from headwater.api.responses import JSONResponse
from headwater.connectors.registry import UPLOADED_FILES
from headwater.errors import BadRequest, NotFound, PayloadTooLarge
from headwater.services.container import Services
from headwater.services.tenancy import Actor

FS = "/data/foundation/flowservice"
MAX_UPLOAD_BYTES = 5 * 1024**3
router = APIRouter()


def _area(svc: Services, actor: Actor, ident: str) -> Path:
    connection = svc.connections.get(actor, ident)
    if connection.doc["connectionSpec"]["id"] != UPLOADED_FILES:
        raise BadRequest(
            "Files can be uploaded only to an 'Uploaded files' connection.",
            code="FLOW-1425-400",
            report={"id": ident},
        )
    area = svc.settings.home / "uploads" / connection.id
    area.mkdir(parents=True, exist_ok=True)
    return area


def _target(area: Path, relative: str) -> Path:
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        raise BadRequest(
            "The file path must be relative, without '.', '..' or hidden names.",
            code="FLOW-1426-400",
            report={"parameter": "path"},
        )
    return area.joinpath(*parts)


@router.put(
    f"{FS}/connections/{{ident}}/files/{{path:path}}",
    tags=["Flow Service"],
    summary="Upload a file to an 'Uploaded files' connection (body: the file's bytes)",
)
async def upload(
    ident: str, path: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    svc = services(request)
    area = await calls.read(svc, _area, svc, actor, ident)
    target = _target(area, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    size = 0
    try:
        with partial.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise PayloadTooLarge(f"Uploads are limited to {MAX_UPLOAD_BYTES} bytes per file.")
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return JSONResponse({"path": path, "size": size}, status_code=201)


@router.get(f"{FS}/connections/{{ident}}/files", tags=["Flow Service"], summary="List uploaded files")
async def list_files(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    area = await calls.read(svc, _area, svc, actor, ident)
    items = [
        {"path": p.relative_to(area).as_posix(), "size": p.stat().st_size}
        for p in sorted(area.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    return JSONResponse({"items": items})


@router.delete(
    f"{FS}/connections/{{ident}}/files/{{path:path}}",
    tags=["Flow Service"],
    summary="Delete an uploaded file",
)
async def delete_file(
    ident: str, path: str, request: Request, actor: Actor = Depends(platform_actor)
) -> Response:
    svc = services(request)
    target = _target(await calls.read(svc, _area, svc, actor, ident), path)
    if not target.is_file():
        raise NotFound(f"No uploaded file {path!r}.", code="FLOW-1439-404")
    target.unlink()
    return Response(status_code=204)

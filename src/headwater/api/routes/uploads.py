"""Uploading files into an "Uploaded files" connection, which flows then read like a local folder.

``PUT /data/foundation/flowservice/connections/{id}/files/{path}`` streams the body (any content type)
to the connection's folder in its sandbox's files area, ``HOME/files/{org}/{sandbox}/uploads/{id}/{path}``
(``connectors/files/roots.py``), which no other sandbox can read: written under a temporary hidden name,
synced, then renamed, so a flow never reads half a file. With the lake on S3 the folder is the prefix
``<HEADWATER_LAKE_URL>/_files/{org}/{sandbox}/uploads/{id}/`` of the lake's bucket, so a worker on
another machine reads what any API server took; each file is one object, written whole
(``stores/objectfiles.py``), and a name that would make a file and a folder of one name is refused as on
a disk. ``GET …/files`` lists them; ``DELETE
…/files/{path}`` removes one.

The path is the client's: every name in it is checked (no NUL or other control characters, no hidden
names, at most 255 bytes each), and a file-system refusal caused by the name answers 4xx, never 500.
"""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from pyarrow import fs

from headwater.api.responses import JSONResponse
from headwater.catalog.ids import UPLOADED_FILES
from headwater.connectors.files import roots
from headwater.container import Services, services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import BadRequest, Conflict, HeadwaterError, NotFound, PayloadTooLarge
from headwater.services.ids import new_hex
from headwater.services.tenancy import Actor
from headwater.stores.objectfiles import ObjectFiles, unavailable

FS = "/data/foundation/flowservice"
MAX_UPLOAD_BYTES = 5 * 1024**3
MAX_NAME_BYTES = 255  # NAME_MAX of the common file systems
MAX_PATH_BYTES = 1024
MAX_KEY_BYTES = 1024  # of an S3 object's key, the lake's prefix included
router = APIRouter()


@dataclass(frozen=True)
class Bucket:
    """A connection's uploads in the lake's bucket: the keys under ``prefix`` of ``files``."""

    files: ObjectFiles
    prefix: str


def _area(svc: Services, actor: Actor, ident: str) -> Path | Bucket:
    connection = svc.connections.get(actor, ident)
    if connection.doc["connectionSpec"]["id"] != UPLOADED_FILES:
        raise BadRequest(
            "Files can be uploaded only to an 'Uploaded files' connection.",
            code="FLOW-1425-400",
            report={"id": ident},
        )
    place = roots.Place(actor.org.id, actor.sandbox.name)
    files = roots.bucket_files(svc.settings)
    if files is not None:
        return Bucket(files, roots.uploads_prefix(place, connection.id))
    return roots.uploads_area(svc.settings, place, connection.id).resolve()


def _names(relative: str) -> list[str]:
    """The names of the client's ``relative`` path; 400 naming ``path`` if one cannot be a file's name."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        raise _bad_path("The file path must be relative, without '.', '..' or hidden names.")
    if any(ord(c) < 32 or c == "\x7f" for c in relative):
        raise _bad_path("The file path may not contain NUL or other control characters.")
    try:
        encoded = [p.encode("utf-8") for p in parts]
    except UnicodeEncodeError:
        raise _bad_path("The file path must be valid UTF-8.") from None
    if any(len(name) > MAX_NAME_BYTES for name in encoded) or sum(map(len, encoded)) > MAX_PATH_BYTES:
        raise _bad_path(
            f"Each name in the file path is at most {MAX_NAME_BYTES} bytes, the whole path at most "
            f"{MAX_PATH_BYTES}."
        )
    return parts


def _target(area: Path, relative: str) -> Path:
    """``relative`` inside ``area``; 400 naming ``path`` if a name in it cannot be a file's name here."""
    target = area.joinpath(*_names(relative))
    # Folders inside the area are made by uploads only, but a symlink planted on the host must not lead out.
    existing = next((p for p in (target, *target.parents) if p.exists() or p.is_symlink()), area)
    if not existing.resolve().is_relative_to(area):
        raise _bad_path("The file path leads outside the connection's uploads.")
    return target


def _bad_path(message: str) -> BadRequest:
    return BadRequest(message, code="FLOW-1426-400", report={"parameter": "path"})


def _name_refused(exc: OSError, path: str) -> HeadwaterError:
    """The client's answer for an OSError that writing ``path`` raised: 4xx when the name caused it."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY):
        return Conflict(
            f"{path!r} cannot be written: a file or folder on its way has the same name as a folder or file "
            "already uploaded. Delete it, or choose another path.",
            code="FLOW-1427-409",
            report={"parameter": "path"},
        )
    if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ):
        return _bad_path(f"{path!r} is not a file name this server can store ({exc.strerror}).")
    return HeadwaterError(f"The upload could not be stored ({exc.strerror or exc}).", code="FLOW-1428-500")


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
    if isinstance(area, Bucket):
        size = await _put_object(area, path, request)
        return JSONResponse({"path": path, "size": size}, status_code=201)
    target = _target(area, path)
    partial = target.parent / f".{new_hex(8)}.partial"  # hidden: never read; unique: uploads may race
    size, created = 0, False
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        created = True
        with os.fdopen(fd, "wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise PayloadTooLarge(f"Uploads are limited to {MAX_UPLOAD_BYTES} bytes per file.")
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except OSError as exc:
        raise _name_refused(exc, path) from exc
    finally:
        if created:
            partial.unlink(missing_ok=True)
    return JSONResponse({"path": path, "size": size}, status_code=201)


@router.get(f"{FS}/connections/{{ident}}/files", tags=["Flow Service"], summary="List uploaded files")
async def list_files(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    area = await calls.read(svc, _area, svc, actor, ident)
    if isinstance(area, Bucket):
        return JSONResponse({"items": await asyncio.to_thread(_list_objects, area)})
    items = [
        {"path": p.relative_to(area).as_posix(), "size": p.stat().st_size}
        for p in sorted(area.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
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
    area = await calls.read(svc, _area, svc, actor, ident)
    if isinstance(area, Bucket):
        await asyncio.to_thread(_delete_object, area, path)
        return Response(status_code=204)
    target = _target(area, path)
    if not target.is_file() or target.is_symlink():
        raise NotFound(f"No uploaded file {path!r}.", code="FLOW-1439-404")
    try:
        target.unlink()
    except FileNotFoundError:  # deleted by a concurrent call
        raise NotFound(f"No uploaded file {path!r}.", code="FLOW-1439-404") from None
    return Response(status_code=204)


# --- in the lake's bucket ---
def _key(area: Bucket, path: str) -> str:
    """The key of the client's ``path``; 400 naming ``path`` if the store cannot hold that name."""
    key = "/".join([area.prefix, *_names(path)])
    if len(area.files.location(key).partition("/")[2].encode()) > MAX_KEY_BYTES:
        raise _bad_path(
            f"The file path is too long for the lake's store: its keys hold at most {MAX_KEY_BYTES} bytes, "
            "the lake's prefix and the connection's folder included."
        )
    return key


def _no_clash(area: Bucket, key: str, path: str) -> None:
    """409 as on a disk when a name on the way is an uploaded file, or the name is a folder of them."""
    parts = key.removeprefix(area.prefix + "/").split("/")
    above = ["/".join([area.prefix, *parts[:i]]) for i in range(1, len(parts))]
    found = area.files.filesystem.get_file_info([area.files.location(k) for k in [*above, key]])
    if any(i.type == fs.FileType.File for i in found[:-1]) or found[-1].type == fs.FileType.Directory:
        raise _name_refused(OSError(errno.EEXIST, "exists"), path)


async def _put_object(area: Bucket, path: str, request: Request) -> int:
    key = _key(area, path)

    def limit(size: int) -> None:
        if size > MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(f"Uploads are limited to {MAX_UPLOAD_BYTES} bytes per file.")

    with unavailable("storing an upload"):
        await asyncio.to_thread(_no_clash, area, key, path)
        return await area.files.write_stream(key, request.stream(), limit)


def _list_objects(area: Bucket) -> list[dict[str, object]]:
    with unavailable("listing uploads"):
        found = area.files.list(area.prefix, recursive=True)
    items = []
    for entry in sorted(found, key=lambda e: e.key):
        relative = entry.key.removeprefix(area.prefix + "/")
        if not any(part.startswith(".") for part in relative.split("/")):
            items.append({"path": relative, "size": entry.size})
    return items


def _delete_object(area: Bucket, path: str) -> None:
    key = _key(area, path)
    with unavailable("deleting an upload"):
        if area.files.stat(key) is None:
            raise NotFound(f"No uploaded file {path!r}.", code="FLOW-1439-404")
        area.files.delete(key)

"""JSON responses rendered with orjson, and request-body reading with the platform's rules."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from headwater.errors import BadRequest, PayloadTooLarge
from headwater.services.jsonbody import parse_json

MAX_CONTROL_BODY = 1024 * 1024


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def created(body: dict[str, Any], etag: str | None = None) -> JSONResponse:
    headers = {"ETag": etag} if etag else None
    return JSONResponse(body, status_code=201, headers=headers)


async def json_body(request: Request, *, patch: bool = False) -> Any:
    """Read a JSON body: require a JSON content type, at most 1 MB, and parse leniently."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise BadRequest(
            "A valid content-type must be specified: send Content-Type: application/json"
            + (" (or application/json-patch+json)" if patch else "")
            + ".",
            code="HW-1415-400",
            title="BadRequestError",
            report={"header": "Content-Type"},
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_CONTROL_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_CONTROL_BODY} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_CONTROL_BODY:
            raise PayloadTooLarge(f"The request body is larger than {MAX_CONTROL_BODY} bytes.")
        chunks.append(chunk)
    return parse_json(b"".join(chunks))

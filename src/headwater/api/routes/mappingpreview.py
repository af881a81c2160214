"""``POST /data/foundation/conversion/mappingSets/preview``: map sample rows, store nothing.

Body: ``{"mappingSet": {...}}`` (any request shape ``POST /mappingSets`` accepts, validated the same
way; its output schema may instead be given as ``"outputSchema": {"schemaRef": {"id"}}`` beside it) or
``{"mappingSetId": "...", "mappingSetVersion"?: N}``, and ``"data": [{row}, ...]`` (at most 1000 rows,
nested objects allowed; mapped, at most 16 MB). Response: ``{"data": [mapped row or null per input
row], "errors": [{"row", "code", "message", "path"}], "outputSchemaRef": {...}}``; mapped rows leave out
fields that are null.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse, json_body
from headwater.container import Services, services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.engines.mapping import compile_mapping
from headwater.engines.mapping.engine import CODE
from headwater.engines.mapping.rows import to_batch
from headwater.errors import ValidationFailed
from headwater.services.tenancy import Actor

PATH = "/data/foundation/conversion/mappingSets/preview"
MAX_ROWS = 1000
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # of mapped rows (Arrow data) a preview renders as JSON
router = APIRouter()

_BODY = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "mappingSet": {"type": "object", "description": "A mapping set, as POST /mappingSets takes it."},
        "mappingSetId": {"type": "string", "description": "Or the id of a stored mapping set."},
        "mappingSetVersion": {"type": "integer", "description": "A version of the stored mapping set."},
        "outputSchema": {
            "type": "object",
            "properties": {"schemaRef": {"type": "object", "properties": {"id": {"type": "string"}}}},
        },
        "data": {"type": "array", "maxItems": MAX_ROWS, "items": {"type": "object"}},
    },
}


@router.post(
    PATH,
    tags=["Conversion"],
    summary="Preview a mapping set on sample rows",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _BODY}}}},
)
async def preview_mapping_set(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    body = await json_body(request)
    return JSONResponse(await calls.pooled(preview, services(request), actor, body))


def preview(svc: Services, actor: Actor, body: Any) -> dict[str, Any]:
    """Validate the request, map its rows and render the result (ValidationFailed on a bad request)."""
    if not isinstance(body, dict):
        raise ValidationFailed([{"path": "", "message": "the body must be a JSON object"}], code=CODE)
    rows = _rows(body.get("data"))
    doc, prefix = _mapping_set(svc, actor, body)
    resolved = svc.schemas.resolve(actor, doc["outputSchemaRef"]["id"])
    try:
        compiled = compile_mapping(doc, resolved)
    except ValidationFailed as exc:
        raise _prefixed(exc, prefix) from exc
    result = compiled.apply(to_batch(rows))
    if result.output.nbytes > MAX_OUTPUT_BYTES:  # each value is bounded; many of them are too much
        raise ValidationFailed(
            [
                {
                    "path": "data",
                    "message": f"maps to {result.output.nbytes} bytes, more than a preview returns "
                    f"({MAX_OUTPUT_BYTES}); preview fewer rows",
                }
            ],
            code=CODE,
        )
    mapped = iter(result.output.to_pylist())
    out: list[Any] = [
        None if failed else (_clean(next(mapped)) or {}) for failed in result.failed_rows.to_pylist()
    ]
    return {
        "data": out,
        "errors": [
            {"row": e.row, "code": e.code, "message": e.message, "path": e.path} for e in result.errors
        ],
        "outputSchemaRef": doc["outputSchemaRef"],
    }


def _rows(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise ValidationFailed(
            [{"path": "data", "message": "is required: a list of rows (JSON objects) to map"}], code=CODE
        )
    if len(data) > MAX_ROWS:
        raise ValidationFailed(
            [{"path": "data", "message": f"has {len(data)} rows; preview at most {MAX_ROWS}"}], code=CODE
        )
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValidationFailed(
                [{"path": f"data[{index}]", "message": "must be a JSON object"}], code=CODE
            )
    return data


def _mapping_set(svc: Services, actor: Actor, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The mapping set document to preview, and the prefix of its paths in the request body."""
    inline, ident = body.get("mappingSet"), body.get("mappingSetId")
    if (inline is None) == (ident is None):
        raise ValidationFailed(
            [{"path": "mappingSet", "message": "send either mappingSet (inline) or mappingSetId, not both"}],
            code=CODE,
        )
    if ident is not None:
        if not isinstance(ident, str) or not ident:
            raise ValidationFailed(
                [{"path": "mappingSetId", "message": "must be a mapping set id"}], code=CODE
            )
        if body.get("outputSchema") is not None:
            raise ValidationFailed(
                [
                    {
                        "path": "outputSchema",
                        "message": "goes with an inline mappingSet; a stored one has its own",
                    }
                ],
                code=CODE,
            )
        version = _version(body.get("mappingSetVersion"))
        return svc.mapping_sets.get(actor, ident, version).doc, ""
    if not isinstance(inline, dict):
        raise ValidationFailed([{"path": "mappingSet", "message": "must be a mapping set object"}], code=CODE)
    if "xdmSchema" not in inline and "outputSchema" not in inline and body.get("outputSchema") is not None:
        inline = {**inline, "outputSchema": body["outputSchema"]}
    try:
        return svc.mapping_sets.build(actor, inline, None).doc, "mappingSet."
    except ValidationFailed as exc:
        raise _prefixed(exc, "mappingSet.") from exc


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValidationFailed(
        [{"path": "mappingSetVersion", "message": "must be a non-negative integer"}], code=CODE
    )


def _prefixed(exc: ValidationFailed, prefix: str) -> ValidationFailed:
    if not prefix:
        return exc
    errors = [{**e, "path": prefix + e["path"] if e.get("path") else prefix.rstrip(".")} for e in exc.errors]
    return ValidationFailed(errors, code=exc.code)


def _clean(value: Any) -> Any:
    """A mapped value for JSON: nulls and empty objects dropped, maps as objects, ISO 8601 times."""
    if isinstance(value, dict):
        kept = {k: c for k, v in value.items() if (c := _clean(v)) is not None}
        return kept or None
    if isinstance(value, list):
        if value and all(isinstance(v, tuple) for v in value):  # a map's entries
            entries = {str(k): c for k, v in value if (c := _clean(v)) is not None}
            return entries or None
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value

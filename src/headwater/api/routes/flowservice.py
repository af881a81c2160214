"""Flow Service API under /data/foundation/flowservice."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from headwater.api.responses import JSONResponse
from headwater.api.routes.crud import list_response, register
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.errors import NotFound
from headwater.services import listing
from headwater.services.flowservice import drafts
from headwater.services.tenancy import Actor

PREFIX = "/data/foundation/flowservice"
TAG = "Flow Service"
router = APIRouter()

_REF = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": {"type": "string"}, "version": {"type": "string"}},
}
_CONNECTION = {
    "type": "object",
    "required": ["name", "connectionSpec"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "auth": {
            "type": "object",
            "properties": {"specName": {"type": "string"}, "params": {"type": "object"}},
        },
        "connectionSpec": _REF,
    },
}
_SOURCE = {
    "type": "object",
    "required": ["name", "data"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "baseConnectionId": {"type": "string"},
        "connectionSpec": _REF,
        "data": {
            "type": "object",
            "properties": {"format": {"enum": ["delimited", "json", "parquet", "tabular"]}},
        },
        "params": {"type": "object"},
    },
}
_TARGET = {
    "type": "object",
    "required": ["name", "connectionSpec"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "baseConnectionId": {"type": "string"},
        "connectionSpec": _REF,
        "data": {
            "type": "object",
            "properties": {"schema": {"type": "object"}, "format": {"type": "string"}},
        },
        "params": {"type": "object", "properties": {"dataSetId": {"type": "string"}}},
    },
}
_FLOW = {
    "type": "object",
    "required": ["name", "flowSpec", "sourceConnectionIds", "targetConnectionIds"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "flowSpec": _REF,
        "sourceConnectionIds": {"type": "array", "items": {"type": "string"}},
        "targetConnectionIds": {"type": "array", "items": {"type": "string"}},
        "transformations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "params": {"type": "object"}},
            },
        },
        "scheduleParams": {
            "type": "object",
            "properties": {
                "startTime": {"type": ["integer", "string"]},
                "frequency": {"enum": ["once", "minute", "hour", "day", "week"]},
                "interval": {"type": ["integer", "string"]},
                "backfill": {"type": "boolean"},
            },
        },
    },
}

register(router, PREFIX, "connections", lambda s: s.connections, TAG, _CONNECTION)
register(router, PREFIX, "sourceConnections", lambda s: s.source_connections, TAG, _SOURCE)
register(router, PREFIX, "targetConnections", lambda s: s.target_connections, TAG, _TARGET)
register(router, PREFIX, "flows", lambda s: s.flows, TAG, _FLOW)


def _spec_routes(name: str, attr: str) -> None:
    async def list_specs(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        specs: dict[str, dict[str, Any]] = getattr(services(request).specs, attr)
        query = listing.parse_query(request.query_params.multi_items(), default_order="createdAt")
        docs, next_offset, total = listing.apply(list(specs.values()), query)
        return list_response(docs, query, next_offset, total, f"{PREFIX}/{name}")

    async def get_spec(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        specs: dict[str, dict[str, Any]] = getattr(services(request).specs, attr)
        wanted = [specs[i] for i in ident.split(",") if i in specs]
        if not wanted:
            raise NotFound(
                f"No {name[:-1]} with id {ident!r}; GET {PREFIX}/{name} lists them.",
                code="FLOW-1439-404",
                report={"id": ident, "type": name[:-1]},
            )
        return JSONResponse({"items": wanted})

    router.add_api_route(f"{PREFIX}/{name}", list_specs, methods=["GET"], summary=f"List {name}", tags=[TAG])
    router.add_api_route(
        f"{PREFIX}/{name}/{{ident}}",
        get_spec,
        methods=["GET"],
        summary=f"Get {name[:-1]}(s) by id (comma list)",
        tags=[TAG],
    )


_spec_routes("connectionSpecs", "connection_specs")
_spec_routes("flowSpecs", "flow_specs")


@router.post(
    f"{PREFIX}/flows/{{ident}}/action", summary="Enable or disable a flow (?op=enable|disable)", tags=[TAG]
)
async def flow_action(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    svc = services(request)
    op = request.query_params.get("op", "")
    resource = await calls.write(svc, svc.flows.set_state, actor, ident, op)
    return JSONResponse({"id": resource.id, "etag": resource.etag}, headers={"ETag": resource.etag})


def _publish_route(collection: str, kind: str, summary: str) -> None:
    async def publish(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        svc = services(request)
        op = request.query_params.get("op", "")
        resource = await calls.write(
            svc, drafts.publish, svc.connections, svc.target_connections, actor, kind, ident, op
        )
        return JSONResponse({"id": resource.id, "etag": resource.etag}, headers={"ETag": resource.etag})

    router.add_api_route(
        f"{PREFIX}/{collection}/{{ident}}/action", publish, methods=["POST"], summary=summary, tags=[TAG]
    )


_publish_route("connections", "connection", "Publish a draft destination (?op=publish)")
_publish_route(
    "targetConnections", "targetConnection", "Publish the draft destination of a request (?op=publish)"
)

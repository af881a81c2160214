"""Route factory for the collections that share the Flow Service conventions.

``GET /{name}`` lists (``{"items", "_links"}`` or ``{"count"}``), ``GET /{name}/{id}`` returns
``{"items":[one]}``, ``POST`` answers 201 ``{"id","etag"}``, ``PATCH`` takes a JSON Patch with If-Match,
``DELETE`` answers 204.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, created, json_body
from headwater.container import Services, services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.services import listing
from headwater.services.flowservice import drafts
from headwater.services.resources import Collection
from headwater.services.tenancy import Actor

PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op", "path"],
                        "properties": {
                            "op": {"type": "string", "enum": ["add", "replace", "remove"]},
                            "path": {"type": "string", "example": "/name"},
                            "value": {},
                        },
                    },
                }
            }
        },
    },
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "The resource's current etag.",
        }
    ],
}


def list_response(
    docs: list[dict[str, Any]],
    query: listing.ListQuery,
    next_offset: int | None,
    total: int | None,
    base_path: str,
) -> JSONResponse:
    if query.count:
        return JSONResponse({"count": total})
    return JSONResponse({"items": docs, "_links": listing.next_href(base_path, query, next_offset)})


async def _pooled(_svc: Services, fn: Any, *args: Any) -> Any:
    return await calls.write(_svc, fn, *args)


def register(
    router: APIRouter,
    prefix: str,
    name: str,
    pick: Callable[[Services], Collection],
    tag: str,
    body_schema: dict[str, Any],
) -> None:
    path = f"{prefix}/{name}"

    async def list_items(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        svc = services(request)
        coll = pick(svc)
        query = listing.parse_query(request.query_params.multi_items())
        run = calls.read if listing.pages_in_sql(query) else _pooled
        docs, next_offset, total = await run(
            svc, listing.run, coll.store, coll.kind, actor.scope, query, coll.render
        )
        return list_response(docs, query, next_offset, total, path)

    async def get_item(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        svc = services(request)
        coll = pick(svc)
        resource = await calls.read(svc, coll.get, actor, ident)
        return JSONResponse({"items": [coll.render(resource)]}, headers={"ETag": resource.etag})

    async def create_item(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        svc = services(request)
        coll = pick(svc)
        body = await json_body(request)
        if drafts.check_mode(request.query_params.get("mode"), coll.kind) and isinstance(body, dict):
            body = {**body, "state": drafts.DRAFT}
        resource = await calls.write(svc, coll.create, actor, body)
        return created({"id": resource.id, "etag": resource.etag}, resource.etag)

    async def patch_item(
        ident: str, request: Request, actor: Actor = Depends(platform_actor)
    ) -> JSONResponse:
        svc = services(request)
        coll = pick(svc)
        body = await json_body(request, patch=True)
        resource = await calls.write(svc, coll.patch, actor, ident, body, request.headers.get("if-match"))
        return JSONResponse({"id": resource.id, "etag": resource.etag}, headers={"ETag": resource.etag})

    async def delete_item(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
        svc = services(request)
        coll = pick(svc)
        await calls.write(svc, coll.delete, actor, ident)
        return Response(status_code=204)

    label = name[:-1] if name.endswith("s") else name
    create_body = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}
    }
    router.add_api_route(path, list_items, methods=["GET"], summary=f"List {name}", tags=[tag])
    router.add_api_route(
        path,
        create_item,
        methods=["POST"],
        summary=f"Create a {label}",
        tags=[tag],
        status_code=201,
        openapi_extra=create_body,
    )
    router.add_api_route(path + "/{ident}", get_item, methods=["GET"], summary=f"Get a {label}", tags=[tag])
    router.add_api_route(
        path + "/{ident}",
        patch_item,
        methods=["PATCH"],
        summary=f"Update a {label}",
        tags=[tag],
        openapi_extra=PATCH_BODY,
    )
    router.add_api_route(
        path + "/{ident}",
        delete_item,
        methods=["DELETE"],
        summary=f"Delete a {label}",
        tags=[tag],
        status_code=204,
    )

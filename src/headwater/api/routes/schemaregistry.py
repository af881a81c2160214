"""Schema Registry API under /data/foundation/schemaregistry.

The ``Accept`` header picks the representation, as on the platform: ``application/vnd.adobe.xed+json``
(as stored; on lists, full objects instead of summaries), ``application/vnd.adobe.xed-full+json``
(fully resolved: one JSON Schema with merged ``properties``), ``-notext`` variants without titles and
descriptions. Ids in paths are the URL-encoded ``$id`` or the ``meta:altId``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from headwater.api.responses import JSONResponse, created, json_body
from headwater.container import services
from headwater.edge import calls
from headwater.edge.auth import platform_actor
from headwater.engines.xdm_compose import strip_text
from headwater.errors import NotFound
from headwater.services import listing
from headwater.services.schemas import SchemaRegistry
from headwater.services.schemas.base import XedCollection, registry_metadata
from headwater.services.schemas.xdm import summary
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

PREFIX = "/data/foundation/schemaregistry"
TAG = "Schema Registry"
router = APIRouter()

_REF_LIST = {
    "type": "array",
    "items": {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string"}}},
}
_SCHEMA_BODY = {
    "type": "object",
    "required": ["title", "allOf"],
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "type": {"const": "object"},
        "allOf": _REF_LIST,
        "meta:class": {"type": "string", "description": "The class $id; derived from allOf when omitted."},
        "meta:immutableTags": {"type": "array", "items": {"type": "string"}},
    },
    "example": {
        "type": "object",
        "title": "Target schema for CRM source connector",
        "description": "",
        "allOf": [
            {"$ref": "https://ns.adobe.com/xdm/context/profile"},
            {"$ref": "https://ns.adobe.com/xdm/context/profile-person-details"},
            {"$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"},
        ],
        "meta:class": "https://ns.adobe.com/xdm/context/profile",
    },
}
_FIELDGROUP_BODY = {
    "type": "object",
    "required": ["title", "meta:intendedToExtend", "definitions"],
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "meta:intendedToExtend": {"type": "array", "items": {"type": "string"}},
        "definitions": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"properties": {"type": "object"}}},
        },
        "allOf": _REF_LIST,
    },
    "example": {
        "title": "Loyalty",
        "meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/profile"],
        "definitions": {
            "loyalty": {
                "properties": {
                    "_{TENANT_ID}": {
                        "type": "object",
                        "properties": {"loyaltyId": {"type": "string"}, "points": {"type": "integer"}},
                    }
                }
            }
        },
        "allOf": [{"$ref": "#/definitions/loyalty"}],
    },
}
_DESCRIPTOR_BODY = {
    "type": "object",
    "required": ["@type", "xdm:sourceSchema", "xdm:sourceProperty", "xdm:namespace"],
    "properties": {
        "@type": {"const": "xdm:descriptorIdentity"},
        "xdm:sourceSchema": {"type": "string"},
        "xdm:sourceVersion": {"type": "integer"},
        "xdm:sourceProperty": {"type": "string", "example": "/personalEmail/address"},
        "xdm:namespace": {"type": "string", "example": "Email"},
        "xdm:property": {"enum": ["xdm:code", "xdm:id"]},
        "xdm:isPrimary": {"type": "boolean"},
    },
}
_JSON_PATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"type": "string"},
            "path": {"type": "string", "example": "/allOf/-"},
            "value": {},
        },
    },
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON request body of ``schema``. Its ``example`` moves to the media type's ``examples``, where
    it is data: inside a schema, the example's ``$ref`` values would be read as references to resolve."""
    schema = dict(schema)
    example = schema.pop("example", None)
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["examples"] = {"example": {"value": example}}
    return {"requestBody": {"required": True, "content": {"application/json": media}}}


def _representation(request: Request) -> tuple[str, bool]:
    """("full" | "xed" | "summary", notext) from the Accept header. ``xdm`` is read as ``xed``
    (``application/vnd.adobe.xdm-full+json`` is ``xed-full``; aepp asks for the ``xdm`` names)."""
    accept = request.headers.get("accept", "").lower().replace("vnd.adobe.xdm", "vnd.adobe.xed")
    notext = "notext" in accept
    if "xed-full" in accept:
        return "full", notext
    if "xed+json" in accept or "xed-notext" in accept:
        return "xed", notext
    return "summary", notext


def _flat_wanted(request: Request) -> bool:
    """``xed-full-flat`` / ``xdm-full-flat`` (also with ``-desc``, ``-notext``, ``-deprecated``)."""
    accept = request.headers.get("accept", "").lower()
    return "-full" in accept and "-flat" in accept


def flatten(body: dict[str, Any]) -> dict[str, Any]:
    """A resolved schema with every field at the root of ``properties``, keyed by its dotted path
    (``personalEmail.address``); objects keep their other keywords but not their nested
    ``properties`` (each of those is an entry of its own); arrays keep their ``items`` as they are."""
    flat: dict[str, Any] = {}

    def walk(props: Any, prefix: str) -> None:
        if not isinstance(props, dict):
            return
        for name, node in props.items():
            if not isinstance(node, dict):
                continue
            path = f"{prefix}.{name}" if prefix else name
            flat[path] = {k: v for k, v in node.items() if k != "properties"}
            walk(node.get("properties"), path)

    walk(body.get("properties"), "")
    out = {k: v for k, v in body.items() if k != "properties"}
    out["properties"] = flat
    return out


def _registry(request: Request) -> SchemaRegistry:
    return services(request).schemas


def _envelope(
    docs: list[dict[str, Any]], query: listing.ListQuery, base: str, mode: str, notext: bool
) -> dict[str, Any]:
    page, next_offset, _ = listing.apply(docs, query)
    links = listing.next_href(base, query, next_offset)
    results = (
        [strip_text(d) if notext else d for d in page] if mode != "summary" else [summary(d) for d in page]
    )
    return {
        "results": results,
        "_page": {
            "orderby": ("-" if query.descending else "") + query.order_key,
            "next": listing.encode_token(next_offset, query) if next_offset is not None else None,
            "count": len(page),
        },
        "_links": links,
    }


# --- global classes and field groups ---
def _global_routes(
    name: str,
    pick: Callable[[SchemaRegistry], dict[str, dict[str, Any]]],
    label: str,
    plural: str,
    aliases: tuple[str, ...] = (),
) -> None:
    async def list_global(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        mode, notext = _representation(request)
        query = listing.parse_query(
            request.query_params.multi_items(), default_order="title", service="SCHEMA"
        )
        docs = list(pick(_registry(request)).values())
        return JSONResponse(_envelope(docs, query, f"{PREFIX}/global/{name}", mode, notext))

    async def get_global(
        ident: str, request: Request, actor: Actor = Depends(platform_actor)
    ) -> JSONResponse:
        registry = _registry(request)
        canonical = registry.catalog.canonical(ident)
        doc = pick(registry).get(canonical) if canonical else None
        if doc is None:
            raise NotFound(
                f"No global {label} with id {ident!r}.",
                code="SCHEMA-1404-404",
                report={"id": ident, "type": label},
            )
        mode, notext = _representation(request)
        body = registry.resolve_part(doc) if mode == "full" else doc
        if mode == "full" and _flat_wanted(request):
            body = flatten(body)
        return JSONResponse(strip_text(body) if notext else body)

    for index, segment in enumerate((name, *aliases)):
        path = f"{PREFIX}/global/{segment}"
        shown = index == 0
        router.add_api_route(
            path,
            list_global,
            methods=["GET"],
            tags=[TAG],
            include_in_schema=shown,
            summary=f"List global {plural}",
        )
        router.add_api_route(
            path + "/{ident:path}",
            get_global,
            methods=["GET"],
            tags=[TAG],
            include_in_schema=shown,
            summary=f"Get a global {label}",
        )


@router.get(f"{PREFIX}/stats", tags=[TAG], summary="The tenant id and how many resources the sandbox has")
async def stats(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """As on the platform: ``tenantId`` names the namespace ``_{tenantId}`` of tenant fields (a client
    building a tenant field group needs it), ``counts`` the sandbox's tenant resources."""
    registry = _registry(request)

    def count() -> dict[str, int]:
        schemas = registry.schemas.store.list(registry.schemas.kind, actor.scope).items
        groups = registry.fieldgroups.store.list(registry.fieldgroups.kind, actor.scope).items
        unions = sum(1 for s in schemas if "union" in (s.doc.get("meta:immutableTags") or []))
        return {
            "schemas": len(schemas),
            "mixins": len(groups),
            "datatypes": 0,
            "classes": 0,
            "unions": unions,
        }

    counts = await calls.pooled(count)
    return JSONResponse({"imsOrg": actor.org.id, "tenantId": actor.org.tenant_id, "counts": counts})


_global_routes("classes", lambda r: r.catalog.classes, "class", "classes")
_global_routes(
    "fieldgroups", lambda r: r.catalog.fieldgroups, "field group", "field groups", aliases=("mixins",)
)


# --- tenant field groups and schemas ---
def _render(
    registry: SchemaRegistry, coll: XedCollection, actor: Actor, resource: Resource, mode: str
) -> dict[str, Any]:
    if mode != "full":
        return coll.render(resource)
    body = (
        registry.resolved(actor, resource) if coll.kind == "schema" else registry.resolve_part(resource.doc)
    )
    body["meta:registryMetadata"] = registry_metadata(resource)
    return body


def _tenant_routes(
    name: str,
    pick: Callable[[SchemaRegistry], XedCollection],
    label: str,
    body_schema: dict[str, Any],
    aliases: tuple[str, ...] = (),
) -> None:
    def list_docs(registry: SchemaRegistry, actor: Actor) -> list[dict[str, Any]]:
        coll = pick(registry)
        return [coll.render(r) for r in coll.store.list(coll.kind, actor.scope).items]

    async def list_items(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        mode, notext = _representation(request)
        query = listing.parse_query(
            request.query_params.multi_items(), default_order="title", service="SCHEMA"
        )
        docs = await calls.pooled(list_docs, _registry(request), actor)
        return JSONResponse(_envelope(docs, query, f"{PREFIX}/tenant/{name}", mode, notext))

    async def get_item(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        registry = _registry(request)
        mode, notext = _representation(request)

        def load() -> tuple[Resource, dict[str, Any]]:
            resource = pick(registry).get(actor, ident)
            return resource, _render(registry, pick(registry), actor, resource, mode)

        resource, body = await calls.pooled(load)
        if mode == "full" and _flat_wanted(request):
            body = flatten(body)
        return JSONResponse(strip_text(body) if notext else body, headers={"ETag": resource.etag})

    async def create_item(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
        coll = pick(_registry(request))
        body = await json_body(request)
        resource = await calls.write(services(request), coll.create, actor, body)
        return created(coll.render(resource), resource.etag)

    async def replace_item(
        ident: str, request: Request, actor: Actor = Depends(platform_actor)
    ) -> JSONResponse:
        return await _update(request, actor, ident, patch=False)

    async def patch_item(
        ident: str, request: Request, actor: Actor = Depends(platform_actor)
    ) -> JSONResponse:
        return await _update(request, actor, ident, patch=True)

    async def _update(request: Request, actor: Actor, ident: str, *, patch: bool) -> JSONResponse:
        coll = pick(_registry(request))
        body = await json_body(request, patch=patch)
        resource = await calls.write(
            services(request),
            lambda: coll.update(actor, ident, body, request.headers.get("if-match"), patch=patch),
        )
        return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})

    async def delete_item(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
        await calls.write(services(request), pick(_registry(request)).delete, actor, ident)
        return Response(status_code=204)

    if_match = {
        "parameters": [
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Optional: the current etag; 412 if it is stale.",
            }
        ]
    }
    for index, segment in enumerate((name, *aliases)):
        path, item = f"{PREFIX}/tenant/{segment}", f"{PREFIX}/tenant/{segment}/{{ident:path}}"
        shown = index == 0
        common: dict[str, Any] = {"tags": [TAG], "include_in_schema": shown}
        router.add_api_route(path, list_items, methods=["GET"], summary=f"List {label}s", **common)
        router.add_api_route(
            path,
            create_item,
            methods=["POST"],
            summary=f"Create a {label}",
            status_code=201,
            openapi_extra=_body(body_schema),
            **common,
        )
        router.add_api_route(item, get_item, methods=["GET"], summary=f"Get a {label}", **common)
        router.add_api_route(
            item,
            replace_item,
            methods=["PUT"],
            summary=f"Replace a {label}",
            openapi_extra={**_body(body_schema), **if_match},
            **common,
        )
        router.add_api_route(
            item,
            patch_item,
            methods=["PATCH"],
            summary=f"Update a {label} (JSON Patch)",
            openapi_extra={**_body(_JSON_PATCH), **if_match},
            **common,
        )
        router.add_api_route(
            item, delete_item, methods=["DELETE"], summary=f"Delete a {label}", status_code=204, **common
        )


_tenant_routes(
    "fieldgroups", lambda r: r.fieldgroups, "tenant field group", _FIELDGROUP_BODY, aliases=("mixins",)
)
_tenant_routes("schemas", lambda r: r.schemas, "tenant schema", _SCHEMA_BODY)


# --- tenant classes (none: Headwater has only the global classes) ---
@router.get(f"{PREFIX}/tenant/classes", tags=[TAG], summary="List tenant classes (always empty)")
async def list_tenant_classes(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """Headwater has no tenant classes: schemas use the global ones (``GET /global/classes``). The list is
    empty, in the platform's envelope."""
    mode, notext = _representation(request)
    query = listing.parse_query(request.query_params.multi_items(), default_order="title", service="SCHEMA")
    return JSONResponse(_envelope([], query, f"{PREFIX}/tenant/classes", mode, notext))


@router.get(f"{PREFIX}/tenant/classes/{{ident:path}}", tags=[TAG], summary="Get a tenant class (none exist)")
async def get_tenant_class(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    raise NotFound(
        f"No tenant class with id {ident!r}: Headwater has only the global classes "
        f"(GET {PREFIX}/global/classes).",
        code="SCHEMA-1404-404",
        report={"id": ident, "type": "class"},
    )


# --- unions: one per class that has schemas tagged "union" ---
def _union_ids(class_id: str) -> tuple[str, str]:
    """The platform's union ``$id`` and ``meta:altId`` of a class: ``<class $id>__union`` and
    ``_xdm.context.profile__union``."""
    rest = class_id.split("://", 1)[-1].split("/", 1)[-1]
    return f"{class_id}__union", "_" + rest.replace("/", ".") + "__union"


def _union_members(registry: SchemaRegistry, actor: Actor) -> dict[str, list[Resource]]:
    coll = registry.schemas
    members: dict[str, list[Resource]] = {}
    for r in coll.store.list(coll.kind, actor.scope).items:
        if "union" in (r.doc.get("meta:immutableTags") or []) and isinstance(r.doc.get("meta:class"), str):
            members.setdefault(r.doc["meta:class"], []).append(r)
    return members


def _union_summary(registry: SchemaRegistry, class_id: str) -> dict[str, Any]:
    ident, alt = _union_ids(class_id)
    cls = registry.catalog.get_class(class_id) or {}
    return {"$id": ident, "meta:altId": alt, "version": "1.0", "title": f"{cls.get('title', class_id)} Union"}


@router.get(f"{PREFIX}/tenant/unions", tags=[TAG], summary="List unions")
async def list_unions(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """One union per class that has schemas tagged ``meta:immutableTags: ["union"]``."""
    registry = _registry(request)
    query = listing.parse_query(request.query_params.multi_items(), default_order="title", service="SCHEMA")
    members = await calls.pooled(_union_members, registry, actor)
    docs = [_union_summary(registry, cls) for cls in members]
    return JSONResponse(_envelope(docs, query, f"{PREFIX}/tenant/unions", "xed", False))


@router.get(f"{PREFIX}/tenant/unions/{{ident:path}}", tags=[TAG], summary="Get a union view")
async def get_union(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    """The union view: the class and every field group of the class's union schemas, merged (as
    ``xed-full``; ``-flat`` and ``-notext`` apply)."""
    registry = _registry(request)

    def load() -> dict[str, Any]:
        for cls, schemas in _union_members(registry, actor).items():
            if ident not in _union_ids(cls):
                continue
            refs: list[dict[str, str]] = [{"$ref": cls}]
            for schema in schemas:
                for ref in schema.doc.get("allOf") or []:
                    if isinstance(ref, dict) and ref not in refs and ref.get("$ref") != cls:
                        refs.append(ref)
            composer = registry.compose_stored(actor, {"allOf": refs, "meta:class": cls})
            summary_doc = _union_summary(registry, cls)
            body = {**summary_doc, "type": "object", "meta:class": cls}
            body["properties"] = composer.root.get("properties", {})
            body["meta:extends"] = [r["$ref"] for r in refs]
            return body
        raise NotFound(
            f"No union with id {ident!r}: a union exists for each class that has schemas tagged "
            f'"union" (GET {PREFIX}/tenant/unions lists them).',
            code="SCHEMA-1404-404",
            report={"id": ident, "type": "union"},
        )

    body = await calls.pooled(load)
    _, notext = _representation(request)
    if _flat_wanted(request):
        body = flatten(body)
    return JSONResponse(strip_text(body) if notext else body)


# --- descriptors ---
@router.get(f"{PREFIX}/tenant/descriptors", tags=[TAG], summary="List descriptors")
async def list_descriptors(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    registry = _registry(request)
    query = listing.parse_query(request.query_params.multi_items(), service="SCHEMA")

    def load() -> list[dict[str, Any]]:
        coll = registry.descriptors
        return [coll.render(r) for r in coll.store.list(coll.kind, actor.scope).items]

    page, next_offset, total = listing.apply(await calls.pooled(load), query)
    accept = request.headers.get("accept", "").lower()
    if "xdm-id" in accept or "xdm-link" in accept:
        grouped: dict[str, list[str]] = {}
        for d in page:
            grouped.setdefault(d["@type"], []).append(d["@id"])
        return JSONResponse(grouped)
    return JSONResponse(
        {
            "results": page,
            "_page": {
                "count": len(page),
                "total": total,
                "next": listing.encode_token(next_offset, query) if next_offset is not None else None,
            },
            "_links": listing.next_href(f"{PREFIX}/tenant/descriptors", query, next_offset),
        }
    )


@router.post(
    f"{PREFIX}/tenant/descriptors",
    tags=[TAG],
    summary="Create a descriptor",
    status_code=201,
    openapi_extra=_body(_DESCRIPTOR_BODY),
)
async def create_descriptor(request: Request, actor: Actor = Depends(platform_actor)) -> JSONResponse:
    coll = _registry(request).descriptors
    body = await json_body(request)
    resource = await calls.write(services(request), coll.create, actor, body)
    return created(coll.render(resource), resource.etag)


@router.get(f"{PREFIX}/tenant/descriptors/{{ident}}", tags=[TAG], summary="Get a descriptor")
async def get_descriptor(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    coll = _registry(request).descriptors
    resource = await calls.read(services(request), coll.get, actor, ident)
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.put(
    f"{PREFIX}/tenant/descriptors/{{ident}}",
    tags=[TAG],
    summary="Replace a descriptor",
    openapi_extra=_body(_DESCRIPTOR_BODY),
)
async def replace_descriptor(
    ident: str, request: Request, actor: Actor = Depends(platform_actor)
) -> JSONResponse:
    coll = _registry(request).descriptors
    body = await json_body(request)
    resource = await calls.write(
        services(request),
        lambda: coll.update(actor, ident, body, request.headers.get("if-match"), patch=False),
    )
    return JSONResponse(coll.render(resource), headers={"ETag": resource.etag})


@router.delete(
    f"{PREFIX}/tenant/descriptors/{{ident}}", tags=[TAG], summary="Delete a descriptor", status_code=204
)
async def delete_descriptor(ident: str, request: Request, actor: Actor = Depends(platform_actor)) -> Response:
    await calls.write(services(request), _registry(request).descriptors.delete, actor, ident)
    return Response(status_code=204)

"""What the Schema Registry's tenant resources share: lookups by ``$id`` or ``meta:altId``, optional
If-Match, and the ``meta:registryMetadata`` block.

Unlike the Flow Service, the Schema Registry does not require If-Match on PUT and PATCH; Headwater
honours it when sent (412 on a stale etag) and always answers with an ETag header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.services import jsonpatch
from headwater.services.resources import SYSTEM_FIELDS, Collection, require_object, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.services.schemas.registry import SchemaRegistry

SERVICE = "SCHEMA"
HIDDEN = SYSTEM_FIELDS - {"version"}
# Fields the registry computes; a client may send them back (PUT of a GET) but never sets them.
READ_ONLY = frozenset(
    {
        "$id",
        "meta:altId",
        "meta:resourceType",
        "version",
        "meta:extends",
        "meta:registryMetadata",
        "meta:containerId",
        "meta:tenantNamespace",
        "meta:abstract",
        "meta:extensible",
        "meta:xdmType",
        "meta:createdDate",
        "@id",
    }
)


class XedCollection(Collection):
    service = SERVICE
    protected = SYSTEM_FIELDS | {"$id", "meta:altId", "@id"}

    def __init__(self, registry: SchemaRegistry) -> None:
        super().__init__(registry.store)
        self.registry = registry

    def find(self, actor: Actor, ident: str) -> Resource | None:
        """The resource named by its id or alt id (the latter with or without its leading ``_``)."""
        if not isinstance(ident, str) or not ident:
            return None
        found = self.store.get(self.kind, actor.scope, ident) or self.store.get_by_alt_id(
            self.kind, actor.scope, ident
        )
        if found is None and not ident.startswith("_") and "://" not in ident:
            found = self.store.get_by_alt_id(self.kind, actor.scope, "_" + ident)
        return found

    def get(self, actor: Actor, ident: str) -> Resource:
        found = self.find(actor, ident)
        if found is None:
            raise self.not_found(ident)
        return found

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        body = require_object(body)
        ident = ident or self.new_ident(actor)
        clean = {k: v for k, v in body.items() if k not in READ_ONLY and k not in SYSTEM_FIELDS}
        return super().create(actor, {**clean, "$id": ident}, ident)

    def new_ident(self, actor: Actor) -> str:
        return self.new_id()

    def update(self, actor: Actor, ident: str, body: Any, if_match: str | None, *, patch: bool) -> Resource:
        """PUT (``patch=False``, a whole document) or PATCH (a JSON Patch); If-Match is optional."""
        current = self.get(actor, ident)
        self.check_if_match(current, if_match)
        if patch:
            doc = jsonpatch.apply(self.editable(current), body, self.protected, service=self.service)
        else:
            doc = {k: v for k, v in require_object(body).items() if k not in READ_ONLY}
        return self.replace(actor, current, doc)

    def delete(self, actor: Actor, ident: str) -> None:
        super().delete(actor, self.get(actor, ident).id)

    def editable(self, resource: Resource) -> dict[str, Any]:
        return {
            k: v for k, v in resource.doc.items() if k not in HIDDEN and k not in ("meta:registryMetadata",)
        }

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = self.editable(resource)
        doc["meta:registryMetadata"] = registry_metadata(resource)
        return doc


def check_header(body: dict[str, Any], errors: list[dict[str, str]]) -> str | None:
    """The title, description and type every tenant schema and field group carries; returns the title."""
    title = text_field(body, "title", errors)
    if not isinstance(body.get("description", ""), str):
        errors.append({"path": "description", "message": "must be a string"})
    if body.get("type", "object") != "object":
        errors.append({"path": "type", "message": "must be 'object'"})
    return title


def registry_metadata(resource: Resource) -> dict[str, Any]:
    doc = resource.doc
    return {
        "repo:createdDate": resource.created_at,
        "repo:lastModifiedDate": resource.updated_at,
        "xdm:createdClientId": doc.get("createdClient"),
        "xdm:lastModifiedClientId": doc.get("updatedClient"),
        "xdm:createdUserId": doc.get("createdBy"),
        "xdm:lastModifiedUserId": doc.get("updatedBy"),
        "eTag": resource.etag.strip('"'),
    }


def next_version(existing: Resource | None) -> str:
    """``1.0`` on create, then ``1.1``, ``1.2``... on each update (the registry's minor versions)."""
    if existing is None:
        return "1.0"
    major, _, minor = str(existing.doc.get("version", "1.0")).partition(".")
    try:
        return f"{int(major)}.{int(minor or 0) + 1}"
    except ValueError:
        return "1.0"

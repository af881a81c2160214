"""Tenant schemas (``/tenant/schemas``): one class plus field groups, composed with ``allOf``/``$ref``.

The stored document is the composition as the client wrote it (``allOf`` with canonical ``$id``s); the
fully resolved JSON Schema is computed from it on demand by :meth:`SchemaRegistry.resolve`.
"""

from __future__ import annotations

from typing import Any

from headwater.errors import ValidationFailed
from headwater.services.ids import new_hex
from headwater.services.resources import Built
from headwater.services.schemas.base import XedCollection, check_header, next_version
from headwater.services.schemas.fieldgroups import alt_id
from headwater.services.schemas.xdm import TENANT_CONTAINER
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

CODE = "SCHEMA-1400-400"


class TenantSchemas(XedCollection):
    kind = "schema"
    label = "schema"

    def new_ident(self, actor: Actor) -> str:
        return f"https://ns.adobe.com/{actor.org.tenant_id}/schemas/{new_hex(16)}"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        ident = existing.id if existing else str(body["$id"])
        errors: list[dict[str, str]] = []
        title = check_header(body, errors)
        description = body.get("description", "")
        tags = body.get("meta:immutableTags")
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            errors.append(
                {"path": "meta:immutableTags", "message": 'must be a list of strings, e.g. ["union"]'}
            )
        composition = self.registry.composition(actor, body.get("allOf"), body.get("meta:class"), errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        composed = self.registry.compose(composition)
        if composed.errors:
            raise ValidationFailed(composed.errors, code=CODE)
        assert composition.class_id is not None
        doc: dict[str, Any] = {
            "$id": ident,
            "meta:altId": alt_id(ident),
            "meta:resourceType": "schemas",
            "version": next_version(existing),
            "title": title,
            "description": description,
            "type": "object",
            "allOf": [{"$ref": ref} for ref in composition.extends],
            "meta:xdmType": "object",
            "meta:class": composition.class_id,
            "meta:abstract": False,
            "meta:extensible": False,
            "meta:extends": composition.extends,
            "meta:containerId": TENANT_CONTAINER,
        }
        if tags is not None:
            doc["meta:immutableTags"] = tags
        if existing is not None:
            self.registry.check_schema_change(actor, existing, doc, composed.root)
        refs = [("fieldGroup", ref) for ref in composition.tenant_fieldgroups]
        return Built(doc=doc, refs=refs, name=title, alt_id=doc["meta:altId"])

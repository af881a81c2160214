"""Identity descriptors (``/tenant/descriptors``): which string field of a schema holds an identity, in
which namespace, and which one is the primary identity (at most one per schema).

A descriptor references its schema, so a schema with descriptors cannot be deleted (409), and a schema
change that would remove or retype a descriptor's field is refused.
"""

from __future__ import annotations

from typing import Any

from headwater.engines.xdm_compose import field_at_parts, pointer_parts
from headwater.errors import Conflict, ValidationFailed
from headwater.services.ids import new_hex
from headwater.services.resources import Built, text_field
from headwater.services.schemas.base import HIDDEN, XedCollection
from headwater.services.schemas.xdm import TENANT_CONTAINER
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

IDENTITY = "xdm:descriptorIdentity"
SUPPORTED = (IDENTITY,)
ID_PROPERTIES = ("xdm:code", "xdm:id")
CODE = "SCHEMA-1400-400"


class Descriptors(XedCollection):
    kind = "descriptor"
    label = "descriptor"

    def new_ident(self, actor: Actor) -> str:
        return new_hex(20)

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        ident = existing.id if existing else str(body["$id"])
        if body.get("@type") not in SUPPORTED:
            raise ValidationFailed(
                [
                    {
                        "path": "@type",
                        "message": "must be one of: "
                        + ", ".join(SUPPORTED)
                        + " (the descriptor types Headwater supports)",
                    }
                ],
                code=CODE,
            )
        errors: list[dict[str, str]] = []
        schema = self._schema(actor, body.get("xdm:sourceSchema"), errors)
        version = body.get("xdm:sourceVersion", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            errors.append(
                {
                    "path": "xdm:sourceVersion",
                    "message": "must be a positive integer (the schema's major version, 1)",
                }
            )
        prop = body.get("xdm:sourceProperty")
        if schema is not None:
            self._property(actor, schema, prop, errors)
        namespace = self._namespace(actor, text_field(body, "xdm:namespace", errors), errors)
        id_property = body.get("xdm:property", "xdm:code")
        if id_property not in ID_PROPERTIES:
            errors.append({"path": "xdm:property", "message": "must be one of " + ", ".join(ID_PROPERTIES)})
        primary = body.get("xdm:isPrimary", False)
        if not isinstance(primary, bool):
            errors.append({"path": "xdm:isPrimary", "message": "must be true or false"})
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert schema is not None
        self._unique(actor, schema, ident, str(prop), primary)
        doc = {
            "@id": ident,
            "@type": IDENTITY,
            "xdm:sourceSchema": schema.id,
            "xdm:sourceVersion": version,
            "xdm:sourceProperty": prop,
            "xdm:namespace": namespace,
            "xdm:property": id_property,
            "xdm:isPrimary": primary,
            "meta:containerId": TENANT_CONTAINER,
        }
        return Built(doc=doc, refs=[("schema", schema.id)])

    def _schema(self, actor: Actor, ref: Any, errors: list[dict[str, str]]) -> Resource | None:
        schema = self.registry.get_schema(actor, ref) if isinstance(ref, str) else None
        if schema is None:
            errors.append(
                {
                    "path": "xdm:sourceSchema",
                    "message": f"must be the $id of a schema in this sandbox; {ref!r} is not one",
                }
            )
        return schema

    def _namespace(self, actor: Actor, code: str | None, errors: list[dict[str, str]]) -> str | None:
        """The namespace's own code for ``code`` (compared case-insensitively), or an error."""
        if code is None:
            return None
        found = self.registry.namespaces.resolve(actor, code)
        if found is None:
            errors.append(
                {
                    "path": "xdm:namespace",
                    "message": f"{code!r} is not an identity namespace of this sandbox: use a standard code "
                    "(Email, Phone, ECID, CRMID) or create it with POST /data/core/idnamespace/identities",
                }
            )
            return None
        return str(found["code"])

    def _property(self, actor: Actor, schema: Resource, prop: Any, errors: list[dict[str, str]]) -> None:
        where = "xdm:sourceProperty"
        parts = pointer_parts(prop) if isinstance(prop, str) else None
        if parts is None:
            errors.append(
                {"path": where, "message": "must be a JSON Pointer to a field, e.g. /personalEmail/address"}
            )
            return
        node = field_at_parts(self.registry.compose_stored(actor, schema.doc).root, parts)
        if node is None:
            errors.append({"path": where, "message": f"{prop} is not a field of schema {schema.id}"})
        elif node.get("type") != "string":
            errors.append(
                {
                    "path": where,
                    "message": f"{prop} is a {node.get('type')} field; an identity must be a string field",
                }
            )

    def _unique(self, actor: Actor, schema: Resource, ident: str, prop: str, primary: bool) -> None:
        others = [d for d in self.registry.descriptors_of(actor, schema.id) if d.get("@id") != ident]
        if primary and any(d.get("xdm:isPrimary") for d in others):
            current = next(d for d in others if d.get("xdm:isPrimary"))
            raise Conflict(
                f"Schema {schema.id} already has a primary identity ({current.get('xdm:sourceProperty')}, "
                f"descriptor {current.get('@id')}); a schema has at most one. Set xdm:isPrimary false or "
                "change that descriptor first.",
                code="SCHEMA-1409-409",
                report={"existing": current.get("@id"), "path": "xdm:isPrimary"},
            )
        clash = next((d for d in others if d.get("xdm:sourceProperty") == prop), None)
        if clash is not None:
            raise Conflict(
                f"Field {prop} of schema {schema.id} already has identity descriptor {clash.get('@id')}; "
                "update that one instead.",
                code="SCHEMA-1410-409",
                report={"existing": clash.get("@id"), "path": "xdm:sourceProperty"},
            )

    def render(self, resource: Resource) -> dict[str, Any]:
        return {k: v for k, v in resource.doc.items() if k not in HIDDEN}

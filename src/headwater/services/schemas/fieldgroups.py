"""Tenant field groups (``/tenant/fieldgroups``, alias ``/tenant/mixins``).

A tenant field group puts every field under the tenant namespace ``_{tenantId}`` so that it can never
collide with a standard XDM field. Changing one that a dataset-backed schema uses is checked against
every such schema (see :meth:`SchemaRegistry.check_fieldgroup_change`).
"""

from __future__ import annotations

from typing import Any

from headwater.engines.xdm_compose import Composer
from headwater.errors import ValidationFailed
from headwater.services.ids import new_hex
from headwater.services.resources import Built
from headwater.services.schemas.base import XedCollection, check_header, next_version
from headwater.services.schemas.fields import check_json_schema, check_properties
from headwater.services.schemas.xdm import TENANT_CONTAINER
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

CODE = "SCHEMA-1400-400"


class TenantFieldGroups(XedCollection):
    kind = "fieldGroup"
    label = "field group"

    def new_ident(self, actor: Actor) -> str:
        return f"https://ns.adobe.com/{actor.org.tenant_id}/mixins/{new_hex(16)}"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        ident = existing.id if existing else str(body["$id"])
        errors: list[dict[str, str]] = []
        title = check_header(body, errors)
        description = body.get("description", "")
        extends = self._intended(body.get("meta:intendedToExtend"), errors)
        definitions = self._definitions(actor, body.get("definitions"), errors)
        all_of = self._all_of(body.get("allOf"), definitions, errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        doc: dict[str, Any] = {
            "$id": ident,
            "meta:altId": alt_id(ident),
            "meta:resourceType": "mixins",
            "version": next_version(existing),
            "title": title,
            "type": "object",
            "description": description,
            "definitions": definitions,
            "allOf": all_of,
            "meta:intendedToExtend": extends,
            "meta:abstract": True,
            "meta:extensible": True,
            "meta:xdmType": "object",
            "meta:containerId": TENANT_CONTAINER,
            "meta:tenantNamespace": self.registry.tenant_namespace(actor),
        }
        composer = Composer()
        composer.add(doc, f"field group {title!r}")
        if composer.errors:
            raise ValidationFailed(composer.errors, code=CODE)
        if existing is not None:
            self.registry.check_fieldgroup_change(actor, existing, doc)
        return Built(doc=doc, name=title, alt_id=doc["meta:altId"])

    def _intended(self, value: Any, errors: list[dict[str, str]]) -> list[str]:
        where = "meta:intendedToExtend"
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            errors.append(
                {
                    "path": where,
                    "message": "is required: the $id of the class(es) this field group "
                    'extends, e.g. ["https://ns.adobe.com/xdm/context/profile"]',
                }
            )
            return []
        out: list[str] = []
        for index, ref in enumerate(value):
            found = self.registry.catalog.get_class(ref) if isinstance(ref, str) else None
            if found is None:
                errors.append({"path": f"{where}[{index}]", "message": f"{ref!r} is not a known class"})
            elif found["$id"] not in out:
                out.append(found["$id"])
        return out

    def _definitions(self, actor: Actor, value: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
        namespace = self.registry.tenant_namespace(actor)
        if not isinstance(value, dict) or not value:
            errors.append(
                {
                    "path": "definitions",
                    "message": "is required: an object of named definitions, "
                    f"each with properties under {namespace}",
                }
            )
            return {}
        out: dict[str, Any] = {}
        for name, definition in value.items():
            where = f"definitions.{name}"
            if not isinstance(definition, dict):
                errors.append({"path": where, "message": "must be an object with properties"})
                continue
            props = definition.get("properties")
            for field in props if isinstance(props, dict) else {}:
                if field != namespace:
                    errors.append(
                        {
                            "path": f"{where}.properties.{field}",
                            "message": f"must be nested under "
                            f"{namespace}: a tenant field group keeps its fields in the tenant namespace, "
                            f"e.g. {namespace}.{field}",
                        }
                    )
            checked = check_properties(props, f"{where}.properties", errors)
            out[name] = {**definition, "type": "object", "properties": checked}
            check_json_schema(out[name], where, errors)
        return out

    @staticmethod
    def _all_of(
        value: Any, definitions: dict[str, Any], errors: list[dict[str, str]]
    ) -> list[dict[str, str]]:
        if value is None:
            return [{"$ref": f"#/definitions/{name}"} for name in definitions]
        if not isinstance(value, list):
            errors.append({"path": "allOf", "message": 'must be a list of {"$ref": "#/definitions/NAME"}'})
            return []
        out: list[dict[str, str]] = []
        for index, entry in enumerate(value):
            ref = entry.get("$ref") if isinstance(entry, dict) else None
            if (
                not isinstance(ref, str)
                or not ref.startswith("#/definitions/")
                or ref.removeprefix("#/definitions/") not in definitions
            ):
                errors.append(
                    {
                        "path": f"allOf[{index}].$ref",
                        "message": "must point at one of this field group's definitions (#/definitions/NAME)",
                    }
                )
            else:
                out.append({"$ref": ref})
        return out


def alt_id(ident: str) -> str:
    """``https://ns.adobe.com/acme/mixins/abc`` -> ``_acme.mixins.abc``."""
    tenant, kind, hexid = ident.rstrip("/").split("/")[-3:]
    return f"_{tenant}.{kind}.{hexid}"

"""The Schema Registry: global classes and field groups, tenant field groups, schemas and descriptors.

Other services use four calls: :meth:`SchemaRegistry.get_schema`, :meth:`SchemaRegistry.resolve` (the
fully resolved JSON Schema data is validated against), :func:`leaf_paths` / :func:`field_at` (paths in
a resolved schema) and :meth:`SchemaRegistry.tenant_namespace`.

Evolution rule: once a dataset references a schema, the schema and every tenant field group it uses
accept only additive changes (:mod:`headwater.services.schemas.evolution`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.engines import xdm_compose as compose
from headwater.engines.xdm_compose import Composer, field_at_parts, pointer_parts, require_path
from headwater.errors import ValidationFailed
from headwater.services.schemas.descriptors import Descriptors
from headwater.services.schemas.evolution import incompatible_changes
from headwater.services.schemas.fieldgroups import TenantFieldGroups
from headwater.services.schemas.tenantschemas import TenantSchemas
from headwater.services.schemas.xdm import GlobalCatalog, global_catalog
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource

if TYPE_CHECKING:
    from headwater.services.identity_namespaces import NamespaceLookup

EVOLUTION_CODE = "SCHEMA-1422-400"
# Keys of a stored schema copied to its resolved form.
_HEADER = (
    "$id",
    "meta:altId",
    "meta:resourceType",
    "version",
    "title",
    "type",
    "description",
    "meta:class",
    "meta:abstract",
    "meta:extensible",
    "meta:extends",
    "meta:containerId",
    "meta:immutableTags",
    "meta:intendedToExtend",
    "meta:tenantNamespace",
    "meta:xdmType",
)


@dataclass
class Composition:
    """What a schema's ``allOf`` names, checked: its class, its field groups and their documents."""

    class_id: str | None = None
    extends: list[str] = field(default_factory=list)  # class first, then field groups, canonical $ids
    tenant_fieldgroups: list[str] = field(default_factory=list)
    parts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (label, xed document)


class SchemaRegistry:
    def __init__(self, store: MetadataStore, namespaces: NamespaceLookup) -> None:
        self.store = store
        self.namespaces = namespaces  # identity descriptors name one (xdm:namespace)
        self.catalog: GlobalCatalog = global_catalog()
        self.fieldgroups = TenantFieldGroups(self)
        self.schemas = TenantSchemas(self)
        self.descriptors = Descriptors(self)

    # --- the helpers other services call ---
    @staticmethod
    def tenant_namespace(actor: Actor) -> str:
        return "_" + actor.org.tenant_id

    def get_schema(self, actor: Actor, schema_id: str) -> Resource | None:
        """The tenant schema named by ``$id`` or ``meta:altId`` in the actor's sandbox, or None."""
        return self.schemas.find(actor, schema_id)

    def resolve(self, actor: Actor, schema_id: str) -> dict[str, Any]:
        """The fully resolved JSON Schema of a tenant schema: merged ``properties``, ``required``, no $refs.

        The primary identity field (and the objects above it) are required. NotFound (SCHEMA-1404-404)
        if the schema is not in the actor's sandbox.
        """
        schema = self.get_schema(actor, schema_id)
        if schema is None:
            raise self.schemas.not_found(schema_id)
        return self.resolved(actor, schema)

    leaf_paths = staticmethod(compose.leaf_paths)
    field_at = staticmethod(compose.field_at)
    closed = staticmethod(compose.closed)

    def identities(self, actor: Actor, schema_id: str) -> list[dict[str, Any]]:
        """A schema's identity descriptors (``xdm:sourceProperty``, ``xdm:namespace``, ``xdm:isPrimary``)."""
        schema = self.get_schema(actor, schema_id)
        return self.descriptors_of(actor, schema.id) if schema else []

    def has_dataset(self, actor: Actor, schema_id: str) -> bool:
        return any(kind == "dataSet" for kind, _ in self.store.referrers(actor.scope, "schema", schema_id))

    # --- resolution ---
    def resolved(self, actor: Actor, schema: Resource) -> dict[str, Any]:
        composer = self.compose_stored(actor, schema.doc)
        root = composer.root
        for descriptor in self.descriptors_of(actor, schema.id):
            parts = pointer_parts(str(descriptor.get("xdm:sourceProperty", "")))
            if descriptor.get("xdm:isPrimary") and parts:
                require_path(root, parts)
        return header(schema.doc, root)

    @staticmethod
    def resolve_part(doc: dict[str, Any]) -> dict[str, Any]:
        """A class or field group on its own, resolved (``xed-full``)."""
        composer = Composer()
        composer.add(doc, str(doc.get("title")))
        return header(doc, composer.root)

    def compose_stored(
        self, actor: Actor, doc: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None
    ) -> Composer:
        errors: list[dict[str, str]] = []
        composition = self.composition(actor, doc.get("allOf"), doc.get("meta:class"), errors, overrides)
        composer = self.compose(composition)
        composer.errors[:0] = errors
        return composer

    def compose(self, composition: Composition) -> Composer:
        composer = Composer()
        for label, part in composition.parts:
            composer.add(part, label)
        return composer

    def composition(
        self,
        actor: Actor,
        all_of: Any,
        meta_class: Any,
        errors: list[dict[str, str]],
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> Composition:
        """Check a schema's ``allOf`` (and ``meta:class``): one class, known field groups intended for it."""
        result = Composition()
        if not isinstance(all_of, list) or not all_of:
            errors.append(
                {
                    "path": "allOf",
                    "message": 'is required: a list of {"$ref": "<$id of a class or '
                    'field group>"}, the class first',
                }
            )
            all_of = []
        groups: list[tuple[str, str, dict[str, Any]]] = []
        for index, entry in enumerate(all_of):
            where = f"allOf[{index}].$ref"
            ref = entry.get("$ref") if isinstance(entry, dict) else None
            if not isinstance(ref, str) or not ref:
                errors.append(
                    {
                        "path": f"allOf[{index}]",
                        "message": 'must be {"$ref": "<$id of a class or field group>"}',
                    }
                )
                continue
            found = self.lookup(actor, ref, overrides)
            if found is None:
                errors.append(
                    {
                        "path": where,
                        "message": f"{ref!r} is neither a class, a global field group nor "
                        "a field group of this sandbox",
                    }
                )
            elif found[0] == "class":
                self._set_class(result, found[1], found[2], where, errors)
            elif found[1] not in [g[0] for g in groups]:
                groups.append((found[1], where, found[2]))
                if found[0] == "tenant":
                    result.tenant_fieldgroups.append(found[1])
        self._meta_class(actor, result, meta_class, errors)
        for canonical, where, doc in groups:
            intended = doc.get("meta:intendedToExtend") or []
            if result.class_id and result.class_id not in intended:
                errors.append(
                    {
                        "path": where,
                        "message": f"field group {canonical} is intended to extend "
                        f"{', '.join(intended) or 'no class'}, not {result.class_id}",
                    }
                )
            result.extends.append(canonical)
            result.parts.append((f"field group {doc.get('title')!r} ({canonical})", doc))
        return result

    def _set_class(
        self,
        result: Composition,
        canonical: str,
        doc: dict[str, Any],
        where: str,
        errors: list[dict[str, str]],
    ) -> None:
        if result.class_id is not None and result.class_id != canonical:
            errors.append(
                {
                    "path": where,
                    "message": f"is a second class ({canonical}); a schema has exactly one "
                    f"class and this one already has {result.class_id}",
                }
            )
            return
        if result.class_id is None:
            result.class_id = canonical
            result.extends.insert(0, canonical)
            result.parts.insert(0, (f"class {doc.get('title')!r} ({canonical})", doc))

    def _meta_class(
        self, actor: Actor, result: Composition, meta_class: Any, errors: list[dict[str, str]]
    ) -> None:
        if meta_class is None:
            if result.class_id is None:
                errors.append(
                    {
                        "path": "allOf",
                        "message": "must reference exactly one class, e.g. "
                        '{"$ref": "https://ns.adobe.com/xdm/context/profile"}',
                    }
                )
            return
        found = self.lookup(actor, meta_class, None) if isinstance(meta_class, str) else None
        if found is None or found[0] != "class":
            errors.append({"path": "meta:class", "message": f"{meta_class!r} is not a class"})
        elif result.class_id is None:
            self._set_class(result, found[1], found[2], "meta:class", errors)
        elif found[1] != result.class_id:
            errors.append(
                {
                    "path": "meta:class",
                    "message": f"is {found[1]} but the class in allOf is {result.class_id}",
                }
            )

    def lookup(
        self, actor: Actor, ref: str, overrides: dict[str, dict[str, Any]] | None
    ) -> tuple[str, str, dict[str, Any]] | None:
        """("class" | "global" | "tenant", canonical $id, document) of what ``ref`` names, or None."""
        canonical = self.catalog.canonical(ref)
        if canonical is not None:
            if canonical in self.catalog.classes:
                return "class", canonical, self.catalog.classes[canonical]
            return "global", canonical, self.catalog.fieldgroups[canonical]
        found = self.fieldgroups.find(actor, ref)
        if found is None:
            return None
        return "tenant", found.id, (overrides or {}).get(found.id, found.doc)

    # --- descriptors ---
    def descriptors_of(self, actor: Actor, schema_id: str) -> list[dict[str, Any]]:
        ids = [
            i for kind, i in self.store.referrers(actor.scope, "schema", schema_id) if kind == "descriptor"
        ]
        found = self.store.get_many("descriptor", actor.scope, ids)
        return [self.descriptors.render(found[i]) for i in ids if i in found]

    # --- evolution ---
    def check_schema_change(
        self, actor: Actor, existing: Resource, doc: dict[str, Any], new_root: dict[str, Any]
    ) -> None:
        """Refuse a change that breaks a descriptor, or a non-additive change to a dataset's schema."""
        errors = []
        for descriptor in self.descriptors_of(actor, existing.id):
            pointer = str(descriptor.get("xdm:sourceProperty", ""))
            node = field_at_parts(new_root, pointer_parts(pointer) or [])
            if node is None or node.get("type") != "string":
                errors.append(
                    {
                        "path": pointer.strip("/").replace("/", "."),
                        "message": "is the identity field "
                        f"of descriptor {descriptor.get('@id')}; delete that descriptor first",
                    }
                )
        if errors:
            raise ValidationFailed(errors, code="SCHEMA-1423-400")
        if not self.has_dataset(actor, existing.id):
            return
        old = existing.doc
        errors = incompatible_changes(self.compose_stored(actor, old).root, new_root)
        if doc.get("meta:class") != old.get("meta:class"):
            errors.insert(
                0,
                {
                    "path": "meta:class",
                    "message": f"changed from {old.get('meta:class')}: the class "
                    "of a schema used by a dataset cannot change",
                },
            )
        for removed in [g for g in old.get("meta:extends", []) if g not in doc.get("meta:extends", [])]:
            errors.append(
                {
                    "path": "allOf",
                    "message": f"field group {removed} removed: a schema used by a "
                    "dataset can only gain field groups",
                }
            )
        if errors:
            raise ValidationFailed(
                errors,
                code=EVOLUTION_CODE,
                detail=f"Schema {existing.id} is used by a dataset, so only additive changes (new optional "
                f"fields or field groups) are allowed; {len(errors)} incompatible change(s), listed in "
                "report.errors. Nothing was changed.",
            )

    def check_fieldgroup_change(self, actor: Actor, existing: Resource, doc: dict[str, Any]) -> None:
        """Check a field group change against every schema that uses it (composition and evolution)."""
        errors: list[dict[str, str]] = []
        for kind, schema_id in self.store.referrers(actor.scope, "fieldGroup", existing.id):
            schema = self.store.get("schema", actor.scope, schema_id) if kind == "schema" else None
            if schema is None:
                continue
            composed = self.compose_stored(actor, schema.doc, {existing.id: doc})
            problems = composed.errors
            if not problems:
                try:
                    self.check_schema_change(actor, schema, schema.doc, composed.root)
                except ValidationFailed as exc:
                    problems = exc.errors
            errors += [
                {"path": p["path"], "message": f"{p['message']} (in schema {schema_id})"} for p in problems
            ]
        if errors:
            raise ValidationFailed(
                errors,
                code=EVOLUTION_CODE,
                detail=f"This change to field group {existing.id} would break {len(errors)} field(s) of "
                "schemas that use it (listed in report.errors). Nothing was changed.",
            )


def header(doc: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc[k] for k in _HEADER if k in doc}
    out["type"] = "object"
    out["properties"] = root.get("properties", {})
    if root.get("required"):
        out["required"] = root["required"]
    return out

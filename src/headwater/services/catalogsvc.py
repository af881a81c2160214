"""Catalog: datasets (``/dataSets``), each bound to one tenant schema for its whole life.

A dataset references its schema (so the schema cannot be deleted, and from then on only evolves
additively), and target connections reference datasets (so a dataset in use cannot be deleted).

Seam for the lake: each dataset will own one Apache Iceberg table. The lake registers itself with
:meth:`DataSets.on_created` / :meth:`DataSets.on_deleted`; the hooks run after the metadata commit, in
the request's thread. ``tags["adobe/pqs/table"]`` holds the dataset's table name, unique in its sandbox.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from headwater.errors import BadRequest, PreconditionFailed, ValidationFailed
from headwater.services import jsonpatch, listing
from headwater.services.ids import etag_matches, new_hex
from headwater.services.resources import Built, Collection, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource, Scope

if TYPE_CHECKING:
    from headwater.services.schemas import SchemaRegistry
    from headwater.settings import Settings

CODE = "CAT-1400-400"
TABLE_TAG = "adobe/pqs/table"
DEFAULT_CONTENT_TYPE = "application/vnd.adobe.xed-full+json;version=1"
EDITABLE = ("name", "description", "tags", "fileDescription")
# What GET returns and a client may send back unchanged: silently ignored on PATCH.
_RENDERED = frozenset(
    {
        "id",
        "imsOrg",
        "sandboxId",
        "version",
        "created",
        "updated",
        "createdClient",
        "createdUser",
        "updatedUser",
        "viewId",
        "status",
        "files",
        "schemaRef",
        "state",
    }
)
DEFAULT_LIMIT, MAX_LIMIT = 50, 100
_ORDER_FIELDS = {"created": "created", "updated": "updated", "name": "name"}
Hook = Callable[[Actor, Resource], None]


class DataSets(Collection):
    kind = "dataSet"
    label = "dataset"
    service = "CAT"

    def __init__(self, store: MetadataStore, settings: Settings, schemas: SchemaRegistry) -> None:
        super().__init__(store)
        self.settings = settings
        self.schemas = schemas
        self._created_hooks: list[Hook] = []
        self._deleted_hooks: list[Hook] = []

    def on_created(self, hook: Hook) -> None:
        self._created_hooks.append(hook)

    def on_deleted(self, hook: Hook) -> None:
        self._deleted_hooks.append(hook)

    def new_id(self) -> str:
        return new_hex(12)

    # --- life cycle ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        resource = super().create(actor, body, ident)
        for hook in self._created_hooks:
            hook(actor, resource)
        return resource

    def update(self, actor: Actor, ident: str, body: Any, if_match: str | None) -> Resource:
        """PATCH: a JSON object merged into name/description/tags/fileDescription, or a JSON Patch."""
        current = self.get(actor, ident)
        if if_match and not etag_matches(if_match, current.etag):
            raise PreconditionFailed(
                "The If-Match etag is not the current one; GET the dataset again.",
                code="CAT-1412-412",
                report={"currentEtag": current.etag},
            )
        editable = {k: current.doc[k] for k in (*EDITABLE, "schemaRef") if k in current.doc}
        if isinstance(body, list):
            try:
                merged = jsonpatch.apply(editable, body, service="CAT")
            except ValidationFailed as exc:
                raise ValidationFailed(exc.errors, code="CAT-1410-400") from exc
        elif isinstance(body, dict):
            unknown = [k for k in body if k not in EDITABLE and k not in _RENDERED]
            if unknown:
                raise ValidationFailed(
                    [
                        {
                            "path": k,
                            "message": "cannot be changed; updatable fields are " + ", ".join(EDITABLE),
                        }
                        for k in unknown
                    ],
                    code=CODE,
                )
            merged = {**editable, **{k: v for k, v in body.items() if k in EDITABLE or k == "schemaRef"}}
        else:
            raise ValidationFailed(
                [{"path": "(body)", "message": "must be a JSON object of fields to change"}], code=CODE
            )
        return self.replace(actor, current, merged)

    def delete(self, actor: Actor, ident: str) -> None:
        """Delete a dataset with its batches (its history goes with it); a dataset a flow still writes to
        (through a target connection) is refused with 409, and then nothing is deleted."""
        resource = self.get(actor, ident)
        referrers = self.store.referrers(actor.scope, self.kind, ident)
        if all(kind == "batch" for kind, _ in referrers):
            from headwater.stores.rowerrors import RowErrorFiles

            row_errors = RowErrorFiles.of(self.settings)
            for _, batch_id in referrers:
                self.store.delete("batch", actor.scope, batch_id)
                with contextlib.suppress(OSError):  # a store down leaves a file nobody lists
                    row_errors.remove(batch_id)
        super().delete(actor, ident)
        for hook in self._deleted_hooks:
            hook(actor, resource)

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        description = body.get("description", "")
        if not isinstance(description, str):
            errors.append({"path": "description", "message": "must be a string"})
        tags = _tags(body.get("tags", {}), errors)
        file_description = body.get(
            "fileDescription", {"persisted": True, "containerFormat": "parquet", "format": "parquet"}
        )
        if not isinstance(file_description, dict):
            errors.append({"path": "fileDescription", "message": "must be an object"})
        schema_ref = self._schema_ref(actor, body.get("schemaRef"), existing, errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert name is not None and schema_ref is not None
        if TABLE_TAG not in tags:
            tags[TABLE_TAG] = (existing.doc["tags"].get(TABLE_TAG) if existing else None) or [
                self._table_name(actor, name)
            ]
        doc = {
            "name": name,
            "description": description,
            "tags": tags,
            "schemaRef": schema_ref,
            "fileDescription": file_description,
            "viewId": existing.doc["viewId"] if existing else new_hex(12),
            "dataBehavior": self._behaviour(actor.scope, schema_ref["id"]),
        }
        return Built(doc=doc, refs=[("schema", schema_ref["id"])], name=name)

    def _schema_ref(
        self, actor: Actor, value: Any, existing: Resource | None, errors: list[dict[str, str]]
    ) -> dict[str, str] | None:
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"]:
            errors.append({"path": "schemaRef.id", "message": "is required: the $id of the dataset's schema"})
            return None
        content_type = value.get("contentType", DEFAULT_CONTENT_TYPE)
        if not isinstance(content_type, str):
            errors.append({"path": "schemaRef.contentType", "message": "must be a string"})
            return None
        schema = self.schemas.get_schema(actor, value["id"])
        if schema is None:
            errors.append(
                {"path": "schemaRef.id", "message": f"{value['id']!r} is not a schema in this sandbox"}
            )
            return None
        if existing is not None and schema.id != existing.doc["schemaRef"]["id"]:
            errors.append(
                {
                    "path": "schemaRef.id",
                    "message": "cannot change: a dataset keeps the schema it was "
                    "created with; create another dataset instead",
                }
            )
            return None
        return {"id": schema.id, "contentType": content_type}

    def _table_name(self, actor: Actor, name: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "dataset"
        taken = {
            t for r in self.store.list(self.kind, actor.scope).items for t in r.doc["tags"].get(TABLE_TAG, [])
        }
        candidate, n = base, 0
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        return candidate

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        return {
            "id": resource.id,
            "name": d["name"],
            "description": d.get("description", ""),
            "imsOrg": d.get("imsOrgId"),
            "sandboxId": d.get("sandboxId"),
            "tags": d.get("tags", {}),
            "version": "1.0.0",
            "created": resource.created_at,
            "updated": resource.updated_at,
            "createdClient": d.get("createdClient"),
            "createdUser": d.get("createdBy"),
            "updatedUser": d.get("updatedBy"),
            "viewId": d.get("viewId"),
            "status": "enabled",
            "fileDescription": d.get("fileDescription", {}),
            "files": f"@/dataSetFiles?dataSetId={resource.id}",
            "schemaRef": d["schemaRef"],
            "classification": self.classification(resource),
        }

    def classification(self, resource: Resource) -> dict[str, str]:
        """As the platform classifies a dataset: ``dataBehavior`` is its schema's class's
        ``meta:behaviorType`` (``record`` or ``time-series``), ``managedBy`` is ``CUSTOMER``. It is kept
        with the dataset when saved; a dataset saved before that looks it up."""
        behaviour = resource.doc.get("dataBehavior") or self._behaviour(
            resource.scope, str(resource.doc["schemaRef"].get("id", ""))
        )
        return {"dataBehavior": behaviour, "managedBy": "CUSTOMER"}

    def _behaviour(self, scope: Scope, schema_id: str) -> str:
        coll = self.schemas.schemas
        schema = coll.store.get(coll.kind, scope, schema_id)
        cls = self.schemas.catalog.get_class(str(schema.doc.get("meta:class", ""))) if schema else None
        return (
            "time-series" if cls is not None and cls.get("meta:behaviorType") == "time-series" else "record"
        )

    def get_many(self, actor: Actor, idents: Iterable[str]) -> list[Resource]:
        wanted = [i for i in idents if i]
        found = self.store.get_many(self.kind, actor.scope, wanted)
        if not found:
            raise self.not_found(",".join(wanted))
        return [found[i] for i in wanted if i in found]

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
        """``GET /dataSets``: Catalog's limit/start/orderBy/properties, plus ``name=`` style filters.

        Returns Catalog's map of id -> dataset, in the requested order.
        """
        limit, start, order, descending = DEFAULT_LIMIT, 0, "created", False
        properties: list[str] | None = None
        filters: list[listing.Filter] = []
        for key, value in params:
            if key == "limit":
                limit = min(listing.int_param(key, value, 1, 10**9, "CAT"), MAX_LIMIT)
            elif key == "start":
                start = listing.int_param(key, value, 0, 10**9, "CAT")
            elif key.lower() == "orderby":
                order, descending = _order(value)
            elif key == "properties":
                properties = [p.strip() for p in value.split(",") if p.strip()]
            elif key == "property":
                filters.append(listing.parse_filter(value, "CAT"))
            elif key not in ("requestDataSource", "count"):
                filters.append(listing.parse_filter(f"{key}=={value}", "CAT"))
        docs = [self.render(r) for r in self.store.list(self.kind, actor.scope).items]
        docs = [d for d in docs if all(f.matches(d) for f in filters)]
        # Ties keep insertion order, reversed with the rest on descending orders.
        ranked = sorted(enumerate(docs), key=lambda p: (_sort_value(p[1], order), p[0]), reverse=descending)
        docs = [d for _, d in ranked]
        return {d["id"]: project(d, properties) for d in docs[start : start + limit]}


def project(doc: dict[str, Any], properties: list[str] | None) -> dict[str, Any]:
    if not properties:
        return doc
    return {k: doc[k] for k in properties if k in doc}


def _tags(value: Any, errors: list[dict[str, str]]) -> dict[str, list[str]]:
    ok = isinstance(value, dict) and all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in value.values()
    )
    if not ok:
        errors.append(
            {
                "path": "tags",
                "message": "must be an object of tag name -> list of strings, e.g. "
                '{"unifiedProfile": ["enabled:true"]}',
            }
        )
        return {}
    return {k: list(v) for k, v in value.items()}


def _order(value: str) -> tuple[str, bool]:
    direction, _, field = value.strip().rpartition(":")
    field = field.strip()
    descending = direction.lower() == "desc" or field.startswith("-")
    field = field.lstrip("+-")
    if direction.lower() not in ("", "asc", "desc") or not field:
        raise BadRequest(
            "orderBy must look like desc:created, asc:name or name.",
            code="CAT-1403-400",
            report={"parameter": "orderBy"},
        )
    return _ORDER_FIELDS.get(field, field), descending


def _sort_value(doc: dict[str, Any], field: str) -> tuple[int, Any]:
    value: Any = doc
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return (2, "")
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (1, str(value).lower())

"""Conversion (Data Prep): mapping sets from source attributes, constants or expressions to the fields
of an output schema.

Three request shapes are accepted, all stored the same way: the legacy one (``xdmSchema``,
``mappings[{sourceAttribute, destinationXdmPath}]``), ``outputSchema.schemaRef.id`` with the same
mappings, and Data Prep's (``mappings[{sourceType, source, destination}]``). Every destination must be a
field of the fully resolved output schema. Expressions are stored as written; executing them is the
runtime's job. Each PUT makes a new version; earlier versions stay readable (``?version=N``) because
flows and runs name the version they use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from headwater.engines.mapping.engine import CODE, SOURCE_TYPES
from headwater.errors import BadRequest, ValidationFailed
from headwater.services import listing
from headwater.services.ids import new_hex, now_ms
from headwater.services.resources import Built, Collection, require_object
from headwater.services.schemas import SchemaRegistry, field_at
from headwater.services.tenancy import Actor
from headwater.stores.metadata import AlreadyExists, MetadataStore, Resource

if TYPE_CHECKING:
    from headwater.services.identity_namespaces import NamespaceLookup

# A namespace code -> the namespace (the API's rendering), or None when the sandbox has no such namespace.
Namespaces = Callable[[str], dict[str, Any] | None]

HISTORY_KIND = "mappingSetVersion"
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
_ORDER = {
    "createdDate": "createdDate",
    "updatedDate": "modifiedDate",
    "modifiedDate": "modifiedDate",
    "name": "name",
}


class MappingSets(Collection):
    kind = "mappingSet"
    label = "mapping set"
    service = "CONV"

    def __init__(self, store: MetadataStore, schemas: SchemaRegistry, namespaces: NamespaceLookup) -> None:
        super().__init__(store)
        self.schemas = schemas
        self.namespaces = namespaces

    def new_id(self) -> str:
        return new_hex(16)

    # --- life cycle ---
    def get(self, actor: Actor, ident: str, version: int | None = None) -> Resource:
        """The mapping set (or one of its earlier versions). NotFound CONV-1404-404 if absent."""
        current = super().get(actor, ident)
        if version is None or version == current.doc.get("version"):
            return current
        old = self.store.get(HISTORY_KIND, actor.scope, _history_id(current.id, version))
        if old is None:
            raise self.not_found(f"{ident} (version {version})")
        return old

    def put(self, actor: Actor, ident: str, body: Any, if_match: str | None) -> Resource:
        """Replace the mappings, making a new version; the previous one stays readable."""
        current = super().get(actor, ident)
        self.check_if_match(current, if_match)
        updated = self.replace(actor, current, require_object(body))
        history = Resource(
            kind=HISTORY_KIND,
            id=_history_id(current.id, current.doc["version"]),
            scope=current.scope,
            doc=current.doc,
            etag=current.etag,
            created_at=current.created_at,
            updated_at=current.updated_at,
        )
        with contextlib.suppress(AlreadyExists):  # a concurrent PUT recorded this version already
            self.store.insert(history)
        return updated

    def delete(self, actor: Actor, ident: str) -> None:
        current = super().get(actor, ident)
        super().delete(actor, ident)
        for version in range(int(current.doc.get("version", 0))):
            self.store.delete(HISTORY_KIND, actor.scope, _history_id(ident, version))

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        output = self._output(actor, body, errors)
        input_ref = _input(body.get("inputSchema"), errors)
        name, description = _optional_text(body, "name", errors), _optional_text(body, "description", errors)
        xdm_version = body.get("xdmVersion", "1.0")
        if not isinstance(xdm_version, str):
            errors.append({"path": "xdmVersion", "message": 'must be a string such as "1.0"'})
        version = int(existing.doc["version"]) + 1 if existing else 0
        mappings: list[dict[str, Any]] = []
        if output is not None:
            resolved = self.schemas.resolve(actor, output["id"])
            known = lambda code: self.namespaces.resolve(actor, code)  # noqa: E731
            mappings = parse_mappings(body.get("mappings"), resolved, output["id"], version, errors, known)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert output is not None
        doc: dict[str, Any] = {
            "version": version,
            "inputSchemaRef": input_ref,
            "outputSchemaRef": output,
            "mappings": mappings,
            "status": "PUBLISHED",
            "xdmVersion": xdm_version,
        }
        if name is not None:
            doc["name"] = name
        if description is not None:
            doc["description"] = description
        return Built(doc=doc, refs=[("schema", output["id"])], name=name)

    def _output(
        self, actor: Actor, body: dict[str, Any], errors: list[dict[str, str]]
    ) -> dict[str, str] | None:
        legacy = body.get("xdmSchema")
        output = body.get("outputSchema")
        ref = output.get("schemaRef") if isinstance(output, dict) else None
        if output is not None and not (isinstance(ref, dict) and isinstance(ref.get("id"), str)):
            errors.append(
                {
                    "path": "outputSchema.schemaRef.id",
                    "message": "is required: the $id of the schema the mappings write to",
                }
            )
            return None
        if legacy is None and output is None:
            errors.append(
                {
                    "path": "xdmSchema",
                    "message": "is required (or outputSchema.schemaRef.id): the $id "
                    "of the schema the mappings write to",
                }
            )
            return None
        if legacy is not None and not isinstance(legacy, str):
            errors.append({"path": "xdmSchema", "message": "must be a schema $id string"})
            return None
        where, schema_id = ("outputSchema.schemaRef.id", ref["id"]) if ref else ("xdmSchema", legacy)
        assert isinstance(schema_id, str)
        schema = self.schemas.get_schema(actor, schema_id)
        if schema is None:
            errors.append({"path": where, "message": f"{schema_id!r} is not a schema in this sandbox"})
            return None
        other = self.schemas.get_schema(actor, legacy) if ref and isinstance(legacy, str) else schema
        if other is None or other.id != schema.id:
            errors.append(
                {"path": "xdmSchema", "message": "differs from outputSchema.schemaRef.id; send one"}
            )
            return None
        content_type = (ref or {}).get("contentType") or body.get("xdmVersion") or "1.0"
        if not isinstance(content_type, str):
            errors.append({"path": f"{where.rsplit('.', 1)[0]}.contentType", "message": "must be a string"})
            return None
        return {"id": schema.id, "contentType": content_type}

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        out: dict[str, Any] = {"id": d.get("id", resource.id)}
        for key in ("name", "description"):
            if key in d:
                out[key] = d[key]
        output = d["outputSchemaRef"]
        out.update(
            {
                "version": d["version"],
                "createdDate": d.get("createdAt", resource.created_at),
                "modifiedDate": d.get("updatedAt", resource.updated_at),
                "createdBy": d.get("createdBy"),
                "modifiedBy": d.get("updatedBy"),
                "inputSchemaRef": d["inputSchemaRef"],
                "outputSchemaRef": output,
                "mappings": [_rendered_mapping(m) for m in d["mappings"]],
                "status": d["status"],
                "xdmVersion": d["xdmVersion"],
                "schemaRef": output,
                "xdmSchema": output["id"],
            }
        )
        return out

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /mappingSets``: limit, start, orderby (createdDate/updatedDate, +/-), name."""
        limit, start, order, descending, name = DEFAULT_LIMIT, 0, "createdDate", False, None
        for key, value in params:
            if key == "limit":
                limit = listing.int_param(key, value, 1, MAX_LIMIT, "CONV")
            elif key == "start":
                start = listing.int_param(key, value, 0, 10**9, "CONV")
            elif key.lower() == "orderby":
                field = value.strip().lstrip("+-")
                if field not in _ORDER:
                    raise BadRequest(
                        "orderby must be createdDate or updatedDate, optionally prefixed by + or -.",
                        code="CONV-1403-400",
                        report={"parameter": "orderby"},
                    )
                order, descending = _ORDER[field], value.strip().startswith("-")
            elif key == "name":
                name = value
        docs = [self.render(r) for r in self.store.list(self.kind, actor.scope).items]
        docs = [d for d in docs if name is None or d.get("name") == name]
        # Ties keep insertion order, reversed with the rest on descending orders.
        ranked = sorted(
            enumerate(docs),
            key=lambda p: (p[1].get(order) is None, p[1].get(order) or 0, p[0]),
            reverse=descending,
        )
        docs = [d for _, d in ranked]
        return {
            "data": docs[start : start + limit],
            "_page": {"count": len(docs), "limit": limit, "start": start},
        }


def parse_mappings(
    value: Any,
    resolved: dict[str, Any],
    schema_id: str,
    version: int,
    errors: list[dict[str, str]],
    namespaces: Namespaces,
) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        errors.append(
            {
                "path": "mappings",
                "message": "is required: a non-empty list of {sourceType, source, destination}",
            }
        )
        return []
    now = now_ms()
    out: list[dict[str, Any]] = []
    destinations: dict[str, int] = {}
    primary_at: int | None = None
    for index, item in enumerate(value):
        mapping = parse_mapping(item, f"mappings[{index}]", resolved, schema_id, errors, namespaces)
        if mapping is None:
            continue
        where = f"mappings[{index}]"
        key, dest = mapping.pop("_destKey"), mapping["destination"]
        if dest in destinations:
            errors.append(
                {
                    "path": f"{where}.{key}",
                    "message": f"{dest!r} is already the destination of "
                    f"mappings[{destinations[dest]}]; map each field once",
                }
            )
        destinations.setdefault(dest, index)
        if mapping["primaryIdentity"]:
            if primary_at is not None:
                errors.append(
                    {
                        "path": f"{where}.primaryIdentity",
                        "message": "only one mapping can be the primary "
                        f"identity (mappings[{primary_at}] already is)",
                    }
                )
            primary_at = index if primary_at is None else primary_at
        out.append(
            {"id": new_hex(16), "version": version, "createdDate": now, "modifiedDate": now, **mapping}
        )
    return out


def _check_expression(text: str, path: str, errors: list[dict[str, str]]) -> None:
    """Refuse an expression that does not parse, at save time rather than at run time.

    The parser is a pure module of the mapping engine (no I/O, no services); importing it here is the
    one place the domain reaches into the runtime package, deliberately.
    """
    from headwater.engines.mapping.evaluate import compile_expression
    from headwater.engines.mapping.expressions import ExpressionError

    try:
        compile_expression(text)
    except ExpressionError as exc:
        errors.append({"path": path, "message": f"expression does not parse: {exc}"})


def parse_mapping(
    item: Any,
    where: str,
    resolved: dict[str, Any],
    schema_id: str,
    errors: list[dict[str, str]],
    namespaces: Namespaces,
) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        errors.append({"path": where, "message": "must be an object with source and destination"})
        return None
    count = len(errors)
    raw_type = item.get("sourceType") or "ATTRIBUTE"
    source_type = SOURCE_TYPES.get(raw_type.lower()) if isinstance(raw_type, str) else None
    if source_type is None:
        errors.append({"path": f"{where}.sourceType", "message": "must be ATTRIBUTE, STATIC or EXPRESSION"})
    source_key, source = _synonym(item, "source", "sourceAttribute", where, errors)
    if source_type == "EXPRESSION" and isinstance(source, str):
        _check_expression(source, f"{where}.{source_key}", errors)
    dest_key, dest = _synonym(item, "destination", "destinationXdmPath", where, errors)
    node = field_at(resolved, dest) if dest is not None else None
    if dest is not None and node is None:
        errors.append(
            {"path": f"{where}.{dest_key}", "message": f"{dest!r} is not a field of schema {schema_id}"}
        )
    identity, primary = item.get("identity", False), item.get("primaryIdentity", False)
    for key, flag in (("identity", identity), ("primaryIdentity", primary)):
        if not isinstance(flag, bool):
            errors.append({"path": f"{where}.{key}", "message": "must be true or false"})
    identity = identity is True or primary is True
    namespace = item.get("namespaceCode")
    if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
        errors.append(
            {"path": f"{where}.namespaceCode", "message": "must be a namespace code such as Email, or null"}
        )
    elif namespace is not None:
        namespace = _namespace_code(namespace, f"{where}.namespaceCode", namespaces, errors)
    elif identity:
        errors.append(
            {
                "path": f"{where}.namespaceCode",
                "message": "is required when identity is true (e.g. Email, Phone, ECID, CRMID)",
            }
        )
    if identity and node is not None and node.get("type") != "string":
        errors.append(
            {"path": f"{where}.{dest_key}", "message": "an identity must be mapped to a string field"}
        )
    if len(errors) > count:
        return None
    mapping: dict[str, Any] = {
        "sourceType": source_type,
        "source": source,
        "destination": dest,
        "identity": identity,
        "primaryIdentity": primary is True,
        "namespaceCode": namespace,
        "identityGroup": item.get("identityGroup"),
        "matchScore": item.get("matchScore", 0.0) if isinstance(item.get("matchScore"), int | float) else 0.0,
        "sourceAttribute": source,
        "destinationXdmPath": dest,
        "_destKey": dest_key,
    }
    for key in ("name", "description"):
        if isinstance(item.get(key), str):
            mapping[key] = item[key]
    return mapping


def _namespace_code(code: str, path: str, namespaces: Namespaces, errors: list[dict[str, str]]) -> str | None:
    """The namespace's own code for ``code`` (codes compare case-insensitively), or an error naming
    ``path`` when the sandbox has no such namespace."""
    found = namespaces(code)
    if found is None:
        errors.append(
            {
                "path": path,
                "message": f"{code!r} is not an identity namespace of this sandbox: use a standard code "
                "(Email, Phone, ECID, CRMID) or create it with POST /data/core/idnamespace/identities",
            }
        )
        return None
    return str(found["code"])


def _synonym(
    item: dict[str, Any], key: str, alias: str, where: str, errors: list[dict[str, str]]
) -> tuple[str, str | None]:
    """The value of ``key`` or its synonym ``alias`` (the key actually used, to name it in errors)."""
    a, b = item.get(key), item.get(alias)
    used = key if a is not None or b is None else alias
    value = a if a is not None else b
    if a is not None and b is not None and a != b:
        errors.append({"path": f"{where}.{alias}", "message": f"differs from {key}; send one of them"})
        return used, None
    if not isinstance(value, str) or not value.strip():
        errors.append({"path": f"{where}.{used}", "message": "is required and must be a non-empty string"})
        return used, None
    return used, value


def _input(value: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
    if value is None:
        return {"id": None, "contentType": None}
    ident = value.get("id") if isinstance(value, dict) else None
    version = value.get("version", value.get("contentType")) if isinstance(value, dict) else None
    if not isinstance(ident, str) or (version is not None and not isinstance(version, str | int)):
        errors.append({"path": "inputSchema", "message": 'must be {"id": "...", "version": "..."}'})
        return {"id": None, "contentType": None}
    return {"id": ident, "contentType": None if version is None else str(version)}


def _optional_text(body: dict[str, Any], key: str, errors: list[dict[str, str]]) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        errors.append({"path": key, "message": "must be a string"})
        return None
    return value


def _history_id(ident: str, version: int) -> str:
    return f"{ident}@{version}"


# How an answer spells an attribute mapping's sourceType: document 002's mapping set answer shows
# "text/x.schema-path" (a request may send ATTRIBUTE or text/x.schema-path; both are stored as ATTRIBUTE).
ATTRIBUTE_RENDERED = "text/x.schema-path"


def _rendered_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    if mapping.get("sourceType") != "ATTRIBUTE":
        return mapping
    return {**mapping, "sourceType": ATTRIBUTE_RENDERED}

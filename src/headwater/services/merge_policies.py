"""Merge policies (``/data/core/ups/config/mergePolicies``): how a profile's fragments are merged.

A policy names its schema class (``schema.name``, only ``_xdm.context.profile`` today), the identity graph
it stitches with (``identityGraph.type``: ``none`` or ``pdg``) and how attributes merge
(``attributeMerge``: ``timestampOrdered``, or ``dataSetPrecedence`` with an ``order`` of datasets of the
sandbox). :mod:`headwater.engines.profile_merge` applies one to fragments.

Rules, as AEP has them:

- at most one default per schema class in a sandbox: making a policy the default makes the previous
  default an ordinary policy (``alt_id`` ``default:<class>`` lets the store enforce it under races);
- at most one policy of a sandbox is active on the edge, and that one cannot be deleted;
- a sandbox always has a default: while none is stored, an *implicit* one (timestampOrdered, pdg, with
  an id derived from the sandbox) is listed and returned; PUT or PATCH on its id stores it.

A dataset named in an ``order`` is referenced: it cannot be deleted while a policy names it (409).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from headwater.errors import Conflict, NotFound, ValidationFailed
from headwater.services import jsonpatch, listing
from headwater.services.resources import SYSTEM_FIELDS, Built, Collection, require_object, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource, Sandbox, Scope

if TYPE_CHECKING:
    from headwater.services.catalogsvc import DataSets

KIND = "mergePolicy"
CODE = "UPS-1400-400"
PROFILE = "_xdm.context.profile"
SCHEMA_CLASSES = (PROFILE,)
GRAPH_TYPES = ("none", "pdg")
TIMESTAMP, PRECEDENCE = "timestampOrdered", "dataSetPrecedence"
MERGE_TYPES = (TIMESTAMP, PRECEDENCE)
IMPLICIT_NAME = "Default Timebased"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
# What GET shows and a client may send back on PUT unchanged: ignored.
_RENDERED = frozenset({"id", "imsOrgId", "sandbox", "version", "updateEpoch"})
_FIELDS = frozenset({"name", "schema", "identityGraph", "attributeMerge", "isActiveOnEdge", "default"})
_ORDER = {"name": "name", "updateEpoch": "updateEpoch", "version": "version", "id": "id"}
_FILTERS = ("default", "isActiveOnEdge", "schema.name", "identityGraph.type", "attributeMerge.type")


class MergePolicies(Collection):
    kind = KIND
    label = "merge policy"
    service = "UPS"

    def __init__(self, store: MetadataStore, datasets: DataSets) -> None:
        super().__init__(store)
        self.datasets = datasets

    # --- what other services call ---
    def default_policy(self, scope: Actor | Scope, schema_class: str = PROFILE) -> dict[str, Any]:
        """The default policy of ``schema_class`` in the sandbox, rendered: the stored one, else the
        implicit one (timestampOrdered attributes, the pdg identity graph). One indexed read given an
        Actor; given a bare Scope, the implicit default also reads the organization's sandboxes (for its
        ``sandbox`` object)."""
        where = scope.scope if isinstance(scope, Actor) else scope
        stored = self.store.get_by_alt_id(self.kind, where, _default_key(schema_class))
        if stored is not None:
            return self.render(stored)
        sandbox = scope.sandbox if isinstance(scope, Actor) else self._sandbox(where)
        return self._implicit(where, sandbox, schema_class)

    # --- the API ---
    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /mergePolicies``: filters (``default``, ``isActiveOnEdge``, ``schema.name``,
        ``identityGraph.type``, ``attributeMerge.type``), ``orderBy`` (``name`` by default, ``-`` for
        descending), ``limit`` (20, at most 100) and ``start`` (an offset). AEP's page shape."""
        limit, start, order, descending = DEFAULT_LIMIT, 0, "name", False
        filters: list[listing.Filter] = []
        for key, value in params:
            if key == "limit":
                limit = listing.int_param(key, value, 1, MAX_LIMIT, "UPS")
            elif key == "start":
                start = listing.int_param(key, value, 0, 10**9, "UPS")
            elif key.lower() == "orderby":
                order, descending = _order(value)
            elif key in _FILTERS:
                filters.append(listing.parse_filter(f"{key}=={value}", "UPS"))
        docs = [d for d in self.all(actor) if all(f.matches(d) for f in filters)]
        ranked = sorted(enumerate(docs), key=lambda p: (_sort_value(p[1], order), p[0]), reverse=descending)
        page = [d for _, d in ranked][start : start + limit]
        more = start + limit < len(docs)
        href = (
            f"@/mergePolicies?start={start + limit}&orderBy={'-' if descending else ''}{order}&limit={limit}"
        )
        return {
            "_page": {"totalCount": len(docs), "pageSize": len(page)},
            "children": page,
            "_links": {"next": {"href": href if more else ""}},
        }

    def all(self, actor: Actor) -> list[dict[str, Any]]:
        """Every policy of the sandbox, the implicit default first while no default is stored."""
        stored = [self.render(r) for r in self.store.list(self.kind, actor.scope).items]
        implicit = [
            self._implicit(actor.scope, actor.sandbox, c)
            for c in SCHEMA_CLASSES
            if not any(d["default"] and d["schema"]["name"] == c for d in stored)
        ]
        return [*implicit, *stored]

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        """One policy (the implicit default too); NotFound (UPS-1404-404) otherwise."""
        return self.render(self._current(actor, ident))

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        body = require_object(body)
        built = self.build(actor, _fields(body), None)  # a refused body changes nothing
        self._make_room(actor, built.doc, None)
        return super().create(actor, _fields(body), ident)

    def put(self, actor: Actor, ident: str, body: Any, if_match: str | None) -> Resource:
        """Replace a policy (AEP needs no If-Match; one that is sent must be current)."""
        current = self._current(actor, ident)
        self.check_if_match(current, if_match)
        return self.replace(actor, current, _fields(require_object(body)))

    def patch(self, actor: Actor, ident: str, operations: Any, if_match: str | None) -> Resource:
        """JSON Patch; AEP's dotted paths (``/identityGraph.type``), a single operation object, and
        ``"true"``/``"false"`` strings for the flags are accepted too."""
        current = self._current(actor, ident)
        self.check_if_match(current, if_match)
        patched = jsonpatch.apply(
            self.editable(current), _aep_patch(operations), frozenset(_RENDERED), service="UPS"
        )
        return self.replace(actor, current, patched)

    def replace(self, actor: Actor, current: Resource, body: dict[str, Any]) -> Resource:
        fields = _fields(body)
        built = self.build(actor, fields, current)
        self._make_room(actor, built.doc, current)
        if self.store.get(self.kind, current.scope, current.id) is None:  # the implicit default, stored
            return super().create(actor, fields, current.id)
        return super().replace(actor, current, fields)

    def delete(self, actor: Actor, ident: str) -> None:
        current = self._current(actor, ident)
        if current.doc.get("isActiveOnEdge"):
            raise Conflict(
                "A merge policy active on the edge cannot be deleted; set isActiveOnEdge to false first.",
                code="UPS-1411-409",
                report={"path": "isActiveOnEdge"},
            )
        if self.store.get(self.kind, current.scope, current.id) is None:
            raise Conflict(
                "This is the sandbox's implicit default merge policy; make another policy the default "
                "instead of deleting it.",
                code="UPS-1412-409",
                report={"path": "default"},
            )
        super().delete(actor, ident)

    def editable(self, resource: Resource) -> dict[str, Any]:
        return {k: v for k, v in resource.doc.items() if k in _FIELDS}

    # --- the collection ---
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        schema_name = _one_of(body, "schema", "name", SCHEMA_CLASSES, errors)
        graph = _one_of(body, "identityGraph", "type", GRAPH_TYPES, errors)
        merge = self._attribute_merge(actor, body.get("attributeMerge"), errors)
        flags = {k: _flag(body, k, errors) for k in ("isActiveOnEdge", "default")}
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert name is not None and schema_name is not None and graph is not None and merge is not None
        doc = {
            "name": name,
            "schema": {"name": schema_name},
            "identityGraph": {"type": graph},
            "attributeMerge": merge,
            **flags,
            "policyVersion": int(existing.doc.get("policyVersion", 1)) + 1 if existing else 1,
            "sandboxType": actor.sandbox.type,
        }
        refs = [("dataSet", d) for d in merge.get("order", [])]
        return Built(
            doc=doc, refs=refs, name=name, alt_id=_default_key(schema_name) if flags["default"] else None
        )

    def _attribute_merge(
        self, actor: Actor, value: Any, errors: list[dict[str, str]]
    ) -> dict[str, Any] | None:
        merge_type = _one_of({"attributeMerge": value}, "attributeMerge", "type", MERGE_TYPES, errors)
        if merge_type is None:
            return None
        order = value.get("order")
        if merge_type == TIMESTAMP:
            if order not in (None, []):
                errors.append(
                    {"path": "attributeMerge.order", "message": "is only for dataSetPrecedence; leave it out"}
                )
            return {"type": TIMESTAMP}
        if not isinstance(order, list) or not order:
            errors.append(
                {
                    "path": "attributeMerge.order",
                    "message": "is required for dataSetPrecedence: the dataset ids, highest precedence first",
                }
            )
            return None
        count = len(errors)
        for index, ident in enumerate(order):
            self._order_item(actor, order, index, ident, errors)
        return {"type": PRECEDENCE, "order": list(order)} if len(errors) == count else None

    def _order_item(
        self, actor: Actor, order: list[Any], index: int, ident: Any, errors: list[dict[str, str]]
    ) -> None:
        where = f"attributeMerge.order[{index}]"
        if not isinstance(ident, str) or not ident:
            errors.append({"path": where, "message": "must be a dataset id"})
        elif order.index(ident) != index:
            errors.append({"path": where, "message": f"{ident!r} is already at order[{order.index(ident)}]"})
        elif self.store.get(self.datasets.kind, actor.scope, ident) is None:
            errors.append({"path": where, "message": f"{ident!r} is not a dataset in this sandbox"})

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        return {
            "id": resource.id,
            "name": d["name"],
            "imsOrgId": d.get("imsOrgId", resource.scope.org_id),
            "sandbox": _sandbox_doc(resource.scope.sandbox_id, d.get("sandboxName"), d.get("sandboxType")),
            "schema": d["schema"],
            "version": d.get("policyVersion", 1),
            "identityGraph": d["identityGraph"],
            "attributeMerge": d["attributeMerge"],
            "isActiveOnEdge": d.get("isActiveOnEdge", False),
            "default": d.get("default", False),
            "updateEpoch": resource.updated_at // 1000,
        }

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No merge policy with id {ident!r} in this organization and sandbox.",
            code="UPS-1404-404",
            report={"id": ident, "type": self.label},
        )

    # --- helpers ---
    def _current(self, actor: Actor, ident: str) -> Resource:
        """The stored policy ``ident``, or the implicit default as an unsaved resource."""
        stored = self.store.get(self.kind, actor.scope, ident)
        if stored is not None:
            return stored
        for schema_class in SCHEMA_CLASSES:
            if ident == implicit_id(actor.scope, schema_class) and not self._has_default(
                actor.scope, schema_class
            ):
                return self._implicit_resource(actor.scope, actor.sandbox, schema_class)
        raise self.not_found(ident)

    def _make_room(self, actor: Actor, doc: dict[str, Any], current: Resource | None) -> None:
        """Before ``doc`` is stored: refuse a second policy active on the edge; make the previous default of
        its class an ordinary policy."""
        others = [
            r for r in self.store.list(self.kind, actor.scope).items if current is None or r.id != current.id
        ]
        if doc["isActiveOnEdge"]:
            edge = next((r for r in others if r.doc.get("isActiveOnEdge")), None)
            if edge is not None:
                raise Conflict(
                    f"Merge policy {edge.id} is already active on the edge (a sandbox has one); set its "
                    "isActiveOnEdge to false first.",
                    code="UPS-1410-409",
                    report={"path": "isActiveOnEdge", "existing": edge.id},
                )
        if not doc["default"]:
            return
        for other in others:
            if other.doc.get("default") and other.doc["schema"]["name"] == doc["schema"]["name"]:
                super().replace(actor, other, {**self.editable(other), "default": False})

    def _has_default(self, scope: Scope, schema_class: str) -> bool:
        return self.store.get_by_alt_id(self.kind, scope, _default_key(schema_class)) is not None

    def _sandbox(self, scope: Scope) -> Sandbox | None:
        return next((s for s in self.store.list_sandboxes(scope.org_id) if s.id == scope.sandbox_id), None)

    def _implicit_resource(self, scope: Scope, sandbox: Sandbox | None, schema_class: str) -> Resource:
        created = sandbox.created_at if sandbox is not None else 0
        doc = {
            "name": IMPLICIT_NAME,
            "schema": {"name": schema_class},
            "identityGraph": {"type": "pdg"},
            "attributeMerge": {"type": TIMESTAMP},
            "isActiveOnEdge": False,
            "default": True,
            "policyVersion": 1,
            "imsOrgId": scope.org_id,
            "sandboxName": sandbox.name if sandbox else None,
            "sandboxType": sandbox.type if sandbox else None,
        }
        return Resource(
            kind=self.kind,
            id=implicit_id(scope, schema_class),
            scope=scope,
            doc=doc,
            etag='"implicit"',
            created_at=created,
            updated_at=created,
        )

    def _implicit(self, scope: Scope, sandbox: Sandbox | None, schema_class: str) -> dict[str, Any]:
        return self.render(self._implicit_resource(scope, sandbox, schema_class))


def implicit_id(scope: Scope, schema_class: str = PROFILE) -> str:
    """The id of a sandbox's implicit default policy: stable, so a reference to it survives storing it."""
    return str(
        uuid.uuid5(
            uuid.NAMESPACE_URL, f"headwater:mergePolicy:{scope.org_id}:{scope.sandbox_id}:{schema_class}"
        )
    )


def _default_key(schema_class: str) -> str:
    return f"default:{schema_class}"


def _sandbox_doc(sandbox_id: str, name: str | None, sandbox_type: str | None) -> dict[str, Any]:
    return {
        "sandboxId": sandbox_id,
        "sandboxName": name,
        "type": sandbox_type or "production",
        "default": name == "prod",
    }


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body without what GET renders (sent back on PUT) and without system fields; anything else that
    is not a policy field is refused (400 naming it)."""
    unknown = [k for k in body if k not in _FIELDS and k not in _RENDERED and k not in SYSTEM_FIELDS]
    unknown = [k for k in unknown if k not in ("policyVersion", "sandboxType")]
    if unknown:
        raise ValidationFailed(
            [
                {
                    "path": k,
                    "message": "is not a merge policy field; fields are " + ", ".join(sorted(_FIELDS)),
                }
                for k in unknown
            ],
            code=CODE,
        )
    return {k: v for k, v in body.items() if k in _FIELDS}


def _one_of(
    body: dict[str, Any], key: str, sub: str, allowed: tuple[str, ...], errors: list[dict[str, str]]
) -> str | None:
    value = body.get(key)
    inner = value.get(sub) if isinstance(value, dict) else None
    if inner not in allowed:
        errors.append({"path": f"{key}.{sub}", "message": "must be one of " + ", ".join(allowed)})
        return None
    assert isinstance(inner, str)
    return inner


def _flag(body: dict[str, Any], key: str, errors: list[dict[str, str]]) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        errors.append({"path": key, "message": "must be true or false"})
        return False
    return value


def _aep_patch(operations: Any) -> Any:
    """AEP's patch forms made RFC 6902: one operation object -> a list; ``/a.b`` -> ``/a/b``; the flags'
    ``"true"``/``"false"`` strings -> booleans."""
    ops = [operations] if isinstance(operations, dict) else operations
    if not isinstance(ops, list):
        return ops
    out = []
    for op in ops:
        if isinstance(op, dict) and isinstance(op.get("path"), str):
            op = {**op, "path": op["path"].replace(".", "/")}
            if op["path"] in ("/default", "/isActiveOnEdge") and op.get("value") in ("true", "false"):
                op["value"] = op["value"] == "true"
        out.append(op)
    return out


def _order(value: str) -> tuple[str, bool]:
    raw = value.strip()
    descending = raw.startswith("-")
    field = raw.lstrip("+-") or "name"
    return _ORDER.get(field, "name"), descending


def _sort_value(doc: dict[str, Any], field: str) -> tuple[int, Any]:
    value = doc.get(field)
    if value is None:
        return (1, "")
    return (0, value.lower() if isinstance(value, str) else value)

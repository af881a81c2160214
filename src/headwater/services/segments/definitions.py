"""Segment definitions (``/data/core/ups/segment/definitions``), as AEP's Segmentation Service has them.

A definition holds a PQL expression (``expression: {type: "PQL", format: "pql/text", value}``, the
subset docs/pql.md describes), the merge policy its profiles are merged with (``mergePolicyId``; the
sandbox's default when left out, fixed at creation) and how it is evaluated (``evaluationInfo``):

- ``batch.enabled``: by segment jobs (``/segment/jobs``), over every profile of the sandbox;
- ``continuous.enabled``: streaming, each time a profile changes. As AEP does, a definition that asks
  for streaming but is not streamable (pql.md, "Streaming eligibility") is accepted and evaluated in
  batch only: it is stored with ``continuous.enabled: false`` and ``batch.enabled: true``;
- ``synchronous.enabled`` (edge segmentation) is stored and shown, not evaluated.

Bad input is a 400 naming the field (``expression.value`` with the PQL problem and its position, an
unknown ``mergePolicyId``), and nothing is stored. Deleting a definition deletes its membership.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from headwater.engines.segments import pql
from headwater.engines.segments.nodes import Expr, is_streamable
from headwater.errors import NotFound, ValidationFailed
from headwater.services import access, jsonpatch
from headwater.services.merge_policies import PROFILE, MergePolicies
from headwater.services.resources import SYSTEM_FIELDS, Built, Collection, require_object, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource, Scope
from headwater.stores.profiles.base import ProfileStore

KIND = "segmentDefinition"
CODE = "UPS-1400-400"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
_FIELDS = frozenset({"name", "description", "expression", "schema", "mergePolicyId", "evaluationInfo"})
# What GET shows and a client may send back unchanged: ignored.
_RENDERED = frozenset(
    {"profileInstanceId", "sandbox", "creationTime", "updateTime", "updateEpoch", "dataGovernancePolicy"}
)
_MODES = ("batch", "continuous", "synchronous")
_SORTS = {"name": "name", "creationTime": "createdAt", "updateTime": "updatedAt"}


@dataclass(frozen=True)
class Definition:
    """A stored definition as evaluation needs it: parsed, with its merge policy and modes."""

    id: str
    expr: Expr
    merge_policy_id: str
    batch: bool
    continuous: bool  # streaming: enabled and streamable


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Expr:
    return pql.parse(text)


class SegmentDefinitions(Collection):
    kind = KIND
    label = "segment definition"
    service = "UPS"

    def __init__(self, store: MetadataStore, policies: MergePolicies, profiles: ProfileStore) -> None:
        super().__init__(store)
        self.policies = policies
        self.profiles = profiles

    # --- what evaluation reads ---
    def definitions(self, scope: Scope, ids: list[str] | None = None) -> list[Definition]:
        """The sandbox's definitions (only ``ids``, in that order, when given; unknown ids are left out)."""
        if ids is None:
            resources = self.store.list(self.kind, scope).items
        else:
            found = self.store.get_many(self.kind, scope, ids)
            resources = [found[i] for i in ids if i in found]
        return [_definition(r) for r in resources]

    # --- the API ---
    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /segment/definitions``: ``start`` (an offset), ``limit`` (20, at most 100), ``sort``
        (``name``, ``creationTime`` or ``updateTime``, ``:asc``/``:desc``) and the filter
        ``evaluationInfo.continuous.enabled``. AEP's page shape."""
        start, limit, sort, descending, continuous = 0, DEFAULT_LIMIT, "createdAt", False, None
        for key, value in params:
            if key == "start":
                start = _int_param(key, value, 0, 10**9)
            elif key == "limit":
                limit = _int_param(key, value, 1, MAX_LIMIT)
            elif key == "sort":
                sort, descending = _sort(value)
            elif key == "evaluationInfo.continuous.enabled":
                continuous = _bool_param(key, value)
        docs = [self.render(r) for r in self.store.list(self.kind, actor.scope).items]
        if continuous is not None:
            docs = [d for d in docs if d["evaluationInfo"]["continuous"]["enabled"] is continuous]
        key = {"name": "name", "createdAt": "creationTime", "updatedAt": "updateTime"}[sort]
        docs.sort(key=lambda d: str(d[key]).lower() if key == "name" else d[key], reverse=descending)
        page = docs[start : start + limit]
        more = start + limit < len(docs)
        return {
            "segments": page,
            "page": {
                "totalCount": len(docs),
                "totalPages": -(-len(docs) // limit),
                "sortField": key,
                "sort": "desc" if descending else "asc",
                "pageSize": len(page),
                "limit": limit,
            },
            "link": {"next": f"?start={start + limit}&limit={limit}" if more else ""},
        }

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        return self.render(self.get(actor, ident))

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        actor.require(access.MANAGE_SEGMENTS, "define segments")
        return super().create(actor, _fields(require_object(body)), ident)

    def patch(self, actor: Actor, ident: str, operations: Any, if_match: str | None) -> Resource:
        """JSON Patch (a single operation object too); no If-Match needed, one that is sent must be
        current."""
        actor.require(access.MANAGE_SEGMENTS, "change segment definitions")
        current = self.get(actor, ident)
        self.check_if_match(current, if_match)
        ops = [operations] if isinstance(operations, dict) else operations
        patched = jsonpatch.apply(self.editable(current), ops, frozenset(_RENDERED), service="UPS")
        return self.replace(actor, current, _fields(patched))

    def delete(self, actor: Actor, ident: str) -> None:
        """Delete the definition and its membership (its transitions too)."""
        actor.require(access.MANAGE_SEGMENTS, "delete segment definitions")
        super().delete(actor, ident)
        self.profiles.drop_segment(actor.scope, ident)

    def editable(self, resource: Resource) -> dict[str, Any]:
        return {k: v for k, v in resource.doc.items() if k in _FIELDS}

    # --- the collection ---
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        description = text_field(body, "description", errors, required=False)
        expression, expr = _expression(body.get("expression"), errors)
        _schema(body.get("schema"), errors)
        policy_id, refs = self._merge_policy(actor, body.get("mergePolicyId"), errors)
        modes = _evaluation_info(body.get("evaluationInfo"), errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert name is not None and expr is not None and policy_id is not None and modes is not None
        if modes["continuous"]["enabled"] and not is_streamable(expr):  # AEP: evaluated in batch
            modes = {**modes, "continuous": {"enabled": False}, "batch": {"enabled": True}}
        doc = {
            "name": name,
            "description": description or "",
            "expression": expression,
            "schema": {"name": PROFILE},
            "mergePolicyId": policy_id,
            "evaluationInfo": modes,
            "sandboxType": actor.sandbox.type,
        }
        return Built(doc=doc, refs=refs, name=name)

    def _merge_policy(
        self, actor: Actor, value: Any, errors: list[dict[str, str]]
    ) -> tuple[str | None, list[tuple[str, str]]]:
        if value is None:
            return str(self.policies.default_policy(actor)["id"]), []
        if not isinstance(value, str) or not value:
            errors.append({"path": "mergePolicyId", "message": "must be a merge policy id"})
            return None, []
        try:
            self.policies.find(actor, value)
        except NotFound:
            errors.append({"path": "mergePolicyId", "message": f"no merge policy {value!r} in this sandbox"})
            return None, []
        stored = self.store.get(self.policies.kind, actor.scope, value) is not None
        return value, ([(self.policies.kind, value)] if stored else [])

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        return {
            "id": resource.id,
            "schema": d["schema"],
            "profileInstanceId": "ups",
            "imsOrgId": resource.scope.org_id,
            "sandbox": sandbox_doc(resource),
            "name": d["name"],
            "description": d.get("description", ""),
            "expression": d["expression"],
            "mergePolicyId": d["mergePolicyId"],
            "evaluationInfo": d["evaluationInfo"],
            "dataGovernancePolicy": {"excludeOptOut": True},
            "creationTime": resource.created_at,
            "updateEpoch": resource.updated_at // 1000,
            "updateTime": resource.updated_at,
        }

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No segment definition with id {ident!r} in this organization and sandbox.",
            code="UPS-1404-404",
            report={"id": ident, "type": self.label},
        )


def sandbox_doc(resource: Resource) -> dict[str, Any]:
    """AEP's ``sandbox`` object of a resource (from the system fields it was stored with)."""
    name = resource.doc.get("sandboxName")
    return {
        "sandboxId": resource.scope.sandbox_id,
        "sandboxName": name,
        "type": resource.doc.get("sandboxType") or "production",
        "default": name == "prod",
    }


def _definition(resource: Resource) -> Definition:
    d = resource.doc
    modes = d["evaluationInfo"]
    expr = _parsed(d["expression"]["value"])
    return Definition(
        id=resource.id,
        expr=expr,
        merge_policy_id=d["mergePolicyId"],
        batch=bool(modes["batch"]["enabled"]),
        continuous=bool(modes["continuous"]["enabled"]) and is_streamable(expr),
    )


def policy_for(policies: MergePolicies, store: MetadataStore, scope: Scope, ident: str) -> dict[str, Any]:
    """The merge policy ``ident`` of the sandbox, rendered; the default when it is the implicit one (or
    was deleted since: a stored policy cannot be while a definition names it)."""
    stored = store.get(policies.kind, scope, ident)
    return policies.render(stored) if stored is not None else policies.default_policy(scope)


def _expression(value: Any, errors: list[dict[str, str]]) -> tuple[dict[str, Any], Expr | None]:
    if not isinstance(value, dict):
        errors.append(
            {"path": "expression", "message": 'must be {"type": "PQL", "format": "pql/text", "value"}'}
        )
        return {}, None
    kind, fmt, text = value.get("type", "PQL"), value.get("format", "pql/text"), value.get("value")
    count = len(errors)
    if kind != "PQL":
        errors.append({"path": "expression.type", "message": "must be PQL"})
    if fmt != "pql/text":
        errors.append(
            {"path": "expression.format", "message": "must be pql/text (pql/json is not supported)"}
        )
    if not isinstance(text, str) or not text.strip():
        errors.append({"path": "expression.value", "message": "is required: the PQL text"})
    if len(errors) > count:
        return {}, None
    assert isinstance(text, str)
    try:
        expr = _parsed(text)
    except pql.PqlError as exc:
        errors.append({"path": "expression.value", "message": f"{exc} (position {exc.position})"})
        return {}, None
    return {"type": "PQL", "format": "pql/text", "value": text}, expr


def _schema(value: Any, errors: list[dict[str, str]]) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("name") != PROFILE:
        errors.append({"path": "schema.name", "message": f"must be {PROFILE}"})


def _evaluation_info(value: Any, errors: list[dict[str, str]]) -> dict[str, dict[str, bool]] | None:
    modes = {"batch": {"enabled": True}, "continuous": {"enabled": False}, "synchronous": {"enabled": False}}
    if value is None:
        return modes
    if not isinstance(value, dict):
        errors.append(
            {"path": "evaluationInfo", "message": "must be an object of batch, continuous, synchronous"}
        )
        return None
    count = len(errors)
    for key, mode in value.items():
        enabled = mode.get("enabled") if isinstance(mode, dict) else None
        if key not in _MODES:
            errors.append(
                {"path": f"evaluationInfo.{key}", "message": "must be batch, continuous or synchronous"}
            )
        elif not isinstance(enabled, bool):
            errors.append({"path": f"evaluationInfo.{key}.enabled", "message": "must be true or false"})
        else:
            modes[key] = {"enabled": enabled}
    if len(errors) > count:
        return None
    if value and not any(m["enabled"] for m in modes.values()):
        errors.append(
            {"path": "evaluationInfo", "message": "enable at least one of batch, continuous, synchronous"}
        )
        return None
    return modes


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    """The body without what GET renders and without system fields; another field is a 400 naming it."""
    unknown = [k for k in body if k not in _FIELDS and k not in _RENDERED and k not in SYSTEM_FIELDS]
    unknown = [k for k in unknown if k != "sandboxType"]
    if unknown:
        raise ValidationFailed(
            [
                {
                    "path": k,
                    "message": "is not a segment definition field; fields are " + ", ".join(sorted(_FIELDS)),
                }
                for k in unknown
            ],
            code=CODE,
        )
    return {k: v for k, v in body.items() if k in _FIELDS}


def _int_param(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValidationFailed(
            [{"path": key, "message": f"must be a whole number from {low} to {high}"}], code=CODE
        )
    return int(value)


def _bool_param(key: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise ValidationFailed([{"path": key, "message": "must be true or false"}], code=CODE)
    return value == "true"


def _sort(value: str) -> tuple[str, bool]:
    field, _, direction = value.partition(":")
    if field not in _SORTS or direction not in ("", "asc", "desc"):
        raise ValidationFailed(
            [{"path": "sort", "message": "must be name, creationTime or updateTime, then :asc or :desc"}],
            code=CODE,
        )
    return _SORTS[field], direction == "desc"

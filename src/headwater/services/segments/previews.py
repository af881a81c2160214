"""Previews and estimates of a PQL expression (``/data/core/ups/preview`` and ``/estimate``), as AEP's
Segmentation Service has them: ``POST /preview`` with ``predicateExpression`` (``pql/text``) starts a
preview; ``GET /preview/{previewId}`` pages the qualifying profiles, ``GET /estimate/{previewId}`` gives
the audience's size; ``DELETE /preview/{previewId}`` forgets it.

AEP samples large profile stores for estimates; Headwater evaluates every profile (one DuckDB query, at
POST time), so ``estimatedSize`` is the exact count, ``standardError`` 0, and the state is
``RESULT_READY`` as soon as the POST answers. A preview keeps the first :data:`KEPT` qualifying profiles
(by cluster id); their entities are merged when read, so they show the profiles as they are then.
"""

from __future__ import annotations

from typing import Any

from headwater.engines.segments import pql
from headwater.errors import NotFound, ValidationFailed
from headwater.services import access
from headwater.services.ids import now_ms
from headwater.services.merge_policies import PROFILE
from headwater.services.resources import Built, Collection, require_object
from headwater.services.segments.definitions import Definition, policy_for
from headwater.services.segments.evaluation import Segments
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource

KIND = "segmentPreview"
CODE = "UPS-1400-400"
KEPT = 1_000
DEFAULT_LIMIT, MAX_LIMIT = 10, 100
READY = "RESULT_READY"


class Previews(Collection):
    kind = KIND
    label = "preview"
    service = "UPS"

    def __init__(self, store: MetadataStore, segments: Segments) -> None:
        super().__init__(store)
        self.segments = segments

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        """Evaluate the expression over every profile now and keep the result (a long call: run it in
        the thread pool, not in the write queue)."""
        actor.require(access.VIEW_PROFILES, "preview an audience")
        return super().create(actor, require_object(body), ident)

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        text, model = body.get("predicateExpression"), body.get("predicateModel", PROFILE)
        errors: list[dict[str, str]] = []
        if body.get("predicateType", "pql/text") != "pql/text":
            errors.append({"path": "predicateType", "message": "must be pql/text"})
        if model != PROFILE:
            errors.append({"path": "predicateModel", "message": f"must be {PROFILE}"})
        expr = None
        if not isinstance(text, str) or not text.strip():
            errors.append({"path": "predicateExpression", "message": "is required: the PQL text"})
        else:
            try:
                expr = pql.parse(text)
            except pql.PqlError as exc:
                errors.append({"path": "predicateExpression", "message": f"{exc} (position {exc.position})"})
        policy_id = body.get("mergePolicyId") or self.segments.policies.default_policy(actor)["id"]
        try:
            self.segments.policies.find(actor, str(policy_id))
        except NotFound:
            errors.append(
                {"path": "mergePolicyId", "message": f"no merge policy {policy_id!r} in this sandbox"}
            )
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert expr is not None and isinstance(text, str)
        definition = Definition("preview", expr, str(policy_id), batch=True, continuous=False)
        everyone, found = self.segments.qualifying(actor.scope, [definition], now_ms())
        qualifying = sorted(found["preview"])
        doc = {
            "predicateExpression": text,
            "mergePolicyId": policy_id,
            "estimatedSize": len(qualifying),
            "profilesRead": len(everyone),
            "clusters": qualifying[:KEPT],
        }
        return Built(doc=doc)

    def results(self, actor: Actor, ident: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET /preview/{id}``: a page of the qualifying profiles' entities (``limit``, 10, at most
        100; ``offset``)."""
        actor.require(access.VIEW_PROFILES, "read an audience's profiles")
        preview = self.get(actor, ident)
        limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int(params, "offset", 0, 0, KEPT)
        clusters = preview.doc["clusters"][offset : offset + limit]
        policy = policy_for(self.segments.policies, self.store, actor.scope, preview.doc["mergePolicyId"])
        entities = self.segments.entities(actor.scope, clusters, policy)
        following = offset + limit if offset + limit < len(preview.doc["clusters"]) else None
        return {
            "state": READY,
            "results": [{"entityId": f"hw{c}", "entity": entities[c]} for c in clusters],
            "page": {"offset": offset, "size": len(clusters), "totalCount": preview.doc["estimatedSize"]},
            "links": {
                "next": f"/preview/{ident}?offset={following}&limit={limit}" if following is not None else ""
            },
        }

    def estimate(self, actor: Actor, ident: str) -> dict[str, Any]:
        """``GET /estimate/{id}``: the audience's size (exact: every profile was read)."""
        preview = self.get(actor, ident)
        return {
            "state": READY,
            "estimatedSize": preview.doc["estimatedSize"],
            "profilesReadSoFar": preview.doc["profilesRead"],
            "totalRows": preview.doc["profilesRead"],
            "standardError": 0.0,
            "confidenceInterval": "100%",
            "_links": {"preview": f"/data/core/ups/preview/{ident}"},
        }

    def delete(self, actor: Actor, ident: str) -> None:
        actor.require(access.VIEW_PROFILES, "delete a preview")
        super().delete(actor, ident)

    def render(self, resource: Resource) -> dict[str, Any]:
        """What ``POST /preview`` answers."""
        return {
            "state": READY,
            "previewId": resource.id,
            "previewQueryId": resource.id,
            "previewQueryStatus": READY,
            "estimatedSize": resource.doc["estimatedSize"],
        }

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No preview with id {ident!r} in this sandbox.", code="UPS-1404-404", report={"id": ident}
        )


def _int(params: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = params.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(
            [{"path": key, "message": f"must be a whole number from {low} to {high}"}], code=CODE
        )
    return int(raw)

"""Activation flows whose source is an audience (a segment definition), as AEP's destination dataflows
declare them:

    source connection   connectionSpec "Profile Service" (catalog.ids.PROFILE_SERVICE), params {}
    transformations     {"name": "GeneralTransform", "params": {"segmentSelectors": {"selectors": [
                            {"type": "PLATFORM_SEGMENT", "value": {"id": "<segment definition id>"}}]}}}
                        {"name": "Variables", "params": {"bindings": {...}}}  (as every activation flow)
    targetConnectionIds [request sent when a profile enters, request sent when it exits (optional)]

One audience per flow. Both requests are target connections of one destination (the same base
connection): each is checked, sealed and immutable as a destination's request always is. The bindings
must cover the variables of both. The flow references its segment definition, so the definition cannot
be deleted while the flow exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.stores.metadata import MetadataStore, Resource, Scope

#: The kind of the segment definitions' resources (services/segments/definitions.py).
SEGMENT_DEFINITION = "segmentDefinition"
SELECTORS = "params.segmentSelectors.selectors"
EXAMPLE = (
    '{"name": "GeneralTransform", "params": {"segmentSelectors": {"selectors": '
    '[{"type": "PLATFORM_SEGMENT", "value": {"id": "<segment definition id>"}}]}}}'
)


def segment_of(transformations: Any) -> str | None:
    """The segment id the flow's GeneralTransform selects (its first selector), None without one."""
    for item in transformations if isinstance(transformations, list) else ():
        if isinstance(item, Mapping) and item.get("name") == "GeneralTransform":
            selectors = ((item.get("params") or {}).get("segmentSelectors") or {}).get("selectors") or []
            value = selectors[0].get("value") if selectors and isinstance(selectors[0], Mapping) else None
            ident = value.get("id") if isinstance(value, Mapping) else None
            return ident if isinstance(ident, str) else None
    return None


def check_audience(
    store: MetadataStore,
    scope: Scope,
    targets: list[Resource],
    transformations: list[dict[str, Any]],
    errors: list[dict[str, str]],
    refs: list[tuple[str, str]],
) -> None:
    """An audience activation flow: one existing segment definition selected, one or two requests of
    one destination. Problems go to ``errors`` naming the field; the segment is added to ``refs``."""
    general = [i for i, t in enumerate(transformations) if t["name"] == "GeneralTransform"]
    if not general:
        message = f"an activation flow from the Profile Service names its audience: add {EXAMPLE}"
        errors.append({"path": "transformations", "message": message})
    for index in general[1:]:
        errors.append({"path": f"transformations[{index}]", "message": "only one GeneralTransform"})
    if general:
        _check_selectors(store, scope, general[0], transformations[general[0]]["params"], errors, refs)
    if len(targets) > 2:
        message = "an audience activation has at most two requests: entering, then exiting"
        errors.append({"path": "targetConnectionIds", "message": message})
    bases = {t.doc.get("baseConnectionId") for t in targets}
    if len(bases) > 1:
        message = "must be requests of one destination (target connections of one base connection)"
        errors.append({"path": "targetConnectionIds[1]", "message": message})


def _check_selectors(
    store: MetadataStore,
    scope: Scope,
    index: int,
    params: Mapping[str, Any],
    errors: list[dict[str, str]],
    refs: list[tuple[str, str]],
) -> None:
    where = f"transformations[{index}].{SELECTORS}"
    selectors = (params.get("segmentSelectors") or {}).get("selectors")
    if not isinstance(selectors, list) or len(selectors) != 1:
        message = "must hold exactly one PLATFORM_SEGMENT selector: an activation flow delivers one audience"
        errors.append({"path": where, "message": message})
        return
    ident = segment_of([{"name": "GeneralTransform", "params": params}])
    if ident is None:
        return  # the transformation spec's check named the field
    if store.get(SEGMENT_DEFINITION, scope, ident) is None:
        message = f"segment definition {ident!r} does not exist in this sandbox"
        errors.append({"path": f"{where}[0].value.id", "message": message})
        return
    refs.append((SEGMENT_DEFINITION, ident))


def refuse_selectors(transformations: list[dict[str, Any]], errors: list[dict[str, str]]) -> None:
    """A GeneralTransform on an activation flow that does not read the Profile Service is refused."""
    for index, item in enumerate(transformations):
        if item["name"] == "GeneralTransform":
            message = "selects audiences, which only an activation flow from the Profile Service delivers"
            errors.append({"path": f"transformations[{index}]", "message": message})

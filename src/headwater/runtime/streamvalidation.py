"""Synchronous validation of one streaming message (``POST /collection/{inletId}?syncValidation=true``):
the report of the reference (``_streamingValidation``) with at most five violations."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from headwater.runtime.context import Runtime
from headwater.runtime.streaming import MicroBatcher
from headwater.runtime.streammessages import CORRUPT, EMPTY, UNREADABLE, all_null
from headwater.stores.metadata import Scope

MAX_VIOLATIONS = 5
_KEYWORDS = {EMPTY: "required", "MAPPER-3700-400": "mapping", CORRUPT: "type"}


def validate_message(
    services: Runtime, scope: Scope, flow_id: str, kind: str, record: dict[str, Any]
) -> dict[str, Any] | None:
    """The reference's ``_streamingValidation`` report for one message, or None when it is valid. The
    message is judged as the micro-batch judges it (runtime/streammessages.py ``_map``): what fails here
    would be a row error there."""
    cache: dict[str, MicroBatcher] = services.streams.validators
    batcher = cache.get(flow_id)
    if batcher is None:
        flow = services.store.get("flow", scope, flow_id)
        if flow is None:
            return None
        batcher = cache[flow_id] = MicroBatcher(services, flow)
    plan = batcher.plan()
    if plan is None:
        return None
    violations: list[dict[str, Any]] = []
    if kind == "xdm":
        _extraneous(record, plan.target, "", violations)
    mapping = plan.xdm if kind == "xdm" else plan.raw
    try:
        batch = pa.RecordBatch.from_struct_array(pa.array([record]))
    except UNREADABLE as exc:
        violations.append({"keyword": "type", "message": f"the message cannot be read as a record: {exc}"})
    else:
        try:
            result = mapping.apply(batch)
        except Exception as exc:  # the micro-batch makes this message a row error: say so now
            violations.append({"keyword": "mapping", "message": f"the message cannot be mapped: {exc}"})
            result = None
        if (
            result is not None
            and kind != "xdm"
            and plan.mapped
            and result.output.num_rows
            and all_null(result.output)[0]
        ):
            violations.append(
                {
                    "keyword": "required",
                    "message": "the message has none of the fields the flow's mapping reads: there is "
                    "nothing to land",
                }
            )
        for error in result.errors if result is not None else []:
            pointer = "#/" + (error.path or "").replace(".", "/")
            violations.append(
                {
                    "schemaLocation": "#/properties/" + (error.path or "").replace(".", "/properties/"),
                    "pointerToViolation": pointer,
                    "keyword": _KEYWORDS.get(error.code, "format"),
                    "message": error.message,
                }
            )
    if not violations:
        return None
    return {
        "schemaLocation": "#",
        "pointerToViolation": "#",
        "causingExceptions": violations[:MAX_VIOLATIONS],
        "keyword": "allOf",
        "message": f"{len(violations)} schema violations found",
    }


def _extraneous(
    value: Any, schema: pa.Schema | pa.StructType, pointer: str, out: list[dict[str, Any]]
) -> None:
    if not isinstance(value, dict):
        return
    fields = {f.name: f for f in schema}
    for key, item in value.items():
        field_ = fields.get(key)
        if field_ is None:
            out.append(
                {
                    "schemaLocation": "#" + pointer.replace("/", "/properties/"),
                    "pointerToViolation": "#" + pointer,
                    "keyword": "additionalProperties",
                    "message": f"extraneous key [{key}] is not permitted",
                }
            )
        elif pa.types.is_struct(field_.type):
            _extraneous(item, field_.type, f"{pointer}/{key}", out)

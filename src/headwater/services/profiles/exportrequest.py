"""Validating a profile export request (``POST /data/core/ups/export/jobs``) into the job's document.

Every problem is collected and reported at once, as a 400 naming its field (``destination.datasetId``,
``filter.segments[0].status``, ``fields``, ...); nothing is stored then. The rules:

- ``destination.datasetId``: a dataset of the caller's sandbox whose schema is of the XDM Individual
  Profile class, and that does not feed the profiles itself (``unifiedProfile`` tag with a union
  schema): the export's rows would otherwise come back into the profiles they were merged from.
  ``destination.segmentPerBatch: true`` (a batch per segment) is not supported;
- ``fields``: comma-separated dotted paths, each a field of that dataset's schema;
- ``filter.segments``: segment definitions of the sandbox (``segmentNs`` ``ups``), each with the
  membership statuses to export (``realized``, ``existing``, ``exited``; default realized and existing);
  none: every profile of the sandbox. ``segmentQualificationTime`` and ``fromIngestTimestamp`` are
  RFC 3339 timestamps; ``emptyProfiles`` a boolean;
- ``mergePolicy``: a policy of the sandbox at its current version; when left out, the one policy the
  segments share (several: name one), or the sandbox's default;
- ``schema.name``: ``_xdm.context.profile``; ``evaluationInfo.segmentation``: a boolean (true needs
  segments); ``additionalFields`` (events) is refused: events are not exported.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from headwater.errors import NotFound, ValidationFailed
from headwater.services.profiles.exportplan import (
    CODE,
    DEFAULT_MEMBERSHIP,
    MEMBERSHIP,
    NEW,
    PROFILE_CLASS,
    PROFILE_SCHEMA,
    SEGMENT_NS,
    ms,
)
from headwater.services.profiles.sources import ENABLED, PROFILE_TAG, UNION
from headwater.services.tenancy import Actor

if TYPE_CHECKING:
    from headwater.services.catalogsvc import DataSets
    from headwater.services.merge_policies import MergePolicies
    from headwater.services.schemas import SchemaRegistry
    from headwater.services.segments.definitions import SegmentDefinitions
    from headwater.stores.metadata import Resource

Errors = list[dict[str, str]]
_TOP = frozenset({"fields", "mergePolicy", "filter", "destination", "schema", "evaluationInfo"})
_FILTER = frozenset({"segments", "segmentQualificationTime", "fromIngestTimestamp", "emptyProfiles"})
_SEGMENT = frozenset({"segmentId", "segmentNs", "status"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*$")


class ExportRequests:
    """Turns request bodies into job documents, reading the sandbox's datasets, schemas, segment
    definitions and merge policies."""

    def __init__(
        self,
        datasets: DataSets,
        schemas: SchemaRegistry,
        definitions: SegmentDefinitions,
        policies: MergePolicies,
    ) -> None:
        self.datasets = datasets
        self.schemas = schemas
        self.definitions = definitions
        self.policies = policies

    def document(self, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
        """The job's document (status NEW) for a valid ``body``; ValidationFailed naming every problem."""
        errors: Errors = [
            {"path": k, "message": _unknown_top(k)} for k in body if k not in _TOP and k != "additionalFields"
        ]
        if "additionalFields" in body:
            errors.append(
                {"path": "additionalFields", "message": "is not supported: export jobs export profiles only"}
            )
        _schema_name(body.get("schema"), errors)
        dataset, schema = self._destination(actor, body.get("destination"), errors)
        fields, required = self._fields(actor, body.get("fields"), schema, errors)
        flt, segments = self._filter(actor, body.get("filter"), errors)
        evaluate = _evaluation(body.get("evaluationInfo"), bool(flt.get("segments")), errors)
        policy = self._policy(actor, body.get("mergePolicy"), segments, errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert dataset is not None and schema is not None and policy is not None
        doc: dict[str, Any] = {
            "status": NEW,
            "schema": {"name": PROFILE_SCHEMA},
            "mergePolicy": policy,
            "filter": flt,
            "destination": {"datasetId": dataset.id, "segmentPerBatch": False, "batchId": ""},
            "schemaId": schema.id,
            "evaluationInfo": {"segmentation": evaluate},
            "sandboxType": actor.sandbox.type,
            "metrics": {},
            "errors": [],
        }
        if fields:
            doc["fields"] = fields
            doc["requiredFields"] = required  # exported whatever ``fields`` says, or no row would pass
        return doc

    def destination_problem(self, actor: Actor, dataset_id: str) -> str | None:
        """Why the dataset cannot receive an export now (it was deleted or changed since the job was
        created), or None."""
        errors: Errors = []
        self._destination(actor, {"datasetId": dataset_id}, errors)
        return errors[0]["message"] if errors else None

    # --- parts ---
    def _destination(
        self, actor: Actor, value: Any, errors: Errors
    ) -> tuple[Resource | None, Resource | None]:
        if not isinstance(value, dict):
            errors.append({"path": "destination", "message": 'is required: {"datasetId": "<dataset id>"}'})
            return None, None
        for key in value:
            if key not in ("datasetId", "segmentPerBatch"):
                errors.append({"path": f"destination.{key}", "message": "is not a destination field"})
        per_batch = value.get("segmentPerBatch", False)
        if per_batch is True:
            errors.append(
                {
                    "path": "destination.segmentPerBatch",
                    "message": "true is not supported: every segment goes into one batch; export each "
                    "segment with a job of its own for a batch per segment",
                }
            )
        elif per_batch is not False:
            errors.append({"path": "destination.segmentPerBatch", "message": "must be true or false"})
        ident = value.get("datasetId")
        if not isinstance(ident, str) or not ident:
            errors.append({"path": "destination.datasetId", "message": "is required: the dataset's id"})
            return None, None
        try:
            dataset = self.datasets.get(actor, ident)
        except NotFound:
            errors.append(
                {"path": "destination.datasetId", "message": f"no dataset {ident!r} in this sandbox"}
            )
            return None, None
        schema_id = str((dataset.doc.get("schemaRef") or {}).get("id") or "")
        schema = self.schemas.get_schema(actor, schema_id)
        problem = _unfit(dataset, schema)
        if problem is not None:
            errors.append({"path": "destination.datasetId", "message": problem})
            return None, None
        return dataset, schema

    def _fields(
        self, actor: Actor, value: Any, schema: Resource | None, errors: Errors
    ) -> tuple[str, list[str]]:
        """The ``fields`` to store, and the schema's required fields (its primary identity)."""
        if value is None or value == "":
            return "", []
        if not isinstance(value, str):
            errors.append({"path": "fields", "message": "must be a string of comma-separated field paths"})
            return "", []
        paths = [p.strip() for p in value.split(",")]
        if any(not p or not all(_NAME.match(part) for part in p.split(".")) for p in paths):
            errors.append(
                {"path": "fields", "message": "must be comma-separated dotted paths such as person.name"}
            )
            return "", []
        if schema is None:
            return "", []  # the destination's own error says why
        resolved = self.schemas.resolved(actor, schema)
        missing = [p for p in paths if self.schemas.field_at(resolved, p) is None]
        if missing:
            errors.append(
                {
                    "path": "fields",
                    "message": f"{', '.join(missing)}: not a field of the destination dataset's schema",
                }
            )
            return "", []
        return ",".join(dict.fromkeys(paths)), _required(resolved)

    def _filter(self, actor: Actor, value: Any, errors: Errors) -> tuple[dict[str, Any], list[Resource]]:
        if value is None:
            return {"emptyProfiles": False}, []
        if not isinstance(value, dict):
            errors.append({"path": "filter", "message": "must be an object"})
            return {}, []
        errors.extend(
            {
                "path": f"filter.{k}",
                "message": "is not a filter field; fields are " + ", ".join(sorted(_FILTER)),
            }
            for k in value
            if k not in _FILTER
        )
        out: dict[str, Any] = {}
        segments, found = self._segments(actor, value.get("segments"), errors)
        if segments:
            out["segments"] = segments
        window = _window(value.get("segmentQualificationTime"), errors)
        if window:
            out["segmentQualificationTime"] = window
        if "fromIngestTimestamp" in value:
            out["fromIngestTimestamp"] = _moment(
                value["fromIngestTimestamp"], "filter.fromIngestTimestamp", errors
            )
        empty = value.get("emptyProfiles", False)
        if not isinstance(empty, bool):
            errors.append({"path": "filter.emptyProfiles", "message": "must be true or false"})
        out["emptyProfiles"] = empty is True
        return out, found

    def _segments(
        self, actor: Actor, value: Any, errors: Errors
    ) -> tuple[list[dict[str, Any]], list[Resource]]:
        if value is None:
            return [], []
        if not isinstance(value, list) or not value:
            errors.append(
                {"path": "filter.segments", "message": 'must be a non-empty list of {"segmentId": ...}'}
            )
            return [], []
        out: list[dict[str, Any]] = []
        found: list[Resource] = []
        for i, item in enumerate(value):
            at = f"filter.segments[{i}]"
            if not isinstance(item, dict):
                errors.append({"path": at, "message": 'must be {"segmentId", "segmentNs", "status"}'})
                continue
            errors.extend(
                {"path": f"{at}.{k}", "message": "is not a segment filter field"}
                for k in item
                if k not in _SEGMENT
            )
            if item.get("segmentNs", SEGMENT_NS) != SEGMENT_NS:
                errors.append(
                    {
                        "path": f"{at}.segmentNs",
                        "message": "must be ups (this platform's segment definitions)",
                    }
                )
            statuses = _statuses(item.get("status"), f"{at}.status", errors)
            ident = item.get("segmentId")
            definition = (
                self.definitions.store.get(self.definitions.kind, actor.scope, ident)
                if (isinstance(ident, str) and ident)
                else None
            )
            if definition is None:
                message = f"no segment definition {ident!r} in this sandbox" if ident else "is required"
                errors.append({"path": f"{at}.segmentId", "message": message})
                continue
            if any(s["segmentId"] == definition.id for s in out):
                errors.append({"path": f"{at}.segmentId", "message": "is already in the filter"})
                continue
            out.append({"segmentId": definition.id, "segmentNs": SEGMENT_NS, "status": statuses})
            found.append(definition)
        return out, found

    def _policy(
        self, actor: Actor, value: Any, segments: list[Resource], errors: Errors
    ) -> dict[str, Any] | None:
        if value is None:
            used = sorted({str(s.doc["mergePolicyId"]) for s in segments})
            if len(used) > 1:
                errors.append(
                    {
                        "path": "mergePolicy",
                        "message": "is required: the segments use different merge policies "
                        f"({', '.join(used)}); name the one to merge the exported profiles with",
                    }
                )
                return None
            ident = used[0] if used else str(self.policies.default_policy(actor)["id"])
            return {"id": ident, "version": self._version(actor, ident)}
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"]:
            errors.append({"path": "mergePolicy.id", "message": "is required: a merge policy id"})
            return None
        try:
            policy = self.policies.find(actor, value["id"])
        except NotFound:
            errors.append(
                {"path": "mergePolicy.id", "message": f"no merge policy {value['id']!r} in this sandbox"}
            )
            return None
        version = value.get("version", policy["version"])
        if version != policy["version"] or isinstance(version, bool):
            errors.append(
                {
                    "path": "mergePolicy.version",
                    "message": f"must be the policy's current version ({policy['version']}): "
                    "profiles are merged with the policy as it is now",
                }
            )
            return None
        return {"id": policy["id"], "version": version}

    def _version(self, actor: Actor, ident: str) -> int:
        try:
            return int(self.policies.find(actor, ident)["version"])
        except NotFound:  # deleted since the definition named it: the job fails and says so
            return 1


def _unfit(dataset: Resource, schema: Resource | None) -> str | None:
    if schema is None:
        return "the dataset's schema is gone"
    klass = schema.doc.get("meta:class")
    if klass != PROFILE_CLASS:
        return (
            f"the dataset's schema is of class {klass!r}: an export writes profiles, into a dataset whose "
            f"schema is of the XDM Individual Profile class ({PROFILE_CLASS})"
        )
    tagged = ENABLED in ((dataset.doc.get("tags") or {}).get(PROFILE_TAG) or [])
    if tagged and UNION in (schema.doc.get("meta:immutableTags") or []):
        return (
            "the dataset feeds the Real-Time Customer Profile (tag unifiedProfile enabled:true): the "
            "exported profiles would be merged back into themselves; export into a dataset without that tag"
        )
    return None


def _required(node: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the required fields of a resolved schema (the deepest required ones)."""
    found: list[str] = []
    properties = node.get("properties") or {}
    for name in node.get("required") or []:
        child = properties.get(name)
        if not isinstance(child, dict):
            continue
        below = _required(child, f"{prefix}{name}.")
        found.extend(below or [f"{prefix}{name}"])
    return found


def _unknown_top(key: str) -> str:
    return "is not an export job field; fields are " + ", ".join(sorted(_TOP))


def _schema_name(value: Any, errors: Errors) -> None:
    if value is not None and (not isinstance(value, dict) or value.get("name") != PROFILE_SCHEMA):
        errors.append({"path": "schema.name", "message": f"must be {PROFILE_SCHEMA}"})


def _statuses(value: Any, path: str, errors: Errors) -> list[str]:
    if value is None:
        return list(DEFAULT_MEMBERSHIP)
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in MEMBERSHIP for v in value)
    ):
        errors.append({"path": path, "message": "must be a non-empty list of realized, existing, exited"})
        return []
    return list(dict.fromkeys(value))


def _window(value: Any, errors: Errors) -> dict[str, str]:
    if value is None:
        return {}
    path = "filter.segmentQualificationTime"
    if not isinstance(value, dict) or not value or any(k not in ("startTime", "endTime") for k in value):
        errors.append({"path": path, "message": "must be {startTime, endTime} (either may be left out)"})
        return {}
    window = {k: _moment(v, f"{path}.{k}", errors) for k, v in value.items()}
    start, end = ms(window.get("startTime")), ms(window.get("endTime"))
    if start is not None and end is not None and start > end:
        errors.append({"path": f"{path}.endTime", "message": "must not be before startTime"})
    return window


def _moment(value: Any, path: str, errors: Errors) -> str:
    if ms(value) is None:
        errors.append({"path": path, "message": "must be an RFC 3339 timestamp, e.g. 2024-01-01T00:00:00Z"})
        return ""
    return str(value)


def _evaluation(value: Any, has_segments: bool, errors: Errors) -> bool:
    if value is None:
        return False
    segmentation = value.get("segmentation", False) if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or any(k != "segmentation" for k in value)
        or not isinstance(segmentation, bool)
    ):
        errors.append({"path": "evaluationInfo.segmentation", "message": "must be true or false"})
        return False
    if segmentation and not has_segments:
        errors.append(
            {
                "path": "evaluationInfo.segmentation",
                "message": "true needs filter.segments: the segments to evaluate",
            }
        )
    return segmentation

"""What one profile export job does, as a typed plan read from its stored document.

The API stores a validated request (services/profiles/exportrequest.py) in the job's document, in AEP's
field names; the runner never reads those names: it reads an :class:`ExportPlan`. Statuses of the
request's ``filter.segments[].status`` are AEP's (``realized``, ``existing``, ``exited``); the plan holds
the profile store's (``realized`` for the first two: the store does not tell a profile that just entered
from one that stays, both are in the segment now; ``exited``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from headwater.stores.metadata import Resource, Scope
from headwater.stores.profiles.base import EXITED, REALIZED

KIND = "profileExportJob"
CODE = "UPS-1400-400"
NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED = "NEW", "PROCESSING", "SUCCEEDED", "FAILED", "CANCELLED"
STATUSES = (NEW, PROCESSING, SUCCEEDED, FAILED, CANCELLED)
ENDED = frozenset({SUCCEEDED, FAILED, CANCELLED})
#: AEP's membership statuses a filter may name, and the store's status each selects.
MEMBERSHIP = {"realized": REALIZED, "existing": REALIZED, "exited": EXITED}
DEFAULT_MEMBERSHIP = ("realized", "existing")  # AEP's default: every profile in the segment now
SEGMENT_NS = "ups"
PROFILE_CLASS = "https://ns.adobe.com/xdm/context/profile"
PROFILE_SCHEMA = "_xdm.context.profile"
#: The snapshot property that names the job in its commit (once per job, whatever the attempts).
CHECKPOINT_KEY = "exportJobKey"


@dataclass(frozen=True)
class SegmentFilter:
    """One segment of the export and the store statuses of its members that are exported."""

    segment_id: str
    statuses: frozenset[str]


@dataclass(frozen=True)
class ExportPlan:
    job_id: str
    key: str  # unique per job: the commit's checkpoint names it
    scope: Scope
    sandbox_name: str
    dataset_id: str
    schema_id: str
    merge_policy_id: str
    fields: tuple[str, ...]  # dotted paths; empty: every attribute
    segments: tuple[SegmentFilter, ...]  # empty: every profile of the sandbox
    empty_profiles: bool  # profiles with events only are exported too
    qualified_from_ms: int | None  # segmentQualificationTime.startTime
    qualified_to_ms: int | None  # segmentQualificationTime.endTime
    updated_after_ms: int | None  # fromIngestTimestamp: profiles updated after it
    evaluate: bool  # evaluationInfo.segmentation: evaluate the segments first

    @classmethod
    def of(cls, job: Resource) -> ExportPlan:
        d = job.doc
        flt = d.get("filter") or {}
        window = flt.get("segmentQualificationTime") or {}
        segments = tuple(
            SegmentFilter(s["segmentId"], frozenset(MEMBERSHIP[x] for x in s["status"]))
            for s in flt.get("segments") or []
        )
        return cls(
            job_id=job.id,
            key=d["key"],
            scope=job.scope,
            sandbox_name=str(d.get("sandboxName") or ""),
            dataset_id=d["destination"]["datasetId"],
            schema_id=d["schemaId"],
            merge_policy_id=d["mergePolicy"]["id"],
            fields=_fields(d),
            segments=segments,
            empty_profiles=bool(flt.get("emptyProfiles")),
            qualified_from_ms=ms(window.get("startTime")),
            qualified_to_ms=ms(window.get("endTime")),
            updated_after_ms=ms(flt.get("fromIngestTimestamp")),
            evaluate=bool((d.get("evaluationInfo") or {}).get("segmentation")),
        )


def _fields(doc: dict[str, Any]) -> tuple[str, ...]:
    """The paths to export: the request's ``fields`` and the schema's required fields; none (every
    attribute) when the request names no fields."""
    asked = [p for p in str(doc.get("fields") or "").split(",") if p]
    if not asked:
        return ()
    return tuple(dict.fromkeys([*asked, *(doc.get("requiredFields") or [])]))


def ms(value: Any) -> int | None:
    """Epoch ms of an RFC 3339 timestamp (``Z`` or an offset required), None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1000)

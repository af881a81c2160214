"""Segment jobs (``/data/core/ups/segment/jobs``): one batch evaluation of some segment definitions over
every profile of the sandbox, in AEP's job shape.

``POST {"segments": [{"segmentId": ...}]}`` (``"*"`` for every batch-enabled definition) stores the job
as ``NEW`` and signals this process's runner (runtime/segmentjobs.py); runners of other processes find
it at their next poll. A runner claims the job (``PROCESSING``, with a lease: a job whose runner died is
claimed again once the lease expires), evaluates it (services/segments/evaluation.py) and ends it
``SUCCEEDED`` with its metrics, or ``FAILED`` with its errors. A claim is an update conditional on the
etag, so two runners never both evaluate a job.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from headwater.errors import ValidationFailed
from headwater.services import access
from headwater.services.ids import now_ms
from headwater.services.pendingjobs import PendingJobs
from headwater.services.resources import Built, Collection, require_object
from headwater.services.runs import QueuedSignal
from headwater.services.segments.definitions import SegmentDefinitions, sandbox_doc
from headwater.services.segments.evaluation import SandboxResult, Segments
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource

log = logging.getLogger("headwater.segments")

KIND = "segmentJob"
CODE = "UPS-1400-400"
NEW, QUEUED, PROCESSING, SUCCEEDED, FAILED = "NEW", "QUEUED", "PROCESSING", "SUCCEEDED", "FAILED"
STATUSES = (NEW, QUEUED, PROCESSING, SUCCEEDED, FAILED)
LEASE_MS = 30 * 60 * 1000  # a job runs at most this long before another runner may take it over
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
ALL = "*"


_OPEN = (NEW, QUEUED, PROCESSING)


class SegmentJobs(Collection):
    kind = KIND
    label = "segment job"
    service = "UPS"

    def __init__(self, store: MetadataStore, definitions: SegmentDefinitions, segments: Segments) -> None:
        super().__init__(store)
        self.definitions = definitions
        self.segments = segments
        self.created = QueuedSignal()  # a job was created in this process
        self.pending = PendingJobs(store, self.kind, lambda job: job.doc.get("status") in _OPEN)

    # --- the API ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        actor.require(access.MANAGE_SEGMENTS, "start segment jobs")
        resource = super().create(actor, require_object(body), ident)
        self.pending.mark(resource)
        self.created.notify()
        return resource

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        return self.render(self.get(actor, ident))

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /segment/jobs``: newest first; ``start`` (an offset), ``limit`` (20, at most 100),
        ``status``. AEP's page shape."""
        start, limit, status = 0, DEFAULT_LIMIT, None
        for key, value in params:
            if key == "start":
                start = _int(key, value, 0, 10**9)
            elif key == "limit":
                limit = _int(key, value, 1, MAX_LIMIT)
            elif key == "status":
                if value.upper() not in STATUSES:
                    raise _bad("status", "must be one of " + ", ".join(STATUSES))
                status = value.upper()
        items = self.store.list(self.kind, actor.scope, descending=True).items
        docs = [self.render(r) for r in items if status is None or r.doc["status"] == status]
        page = docs[start : start + limit]
        following = start + limit if start + limit < len(docs) else None
        return {
            "_page": {
                "totalCount": len(docs),
                "pageSize": len(page),
                "start": str(start),
                "next": str(following) if following is not None else "",
            },
            "children": page,
            "_links": {
                "next": {"href": f"?start={following}&limit={limit}"} if following is not None else {}
            },
        }

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        segments = body.get("segments")
        if not isinstance(segments, list) or not segments:
            raise _bad("segments", 'is required: a list of {"segmentId": ...}')
        ids: list[str] = []
        errors = []
        for i, item in enumerate(segments):
            ident = item.get("segmentId") if isinstance(item, dict) else None
            if not isinstance(ident, str) or not ident:
                errors.append(
                    {"path": f"segments[{i}].segmentId", "message": "must be a segment definition id"}
                )
            elif ident != ALL and self.store.get(self.definitions.kind, actor.scope, ident) is None:
                errors.append(
                    {"path": f"segments[{i}].segmentId", "message": f"no segment definition {ident!r}"}
                )
            elif ident not in ids:
                ids.append(ident)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        if ALL in ids:
            ids = [d.id for d in self.definitions.definitions(actor.scope) if d.batch]
        doc = {
            "status": NEW,
            "segmentIds": ids,
            "sandboxType": actor.sandbox.type,
            "metrics": {},
            "errors": [],
        }
        return Built(doc=doc)

    # --- the runner's side ---
    def claim_next(self, worker: str) -> Resource | None:
        """Claim the oldest job that is NEW, or PROCESSING with an expired lease; None when there is none."""
        now = now_ms()
        for job in self.pending.candidates():
            status, lease = job.doc.get("status"), int(job.doc.get("leaseUntil") or 0)
            if status in (NEW, QUEUED) or (status == PROCESSING and lease < now):
                claimed = self.save_if_unchanged(
                    job, status=PROCESSING, worker=worker, leaseUntil=now + LEASE_MS, startedAt=now
                )
                if claimed is not None:
                    return claimed
        return None

    def run(self, job: Resource) -> Resource | None:
        """Evaluate a claimed job and record how it ended (None when another runner took it over)."""
        started = now_ms()
        clock = time.monotonic()
        try:
            definitions = self.definitions.definitions(job.scope, list(job.doc["segmentIds"]))
            result = self.segments.evaluate_sandbox(job.scope, definitions, started)
        except Exception as exc:  # the job fails, the runner goes on
            log.exception("segment job %s failed", job.id)
            error = {"code": "UPS-1500-500", "msg": f"{type(exc).__name__}: {exc}", "type": "Error"}
            return self.save_if_unchanged(job, status=FAILED, errors=[error], leaseUntil=0)
        ended = started + int((time.monotonic() - clock) * 1000)
        metrics = _metrics(result, started, ended)
        missing = [i for i in job.doc["segmentIds"] if i not in result.segments]
        errors = [
            {"code": "UPS-1404-404", "msg": f"segment definition {i} was deleted", "type": "Warning"}
            for i in missing
        ]
        return self.save_if_unchanged(job, status=SUCCEEDED, metrics=metrics, errors=errors, leaseUntil=0)

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        found = self.store.get_many(self.definitions.kind, resource.scope, d["segmentIds"])
        segments = []
        for ident in d["segmentIds"]:
            entry: dict[str, Any] = {"segmentId": ident}
            definition = found.get(ident)
            if definition is not None:
                entry["segment"] = {
                    "id": ident,
                    "expression": definition.doc["expression"],
                    "mergePolicyId": definition.doc["mergePolicyId"],
                    "mergePolicy": {"id": definition.doc["mergePolicyId"], "version": 1},
                }
            segments.append(entry)
        return {
            "id": resource.id,
            "imsOrgId": resource.scope.org_id,
            "sandbox": sandbox_doc(resource),
            "profileInstanceId": "ups",
            "source": "api",
            "status": d["status"],
            "segments": segments,
            "metrics": d.get("metrics") or {},
            "errors": d.get("errors") or [],
            "requestId": resource.id,
            "creationTime": resource.created_at,
            "updateTime": resource.updated_at,
            "updateEpoch": resource.updated_at // 1000,
        }


def _metrics(result: SandboxResult, started: int, ended: int) -> dict[str, Any]:
    segmentation_start = ended - result.evaluation_ms
    return {
        "totalTime": {"startTimeInMs": started, "endTimeInMs": ended, "totalTimeInMs": ended - started},
        "profileSegmentationTime": {
            "startTimeInMs": segmentation_start,
            "endTimeInMs": ended,
            "totalTimeInMs": result.evaluation_ms,
        },
        "totalProfiles": result.profiles,
        "segmentedProfileCounter": {i: r.qualified for i, r in result.segments.items()},
        "segmentedProfileByStatusCounter": {
            i: {"realized": r.qualified, "exited": r.exited} for i, r in result.segments.items()
        },
        "segmentTransitionCounter": {
            i: {"realized": r.realized, "exited": r.exited} for i, r in result.segments.items()
        },
    }


def _int(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise _bad(key, f"must be a whole number from {low} to {high}")
    return int(value)


def _bad(path: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"path": path, "message": message}], code=CODE)

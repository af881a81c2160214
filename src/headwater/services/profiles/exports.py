"""Profile export jobs (``/data/core/ups/export/jobs``): an audience's members (or every profile of the
sandbox) written, merged, into a dataset, in AEP's job shape.

``POST`` validates the request (services/profiles/exportrequest.py), stores the job ``NEW`` with the next
integer id of the sandbox (AEP's ids are integers) and signals this process's runner
(runtime/exportjobs.py); runners of other processes find it at their next poll. A runner claims the job
(``PROCESSING`` with a lease and an attempt token: a job whose runner died is claimed again once the lease
expires), writes the rows, and ends it ``SUCCEEDED`` with ``destination.batchId`` and its metrics, or
``FAILED`` with its errors. The rows and the job's key are committed together, once (the commit's
checkpoint), so a retried or taken-over job never writes its rows twice.

``DELETE`` cancels: a ``NEW`` job ends ``CANCELLED`` at once; a ``PROCESSING`` one is marked and ends
``CANCELLED`` before its commit, or ``SUCCEEDED`` if its rows were committed already. A job that has ended
is kept (it records where profiles went) and the answer says it could not be cancelled.

Creating a job needs ``view-profiles`` (it copies merged profiles, personal data, into a dataset that
anyone with ``read`` can query) and ``manage-segments`` (it activates audiences); cancelling needs
``manage-segments``; reading jobs, ``read``: a job holds ids, fields and counts, no profile data.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from headwater.errors import Conflict, NotFound, ValidationFailed
from headwater.services import access
from headwater.services.ids import new_etag, now_ms
from headwater.services.pendingjobs import PendingJobs
from headwater.services.profiles.exportplan import (
    CANCELLED,
    CODE,
    ENDED,
    KIND,
    NEW,
    PROCESSING,
    STATUSES,
)
from headwater.services.profiles.exportrequest import ExportRequests
from headwater.services.resources import Built, Collection, require_object, system_fields
from headwater.services.runs import QueuedSignal
from headwater.services.tenancy import Actor
from headwater.stores.metadata import AlreadyExists, MetadataStore, Resource

LEASE_MS = 30 * 60 * 1000  # a job runs at most this long before another runner may take it over
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
_ID_ATTEMPTS = 20
_SAVE_ATTEMPTS = 10
_DIGITS = re.compile(r"[0-9]{1,18}")


class ProfileExportJobs(Collection):
    kind = KIND
    label = "export job"
    service = "UPS"

    def __init__(self, store: MetadataStore, requests: ExportRequests) -> None:
        super().__init__(store)
        self.requests = requests
        self.created = QueuedSignal()  # a job was created in this process
        self.pending = PendingJobs(store, self.kind, lambda job: job.doc.get("status") in (NEW, PROCESSING))

    # --- the API ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        """Validate and store a job (``NEW``) under the sandbox's next integer id."""
        actor.require(access.VIEW_PROFILES, "export profiles")
        actor.require(access.MANAGE_SEGMENTS, "export audiences")
        doc = self.build(actor, require_object(body), None).doc
        number = int(ident) if ident and _whole(ident) else self._next_id(actor)
        now = now_ms()
        for _ in range(_ID_ATTEMPTS):
            name = str(number)
            stored = {**doc, **system_fields(actor, name, now, now, created_by=None)}
            resource = Resource(
                self.kind, name, actor.scope, stored, new_etag(), created_at=now, updated_at=now
            )
            try:
                self.store.insert(resource)
            except AlreadyExists:  # another request took this id at the same moment
                number += 1
                continue
            self.pending.mark(resource)
            self.created.notify()
            return resource
        raise Conflict("Too many export jobs are being created at once; retry.", code="UPS-1409-409")

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        doc = self.requests.document(actor, body)
        doc["key"] = uuid.uuid4().hex
        return Built(doc=doc)

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        return self.render(self.get(actor, ident))

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /export/jobs``: newest first; ``limit`` (20, at most 100), ``offset`` (the
        ``page.pageOffset`` of the previous page: jobs created before it), ``status``. AEP's shape:
        ``{"records", "page", "link"}``."""
        limit, before, status = DEFAULT_LIMIT, None, None
        for key, value in params:
            if key == "limit":
                if not _whole(value) or not 1 <= int(value) <= MAX_LIMIT:
                    raise _bad("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
                limit = int(value)
            elif key == "offset":
                before = _offset(value)
            elif key == "status":
                if value.upper() not in STATUSES:
                    raise _bad("status", "must be one of " + ", ".join(STATUSES))
                status = value.upper()
        items = self.store.list(self.kind, actor.scope, descending=True).items
        ranked = sorted(items, key=lambda r: (r.created_at, _number(r.id)), reverse=True)
        kept = [
            r
            for r in ranked
            if (status is None or r.doc["status"] == status)
            and (before is None or (r.created_at, _number(r.id)) < before)
        ]
        page = kept[:limit]
        offset = f"{page[-1].created_at}_{page[-1].id}" if page else ""
        more = len(kept) > limit
        return {
            "records": [self.render(r) for r in page],
            "page": {
                "sortField": "createdTime",
                "sort": "desc",
                "pageOffset": offset,
                "pageSize": len(page),
            },
            "link": {"next": f"/export/jobs/?limit={limit}&offset={offset}" if more else ""},
        }

    def cancel(self, actor: Actor, ident: str) -> dict[str, Any]:
        """``DELETE /export/jobs/{id}``: AEP's answer, ``{"status": true, "message"}`` when the job was
        marked for cancelling; ``status: false`` when it had ended already (nothing changes)."""
        actor.require(access.MANAGE_SEGMENTS, "cancel export jobs")
        for _ in range(_SAVE_ATTEMPTS):
            job = self.get(actor, ident)
            status = job.doc["status"]
            if status in ENDED:
                return {"status": False, "message": f"Export job has already ended ({status}): not cancelled"}
            changes: dict[str, Any] = (
                {"status": CANCELLED, "leaseUntil": 0} if status == NEW else {"cancelRequested": True}
            )
            if self.save_if_unchanged(job, **changes) is not None:
                return {"status": True, "message": "Export job has been marked for cancelling"}
        raise Conflict("The export job kept changing while it was cancelled; retry.", code="UPS-1409-409")

    def get(self, actor: Actor, ident: str) -> Resource:
        if not _whole(ident):  # AEP's ids are integers: another id names no job
            raise self.not_found(ident)
        return super().get(actor, ident)

    def not_found(self, ident: str) -> NotFound:
        return NotFound(
            f"No export job with id {ident!r} in this organization and sandbox.",
            code="UPS-1404-404",
            report={"id": ident, "type": self.label},
        )

    # --- the runner's side ---
    def claim_next(self, worker: str) -> Resource | None:
        """Claim the oldest job that is NEW, or PROCESSING with an expired lease; None when there is
        none. The claim gives the job a new attempt token: a runner whose lease was taken over cannot
        save over the new attempt (:meth:`save`)."""
        now = now_ms()
        for job in self.pending.candidates():
            status, lease = job.doc.get("status"), int(job.doc.get("leaseUntil") or 0)
            if status == NEW or (status == PROCESSING and lease < now):
                changes = {
                    "status": PROCESSING,
                    "worker": worker,
                    "attempt": uuid.uuid4().hex,
                    "leaseUntil": now + LEASE_MS,
                    "startedAt": int(job.doc.get("startedAt") or now),
                }
                claimed = self.save_if_unchanged(job, **changes)
                if claimed is not None:
                    return claimed
        return None

    def save(self, job: Resource, **changes: Any) -> Resource | None:
        """``changes`` to a job this attempt holds, kept over a concurrent cancel (which only marks the
        job); None when another attempt holds the job now (this one must stop)."""
        attempt = job.doc.get("attempt")
        for _ in range(_SAVE_ATTEMPTS):
            saved = self.save_if_unchanged(job, **changes)
            if saved is not None:
                return saved
            fresh = self.store.get(self.kind, job.scope, job.id)
            if fresh is None or fresh.doc.get("attempt") != attempt:
                return None
            job = fresh
        return None

    def current(self, job: Resource) -> Resource:
        """The job as stored now (itself when it is gone)."""
        return self.store.get(self.kind, job.scope, job.id) or job

    def _next_id(self, actor: Actor) -> int:
        newest = self.store.list(self.kind, actor.scope, descending=True, limit=1).items
        return _number(newest[0].id) + 1 if newest else 1

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        out: dict[str, Any] = {
            "id": _number(resource.id),
            "jobType": "BATCH",
            "profileInstanceId": "ups",
            "imsOrgId": resource.scope.org_id,
            "destination": d["destination"],
            "schema": d["schema"],
            "status": d["status"],
            "filter": d["filter"],
            "mergePolicy": d["mergePolicy"],
            "evaluationInfo": d["evaluationInfo"],
            "metrics": d.get("metrics") or {"totalTime": {"startTimeInMs": resource.created_at}},
            "errors": d.get("errors") or [],
            "computeGatewayJobId": {"exportJob": d["key"]},
            "creationTime": resource.created_at,
            "updateTime": resource.updated_at,
            "requestId": d["key"],
        }
        if d.get("fields"):
            out["fields"] = d["fields"]
        return out


def _whole(text: str) -> bool:
    """A whole number in ASCII digits (``str.isdigit`` takes "²" too, which ``int`` refuses)."""
    return _DIGITS.fullmatch(text) is not None


def _number(ident: str) -> int:
    return int(ident) if _whole(ident) else 0


def _offset(value: str) -> tuple[int, int]:
    created, _, ident = value.partition("_")
    if not _whole(created) or not _whole(ident):
        raise _bad("offset", "is not a page offset this API gave (take it from page.pageOffset)")
    return int(created), int(ident)


def _bad(path: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"path": path, "message": message}], code=CODE)

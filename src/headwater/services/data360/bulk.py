"""Bulk ingestion jobs: CSV files uploaded into a job, then published to the object's data stream.

States: Open (accepts uploads) -> UploadComplete (closed by the client) -> InProgress -> JobComplete or
Failed; Open or UploadComplete -> Aborted (the uploaded files are deleted). A job names an object
(an event's developer name) of a source (a connector's developer name or Source ID) in the data space
of the caller's ingestion token, and an operation: ``upsert`` (CSV with a header naming fields of the
object) or ``delete`` (CSV without a header: the primary key, then an optional record-modified date).

Each upload is checked whole when it arrives (header, every row, every value) and refused with a 400
naming the line and field, so processing only publishes. Files live under
``HOME/ingest-jobs/{org}/{sandbox}/{job}/`` (with the lake on S3 ``<HEADWATER_LAKE_URL>/_ingestjobs/…``,
seen by every node: services/data360/bulkfiles.py) until the job is aborted or deleted.

Processing runs in a background thread of the API process (:meth:`BulkJobs.start`). A closed job gets a
small ``data360IngestJobPending`` marker; the thread claims a job by an optimistic update to InProgress
with a lease, publishes its rows chunk by chunk and records its position after each chunk, so another
process (or this one after a restart) resumes an unfinished job after its lease expires. A resumed chunk
may be published twice; the data stream's upsert key (Profile) or dedup path (Engagement) drops the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.errors import Conflict, NotFound, ValidationFailed
from headwater.services.data360.bulkcsv import check_csv, read_rows
from headwater.services.data360.bulkfiles import JobFiles
from headwater.services.data360.ingest import CODE
from headwater.services.data360.lookup import EventRoute, IngestLookup
from headwater.services.ids import new_etag, new_hex, new_uuid, now_ms
from headwater.services.runs import iso
from headwater.stores.metadata import AlreadyExists, Resource, Scope, StaleWrite

if TYPE_CHECKING:
    from headwater.services.streaming import Streams
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore

log = logging.getLogger("headwater.data360.bulk")

KIND = "data360IngestJob"
PENDING = "data360IngestJobPending"
OPEN, UPLOAD_COMPLETE, IN_PROGRESS = "Open", "UploadComplete", "InProgress"
COMPLETE, FAILED, ABORTED = "JobComplete", "Failed", "Aborted"
OPERATIONS = ("upsert", "delete")
MAX_FILES = 100
MAX_FILE_BYTES = 150 * 1024 * 1024
MAX_ERRORS = 20
CHUNK_ROWS = 5_000
LEASE_MS = 30_000
POLL_SECONDS = 2.0


class BulkJobs:
    def __init__(
        self, store: MetadataStore, settings: Settings, streams: Streams, lookup: IngestLookup
    ) -> None:
        self.store = store
        self.settings = settings
        self.streams = streams
        self.lookup = lookup
        self.files = JobFiles(settings, MAX_FILE_BYTES)
        self.owner = f"bulk-{os.getpid()}-{new_hex(4)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # --- the API ---
    def create(self, scope: Scope, username: str, body: Any) -> Resource:
        errors: list[dict[str, str]] = []
        body = body if isinstance(body, dict) else {}
        obj, source, operation = body.get("object"), body.get("sourceName"), body.get("operation")
        for key, value in (("object", obj), ("sourceName", source)):
            if not isinstance(value, str) or not value:
                errors.append({"path": key, "message": "is required (a string)"})
        if not isinstance(operation, str) or operation.lower() not in OPERATIONS:
            errors.append({"path": "operation", "message": "must be upsert or delete"})
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert isinstance(obj, str) and isinstance(source, str) and isinstance(operation, str)
        route = self.lookup.route(scope, source, obj)
        if route is None:
            raise ValidationFailed(
                [
                    {
                        "path": "object",
                        "message": f"no data stream of this data space receives object {obj!r} of source "
                        f"{source!r} (source: a connector's developer name or Source ID)",
                    }
                ],
                code=CODE,
            )
        if operation.lower() == "delete" and not route.deletes:
            raise ValidationFailed(
                [
                    {
                        "path": "operation",
                        "message": f"{route.category} object {obj!r} does not accept deletes",
                    }
                ],
                code=CODE,
            )
        now = now_ms()
        doc = {
            "object": obj,
            "sourceName": source,
            "operation": operation.lower(),
            "state": OPEN,
            "createdById": username,
            "createdDate": now,
            "systemModstamp": now,
            "flowId": route.flow_id,
            "dataStreamId": route.stream_id,
            "batches": [],
            "progress": {"batch": 0, "rows": 0},
            "numberRecordsProcessed": 0,
        }
        job = Resource(KIND, new_uuid(), scope, doc, new_etag(), None, None, now, now)
        self.store.insert(job)
        return job

    def get(self, scope: Scope, ident: str) -> Resource:
        job = self.store.get(KIND, scope, ident) if "\x00" not in ident else None
        if job is None:
            raise NotFound(
                f"No ingestion job {ident!r} in this data space.",
                code="INGEST-1404-404",
                report={"id": ident, "type": "job"},
            )
        return job

    def list(self, scope: Scope, params: dict[str, str]) -> dict[str, Any]:
        jobs = self.store.list(KIND, scope, order="createdAt").items
        state = params.get("state")
        if state:
            jobs = [j for j in jobs if j.doc["state"] == state]
        limit = _int(params.get("limit"), 100, "limit", 1, 1000)
        offset = _int(params.get("offset"), 0, "offset", 0, 10**9)
        page = jobs[offset : offset + limit]
        return {
            "data": [render(j) for j in page],
            "done": offset + limit >= len(jobs),
            "nextRecordsUrl": None,
        }

    async def upload(self, scope: Scope, ident: str, chunks: AsyncIterator[bytes]) -> Resource:
        """One CSV file into an Open job: stored, then checked whole, then added to the job."""
        import anyio.to_thread

        job = await anyio.to_thread.run_sync(self.get, scope, ident)
        _require_open(job)
        if len(job.doc["batches"]) >= MAX_FILES:
            raise Conflict(
                f"Job {ident} already has {MAX_FILES} files, the most a job takes.", code="INGEST-1409-409"
            )
        name = f"batch-{now_ms()}-{new_hex(4)}.csv"
        route = await anyio.to_thread.run_sync(self._route, job)
        operation = job.doc["operation"]
        size, rows = await self.files.store(
            scope, ident, name, chunks, lambda source: check_csv(source, route, operation)
        )
        try:
            return await anyio.to_thread.run_sync(self._save, job, lambda d: _add_batch(d, name, rows, size))
        except BaseException:
            await anyio.to_thread.run_sync(self.files.remove, scope, ident, name)
            raise

    def set_state(self, scope: Scope, ident: str, body: Any) -> Resource:
        wanted = body.get("state") if isinstance(body, dict) else None
        if wanted not in (UPLOAD_COMPLETE, ABORTED):
            raise ValidationFailed(
                [{"path": "state", "message": "must be UploadComplete (close the job) or Aborted"}], code=CODE
            )
        job = self.get(scope, ident)
        allowed = {UPLOAD_COMPLETE: (OPEN,), ABORTED: (OPEN, UPLOAD_COMPLETE)}[wanted]

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["state"] not in allowed:
                raise Conflict(
                    f"Job {ident} is {doc['state']}; it can become {wanted} only from "
                    f"{' or '.join(allowed)}.",
                    code="INGEST-1409-409",
                    report={"state": doc["state"]},
                )
            return {**doc, "state": wanted}

        job = self._save(job, change)
        if wanted == UPLOAD_COMPLETE:
            with contextlib.suppress(AlreadyExists):
                self.store.insert(
                    Resource(PENDING, job.id, scope, {}, new_etag(), None, None, now_ms(), now_ms())
                )
            self.ensure_started()
            self._wake.set()
        else:
            self._forget(scope, job.id)
        return job

    def delete(self, scope: Scope, ident: str) -> None:
        job = self.get(scope, ident)
        if job.doc["state"] == IN_PROGRESS:
            raise Conflict(
                f"Job {ident} is being processed; delete it once it is complete.", code="INGEST-1409-409"
            )
        self.store.delete(KIND, scope, ident)
        self._forget(scope, ident)

    def folder(self, scope: Scope, ident: str) -> Path:
        """The job's folder in the home (with the lake on a disk)."""
        return self.files.folder(scope, ident)

    def _forget(self, scope: Scope, ident: str) -> None:
        self.files.forget(scope, ident)
        self.store.delete(PENDING, scope, ident)

    def _route(self, job: Resource) -> EventRoute:
        route = self.lookup.route(job.scope, job.doc["sourceName"], job.doc["object"])
        if route is None or route.flow_id != job.doc["flowId"]:
            raise Conflict(
                f"The data stream of object {job.doc['object']!r} no longer exists in this data space.",
                code="INGEST-1410-409",
            )
        return route

    def _save(self, job: Resource, change: Any) -> Resource:
        """Apply ``change(doc) -> doc`` with optimistic concurrency, re-reading on conflicts."""
        for _ in range(20):
            doc = change(dict(job.doc))
            doc["systemModstamp"] = now_ms()
            updated = Resource(
                KIND, job.id, job.scope, doc, new_etag(), None, None, job.created_at, doc["systemModstamp"]
            )
            try:
                self.store.update(updated, job.etag)
                return updated
            except StaleWrite:
                job = self.get(job.scope, job.id)
        raise Conflict(f"Job {job.id} is changing too often; retry.", code="INGEST-1409-409")

    # --- processing ---
    def ensure_started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="headwater-bulk-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.step()
            except Exception:
                log.exception("bulk job processing failed; retrying")
            if not busy:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def step(self) -> bool:
        """Process one claimable job; False when there was none."""
        now = now_ms()
        for marker in self.store.scan_kind(PENDING):
            if self._stop.is_set():
                return False
            job = self.store.get(KIND, marker.scope, marker.id)
            if job is None or job.doc["state"] in (COMPLETE, FAILED, ABORTED):
                self.store.delete(PENDING, marker.scope, marker.id)
                continue
            lease = job.doc.get("lease") or {}
            claimable = job.doc["state"] == UPLOAD_COMPLETE or (
                job.doc["state"] == IN_PROGRESS and int(lease.get("until") or 0) < now
            )
            if not claimable:
                continue
            claimed = self._claim(job)
            if claimed is not None:
                self._process(claimed)
                return True
        return False

    def _claim(self, job: Resource) -> Resource | None:
        doc = {
            **job.doc,
            "state": IN_PROGRESS,
            "lease": {"owner": self.owner, "until": now_ms() + LEASE_MS},
            "startedAt": job.doc.get("startedAt") or now_ms(),
            "retries": int(job.doc.get("retries") or 0) + (1 if job.doc["state"] == IN_PROGRESS else 0),
            "systemModstamp": now_ms(),
        }
        updated = Resource(
            KIND, job.id, job.scope, doc, new_etag(), None, None, job.created_at, doc["systemModstamp"]
        )
        try:
            self.store.update(updated, job.etag)
        except StaleWrite:
            return None
        return updated

    def _process(self, job: Resource) -> None:
        try:
            job = self._publish_all(job)
        except LostLease:
            return
        except Exception as exc:
            log.exception("bulk job %s failed", job.id)
            message = str(exc.detail) if hasattr(exc, "detail") else f"{type(exc).__name__}: {exc}"
            self._finish(job, FAILED, message)
            return
        if job.doc["state"] == IN_PROGRESS and not self._stop.is_set():
            self._finish(job, COMPLETE, None)

    def _publish_all(self, job: Resource) -> Resource:
        route = self._route(job)
        kind = "delete" if job.doc["operation"] == "delete" else "raw"
        batches = job.doc["batches"]
        position = dict(job.doc["progress"])
        while position["batch"] < len(batches) and not self._stop.is_set():
            path = self.files.source(job.scope, job.id, batches[position["batch"]]["file"])
            for records, done in read_rows(path, route, kind, skip=position["rows"]):
                asyncio.run(self.streams.publish(job.scope, route.flow_id, records, kind=kind))
                position = {"batch": position["batch"], "rows": done}
                job = self._save(job, lambda d, p=position: _progress(d, p, self.owner))
                if self._stop.is_set():
                    return job
            position = {"batch": position["batch"] + 1, "rows": 0}
            job = self._save(job, lambda d, p=position: _progress(d, p, self.owner))
        return job

    def _finish(self, job: Resource, state: str, message: str | None) -> None:
        def change(doc: dict[str, Any]) -> dict[str, Any]:
            started = int(doc.get("startedAt") or now_ms())
            doc = {**doc, "state": state, "totalProcessingTime": now_ms() - started}
            doc.pop("lease", None)
            if message:
                doc["errorMessage"] = message
            return doc

        job = self._save(job, change)
        self.store.delete(PENDING, job.scope, job.id)


class LostLease(Exception):
    """Another processor took the job over (this one was too slow to renew its lease)."""


def _progress(doc: dict[str, Any], position: dict[str, int], owner: str) -> dict[str, Any]:
    if doc["state"] != IN_PROGRESS or (doc.get("lease") or {}).get("owner") != owner:
        raise LostLease(doc.get("state"))
    processed = sum(b["rows"] for b in doc["batches"][: position["batch"]]) + position["rows"]
    return {
        **doc,
        "progress": position,
        "numberRecordsProcessed": processed,
        "lease": {"owner": owner, "until": now_ms() + LEASE_MS},
    }


def _add_batch(doc: dict[str, Any], name: str, rows: int, size: int) -> dict[str, Any]:
    if doc["state"] != OPEN:
        raise Conflict(
            f"The job became {doc['state']} during the upload; the file was not added.",
            code="INGEST-1409-409",
        )
    return {**doc, "batches": [*doc["batches"], {"file": name, "rows": rows, "bytes": size}]}


def _require_open(job: Resource) -> None:
    if job.doc["state"] != OPEN:
        raise Conflict(
            f"Job {job.id} is {job.doc['state']}: files can be uploaded only while it is Open.",
            code="INGEST-1409-409",
            report={"state": job.doc["state"]},
        )


def render(job: Resource) -> dict[str, Any]:
    d = job.doc
    out = {
        "id": job.id,
        "object": d["object"],
        "sourceName": d["sourceName"],
        "operation": d["operation"],
        "state": d["state"],
        "contentType": "CSV",
        "apiVersion": "v1",
        "contentUrl": f"api/v1/ingest/jobs/{job.id}/batches",
        "createdById": d["createdById"],
        "createdDate": iso(d["createdDate"]),
        "systemModstamp": iso(d["systemModstamp"]),
        "numberOfFiles": len(d["batches"]),
        "numberRecordsUploaded": sum(b["rows"] for b in d["batches"]),
        "numberRecordsProcessed": d.get("numberRecordsProcessed", 0),
        "retries": d.get("retries", 0),
        "totalProcessingTime": d.get("totalProcessingTime", 0),
    }
    if d.get("errorMessage"):
        out["errorMessage"] = d["errorMessage"]
    return out


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ValidationFailed(
            [{"path": name, "message": f"must be an integer from {low} to {high}"}], code=CODE
        )
    return number

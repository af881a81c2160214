"""Runs profile export jobs: the export's profiles as rows of the destination dataset's Iceberg table,
committed once, and recorded as a catalog batch of the dataset.

One attempt at a claimed job (:class:`ExportExecution`):

1. the job's catalog batch: created (``loading``) and its id saved as ``destination.batchId`` before any
   row is written; an attempt that takes over a job reuses it;
2. if the table already has a snapshot whose checkpoint names the job's key, an earlier attempt
   committed and died before its bookkeeping: the batch and the job are completed from that checkpoint,
   and nothing is written again;
3. otherwise (the segments evaluated first with ``evaluationInfo.segmentation``) the profiles are read in
   chunks, merged and shaped (services/profiles/exportrows.py), mapped onto the dataset's schema by the
   schema's identity mapping (fields the schema lacks are dropped; a record that does not conform is a row
   error of the batch, with its reason) and written as data files;
4. one commit adds the files with the checkpoint ``{exportJobKey, exportJobId, batchId, counts}``, once
   per key (``Lake.commit(once_per=...)``: Iceberg's compare-and-swap makes two attempts of one job unable
   to both commit); a job cancelled before this point ends ``CANCELLED`` and commits nothing, and an
   attempt whose job was taken over meanwhile (its lease ran out) stops without committing;
5. the batch succeeds (its snapshot and counts), then the job (``SUCCEEDED``, its metrics).

A crash anywhere leaves either no commit (the next attempt writes everything again; data files of the
dead attempt are never referenced) or the commit (the next attempt only completes the bookkeeping).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from headwater.errors import HeadwaterError, NotFound
from headwater.faults import crash_point
from headwater.runtime.segmentjobs import JobRunner
from headwater.runtime.streammessages import _map
from headwater.services.ids import now_ms
from headwater.services.ledger import save_document
from headwater.services.profiles.exportplan import (
    CANCELLED,
    CHECKPOINT_KEY,
    FAILED,
    SUCCEEDED,
    ExportPlan,
)
from headwater.services.profiles.exportrows import ExportRows
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource
from headwater.stores.rowerrors import RowErrorFiles, RowErrorWriter

if TYPE_CHECKING:
    from headwater.lake.iceberg import Checkpoint, Lake
    from headwater.services.merge_policies import MergePolicies
    from headwater.services.profiles.exports import ProfileExportJobs
    from headwater.services.runs import Batches, QueuedSignal
    from headwater.services.schemas import SchemaRegistry
    from headwater.services.segments.definitions import SegmentDefinitions
    from headwater.services.segments.evaluation import Segments
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore
    from headwater.stores.profiles import ProfileStore

log = logging.getLogger("headwater.exports")
CHUNK = 2_000  # profiles merged and mapped at a time


@dataclass(frozen=True)
class ExportServices:
    """The collaborators of an export (the container builds it)."""

    settings: Settings
    store: MetadataStore
    jobs: ProfileExportJobs
    lake: Lake
    profiles: ProfileStore
    schemas: SchemaRegistry
    batches: Batches
    policies: MergePolicies
    definitions: SegmentDefinitions
    segments: Segments


class ExportJobs:
    """Profile export jobs as a :class:`~headwater.runtime.segmentjobs.JobRunner` runs them."""

    def __init__(self, services: ExportServices) -> None:
        self.services = services

    @property
    def created(self) -> QueuedSignal:
        return self.services.jobs.created

    def claim_next(self, worker: str) -> Resource | None:
        return self.services.jobs.claim_next(worker)

    def run(self, job: Resource) -> Resource | None:
        return ExportExecution(self.services, job).execute()


def export_job_runner(services: ExportServices) -> JobRunner:
    return JobRunner(ExportJobs(services), name="export")


@dataclass
class _Counts:
    profiles: int = 0  # rows committed
    failed: int = 0  # records that did not conform to the schema (row errors)
    skipped: int = 0  # candidates the filter left out
    namespaces: dict[str, int] = field(default_factory=dict)
    reading_ms: int = 0  # reading and merging profiles


class Stopped(Exception):
    """Another attempt holds the job now: this one stops without writing anything more."""


class ExportExecution:
    """One attempt at one claimed job. ``execute`` records every failure on the job; it raises nothing."""

    def __init__(self, services: ExportServices, job: Resource) -> None:
        self.services = services
        self.jobs = services.jobs
        self.job = job
        self.counts = _Counts()

    def execute(self) -> Resource | None:
        started = int(self.job.doc.get("startedAt") or now_ms())
        try:
            return self._run(ExportPlan.of(self.job), started)
        except Stopped:
            return None
        except Exception as exc:  # the job fails, the runner goes on
            if isinstance(exc, HeadwaterError):
                message = str(getattr(exc, "detail", None) or exc)
            else:
                log.exception("export job %s failed", self.job.id)
                message = f"{type(exc).__name__}: {exc}"
            try:
                return self._fail(started, "UPS-1500-500", message)
            except Stopped:
                return None

    def _run(self, plan: ExportPlan, started: int) -> Resource | None:
        svc = self.services
        if self.job.doc.get("cancelRequested"):  # cancelled while an earlier attempt ran
            return self._cancelled(None)
        actor = self._actor(plan)
        problem = svc.jobs.requests.destination_problem(actor, plan.dataset_id)
        if problem is not None:
            return self._fail(started, "UPS-1400-400", f"destination.datasetId: {problem}")
        try:
            policy = svc.policies.find(actor, plan.merge_policy_id)
        except NotFound:
            return self._fail(started, "UPS-1404-404", f"merge policy {plan.merge_policy_id} was deleted")
        from headwater.engines.mapping import identity_compile

        mapping = identity_compile(svc.schemas.resolve(actor, plan.schema_id))
        table = svc.lake.ensure_table(plan.scope, plan.dataset_id, mapping.target)
        batch = self._batch(actor, plan)
        done = svc.lake.latest_checkpoint(table, **{CHECKPOINT_KEY: plan.key})
        if done is not None:  # an earlier attempt committed; only the bookkeeping was lost
            return self._finish(batch, done, started)
        evaluated = self._evaluate(plan)
        with RowErrorFiles.of(svc.settings).writer(batch.id) as row_errors:
            files = svc.lake.write_files(
                table, self._batches(plan, policy, mapping, row_errors), mapping.target
            )
            codes = dict(row_errors.codes)
        crash_point("export_before_commit")
        current = self.jobs.current(self.job)
        if current.doc.get("attempt") != self.job.doc.get("attempt"):
            raise Stopped()  # taken over (this attempt's lease ran out): the new attempt commits
        if current.doc.get("cancelRequested"):
            return self._cancelled(batch)
        checkpoint = {
            CHECKPOINT_KEY: plan.key,
            "exportJobId": plan.job_id,
            "batchId": batch.id,
            "profiles": self.counts.profiles,
            "failedProfiles": self.counts.failed,
            "namespaces": orjson.dumps(self.counts.namespaces).decode(),
            "errorCodes": orjson.dumps(codes).decode(),
            "readingMs": self.counts.reading_ms,
            "evaluationMs": evaluated,
        }
        _, committed = svc.lake.commit(table, files, checkpoint, once_per=(CHECKPOINT_KEY,))
        crash_point("export_after_commit")
        fresh = svc.lake.load(plan.scope, plan.dataset_id)
        done = svc.lake.latest_checkpoint(fresh, **{CHECKPOINT_KEY: plan.key}) if fresh is not None else None
        if done is None:
            raise HeadwaterError(f"the commit of export job {plan.job_id} is not in the dataset's table")
        if not committed:
            log.info("export job %s: another attempt committed first", plan.job_id)
        return self._finish(batch, done, started, files=len(files))

    # --- parts ---
    def _actor(self, plan: ExportPlan) -> Actor:
        store = self.services.store
        org = store.get_org(plan.scope.org_id)
        sandbox = store.get_sandbox(plan.scope.org_id, plan.sandbox_name) if org is not None else None
        if org is None or sandbox is None or sandbox.id != plan.scope.sandbox_id:
            raise HeadwaterError("the export job's organization or sandbox no longer exists")
        return Actor(org=org, sandbox=sandbox, client_id="headwater-export")

    def _batch(self, actor: Actor, plan: ExportPlan) -> Resource:
        """The job's catalog batch: the one an earlier attempt made, else a new one (saved on the job
        before any row is written, so that every attempt reports the same batch)."""
        batch_id = self.job.doc["destination"].get("batchId")
        if batch_id:
            existing = self.services.store.get("batch", plan.scope, batch_id)
            if existing is not None:
                return existing
        doc = {
            "status": "loading",
            "relatedObjects": [
                {"type": "dataSet", "id": plan.dataset_id},
                {"type": "profileExportJob", "id": plan.job_id},
            ],
            "inputFormat": {"format": "parquet"},
            "metrics": {"inputRecordCount": 0, "outputRecordCount": 0, "failedRecordCount": 0},
            "errors": [],
            "tags": {"exportJobId": [plan.job_id]},
        }
        batch = self.services.batches.create(actor, doc)
        try:
            self._save(destination={**self.job.doc["destination"], "batchId": batch.id})
        except Stopped:  # taken over meanwhile: the new attempt makes its own batch
            save_document(self.services.store, batch, {"status": "aborted", "completed": now_ms()})
            raise
        return batch

    def _evaluate(self, plan: ExportPlan) -> int:
        """Evaluate the exported segments first (``evaluationInfo.segmentation``); how long it took."""
        if not plan.evaluate:
            return 0
        clock = time.monotonic()
        ids = [s.segment_id for s in plan.segments]
        definitions = self.services.definitions.definitions(plan.scope, ids)
        self.services.segments.evaluate_sandbox(plan.scope, definitions, now_ms())
        return int((time.monotonic() - clock) * 1000)

    def _batches(
        self, plan: ExportPlan, policy: dict[str, Any], mapping: Any, row_errors: RowErrorWriter
    ) -> Iterator[pa.RecordBatch]:
        """The exported records mapped onto the schema, chunk by chunk (memory stays bounded)."""
        reader = ExportRows(self.services.profiles)
        clock = time.monotonic()
        clusters = reader.clusters(plan.scope, plan)
        self.counts.reading_ms += int((time.monotonic() - clock) * 1000)
        position = 0
        for chunk in _chunks(clusters, CHUNK):
            clock = time.monotonic()
            selection = reader.rows(plan.scope, plan, chunk, policy, mapping.target)
            self.counts.reading_ms += int((time.monotonic() - clock) * 1000)
            self.counts.skipped += selection.skipped
            records = [p.record for p in selection.profiles]
            positions = list(range(position, position + len(records)))
            position += len(records)
            mapped, failed = _map(mapping, records, positions, row_errors)
            self.counts.failed += failed
            for rows, kept in mapped:
                for at in kept:
                    for namespace in selection.profiles[at - positions[0]].namespaces:
                        self.counts.namespaces[namespace] = self.counts.namespaces.get(namespace, 0) + 1
                self.counts.profiles += rows.num_rows
                yield from rows.cast(mapping.target).to_batches()

    def _finish(self, batch: Resource, done: Checkpoint, started: int, files: int = 0) -> Resource | None:
        """Complete the batch and the job from the commit's checkpoint (this attempt's or an earlier's)."""

        def number(key: str) -> int:
            return int(done.get(key) or 0)

        profiles, failed = number("profiles"), number("failedProfiles")
        codes: dict[str, int] = orjson.loads(done.get("errorCodes") or "{}")
        if batch.doc.get("status") != "success":
            save_document(
                self.services.store,
                batch,
                {
                    "status": "success",
                    "snapshotId": str(done.snapshot_id),
                    "errors": [
                        {
                            "code": code,
                            "description": "The profile does not conform to the schema",
                            "recordCount": n,
                        }
                        for code, n in codes.items()
                    ],
                    "metrics": {
                        "inputRecordCount": profiles + failed,
                        "outputRecordCount": profiles,
                        "failedRecordCount": failed,
                        "outputFileCount": files,
                    },
                    "completed": now_ms(),
                },
            )
        crash_point("export_after_batch")
        ended = now_ms()
        reading, evaluation = number("readingMs"), number("evaluationMs")
        metrics: dict[str, Any] = {
            "totalTime": _span(started, ended),
            "profileExportTime": _span(started + evaluation, started + evaluation + reading),
            "aCPDatasetWriteTime": _span(started + evaluation + reading, ended),
            "totalExportedProfileCounter": profiles,
            "exportedProfileByNamespaceCounter": orjson.loads(done.get("namespaces") or "{}"),
        }
        if evaluation:
            metrics["profileSegmentationTime"] = _span(started, started + evaluation)
        errors = []
        if failed:
            errors.append(
                {
                    "code": "UPS-1422-422",
                    "msg": f"{failed} profiles did not conform to the dataset's schema and were not written: "
                    f"GET /data/foundation/export/batches/{batch.id}/meta?path=row_errors lists them",
                    "type": "Warning",
                }
            )
        return self._save(status=SUCCEEDED, metrics=metrics, errors=errors, leaseUntil=0)

    def _cancelled(self, batch: Resource | None) -> Resource | None:
        """Cancelled before the commit: nothing of the job is in the dataset; its batch is aborted."""
        batch_id = self.job.doc["destination"].get("batchId")
        batch = batch or (self.services.store.get("batch", self.job.scope, batch_id) if batch_id else None)
        if batch is not None:
            save_document(self.services.store, batch, {"status": "aborted", "completed": now_ms()})
        return self._save(status=CANCELLED, leaseUntil=0, errors=[])

    def _fail(self, started: int, code: str, message: str) -> Resource | None:
        current = self.jobs.current(self.job)
        batch_id = current.doc["destination"].get("batchId")
        batch = self.services.store.get("batch", current.scope, batch_id) if batch_id else None
        if batch is not None and batch.doc.get("status") == "loading":
            failure = {"code": code, "description": message}
            save_document(self.services.store, batch, {"status": "failed", "errors": [failure]})
        metrics = {"totalTime": _span(started, now_ms())}
        error = {"code": code, "msg": message, "type": "Error"}
        return self._save(status=FAILED, errors=[error], metrics=metrics, leaseUntil=0)

    def _save(self, **changes: Any) -> Resource:
        saved = self.jobs.save(self.job, **changes)
        if saved is None:
            raise Stopped()
        self.job = saved
        return saved


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _span(start: int, end: int) -> dict[str, int]:
    return {"startTimeInMs": start, "endTimeInMs": end, "totalTimeInMs": max(0, end - start)}

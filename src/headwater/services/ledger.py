"""The run ledger: the one writer of a run's life cycle and metrics, for every kind of flow.

Runners report to it; it builds every run document and every change to one (the shapes
``GET /runs`` returns):

- a run the scheduler queues is written by :meth:`RunLedger.queued_scheduled` (one a request queues
  is built by services/runs.py);
- a queued run (batch ingestion, dataset activation) is :meth:`RunLedger.start`\\ ed (``inProgress``,
  started now), shows records as it goes (:meth:`RunLedger.progress`), and ends with its copy activity
  (:meth:`RunLedger.copy_succeeded`, :meth:`RunLedger.fail_copy`, :meth:`RunLedger.recover_copy`) or
  without one (:meth:`RunLedger.finish`);
- a streaming or streaming activation flow has one run per hour (:data:`RUN_WINDOW_MS`), its id
  derived from the flow and the hour so every process agrees on it (:meth:`RunLedger.open_hour`); the
  hour's counts are added as they commit or deliver (services/ledger_hourly.py) and the run completes
  once the hour is over (:meth:`RunLedger.close_hour`).

Every write goes through :func:`save_document`: the whole document, a fresh etag, retried on a
concurrent update. The runner holds the run (its lease, or the flow's lock), so the ledger never
arbitrates between two writers of one run; it only survives a concurrent reader-writer (an API PATCH of
a dead letter, a takeover after a crash).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from headwater.errors import HeadwaterError
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import FAILED, IN_PROGRESS, PARTIAL, SUCCESS, iso, new_run_doc
from headwater.stores.metadata import AlreadyExists, MetadataStore, Resource, Scope, StaleWrite

RUN_WINDOW_MS = 3600_000  # the hour a streaming run covers (module global: tests shorten it)


class Hourly(StrEnum):
    """Who keeps a flow's hourly runs: the micro-batcher (streaming) or the deliverer (activation)."""

    STREAMING = "streaming"
    ACTIVATION = "activation"


class CopyCounts(Protocol):
    """What a copy activity counts (runtime/executor.py's Counters)."""

    input_records: int
    output_records: int
    failed_records: int
    input_bytes: int
    output_bytes: int
    skipped_records: int
    error_codes: dict[str, int]


class DeliveryCounts(Protocol):
    """A period of deliveries (runtime/delivery/engine.py's Stats)."""

    def add_to(self, summary: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Window:
    """The part of the source a copy read (None: from the start, or to now)."""

    start: datetime | None = None
    end: datetime | None = None


class RunLedger:
    """Owns runs' documents in the metadata store (constructed with the store alone)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    def get(self, scope: Scope, run_id: str) -> Resource | None:
        return self.store.get("run", scope, run_id)

    def save(self, resource: Resource, changes: dict[str, Any]) -> Resource:
        """``changes`` applied to a document the runtime owns (a run, a batch, a flow's delivery state,
        a dead letter), retried on concurrent updates."""
        return save_document(self.store, resource, changes)

    def current(self, run: Resource) -> Resource:
        """``run`` as stored now (itself when it is gone)."""
        return self.store.get(run.kind, run.scope, run.id) or run

    # --- queued runs ---
    def queued_scheduled(self, flow: Resource, run_id: str, slot: int) -> Resource:
        """The document of run ``run_id`` of ``flow``, queued by the scheduler for the schedule slot
        ``slot`` (epoch ms); written after the run is in the run queue, which decides whose slot it is."""
        now = now_ms()
        doc = {
            **new_run_doc(flow.id, {}, slot),
            "id": run_id,
            "createdAt": now,
            "updatedAt": now,
            "createdBy": "scheduler",
            "updatedBy": "scheduler",
            "createdClient": "headwater-scheduler",
            "updatedClient": "headwater-scheduler",
            "sandboxId": flow.scope.sandbox_id,
            "sandboxName": flow.doc.get("sandboxName"),
            "imsOrgId": flow.scope.org_id,
        }
        run = Resource(
            "run", run_id, flow.scope, doc, new_etag(), None, None, now, now, refs=[("flow", flow.id)]
        )
        self.store.insert(run)
        return run

    def start(self, run: Resource, started: int, **changes: Any) -> Resource:
        """The run taken by a worker: ``inProgress`` since ``started`` (with ``changes``)."""
        metrics = {
            **run.doc["metrics"],
            "durationSummary": {"startedAtUTC": started, "completedAtUTC": None},
            "statusSummary": {"status": IN_PROGRESS, "errors": []},
        }
        return self.save(run, {**changes, "state": IN_PROGRESS, "metrics": metrics})

    def progress(self, run: Resource, counts: CopyCounts) -> None:
        """The records counted so far, shown while the run goes on."""
        current = self.store.get("run", run.scope, run.id)
        if current is not None:
            metrics = {**current.doc["metrics"], "recordSummary": records_of(counts)}
            self.save(current, {"metrics": metrics})

    def finish(self, run: Resource, status: str, started: int, errors: list[dict[str, Any]]) -> Resource:
        """A run without a copy activity (a dataset activation) ends ``status`` now."""
        metrics = {
            **run.doc["metrics"],
            "durationSummary": {"startedAtUTC": started, "completedAtUTC": now_ms()},
            "statusSummary": {"status": status, "errors": errors},
        }
        return self.save(run, {"state": status, "metrics": metrics})

    # --- copies (batch ingestion) and their catalog batches ---
    def batch_succeeded(self, batch: Resource, snapshot_id: int, counts: CopyCounts) -> None:
        """The copy committed snapshot ``snapshot_id``: its catalog batch succeeds, with the row errors'
        codes and the counts."""
        self.save(
            batch,
            {
                **batch.doc,
                "status": "success",
                "snapshotId": str(snapshot_id),
                "errors": [
                    {"code": e["code"], "description": e["message"], "recordCount": e["recordCount"]}
                    for e in copy_errors(counts)
                ],
                "metrics": {
                    "inputRecordCount": counts.input_records,
                    "outputRecordCount": counts.output_records,
                    "failedRecordCount": counts.failed_records,
                    "inputByteSize": counts.input_bytes,
                    "inputFileCount": 1,
                },
                "completed": now_ms(),
            },
        )

    def copy_succeeded(
        self, run: Resource, batch_id: str, started: int, files: int, window: Window, counts: CopyCounts
    ) -> Resource:
        """After :meth:`batch_succeeded`: the run succeeds (``partialSuccess`` when rows failed) with
        its copy activity (``files`` data files written)."""
        status = PARTIAL if counts.failed_records else SUCCESS
        return self._complete(run, status, started, copy_errors(counts), batch_id, files, window, counts)

    def recover_copy(
        self, run: Resource, started: int, batch_id: str, window: Window, counts: CopyCounts
    ) -> Resource:
        """A previous attempt committed and lost its bookkeeping: the batch and run are completed from
        the commit's checkpoint (``counts`` and ``window`` read from it)."""
        batch = self.store.get("batch", run.scope, batch_id)
        if batch is not None and batch.doc.get("status") != "success":
            self.save(batch, {**batch.doc, "status": "success", "completed": now_ms()})
        status = PARTIAL if counts.failed_records else SUCCESS
        return self._complete(run, status, started, [], batch_id, 0, window, counts)

    def fail_copy(self, run: Resource, started: int, code: str, message: str, counts: CopyCounts) -> Resource:
        """Nothing committed: the batch (if any) and the run fail with ``code`` and ``message``."""
        current = self.current(run)
        batch_id = current.doc.get("batchId")
        batch = self.store.get("batch", run.scope, batch_id) if batch_id else None
        if batch is not None:
            failure = {"code": code, "description": message, "recordCount": counts.failed_records}
            self.save(batch, {**batch.doc, "status": "failed", "errors": [failure]})
        errors = [{"code": code, "message": message}]
        return self._complete(current, FAILED, started, errors, batch_id, 0, Window(), counts)

    def _complete(
        self,
        run: Resource,
        status: str,
        started: int,
        errors: list[dict[str, Any]],
        batch_id: str | None,
        files: int,
        window: Window,
        counts: CopyCounts,
    ) -> Resource:
        completed = now_ms()
        metrics = _copy_metrics(status, started, completed, errors, files, window, counts)
        activity = _copy_activity(status, completed, errors, batch_id, metrics)
        changes = {"state": status, "metrics": metrics, "activities": [activity]}
        return self.save(self.current(run), changes)

    # --- hourly runs (streaming and streaming activation) ---
    @staticmethod
    def hour_run_id(origin: Hourly, flow_id: str, now: int) -> str:
        """The id of the run of the hour ``now`` falls in, the same in every process."""
        window = now - now % RUN_WINDOW_MS
        name = "stream-run" if origin is Hourly.STREAMING else "activation-run"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"headwater:{name}:{flow_id}:{window}"))

    def open_hour(
        self, origin: Hourly, scope: Scope, flow_id: str, sandbox_name: Any, now: int, **extra: Any
    ) -> Resource | None:
        """The run of the hour ``now`` falls in, created ``inProgress`` unless another process (or an
        earlier attempt) did; ``extra`` fields go in a new document only. None if it vanished since."""
        run_id = self.hour_run_id(origin, flow_id, now)
        window = now - now % RUN_WINDOW_MS
        params = {"windowStartTime": iso(window), "windowEndTime": iso(window + RUN_WINDOW_MS)}
        doc = {
            **new_run_doc(flow_id, params),
            "id": run_id,
            "createdAt": now,
            "updatedAt": now,
            "createdBy": origin.value,
            "updatedBy": origin.value,
            "createdClient": f"headwater-{origin.value}",
            "updatedClient": f"headwater-{origin.value}",
            "sandboxId": scope.sandbox_id,
            "sandboxName": sandbox_name,
            "imsOrgId": scope.org_id,
            "state": IN_PROGRESS,
            "streaming": True,
            **extra,
        }
        doc["metrics"]["durationSummary"] = {"startedAtUTC": now, "completedAtUTC": None}
        doc["metrics"]["statusSummary"] = {"status": IN_PROGRESS, "errors": []}
        self.insert_once("run", scope, run_id, doc, now, ("flow", flow_id))
        return self.get(scope, run_id)

    def insert_once(
        self, kind: str, scope: Scope, ident: str, doc: dict[str, Any], now: int, ref: tuple[str, str]
    ) -> None:
        """Insert a document (referring to ``ref``) unless another process or an earlier attempt did."""
        resource = Resource(kind, ident, scope, doc, new_etag(), None, None, now, now, refs=[ref])
        with contextlib.suppress(AlreadyExists):
            self.store.insert(resource)

    def flow_runs(self, scope: Scope, flow_id: str) -> Iterable[Resource]:
        """Every run of the flow."""
        run_ids = [i for kind, i in self.store.referrers(scope, "flow", flow_id) if kind == "run"]
        return self.store.get_many("run", scope, run_ids).values()

    def close_hour(self, run: Resource, completed: int) -> Resource:
        """An hourly run whose hour is over completes at ``completed``: ``failed`` when the hour ended
        with its flow failing, else ``partialSuccess`` or ``success`` by its failed records."""
        records = run.doc["metrics"]["recordSummary"]
        status = PARTIAL if records.get("failedRecordCount") else SUCCESS
        if run.doc.get("failure"):
            status = FAILED
        metrics = {
            **run.doc["metrics"],
            "durationSummary": {**run.doc["metrics"]["durationSummary"], "completedAtUTC": completed},
            "statusSummary": {**run.doc["metrics"]["statusSummary"], "status": status},
        }
        return self.save(run, {"state": status, "metrics": metrics})

    # --- deliveries ---
    def add_delivery(self, run: Resource, stats: DeliveryCounts, **changes: Any) -> Resource:
        """A period of deliveries added to the run (with ``changes``, e.g. its checkpoint)."""
        return self.save(run, {**changes, "metrics": delivery_metrics(run, stats)})


def save_document(store: MetadataStore, resource: Resource, changes: dict[str, Any]) -> Resource:
    """Apply ``changes`` to a document the runtime owns, retrying on concurrent updates."""
    for _ in range(5):
        doc = {**resource.doc, **changes, "updatedAt": now_ms()}
        updated = Resource(
            resource.kind,
            resource.id,
            resource.scope,
            doc,
            new_etag(),
            resource.name,
            resource.alt_id,
            resource.created_at,
            doc["updatedAt"],
            refs=_refs(resource),
        )
        try:
            store.update(updated, resource.etag)
            return updated
        except StaleWrite:
            fresh = store.get(resource.kind, resource.scope, resource.id)
            if fresh is None:
                return resource
            resource = fresh
    raise HeadwaterError(f"could not save {resource.kind} {resource.id}: too many concurrent updates")


def _refs(resource: Resource) -> list[tuple[str, str]]:
    if resource.kind == "run":
        return [("flow", resource.doc["flowId"])]
    if resource.kind == "batch":
        return [("dataSet", resource.doc["relatedObjects"][0]["id"])]
    return []


def records_of(counts: CopyCounts) -> dict[str, int]:
    """A run's recordSummary."""
    return {
        "inputRecordCount": counts.input_records,
        "outputRecordCount": counts.output_records,
        "failedRecordCount": counts.failed_records,
    }


def copy_errors(counts: CopyCounts) -> list[dict[str, Any]]:
    """A run's statusSummary.errors for the row errors counted by code."""
    return [
        {"code": code, "message": error_text(code), "recordCount": n}
        for code, n in counts.error_codes.items()
    ]


def error_text(code: str) -> str:
    """What a run says of the rows that failed with ``code``."""
    return {
        "MAPPER-3700-400": "Mapper Transform Error",
        "INGEST-1555-400": "A required field is missing",
        "INGEST-1401-400": "A value does not match the schema",
    }.get(code, "Record errors")


def delivery_metrics(run: Resource, stats: DeliveryCounts) -> dict[str, Any]:
    """The run's metrics with a period of deliveries added: records in (taken), out (delivered) and
    failed (dead-lettered), and ``deliverySummary``."""
    metrics = run.doc["metrics"]
    delivery = stats.add_to(metrics.get("deliverySummary") or {})
    records = {
        "inputRecordCount": delivery["taken"],
        "outputRecordCount": delivery["delivered"],
        "failedRecordCount": delivery["deadLettered"],
    }
    errors = []
    if delivery["deadLettered"]:
        errors.append(
            {
                "code": "ACT-1500-500",
                "message": "Records were dead-lettered: GET /data/foundation/flowservice/deadLetters"
                f"?property=flowId=={run.doc['flowId']} lists them with the reason; replay them once fixed.",
                "recordCount": delivery["deadLettered"],
            }
        )
    status = metrics.get("statusSummary") or {}
    return {
        **metrics,
        "recordSummary": records,
        "deliverySummary": delivery,
        "statusSummary": {**status, "errors": errors},
    }


def _copy_metrics(
    status: str,
    started: int,
    completed: int,
    errors: list[dict[str, Any]],
    files: int,
    window: Window,
    counts: CopyCounts,
) -> dict[str, Any]:
    return {
        "durationSummary": {
            "startedAtUTC": started,
            "completedAtUTC": completed,
            "extensions": {
                "windowStart": window.start.isoformat() if window.start else None,
                "windowEnd": window.end.isoformat() if window.end else None,
                # rows re-read in the overlap before the window and dropped: already landed
                "skippedRecordCount": counts.skipped_records,
            },
        },
        "sizeSummary": {"inputBytes": counts.input_bytes, "outputBytes": counts.output_bytes},
        "recordSummary": records_of(counts),
        "fileSummary": {"inputFileCount": 1 if counts.input_records else 0, "outputFileCount": files},
        "statusSummary": {"status": status, "errors": errors},
    }


def _copy_activity(
    status: str, completed: int, errors: list[dict[str, Any]], batch_id: str | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    manifest = f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors"
    return {
        "id": "copyActivity",
        "name": "Copy Activity",
        "updatedAtUTC": completed,
        "durationSummary": metrics["durationSummary"],
        "recordSummary": metrics["recordSummary"],
        "statusSummary": {
            "status": status,
            "errors": errors,
            "extensions": {"manifest": {"failedRecords": manifest}} if batch_id else {},
        },
        "targetInfo": [
            {
                "type": "TargetConnection",
                "reference": {"type": "Batch", "ids": [batch_id] if batch_id else []},
            }
        ],
    }

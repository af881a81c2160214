"""The runs of a streaming flow: one per time window (an hour), created at the window's first commit,
updated after each commit with the records in, out and failed, completed once the window is over.

A run's id is derived from the flow and the window, so every process agrees on it. Its batch holds the
row errors. A crash between a commit and the run's update is repaired by :meth:`StreamRuns.reconcile`
from the last commit's snapshot summary.

A micro-batch that fails for a reason no message is at fault for (the lake or the metadata database
unavailable, a schema gone wrong) is retried with backoff, and meanwhile the run of the hour shows the
flow failing (:meth:`StreamRuns.failing`): ``state`` and ``metrics.statusSummary.status`` are ``failed``,
``statusSummary.errors`` holds the error (code :data:`FAILING`) and ``failure`` says since when, how many
attempts, and the last error. The first commit after it (:meth:`StreamRuns.account`) or the first clean
step (:meth:`StreamRuns.recovered`) puts the run back in progress and keeps the episode as
``lastFailure``. A run whose hour ends while its flow is failing completes ``failed``.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headwater.container import Services
from headwater.runtime.executor import save_resource
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import (
    FAILED,
    IN_PROGRESS,
    PARTIAL,
    SUCCESS,
    iso,
    new_batch_doc,
    new_run_doc,
)
from headwater.stores.metadata import AlreadyExists, Resource, Scope

if TYPE_CHECKING:
    from headwater.runtime.streaming import Plan

RUN_WINDOW_MS = 3600_000
FAILING = "INGEST-1500-503"  # the flow's micro-batches fail (not for any one message): retrying
MAX_ERROR_TEXT = 1000


class StreamRuns:
    def __init__(self, services: Services, scope: Scope, flow_id: str) -> None:
        self.services = services
        self.scope = scope
        self.flow_id = flow_id
        self._next_close_check = 0

    def run_for(self, plan: Plan, now: int) -> tuple[Resource, Resource]:
        """The run of the hour ``now`` falls in (created on first use) and its batch."""
        run = self._run_of_hour(now, plan.flow.doc.get("sandboxName"))
        batch_id = str(run.doc["batchId"])
        store = self.services.store
        batch = store.get("batch", self.scope, batch_id)
        if batch is None:
            bdoc = {**new_batch_doc(plan.dataset_id, self.flow_id, run.id), "id": batch_id, "created": now}
            self._insert("batch", batch_id, bdoc, now, ("dataSet", plan.dataset_id))
            batch = store.get("batch", self.scope, batch_id)
            assert batch is not None
        return run, batch

    def _run_of_hour(self, now: int, sandbox_name: Any) -> Resource:
        """The run of the hour ``now`` falls in, created on first use."""
        window = now - now % RUN_WINDOW_MS
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"headwater:stream-run:{self.flow_id}:{window}"))
        batch_id = hashlib.sha1(run_id.encode()).hexdigest()[:13].upper()
        store = self.services.store
        run = store.get("run", self.scope, run_id)
        if run is None:
            self._next_close_check = 0
            self.close_past()
            doc = {
                **new_run_doc(
                    self.flow_id,
                    {"windowStartTime": iso(window), "windowEndTime": iso(window + RUN_WINDOW_MS)},
                ),
                "id": run_id,
                "createdAt": now,
                "updatedAt": now,
                "createdBy": "streaming",
                "updatedBy": "streaming",
                "createdClient": "headwater-streaming",
                "updatedClient": "headwater-streaming",
                "sandboxId": self.scope.sandbox_id,
                "sandboxName": sandbox_name,
                "imsOrgId": self.scope.org_id,
                "state": IN_PROGRESS,
                "streaming": True,
                "streamOffset": 0,
                "batchId": batch_id,
            }
            doc["metrics"]["durationSummary"] = {"startedAtUTC": now, "completedAtUTC": None}
            doc["metrics"]["statusSummary"] = {"status": IN_PROGRESS, "errors": []}
            self._insert("run", run_id, doc, now, ("flow", self.flow_id))
            run = store.get("run", self.scope, run_id)
            assert run is not None
        return run

    def _insert(self, kind: str, ident: str, doc: dict[str, Any], now: int, ref: tuple[str, str]) -> None:
        """Insert unless another process (or an earlier attempt) already did."""
        resource = Resource(kind, ident, self.scope, doc, new_etag(), None, None, now, now, refs=[ref])
        with contextlib.suppress(AlreadyExists):
            self.services.store.insert(resource)

    def account(
        self, run: Resource, checkpoint: dict[str, Any], offset: int, codes: dict[str, int], stored: int
    ) -> None:
        """Add a committed micro-batch's counts to its run (and batch)."""
        run = self.services.store.get("run", run.scope, run.id) or run
        if int(run.doc.get("streamOffset") or 0) >= offset:
            return  # already counted
        records = dict(run.doc["metrics"]["recordSummary"])
        records["inputRecordCount"] += int(checkpoint["inputRecords"])
        records["outputRecordCount"] += int(checkpoint["outputRecords"])
        records["failedRecordCount"] += int(checkpoint["failedRecords"])
        known = dict(run.doc.get("errorCodes") or {})
        for code, n in codes.items():
            known[code] = known.get(code, 0) + n
        errors = [{"code": c, "message": _error_text(c), "recordCount": n} for c, n in known.items()]
        metrics = {
            **run.doc["metrics"],
            "recordSummary": records,
            "statusSummary": {"status": IN_PROGRESS, "errors": errors},
        }
        save_resource(
            self.services,
            run,
            {
                "metrics": metrics,
                "streamOffset": offset,
                "errorCodes": known,
                "storedRowErrors": stored,
                "activities": [_activity(run.doc.get("batchId"), records, errors)],
                **_recovery(run),
            },
        )

    def failing(self, sandbox_name: Any, error: str, attempts: int, retry_in: float) -> None:
        """Show the flow failing in the run of the current hour: its micro-batch failed ``attempts``
        times in a row, last with ``error``, and is retried in ``retry_in`` seconds. The messages stay in
        the streaming log meanwhile; they land once a micro-batch succeeds."""
        now = now_ms()
        run = self._run_of_hour(now, sandbox_name)
        if run.doc.get("state") not in (IN_PROGRESS, FAILED):
            return  # completed already (its hour is over)
        text = error if len(error) <= MAX_ERROR_TEXT else error[: MAX_ERROR_TEXT - 3] + "..."
        since = (run.doc.get("failure") or {}).get("since") or now
        failure = {"since": since, "attempts": attempts, "lastAttemptAt": now, "error": text}
        message = (
            f"The flow's micro-batches are failing ({attempts} attempts since {iso(since)}): {text}. "
            f"Retrying in {retry_in:.0f} s, with backoff; the acknowledged messages are kept in the "
            "streaming log and land once a micro-batch succeeds."
        )
        known = run.doc.get("errorCodes") or {}
        errors = [{"code": c, "message": _error_text(c), "recordCount": n} for c, n in known.items()]
        metrics = {
            **run.doc["metrics"],
            "statusSummary": {"status": FAILED, "errors": [{"code": FAILING, "message": message}, *errors]},
        }
        save_resource(self.services, run, {"state": FAILED, "failure": failure, "metrics": metrics})

    def recovered(self, now: int) -> None:
        """The flow's micro-batches succeed again: the run of the hour is back in progress (when it
        showed the flow failing)."""
        window = now - now % RUN_WINDOW_MS
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"headwater:stream-run:{self.flow_id}:{window}"))
        run = self.services.store.get("run", self.scope, run_id)
        if run is None or not run.doc.get("failure"):
            return
        known = run.doc.get("errorCodes") or {}
        errors = [{"code": c, "message": _error_text(c), "recordCount": n} for c, n in known.items()]
        metrics = {**run.doc["metrics"], "statusSummary": {"status": IN_PROGRESS, "errors": errors}}
        save_resource(self.services, run, {"metrics": metrics, **_recovery(run)})

    def reconcile(self, table: Any) -> None:
        """After a restart: count the last commit if the crash came between it and its run's update."""
        offset = self.services.lake.stream_offset(table, self.flow_id)
        if not offset:
            return
        for checkpoint in self.services.lake.checkpoints(table, flowId=self.flow_id, streamTo=str(offset)):
            props = {k.removeprefix("headwater."): v for k, v in checkpoint.properties.items()}
            run = self.services.store.get("run", self.scope, props.get("runId", ""))
            if run is not None:
                self.account(run, props, offset, {}, int(run.doc.get("storedRowErrors") or 0))
            return

    def close_past(self) -> None:
        """Complete the runs of hours that are over (checked at most once a minute)."""
        now = now_ms()
        if now < self._next_close_check:
            return
        self._next_close_check = now + 60_000
        window = now - now % RUN_WINDOW_MS
        store = self.services.store
        run_ids = [i for kind, i in store.referrers(self.scope, "flow", self.flow_id) if kind == "run"]
        for run in store.get_many("run", self.scope, run_ids).values():
            if not run.doc.get("streaming") or not _open(run):
                continue
            started = _window_start(run)
            if started is None or started >= window:
                continue
            records = run.doc["metrics"]["recordSummary"]
            status = PARTIAL if records.get("failedRecordCount") else SUCCESS
            if run.doc.get("failure"):  # the hour ended with the flow failing
                status = FAILED
            metrics = {
                **run.doc["metrics"],
                "durationSummary": {
                    **run.doc["metrics"]["durationSummary"],
                    "completedAtUTC": started + RUN_WINDOW_MS,
                },
                "statusSummary": {**run.doc["metrics"]["statusSummary"], "status": status},
            }
            save_resource(self.services, run, {"state": status, "metrics": metrics})
            batch = self.services.store.get("batch", self.scope, run.doc.get("batchId") or "")
            if batch is not None:
                save_resource(
                    self.services,
                    batch,
                    {
                        "status": "success",
                        "completed": now,
                        "metrics": {
                            **batch.doc["metrics"],
                            "inputRecordCount": records["inputRecordCount"],
                            "outputRecordCount": records["outputRecordCount"],
                            "failedRecordCount": records["failedRecordCount"],
                        },
                    },
                )


def _open(run: Resource) -> bool:
    """Whether a streaming run's hour is still being counted: in progress, or failed while its flow is
    failing (a completed run has its completion time)."""
    state = run.doc.get("state")
    completed = (run.doc["metrics"].get("durationSummary") or {}).get("completedAtUTC")
    return state == IN_PROGRESS or (state == FAILED and bool(run.doc.get("failure")) and completed is None)


def _recovery(run: Resource) -> dict[str, Any]:
    """The changes that end a failing episode of ``run`` (none when it is not failing)."""
    failure = run.doc.get("failure")
    if not failure:
        return {}
    return {"state": IN_PROGRESS, "failure": None, "lastFailure": {**failure, "recoveredAt": now_ms()}}


def _error_text(code: str) -> str:
    from headwater.runtime.executor import _error_text as text

    return text(code)


def _activity(batch_id: str | None, records: dict[str, int], errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "streamingActivity",
        "name": "Streaming Activity",
        "updatedAtUTC": now_ms(),
        "recordSummary": records,
        "statusSummary": {
            "status": IN_PROGRESS,
            "errors": errors,
            "extensions": {
                "manifest": {
                    "failedRecords": f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors"
                }
            },
        },
        "targetInfo": [{"type": "TargetConnection", "reference": {"type": "Batch", "ids": [batch_id]}}],
    }


def _window_start(run: Resource) -> int | None:
    value = (run.doc.get("params") or {}).get("windowStartTime")
    if not isinstance(value, str):
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)

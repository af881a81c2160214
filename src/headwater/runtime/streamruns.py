"""The runs of a streaming flow: one per time window (an hour), created at the window's first commit,
updated after each commit with the records in, out and failed, completed once the window is over.

A run's id is derived from the flow and the window, so every process agrees on it. Its batch holds the
row errors. A crash between a commit and the run's update is repaired by :meth:`StreamRuns.reconcile`
from the last commit's snapshot summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headwater.runtime.executor import save_resource
from headwater.services.container import Services
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import IN_PROGRESS, PARTIAL, SUCCESS, iso, new_batch_doc, new_run_doc
from headwater.stores.metadata import AlreadyExists, Resource, Scope

if TYPE_CHECKING:
    from headwater.runtime.streaming import Plan

RUN_WINDOW_MS = 3600_000


class StreamRuns:
    def __init__(self, services: Services, scope: Scope, flow_id: str) -> None:
        self.services = services
        self.scope = scope
        self.flow_id = flow_id
        self._next_close_check = 0

    def run_for(self, plan: Plan, now: int) -> tuple[Resource, Resource]:
        """The run of the hour ``now`` falls in (created on first use) and its batch."""
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
                "sandboxName": plan.flow.doc.get("sandboxName"),
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
        batch = store.get("batch", self.scope, batch_id)
        if batch is None:
            bdoc = {**new_batch_doc(plan.dataset_id, self.flow_id, run_id), "id": batch_id, "created": now}
            self._insert("batch", batch_id, bdoc, now, ("dataSet", plan.dataset_id))
            batch = store.get("batch", self.scope, batch_id)
            assert batch is not None
        return run, batch

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
            },
        )

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
            if not run.doc.get("streaming") or run.doc.get("state") != IN_PROGRESS:
                continue
            started = _window_start(run)
            if started is None or started >= window:
                continue
            records = run.doc["metrics"]["recordSummary"]
            status = PARTIAL if records.get("failedRecordCount") else SUCCESS
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

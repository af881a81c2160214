"""The hourly runs of streaming flows, in the run ledger (services/ledger.py): what a committed
micro-batch adds to the run of its hour, how the run shows the flow failing and recovering, and how the
hour's run and batch complete.

A streaming run holds ``streamOffset`` (the log position counted up to: a micro-batch at or below it is
not counted again), ``errorCodes`` (row errors by code), ``storedRowErrors``, and while the flow's
micro-batches fail, ``failure`` (since when, attempts, the last error; code :data:`FAILING` in
statusSummary.errors); the first commit or clean step after it keeps the episode as ``lastFailure``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from headwater.services import ledger as ledger_module
from headwater.services.ids import now_ms
from headwater.services.ledger import Hourly, RunLedger, error_text
from headwater.services.runs import FAILED, IN_PROGRESS, iso, new_batch_doc
from headwater.stores.metadata import Resource, Scope

FAILING = "INGEST-1500-503"  # the flow's micro-batches fail (not for any one message): retrying
MAX_ERROR_TEXT = 1000


def open_stream_hour(ledger: RunLedger, scope: Scope, flow_id: str, sandbox_name: Any, now: int) -> Resource:
    """The streaming run of the hour ``now`` falls in, created with its batch id."""
    run_id = RunLedger.hour_run_id(Hourly.STREAMING, flow_id, now)
    extra = {"streamOffset": 0, "batchId": stream_batch_id(run_id)}
    run = ledger.open_hour(Hourly.STREAMING, scope, flow_id, sandbox_name, now, **extra)
    assert run is not None
    return run


def stream_batch_id(run_id: str) -> str:
    return hashlib.sha1(run_id.encode()).hexdigest()[:13].upper()


def stream_batch(ledger: RunLedger, run: Resource, dataset_id: str, now: int) -> Resource:
    """The catalog batch of a streaming run (created on first use): it holds the hour's row errors."""
    batch_id = str(run.doc["batchId"])
    batch = ledger.store.get("batch", run.scope, batch_id)
    if batch is None:
        doc = {**new_batch_doc(dataset_id, run.doc["flowId"], run.id), "id": batch_id, "created": now}
        ledger.insert_once("batch", run.scope, batch_id, doc, now, ("dataSet", dataset_id))
        batch = ledger.store.get("batch", run.scope, batch_id)
        assert batch is not None
    return batch


def account_stream(
    ledger: RunLedger,
    run: Resource,
    checkpoint: dict[str, Any],
    offset: int,
    codes: dict[str, int],
    stored: int,
) -> None:
    """Add a committed micro-batch's counts (up to log position ``offset``) to its run."""
    run = ledger.current(run)
    if int(run.doc.get("streamOffset") or 0) >= offset:
        return  # already counted
    records = dict(run.doc["metrics"]["recordSummary"])
    records["inputRecordCount"] += int(checkpoint["inputRecords"])
    records["outputRecordCount"] += int(checkpoint["outputRecords"])
    records["failedRecordCount"] += int(checkpoint["failedRecords"])
    known = dict(run.doc.get("errorCodes") or {})
    for code, n in codes.items():
        known[code] = known.get(code, 0) + n
    errors = _errors(known)
    metrics = {
        **run.doc["metrics"],
        "recordSummary": records,
        "statusSummary": {"status": IN_PROGRESS, "errors": errors},
    }
    changes = {
        "metrics": metrics,
        "streamOffset": offset,
        "errorCodes": known,
        "storedRowErrors": stored,
        "activities": [_activity(run.doc.get("batchId"), records, errors)],
        **_recovery(run),
    }
    ledger.save(run, changes)


def stream_failing(ledger: RunLedger, run: Resource, error: str, attempts: int, retry_in: float) -> None:
    """Show the flow failing in ``run`` (the run of the current hour): its micro-batch failed
    ``attempts`` times in a row, last with ``error``, and is retried in ``retry_in`` seconds."""
    if run.doc.get("state") not in (IN_PROGRESS, FAILED):
        return  # completed already (its hour is over)
    now = now_ms()
    text = error if len(error) <= MAX_ERROR_TEXT else error[: MAX_ERROR_TEXT - 3] + "..."
    since = (run.doc.get("failure") or {}).get("since") or now
    failure = {"since": since, "attempts": attempts, "lastAttemptAt": now, "error": text}
    message = (
        f"The flow's micro-batches are failing ({attempts} attempts since {iso(since)}): {text}. "
        f"Retrying in {retry_in:.0f} s, with backoff; the acknowledged messages are kept in the "
        "streaming log and land once a micro-batch succeeds."
    )
    errors = [{"code": FAILING, "message": message}, *_errors(run.doc.get("errorCodes") or {})]
    metrics = {**run.doc["metrics"], "statusSummary": {"status": FAILED, "errors": errors}}
    ledger.save(run, {"state": FAILED, "failure": failure, "metrics": metrics})


def stream_recovered(ledger: RunLedger, run: Resource) -> None:
    """The flow's micro-batches succeed again: ``run`` is back in progress (when it showed the flow
    failing)."""
    if not run.doc.get("failure"):
        return
    errors = _errors(run.doc.get("errorCodes") or {})
    metrics = {**run.doc["metrics"], "statusSummary": {"status": IN_PROGRESS, "errors": errors}}
    ledger.save(run, {"metrics": metrics, **_recovery(run)})


def close_stream_hours(ledger: RunLedger, scope: Scope, flow_id: str, now: int) -> None:
    """Complete the streaming runs (and their batches) of hours that are over."""
    window = now - now % ledger_module.RUN_WINDOW_MS
    for run in ledger.flow_runs(scope, flow_id):
        if not run.doc.get("streaming") or not _open(run):
            continue
        started = _window_start(run)
        if started is None or started >= window:
            continue
        ledger.close_hour(run, started + ledger_module.RUN_WINDOW_MS)
        batch = ledger.store.get("batch", scope, run.doc.get("batchId") or "")
        if batch is not None:
            records = run.doc["metrics"]["recordSummary"]
            counts = {
                "inputRecordCount": records["inputRecordCount"],
                "outputRecordCount": records["outputRecordCount"],
                "failedRecordCount": records["failedRecordCount"],
            }
            metrics = {**batch.doc["metrics"], **counts}
            ledger.save(batch, {"status": "success", "completed": now, "metrics": metrics})


def close_activation_hours(ledger: RunLedger, scope: Scope, flow_id: str, now: int) -> None:
    """Complete the streaming activation runs of hours that are over."""
    hour = ledger_module.RUN_WINDOW_MS
    window = now - now % hour
    for run in ledger.flow_runs(scope, flow_id):
        if not run.doc.get("streaming") or run.doc.get("state") != IN_PROGRESS:
            continue
        started = int(run.doc["metrics"]["durationSummary"].get("startedAtUTC") or now)
        if started - started % hour >= window:
            continue
        ledger.close_hour(run, started - started % hour + hour)


def _errors(known: dict[str, int]) -> list[dict[str, Any]]:
    return [{"code": c, "message": error_text(c), "recordCount": n} for c, n in known.items()]


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


def _activity(batch_id: str | None, records: dict[str, int], errors: list[dict[str, Any]]) -> dict[str, Any]:
    manifest = f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors"
    return {
        "id": "streamingActivity",
        "name": "Streaming Activity",
        "updatedAtUTC": now_ms(),
        "recordSummary": records,
        "statusSummary": {
            "status": IN_PROGRESS,
            "errors": errors,
            "extensions": {"manifest": {"failedRecords": manifest}},
        },
        "targetInfo": [{"type": "TargetConnection", "reference": {"type": "Batch", "ids": [batch_id]}}],
    }


def _window_start(run: Resource) -> int | None:
    value = (run.doc.get("params") or {}).get("windowStartTime")
    if not isinstance(value, str):
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)

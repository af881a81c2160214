"""The runs of an activation flow.

A streaming activation has one run per hour (like streaming ingestion flows), created by its first
delivery and completed once the hour is over. A dataset activation's runs are ordinary queued runs
(scheduled or on demand). Either way a run's metrics say records in (taken), out (delivered) and failed
(dead-lettered), and ``metrics.deliverySummary`` adds retried and failed attempts and latency p50/p99.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from headwater.runtime.delivery.engine import Stats
from headwater.runtime.executor import save_resource
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import IN_PROGRESS, PARTIAL, SUCCESS, iso, new_run_doc
from headwater.stores.metadata import AlreadyExists, Resource

if TYPE_CHECKING:
    from headwater.container import Services


def add_stats(run: Resource, stats: Stats) -> dict[str, Any]:
    """The run's metrics with ``stats`` added."""
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


def account(services: Services, flow: Resource, stats: Stats) -> None:
    """Add a period's counts to the streaming activation run of the current hour."""
    from headwater.runtime.delivery.activation import stream_run_id
    from headwater.runtime.streamruns import RUN_WINDOW_MS

    now = now_ms()
    run_id = stream_run_id(flow.id, now)
    store = services.store
    run = store.get("run", flow.scope, run_id)
    if run is None:
        close_past(services, flow)
        window = now - now % RUN_WINDOW_MS
        doc = {
            **new_run_doc(
                flow.id, {"windowStartTime": iso(window), "windowEndTime": iso(window + RUN_WINDOW_MS)}
            ),
            "id": run_id,
            "createdAt": now,
            "updatedAt": now,
            "createdBy": "activation",
            "updatedBy": "activation",
            "createdClient": "headwater-activation",
            "updatedClient": "headwater-activation",
            "sandboxId": flow.scope.sandbox_id,
            "sandboxName": flow.doc.get("sandboxName"),
            "imsOrgId": flow.scope.org_id,
            "state": IN_PROGRESS,
            "streaming": True,
        }
        doc["metrics"]["durationSummary"] = {"startedAtUTC": now, "completedAtUTC": None}
        doc["metrics"]["statusSummary"] = {"status": IN_PROGRESS, "errors": []}
        resource = Resource(
            "run", run_id, flow.scope, doc, new_etag(), None, None, now, now, refs=[("flow", flow.id)]
        )
        with contextlib.suppress(AlreadyExists):
            store.insert(resource)
        run = store.get("run", flow.scope, run_id)
        if run is None:
            return
    save_resource(services, run, {"metrics": add_stats(run, stats)})


def close_past(services: Services, flow: Resource) -> None:
    """Complete the streaming activation runs of hours that are over."""
    from headwater.runtime.streamruns import RUN_WINDOW_MS

    now = now_ms()
    window = now - now % RUN_WINDOW_MS
    store = services.store
    run_ids = [i for kind, i in store.referrers(flow.scope, "flow", flow.id) if kind == "run"]
    for run in store.get_many("run", flow.scope, run_ids).values():
        if not run.doc.get("streaming") or run.doc.get("state") != IN_PROGRESS:
            continue
        started = int(run.doc["metrics"]["durationSummary"].get("startedAtUTC") or now)
        if started - started % RUN_WINDOW_MS >= window:
            continue
        finish(services, run, started - started % RUN_WINDOW_MS + RUN_WINDOW_MS)


def finish(services: Services, run: Resource, completed: int) -> Resource:
    records = run.doc["metrics"]["recordSummary"]
    status = PARTIAL if records.get("failedRecordCount") else SUCCESS
    metrics = {
        **run.doc["metrics"],
        "durationSummary": {**run.doc["metrics"]["durationSummary"], "completedAtUTC": completed},
        "statusSummary": {**run.doc["metrics"]["statusSummary"], "status": status},
    }
    return save_resource(services, run, {"state": status, "metrics": metrics})

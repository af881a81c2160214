"""Flow runs and catalog batches: what the runtime records about every execution.

A run is created queued (by the scheduler or ``POST /runs``), taken by a worker, and ends ``success``,
``partialSuccess`` (some rows failed and were kept as row errors), or ``failed`` (nothing committed).
Its document follows the reference's monitoring shape (metrics.durationSummary, sizeSummary,
recordSummary, fileSummary, statusSummary, activities). Each run that writes to a dataset has a batch:
the catalog's view of one commit. This module builds the document of a run a request queues and checks
requests for one (the run ledger, services/ledger.py, writes one the scheduler queues); from then on the
ledger writes every change to it.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from headwater.catalog import ids
from headwater.errors import BadRequest, ValidationFailed
from headwater.services.ids import new_hex, new_uuid, now_ms
from headwater.services.resources import Built, Collection, require_object
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, QueuedRun, Resource

if TYPE_CHECKING:
    from headwater.services.flowservice import Flows

QUEUED, IN_PROGRESS, SUCCESS, PARTIAL, FAILED = "queued", "inProgress", "success", "partialSuccess", "failed"
FINAL = frozenset({SUCCESS, PARTIAL, FAILED})


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Epoch numbers at or above this are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973-03-03.
MS_FROM = 10**11
_LATEST_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the latest moment a datetime holds
_NUMBER = re.compile(r"\d{1,20}(\.\d{1,9})?")


def parse_time(value: Any, path: str) -> datetime | None:
    """A moment given as epoch seconds or epoch milliseconds (a number or a digit string; told apart by
    magnitude, see :data:`MS_FROM`) or ISO 8601 (naive means UTC). None for None or "". Anything else,
    negative numbers and moments past the year 9999 included, is a ValidationFailed naming ``path``."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value) if "." in value else int(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = epoch_seconds(value)
        if seconds is not None:
            return datetime.fromtimestamp(seconds, UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
        else:
            if moment.year >= 1970:
                return moment
    raise ValidationFailed(
        [
            {
                "path": path,
                "message": "must be epoch seconds, epoch milliseconds or an ISO 8601 date-time, "
                "between 1970 and 9999",
            }
        ],
        code="FLOW-1422-400",
    )


def epoch_seconds(number: float) -> float | None:
    """``number`` as epoch seconds (it is milliseconds from :data:`MS_FROM` up), or None when it is not
    a moment between 1970 and 9999 (negative, not finite, too large)."""
    if number < 0 or number > _LATEST_SECONDS * 1000 or not math.isfinite(number):
        return None
    seconds = number / 1000 if number >= MS_FROM else float(number)
    return seconds if seconds <= _LATEST_SECONDS else None


class QueuedSignal:
    """Tells this process's idle workers that a run was queued, so they look at the run queue at once
    (a worker of another process finds it at its next look). Listeners run in the queuing thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def listen(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()


class Runs(Collection):
    """Flow runs (``/flowservice/runs``): created on demand or by the scheduler, changed only by the run
    ledger (services/ledger.py). ``queued`` is notified whenever a run of this process is queued."""

    kind, label = "run", "run"

    def __init__(self, store: MetadataStore, flows: Flows) -> None:
        super().__init__(store)
        self.flows = flows
        self.queued = QueuedSignal()

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        if existing is not None:  # runs change only through the runtime (replace_state)
            return Built(doc=body, refs=[("flow", body["flowId"])])
        flow_id = body.get("flowId")
        if not isinstance(flow_id, str):
            raise ValidationFailed([{"path": "flowId", "message": "is required"}], code="FLOW-1422-400")
        flow = self.flows.get(actor, flow_id)
        kind = ids.flow_kind(flow.doc)
        if kind is ids.FlowKind.STREAMING or kind.delivers_continuously:
            what = (
                "Streaming flows" if kind is ids.FlowKind.STREAMING else "Streaming and audience activations"
            )
            raise BadRequest(
                f"{what} run continuously; runs cannot be created for them.",
                code="FLOW-1423-400",
                report={"field": "flowId"},
            )
        params = require_object(body.get("params", {}), "params")
        start = parse_time(params.get("windowStartTime"), "params.windowStartTime")
        end = parse_time(params.get("windowEndTime"), "params.windowEndTime")
        if start and end and start >= end:
            raise ValidationFailed(
                [{"path": "params.windowEndTime", "message": "must be after windowStartTime"}],
                code="FLOW-1422-400",
            )
        doc = new_run_doc(flow_id, params)
        return Built(doc=doc, refs=[("flow", flow_id)])

    def create_and_queue(self, actor: Actor, body: Any) -> Resource:
        """``POST /runs``: an on-demand run, queued for a worker."""
        run = self.create(actor, body)
        self.store.enqueue_run(QueuedRun(run.id, actor.scope, run.doc["flowId"], None, now_ms()))
        self.queued.notify()
        return run

    def render(self, resource: Resource) -> dict[str, Any]:
        return {**resource.doc, "etag": resource.etag}


def new_run_doc(flow_id: str, params: dict[str, Any], scheduled_for: int | None = None) -> dict[str, Any]:
    return {
        "flowId": flow_id,
        "params": params,
        "scheduledFor": iso(scheduled_for),
        "state": QUEUED,
        "metrics": {
            "durationSummary": {"startedAtUTC": None, "completedAtUTC": None},
            "sizeSummary": {"inputBytes": 0, "outputBytes": 0},
            "recordSummary": {"inputRecordCount": 0, "outputRecordCount": 0, "failedRecordCount": 0},
            "fileSummary": {"inputFileCount": 0, "outputFileCount": 0},
            "statusSummary": {"status": "scheduled", "errors": []},
        },
        "activities": [],
    }


class Batches(Collection):
    """Catalog batches: one per run that writes to a dataset (``GET /data/foundation/catalog/batches``)."""

    kind, label, service = "batch", "batch", "CAT"

    def new_id(self) -> str:
        return new_hex(13).upper()

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        dataset_id = body["relatedObjects"][0]["id"]
        return Built(doc=body, refs=[] if existing else [("dataSet", dataset_id)])

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = {k: v for k, v in resource.doc.items() if k not in ("createdAt", "updatedAt")}
        return {**doc, "created": resource.created_at, "updated": resource.updated_at, "version": "1.0.0"}

    def last(self, actor: Actor, dataset_id: str | None, limit: int) -> list[Resource]:
        """``GET /catalog/lastBatches``: the newest batch of each dataset (of ``dataset_id`` alone when
        given), newest first, at most ``limit``. Reads the sandbox's batches newest first, a page at a
        time, and stops as soon as it has what it needs."""
        newest: dict[str, Resource] = {}
        offset, page = 0, 500
        while len(newest) < limit:
            items = self.store.list(
                self.kind, actor.scope, order="createdAt", descending=True, offset=offset, limit=page
            ).items
            for resource in items:
                related = [
                    o.get("id") for o in resource.doc.get("relatedObjects", []) if o.get("type") == "dataSet"
                ]
                for dataset in related:
                    if isinstance(dataset, str) and dataset not in newest and dataset_id in (None, dataset):
                        newest[dataset] = resource
            if len(items) < page or (dataset_id is not None and newest):
                break
            offset += page
        return sorted(newest.values(), key=lambda r: r.created_at, reverse=True)[:limit]


def new_batch_doc(dataset_id: str, flow_id: str, run_id: str) -> dict[str, Any]:
    return {
        "status": "loading",
        "relatedObjects": [
            {"type": "dataSet", "id": dataset_id},
            {"type": "flow", "id": flow_id},
            {"type": "flowRun", "id": run_id},
        ],
        "inputFormat": {"format": "parquet"},
        "metrics": {
            "inputRecordCount": 0,
            "outputRecordCount": 0,
            "failedRecordCount": 0,
            "inputByteSize": 0,
            "inputFileCount": 0,
        },
        "errors": [],
        "tags": {"acp_enableErrorDiagnostics": ["true"]},
    }


def new_run_id() -> str:
    return new_uuid()

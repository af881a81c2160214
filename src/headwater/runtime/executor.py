"""Executes one batch run: source -> mapping -> validation -> Iceberg, committed once with its checkpoint.

Exactly once across crashes: the commit that adds a run's rows also records, in the snapshot summary,
the flow, the run, its batch and the window it read. A worker that takes over a run (its first worker
died) first looks for that checkpoint: found means the rows are in and only the bookkeeping is left;
absent means nothing of the run is visible and it is read again from the same window. Data files of an
attempt that never committed are never referenced.

Windows: a run covers ``(windowStart, windowEnd]`` of the delta column, chosen from the flow and its
latest checkpoint (runtime/window.py). Rows committed late at the source (stamped inside a past window,
visible only after it) are caught by re-reading an overlap before the window and dropping the rows
already committed (runtime/lookback.py); ``readFrom`` in the checkpoint is where the read began. A run
that reads nothing new still commits (an empty snapshot), so its checkpoint moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from headwater.catalog import ids
from headwater.connectors import registry
from headwater.connectors.base import ReadRequest
from headwater.connectors.errors import ConnectorError
from headwater.container import Services
from headwater.errors import HeadwaterError
from headwater.runtime import lookback
from headwater.runtime.faults import crash_point
from headwater.runtime.window import Keys, Window, choose_window, overlap_keys
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import FAILED, IN_PROGRESS, PARTIAL, SUCCESS, new_batch_doc
from headwater.services.tenancy import Actor
from headwater.stores.metadata import QueuedRun, Resource, StaleWrite
from headwater.stores.rowerrors import RowErrorWriter, errors_file

log = logging.getLogger("headwater.runtime")
PROGRESS_EVERY_SECONDS = 1.0


class ThresholdExceeded(Exception):
    def __init__(self, failed: int, total: int, threshold: float) -> None:
        super().__init__(
            f"{failed} of {total} records failed ({100 * failed / max(total, 1):.1f}%), above the "
            f"flow's error threshold of {threshold}%: nothing was committed."
        )


@dataclass
class Counters:
    input_records: int = 0
    output_records: int = 0
    failed_records: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    skipped_records: int = 0  # re-read in the overlap, already committed (runtime/lookback.py)
    error_codes: dict[str, int] = field(default_factory=dict)


def worker_actor(services: Services, run: QueuedRun | Resource, sandbox_name: str) -> Actor:
    org = services.store.get_org(run.scope.org_id)
    sandbox = services.store.get_sandbox(run.scope.org_id, sandbox_name)
    if org is None or sandbox is None:
        raise HeadwaterError("the run's organization or sandbox no longer exists")
    return Actor(org=org, sandbox=sandbox, client_id="headwater-worker")


class RunExecution:
    """One attempt at one run. ``execute`` never raises for run failures: it records them on the run."""

    def __init__(
        self,
        services: Services,
        queued: QueuedRun,
        worker: str,
        on_progress: Callable[[Counters], None] | None = None,
    ) -> None:
        self.services = services
        self.queued = queued
        self.worker = worker
        self.on_progress = on_progress
        self.counters = Counters()
        self._last_progress = 0.0

    # --- entry point ---
    def execute(self) -> Resource | None:
        run = self.services.store.get("run", self.queued.scope, self.queued.run_id)
        if run is None or run.doc.get("state") in (SUCCESS, PARTIAL, FAILED):
            return run
        actor = worker_actor(self.services, run, run.doc["sandboxName"])
        flow = self.services.store.get("flow", run.scope, run.doc["flowId"])
        if flow is not None and flow.doc["flowSpec"]["id"] == ids.ACTIVATION:
            from headwater.runtime.delivery.datasetrun import DatasetActivation

            return DatasetActivation(self.services, run, flow).execute()
        started = now_ms()
        run = self._save(run, {"state": IN_PROGRESS}, started=started)
        try:
            return self._run(actor, run, started)
        except (ConnectorError, ThresholdExceeded, HeadwaterError) as exc:
            code = getattr(exc, "code", "INGEST-1212-400")
            if isinstance(exc, ThresholdExceeded):
                code = "INGEST-1212-400"
            return self._fail(
                run, started, code, str(getattr(exc, "message", None) or getattr(exc, "detail", None) or exc)
            )
        except Exception as exc:  # an unexpected bug: record it on the run, keep the worker alive
            log.exception("run %s failed unexpectedly", run.id)
            return self._fail(
                run, started, "HW-1000-500", f"Internal error ({type(exc).__name__}); see the worker log."
            )

    def _run(self, actor: Actor, run: Resource, started: int) -> Resource:
        svc = self.services
        flow = svc.flows.get(actor, run.doc["flowId"])
        source = svc.source_connections.get(actor, flow.doc["sourceConnectionIds"][0])
        target = svc.target_connections.get(actor, flow.doc["targetConnectionIds"][0])
        dataset_id = target.doc["params"]["dataSetId"]
        dataset = svc.datasets.get(actor, dataset_id)
        resolved = svc.schemas.resolve(actor, dataset.doc["schemaRef"]["id"])
        mapping = self._mapping(actor, flow, resolved)
        table = svc.lake.ensure_table(actor.scope, dataset_id, mapping.target)

        done = svc.lake.latest_checkpoint(table, flowId=flow.id, runId=run.id)
        if done is not None:  # a previous attempt committed; only the bookkeeping was lost
            return self._finish_recovered(actor, run, started, done.properties)

        copy = _transformation(flow, "Copy")
        delta = ((copy or {}).get("deltaColumn") or {}).get("name")
        window = choose_window(svc.lake, run, flow, table, delta)
        batch = self._batch(actor, run, flow, dataset_id)
        connector = self._connector(actor, source)
        timezone = ((copy or {}).get("deltaColumn") or {}).get("timezone")
        params = source.doc.get("params") or {}
        errors_path = errors_file(self.services.settings.warehouse_dir, batch.id)
        threshold = _threshold(flow)
        try:
            keys = overlap_keys(svc.settings.warehouse_dir, flow, connector, params, window)
            request = ReadRequest(
                params=params,
                data_format=source.doc["data"]["format"],
                delta_column=delta,
                window_start=keys.read_from if keys else window.start,
                window_end=window.end,
                options={"delta_timezone": timezone} if isinstance(timezone, str) and timezone else {},
                key_columns=keys.columns if keys else None,
            )
            with RowErrorWriter(errors_path) as row_errors:
                read = connector.read(request)
                read = keys.filter.apply(read) if keys else read
                batches = self._mapped(read, mapping, row_errors, threshold, run)
                files = svc.lake.write_files(table, batches, mapping.target)
        finally:
            connector.close()
        checkpoint = self._checkpoint(flow, run, batch, window, keys)
        crash_point("before_commit")
        # Without a delta column every run reads the whole source: it replaces the dataset's rows rather
        # than appending them a second time (a full refresh).
        snapshot_id, committed = svc.lake.commit(
            table, files, checkpoint, once_per=("flowId", "runId"), replace=not delta
        )
        crash_point("after_commit")
        if not committed:  # another attempt of this run (its worker was presumed dead) committed first
            fresh = svc.lake.load(actor.scope, dataset_id)
            done = svc.lake.latest_checkpoint(fresh, flowId=flow.id, runId=run.id) if fresh else None
            return self._finish_recovered(actor, run, started, done.properties if done else {})
        previous_keys = window.previous.get("keysFile") if window.previous else None
        if previous_keys and previous_keys != checkpoint.get("keysFile"):
            lookback.remove_keys(svc.settings.warehouse_dir, previous_keys)  # only the newest is read
        self.counters.output_bytes = sum(f.file_size_in_bytes for f in files)
        self.counters.skipped_records = keys.filter.skipped if keys else 0
        return self._succeed(actor, run, batch, started, snapshot_id, len(files), window.start, window.end)

    def _checkpoint(
        self, flow: Resource, run: Resource, batch: Resource, window: Window, keys: Keys | None
    ) -> dict[str, Any]:
        """What the commit records: the window, where the read began and the keys of the rows a later
        overlap may read again (written now, before the commit, so both are durable together)."""
        checkpoint: dict[str, Any] = {
            "flowId": flow.id,
            "runId": run.id,
            "batchId": batch.id,
            "windowStart": _iso(window.start),
            "windowEnd": _iso(window.end),
            "inputRecords": self.counters.input_records,
            "failedRecords": self.counters.failed_records,
        }
        if keys is not None:
            digests = bytes(keys.filter.kept)
            warehouse = self.services.settings.warehouse_dir
            checkpoint.update(
                readFrom=_iso(keys.read_from),
                keysFrom=_iso(keys.filter.keys_from),
                keysFile=lookback.write_keys(warehouse, flow.id, batch.id, digests),
                keyCount=len(digests) // lookback.DIGEST_BYTES,
                skippedRecords=keys.filter.skipped,
            )
        return checkpoint

    # --- parts ---
    def _mapping(self, actor: Actor, flow: Resource, resolved: dict[str, Any]) -> Any:
        from headwater.engines.mapping import compile_mapping, identity_compile

        spec = _transformation(flow, "Mapping")
        if spec is None:
            return identity_compile(resolved)
        version = spec.get("mappingVersion")
        mapping_set = self.services.mapping_sets.get(
            actor, spec["mappingId"], int(version) if version is not None else None
        )
        return compile_mapping(self.services.mapping_sets.render(mapping_set), resolved)

    def _connector(self, actor: Actor, source: Resource) -> Any:
        spec_id = source.doc["connectionSpec"]["id"]
        auth: dict[str, Any] = {}
        base_id = source.doc.get("baseConnectionId")
        if base_id:
            base = self.services.connections.get(actor, base_id)
            auth = self.services.connections.secret_params(actor, base)
        auth["_connectionId"] = base_id or source.id
        # Files connectors are confined to their sandbox's files folder (connectors/files/roots.py).
        auth["_orgId"], auth["_sandboxName"] = actor.org.id, actor.sandbox.name
        if not registry.supports(spec_id):
            raise HeadwaterError(f"Connection spec {spec_id} has no batch reader.", code="CONNECTOR-2007-400")
        return registry.connector_for(spec_id, auth, self.services.outbound, self.services.settings)

    def _batch(self, actor: Actor, run: Resource, flow: Resource, dataset_id: str) -> Resource:
        batch_id = run.doc.get("batchId")
        if batch_id:
            existing = self.services.store.get("batch", actor.scope, batch_id)
            if existing is not None:
                return existing
        batch = self.services.batches.create(actor, new_batch_doc(dataset_id, flow.id, run.id))
        self._save(run, {"batchId": batch.id})
        return batch

    def _mapped(
        self,
        source: Iterator[pa.RecordBatch],
        mapping: Any,
        row_errors: RowErrorWriter,
        threshold: float | None,
        run: Resource,
    ) -> Iterator[pa.RecordBatch]:
        counters = self.counters
        for batch in source:
            counters.input_records += batch.num_rows
            counters.input_bytes += batch.nbytes
            result = mapping.apply(batch)
            failed = batch.num_rows - result.output.num_rows
            counters.failed_records += failed
            counters.output_records += result.output.num_rows
            if result.errors:
                row_errors.add(batch, result.errors)
                self.counters.error_codes = row_errors.codes
            self._progress(run)
            crash_point("mid_read")
            if result.output.num_rows:
                yield result.output
        if (
            threshold is not None
            and counters.input_records
            and 100 * counters.failed_records / counters.input_records > threshold
        ):
            raise ThresholdExceeded(counters.failed_records, counters.input_records, threshold)

    def _progress(self, run: Resource) -> None:
        if self.on_progress:
            self.on_progress(self.counters)
        if time.monotonic() - self._last_progress >= PROGRESS_EVERY_SECONDS:
            self._last_progress = time.monotonic()
            current = self.services.store.get("run", run.scope, run.id)
            if current is not None:
                self._save(current, {"metrics": {**current.doc["metrics"], "recordSummary": self._records()}})

    # --- outcomes ---
    def _records(self) -> dict[str, int]:
        c = self.counters
        return {
            "inputRecordCount": c.input_records,
            "outputRecordCount": c.output_records,
            "failedRecordCount": c.failed_records,
        }

    def _succeed(
        self,
        actor: Actor,
        run: Resource,
        batch: Resource,
        started: int,
        snapshot_id: int,
        files: int,
        start: datetime | None,
        end: datetime | None,
    ) -> Resource:
        c = self.counters
        status = PARTIAL if c.failed_records else SUCCESS
        errors = [
            {"code": code, "message": _error_text(code), "recordCount": n}
            for code, n in c.error_codes.items()
        ]
        batch_doc = {
            **batch.doc,
            "status": "success",
            "snapshotId": str(snapshot_id),
            "errors": [
                {"code": e["code"], "description": e["message"], "recordCount": e["recordCount"]}
                for e in errors
            ],
            "metrics": {
                "inputRecordCount": c.input_records,
                "outputRecordCount": c.output_records,
                "failedRecordCount": c.failed_records,
                "inputByteSize": c.input_bytes,
                "inputFileCount": 1,
            },
            "completed": now_ms(),
        }
        self._save(batch, batch_doc)
        crash_point("after_batch_saved")
        return self._complete(run, status, started, errors, batch.id, files, start, end)

    def _finish_recovered(self, actor: Actor, run: Resource, started: int, props: dict[str, str]) -> Resource:
        def get(key: str) -> str:
            return props.get("headwater." + key) or ""

        self.counters.skipped_records = int(get("skippedRecords") or 0)
        self.counters.input_records = int(get("inputRecords") or 0)
        self.counters.failed_records = int(get("failedRecords") or 0)
        self.counters.output_records = self.counters.input_records - self.counters.failed_records
        batch = self.services.store.get("batch", actor.scope, get("batchId") or "")
        if batch is not None and batch.doc.get("status") != "success":
            self._save(batch, {**batch.doc, "status": "success", "completed": now_ms()})
        start = datetime.fromisoformat(get("windowStart")) if get("windowStart") else None
        end = datetime.fromisoformat(get("windowEnd")) if get("windowEnd") else None
        status = PARTIAL if self.counters.failed_records else SUCCESS
        return self._complete(run, status, started, [], get("batchId"), 0, start, end)

    def _fail(self, run: Resource, started: int, code: str, message: str) -> Resource:
        current = self.services.store.get("run", run.scope, run.id) or run
        batch_id = current.doc.get("batchId")
        if batch_id:
            batch = self.services.store.get("batch", run.scope, batch_id)
            if batch is not None:
                self._save(
                    batch,
                    {
                        **batch.doc,
                        "status": "failed",
                        "errors": [
                            {
                                "code": code,
                                "description": message,
                                "recordCount": self.counters.failed_records,
                            }
                        ],
                    },
                )
        return self._complete(
            current, FAILED, started, [{"code": code, "message": message}], batch_id, 0, None, None
        )

    def _complete(
        self,
        run: Resource,
        status: str,
        started: int,
        errors: list[dict[str, Any]],
        batch_id: str | None,
        files: int,
        start: datetime | None,
        end: datetime | None,
    ) -> Resource:
        completed = now_ms()
        c = self.counters
        metrics = {
            "durationSummary": {
                "startedAtUTC": started,
                "completedAtUTC": completed,
                "extensions": {
                    "windowStart": start.isoformat() if start else None,
                    "windowEnd": end.isoformat() if end else None,
                    # rows re-read in the overlap before the window and dropped: already landed
                    "skippedRecordCount": c.skipped_records,
                },
            },
            "sizeSummary": {"inputBytes": c.input_bytes, "outputBytes": c.output_bytes},
            "recordSummary": self._records(),
            "fileSummary": {"inputFileCount": 1 if c.input_records else 0, "outputFileCount": files},
            "statusSummary": {"status": status, "errors": errors},
        }
        activity = {
            "id": "copyActivity",
            "name": "Copy Activity",
            "updatedAtUTC": completed,
            "durationSummary": metrics["durationSummary"],
            "recordSummary": metrics["recordSummary"],
            "statusSummary": {
                "status": status,
                "errors": errors,
                "extensions": {
                    "manifest": {
                        "failedRecords": f"/data/foundation/export/batches/{batch_id}/meta?path=row_errors"
                    }
                }
                if batch_id
                else {},
            },
            "targetInfo": [
                {
                    "type": "TargetConnection",
                    "reference": {"type": "Batch", "ids": [batch_id] if batch_id else []},
                }
            ],
        }
        current = self.services.store.get("run", run.scope, run.id) or run
        return self._save(current, {"state": status, "metrics": metrics, "activities": [activity]})

    def _save(self, resource: Resource, changes: dict[str, Any], started: int | None = None) -> Resource:
        """Update a run or batch document the runtime owns (the worker holds the run's lease)."""
        if started is not None:
            metrics = {
                **resource.doc["metrics"],
                **(changes.get("metrics") or {}),
                "durationSummary": {"startedAtUTC": started, "completedAtUTC": None},
                "statusSummary": {"status": IN_PROGRESS, "errors": []},
            }
            changes = {**changes, "metrics": metrics}
        return save_resource(self.services, resource, changes)


def save_resource(services: Services, resource: Resource, changes: dict[str, Any]) -> Resource:
    """Apply ``changes`` to a run or batch document, retrying on concurrent updates."""
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
            services.store.update(updated, resource.etag)
            return updated
        except StaleWrite:
            fresh = services.store.get(resource.kind, resource.scope, resource.id)
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


def _transformation(flow: Resource, name: str) -> dict[str, Any] | None:
    for item in flow.doc.get("transformations") or []:
        if item.get("name") == name:
            params: dict[str, Any] = item.get("params") or {}
            return params
    return None


def _threshold(flow: Resource) -> float | None:
    value = (flow.doc.get("options") or {}).get("partialIngestionPercent")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _error_text(code: str) -> str:
    return {
        "MAPPER-3700-400": "Mapper Transform Error",
        "INGEST-1555-400": "A required field is missing",
        "INGEST-1401-400": "A value does not match the schema",
    }.get(code, "Record errors")

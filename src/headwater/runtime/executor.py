"""Executes one batch run: source -> mapping -> validation -> Iceberg, committed once with its checkpoint.

Exactly once across crashes: the commit that adds a run's rows also records, in the snapshot summary,
the flow, the run, its batch and the window it read. A worker that takes over a run (its first worker
died) first looks for that checkpoint: found means the rows are in and only the bookkeeping is left;
absent means nothing of the run is visible and it is read again from the same window. Data files of an
attempt that never committed are never referenced.

What the run reads comes from its flow's plan (services/plans.py); what the run document says is
written by the run ledger (services/ledger.py): this module reads, maps, commits and reports.

Windows: a run covers ``(windowStart, windowEnd]`` of the delta column, chosen from the flow and its
latest checkpoint (runtime/window.py). Rows committed late at the source (stamped inside a past window,
visible only after it) are caught by re-reading an overlap before the window and dropping the rows
already committed (runtime/lookback.py); ``readFrom`` in the checkpoint is where the read began. A run
that reads nothing new still commits (an empty snapshot), so its checkpoint moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from headwater.catalog.ids import flow_kind
from headwater.connectors import registry
from headwater.connectors.base import ReadRequest
from headwater.connectors.errors import ConnectorError, InvalidSourceParams
from headwater.engines import javadate
from headwater.errors import HeadwaterError
from headwater.faults import crash_point
from headwater.runtime import lookback, partitions
from headwater.runtime.context import Runtime
from headwater.runtime.window import Keys, Window, choose_window, overlap_keys
from headwater.services import ledger
from headwater.services.ids import now_ms
from headwater.services.plans import FlowPlan, SourcePlan
from headwater.services.runs import FAILED, PARTIAL, SUCCESS, new_batch_doc
from headwater.services.tenancy import Actor
from headwater.stores.metadata import QueuedRun, Resource, Scope
from headwater.stores.rowerrors import RowErrorFiles, RowErrorWriter

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


def worker_actor(services: Runtime, run: QueuedRun | Resource, sandbox_name: str) -> Actor:
    org = services.store.get_org(run.scope.org_id)
    sandbox = services.store.get_sandbox(run.scope.org_id, sandbox_name)
    if org is None or sandbox is None:
        raise HeadwaterError("the run's organization or sandbox no longer exists")
    return Actor(org=org, sandbox=sandbox, client_id="headwater-worker")


class RunExecution:
    """One attempt at one run. ``execute`` never raises for run failures: it records them on the run."""

    def __init__(
        self,
        services: Runtime,
        queued: QueuedRun,
        worker: str,
        on_progress: Callable[[Counters], None] | None = None,
    ) -> None:
        self.services = services
        self.ledger: ledger.RunLedger = services.ledger
        self.queued = queued
        self.worker = worker
        self.on_progress = on_progress
        self.counters = Counters()
        self._last_progress = 0.0

    # --- entry point ---
    def execute(self) -> Resource | None:
        run = self.ledger.get(self.queued.scope, self.queued.run_id)
        if run is None or run.doc.get("state") in (SUCCESS, PARTIAL, FAILED):
            return run
        actor = worker_actor(self.services, run, run.doc["sandboxName"])
        flow = self.services.store.get("flow", run.scope, run.doc["flowId"])
        if flow is not None and flow_kind(flow.doc).delivers:
            from headwater.runtime.delivery.datasetrun import DatasetActivation

            return DatasetActivation(self.services, run, flow).execute()
        started = now_ms()
        run = self.ledger.start(run, started)
        try:
            return self._run(actor, run, started)
        except (ConnectorError, ThresholdExceeded, HeadwaterError) as exc:
            code = getattr(exc, "code", "INGEST-1212-400")
            if isinstance(exc, ThresholdExceeded):
                code = "INGEST-1212-400"
            message = str(getattr(exc, "message", None) or getattr(exc, "detail", None) or exc)
            return self.ledger.fail_copy(run, started, code, message, self.counters)
        except Exception as exc:  # an unexpected bug: record it on the run, keep the worker alive
            log.exception("run %s failed unexpectedly", run.id)
            message = f"Internal error ({type(exc).__name__}); see the worker log."
            return self.ledger.fail_copy(run, started, "HW-1000-500", message, self.counters)

    def _run(self, actor: Actor, run: Resource, started: int) -> Resource:
        svc = self.services
        plan = svc.plans.resolve(actor, run.doc["flowId"])
        assert plan.source is not None and plan.dataset_id is not None and plan.schema is not None
        mapping = self._mapping(plan)
        table = svc.lake.ensure_table(actor.scope, plan.dataset_id, mapping.target)

        done = svc.lake.latest_checkpoint(table, flowId=plan.flow_id, runId=run.id)
        if done is not None:  # a previous attempt committed; only the bookkeeping was lost
            return self._finish_recovered(run, started, done.properties)

        copy = plan.transformation("Copy")
        delta = ((copy or {}).get("deltaColumn") or {}).get("name")
        window = choose_window(svc.lake, run, plan, table, delta)
        batch = self._batch(actor, run, plan.flow_id, plan.dataset_id)
        connector = self._connector(actor, plan.source)
        params = dict(plan.source.params)
        threshold = _threshold(plan)
        try:
            keys = overlap_keys(lookback.keys_files(svc.settings), plan, connector, params, window)
            request = ReadRequest(
                params=params,
                data_format=plan.source.data_format or "",
                delta_column=delta,
                window_start=keys.read_from if keys else window.start,
                window_end=window.end,
                options=delta_options(copy),
                key_columns=keys.columns if keys else None,
            )
            groups = None if keys else partitions.split(svc.settings, connector, params)
            if groups:  # read and mapped by several workers: the files they wrote, committed here
                window, files = self._partitioned(run, batch, table, window, groups, threshold)
            else:
                with RowErrorFiles.of(svc.settings).writer(batch.id) as row_errors:
                    read = connector.read(request)
                    read = keys.filter.apply(read) if keys else read
                    batches = self._mapped(read, mapping, row_errors, threshold, run)
                    files = svc.lake.write_files(table, batches, mapping.target)
        finally:
            connector.close()
        checkpoint = self._checkpoint(plan.flow_id, run, batch, window, keys)
        crash_point("before_commit")
        # Without a delta column every run reads the whole source: it replaces the dataset's rows rather
        # than appending them a second time (a full refresh).
        snapshot_id, committed = svc.lake.commit(
            table, files, checkpoint, once_per=("flowId", "runId"), replace=not delta
        )
        crash_point("after_commit")
        if not committed:  # another attempt of this run (its worker was presumed dead) committed first
            fresh = svc.lake.load(actor.scope, plan.dataset_id)
            done = svc.lake.latest_checkpoint(fresh, flowId=plan.flow_id, runId=run.id) if fresh else None
            return self._finish_recovered(run, started, done.properties if done else {})
        previous_keys = window.previous.get("keysFile") if window.previous else None
        if previous_keys and previous_keys != checkpoint.get("keysFile"):
            lookback.remove_keys(lookback.keys_files(svc.settings), previous_keys)  # only the newest is read
        self.counters.output_bytes = sum(f.file_size_in_bytes for f in files)
        self.counters.skipped_records = keys.filter.skipped if keys else 0
        self._project_profiles(actor.scope, plan.dataset_id)
        self.ledger.batch_succeeded(batch, snapshot_id, self.counters)
        crash_point("after_batch_saved")
        span = ledger.Window(window.start, window.end)
        return self.ledger.copy_succeeded(run, batch.id, started, len(files), span, self.counters)

    def _partitioned(
        self,
        run: Resource,
        batch: Resource,
        table: Any,
        window: Window,
        groups: list[list[str]],
        threshold: float | None,
    ) -> tuple[Window, list[Any]]:
        """Queue the run's partitions (or find those an earlier attempt queued, with the window it
        chose), work on them beside the other workers until all are done, and gather what they wrote."""
        copy = partitions.PartitionedCopy(self.services, self.worker, run, batch.id)
        window = copy.queue(window, groups)
        outputs = copy.work(lambda done: self._progress_of(run, done))
        partitions.count(outputs, self.counters)
        files = partitions.data_files(table, outputs)
        counters = self.counters
        failed_share = 100 * counters.failed_records / max(counters.input_records, 1)
        if threshold is not None and counters.input_records and failed_share > threshold:
            raise ThresholdExceeded(counters.failed_records, counters.input_records, threshold)
        return window, files

    def _progress_of(self, run: Resource, done: list[dict[str, Any]]) -> None:
        partitions.count(done, self.counters)
        self._progress(run)

    def _project_profiles(self, scope: Scope, dataset_id: str) -> None:
        """A profile-enabled dataset's new rows reach the profiles before the run shows success. A
        failure here does not fail the run (its rows are in the lake): the projector retries."""
        try:
            self.services.profile_projector.catch_up(scope, dataset_id)
        except Exception:
            log.exception("profile projection of dataset %s failed; the projector retries", dataset_id)

    def _checkpoint(
        self, flow_id: str, run: Resource, batch: Resource, window: Window, keys: Keys | None
    ) -> dict[str, Any]:
        """What the commit records: the window, where the read began and the keys of the rows a later
        overlap may read again (written now, before the commit, so both are durable together)."""
        checkpoint: dict[str, Any] = {
            "flowId": flow_id,
            "runId": run.id,
            "batchId": batch.id,
            "windowStart": _iso(window.start),
            "windowEnd": _iso(window.end),
            "inputRecords": self.counters.input_records,
            "failedRecords": self.counters.failed_records,
        }
        if keys is not None:
            digests = bytes(keys.filter.kept)
            files = lookback.keys_files(self.services.settings)
            checkpoint.update(
                readFrom=_iso(keys.read_from),
                keysFrom=_iso(keys.filter.keys_from),
                keysFile=lookback.write_keys(files, flow_id, batch.id, digests),
                keyCount=len(digests) // lookback.DIGEST_BYTES,
                skippedRecords=keys.filter.skipped,
            )
        return checkpoint

    # --- parts ---
    def _mapping(self, plan: FlowPlan) -> Any:
        return plan_mapping(plan)

    def _connector(self, actor: Actor, source: SourcePlan) -> Any:
        return source_connector(self.services, actor, source)

    def _batch(self, actor: Actor, run: Resource, flow_id: str, dataset_id: str) -> Resource:
        batch_id = run.doc.get("batchId")
        if batch_id:
            existing = self.services.store.get("batch", actor.scope, batch_id)
            if existing is not None:
                return existing
        batch = self.services.batches.create(actor, new_batch_doc(dataset_id, flow_id, run.id))
        self.ledger.save(run, {"batchId": batch.id})
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
            self.ledger.progress(run, self.counters)

    def _finish_recovered(self, run: Resource, started: int, props: dict[str, str]) -> Resource:
        def get(key: str) -> str:
            return props.get("headwater." + key) or ""

        self.counters.skipped_records = int(get("skippedRecords") or 0)
        self.counters.input_records = int(get("inputRecords") or 0)
        self.counters.failed_records = int(get("failedRecords") or 0)
        self.counters.output_records = self.counters.input_records - self.counters.failed_records
        start = datetime.fromisoformat(get("windowStart")) if get("windowStart") else None
        end = datetime.fromisoformat(get("windowEnd")) if get("windowEnd") else None
        span = ledger.Window(start, end)
        return self.ledger.recover_copy(run, started, get("batchId"), span, self.counters)


def plan_mapping(plan: FlowPlan) -> Any:
    """The flow's compiled mapping (the identity mapping of its schema when it has none)."""
    from headwater.engines.mapping import compile_mapping, identity_compile

    assert plan.schema is not None
    resolved = dict(plan.schema)
    if plan.mapping is None:
        return identity_compile(resolved)
    return compile_mapping(dict(plan.mapping.doc), resolved)


def source_connector(services: Runtime, actor: Actor, source: SourcePlan) -> Any:
    """The batch reader of the flow's source; the caller closes it."""
    auth = services.plans.source_auth(actor, source)
    if not registry.supports(source.spec_id):
        message = f"Connection spec {source.spec_id} has no batch reader."
        raise HeadwaterError(message, code="CONNECTOR-2007-400")
    return registry.connector_for(source.spec_id, auth, services.outbound, services.settings)


def _threshold(plan: FlowPlan) -> float | None:
    value = plan.options.get("partialIngestionPercent")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def delta_options(copy: Mapping[str, Any] | None) -> dict[str, Any]:
    """The read options of the Copy transformation's ``deltaColumn``: its timezone, and its Java
    ``dateFormat`` as a strptime format (refused when it has none, naming the field)."""
    delta = (copy or {}).get("deltaColumn") or {}
    options: dict[str, Any] = {}
    timezone = delta.get("timezone")
    if isinstance(timezone, str) and timezone:
        options["delta_timezone"] = timezone
    pattern = delta.get("dateFormat")
    if isinstance(pattern, str) and pattern:
        try:
            options["delta_format"] = javadate.strptime_format(pattern)
        except javadate.UnsupportedPattern as exc:
            raise InvalidSourceParams(f"The Copy transformation's deltaColumn.dateFormat: {exc}") from None
    return options

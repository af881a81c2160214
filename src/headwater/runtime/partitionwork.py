"""Partitioned batch runs, a worker's side: claim one partition of any run (runtime/partitions.py),
read and map its files, write their rows as Parquet data files of the dataset's table (not committed),
and record the files and the counts in the partition's row, only while this worker still holds it.

A partition never commits and never writes the run's document: the run's owner counts and commits.
Failures that would fail an unsplit run (the source refused, a file that does not parse, the lake
unavailable) are recorded as the partition's ``error``; the owner fails the run with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from headwater.connectors.base import ReadRequest
from headwater.errors import HeadwaterError
from headwater.faults import crash_point
from headwater.runtime.context import Runtime
from headwater.runtime.executor import Counters, delta_options, plan_mapping, source_connector, worker_actor
from headwater.runtime.partitions import MAX_ATTEMPTS, _time
from headwater.services.ids import now_ms
from headwater.services.runs import FAILED, PARTIAL, SUCCESS
from headwater.stores.metadata import RunPartition
from headwater.stores.rowerrors import RowErrorFiles, RowErrorWriter

log = logging.getLogger("headwater.runtime")


def run_one(services: Runtime, worker: str) -> bool:
    """Claim and execute one partition of any run; False when there was none to do."""
    lease_ms = int(services.settings.run_lease_seconds * 1000)
    claimed = services.store.claim_partition(worker, lease_ms, now_ms(), max_attempts=MAX_ATTEMPTS)
    if claimed is None:
        return False
    execute(services, claimed, worker)
    return True


def execute(services: Runtime, partition: RunPartition, worker: str) -> bool:
    """Execute a claimed partition under its renewed lease; whether its output was recorded (False:
    another worker took it over, and the files written here are orphans)."""
    lease_ms = int(services.settings.run_lease_seconds * 1000)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(services, partition, worker, lease_ms, stop), daemon=True)
    renewer.start()
    try:
        output = _output(services, partition)
    except HeadwaterError as exc:  # connector errors included: the run fails with it
        message = str(getattr(exc, "message", None) or exc.detail)
        output = {"files": [], "error": {"code": exc.code, "message": message}}
    except Exception as exc:  # an unexpected bug: recorded, the worker stays alive
        log.exception("partition %s of run %s failed unexpectedly", partition.part, partition.run_id)
        message = f"Internal error ({type(exc).__name__}); see the worker log."
        output = {"files": [], "error": {"code": "HW-1000-500", "message": message}}
    finally:
        stop.set()
        renewer.join()
    if services.store.finish_partition(partition.run_id, partition.part, worker, output):
        return True
    log.warning("worker %s lost partition %s of run %s", worker, partition.part, partition.run_id)
    return False


def _output(services: Runtime, partition: RunPartition) -> dict[str, Any]:
    run = services.ledger.get(partition.scope, partition.run_id)
    if run is None or run.doc.get("state") in (SUCCESS, PARTIAL, FAILED):
        return {"files": [], "abandoned": True}  # the run ended without it (it failed)
    actor = worker_actor(services, run, run.doc["sandboxName"])
    plan = services.plans.resolve(actor, run.doc["flowId"])
    assert plan.source is not None and plan.dataset_id is not None
    mapping = plan_mapping(plan)
    table = services.lake.ensure_table(actor.scope, plan.dataset_id, mapping.target)
    copy = plan.transformation("Copy")
    spec = partition.spec
    request = ReadRequest(
        params=dict(plan.source.params),
        data_format=plan.source.data_format or "",
        delta_column=((copy or {}).get("deltaColumn") or {}).get("name"),
        window_start=_time(spec.get("windowStart")),
        window_end=_time(spec.get("windowEnd")),
        options={**delta_options(copy), "files": list(spec["files"])},
    )
    counters = Counters()
    connector = source_connector(services, actor, plan.source)
    try:
        with RowErrorFiles.of(services.settings).writer(spec["batchId"], part=partition.part) as row_errors:
            batches = _mapped(connector.read(request), mapping, row_errors, counters)
            files = services.lake.write_files(table, batches, mapping.target)
    finally:
        connector.close()
    return {
        "files": [f.file_path for f in files],
        "inputRecords": counters.input_records,
        "outputRecords": counters.output_records,
        "failedRecords": counters.failed_records,
        "inputBytes": counters.input_bytes,
        "outputBytes": sum(f.file_size_in_bytes for f in files),
        "errorCodes": counters.error_codes,
    }


def _mapped(
    source: Iterator[pa.RecordBatch], mapping: Any, row_errors: RowErrorWriter, counters: Counters
) -> Iterator[pa.RecordBatch]:
    for batch in source:
        result = mapping.apply(batch)
        counters.input_records += batch.num_rows
        counters.input_bytes += batch.nbytes
        counters.failed_records += batch.num_rows - result.output.num_rows
        counters.output_records += result.output.num_rows
        if result.errors:
            row_errors.add(batch, result.errors)
            counters.error_codes = dict(row_errors.codes)
        crash_point("mid_partition")
        if result.output.num_rows:
            yield result.output


def _renew(
    services: Runtime, partition: RunPartition, worker: str, lease_ms: int, stop: threading.Event
) -> None:
    while not stop.wait(lease_ms / 3000):
        if not services.store.renew_partition(partition.run_id, partition.part, worker, now_ms() + lease_ms):
            log.warning("worker %s lost the lease of partition %s", worker, partition.part)
            return

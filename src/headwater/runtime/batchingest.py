"""Promoting a completed ingestion batch into its dataset's Iceberg table: every staged file, validated
against the dataset's schema, in ONE commit. ``POST /import/batches/{id}?action=COMPLETE`` only queues
the batch (services/batchqueue.py); a worker's promotion runner (runtime/batchpromotion.py) calls
:func:`promote`.

The files are already in the schema's shape (no mapping set): they go through the identity mapping of
the schema (``engines.mapping.identity_compile``), the same validation and Arrow conversion as a flow
without a Mapping step (runtime/executor.py) and as streaming XDM messages (runtime/streaming.py). Rows
that fail it become the batch's row errors (stores/rowerrors.py); the others are written as Parquet data
files (``Lake.write_files``) and added by ``Lake.commit`` in one snapshot whose summary carries the batch
id, with ``once_per=("batchId",)``: another attempt (a runner taking over after a crash between the
commit and the batch's update) finds that snapshot and only finishes the bookkeeping from its counts.
Nothing is committed twice.

A file that cannot be parsed in the batch's format fails the batch before anything is committed (its
rows and those of the other files included); so does a share of failed rows over the batch's
``partialIngestionPercentage``. Data files written by an attempt that did not commit are orphans, never
visible (as a flow run's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from headwater.connectors.errors import ConnectorError
from headwater.connectors.files import client
from headwater.connectors.files.config import compression_for, source_params
from headwater.errors import HeadwaterError
from headwater.faults import crash_point
from headwater.runtime.context import Runtime
from headwater.runtime.executor import Counters
from headwater.services.batchingest import FAILED, LOADING, PROCESSING, SUCCESS, BatchIngestion, dataset_of
from headwater.services.ids import now_ms
from headwater.services.ingeststaging import StagedFile
from headwater.services.ledger import copy_errors
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource, Scope
from headwater.stores.rowerrors import RowErrorFiles, RowErrorWriter

log = logging.getLogger("headwater.runtime")
BAD_FILE = "INGEST-1401-400"  # a file that cannot be parsed in the batch's format
OVER_THRESHOLD = "INGEST-1212-400"
GIVEN_UP = "INGEST-1500-500"  # its promotion killed its worker again and again (batchqueue.MAX_CRASHES)
BATCH_ROWS = 65_536

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class BadFile(Exception):
    def __init__(self, name: str, fmt: str, reason: str) -> None:
        super().__init__(f"File {name!r} cannot be parsed as {fmt}: {reason}")
        self.name = name


def _lock(batch_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(batch_id, threading.Lock())


def promote(services: Runtime, ingestion: BatchIngestion, scope: Scope, batch_id: str) -> Resource | None:
    """Promote the queued batch ``batch_id`` of ``scope`` (idempotent; see the module's docstring) and
    remove its staging. Returns the batch as saved: ``success`` (some rows may have failed:
    ``metrics.failedRecordCount``), ``failed``, or ``aborted`` (nothing to do); None when it is gone."""
    with _lock(batch_id):
        batch = services.store.get("batch", scope, batch_id)
        if batch is None:
            return None
        status = batch.doc.get("status")
        if status == LOADING:  # COMPLETE queued it, then died before marking it
            batch = services.ledger.save(batch, {"status": PROCESSING})
        elif status != PROCESSING:  # final: a crash came after its update, before the queue's
            ingestion.remove_staging(batch.id)
            return batch
        actor = _actor(services, scope)
        saved = _promote(services, ingestion, actor, batch, ingestion.staged_files(batch))
        ingestion.remove_staging(batch.id)  # final either way: the files are in the table, or refused
        return saved


def give_up(services: Runtime, ingestion: BatchIngestion, batch: Resource, message: str) -> Resource:
    """Fail ``batch``, whose promotion never finished, with ``message``, and remove its staging; unless
    its commit is in its dataset's table (a crash after it): then it succeeded, from its checkpoint."""
    with _lock(batch.id):
        table = services.lake.load(batch.scope, dataset_of(batch))
        done = services.lake.latest_checkpoint(table, batchId=batch.id) if table is not None else None
        if done is not None:
            saved = _recovered(services, ingestion, batch, done.snapshot_id, done.properties)
        else:
            saved = _failed(services, batch, GIVEN_UP, message, Counters())
        ingestion.remove_staging(batch.id)
        return saved


def _actor(services: Runtime, scope: Scope) -> Actor:
    org = services.store.get_org(scope.org_id)
    found = [s for s in services.store.list_sandboxes(scope.org_id) if s.id == scope.sandbox_id]
    if org is None or not found:
        raise HeadwaterError("the batch's organization or sandbox no longer exists")
    return Actor(org=org, sandbox=found[0], client_id="headwater-worker")


def _promote(
    services: Runtime, ingestion: BatchIngestion, actor: Actor, batch: Resource, files: list[StagedFile]
) -> Resource:
    from headwater.engines.mapping import identity_compile

    dataset_id = dataset_of(batch)
    dataset = services.store.get("dataSet", actor.scope, dataset_id)
    if dataset is None:
        return _failed(
            services, batch, "INGEST-1404-400", f"Dataset {dataset_id} no longer exists.", Counters()
        )
    schemas = services.plans.schemas
    schema = schemas.get_schema(actor, dataset.doc["schemaRef"]["id"])
    if schema is None:
        return _failed(
            services, batch, "INGEST-1404-400", "The dataset's schema no longer exists.", Counters()
        )
    mapping = identity_compile(schemas.resolved(actor, schema))
    table = services.lake.ensure_table(actor.scope, dataset_id, mapping.target)
    done = services.lake.latest_checkpoint(table, batchId=batch.id)
    if done is not None:  # committed before a crash: only the batch's update was lost
        return _recovered(services, ingestion, batch, done.snapshot_id, done.properties)

    counters = Counters()
    fmt = batch.doc["inputFormat"]["format"]
    threshold = _threshold(batch)
    try:
        with RowErrorFiles.of(services.settings).writer(batch.id) as row_errors:
            rows = _validated(_read(files, fmt, counters), mapping, row_errors, counters)
            data_files = services.lake.write_files(table, rows, mapping.target)
    except BadFile as exc:
        counters.failed_records = counters.input_records
        return _failed(services, batch, BAD_FILE, str(exc), counters, len(files))
    if (
        threshold is not None
        and counters.input_records
        and 100 * counters.failed_records / counters.input_records > threshold
    ):
        message = (
            f"{counters.failed_records} of {counters.input_records} records failed "
            f"({100 * counters.failed_records / counters.input_records:.1f}%), above the batch's "
            f"partialIngestionPercentage of {threshold}%: nothing was committed."
        )
        return _failed(services, batch, OVER_THRESHOLD, message, counters, len(files))
    checkpoint = {
        "origin": "batchIngestion",
        "batchId": batch.id,
        "inputRecords": counters.input_records,
        "failedRecords": counters.failed_records,
        "inputBytes": counters.input_bytes,
        "inputFiles": len(files),
        "errorCodes": ",".join(f"{k}={v}" for k, v in counters.error_codes.items()),
    }
    crash_point("batch_before_commit")
    snapshot_id, committed = services.lake.commit(table, data_files, checkpoint, once_per=("batchId",))
    crash_point("batch_after_commit")
    if not committed:
        fresh = services.lake.load(actor.scope, dataset_id)
        found = services.lake.latest_checkpoint(fresh, batchId=batch.id) if fresh is not None else None
        if found is None:
            raise HeadwaterError("the batch's commit was refused but its snapshot is not in the table")
        return _recovered(services, ingestion, batch, found.snapshot_id, found.properties)
    counters.output_bytes = sum(f.file_size_in_bytes for f in data_files)
    saved = _succeeded(services, batch, snapshot_id, counters, len(files))
    _project_profiles(services, actor, dataset_id)
    return saved


def _read(files: list[StagedFile], fmt: str, counters: Counters) -> Iterator[pa.RecordBatch]:
    """The record batches of every file, in order; a file that cannot be parsed raises BadFile."""
    import pyarrow as pa

    for staged in files:
        name = staged.name
        params = source_params({"path": name})
        opener = _opener(staged, compression_for(name, None))
        try:
            if fmt == "json":
                source: Iterator[pa.RecordBatch] = client.json_batches(opener, params)
            elif fmt == "csv":
                source = client.delimited_batches(opener, params)
            else:
                source = client.parquet_batches(opener, params, BATCH_ROWS)
            counters.input_bytes += staged.size
            yield from source
        except (ConnectorError, ValueError, UnicodeError, pa.ArrowException) as exc:
            reason = getattr(exc, "detail", None) or str(exc)
            first = reason.strip().splitlines()[0][:300] if reason.strip() else type(exc).__name__
            raise BadFile(name, fmt, first) from exc


def _opener(staged: StagedFile, codec: str | None) -> client.Opener:
    """How to read a staged file: on a disk with the files connector's checks; an object as it is."""
    if staged.path is not None:
        return client.opener(staged.path, staged.name, codec, staged.path.parent)

    def open_object() -> pa.NativeFile:
        raw = staged.open()
        return pa.CompressedInputStream(raw, codec) if codec else raw

    return open_object


def _validated(
    source: Iterator[pa.RecordBatch], mapping: Any, row_errors: RowErrorWriter, counters: Counters
) -> Iterator[pa.RecordBatch]:
    for batch in source:
        counters.input_records += batch.num_rows
        result = mapping.apply(batch)
        counters.failed_records += batch.num_rows - result.output.num_rows
        counters.output_records += result.output.num_rows
        if result.errors:
            row_errors.add(batch, result.errors)
            counters.error_codes = dict(row_errors.codes)
        if result.output.num_rows:
            yield result.output


def _threshold(batch: Resource) -> float | None:
    values = (batch.doc.get("tags") or {}).get("acp_partialIngestionPercent") or []
    try:
        return float(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _metrics(counters: Counters, files: int) -> dict[str, int]:
    return {
        "inputRecordCount": counters.input_records,
        "outputRecordCount": counters.output_records,
        "failedRecordCount": counters.failed_records,
        "inputByteSize": counters.input_bytes,
        "inputFileCount": files,
    }


def _succeeded(
    services: Runtime, batch: Resource, snapshot_id: int, counters: Counters, files: int
) -> Resource:
    """The committed batch: ``success`` with its counts and its row errors by code (as a flow's)."""
    errors = [
        {"code": e["code"], "description": e["message"], "recordCount": e["recordCount"]}
        for e in copy_errors(counters)
    ]
    changes = {
        "status": SUCCESS,
        "snapshotId": str(snapshot_id),
        "errors": errors,
        "metrics": _metrics(counters, files),
        "completed": now_ms(),
    }
    return services.ledger.save(services.ledger.current(batch), changes)


def _failed(
    services: Runtime, batch: Resource, code: str, message: str, counters: Counters, files: int = 0
) -> Resource:
    """Nothing committed: the batch fails with ``code`` and ``message``."""
    failure = {"code": code, "description": message, "recordCount": counters.failed_records}
    changes = {
        "status": FAILED,
        "errors": [failure],
        "metrics": _metrics(counters, files),
        "completed": now_ms(),
    }
    return services.ledger.save(services.ledger.current(batch), changes)


def _recovered(
    services: Runtime, ingestion: BatchIngestion, batch: Resource, snapshot_id: int, props: dict[str, str]
) -> Resource:
    """The batch's commit is in the table (an earlier attempt made it): finish from its checkpoint."""

    def get(key: str) -> str:
        return props.get("headwater." + key) or ""

    counters = Counters()
    counters.input_records = int(get("inputRecords") or 0)
    counters.failed_records = int(get("failedRecords") or 0)
    counters.output_records = counters.input_records - counters.failed_records
    counters.input_bytes = int(get("inputBytes") or 0)
    for item in filter(None, get("errorCodes").split(",")):
        code, _, count = item.partition("=")
        counters.error_codes[code] = int(count or 0)
    return _succeeded(services, batch, snapshot_id, counters, int(get("inputFiles") or 0))


def _project_profiles(services: Runtime, actor: Actor, dataset_id: str) -> None:
    """A profile-enabled dataset's new rows reach the profiles (a failure here does not fail the batch:
    its rows are in the lake and the projector retries)."""
    try:
        services.profile_projector.catch_up(actor.scope, dataset_id)
    except Exception:
        log.exception("profile projection of dataset %s failed; the projector retries", dataset_id)

"""Streaming flows: micro-batches from the streaming log into each flow's dataset, exactly once.

Each enabled streaming flow has one :class:`MicroBatcher`. A step reads the records after the position
committed in the dataset's table, maps them (raw messages through the flow's mapping set, XDM messages
as they are), drops records whose id is already in the dataset, and commits the rows together with the
new log position in one Iceberg transaction (:meth:`Lake.commit_stream`). A crash before that commit
leaves the position where it was, so the records are read again; a crash after it leaves them
committed, and the position moved with them: every acknowledged record lands exactly once.

Two batchers on one flow (worker processes on one machine or several) cannot both commit the same
records: the commit is a compare-and-swap in the Iceberg catalog (lake/iceberg.py ``commit_stream``) that
asserts both the snapshot the records were deduplicated against and the log position they were read from
(lake/requirements.py), and the catalog's row is swapped only if no other commit came between (an
``UPDATE … WHERE metadata_location = <the one read>`` in PostgreSQL or SQLite). The loser adds nothing
and reads again from the winner's position. That is what decides; the flow's lock
(runtime/streamsupervisor.py) only keeps a second batcher from doing the work in vain. The streaming
log plays no part: a read is a plain read from an offset, not a lease (JetStream's consumers are
ephemeral and unacknowledged).

Runs: a streaming flow reports one run per hour (its window), created at the first commit in that
hour and updated after each commit with the records in, out and failed; it completes when the hour is
over. Failed records are kept as row errors of the run's batch.

What fails where: a message that cannot be read, mapped or validated is one message's fault. It becomes a
row error of the run (the message as received, with its reason), is committed with the others (the log
position moves past it) and never blocks the messages behind it (runtime/streammessages.py turns a
micro-batch's messages into rows and row errors). Anything that raises out of :meth:`MicroBatcher.step`
is not one message's fault (the lake, the log or the metadata database is unavailable, the mapping fails
on every message): nothing is committed, the supervisor retries with backoff, and the run of the hour
shows the flow failing with the error until a micro-batch succeeds (:meth:`MicroBatcher.failed`,
runtime/streamruns.py).

This module is the micro-batcher's loop: the flow's plan, reading the log, dropping duplicates, upserts,
the commit with its checkpoint, and how a failed micro-batch is reported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.catalog.ids import FlowKind, flow_kind
from headwater.runtime.context import Runtime
from headwater.runtime.executor import worker_actor
from headwater.runtime.streammessages import MappingBroken, _corrupt, _decode, _fill, _map
from headwater.runtime.streamruns import StreamRuns
from headwater.services.ids import now_ms
from headwater.services.plans import FlowPlan, MappingPlan
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource
from headwater.stores.rowerrors import RowErrorFiles

log = logging.getLogger("headwater.streaming")

RUN_WINDOW_MS = 3600_000
MAX_RECORDS_PER_COMMIT = 50_000
IDLE_POLL_SECONDS = 0.05
EXPIRE_EVERY_COMMITS = 600
KEEP_SNAPSHOTS_MS = 3600_000


def is_streaming(flow: Resource) -> bool:
    return flow_kind(flow.doc) is FlowKind.STREAMING


@dataclass
class Plan:
    """What a flow's micro-batches need, built from its resolved plan (services/plans.py; rebuilt when
    the flow changes)."""

    actor: Actor
    flow: Resource
    dataset_id: str
    target: pa.Schema
    raw: Any  # CompiledMapping of raw messages (the flow's mapping set, or identity)
    xdm: Any  # CompiledMapping of XDM messages (identity)
    cadence_ms: int
    dedup_path: str | None
    upsert_key: str | None
    fills: tuple[str, ...] = ()  # required fields the mapping leaves empty, filled per message
    mapped: bool = False  # raw messages go through a mapping set (not the identity of the schema)
    version: str = ""  # the resolved plan's (FlowPlan.version)

    @property
    def sandbox_name(self) -> Any:
        return self.flow.doc.get("sandboxName")

    @classmethod
    def of(cls, actor: Actor, resolved: FlowPlan) -> Plan:
        """The micro-batcher's plan of ``resolved``: the mappings compiled, deduplication and upserts
        read from the options."""
        from headwater.engines.mapping import identity_compile

        assert resolved.dataset_id is not None and resolved.schema is not None
        schema = dict(resolved.schema)
        xdm = identity_compile(schema)
        raw, fills = _raw_mapping(schema, resolved.mapping) if resolved.mapping is not None else (xdm, ())
        options = resolved.options
        names = set(xdm.target.names)
        dedup = options.get("dedupPath") or ("_id" if "_id" in names else None)
        if options.get("deduplicate") is False:
            dedup = None
        upsert = options.get("upsertKey")
        return cls(
            actor=actor,
            flow=resolved.flow,
            dataset_id=resolved.dataset_id,
            target=xdm.target,
            raw=raw,
            xdm=xdm,
            cadence_ms=int(float(options.get("cadenceSeconds") or 0) * 1000),
            dedup_path=dedup if isinstance(dedup, str) else None,
            upsert_key=upsert if isinstance(upsert, str) else None,
            fills=fills,
            mapped=resolved.mapping is not None,
            version=resolved.version,
        )


def _raw_mapping(schema: dict[str, Any], mapping: MappingPlan) -> tuple[Any, tuple[str, ...]]:
    """The compiled mapping of raw messages, and the required fields it leaves for the batcher to fill."""
    from headwater.engines.mapping import compile_mapping

    doc = dict(mapping.doc)
    mapped = {m.get("destinationXdmPath") for m in doc.get("mappings") or []}
    # An event schema requires _id and timestamp; a webhook mapping (document 004's) often maps
    # neither: the batcher fills them (see _fill) instead of failing every message.
    required = schema.get("required", [])
    fills = tuple(f for f in ("_id", "timestamp") if f not in mapped and f in required)
    relaxed = {**schema, "required": [r for r in required if r not in fills]}
    return compile_mapping(doc, relaxed), fills


@dataclass
class StepResult:
    consumed: int = 0
    committed: bool = False
    output: int = 0
    failed: int = 0
    duplicates: int = 0
    wait: float = 0.0  # records wait for the flow's cadence: step again in this many seconds


class MicroBatcher:
    def __init__(self, services: Runtime, flow: Resource) -> None:
        self.services = services
        self.flow_id = flow.id
        self.scope = flow.scope
        self._plan: Plan | None = None
        self._seen: set[Any] | None = None
        self.last_commit = 0.0
        self._commits = 0
        self._reconciled = False
        self._failing = False
        self._position: int | None = None  # the log position committed, as last seen (None: unknown)
        self.runs = StreamRuns(services, flow.scope, flow.id)

    def reset(self) -> None:
        """Forget the resolved plan (after a failure: the flow or its schema may have changed)."""
        self._plan = None
        self._position = None

    def taken_over(self) -> None:
        """This process holds the flow's lock (again): another process may have committed meanwhile, so
        what was kept of the table (the ids seen, the runs reconciled) is read again."""
        self.reset()
        self._seen = None
        self._reconciled = False

    def has_news(self) -> bool:
        """Whether the flow's log may hold records past the position last seen committed (one cheap look
        at the log's end; True when the position is unknown): an idle flow is not stepped."""
        return self._position is None or self.services.streams.log.end_offset(self.flow_id) > self._position

    # --- plan ---
    def plan(self) -> Plan | None:
        svc = self.services
        flow = svc.store.get("flow", self.scope, self.flow_id)
        if flow is None:
            return None
        if self._plan is not None and self._plan.flow.etag == flow.etag:
            return self._plan
        actor = worker_actor(svc, flow, flow.doc.get("sandboxName") or "")
        self._plan = Plan.of(actor, svc.plans.resolve_flow(actor, flow))
        return self._plan

    # --- failures that are no message's fault ---
    def failed(self, error: BaseException, attempts: int, retry_in: float) -> None:
        """The micro-batch failed ``attempts`` times in a row, last with ``error`` (raised outside the
        per-message isolation of :func:`_map`, runtime/streammessages.py: the lake, the log or the metadata
        database), and is retried in ``retry_in`` seconds: the flow's run of the hour shows it failing,
        with the error."""
        self._failing = True
        flow = self.services.store.get("flow", self.scope, self.flow_id)
        sandbox = flow.doc.get("sandboxName") if flow is not None else None
        self.runs.failing(sandbox, describe_failure(error), attempts, retry_in)

    # --- one micro-batch ---
    def step(self) -> StepResult:
        """One micro-batch (see the module's docstring). An exception means the micro-batch failed for a
        reason no message is at fault for; nothing was committed and the same records are read again."""
        result = self._step()
        if self._failing:  # it worked again: the run of the hour no longer shows the flow failing
            self.runs.recovered(now_ms())
            self._failing = False
        return result

    def _step(self) -> StepResult:
        svc = self.services
        plan = self.plan()
        if plan is None or plan.flow.doc.get("state") != "enabled":
            return StepResult()
        table = svc.lake.ensure_table(self.scope, plan.dataset_id, plan.target)
        if not self._reconciled:
            self.runs.reconcile(table)
            self._reconciled = True
        start = svc.lake.stream_offset(table, self.flow_id)
        records = svc.streams.log.read(self.flow_id, start, max_records=MAX_RECORDS_PER_COMMIT)
        self._position = None
        if not records:
            self.runs.close_past()
            self._position = start
            return StepResult()
        now = now_ms()
        if plan.cadence_ms and now - records[0].appended_ms < plan.cadence_ms:
            # the flow's refresh cadence is not due yet
            return StepResult(wait=(plan.cadence_ms - (now - records[0].appended_ms)) / 1000)
        decoded = _decode(r.payload for r in records)
        result = StepResult(consumed=len(records))
        run, batch = self.runs.run_for(plan, now)
        stored = int(run.doc.get("storedRowErrors") or 0)
        outputs: list[tuple[pa.Table, list[int]]] = []
        codes: dict[str, int] = {}
        with RowErrorFiles.of(svc.settings).writer(batch.id, stored, micro_batch=start) as row_errors:
            for position, payload in decoded.corrupt:
                message = {"message": payload.decode("utf-8", "replace")}
                row_errors.add_record(
                    message, [_corrupt(position, f"record {position} of the micro-batch is not JSON")]
                )
                result.failed += 1
            for mapping, rows, positions in (
                (plan.raw, decoded.raw, decoded.raw_pos),
                (plan.xdm, decoded.xdm, decoded.xdm_pos),
            ):
                if rows:
                    raw = mapping is plan.raw
                    mapped, failed = _map(mapping, rows, positions, row_errors, raw and plan.mapped)
                    if raw and plan.fills:
                        mapped = [(_fill(plan, t, ps, decoded), ps) for t, ps in mapped]
                    outputs.extend(mapped)
                    result.failed += failed
            codes = dict(row_errors.codes)
            stored_after = row_errors.stored
        rows = pa.concat_tables([t for t, _ in outputs]) if outputs else plan.target.empty_table()
        positions = [p for _, ps in outputs for p in ps]
        rows, positions, result.duplicates = self._dedup(plan, table, rows, positions)
        rows, delete_filter = _upserts(plan, rows, positions, decoded.deletes)
        result.output = rows.num_rows
        files = svc.lake.write_files(table, rows.to_batches(), plan.target) if rows.num_rows else []
        checkpoint = {
            "runId": run.id,
            "batchId": batch.id,
            "inputRecords": len(records) - len(decoded.deletes),
            "outputRecords": result.output,
            "failedRecords": result.failed,
        }
        from headwater.faults import crash_point

        crash_point("stream_before_commit")
        table, committed = svc.lake.commit_stream(
            table, files, self.flow_id, start, records[-1].next_offset, checkpoint, delete_filter
        )
        crash_point("stream_after_commit")
        if not committed:  # another batcher committed these records first: start over from its position
            self._seen = None
            self._reconciled = False
            return StepResult(consumed=0)
        result.committed = True
        self._position = records[-1].next_offset
        self._remember(plan, rows)
        self.runs.account(run, checkpoint, records[-1].next_offset, codes, stored_after)
        svc.streams.log.release(self.flow_id, records[-1].next_offset)
        self._commits += 1
        self.last_commit = time.monotonic()
        if self._commits % EXPIRE_EVERY_COMMITS == 0:
            self._expire(table)
        return result

    # --- duplicates and upserts ---
    def _dedup(
        self, plan: Plan, table: Any, rows: pa.Table, positions: list[int]
    ) -> tuple[pa.Table, list[int], int]:
        if plan.dedup_path is None or plan.upsert_key is not None or rows.num_rows == 0:
            return rows, positions, 0
        if self._seen is None:
            self._seen = set(_ids_in_table(self.services, table, plan.dedup_path))
        ids = _column(rows, plan.dedup_path)
        if ids is None:
            return rows, positions, 0
        keep: list[bool] = []
        batch_seen: set[Any] = set()
        for value in map(_hashable, ids.to_pylist()):
            fresh = value is None or (value not in self._seen and value not in batch_seen)
            keep.append(fresh)
            if value is not None:
                batch_seen.add(value)
        if all(keep):
            return rows, positions, 0
        mask = pa.array(keep, type=pa.bool_())
        kept = [p for p, k in zip(positions, keep, strict=True) if k]
        return rows.filter(mask), kept, len(keep) - len(kept)

    def _remember(self, plan: Plan, rows: pa.Table) -> None:
        if self._seen is None or plan.dedup_path is None:
            return
        ids = _column(rows, plan.dedup_path)
        if ids is not None:
            self._seen.update(_hashable(v) for v in ids.to_pylist() if v is not None)

    def _expire(self, table: Any) -> None:
        try:
            self.services.lake.expire_snapshots(table, now_ms() - KEEP_SNAPSHOTS_MS)
        except Exception:  # housekeeping must never stop ingestion
            log.exception("expiring snapshots of flow %s failed", self.flow_id)


# --- helpers ---
def _upserts(
    plan: Plan, rows: pa.Table, positions: list[int], deletes: list[tuple[int, Any]]
) -> tuple[pa.Table, Any]:
    """For flows with an upsert key: keep each key's last row and delete the rows those keys replace."""
    if plan.upsert_key is None:
        return rows, None
    from pyiceberg.expressions import In

    last: dict[Any, tuple[int, int | None]] = {}  # key -> (log position, row index or None = deleted)
    keys = _column(rows, plan.upsert_key)
    for index, key in enumerate(keys.to_pylist() if keys is not None else []):
        if key is not None and (key not in last or last[key][0] < positions[index]):
            last[key] = (positions[index], index)
    for position, key in deletes:
        if key is not None and (key not in last or last[key][0] < position):
            last[key] = (position, None)
    if not last:
        return rows, None
    keep = {index for _, index in last.values() if index is not None}
    mask = pa.array(
        [i in keep or (keys is not None and keys[i].as_py() is None) for i in range(rows.num_rows)],
        type=pa.bool_(),
    )
    return rows.filter(mask), In(term=plan.upsert_key, literals=list(last))


def _column(rows: pa.Table, path: str) -> pa.ChunkedArray | None:
    parts = path.split(".")
    if parts[0] not in rows.column_names:
        return None
    column: Any = rows.column(parts[0])
    for part in parts[1:]:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(part) < 0:
            return None
        column = pc.struct_field(column, part)
    result: pa.ChunkedArray = column
    return result


def _ids_in_table(services: Runtime, table: Any, path: str) -> Iterable[Any]:
    if table.current_snapshot() is None:
        return []
    top = path.split(".")[0]
    if top not in {f.name for f in table.schema().fields}:
        return []
    rows = table.scan(selected_fields=(top,)).to_arrow()
    column = _column(rows, path)
    return [] if column is None else (_hashable(v) for v in column.to_pylist() if v is not None)


def describe_failure(error: BaseException) -> str:
    """What a run shows of a micro-batch failure: a platform error's own message, an operating system
    error's kind (its file names stay in the worker log: a Viewer reads runs), else the exception's
    type."""
    from headwater.errors import HeadwaterError

    if isinstance(error, HeadwaterError):
        return error.detail
    if isinstance(error, MappingBroken):
        return str(error)
    if isinstance(error, OSError):  # its strerror may name files (Arrow's does): the errno's text only
        text = os.strerror(error.errno) if isinstance(error.errno, int) else "unavailable"
        return f"{type(error).__name__}: {text}; see the worker log"
    return f"internal error ({type(error).__name__}); see the worker log"


def _hashable(value: Any) -> Any:
    """An id as a set member: an id path that leads to a struct or a list gives dicts or lists, which
    are compared by their JSON text instead of failing every micro-batch."""
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return value

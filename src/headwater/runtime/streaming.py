"""Streaming flows: micro-batches from the streaming log into each flow's dataset, exactly once.

Each enabled streaming flow has one :class:`MicroBatcher`. A step reads the records after the position
committed in the dataset's table, maps them (raw messages through the flow's mapping set, XDM messages
as they are), drops records whose id is already in the dataset, and commits the rows together with the
new log position in one Iceberg transaction (:meth:`Lake.commit_stream`). A crash before that commit
leaves the position where it was, so the records are read again; a crash after it leaves them
committed, and the position moved with them: every acknowledged record lands exactly once. Two
batchers on one flow (two worker processes) cannot both commit the same records: the transaction
asserts the snapshot the position was read from.

Runs: a streaming flow reports one run per hour (its window), created at the first commit in that
hour and updated after each commit with the records in, out and failed; it completes when the hour is
over. Failed records are kept as row errors of the run's batch.

What fails where: a message that cannot be read, mapped or validated is one message's fault. It becomes a
row error of the run (the message as received, with its reason), is committed with the others (the log
position moves past it) and never blocks the messages behind it (:func:`_map`). Anything that raises out
of :meth:`MicroBatcher.step` is not one message's fault (the lake, the log or the metadata database is
unavailable, the mapping fails on every message): nothing is committed, the supervisor retries with
backoff, and the run of the hour shows the flow failing with the error until a micro-batch succeeds
(:meth:`MicroBatcher.failed`, runtime/streamruns.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.runtime.executor import worker_actor
from headwater.runtime.rowerrors import RowErrorWriter, errors_file
from headwater.runtime.streamruns import StreamRuns
from headwater.services.container import Services
from headwater.services.ids import now_ms
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

log = logging.getLogger("headwater.streaming")

RUN_WINDOW_MS = 3600_000
MAX_RECORDS_PER_COMMIT = 50_000
IDLE_POLL_SECONDS = 0.05
STANDBY_POLL_SECONDS = 1.0
EXPIRE_EVERY_COMMITS = 600
KEEP_SNAPSHOTS_MS = 3600_000
CORRUPT = "INGEST-1401-400"
EMPTY = "INGEST-1555-400"  # a required value is missing: here, every value the mapping reads


def is_streaming(flow: Resource) -> bool:
    return "inletId" in (flow.doc.get("options") or {})


@dataclass
class Plan:
    """What a flow's micro-batches need, resolved from its resources (rebuilt when the flow changes)."""

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


@dataclass
class StepResult:
    consumed: int = 0
    committed: bool = False
    output: int = 0
    failed: int = 0
    duplicates: int = 0


@dataclass
class _Decoded:
    raw: list[dict[str, Any]] = field(default_factory=list)
    raw_pos: list[int] = field(default_factory=list)
    raw_time: list[int] = field(default_factory=list)
    xdm: list[dict[str, Any]] = field(default_factory=list)
    xdm_pos: list[int] = field(default_factory=list)
    deletes: list[tuple[int, Any]] = field(default_factory=list)
    corrupt: list[tuple[int, bytes]] = field(default_factory=list)


class MicroBatcher:
    def __init__(self, services: Services, flow: Resource) -> None:
        self.services = services
        self.flow_id = flow.id
        self.scope = flow.scope
        self._plan: Plan | None = None
        self._seen: set[Any] | None = None
        self.last_commit = 0.0
        self._commits = 0
        self._reconciled = False
        self._failing = False
        self.runs = StreamRuns(services, flow.scope, flow.id)

    def reset(self) -> None:
        """Forget the resolved plan (after a failure: the flow or its schema may have changed)."""
        self._plan = None

    # --- plan ---
    def plan(self) -> Plan | None:
        svc = self.services
        flow = svc.store.get("flow", self.scope, self.flow_id)
        if flow is None:
            return None
        if self._plan is not None and self._plan.flow.etag == flow.etag:
            return self._plan
        from headwater.runtime.mapping import compile_mapping, identity_compile

        actor = worker_actor(svc, flow, flow.doc.get("sandboxName") or "")
        target = svc.target_connections.get(actor, flow.doc["targetConnectionIds"][0])
        dataset_id = target.doc["params"]["dataSetId"]
        dataset = svc.datasets.get(actor, dataset_id)
        resolved = svc.schemas.resolve(actor, dataset.doc["schemaRef"]["id"])
        xdm = identity_compile(resolved)
        raw = xdm
        fills: tuple[str, ...] = ()
        mapped_set = False
        for step in flow.doc.get("transformations") or []:
            if step.get("name") == "Mapping":
                params = step.get("params") or {}
                version = params.get("mappingVersion")
                mapping_set = svc.mapping_sets.get(
                    actor, params["mappingId"], int(version) if version is not None else None
                )
                doc = svc.mapping_sets.render(mapping_set)
                mapped = {m.get("destinationXdmPath") for m in doc.get("mappings") or []}
                # An event schema requires _id and timestamp; a webhook mapping (document 004's) often
                # maps neither: the batcher fills them (see _fill) instead of failing every message.
                fills = tuple(
                    f for f in ("_id", "timestamp") if f not in mapped and f in resolved.get("required", [])
                )
                relaxed = {
                    **resolved,
                    "required": [r for r in resolved.get("required", []) if r not in fills],
                }
                raw = compile_mapping(doc, relaxed)
                mapped_set = True
        options = flow.doc.get("options") or {}
        names = set(xdm.target.names)
        dedup = options.get("dedupPath") or ("_id" if "_id" in names else None)
        if options.get("deduplicate") is False:
            dedup = None
        self._plan = Plan(
            actor=actor,
            flow=flow,
            dataset_id=dataset_id,
            target=xdm.target,
            raw=raw,
            xdm=xdm,
            cadence_ms=int(float(options.get("cadenceSeconds") or 0) * 1000),
            dedup_path=dedup if isinstance(dedup, str) else None,
            upsert_key=options.get("upsertKey") if isinstance(options.get("upsertKey"), str) else None,
            fills=fills,
            mapped=mapped_set,
        )
        return self._plan

    # --- failures that are no message's fault ---
    def failed(self, error: BaseException, attempts: int, retry_in: float) -> None:
        """The micro-batch failed ``attempts`` times in a row, last with ``error`` (raised outside the
        per-message isolation of :func:`_map`: the lake, the log or the metadata database), and is retried
        in ``retry_in`` seconds: the flow's run of the hour shows it failing, with the error."""
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
        if not records:
            self.runs.close_past()
            return StepResult()
        now = now_ms()
        if plan.cadence_ms and now - records[0].appended_ms < plan.cadence_ms:
            return StepResult()  # the flow's refresh cadence is not due yet
        decoded = _decode(r.payload for r in records)
        result = StepResult(consumed=len(records))
        run, batch = self.runs.run_for(plan, now)
        errors_path = errors_file(svc.settings.warehouse_dir, batch.id)
        stored = int(run.doc.get("storedRowErrors") or 0)
        outputs: list[tuple[pa.Table, list[int]]] = []
        codes: dict[str, int] = {}
        with RowErrorWriter(errors_path, append=True, stored=stored) as row_errors:
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
        from headwater.runtime.faults import crash_point

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
def _decode(payloads: Iterable[bytes]) -> _Decoded:
    out = _Decoded()
    for position, payload in enumerate(payloads):
        try:
            entry = orjson.loads(payload)
            kind, record = entry["k"], entry["r"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            out.corrupt.append((position, payload))
            continue
        if kind == "delete":
            out.deletes.append((position, record.get("key") if isinstance(record, dict) else None))
        elif kind == "xdm" and isinstance(record, dict):
            out.xdm.append(record)
            out.xdm_pos.append(position)
        elif isinstance(record, dict):
            out.raw.append(record)
            out.raw_pos.append(position)
            out.raw_time.append(int(entry.get("t") or 0))
        else:
            out.corrupt.append((position, payload))
    return out


def _map(
    mapping: Any,
    rows: list[dict[str, Any]],
    positions: list[int],
    row_errors: RowErrorWriter,
    require_value: bool = False,
) -> tuple[list[tuple[pa.Table, list[int]]], int]:
    """Map the messages ``rows`` (at log positions ``positions`` of the micro-batch); returns the mapped
    tables with the positions of their rows, and how many messages failed.

    Every failure here is one message's: the message is kept as a row error, as received, with its
    reason, and the others go on. A message Arrow cannot read, one the mapping rejects or crashes on, and
    (``require_value``, raw messages through a mapping set) one from which the mapping takes no value at
    all are such failures; nothing a message contains can fail the micro-batch.

    A mapping that raises on more than :data:`CRASH_LIMIT` messages (or one in a hundred) is taken to be
    broken for every message, which is no message's fault: :class:`MappingBroken` fails the micro-batch
    (retried with backoff, the flow shown failing) and no row error of it is written."""
    sink = _Failures(rows, positions, max(CRASH_LIMIT, len(rows) // 100))
    out: list[tuple[pa.Table, list[int]]] = []
    for batch, members in _batches(rows, sink):
        for output, kept in _apply(mapping, batch, members, sink):
            if require_value:
                output, kept = _drop_empty(output, kept, sink)
            if output.num_rows:
                out.append((pa.Table.from_batches([output]), [positions[m] for m in kept]))
    sink.write(row_errors)
    return out, sink.failed


CRASH_LIMIT = 64


class MappingBroken(Exception):
    """The flow's mapping raises on message after message: the micro-batch fails (not its messages)."""


@dataclass
class _Failures:
    """The failed messages of one mapping pass, kept as received with their errors until :meth:`write`."""

    rows: list[dict[str, Any]]
    positions: list[int]
    crash_limit: int
    failed: int = 0
    crashes: int = 0
    found: list[tuple[dict[str, Any], list[Any]]] = field(default_factory=list)

    def fail(self, member: int, errors: list[Any]) -> None:
        """Message ``member`` (an index into ``rows``) failed for ``errors`` (RowErrors)."""
        position = self.positions[member]
        self.found.append((self.rows[member], [replace(e, row=position) for e in errors]))
        self.failed += 1

    def crashed(self, member: int, error: Exception) -> None:
        """The mapping raised ``error`` on message ``member`` alone."""
        self.crashes += 1
        if self.crashes > self.crash_limit:
            raise MappingBroken(
                f"the flow's mapping fails on more than {self.crash_limit} messages of a micro-batch "
                f"({type(error).__name__}: {error})"
            ) from error
        self.fail(member, [_corrupt(0, f"the message cannot be mapped: {error}")])

    def write(self, writer: RowErrorWriter) -> None:
        for record, errors in self.found:
            writer.add_record(record, errors)


UNREADABLE = (pa.ArrowException, OverflowError, ValueError, TypeError, RecursionError)


def _batches(rows: list[dict[str, Any]], sink: _Failures) -> list[tuple[pa.RecordBatch, list[int]]]:
    """The messages as Arrow batches, with the indexes of the messages in each.

    The columns are the union of every message's keys, at every level (``RecordBatch.from_pylist`` takes
    the first message's keys only: a first message ``{}`` made a batch of no rows, which failed every
    micro-batch, and a key missing from the first message was dropped from all the others). Messages
    whose values disagree in type (``1`` in one, ``"x"`` in another) are read one by one, so each keeps
    its own types and one odd message cannot fail the others; one that Arrow cannot read is a row error."""
    try:
        return [(pa.RecordBatch.from_struct_array(pa.array(rows)), list(range(len(rows))))]
    except UNREADABLE:
        pass
    groups: list[tuple[pa.RecordBatch, list[int]]] = []
    for member, row in enumerate(rows):
        try:
            groups.append((pa.RecordBatch.from_struct_array(pa.array([row])), [member]))
        except UNREADABLE as exc:
            sink.fail(member, [_corrupt(0, f"the message cannot be read as a record: {exc}")])
    return groups


def _apply(
    mapping: Any, batch: pa.RecordBatch, members: list[int], sink: _Failures
) -> list[tuple[pa.RecordBatch, list[int]]]:
    """``mapping`` applied to ``batch``: the output batches with the members of their rows. The mapping
    reports the rows it rejects; should it raise instead (a message it was not written for), the batch is
    split in halves until the message that makes it raise is alone, and that message is a row error."""
    try:
        result = mapping.apply(batch)
        failed_rows = result.failed_rows.to_pylist()
        if len(failed_rows) != batch.num_rows or result.output.num_rows != failed_rows.count(False):
            raise ValueError(
                f"the mapping returned {result.output.num_rows} rows and {len(failed_rows)} row states "
                f"for {batch.num_rows} messages"
            )
    except Exception as exc:  # a mapping failure of some message(s): isolate it
        if batch.num_rows > 1:
            half = batch.num_rows // 2
            return _apply(mapping, batch.slice(0, half), members[:half], sink) + _apply(
                mapping, batch.slice(half), members[half:], sink
            )
        sink.crashed(members[0], exc)
        return []
    by_row: dict[int, list[Any]] = {}
    for error in result.errors:
        by_row.setdefault(error.row, []).append(error)
    for row, bad in enumerate(failed_rows):
        if bad:
            sink.fail(members[row], by_row.get(row) or [_corrupt(0, "the message failed mapping")])
    kept = [m for m, bad in zip(members, failed_rows, strict=True) if not bad]
    return [(result.output, kept)]


def _drop_empty(
    output: pa.RecordBatch, members: list[int], sink: _Failures
) -> tuple[pa.RecordBatch, list[int]]:
    """Drop (as row errors) the mapped rows where every field is empty: the message has none of the
    fields the flow's mapping reads (``{}``, ``{"data": null}``), so there is nothing to land."""
    if output.num_rows == 0:
        return output, members
    empty = all_null(output)
    if not any(empty):
        return output, members
    for member, is_empty in zip(members, empty, strict=True):
        if is_empty:
            sink.fail(
                member,
                [
                    _corrupt(
                        0,
                        "the message has none of the fields the flow's mapping reads (every mapped value "
                        "is empty): there is nothing to land",
                        EMPTY,
                    )
                ],
            )
    keep = pa.array([not e for e in empty], type=pa.bool_())
    return output.filter(keep), [m for m, e in zip(members, empty, strict=True) if not e]


def all_null(batch: pa.RecordBatch) -> list[bool]:
    """Per row: True when every leaf value of the row is null (structs are looked into)."""
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    mask: Any = None
    for column in table.columns:
        null = pc.is_null(column)
        mask = null if mask is None else pc.and_(mask, null)
    if mask is None:
        return [True] * batch.num_rows
    return [bool(v) for v in mask.to_pylist()]


ID_SOURCES = ("_id", "event_id", "eventId", "id")


def _fill(plan: Plan, rows: pa.Table, positions: list[int], decoded: _Decoded) -> pa.Table:
    """Fill the required ``_id`` and ``timestamp`` a mapping left empty: ``_id`` from the message's own id
    (``_id``, ``event_id``, ``eventId`` or ``id``) or else a digest of the message, so that a message sent
    twice gets the same ``_id`` and is recognised as a duplicate; ``timestamp`` from when it was received."""
    where = {p: i for i, p in enumerate(decoded.raw_pos)}
    for name in plan.fills:
        index = rows.schema.get_field_index(name)
        if index < 0:
            continue
        current = rows.column(index).to_pylist()
        values: list[Any] = []
        for value, position in zip(current, positions, strict=True):
            i = where[position]
            if value is not None:
                values.append(value)
            elif name == "_id":
                record = decoded.raw[i]
                own = next((record[k] for k in ID_SOURCES if isinstance(record.get(k), str | int)), None)
                values.append(
                    str(own)
                    if own is not None
                    else hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
                )
            else:
                values.append(datetime.fromtimestamp(decoded.raw_time[i] / 1000, UTC))
        rows = rows.set_column(
            index, rows.schema.field(index), pa.array(values).cast(rows.schema.field(index).type)
        )
    return rows


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


def _ids_in_table(services: Services, table: Any, path: str) -> Iterable[Any]:
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


def _corrupt(row: int, message: str, code: str = CORRUPT) -> Any:
    from headwater.runtime.mapping import RowError

    return RowError(row=row, code=code, message=message, path=None)

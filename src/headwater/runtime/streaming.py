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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.errors import HeadwaterError, NotFound
from headwater.runtime.executor import save_resource, worker_actor
from headwater.runtime.rowerrors import RowErrorWriter, errors_file
from headwater.services.container import Services
from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import IN_PROGRESS, PARTIAL, SUCCESS, iso, new_batch_doc, new_run_doc
from headwater.services.tenancy import Actor
from headwater.stores.metadata import AlreadyExists, Resource, Scope

log = logging.getLogger("headwater.streaming")

RUN_WINDOW_MS = 3600_000
MAX_RECORDS_PER_COMMIT = 50_000
IDLE_POLL_SECONDS = 0.05
STANDBY_POLL_SECONDS = 1.0
EXPIRE_EVERY_COMMITS = 600
KEEP_SNAPSHOTS_MS = 3600_000
CORRUPT = "INGEST-1401-400"


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
        self._last_commit = 0.0
        self._commits = 0
        self._reconciled = False
        self._next_close_check = 0

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
        )
        return self._plan

    # --- one micro-batch ---
    def step(self) -> StepResult:
        svc = self.services
        plan = self.plan()
        if plan is None or plan.flow.doc.get("state") != "enabled":
            return StepResult()
        table = svc.lake.ensure_table(self.scope, plan.dataset_id, plan.target)
        if not self._reconciled:
            self._reconcile(plan, table)
        start = svc.lake.stream_offset(table, self.flow_id)
        records = svc.streams.log.read(self.flow_id, start, max_records=MAX_RECORDS_PER_COMMIT)
        if not records:
            self._close_past_runs(plan)
            return StepResult()
        now = now_ms()
        if plan.cadence_ms and now - records[0].appended_ms < plan.cadence_ms:
            return StepResult()  # the flow's refresh cadence is not due yet
        decoded = _decode(r.payload for r in records)
        result = StepResult(consumed=len(records))
        run, batch = self._run_for(plan, now)
        errors_path = errors_file(svc.settings.warehouse_dir, batch.id)
        stored = int(run.doc.get("storedRowErrors") or 0)
        outputs: list[tuple[pa.Table, list[int]]] = []
        codes: dict[str, int] = {}
        with RowErrorWriter(errors_path, append=True, stored=stored) as row_errors:
            for position, payload in decoded.corrupt:
                bad = pa.RecordBatch.from_pylist([{"message": payload.decode("utf-8", "replace")}])
                row_errors.add(bad, [_corrupt(0, f"record {position} of the micro-batch is not JSON")])
                result.failed += 1
            for mapping, rows, positions in (
                (plan.raw, decoded.raw, decoded.raw_pos),
                (plan.xdm, decoded.xdm, decoded.xdm_pos),
            ):
                if rows:
                    mapped, failed = _map(mapping, rows, positions, row_errors)
                    if mapping is plan.raw and plan.fills:
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
        self._account(run, checkpoint, records[-1].next_offset, codes, stored_after)
        svc.streams.log.release(self.flow_id, records[-1].next_offset)
        self._commits += 1
        self._last_commit = time.monotonic()
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
        for value in ids.to_pylist():
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
            self._seen.update(v for v in ids.to_pylist() if v is not None)

    # --- runs ---
    def _run_for(self, plan: Plan, now: int) -> tuple[Resource, Resource]:
        """The run of the hour ``now`` falls in (created on first use) and its batch."""
        window = now - now % RUN_WINDOW_MS
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"headwater:stream-run:{self.flow_id}:{window}"))
        batch_id = hashlib.sha1(run_id.encode()).hexdigest()[:13].upper()
        store = self.services.store
        run = store.get("run", self.scope, run_id)
        if run is None:
            self._next_close_check = 0
            self._close_past_runs(plan)
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
            with contextlib.suppress(AlreadyExists):
                store.insert(
                    Resource(
                        "run",
                        run_id,
                        self.scope,
                        doc,
                        new_etag(),
                        None,
                        None,
                        now,
                        now,
                        refs=[("flow", self.flow_id)],
                    )
                )
            run = store.get("run", self.scope, run_id)
            assert run is not None
        batch = store.get("batch", self.scope, batch_id)
        if batch is None:
            bdoc = {**new_batch_doc(plan.dataset_id, self.flow_id, run_id), "id": batch_id, "created": now}
            with contextlib.suppress(AlreadyExists):
                store.insert(
                    Resource(
                        "batch",
                        batch_id,
                        self.scope,
                        bdoc,
                        new_etag(),
                        None,
                        None,
                        now,
                        now,
                        refs=[("dataSet", plan.dataset_id)],
                    )
                )
            batch = store.get("batch", self.scope, batch_id)
            assert batch is not None
        return run, batch

    def _account(
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

    def _reconcile(self, plan: Plan, table: Any) -> None:
        """After a restart: count the last commit if the crash came between it and its run's update."""
        self._reconciled = True
        offset = self.services.lake.stream_offset(table, self.flow_id)
        if not offset:
            return
        for checkpoint in self.services.lake.checkpoints(table, flowId=self.flow_id, streamTo=str(offset)):
            props = {k.removeprefix("headwater."): v for k, v in checkpoint.properties.items()}
            run = self.services.store.get("run", self.scope, props.get("runId", ""))
            if run is not None:
                self._account(run, props, offset, {}, int(run.doc.get("storedRowErrors") or 0))
            return

    def _close_past_runs(self, plan: Plan) -> None:
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

    def _expire(self, table: Any) -> None:
        try:
            self.services.lake.expire_snapshots(table, now_ms() - KEEP_SNAPSHOTS_MS)
        except Exception:  # housekeeping must never stop ingestion
            log.exception("expiring snapshots of flow %s failed", self.flow_id)

    # --- loop ---
    def run(self, stop: threading.Event) -> None:
        """Step until ``stop``. Only one process of a deployment steps a flow at a time (a lock file per
        flow in the home): a second one stands by and takes over when the first exits or dies."""
        with _FlowLock(self.services.settings.streams_dir / ".batchers" / f"{self.flow_id}.lock") as lock:
            while not stop.is_set() and not lock.acquire():
                stop.wait(STANDBY_POLL_SECONDS)
            self._loop(stop)

    def _loop(self, stop: threading.Event) -> None:
        flush = self.services.settings.stream_flush_seconds
        backoff = 1.0
        while not stop.is_set():
            try:
                result = self.step()
                backoff = 1.0
            except NotFound:
                return  # the flow, its dataset or its schema is gone
            except Exception:
                log.exception(
                    "streaming flow %s: micro-batch failed; retrying in %.0fs", self.flow_id, backoff
                )
                self._plan = None
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if result.committed:
                stop.wait(max(0.0, flush - (time.monotonic() - self._last_commit)))
            elif not result.consumed:
                stop.wait(IDLE_POLL_SECONDS)


class _FlowLock:
    """A non-blocking exclusive flock, released when the process exits however it exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> _FlowLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self

    def acquire(self) -> bool:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None


class StreamingSupervisor:
    """Keeps one micro-batcher thread per enabled streaming flow (of ``scopes``, when given)."""

    def __init__(self, services: Services, scopes: Collection[Scope] | None = None) -> None:
        self.services = services
        self.scopes = scopes
        self.stop_event = threading.Event()
        self._threads: dict[str, tuple[threading.Thread, threading.Event]] = {}

    def refresh(self) -> None:
        wanted: dict[str, Resource] = {}
        for flow in self.services.store.scan_kind("flow"):
            if self.scopes is not None and flow.scope not in self.scopes:
                continue
            if is_streaming(flow) and flow.doc.get("state") == "enabled":
                wanted[flow.id] = flow
        for flow_id in list(self._threads):
            thread, stop = self._threads[flow_id]
            if flow_id not in wanted or not thread.is_alive():
                stop.set()
                del self._threads[flow_id]
        for flow_id, flow in wanted.items():
            if flow_id not in self._threads:
                stop = threading.Event()
                batcher = MicroBatcher(self.services, flow)
                thread = threading.Thread(
                    target=batcher.run, args=(stop,), name=f"stream-{flow_id[:8]}", daemon=True
                )
                thread.start()
                self._threads[flow_id] = (thread, stop)

    def run_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.refresh()
            except Exception:
                log.exception("streaming supervisor: refresh failed")
            self.stop_event.wait(1.0)
        self.stop_all()
        self._threads.clear()

    def stop_all(self) -> None:
        threads = list(self._threads.values())
        for _, stop in threads:
            stop.set()
        for thread, _ in threads:
            thread.join(timeout=10)

    def stop(self) -> None:
        self.stop_event.set()


def start_in_background(services: Services, scopes: Collection[Scope] | None = None) -> StreamingSupervisor:
    supervisor = StreamingSupervisor(services, scopes)
    threading.Thread(target=supervisor.run_forever, name="headwater-streaming", daemon=True).start()
    return supervisor


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
    mapping: Any, rows: list[dict[str, Any]], positions: list[int], row_errors: RowErrorWriter
) -> tuple[list[tuple[pa.Table, list[int]]], int]:
    """Map ``rows``; returns the mapped tables with the log positions of their rows, and the failures."""
    groups: list[tuple[pa.RecordBatch, list[int]]] = []
    failed = 0
    try:
        groups.append((pa.RecordBatch.from_pylist(rows), positions))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
        # Messages whose values disagree in type: convert one by one so one odd message cannot fail
        # the others.
        for row, position in zip(rows, positions, strict=True):
            try:
                groups.append((pa.RecordBatch.from_pylist([row]), [position]))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError) as exc:
                bad = pa.RecordBatch.from_pylist([{"message": orjson.dumps(row, default=str).decode()}])
                row_errors.add(bad, [_corrupt(0, f"the message cannot be read as a record: {exc}")])
                failed += 1
    out: list[tuple[pa.Table, list[int]]] = []
    for batch, batch_positions in groups:
        result = mapping.apply(batch)
        if result.errors:
            row_errors.add(batch, result.errors)
            failed += batch.num_rows - result.output.num_rows
        kept = [p for p, bad in zip(batch_positions, result.failed_rows.to_pylist(), strict=True) if not bad]
        if result.output.num_rows:
            out.append((pa.Table.from_batches([result.output]), kept))
    return out, failed


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
    return [] if column is None else (v for v in column.to_pylist() if v is not None)


def _corrupt(row: int, message: str) -> Any:
    from headwater.runtime.mapping import RowError

    return RowError(row=row, code=CORRUPT, message=message, path=None)


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


__all__ = ["HeadwaterError", "MicroBatcher", "StreamingSupervisor", "is_streaming", "start_in_background"]


# --- synchronous validation (``?syncValidation=true``) ---
MAX_VIOLATIONS = 5
_KEYWORDS = {"INGEST-1555-400": "required", "MAPPER-3700-400": "mapping", CORRUPT: "type"}


def validate_message(
    services: Services, scope: Scope, flow_id: str, kind: str, record: dict[str, Any]
) -> dict[str, Any] | None:
    """The reference's ``_streamingValidation`` report for one message, or None when it is valid."""
    cache: dict[str, MicroBatcher] = services.streams.validators
    batcher = cache.get(flow_id)
    if batcher is None:
        flow = services.store.get("flow", scope, flow_id)
        if flow is None:
            return None
        batcher = cache[flow_id] = MicroBatcher(services, flow)
    plan = batcher.plan()
    if plan is None:
        return None
    violations: list[dict[str, Any]] = []
    if kind == "xdm":
        _extraneous(record, plan.target, "", violations)
    mapping = plan.xdm if kind == "xdm" else plan.raw
    try:
        batch = pa.RecordBatch.from_pylist([record])
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError) as exc:
        violations.append({"keyword": "type", "message": f"the message cannot be read as a record: {exc}"})
    else:
        for error in mapping.apply(batch).errors:
            pointer = "#/" + (error.path or "").replace(".", "/")
            violations.append(
                {
                    "schemaLocation": "#/properties/" + (error.path or "").replace(".", "/properties/"),
                    "pointerToViolation": pointer,
                    "keyword": _KEYWORDS.get(error.code, "format"),
                    "message": error.message,
                }
            )
    if not violations:
        return None
    return {
        "schemaLocation": "#",
        "pointerToViolation": "#",
        "causingExceptions": violations[:MAX_VIOLATIONS],
        "keyword": "allOf",
        "message": f"{len(violations)} schema violations found",
    }


def _extraneous(
    value: Any, schema: pa.Schema | pa.StructType, pointer: str, out: list[dict[str, Any]]
) -> None:
    if not isinstance(value, dict):
        return
    fields = {f.name: f for f in schema}
    for key, item in value.items():
        field_ = fields.get(key)
        if field_ is None:
            out.append(
                {
                    "schemaLocation": "#" + pointer.replace("/", "/properties/"),
                    "pointerToViolation": "#" + pointer,
                    "keyword": "additionalProperties",
                    "message": f"extraneous key [{key}] is not permitted",
                }
            )
        elif pa.types.is_struct(field_.type):
            _extraneous(item, field_.type, f"{pointer}/{key}", out)

"""A run of an activation flow that reads a dataset: it delivers the rows the dataset gained since the
flow's previous run.

At its first attempt the run fixes what it will read: the data files of the table's current snapshot
added after the sequence number the previous run stopped at (``activation.files``, up to
``activation.sequenceTo``). Positions count rows across those files in order. The checkpoint and the
counts are saved together in the run document (one write), so a worker that takes the run over after a
crash resumes where the last save left off, skipping rows already finished.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from headwater.catalog.ids import FlowKind, flow_kind
from headwater.engines.mapping.rows import plain
from headwater.runtime.delivery.activation import Plan, Pump, idempotency_key
from headwater.runtime.delivery.engine import Stats
from headwater.services.ids import now_ms
from headwater.services.ledger import RunLedger
from headwater.services.runs import FAILED, PARTIAL, SUCCESS
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from headwater.runtime.context import Runtime

log = logging.getLogger("headwater.activation")
ROWS_PER_READ = 1000


class DatasetActivation:
    """One attempt at one run of a dataset activation flow (the run ledger writes the run)."""

    def __init__(self, services: Runtime, run: Resource, flow: Resource) -> None:
        self.services = services
        self.ledger: RunLedger = services.ledger
        self.run = run
        self.flow = flow

    def execute(self) -> Resource:
        started = int((self.run.doc["metrics"]["durationSummary"] or {}).get("startedAtUTC") or now_ms())
        try:
            return self._execute(started)
        except Exception as exc:  # recorded on the run; the worker goes on
            log.exception("activation run %s failed", self.run.id)
            current = self.ledger.current(self.run)
            return self.ledger.finish(
                current, FAILED, started, [{"code": "ACT-1000-500", "message": str(exc)}]
            )

    def _execute(self, started: int) -> Resource:
        kind = flow_kind(self.flow.doc)
        if kind is not FlowKind.DATASET_ACTIVATION:
            source = "an audience" if kind is FlowKind.AUDIENCE_ACTIVATION else "a streaming source"
            raise ValueError(
                f"This activation flow reads {source}: it delivers continuously and reports one run "
                "per hour; runs cannot be requested for it."
            )
        resolved = self.services.plans.resolve_flow(self.flow.scope, self.flow)
        assert resolved.dataset_id is not None
        dataset_id = resolved.dataset_id
        run = self.run
        state = run.doc.get("activation")
        if state is None:
            state = self._plan_files(dataset_id)
            run = self.ledger.start(run, started, activation=state)
        plan = Plan.of(self.services, resolved)
        pump = RunPump(self.services, plan, run, state)
        table = self.services.lake.load(self.flow.scope, dataset_id)
        asyncio.run(pump.run_all(table))
        run = pump.run
        dead = int(run.doc["metrics"]["recordSummary"].get("failedRecordCount") or 0)
        errors = run.doc["metrics"]["statusSummary"]["errors"]
        return self.ledger.finish(run, PARTIAL if dead else SUCCESS, started, errors)

    def _plan_files(self, dataset_id: str) -> dict[str, Any]:
        table = self.services.lake.load(self.flow.scope, dataset_id)
        after = self._previous_sequence()
        files: list[dict[str, Any]] = []
        sequence_to = after
        snapshot = table.current_snapshot() if table is not None else None
        if table is not None and snapshot is not None:
            sequence_to = max(after, int(snapshot.sequence_number or 0))
            for manifest in snapshot.manifests(table.io):
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                    data = entry.data_file
                    sequence = int(entry.sequence_number or 0)
                    if int(data.content) == 0 and sequence > after:
                        files.append(
                            {"path": data.file_path, "sequence": sequence, "records": data.record_count}
                        )
        files.sort(key=lambda f: (f["sequence"], f["path"]))
        return {"files": files, "sequenceFrom": after, "sequenceTo": sequence_to, "offset": 0, "done": []}

    def _previous_sequence(self) -> int:
        runs = self.ledger.flow_runs(self.flow.scope, self.flow.id)
        return max(
            (
                int(r.doc["activation"]["sequenceTo"])
                for r in runs
                if r.id != self.run.id and r.doc.get("activation")
            ),
            default=0,
        )


class RunPump(Pump):
    def __init__(self, services: Runtime, plan: Plan, run: Resource, state: dict[str, Any]) -> None:
        super().__init__(services, plan, int(state.get("offset", 0)), state.get("done") or [])
        self.run = run
        self.state = state

    async def run_all(self, table: Table | None) -> None:
        import pyarrow.parquet as pq

        try:
            resume = self.progress.checkpoint()[0]
            position = 0
            for file in self.state["files"]:
                count = int(file["records"])
                if position + count <= resume or table is None:
                    position += count
                    continue
                first = position
                with table.io.new_input(file["path"]).open() as stream:
                    for batch in pq.ParquetFile(stream).iter_batches(batch_size=ROWS_PER_READ):
                        rows = batch.to_pylist()
                        items = []
                        for index, row in enumerate(rows, start=position):
                            if index >= resume:
                                key = idempotency_key(self.plan.flow.id, f"{file['path']}:{index - first}")
                                items.append((index, index + 1, key, {k: plain(v) for k, v in row.items()}))
                        position += len(rows)
                        if items:
                            await self.feed(items, self.run.id)
            await self.drain()
            await self.flush()
        finally:
            await self.cancel()
            await self.plan.aclose()

    def save_checkpoint(self, offset: int, done: list[int], stats: Stats) -> None:
        ledger: RunLedger = self.services.ledger
        current = ledger.current(self.run)
        state = {**(current.doc.get("activation") or self.state), "offset": offset, "done": done}
        if stats.empty:
            self.run = ledger.save(current, {"activation": state})
        else:
            self.run = ledger.add_delivery(current, stats, activation=state)
        self.state = state

"""The runs of a streaming flow: one per time window (an hour), created at the window's first commit,
updated after each commit with the records in, out and failed, completed once the window is over.

The run ledger keeps the documents (services/ledger.py, services/ledger_hourly.py): a run's id is
derived from the flow and the window, so every process agrees on it; its batch holds the row errors.
This class is the micro-batcher's side: when to open, count, close and repair. A crash between a
commit and the run's update is repaired by :meth:`StreamRuns.reconcile` from the last commit's
snapshot summary.

A micro-batch that fails for a reason no message is at fault for (the lake or the metadata database
unavailable, a schema gone wrong) is retried with backoff, and meanwhile the run of the hour shows the
flow failing (:meth:`StreamRuns.failing`): ``state`` and ``metrics.statusSummary.status`` are ``failed``,
``statusSummary.errors`` holds the error (code ``FAILING``, services/ledger_hourly.py) and ``failure``
says since when, how many attempts, and the last error. The first commit after it
(:meth:`StreamRuns.account`) or the first clean step (:meth:`StreamRuns.recovered`) puts the run back in
progress and keeps the episode as ``lastFailure``. A run whose hour ends while its flow is failing
completes ``failed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.runtime.context import Runtime
from headwater.services.ids import now_ms
from headwater.services.ledger import Hourly, RunLedger
from headwater.services.ledger_hourly import (
    account_stream,
    close_stream_hours,
    open_stream_hour,
    stream_batch,
    stream_failing,
    stream_recovered,
)
from headwater.stores.metadata import Resource, Scope

if TYPE_CHECKING:
    from headwater.runtime.streaming import Plan

CLOSE_CHECK_MS = 60_000


class StreamRuns:
    def __init__(self, services: Runtime, scope: Scope, flow_id: str) -> None:
        self.ledger: RunLedger = services.ledger
        self.lake = services.lake
        self.scope = scope
        self.flow_id = flow_id
        self._next_close_check = 0

    def run_for(self, plan: Plan, now: int) -> tuple[Resource, Resource]:
        """The run of the hour ``now`` falls in (created on first use) and its batch."""
        run = self._run_of_hour(now, plan.sandbox_name)
        return run, stream_batch(self.ledger, run, plan.dataset_id, now)

    def _run_of_hour(self, now: int, sandbox_name: Any) -> Resource:
        """The run of the hour ``now`` falls in, created on first use (after closing past hours)."""
        run = self.ledger.get(self.scope, RunLedger.hour_run_id(Hourly.STREAMING, self.flow_id, now))
        if run is None:
            self._next_close_check = 0
            self.close_past()
            run = open_stream_hour(self.ledger, self.scope, self.flow_id, sandbox_name, now)
        return run

    def account(
        self, run: Resource, checkpoint: dict[str, Any], offset: int, codes: dict[str, int], stored: int
    ) -> None:
        """Add a committed micro-batch's counts to its run (and batch)."""
        account_stream(self.ledger, run, checkpoint, offset, codes, stored)

    def failing(self, sandbox_name: Any, error: str, attempts: int, retry_in: float) -> None:
        """Show the flow failing in the run of the current hour: its micro-batch failed ``attempts``
        times in a row, last with ``error``, and is retried in ``retry_in`` seconds. The messages stay in
        the streaming log meanwhile; they land once a micro-batch succeeds."""
        run = self._run_of_hour(now_ms(), sandbox_name)
        stream_failing(self.ledger, run, error, attempts, retry_in)

    def recovered(self, now: int) -> None:
        """The flow's micro-batches succeed again: the run of the hour is back in progress (when it
        showed the flow failing)."""
        run = self.ledger.get(self.scope, RunLedger.hour_run_id(Hourly.STREAMING, self.flow_id, now))
        if run is not None:
            stream_recovered(self.ledger, run)

    def reconcile(self, table: Any) -> None:
        """After a restart: count the last commit if the crash came between it and its run's update."""
        offset = self.lake.stream_offset(table, self.flow_id)
        if not offset:
            return
        for checkpoint in self.lake.checkpoints(table, flowId=self.flow_id, streamTo=str(offset)):
            props = {k.removeprefix("headwater."): v for k, v in checkpoint.properties.items()}
            run = self.ledger.get(self.scope, props.get("runId", ""))
            if run is not None:
                self.account(run, props, offset, {}, int(run.doc.get("storedRowErrors") or 0))
            return

    def close_past(self) -> None:
        """Complete the runs of hours that are over (checked at most once a minute)."""
        now = now_ms()
        if now < self._next_close_check:
            return
        self._next_close_check = now + CLOSE_CHECK_MS
        close_stream_hours(self.ledger, self.scope, self.flow_id, now)

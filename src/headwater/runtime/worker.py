"""The worker: schedules due flows and executes queued runs, in the server process or alone.

Several workers may share one database: a run is claimed with one conditional UPDATE, held under a
lease renewed while it executes, and taken over by another worker when the lease expires (its worker
died). The scheduler enqueues each flow's latest due schedule slot; a slot is queued once, whichever
worker sees it first.

Idle, a worker looks at the run queue every ``worker_poll_seconds``, then less and less often (up to
:data:`IDLE_BACKOFF` times that) while nothing comes; a run queued in its own process (``POST /runs``,
the scheduler) wakes it at once (``Runs.queued``). It looks for due schedule slots every
:data:`SCHEDULE_SECONDS`, and shares its view of the flows with its supervisors (runtime/flowwatch.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from headwater.runtime import partitionwork
from headwater.runtime.context import Runtime
from headwater.runtime.executor import Counters, RunExecution
from headwater.runtime.flowwatch import SHARED_FRESH_SECONDS, FlowWatch
from headwater.services.ids import new_hex, now_ms
from headwater.services.runs import new_run_id
from headwater.stores.metadata import QueuedRun, Resource, Scope

log = logging.getLogger("headwater.worker")

_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
IDLE_BACKOFF = 4  # an idle worker's longest wait, in worker_poll_seconds
SCHEDULE_SECONDS = 1.0  # how often the scheduler looks for due slots (slots are whole seconds apart)


def latest_due_slot(schedule: dict[str, object], now: datetime) -> int | None:
    """The newest schedule slot (epoch ms) at or before ``now``, or None when none is due yet."""
    start = schedule.get("startTime")
    frequency = schedule.get("frequency")
    if not isinstance(start, int) or not isinstance(frequency, str):
        return None
    now_s = now.timestamp()
    end = schedule.get("endTime")
    if isinstance(end, int):
        now_s = min(now_s, end)
    if now_s < start:
        return None
    if frequency == "once":
        return start * 1000
    interval = schedule.get("interval")
    if not isinstance(interval, int) or frequency not in _SECONDS:
        return None
    period = _SECONDS[frequency] * interval
    return int(start + ((now_s - start) // period) * period) * 1000


class Worker:
    def __init__(
        self, services: Runtime, name: str | None = None, schedule: bool = True, streaming: bool = True
    ) -> None:
        self.services = services
        self.schedule = schedule
        self.streaming = streaming
        # A lease owner is at most 64 characters (tables.py): the host name is cut to 40.
        self.name = name or f"{socket.gethostname()[:40]}:{os.getpid()}:{new_hex(3)}"
        self.settings = services.settings
        self.stop_event = threading.Event()
        self._wake = threading.Event()  # a run was queued in this process, or the worker stops
        self._watch = FlowWatch(services.store)  # run_forever shares a less fresh one
        self._scanned: list[Resource] | None = None  # the scan ``_scheduled`` was filtered from
        self._scheduled: list[Resource] = []
        self._known_slots: dict[str, int] = {}  # flow -> a slot known to be queued (by any worker)

    # --- loop ---
    def run_forever(self) -> None:
        log.info("worker %s started", self.name)
        # One view of the flows for the scheduler and the supervisors: its version asked once a second.
        self._watch = FlowWatch(self.services.store, fresh=SHARED_FRESH_SECONDS)
        supervisor = activations = None
        if self.streaming:  # streaming flows: a micro-batcher per flow, beside the run loop
            from headwater.runtime.delivery.supervisor import start_in_background as start_activations
            from headwater.runtime.streamsupervisor import start_in_background as start_streaming

            supervisor = start_streaming(self.services, watch=self._watch)
            activations = start_activations(self.services, watch=self._watch)
            self.services.profile_projector.start()  # profile-enabled datasets into the profile store
            self.services.segment_job_runner.start()  # segment jobs, beside the projector
            self.services.export_job_runner.start()  # profile export jobs
            self.services.batch_promoter.start()  # completed ingestion batches, queued or interrupted
            self.services.query_job_runner.start()  # Query Service queries
        self.services.runs.queued.listen(self._wake.set)
        try:
            self._loop()
        finally:
            self.services.runs.queued.forget(self._wake.set)
            if self.streaming:
                self.services.profile_projector.stop()
                self.services.segment_job_runner.stop()
                self.services.export_job_runner.stop()
                self.services.batch_promoter.stop()
                self.services.query_job_runner.stop()
            if supervisor is not None:
                supervisor.stop()
                supervisor.stop_all()
            if activations is not None:
                activations[0].stop()
                activations[1].join(timeout=15)
        log.info("worker %s stopped", self.name)

    def _loop(self) -> None:
        """Schedule every :data:`SCHEDULE_SECONDS`; claim runs while there are some, else look again
        after a wait that doubles up to ``IDLE_BACKOFF`` polls, or at once when woken."""
        poll = self.settings.worker_poll_seconds
        backoff, next_claim, next_schedule = poll, 0.0, 0.0
        while not self.stop_event.is_set():
            self._wake.clear()  # before looking: a run queued from now on ends the wait below
            now = time.monotonic()
            try:
                if self.schedule and now >= next_schedule:
                    next_schedule = now + SCHEDULE_SECONDS
                    if self.schedule_due():
                        next_claim = now
                if now >= next_claim:
                    if self.run_one():
                        backoff = poll
                        continue
                    next_claim, backoff = now + backoff, min(backoff * 2, poll * IDLE_BACKOFF)
            except Exception:  # keep the loop alive; the failure is logged with its traceback
                log.exception("worker %s: iteration failed", self.name)
                next_claim = now + poll
            until = min(next_claim, next_schedule) if self.schedule else next_claim
            if self._wake.wait(max(0.0, until - time.monotonic())):
                backoff, next_claim = poll, 0.0

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    # --- scheduling ---
    def schedule_due(self, now: datetime | None = None, scopes: Collection[Scope] | None = None) -> int:
        """Queue a run for every enabled scheduled flow (of ``scopes``, when given) whose latest due slot
        is not queued yet."""
        now = now or datetime.now(UTC)
        store = self.services.store
        queued = 0
        for flow in self._enabled_scheduled():
            if scopes is not None and flow.scope not in scopes:
                continue
            slot = latest_due_slot(flow.doc["scheduleParams"], now)
            if slot is None or self._known_slots.get(flow.id, -1) >= slot:
                continue
            last = store.last_slot(flow.id)
            if last is None or last < slot:
                if self._enqueue_scheduled(flow, slot):
                    queued += 1
                last = store.last_slot(flow.id)
            if last is not None:
                self._known_slots[flow.id] = last
        return queued

    def _enabled_scheduled(self) -> list[Resource]:
        """The enabled flows with a schedule, filtered again when the flows were rescanned."""
        flows = self._watch.flows()
        if flows is not self._scanned:
            self._scheduled = [
                flow
                for flow in flows
                if flow.doc.get("state") == "enabled" and isinstance(flow.doc.get("scheduleParams"), dict)
            ]
            self._scanned = flows
        return self._scheduled

    def _enqueue_scheduled(self, flow: Resource, slot: int) -> bool:
        run_id = new_run_id()
        if not self.services.store.enqueue_run(QueuedRun(run_id, flow.scope, flow.id, slot, now_ms())):
            return False  # another worker queued this slot first
        self.services.ledger.queued_scheduled(flow, run_id, slot)
        self.services.runs.queued.notify()
        return True

    # --- execution ---
    def run_one(
        self, run_id: str | None = None, on_progress: Callable[[Counters], None] | None = None
    ) -> bool:
        """Claim and execute one run (``run_id`` only, when given), else one partition of a run another
        worker owns (runtime/partitions.py); False when there was nothing to do."""
        lease_ms = int(self.settings.run_lease_seconds * 1000)
        claim = self.services.store.claim_run(self.name, lease_ms, now_ms(), run_id)
        if claim is None:  # no run to own: help with a partition of another worker's run, if runs split
            helping = (
                run_id is None
                and self.settings.run_partition_bytes > 0
                and self.settings.partition_engine == "queue"  # with Ray, Ray's workers execute them
            )
            return helping and partitionwork.run_one(self.services, self.name)
        stop_renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(claim, lease_ms, stop_renewing), daemon=True)
        renewer.start()
        try:
            RunExecution(self.services, claim, self.name, on_progress).execute()
        finally:
            stop_renewing.set()
            renewer.join()
            self.services.store.finish_run(claim.run_id, self.name)
        return True

    def _renew(self, claim: QueuedRun, lease_ms: int, stop: threading.Event) -> None:
        while not stop.wait(lease_ms / 3000):
            if not self.services.store.renew_lease(claim.run_id, self.name, now_ms() + lease_ms):
                log.warning("worker %s lost the lease of run %s", self.name, claim.run_id)
                return


def start_in_background(services: Runtime) -> Worker:
    """Start an embedded worker thread (the server's default)."""
    worker = Worker(services)
    thread = threading.Thread(target=worker.run_forever, name="headwater-worker", daemon=True)
    thread.start()
    return worker

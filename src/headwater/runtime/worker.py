"""The worker: schedules due flows and executes queued runs, in the server process or alone.

Several workers may share one database: a run is claimed with one conditional UPDATE, held under a
lease renewed while it executes, and taken over by another worker when the lease expires (its worker
died). The scheduler enqueues each flow's latest due schedule slot; a slot is queued once, whichever
worker sees it first.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from headwater.runtime.context import Runtime
from headwater.runtime.executor import Counters, RunExecution
from headwater.runtime.flowwatch import FlowWatch
from headwater.services.ids import new_hex, now_ms
from headwater.services.runs import new_run_id
from headwater.stores.metadata import QueuedRun, Resource, Scope

log = logging.getLogger("headwater.worker")

_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


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
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_hex(3)}"
        self.settings = services.settings
        self.stop_event = threading.Event()
        self._watch = FlowWatch(services.store)

    # --- loop ---
    def run_forever(self) -> None:
        log.info("worker %s started", self.name)
        supervisor = activations = None
        if self.streaming:  # streaming flows: a micro-batcher per flow, beside the run loop
            from headwater.runtime.delivery.supervisor import start_in_background as start_activations
            from headwater.runtime.streamsupervisor import start_in_background as start_streaming

            supervisor = start_streaming(self.services)
            activations = start_activations(self.services)
        try:
            self._loop()
        finally:
            if supervisor is not None:
                supervisor.stop()
                supervisor.stop_all()
            if activations is not None:
                activations[0].stop()
                activations[1].join(timeout=15)
        log.info("worker %s stopped", self.name)

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                if self.schedule:
                    self.schedule_due()
                worked = self.run_one()
            except Exception:  # keep the loop alive; the failure is logged with its traceback
                log.exception("worker %s: iteration failed", self.name)
                worked = False
            if not worked:
                self.stop_event.wait(self.settings.worker_poll_seconds)

    def stop(self) -> None:
        self.stop_event.set()

    # --- scheduling ---
    def schedule_due(self, now: datetime | None = None, scopes: Collection[Scope] | None = None) -> int:
        """Queue a run for every enabled scheduled flow (of ``scopes``, when given) whose latest due slot
        is not queued yet."""
        now = now or datetime.now(UTC)
        store = self.services.store
        queued = 0
        for flow in self._watch.flows():
            if scopes is not None and flow.scope not in scopes:
                continue
            schedule = flow.doc.get("scheduleParams")
            if flow.doc.get("state") != "enabled" or not isinstance(schedule, dict):
                continue
            slot = latest_due_slot(schedule, now)
            if slot is None:
                continue
            last = store.last_slot(flow.id)
            if last is not None and last >= slot:
                continue
            if self._enqueue_scheduled(flow, slot):
                queued += 1
        return queued

    def _enqueue_scheduled(self, flow: Resource, slot: int) -> bool:
        run_id = new_run_id()
        if not self.services.store.enqueue_run(QueuedRun(run_id, flow.scope, flow.id, slot, now_ms())):
            return False  # another worker queued this slot first
        self.services.ledger.queued_scheduled(flow, run_id, slot)
        return True

    # --- execution ---
    def run_one(
        self, run_id: str | None = None, on_progress: Callable[[Counters], None] | None = None
    ) -> bool:
        """Claim and execute one run (``run_id`` only, when given); False when there was nothing to do."""
        lease_ms = int(self.settings.run_lease_seconds * 1000)
        claim = self.services.store.claim_run(self.name, lease_ms, now_ms(), run_id)
        if claim is None:
            return False
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

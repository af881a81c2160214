"""The job runners: one thread beside each worker for segment jobs, one for profile export jobs, one
for promoting ingestion batches (runtime/batchpromotion.py).

A runner wakes at once when this process creates a job (its collection's ``created`` signal), and
otherwise looks for jobs every ``poll_seconds`` (:data:`POLL_SECONDS` unless told): jobs created by
another process, and jobs whose runner died (their lease expired). Idle, it costs that one look. Jobs
run one at a time per runner: a segment job already uses every core DuckDB is given.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from headwater.services.runs import QueuedSignal
    from headwater.stores.metadata import Resource

log = logging.getLogger("headwater.segments")

POLL_SECONDS = 5.0


class Jobs(Protocol):
    """What a runner needs of a kind of job: claim one, run a claimed one, hear of new ones."""

    @property
    def created(self) -> QueuedSignal: ...

    def claim_next(self, worker: str) -> Resource | None: ...

    def run(self, job: Resource) -> Resource | None: ...


class JobRunner:
    def __init__(
        self, jobs: Jobs, worker: str | None = None, name: str = "segment", poll_seconds: float = POLL_SECONDS
    ) -> None:
        self.jobs = jobs
        self.name = name
        self.poll_seconds = poll_seconds
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{name}s"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop (again after :meth:`stop`); nothing when it runs already."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop.clear()
        self.jobs.created.listen(self._wake.set)
        self._thread = threading.Thread(target=self._run, name=f"headwater-{self.name}-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the job in progress (if any) ends."""
        self._stop.set()
        self._wake.set()
        self.jobs.created.forget(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_pending(self) -> int:
        """Run every job there is now, one after another; how many ran."""
        ran = 0
        while not self._stop.is_set():
            job = self.jobs.claim_next(self.worker)
            if job is None:
                return ran
            ended = self.jobs.run(job)
            ran += 1
            if ended is not None:
                log.info("%s job %s %s", self.name, job.id, ended.doc.get("status") or ended.doc.get("state"))
        return ran

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before looking: a job created from now on ends the wait below
            try:
                self.run_pending()
            except Exception:  # the store may be away for a moment: logged, looked at again
                log.exception("%s job runner failed; retrying", self.name)
            self._wake.wait(self.poll_seconds)


SegmentJobRunner = JobRunner  # the name the worker and the wiring know it by

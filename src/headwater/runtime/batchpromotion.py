"""The promotion runner of the Batch Ingestion API: a job runner (runtime/segmentjobs.py ``JobRunner``)
beside each worker over the promotion queue (services/batchqueue.py).

It looks at the queue when it starts (so a batch whose promotion a crash interrupted, or whose COMPLETE
was accepted by a process that died before promoting it, is promoted without any client call), when
this process queues a batch, and every ``worker_poll_seconds`` (batches queued by another process, and
entries whose runner died: their lease expired). A claimed entry's lease is renewed while the batch is
promoted; the entry is deleted once the batch is final. Promotion commits at most once per batch
(``Lake.commit(once_per=("batchId",))``), so a runner taking over from a dead one never adds rows twice.
"""

from __future__ import annotations

import logging
import threading

from headwater.faults import crash_point
from headwater.runtime import batchingest
from headwater.runtime.context import Runtime
from headwater.services.batchingest import LOADING, PROCESSING, BatchIngestion
from headwater.services.batchqueue import MAX_CRASHES, PromotionQueue
from headwater.services.runs import QueuedSignal
from headwater.stores.metadata import Resource

log = logging.getLogger("headwater.batchingest")


class BatchPromotions:
    """The promotion queue as the job runner sees it: claim an entry, promote its batch."""

    def __init__(self, services: Runtime, ingestion: BatchIngestion, queue: PromotionQueue) -> None:
        self.services = services
        self.ingestion = ingestion
        self.queue = queue

    @property
    def created(self) -> QueuedSignal:
        return self.queue.created

    def claim_next(self, worker: str) -> Resource | None:
        while (entry := self.queue.claim_next(worker)) is not None:
            if int(entry.doc.get("crashes") or 0) < MAX_CRASHES:
                return entry
            self._give_up(entry)
        return None

    def run(self, job: Resource) -> Resource | None:
        """Promote the claimed entry's batch, holding its lease meanwhile; the batch as saved (None when
        it is gone). A failure releases the entry for a later look (the lake may be away for a while)."""
        crash_point("batch_before_promotion")
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job, stop), daemon=True)
        renewer.start()
        promoted = False
        try:
            batch = batchingest.promote(self.services, self.ingestion, job.scope, job.id)
            promoted = True
        finally:
            stop.set()
            renewer.join()  # before a release: a renewal meanwhile would make it a stale write
            if not promoted:
                self.queue.release(job)
        self.queue.done(job)
        if batch is not None:
            log.info("batch %s promoted: %s", job.id, batch.doc.get("status"))
        return batch

    def _give_up(self, entry: Resource) -> None:
        """Fail the batch of an entry whose runners died :data:`MAX_CRASHES` times (nothing committed
        unless a commit went through before a crash, which the batch then shows), and forget it."""
        batch = self.services.store.get("batch", entry.scope, entry.id)
        if batch is not None and batch.doc.get("status") in (LOADING, PROCESSING):
            message = (
                f"The batch's promotion was started {MAX_CRASHES} times and its worker died each time "
                "(out of memory?); nothing was committed. See the workers' logs."
            )
            batchingest.give_up(self.services, self.ingestion, batch, message)
            log.error("batch %s: %s", entry.id, message)
        self.queue.done(entry)

    def _renew(self, entry: Resource, stop: threading.Event) -> None:
        current: Resource | None = entry
        while current is not None and not stop.wait(self.queue.lease_ms / 3000):
            current = self.queue.renew(current)
            if current is None:
                log.warning("the promotion of batch %s was taken over by another runner", entry.id)

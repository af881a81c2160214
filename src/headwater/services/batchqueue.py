"""The promotion queue of the Batch Ingestion API: batches whose COMPLETE was accepted and whose files
are not yet in their dataset.

``POST /import/batches/{id}?action=COMPLETE`` stores an entry (kind ``batchPromotion``, the batch's id,
in the batch's sandbox) BEFORE it marks the batch ``processing`` and answers, so an accepted COMPLETE is
durable: whatever process dies afterwards, a worker's promotion runner (runtime/batchpromotion.py) finds
the entry and promotes the batch. An entry is claimed with a compare-and-set on its document under a
lease of ``run_lease_seconds``, renewed while the promotion runs, and taken over by another runner once
the lease expired (its runner died). It is deleted once the batch is final and its staging removed.
A promotion that raised (the lake away for a while) releases its entry for a later look; one whose
runner died holding it (``crashes``, counted when another runner takes it over) is given up after
:data:`MAX_CRASHES`: a batch that kills whoever promotes it (out of memory, say) fails instead of taking
a worker down every lease period forever.

The queue only holds entries for batches of this API, so a runner's look at it costs a scan of the
batches waiting, never of every catalog batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

from headwater.services.ids import new_etag, now_ms
from headwater.services.runs import QueuedSignal
from headwater.stores.metadata import AlreadyExists, MetadataStore, Resource, StaleWrite

KIND = "batchPromotion"
QUEUED, CLAIMED = "queued", "claimed"
MAX_CRASHES = 5  # a batch whose promotion's runner died this many times fails


class PromotionQueue:
    """Entries of batches to promote; see the module's docstring."""

    kind = KIND

    def __init__(self, store: MetadataStore, lease_seconds: float) -> None:
        self.store = store
        self.lease_ms = int(lease_seconds * 1000)
        self.created = QueuedSignal()  # this process queued a batch: its runner looks at once

    def enqueue(self, batch: Resource) -> None:
        """Queue ``batch`` (durable when this returns; queued already is fine) and wake this process's
        runner."""
        now = now_ms()
        doc = {"batchId": batch.id, "status": QUEUED, "leaseUntil": 0, "createdAt": now, "updatedAt": now}
        entry = Resource(KIND, batch.id, batch.scope, doc, new_etag(), created_at=now, updated_at=now)
        with contextlib.suppress(AlreadyExists):  # queued already: COMPLETE again
            self.store.insert(entry)
        self.created.notify()

    def queued(self, batch: Resource) -> bool:
        return self.store.get(KIND, batch.scope, batch.id) is not None

    def entries(self) -> Iterator[Resource]:
        return self.store.scan_kind(KIND)

    def claim_next(self, worker: str) -> Resource | None:
        """Claim the oldest entry nobody holds (queued, or its lease expired); None when there is none."""
        now = now_ms()
        for entry in sorted(self.entries(), key=lambda e: e.created_at):
            if int(entry.doc.get("leaseUntil") or 0) < now:
                # Claimed and its lease expired: its runner died holding it.
                crashes = int(entry.doc.get("crashes") or 0) + (entry.doc.get("status") == CLAIMED)
                lease = now + self.lease_ms
                claimed = self._save(entry, status=CLAIMED, worker=worker, leaseUntil=lease, crashes=crashes)
                if claimed is not None:
                    return claimed
        return None

    def release(self, entry: Resource) -> None:
        """Give ``entry`` back (its promotion raised): looked at again after a lease period, not counted
        as a crash."""
        current = self.store.get(KIND, entry.scope, entry.id)
        if current is not None and current.doc.get("worker") == entry.doc.get("worker"):  # still ours
            self._save(current, status=QUEUED, leaseUntil=now_ms() + self.lease_ms)

    def renew(self, entry: Resource) -> Resource | None:
        """``entry`` with its lease pushed on; None when another runner took it over meanwhile."""
        return self._save(entry, leaseUntil=now_ms() + self.lease_ms)

    def done(self, entry: Resource) -> None:
        self.store.delete(KIND, entry.scope, entry.id)

    def _save(self, entry: Resource, **changes: object) -> Resource | None:
        now = now_ms()
        updated = replace(
            entry, doc={**entry.doc, **changes, "updatedAt": now}, etag=new_etag(), updated_at=now
        )
        try:
            self.store.update(updated, entry.etag)
        except StaleWrite:
            return None
        return updated

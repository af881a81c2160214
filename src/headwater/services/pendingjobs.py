"""Which jobs of a kind may still need a runner, without reading every job ever made.

Query, segment and export jobs are kept after they end (their answers and metrics are read later), so
a runner that looked for work by scanning the whole kind would read every job ever submitted on every
poll: a deployment with a dashboard querying every minute reads half a million documents a year, twice
a second. Instead, each job gets a marker (a resource of ``<kind>Pending``, same id and scope) when it is
created; a runner reads the markers, loads their jobs, and deletes the markers of jobs that ended or are
gone. The claim itself is unchanged: the caller's compare-and-set on the job decides between runners.

A job created by a process that died between storing the job and its marker has no marker: each
process scans the whole kind once when it first looks, and again every :data:`RESCAN_SECONDS`, marking
the open jobs it finds (which also marks the jobs of a deployment upgraded from before the markers).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from headwater.services.ids import new_etag, now_ms
from headwater.stores.metadata import AlreadyExists, MetadataStore, Resource

RESCAN_SECONDS = 3600.0


class PendingJobs:
    def __init__(self, store: MetadataStore, kind: str, is_open: Callable[[Resource], bool]) -> None:
        self.store = store
        self.kind = kind
        self.marker_kind = f"{kind}Pending"
        self.is_open = is_open
        self._scanned = -RESCAN_SECONDS  # monotonic time of the last full scan: none yet
        self._lock = threading.Lock()

    def mark(self, job: Resource) -> None:
        """Record that ``job`` needs a runner (it was just created)."""
        now = now_ms()
        marker = Resource(self.marker_kind, job.id, job.scope, {}, new_etag(), created_at=now, updated_at=now)
        with contextlib.suppress(AlreadyExists):
            self.store.insert(marker)

    def candidates(self) -> list[Resource]:
        """The open jobs, oldest first; markers of jobs that ended or are gone are deleted."""
        self._rescan()
        found = []
        for marker in self.store.scan_kind(self.marker_kind):
            job = self.store.get(self.kind, marker.scope, marker.id)
            if job is None or not self.is_open(job):
                self.store.delete(self.marker_kind, marker.scope, marker.id)
                continue
            found.append(job)
        return sorted(found, key=lambda r: r.created_at)

    def _rescan(self) -> None:
        with self._lock:
            if time.monotonic() - self._scanned < RESCAN_SECONDS:
                return
            self._scanned = time.monotonic()
        for job in self.store.scan_kind(self.kind):
            if self.is_open(job):
                self.mark(job)

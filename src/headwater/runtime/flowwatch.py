"""Every flow, read again only when one changed: what the supervisors and the scheduler scan.

Reading every flow document is the cost of a scan (about 20 ms for 1,000 flows); the supervisors and
the scheduler look several times a second. :meth:`FlowWatch.flows` asks first for the version of the
flows, a few small queries whatever their number (per sandbox: how many flows, and the one updated
last, with its etag), and scans only when that changed. A flow created, deleted or updated changes the
version: the count, or the flow updated last (an update sets its update time and etag). Two updates
in one millisecond could leave the same flow last; every :data:`RESCAN_SECONDS` the flows are read
anyway, so such a change is seen then.

The version's queries cost a few milliseconds: a worker shares one watch between its scheduler and its
supervisors (:data:`SHARED_FRESH_SECONDS`), so the process asks about once a second, not once per
reader and look.
"""

from __future__ import annotations

import threading
import time

from headwater.stores.metadata import MetadataStore, Resource, Scope

RESCAN_SECONDS = 10.0
SHARED_FRESH_SECONDS = 1.0  # what one reader of a shared watch saw serves the others this long

Version = tuple[tuple[str, int | None, str | None, str | None], ...]


class FlowWatch:
    """Every flow of ``store``, rescanned when the version of the flows changed. Thread-safe; a version
    looked at less than ``fresh`` seconds ago is not asked again."""

    def __init__(self, store: MetadataStore, fresh: float = 0.0) -> None:
        self.store = store
        self.fresh = fresh
        self._lock = threading.Lock()
        self._version: Version | None = None
        self._flows: list[Resource] = []
        self._scanned = 0.0
        self._looked = float("-inf")

    def version(self) -> Version:
        out = []
        for org in self.store.list_orgs():
            for sandbox in self.store.list_sandboxes(org.id):
                scope = Scope(org.id, sandbox.id)
                page = self.store.list("flow", scope, order="updatedAt", descending=True, limit=1, count=True)
                top = page.items[0] if page.items else None
                out.append((sandbox.id, page.total, top.id if top else None, top.etag if top else None))
        return tuple(out)

    def flows(self) -> list[Resource]:
        """Every flow (the version is read before the scan: a change during it is seen next time). The
        same list object is returned until a rescan, so a reader may keep what it derived from it."""
        with self._lock:
            if time.monotonic() - self._looked < self.fresh:
                return self._flows
            version = self.version()
            self._looked = time.monotonic()
            if version != self._version or self._looked - self._scanned >= RESCAN_SECONDS:
                self._scanned = self._looked
                self._flows = list(self.store.scan_kind("flow"))
                self._version = version
            return self._flows

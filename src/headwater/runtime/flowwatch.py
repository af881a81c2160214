"""Every flow, read again only when one changed: what the supervisors and the scheduler scan.

Reading every flow document is the cost of a scan (about 20 ms for 1,000 flows); the supervisors and
the scheduler look several times a second. :meth:`FlowWatch.flows` asks first for the version of the
flows, a few small queries whatever their number (per sandbox: how many flows, and the one updated
last, with its etag), and scans only when that changed. A flow created, deleted or updated changes the
version: the count, or the flow updated last (an update sets its update time and etag). Two updates
in one millisecond could leave the same flow last; every :data:`RESCAN_SECONDS` the flows are read
anyway, so such a change is seen then.
"""

from __future__ import annotations

import time

from headwater.stores.metadata import MetadataStore, Resource, Scope

RESCAN_SECONDS = 10.0

Version = tuple[tuple[str, int | None, str | None, str | None], ...]


class FlowWatch:
    """Every flow of ``store``, rescanned when the version of the flows changed."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._version: Version | None = None
        self._flows: list[Resource] = []
        self._scanned = 0.0

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
        """Every flow (the version is read before the scan: a change during it is seen next time)."""
        version = self.version()
        if version != self._version or time.monotonic() - self._scanned >= RESCAN_SECONDS:
            self._scanned = time.monotonic()
            self._flows = list(self.store.scan_kind("flow"))
            self._version = version
        return self._flows

"""The profile projector: one thread that keeps the profile store in step with the lake.

It steps each profile-enabled dataset (services/profiles/projection.py) whose table changed:
- at once when this process commits to the lake (the lake's commit signal);
- within :data:`POLL_SECONDS` when another process does: one query of the Iceberg catalog's table
  pointers tells which tables moved, whatever the number of datasets.
The list of profile-enabled datasets is re-read every :data:`SOURCES_SECONDS` and on every commit of this
process. Idle, the thread costs that one catalog query a second.

A batch run makes its own commit visible in profiles before it ends (:meth:`ProfileProjector.catch_up`),
so a run that succeeded is in the profiles; streaming micro-batches are projected within a second of
their commit. Graph steps of one sandbox must not interleave (services/profiles/graphstep.py): all steps
of a process run under one thread lock, and a step of a sandbox holds the deployment's lock
``streams/.profiles/<org>/<sandbox>`` (stores/locks: a file lock in the home with SQLite, a PostgreSQL
advisory lock with PostgreSQL), so workers on one machine or several step a sandbox one at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from headwater.services.profiles.sources import ProfileSource, ProfileSources
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import StaleCursor

if TYPE_CHECKING:
    from headwater.lake.iceberg import Lake
    from headwater.services.profiles.projection import Projection, StepReport
    from headwater.stores.locks import Locks
    from headwater.stores.metadata import MetadataStore

log = logging.getLogger("headwater.profiles")

POLL_SECONDS = 1.0
SOURCES_SECONDS = 10.0
_STALE_ATTEMPTS = 5


class ProfileProjector:
    def __init__(self, store: MetadataStore, lake: Lake, projection: Projection, locks: Locks) -> None:
        self.store = store
        self.lake = lake
        self.projection = projection
        self.locks = locks
        self.sources = ProfileSources(store)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen: dict[tuple[str, str], str | None] = {}  # (scope, dataset) -> metadata location
        self._thread: threading.Thread | None = None

    # --- one dataset ---
    def catch_up(self, scope: Scope, dataset_id: str) -> StepReport | None:
        """Project ``dataset_id`` now if it feeds profiles (None when it does not)."""
        dataset = self.store.get("dataSet", scope, dataset_id)
        source = self.sources.enabled(scope, dataset) if dataset is not None else None
        return self.step(source) if source is not None else None

    def step(self, source: ProfileSource) -> StepReport:
        sandbox = f"streams/.profiles/{source.scope.org_id}/{source.scope.sandbox_id}"
        with self._lock, self.locks.exclusive(sandbox):
            for attempt in range(_STALE_ATTEMPTS):
                try:
                    return self.projection.step(source)
                except StaleCursor:  # another process projected meanwhile: read from its cursor
                    if attempt == _STALE_ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    # --- the loop ---
    def start(self) -> None:
        """Start the loop (again after :meth:`stop`); nothing when it runs already."""
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="headwater-profiles", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        commits = self.lake.commits.wait(-1, 0)
        sources: list[ProfileSource] = []
        listed = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now - listed >= SOURCES_SECONDS:
                    sources, listed = self._all_sources(), now
                for source, key, pointer in self._moved(sources):
                    report = self.step(source)
                    self._seen[key] = pointer  # only once projected: a failed step is retried next wake
                    if report.rows:
                        log.info("profiles: dataset %s projected %d rows", source.dataset_id, report.rows)
            except Exception:  # a failing dataset must not stop the others: logged, retried next wake
                log.exception("profile projection failed; retrying")
            seen, commits = commits, self.lake.commits.wait(commits, POLL_SECONDS)
            if commits != seen:
                listed = 0.0  # a local commit may be a new profile-enabled dataset's first

    def _all_sources(self) -> list[ProfileSource]:
        found: list[ProfileSource] = []
        for org in self.store.list_orgs():
            for sandbox in self.store.list_sandboxes(org.id):
                found.extend(self.sources.all(Scope(org.id, sandbox.id)))
        return found

    def _moved(self, sources: list[ProfileSource]) -> list[tuple[ProfileSource, tuple[str, str], str]]:
        """The sources whose table pointer changed since they were last projected, with the pointer."""
        if not sources:
            return []
        pointers = self.lake.metadata_locations()
        moved = []
        for source in sources:
            key = (f"{source.scope.org_id}/{source.scope.sandbox_id}", source.dataset_id)
            pointer = pointers.get(self.lake.identifier(source.scope, source.dataset_id))
            if pointer is not None and self._seen.get(key) != pointer:
                moved.append((source, key, pointer))
        return moved


def start_in_background(
    store: MetadataStore, lake: Lake, projection: Projection, locks: Locks
) -> ProfileProjector:
    projector = ProfileProjector(store, lake, projection, locks)
    projector.start()
    return projector

"""The profile projection: the lake's profile-enabled datasets, kept in the profile store.

Each profile-enabled dataset has a cursor in the profile store: the last lake snapshot projected.
:meth:`Projection.step` reads what the dataset's table gained since (lake/increments.py) and, in ONE
profile-store transaction that also moves the cursor:

- links the identities of each new row (the identity graph, under its limits);
- writes each profile row as its dataset's fragment of the row's anchor identity (its primary identity,
  else its first), timestamped by the record's ``extSourceSystemAudit.lastUpdatedDate`` when it has one,
  else by the commit that brought it to the lake;
- writes each event row as an experience event of its anchor identity (its ``_id`` and ``timestamp``).

Each identity is also written beside its row's anchor, per dataset (the store's ``profile_links``, at
the generation of the snapshot), which is what lets a dataset take its identities back out of the graph.

After a rewrite of the table (a full refresh, a deletion, a Profile delete), the dataset's fragments and
events are replaced by the table's current rows in the same way; then a *sweep* removes the dataset's
links that the rewrite did not see again and splits the clusters they held together (graphstep.split),
so a deleted record's identities leave the profile too. :meth:`Projection.forget` does the same for a
deleted dataset. A crash at any point leaves the cursor where the last finished step put it: the next
step reads the same rows again (or finishes the sweep, state ``sweep``), and writing a fragment, an
event or a link twice changes nothing.

After each committed chunk, ``on_changed`` (the container gives ``Segments.reevaluate_quietly``) is told
the clusters it touched, so that streaming segments re-evaluate those profiles within the step.

Identities that fail their namespace's format are not linked and the row is kept only through its other
identities; rows without any identity are counted, not projected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from headwater.engines.identity.extract import identities, links
from headwater.engines.identity.graph import Limits
from headwater.engines.identity.namespaces import check_value
from headwater.faults import crash_point
from headwater.lake.iceberg import Lake
from headwater.lake.increments import increment
from headwater.services.profiles.graphstep import link, seen, split
from headwater.services.profiles.sources import ProfileSource
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import (
    ExperienceEvent,
    Fragment,
    GraphUpdate,
    IdentityLink,
    ProfileStore,
    StaleCursor,
)

CHUNK_ROWS = 50_000  # default rows per profile-store transaction during a first read or a rebuild
PARTIAL = "partial"
SWEEP = "sweep"  # a first read or rebuild committed its last chunk; its sweep has not finished


@dataclass
class Written:
    """What one chunk wrote."""

    fragments: list[Fragment]
    events: list[ExperienceEvent]
    graph: GraphUpdate | None
    links: list[IdentityLink]
    anchored: set[int]  # the clusters of the rows' anchor identities after the graph step


NOTHING = Written([], [], None, [], set())


@dataclass
class StepReport:
    """What one step did (for logs and the bench)."""

    rows: int = 0
    fragments: int = 0
    events: int = 0
    without_identity: int = 0
    refused_links: int = 0
    removed_identities: int = 0
    rebuilt: bool = False
    snapshot_id: int | None = None


class Projection:
    def __init__(
        self,
        lake: Lake,
        profiles: ProfileStore,
        namespace_id: Callable[[str], int],
        limits: Limits | None = None,
        chunk_rows: int = CHUNK_ROWS,
        on_changed: Callable[[Scope, set[int], int], None] | None = None,
    ) -> None:
        self.lake = lake
        self.profiles = profiles
        self.namespace_id = namespace_id
        self.limits = limits or Limits()
        self.chunk_rows = chunk_rows
        #: Called after each committed chunk with the clusters it touched (streaming segments).
        self.on_changed = on_changed

    def step(self, source: ProfileSource) -> StepReport:
        """Project what ``source``'s table gained since its cursor. Raises StaleCursor when another
        projector moved the cursor meanwhile (nothing written: step again)."""
        report = StepReport()
        table = self.lake.load(source.scope, source.dataset_id)
        if table is None:
            return report
        cursor = self.profiles.cursor(source.scope, source.dataset_id)
        if cursor is not None and cursor.state == PARTIAL:  # a rebuild or first read that did not finish
            self.profiles.drop_dataset(source.scope, source.dataset_id)
            cursor = None
        elif cursor is not None and cursor.state == SWEEP:  # its sweep did not finish
            self._sweep(source, cursor.snapshot_id, report)
        step = increment(table, cursor.snapshot_id if cursor is not None else None)
        if step.empty:
            return report
        if step.rebuild:  # the table was rewritten: start over from its current rows
            self.profiles.drop_dataset(source.scope, source.dataset_id)
            cursor = None
        # A first read, a rebuild, or a restart of either: the dataset's links not seen again go after.
        sweeping = cursor is None
        report.rebuilt, report.snapshot_id = step.rebuild, step.snapshot_id
        snapshot = table.snapshot_by_id(step.snapshot_id) if step.snapshot_id is not None else None
        committed_ms = snapshot.timestamp_ms if snapshot is not None else int(time.time() * 1000)
        target = step.snapshot_id if step.snapshot_id is not None else -1
        expected = cursor.snapshot_id if cursor is not None else None
        chunks = _chunks(step.reader, self.chunk_rows) if step.reader is not None else iter(())
        chunk = next(chunks, None)
        while True:
            following = next(chunks, None)
            # Until the last chunk of a first read, the cursor says PARTIAL: a crash restarts the read.
            partial = following is not None
            written = self._write(source, chunk, committed_ms, str(target), report)
            self.profiles.project(
                source.scope,
                source.dataset_id,
                target,
                at_ms=int(time.time() * 1000),
                fragments=written.fragments,
                events=written.events,
                graph=written.graph,
                links=written.links,
                state=PARTIAL if partial else (SWEEP if sweeping else ""),
                expected_snapshot_id=expected,
            )
            expected = target
            self._changed(source, written)
            if following is None:
                if sweeping:
                    crash_point("profile_sweep")  # the crash tests: the last chunk in, its sweep not
                    self._sweep(source, target, report)
                return report
            crash_point("profile_chunk")  # the crash tests: between two chunks of a first read
            chunk = following

    def forget(self, scope: Scope, dataset_id: str) -> int:
        """Take a deleted dataset out of profiles: its fragments, events and cursor, and the identities
        and links only it held (clusters split where its links held them together). How many identities
        left the graph."""
        found = split(self.profiles, scope, dataset_id, None, self.limits, self.namespace_id)
        if not found.changed and self.profiles.cursor(scope, dataset_id) is None:
            return 0  # it never fed profiles
        now = int(time.time() * 1000)
        self.profiles.sweep(scope, dataset_id, None, found.split, at_ms=now, drop=True)
        if found.changed and self.on_changed is not None:
            self.on_changed(scope, found.changed, now)
        return len(found.split.removed)

    def _sweep(self, source: ProfileSource, generation: int, report: StepReport) -> None:
        """Remove the dataset's links of generations before ``generation`` (what its rewrite no longer
        holds), split the clusters they held together, and clear the cursor's SWEEP state."""
        found = split(
            self.profiles, source.scope, source.dataset_id, generation, self.limits, self.namespace_id
        )
        now = int(time.time() * 1000)
        self.profiles.sweep(
            source.scope,
            source.dataset_id,
            generation,
            found.split,
            at_ms=now,
            expected_snapshot_id=generation,
        )
        report.removed_identities += len(found.split.removed)
        if found.changed and self.on_changed is not None:
            self.on_changed(source.scope, found.changed, now)

    def _changed(self, source: ProfileSource, written: Written) -> None:
        """Tell ``on_changed`` which clusters a committed chunk touched: every cluster the graph assigned
        or merged into, and the clusters of the rows' anchor identities after the step (the graph step
        knows them: every anchor is one of its identities, so the store is not asked again)."""
        fragments, events, graph = written.fragments, written.events, written.graph
        if self.on_changed is None or not (fragments or events or graph):
            return
        clusters = {c for _, _, c in graph.assignments} | {b for _, b in graph.merged} if graph else set()
        clusters.update(written.anchored)
        if clusters:
            self.on_changed(source.scope, clusters, int(time.time() * 1000))

    def _write(
        self,
        source: ProfileSource,
        chunk: pa.Table | None,
        committed_ms: int,
        batch_id: str,
        report: StepReport,
    ) -> Written:
        if chunk is None or chunk.num_rows == 0:
            return NOTHING
        now = int(time.time() * 1000)
        found = _valid(identities(chunk, source.fields))
        anchors = _anchors(found)
        report.rows += chunk.num_rows
        report.without_identity += chunk.num_rows - len(anchors)
        step = link(
            self.profiles,
            source.scope,
            found,
            links(found),
            self.limits,
            self.namespace_id,
            now,
            source.dataset_id,
        )
        graph = step.update
        report.refused_links += len(graph.refused)
        records = _records(chunk)
        fragments: list[Fragment] = []
        events: list[ExperienceEvent] = []
        for row, (namespace, ident) in anchors.items():
            record = records[row]
            if source.kind == "event":
                events.append(_event(source.dataset_id, namespace, ident, record, batch_id, row))
            else:
                ts = _ms(_get(record, "extSourceSystemAudit", "lastUpdatedDate")) or committed_ms
                fragments.append(Fragment(source.dataset_id, namespace, ident, record, ts, batch_id))
        report.fragments += len(fragments)
        report.events += len(events)
        anchored = {step.cluster[key] for key in anchors.values()}
        return Written(fragments, events, graph, seen(found, anchors, graph.refused), anchored)


def _chunks(reader: pa.RecordBatchReader, rows: int) -> Iterator[pa.Table]:
    """The reader's rows in tables of at most ``rows`` (a data file's batch may be larger)."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        while batch.num_rows:
            take = min(batch.num_rows, rows - size)
            pending.append(batch.slice(0, take))
            batch, size = batch.slice(take), size + take
            if size == rows:
                yield pa.Table.from_batches(pending)
                pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _valid(found: pa.Table) -> pa.Table:
    """Drop identities whose value fails their namespace's format."""
    if found.num_rows == 0:
        return found
    namespaces, values = found.column("namespace").to_pylist(), found.column("id").to_pylist()
    keep = [check_value(n, v) is None for n, v in zip(namespaces, values, strict=True)]
    return found.filter(pa.array(keep)) if not all(keep) else found


def _anchors(found: pa.Table) -> dict[int, tuple[str, str]]:
    """Each row's anchor identity: its first primary identity, else its first."""
    anchors: dict[int, tuple[str, str]] = {}
    primary_seen: set[int] = set()
    rows = found.column("row").to_pylist()
    namespaces, values = found.column("namespace").to_pylist(), found.column("id").to_pylist()
    primaries = found.column("primary").to_pylist()
    for row, namespace, value, primary in zip(rows, namespaces, values, primaries, strict=True):
        if row not in anchors or (primary and row not in primary_seen):
            anchors[row] = (namespace, value)
            if primary:
                primary_seen.add(row)
    return anchors


def _records(chunk: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready documents (timestamps as ISO 8601 text, as the API shows them)."""
    rows = chunk.to_pylist()
    return [orjson.loads(orjson.dumps(r, default=str, option=orjson.OPT_NAIVE_UTC)) for r in rows]


def _event(
    dataset_id: str, namespace: str, ident: str, record: dict[str, Any], batch: str, row: int
) -> ExperienceEvent:
    event_id = record.get("_id")
    ts = _ms(record.get("timestamp")) or 0
    return ExperienceEvent(
        dataset_id, namespace, ident, ts, str(event_id) if event_id else f"{batch}:{row}", batch, record
    )


def _get(record: dict[str, Any], *path: str) -> Any:
    value: Any = record
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _ms(value: Any) -> int | None:
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


__all__ = ["Projection", "StaleCursor", "StepReport"]

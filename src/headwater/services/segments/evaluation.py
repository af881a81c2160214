"""Evaluating segment definitions over the profile store, in DuckDB.

- :meth:`Segments.evaluate_sandbox` (segment jobs): every fragment and event of the sandbox is streamed
  from the store (``iter_fragments``/``iter_events``, Arrow batches) into one in-memory DuckDB database,
  and ``engines.segments.compile`` evaluates all definitions of one merge policy in ONE query: no loop
  per profile in Python.
- :meth:`Segments.reevaluate` (streaming): the same query over just the given clusters' fragments and
  events (read from the store by key), for the definitions evaluated continuously.

Either way the membership changes are written by ``ProfileStore.apply_membership`` with the merged
entity (``engines.profile_merge.merge`` of the store's fragments, and the identityMap) of each cluster
whose status changes, and only of those. A batch evaluation also exits the realized members that have
no fragment any more (their data was deleted).

A batch job and a streaming re-evaluation of one segment may interleave: the job's evaluation reads a
snapshot, so its write can undo a change streaming made meanwhile; the next change of that profile
re-evaluates it again. Membership writes themselves are serialized by the store.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from headwater.engines.profile_merge import merge
from headwater.engines.segments import compile as segment_sql
from headwater.engines.segments.nodes import depends_on_events
from headwater.services.merge_policies import MergePolicies
from headwater.services.segments.definitions import Definition, SegmentDefinitions, policy_for
from headwater.stores.metadata import Scope
from headwater.stores.profiles.base import (
    EXITED,
    REALIZED,
    ExperienceEvent,
    Fragment,
    IdentityKey,
    MembershipMoved,
    ProfileStore,
    Transition,
)

log = logging.getLogger("headwater.segments")

_ATTEMPTS = 4  # apply_membership retries when another writer moved a membership meanwhile
_MEMBER_PAGE = 100_000
_EVENT_PAGE = 1_000
_FRAGMENTS = "cluster_id BIGINT, dataset_id VARCHAR, ts_ms BIGINT, attributes VARCHAR"
_EVENTS = "cluster_id BIGINT, ts_ms BIGINT, body VARCHAR"


@dataclass
class SegmentResult:
    """What one batch evaluation of a segment found and wrote."""

    qualified: int = 0  # realized members after the evaluation
    realized: int = 0  # entered in this evaluation
    exited: int = 0  # exited in this evaluation
    transitions: list[Transition] = field(default_factory=list)


@dataclass
class SandboxResult:
    profiles: int  # clusters evaluated
    segments: dict[str, SegmentResult]
    evaluation_ms: int  # the DuckDB part


class Segments:
    def __init__(
        self,
        profiles: ProfileStore,
        definitions: SegmentDefinitions,
        policies: MergePolicies,
    ) -> None:
        self.profiles = profiles
        self.definitions = definitions
        self.policies = policies

    # --- batch: a whole sandbox ---
    def evaluate_sandbox(self, scope: Scope, definitions: Sequence[Definition], now_ms: int) -> SandboxResult:
        """Evaluate ``definitions`` over every profile of the sandbox at ``now_ms`` and write the
        membership changes; what each segment counts."""
        import time

        started = time.monotonic()
        clusters, qualifying = self.qualifying(scope, definitions, now_ms)
        evaluation_ms = int((time.monotonic() - started) * 1000)
        results = {d.id: self._apply_batch(scope, d, clusters, qualifying[d.id], now_ms) for d in definitions}
        return SandboxResult(len(clusters), results, evaluation_ms)

    def qualifying(
        self, scope: Scope, definitions: Sequence[Definition], now_ms: int
    ) -> tuple[list[int], dict[str, set[int]]]:
        """Every cluster of the sandbox that has a fragment, and the clusters each definition qualifies
        at ``now_ms`` (nothing written)."""
        with duckdb.connect() as con:
            _load(con, "fragments", _FRAGMENTS, self.profiles.iter_fragments(scope))
            if any(depends_on_events(d.expr) for d in definitions):
                _load(con, "events", _EVENTS, self.profiles.iter_events(scope))
            else:
                con.execute(f"CREATE TABLE events ({_EVENTS})")
            tables = self._run(con, scope, definitions, now_ms)
            everyone = [
                int(c)
                for (c,) in con.execute("SELECT DISTINCT cluster_id FROM fragments ORDER BY 1").fetchall()
            ]
        found: dict[str, set[int]] = {}
        for group, table in tables:
            for d in group:
                found[d.id] = set(table.filter(table.column(d.id)).column("cluster_id").to_pylist())
        return everyone, found

    def _run(
        self, con: duckdb.DuckDBPyConnection, scope: Scope, definitions: Sequence[Definition], now_ms: int
    ) -> list[tuple[list[Definition], pa.Table]]:
        """One query per merge policy: the definitions of each policy, and the table of their results."""
        by_policy: dict[str, list[Definition]] = defaultdict(list)
        for d in definitions:
            by_policy[d.merge_policy_id].append(d)
        out = []
        for policy_id, group in by_policy.items():
            policy = policy_for(self.policies, self.definitions.store, scope, policy_id)
            table = segment_sql.evaluate(con, {d.id: d.expr for d in group}, policy, now_ms)
            out.append((group, table))
        return out

    def _apply_batch(
        self, scope: Scope, d: Definition, clusters: list[int], qualifying: set[int], now_ms: int
    ) -> SegmentResult:
        realized = self._realized(scope, d.id)
        evaluated = clusters + sorted(realized.difference(clusters))  # members without fragments exit
        made = self._apply(scope, d, evaluated, qualifying, realized, now_ms)
        entered = sum(1 for m in made if m.status == REALIZED)
        exited = len(made) - entered
        return SegmentResult(len(realized) + entered - exited, entered, exited, made)

    def _realized(self, scope: Scope, segment_id: str) -> set[int]:
        found: set[int] = set()
        after: int | None = None
        while True:
            page = self.profiles.segment_members(scope, segment_id, _MEMBER_PAGE, after)
            found.update(page)
            if len(page) < _MEMBER_PAGE:
                return found
            after = page[-1]

    # --- streaming: some clusters ---
    def reevaluate(self, scope: Scope, cluster_ids: Collection[int], now_ms: int) -> list[Transition]:
        """Re-evaluate the clusters ``cluster_ids`` for the sandbox's streaming definitions (streamable
        and ``continuous.enabled``) and write the changes; the transitions written."""
        streaming = [d for d in self.definitions.definitions(scope) if d.continuous]
        clusters = sorted(set(cluster_ids))
        if not streaming or not clusters:
            return []
        members = self.profiles.members(scope, clusters)
        cluster_of = {(ns, ident): c for c, ns, ident in members}
        fragments = self.profiles.fragments_of(scope, list(cluster_of))
        events = self._events(scope, cluster_of) if any(depends_on_events(d.expr) for d in streaming) else []
        with duckdb.connect() as con:
            con.execute(f"CREATE TABLE fragments ({_FRAGMENTS})")
            con.execute(f"CREATE TABLE events ({_EVENTS})")
            _insert(con, "fragments", _fragment_rows(fragments, cluster_of))
            _insert(con, "events", _event_rows(events, cluster_of))
            tables = self._run(con, scope, streaming, now_ms)
        current = self.profiles.memberships_of(scope, clusters)
        made: list[Transition] = []
        for group, table in tables:
            for d in group:
                qualifying = set(table.filter(table.column(d.id)).column("cluster_id").to_pylist())
                realized = {c for c in clusters if current.get(c, {}).get(d.id, (EXITED, 0))[0] == REALIZED}
                made.extend(self._apply(scope, d, clusters, qualifying, realized, now_ms))
        return made

    def reevaluate_quietly(self, scope: Scope, cluster_ids: Collection[int], now_ms: int) -> None:
        """:meth:`reevaluate` for the projection: its step is committed already, so a failure here is
        logged, not raised (the next change of those profiles, or a segment job, evaluates them again)."""
        try:
            self.reevaluate(scope, cluster_ids, now_ms)
        except Exception:
            log.exception("streaming segment evaluation of %d profiles failed", len(cluster_ids))

    def _events(self, scope: Scope, cluster_of: dict[IdentityKey, int]) -> list[ExperienceEvent]:
        keys = list(cluster_of)
        events, cursor = self.profiles.events_of(scope, keys, _EVENT_PAGE)
        while cursor is not None:
            more, cursor = self.profiles.events_of(scope, keys, _EVENT_PAGE, cursor)
            events.extend(more)
        return events

    # --- membership ---
    def _apply(
        self,
        scope: Scope,
        d: Definition,
        evaluated: list[int],
        qualifying: set[int],
        realized: set[int],
        now_ms: int,
    ) -> list[Transition]:
        """Write the changes, merging the entities of the clusters that change; again from a fresh read
        of the membership when another writer moved it meanwhile."""
        policy = policy_for(self.policies, self.definitions.store, scope, d.merge_policy_id)
        for _ in range(_ATTEMPTS):
            changed = [c for c in evaluated if (c in qualifying) != (c in realized)]
            entities = self.entities(scope, changed, policy)
            try:
                return self.profiles.apply_membership(scope, d.id, evaluated, qualifying, entities, now_ms)
            except MembershipMoved:
                realized = self._realized_of(scope, d.id, evaluated)
        raise MembershipMoved(f"segment {d.id}'s membership kept moving; evaluate it again")

    def _realized_of(self, scope: Scope, segment_id: str, clusters: list[int]) -> set[int]:
        held = self.profiles.memberships_of(scope, clusters)
        return {c for c, segments in held.items() if segments.get(segment_id, (EXITED, 0))[0] == REALIZED}

    def entities(
        self, scope: Scope, clusters: Sequence[int], policy: dict[str, Any]
    ) -> dict[int, dict[str, Any]]:
        """The merged profile entity (attributes and identityMap) of each of ``clusters``."""
        if not clusters:
            return {}
        members = self.profiles.members(scope, clusters)
        cluster_of = {(ns, ident): c for c, ns, ident in members}
        by_cluster: dict[int, list[Fragment]] = defaultdict(list)
        for f in self.profiles.fragments_of(scope, list(cluster_of)):
            by_cluster[cluster_of[f.namespace, f.id]].append(f)
        identities: dict[int, dict[str, list[dict[str, str]]]] = defaultdict(dict)
        for c, ns, ident in members:
            identities[c].setdefault(ns, []).append({"id": ident})
        out = {}
        for c in clusters:
            entity = merge(by_cluster.get(c, []), policy)
            entity["identityMap"] = identities.get(c, {})
            out[c] = entity
        return out


def _load(con: duckdb.DuckDBPyConnection, name: str, columns: str, batches: Iterator[pa.RecordBatch]) -> None:
    """Stream ``batches`` into a new DuckDB table ``name`` (its ``columns``; rows without a cluster, whose
    key has no identity row, are left out)."""
    con.execute(f"CREATE TABLE {name} ({columns})")
    first = next(batches, None)
    if first is None:
        return
    reader = pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))
    names = ", ".join(c.split()[0] for c in columns.split(", "))
    con.register("incoming", reader)
    try:
        con.execute(f"INSERT INTO {name} SELECT {names} FROM incoming WHERE cluster_id IS NOT NULL")
    finally:
        con.unregister("incoming")


def _insert(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    if table.num_rows:
        con.register("incoming", table)
        try:
            con.execute(f"INSERT INTO {name} SELECT * FROM incoming")
        finally:
            con.unregister("incoming")


def _fragment_rows(fragments: list[Fragment], cluster_of: dict[IdentityKey, int]) -> pa.Table:
    return pa.table(
        {
            "cluster_id": pa.array([cluster_of[f.namespace, f.id] for f in fragments], pa.int64()),
            "dataset_id": pa.array([f.dataset_id for f in fragments], pa.string()),
            "ts_ms": pa.array([f.ts_ms for f in fragments], pa.int64()),
            "attributes": pa.array([orjson.dumps(f.attributes).decode() for f in fragments], pa.string()),
        }
    )


def _event_rows(events: list[ExperienceEvent], cluster_of: dict[IdentityKey, int]) -> pa.Table:
    return pa.table(
        {
            "cluster_id": pa.array([cluster_of[e.namespace, e.id] for e in events], pa.int64()),
            "ts_ms": pa.array([e.ts_ms for e in events], pa.int64()),
            "body": pa.array([orjson.dumps(e.body).decode() for e in events], pa.string()),
        }
    )

"""The identity graph on SQLAlchemy Core: the part of :class:`SqlProfileStore` that writes and reads
``profile_identities``, ``profile_links``, ``profile_refused_links`` and ``profile_cluster_history``
(ProfileStore's contract in base.py).

The graph's computation is not here (engines/identity/graph.py, services/profiles/graphstep.py): the
store applies its decisions, each in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, or_, select, update

from headwater.stores.metadata.base import Scope
from headwater.stores.profiles import tables as t
from headwater.stores.profiles.base import (
    ClusterMerge,
    GraphSplit,
    GraphUpdate,
    IdentityKey,
    IdentityLink,
    RefusedLink,
    StoredLink,
)
from headwater.stores.profiles.keys import chunks, key_chunks

_I = t.profile_identities.c
_L = t.profile_links.c

NEXT_IDS = (
    update(t.profile_counters)
    .where(t.profile_counters.c.name == "cluster_id")
    .values(value=t.profile_counters.c.value + bindparam("n"))
    .returning(t.profile_counters.c.value)
)
_MOVE_CLUSTER = (
    update(t.profile_identities)
    .where(_I.scope_key == bindparam("k"), _I.cluster_id == bindparam("c_from"))
    .values(cluster_id=bindparam("c_to"))
)
# Reads of many keys: one namespace and up to CHUNK ids (or clusters) per execution, built once.
_CLUSTERS_OF = select(_I.namespace, _I.id, _I.cluster_id).where(
    _I.scope_key == bindparam("k"),
    _I.namespace == bindparam("ns"),
    _I.id.in_(bindparam("ids", expanding=True)),
)
_MEMBERS = select(_I.cluster_id, _I.namespace, _I.id).where(
    _I.scope_key == bindparam("k"), _I.cluster_id.in_(bindparam("clusters", expanding=True))
)
_LINK_COLUMNS = (_L.dataset_id, _L.namespace, _L.id, _L.anchor_namespace, _L.anchor_id, _L.generation)
_LINKS_OF = select(*_LINK_COLUMNS).where(
    _L.scope_key == bindparam("k"),
    _L.namespace == bindparam("ns"),
    _L.id.in_(bindparam("ids", expanding=True)),
)


class SqlGraph:
    """Graph methods of the SQL store: a mixin of SqlProfileStore, which provides the transaction, key
    and bulk-write helpers."""

    read_engine: Engine
    _write: Callable[[], AbstractContextManager[Connection]]

    def _write_key(self, scope: Scope) -> int:
        raise NotImplementedError

    def _read_key(self, conn: Connection, scope: Scope) -> int | None:
        raise NotImplementedError

    def _executemany(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _fold_memberships(self, conn: Connection, key: int, merges: Sequence[tuple[int, int]]) -> None:
        raise NotImplementedError  # SqlMembership's (it comes first in SqlProfileStore's bases)

    def _move_cursor(self, conn: Connection, row: dict[str, Any], expected: Any) -> None:
        raise NotImplementedError

    def _drop_dataset(self, conn: Connection, key: int, dataset_id: str) -> None:
        raise NotImplementedError

    # --- reads ---
    def _rows_of_keys(self, scope: Scope, statement: Any, keys: Sequence[IdentityKey]) -> list[Any]:
        """The rows ``statement`` (parameters ``k``, ``ns``, ``ids``) gives for ``keys``: one execution
        per namespace and chunk of ids, on one connection."""
        found: list[Any] = []
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return found
            for namespace, ids in key_chunks(keys):
                found.extend(conn.execute(statement, {"k": key, "ns": namespace, "ids": ids}))
        return found

    def clusters_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> dict[IdentityKey, int]:
        rows = self._rows_of_keys(scope, _CLUSTERS_OF, keys)
        return {(ns, ident): int(cluster) for ns, ident, cluster in rows}

    def members(self, scope: Scope, cluster_ids: Sequence[int]) -> list[tuple[int, str, str]]:
        rows: list[tuple[int, str, str]] = []
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return rows
            for chunk in chunks(sorted(set(cluster_ids))):
                found = conn.execute(_MEMBERS, {"k": key, "clusters": chunk})
                rows.extend((int(c), ns, ident) for c, ns, ident in found)
        return sorted(rows)

    def links_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> list[StoredLink]:
        return [_stored(row) for row in self._rows_of_keys(scope, _LINKS_OF, keys)]

    def stale_links(self, scope: Scope, dataset_id: str, keep: int | None) -> list[StoredLink]:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return []
            rows = conn.execute(select(*_LINK_COLUMNS).where(*_stale(key, dataset_id, keep)))
            return [_stored(row) for row in rows]

    def refused_links(
        self, scope: Scope, limit: int, before: int | None = None
    ) -> tuple[list[RefusedLink], int | None]:
        r = t.profile_refused_links.c
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return [], None
            query = select(t.profile_refused_links).where(r.scope_key == key)
            if before is not None:
                query = query.where(r.seq < before)
            rows = conn.execute(query.order_by(r.seq.desc()).limit(limit + 1)).mappings().all()
        links = [_refused(row) for row in rows[:limit]]
        return links, (int(rows[limit - 1]["seq"]) if len(rows) > limit else None)

    def cluster_history(self, scope: Scope, cluster_id: int) -> list[ClusterMerge]:
        h = t.profile_cluster_history.c
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return []
            query = (
                select(h.cluster_from, h.cluster_to, h.at_ms)
                .where(h.scope_key == key, or_(h.cluster_to == cluster_id, h.cluster_from == cluster_id))
                .order_by(h.seq.desc())
            )
            return [ClusterMerge(int(a), int(b), int(at)) for a, b, at in conn.execute(query)]

    # --- writes ---
    def apply_graph(self, scope: Scope, update: GraphUpdate, at_ms: int) -> None:
        key = self._write_key(scope)
        with self._write() as conn:
            self._write_graph(conn, key, update, at_ms)

    def _write_graph(self, conn: Connection, key: int, update: GraphUpdate, at_ms: int) -> None:
        merges = _final_targets(update.merged)
        if merges:
            conn.execute(_MOVE_CLUSTER, [{"k": key, "c_from": a, "c_to": b} for a, b in merges])
            self._fold_memberships(conn, key, merges)
            conn.execute(
                t.profile_cluster_history.insert(),
                [{"scope_key": key, "cluster_from": a, "cluster_to": b, "at_ms": at_ms} for a, b in merges],
            )
        self._assign(conn, key, update.assignments, at_ms)
        if update.refused:
            conn.execute(
                t.profile_refused_links.insert(),
                [{"scope_key": key, **_refused_row(link)} for link in update.refused],
            )

    def _assign(
        self, conn: Connection, key: int, assignments: Sequence[tuple[str, str, int]], at_ms: int
    ) -> None:
        latest = {(ns, ident): cluster for ns, ident, cluster in assignments}
        rows = [(key, ns, ident, cluster, at_ms) for (ns, ident), cluster in latest.items()]
        self._executemany(conn, t.profile_identities, rows)

    def _write_links(
        self, conn: Connection, key: int, dataset_id: str, links: Sequence[IdentityLink], generation: int
    ) -> None:
        unique = dict.fromkeys(links)  # one statement may not update a row twice (PostgreSQL)
        rows = [
            (key, dataset_id, x.namespace, x.id, x.anchor_namespace, x.anchor_id, generation) for x in unique
        ]
        self._executemany(conn, t.profile_links, rows)

    def next_cluster_ids(self, count: int) -> int:
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        with self._write() as conn:
            last = int(conn.execute(NEXT_IDS, {"n": count}).scalar_one())
        return last - count + 1

    def sweep(
        self,
        scope: Scope,
        dataset_id: str,
        keep: int | None,
        split: GraphSplit,
        *,
        at_ms: int,
        expected_snapshot_id: int | None = None,
        drop: bool = False,
    ) -> None:
        key = self._write_key(scope)
        with self._write() as conn:
            if expected_snapshot_id is not None:  # first, as in project: a second projector waits here
                cursor = {"scope_key": key, "dataset_id": dataset_id, "snapshot_id": expected_snapshot_id}
                self._move_cursor(conn, {**cursor, "state": "", "updated_ms": at_ms}, expected_snapshot_id)
            conn.execute(delete(t.profile_links).where(*_stale(key, dataset_id, keep)))
            self._assign(conn, key, split.assignments, at_ms)
            for namespace, ids in key_chunks(split.removed):
                conn.execute(
                    delete(t.profile_identities).where(
                        _I.scope_key == key, _I.namespace == namespace, _I.id.in_(ids)
                    )
                )
            if drop:
                self._drop_dataset(conn, key, dataset_id)


def _stale(key: int, dataset_id: str, keep: int | None) -> list[Any]:
    conditions = [_L.scope_key == key, _L.dataset_id == dataset_id]
    return conditions if keep is None else [*conditions, _L.generation != keep]


def _stored(row: Any) -> StoredLink:
    dataset_id, namespace, ident, anchor_namespace, anchor_id, generation = row
    return StoredLink(
        dataset_id, IdentityLink(namespace, ident, anchor_namespace, anchor_id), int(generation)
    )


def _final_targets(merged: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each merged-away cluster with the cluster it ends in (a->b, b->c: a->c, b->c)."""
    target = dict(merged)
    resolved = []
    for source in target:
        end, seen = target[source], {source}
        while end in target and end not in seen:
            seen.add(end)
            end = target[end]
        resolved.append((source, end))
    return resolved


def _refused_row(link: RefusedLink) -> dict[str, Any]:
    return {
        "ns_a": link.ns_a,
        "id_a": link.id_a,
        "ns_b": link.ns_b,
        "id_b": link.id_b,
        "reason": link.reason,
        "at_ms": link.at_ms,
        "dataset_id": link.dataset_id,
    }


def _refused(row: Any) -> RefusedLink:
    return RefusedLink(
        row["ns_a"],
        row["id_a"],
        row["ns_b"],
        row["id_b"],
        row["reason"],
        int(row["at_ms"]),
        row["dataset_id"],
    )


__all__ = ["NEXT_IDS", "SqlGraph"]

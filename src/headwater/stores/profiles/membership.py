"""Segment membership on SQLAlchemy Core: the part of :class:`SqlProfileStore` that writes and reads
``profile_segment_members`` and ``profile_segment_transitions`` (ProfileStore's contract in base.py).

Every membership write first takes the row lock of ``profile_counters("transition_seq")`` and moves that
counter in the same transaction: writers run one at a time, and seq order is commit order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, delete, func, select, update

from headwater.stores.metadata.base import Scope
from headwater.stores.profiles import tables as t
from headwater.stores.profiles.base import EXITED, REALIZED, MembershipMoved, Transition, TransitionSignal

_CHUNK = 500
_M = t.profile_segment_members.c
_T = t.profile_segment_transitions.c
_COUNTER = t.profile_counters.c

# Takes the transition counter's row lock (held to commit): membership writers run one at a time.
_LOCK_TRANSITIONS = (
    update(t.profile_counters)
    .where(_COUNTER.name == "transition_seq")
    .values(value=_COUNTER.value)
    .returning(_COUNTER.value)
)
_MEMBERSHIPS_OF = select(_M.cluster_id, _M.segment_id, _M.status, _M.since_ms).where(
    _M.scope_key == bindparam("k"), _M.cluster_id.in_(bindparam("clusters", expanding=True))
)
#: Above this many evaluated clusters, apply_membership reads the segment's whole membership (one index
#: range) rather than the clusters in chunks.
_WHOLE_SEGMENT_ABOVE = 5_000


class SqlMembership:
    """Membership methods of the SQL store: a mixin of SqlProfileStore, which provides the transaction
    and key helpers."""

    read_engine: Engine
    _write: Callable[[], AbstractContextManager[Connection]]
    transitions_written: TransitionSignal

    def _write_key(self, scope: Scope) -> int:
        raise NotImplementedError

    def _read_key(self, conn: Connection, scope: Scope) -> int | None:
        raise NotImplementedError

    def _executemany(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _fold_memberships(self, conn: Connection, key: int, merges: Sequence[tuple[int, int]]) -> None:
        """Move merged-away clusters' memberships into their targets (see ``apply_graph``)."""
        held = _read_memberships(conn, key, {c for pair in merges for c in pair})
        if not any(a in held for a, _ in merges):
            return
        changed: dict[tuple[int, str], tuple[str, int]] = {}
        for source, target in merges:
            into = held.setdefault(target, {})
            for segment, membership in held.pop(source, {}).items():
                into[segment] = _fold(into.get(segment), membership)
                changed[target, segment] = into[segment]
        sources = sorted({a for a, _ in merges})
        for chunk in _chunks(sources):
            conn.execute(
                delete(t.profile_segment_members).where(_M.scope_key == key, _M.cluster_id.in_(chunk))
            )
        rows = [(key, seg, cluster, status, since) for (cluster, seg), (status, since) in changed.items()]
        self._executemany(conn, t.profile_segment_members, rows)

    # --- segment membership ---
    def apply_membership(
        self,
        scope: Scope,
        segment_id: str,
        evaluated: Sequence[int],
        qualifying: Collection[int],
        profiles: Mapping[int, dict[str, Any]],
        at_ms: int,
    ) -> list[Transition]:
        clusters = sorted(set(evaluated))
        entering = set(qualifying)
        stray = entering.difference(clusters)
        if stray:
            raise ValueError(f"qualifying clusters {sorted(stray)[:5]} were not evaluated")
        if not clusters:
            return []
        key = self._write_key(scope)
        with self._write() as conn:
            last = int(conn.execute(_LOCK_TRANSITIONS).scalar_one())
            realized = self._realized(conn, key, segment_id, clusters)
            changes = [c for c in clusters if (c in entering) != (c in realized)]
            missing = [c for c in changes if c not in profiles]
            if missing:
                raise MembershipMoved(
                    f"clusters {missing[:5]} change membership of segment {segment_id} but no profile was "
                    "given for them: read their memberships again and retry"
                )
            if not changes:
                return []
            made = [
                Transition(last + n, segment_id, c, REALIZED if c in entering else EXITED, at_ms, profiles[c])
                for n, c in enumerate(changes, start=1)
            ]
            self._write_transitions(conn, key, made)
        self.transitions_written.notify(scope, segment_id)  # durable now: wake this process's readers
        return made

    def _realized(self, conn: Connection, key: int, segment_id: str, clusters: Sequence[int]) -> set[int]:
        """Which of ``clusters`` are realized in the segment (inside the writing transaction)."""
        query = select(_M.cluster_id).where(
            _M.scope_key == key, _M.segment_id == segment_id, _M.status == REALIZED
        )
        if len(clusters) > _WHOLE_SEGMENT_ABOVE:
            wanted = set(clusters)
            return {int(c) for (c,) in conn.execute(query) if int(c) in wanted}
        found: set[int] = set()
        for chunk in _chunks(clusters):
            found.update(int(c) for (c,) in conn.execute(query.where(_M.cluster_id.in_(chunk))))
        return found

    def _write_transitions(self, conn: Connection, key: int, made: Sequence[Transition]) -> None:
        members = [(key, m.segment_id, m.cluster_id, m.status, m.at_ms) for m in made]
        self._executemany(conn, t.profile_segment_members, members)
        rows = [(m.seq, key, m.segment_id, m.cluster_id, m.status, m.at_ms, _dumps(m.profile)) for m in made]
        self._executemany(conn, t.profile_segment_transitions, rows)
        conn.execute(
            update(t.profile_counters).where(_COUNTER.name == "transition_seq").values(value=made[-1].seq)
        )

    def memberships_of(
        self, scope: Scope, cluster_ids: Sequence[int]
    ) -> dict[int, dict[str, tuple[str, int]]]:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return {}
            return _read_memberships(conn, key, set(cluster_ids))

    def segment_count(self, scope: Scope, segment_id: str) -> int:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return 0
            query = select(func.count()).where(
                _M.scope_key == key, _M.segment_id == segment_id, _M.status == REALIZED
            )
            return int(conn.execute(query).scalar_one())

    def segment_members(
        self,
        scope: Scope,
        segment_id: str,
        limit: int,
        after_cluster: int | None = None,
        status: str = REALIZED,
    ) -> list[int]:
        query = select(_M.cluster_id).where(_M.segment_id == segment_id, _M.status == status)
        if after_cluster is not None:
            query = query.where(_M.cluster_id > after_cluster)
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None or limit < 1:
                return []
            rows = conn.execute(query.where(_M.scope_key == key).order_by(_M.cluster_id).limit(limit))
            return [int(c) for (c,) in rows]

    def transitions(self, scope: Scope, segment_id: str, after_seq: int, limit: int) -> list[Transition]:
        query = select(_T.seq, _T.segment_id, _T.cluster_id, _T.status, _T.at_ms, _T.profile).where(
            _T.segment_id == segment_id, _T.seq > after_seq
        )
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None or limit < 1:
                return []
            rows = conn.execute(query.where(_T.scope_key == key).order_by(_T.seq).limit(limit)).all()
        return [
            Transition(int(q), seg, int(c), st, int(at), orjson.loads(p)) for q, seg, c, st, at, p in rows
        ]

    def last_transition_seq(self, scope: Scope, segment_id: str) -> int:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return 0
            query = select(func.max(_T.seq)).where(_T.scope_key == key, _T.segment_id == segment_id)
            return int(conn.execute(query).scalar() or 0)

    def drop_segment(self, scope: Scope, segment_id: str) -> None:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
        if key is None:
            return
        with self._write() as conn:
            for table in (t.profile_segment_members, t.profile_segment_transitions):
                conn.execute(delete(table).where(table.c.scope_key == key, table.c.segment_id == segment_id))


def _chunks(rows: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _read_memberships(
    conn: Connection, key: int, clusters: set[int]
) -> dict[int, dict[str, tuple[str, int]]]:
    found: dict[int, dict[str, tuple[str, int]]] = {}
    for chunk in _chunks(sorted(clusters)):
        for cluster, segment, status, since in conn.execute(_MEMBERSHIPS_OF, {"k": key, "clusters": chunk}):
            found.setdefault(int(cluster), {})[segment] = (status, int(since))
    return found


def _fold(kept: tuple[str, int] | None, moved: tuple[str, int]) -> tuple[str, int]:
    """One segment's membership of a merged cluster: realized if either is (since the earlier
    realization), else exited (since the later exit)."""
    if kept is None:
        return moved
    realized = [since for status, since in (kept, moved) if status == REALIZED]
    if realized:
        return REALIZED, min(realized)
    return EXITED, max(kept[1], moved[1])

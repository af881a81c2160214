"""The profile store implemented once on SQLAlchemy Core; subclasses name their dialect's upsert.

Writes are batched: one ``executemany`` per table and chunk inside one transaction (SQLite's sqlite3 and
psycopg's pipeline both send a batch without a round trip per row). Reads ask for many keys at once,
grouped by namespace so that every query is an index range over ``(scope_key, namespace, id)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, delete, or_, select, tuple_, update

from headwater.stores.metadata.base import Scope
from headwater.stores.profiles import tables as t
from headwater.stores.profiles.base import (
    UNCHECKED,
    EventCursor,
    ExperienceEvent,
    Fragment,
    GraphUpdate,
    IdentityKey,
    IdentityLink,
    Profile,
    ProfileStore,
    ProjectionCursor,
    StaleCursor,
    TransitionSignal,
    _Unchecked,
)
from headwater.stores.profiles.graph import SqlGraph
from headwater.stores.profiles.keys import chunks, dumps, key_filters
from headwater.stores.profiles.membership import SqlMembership

if TYPE_CHECKING:
    import pyarrow as pa

WriteTransaction = Callable[[], AbstractContextManager[Connection]]
InsertFactory = Callable[[Any], Any]  # the dialect's ``insert`` (it has ``on_conflict_do_*``)

_I = t.profile_identities.c
_F = t.profile_fragments.c
_E = t.profile_events.c
_S = t.profile_scopes.c
_C = t.profile_projection_cursors.c

_SCOPE_KEY = select(_S.scope_key).where(_S.org_id == bindparam("org"), _S.sandbox_id == bindparam("sandbox"))
# The profile of one identity in one statement: its cluster's members, each with its fragments (if any).
_member = t.profile_identities.alias("member")
_LOOKUP = (
    select(
        _member.c.cluster_id,
        _member.c.namespace,
        _member.c.id,
        _F.dataset_id,
        _F.ts_ms,
        _F.batch_id,
        _F.attributes,
    )
    .select_from(t.profile_identities)
    .join(_member, and_(_member.c.scope_key == _I.scope_key, _member.c.cluster_id == _I.cluster_id))
    .outerjoin(
        t.profile_fragments,
        and_(_F.scope_key == _member.c.scope_key, _F.namespace == _member.c.namespace, _F.id == _member.c.id),
    )
    .where(_I.scope_key == bindparam("k"), _I.namespace == bindparam("ns"), _I.id == bindparam("id"))
)
_FRAGMENTS_OF = select(_F.dataset_id, _F.namespace, _F.id, _F.ts_ms, _F.batch_id, _F.attributes).where(
    _F.scope_key == bindparam("k"),
    _F.namespace == bindparam("ns"),
    _F.id.in_(bindparam("ids", expanding=True)),
)
_CURSOR = select(_C.snapshot_id, _C.state, _C.updated_ms).where(
    _C.scope_key == bindparam("k"), _C.dataset_id == bindparam("ds")
)
#: Tables written in bulk (tuples in column order), each with its rule for keys stored already.
BULK_TABLES = (
    t.profile_identities,
    t.profile_fragments,
    t.profile_events,
    t.profile_segment_members,
    t.profile_segment_transitions,
    t.profile_links,
)
_SCOPED_TABLES = (
    t.profile_identities,
    t.profile_links,
    t.profile_refused_links,
    t.profile_cluster_history,
    t.profile_fragments,
    t.profile_events,
    t.profile_projection_cursors,
    t.profile_segment_members,
    t.profile_segment_transitions,
)


class SqlProfileStore(SqlMembership, SqlGraph, ProfileStore):
    """Shared implementation on ``engine`` (usually the metadata store's). ``write`` opens a write
    transaction (the metadata store's queue, on SQLite); ``read_engine`` runs single-statement reads."""

    #: The dialect's ``insert`` construct (``sqlalchemy.dialects.<name>.insert``).
    dialect_insert: InsertFactory
    #: The driver's paramstyles for named and positional parameters: hot statements (the lookup, bulk
    #: upserts) run on the driver directly, past SQLAlchemy's per-row parameter processing.
    named_paramstyle: str
    positional_paramstyle: str

    def __init__(self, engine: Engine, write: WriteTransaction, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        self._write = write
        self._keys: dict[Scope, int] = {}
        self._keys_lock = threading.Lock()
        self.transitions_written = TransitionSignal()
        self._build_statements()

    def _driver_dialect(self, paramstyle: str) -> Any:
        """This engine's dialect, rendering parameters in ``paramstyle`` (for SQL run on the driver)."""
        dialect_class: Any = type(self.engine.dialect)
        return dialect_class(paramstyle=paramstyle)

    def _build_statements(self) -> None:
        named = self._driver_dialect(self.named_paramstyle)
        self._lookup_sql = str(_LOOKUP.compile(dialect=named))
        ins = self.dialect_insert
        self._insert_scope = ins(t.profile_scopes).on_conflict_do_nothing(
            index_elements=["org_id", "sandbox_id"]
        )
        # Bulk writes take tuples in the table's column order.
        positional = self._driver_dialect(self.positional_paramstyle)
        self._bulk_sql = {}
        for table in BULK_TABLES:
            compiled = self.on_conflict(table, ins(table)).compile(dialect=positional)
            assert list(compiled.positiontup or ()) == [c.name for c in table.columns], table.name
            self._bulk_sql[table.name] = str(compiled)
        cursor = ins(t.profile_projection_cursors)
        self._insert_cursor = cursor.on_conflict_do_nothing(
            index_elements=["scope_key", "dataset_id"]
        ).returning(t.profile_projection_cursors.c.snapshot_id)
        self._upsert_cursor = cursor.on_conflict_do_update(
            index_elements=["scope_key", "dataset_id"],
            set_={
                "snapshot_id": cursor.excluded.snapshot_id,
                "state": cursor.excluded.state,
                "updated_ms": cursor.excluded.updated_ms,
            },
        )

    def on_conflict(self, table: Any, insert: Any) -> Any:
        """``insert`` into one of :data:`BULK_TABLES` with the table's rule for a key stored already:
        identities take the new cluster; fragments the new row when its ts_ms is at least the stored
        one; memberships the new status; links the new generation; events and transitions stay as they
        were."""
        new = insert.excluded
        if table is t.profile_identities:
            return insert.on_conflict_do_update(
                index_elements=["scope_key", "namespace", "id"], set_={"cluster_id": new.cluster_id}
            )
        if table is t.profile_fragments:
            return insert.on_conflict_do_update(
                index_elements=["scope_key", "namespace", "id", "dataset_id"],
                set_={"ts_ms": new.ts_ms, "batch_id": new.batch_id, "attributes": new.attributes},
                where=new.ts_ms >= t.profile_fragments.c.ts_ms,
            )
        if table is t.profile_segment_members:
            return insert.on_conflict_do_update(
                index_elements=["scope_key", "segment_id", "cluster_id"],
                set_={"status": new.status, "since_ms": new.since_ms},
            )
        if table is t.profile_links:
            return insert.on_conflict_do_update(
                index_elements=[c.name for c in t.profile_links.primary_key.columns],
                set_={"generation": new.generation},
            )
        if table is t.profile_segment_transitions:
            return insert.on_conflict_do_nothing(index_elements=["seq"])
        return insert.on_conflict_do_nothing(index_elements=["scope_key", "dataset_id", "event_id"])

    # --- scopes ---
    def _read_key(self, conn: Connection, scope: Scope) -> int | None:
        key = self._keys.get(scope)
        if key is None:
            found = conn.execute(_SCOPE_KEY, {"org": scope.org_id, "sandbox": scope.sandbox_id}).scalar()
            if found is not None:
                key = self._keys[scope] = int(found)
        return key

    def _write_key(self, scope: Scope) -> int:
        """The scope's key, created (and committed, in its own transaction) on its first write: a key is
        cached only once durable, so a rolled-back write never leaves a cached key another scope gets."""
        key = self._keys.get(scope)
        if key is not None:
            return key
        with self._keys_lock:
            with self.read_engine.connect() as conn:
                key = self._read_key(conn, scope)
            if key is None:
                with self._write() as conn:
                    conn.execute(self._insert_scope, {"org_id": scope.org_id, "sandbox_id": scope.sandbox_id})
                    found = conn.execute(_SCOPE_KEY, {"org": scope.org_id, "sandbox": scope.sandbox_id})
                    key = int(found.scalar_one())
                self._keys[scope] = key
            return key

    # --- fragments ---
    def put_fragments(self, scope: Scope, dataset_id: str, fragments: Sequence[Fragment]) -> None:
        if not fragments:
            return
        key = self._write_key(scope)
        rows = self._fragment_rows(key, dataset_id, fragments)
        with self._write() as conn:
            self._executemany(conn, t.profile_fragments, rows)

    @staticmethod
    def _fragment_rows(key: int, dataset_id: str, fragments: Sequence[Fragment]) -> list[tuple[Any, ...]]:
        """Rows to upsert (serialized before any transaction opens), one per key: the newest by
        ``ts_ms``, the later one on a tie (one statement may not update a row twice on PostgreSQL)."""
        latest: dict[IdentityKey, Fragment] = {}
        for fragment in fragments:
            _check_dataset(dataset_id, fragment.dataset_id)
            held = latest.get((fragment.namespace, fragment.id))
            if held is None or fragment.ts_ms >= held.ts_ms:
                latest[fragment.namespace, fragment.id] = fragment
        return [
            (key, f.namespace, f.id, dataset_id, f.ts_ms, f.batch_id, dumps(f.attributes))
            for f in latest.values()
        ]

    def _executemany(self, conn: Connection, table: Any, rows: list[tuple[Any, ...]]) -> None:
        """Write ``rows`` (tuples in ``table``'s column order) with its bulk statement, in chunks."""
        if not rows:
            return
        cursor = conn.connection.cursor()
        try:
            for chunk in chunks(rows, 10_000):
                cursor.executemany(self._bulk_sql[table.name], chunk)
        finally:
            cursor.close()

    def delete_fragments(self, scope: Scope, dataset_id: str, batch_ids: Sequence[str] | None = None) -> int:
        return self._delete_batches(scope, t.profile_fragments, dataset_id, batch_ids)

    def fragments_of(self, scope: Scope, keys: Sequence[IdentityKey]) -> list[Fragment]:
        found = [
            Fragment(ds, ns, ident, orjson.loads(attrs), int(ts), batch)
            for ds, ns, ident, ts, batch, attrs in self._rows_of_keys(scope, _FRAGMENTS_OF, keys)
        ]
        return sorted(found, key=_fragment_order)

    # --- experience events ---
    def put_events(self, scope: Scope, dataset_id: str, events: Sequence[ExperienceEvent]) -> None:
        if not events:
            return
        key = self._write_key(scope)
        rows = self._event_rows(key, dataset_id, events)
        with self._write() as conn:
            self._write_events(conn, rows)

    @staticmethod
    def _event_rows(key: int, dataset_id: str, events: Sequence[ExperienceEvent]) -> list[tuple[Any, ...]]:
        for e in events:
            _check_dataset(dataset_id, e.dataset_id)
        return [
            (key, dataset_id, e.event_id, e.namespace, e.id, e.ts_ms, e.batch_id, dumps(e.body))
            for e in events
        ]

    def _write_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        self._executemany(conn, t.profile_events, rows)

    def delete_events(self, scope: Scope, dataset_id: str, batch_ids: Sequence[str] | None = None) -> int:
        return self._delete_batches(scope, t.profile_events, dataset_id, batch_ids)

    def events_of(
        self, scope: Scope, keys: Sequence[IdentityKey], limit: int, after: EventCursor | None = None
    ) -> tuple[list[ExperienceEvent], EventCursor | None]:
        conditions = list(key_filters(_E.namespace, _E.id, keys))
        if not conditions or limit < 1:
            return [], None
        order = (_E.ts_ms, _E.event_id, _E.dataset_id)
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return [], None
            query = select(t.profile_events).where(_E.scope_key == key, or_(*conditions))
            if after is not None:
                query = query.where(tuple_(*order) < tuple_(after.ts_ms, after.event_id, after.dataset_id))
            query = query.order_by(*(c.desc() for c in order)).limit(limit + 1)
            rows = conn.execute(query).mappings().all()
        events = [_event(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return events, None
        last = events[-1]
        return events, EventCursor(last.ts_ms, last.event_id, last.dataset_id)

    # --- projection ---
    def project(
        self,
        scope: Scope,
        dataset_id: str,
        snapshot_id: int,
        *,
        at_ms: int,
        fragments: Sequence[Fragment] = (),
        events: Sequence[ExperienceEvent] = (),
        graph: GraphUpdate | None = None,
        links: Sequence[IdentityLink] = (),
        delete_batch_ids: Sequence[str] = (),
        state: str = "",
        expected_snapshot_id: int | _Unchecked | None = UNCHECKED,
    ) -> None:
        key = self._write_key(scope)
        fragment_rows = self._fragment_rows(key, dataset_id, fragments)
        event_rows = self._event_rows(key, dataset_id, events)
        cursor = {"scope_key": key, "dataset_id": dataset_id, "snapshot_id": snapshot_id}
        cursor.update(state=state, updated_ms=at_ms)
        with self._write() as conn:
            # The cursor first: a second projector of the dataset waits here (PostgreSQL's row lock) and
            # then finds the cursor moved, before it has written anything.
            self._move_cursor(conn, cursor, expected_snapshot_id)
            if delete_batch_ids:
                for table in (t.profile_fragments, t.profile_events):
                    conn.execute(_batch_delete(table, key, dataset_id, delete_batch_ids))
            if graph is not None:
                self._write_graph(conn, key, graph, at_ms)
            self._write_links(conn, key, dataset_id, links, snapshot_id)
            self._executemany(conn, t.profile_fragments, fragment_rows)
            self._write_events(conn, event_rows)

    def _move_cursor(self, conn: Connection, row: dict[str, Any], expected: int | _Unchecked | None) -> None:
        if isinstance(expected, _Unchecked):
            conn.execute(self._upsert_cursor, row)
            return
        if expected is None:
            # A concurrent first projection waits for this one's commit, then inserts nothing.
            if conn.execute(self._insert_cursor, row).first() is None:
                raise StaleCursor(f"dataset {row['dataset_id']} has a projection cursor already")
            return
        moved = conn.execute(
            update(t.profile_projection_cursors)
            .where(
                _C.scope_key == row["scope_key"],
                _C.dataset_id == row["dataset_id"],
                _C.snapshot_id == expected,
            )
            .values(snapshot_id=row["snapshot_id"], state=row["state"], updated_ms=row["updated_ms"])
        )
        if moved.rowcount != 1:
            raise StaleCursor(
                f"dataset {row['dataset_id']}'s projection cursor is not at snapshot {expected}"
            )

    def cursor(self, scope: Scope, dataset_id: str) -> ProjectionCursor | None:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return None
            row = conn.execute(_CURSOR, {"k": key, "ds": dataset_id}).first()
        return ProjectionCursor(int(row[0]), row[1], int(row[2])) if row else None

    # --- lookup ---
    def lookup(self, scope: Scope, key: IdentityKey) -> Profile | None:
        with self.read_engine.connect() as conn:
            scope_key = self._read_key(conn, scope)
            if scope_key is None:
                return None
            # The hot path: the driver's own execute (SQLAlchemy's costs several times SQLite's query).
            driver = conn.connection.driver_connection
            assert driver is not None
            params = {"k": scope_key, "ns": key[0], "id": key[1]}
            rows = driver.execute(self._lookup_sql, params).fetchall()
        if not rows:
            return None
        members = sorted({(ns, ident) for _, ns, ident, *_ in rows})
        fragments = [
            Fragment(ds, ns, ident, orjson.loads(attrs), int(ts), batch)
            for _, ns, ident, ds, ts, batch, attrs in rows
            if ds is not None
        ]
        return Profile(int(rows[0][0]), members, sorted(fragments, key=_fragment_order))

    # --- bulk reads ---
    def iter_fragments(self, scope: Scope, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        query = (
            select(_I.cluster_id, _F.dataset_id, _F.namespace, _F.id, _F.ts_ms, _F.attributes)
            .select_from(t.profile_fragments)
            .outerjoin(
                t.profile_identities,
                and_(_I.scope_key == _F.scope_key, _I.namespace == _F.namespace, _I.id == _F.id),
            )
        )
        schema = pa.schema(
            [
                ("cluster_id", pa.int64()),
                ("dataset_id", pa.string()),
                ("namespace", pa.string()),
                ("id", pa.string()),
                ("ts_ms", pa.int64()),
                ("attributes", pa.string()),
            ]
        )
        yield from self._iter_batches(scope, query, _F.scope_key, schema, batch_rows)

    def iter_events(self, scope: Scope, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        query = (
            select(_I.cluster_id, _E.dataset_id, _E.namespace, _E.id, _E.ts_ms, _E.event_id, _E.body)
            .select_from(t.profile_events)
            .outerjoin(
                t.profile_identities,
                and_(_I.scope_key == _E.scope_key, _I.namespace == _E.namespace, _I.id == _E.id),
            )
        )
        schema = pa.schema(
            [
                ("cluster_id", pa.int64()),
                ("dataset_id", pa.string()),
                ("namespace", pa.string()),
                ("id", pa.string()),
                ("ts_ms", pa.int64()),
                ("event_id", pa.string()),
                ("body", pa.string()),
            ]
        )
        yield from self._iter_batches(scope, query, _E.scope_key, schema, batch_rows)

    def _iter_batches(
        self, scope: Scope, query: Any, scope_col: Any, schema: pa.Schema, batch_rows: int
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``query``'s rows of the scope as Arrow batches (a server-side cursor on PostgreSQL):
        rows are transposed to columns, never turned into a dict each."""
        import pyarrow as pa

        # Not the autocommit engine: a server-side cursor lives in a transaction.
        with self.engine.connect() as conn:
            key = self._read_key(conn, scope)
            if key is None:
                return
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                query.where(scope_col == key)
            )
            for rows in result.partitions(batch_rows):
                columns = list(zip(*rows, strict=True))
                arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    # --- life cycle ---
    def drop_dataset(self, scope: Scope, dataset_id: str) -> None:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
        if key is None:
            return
        with self._write() as conn:
            self._drop_dataset(conn, key, dataset_id)

    def _drop_dataset(self, conn: Connection, key: int, dataset_id: str) -> None:
        for table in (t.profile_fragments, t.profile_events, t.profile_projection_cursors):
            conn.execute(delete(table).where(table.c.scope_key == key, table.c.dataset_id == dataset_id))

    def drop_sandbox(self, scope: Scope) -> None:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
        if key is None:
            return
        with self._write() as conn:
            for table in _SCOPED_TABLES:
                conn.execute(delete(table).where(table.c.scope_key == key))

    def _delete_batches(
        self, scope: Scope, table: Any, dataset_id: str, batch_ids: Sequence[str] | None
    ) -> int:
        with self.read_engine.connect() as conn:
            key = self._read_key(conn, scope)
        if key is None or (batch_ids is not None and not batch_ids):
            return 0
        with self._write() as conn:
            return int(conn.execute(_batch_delete(table, key, dataset_id, batch_ids)).rowcount)


def _batch_delete(table: Any, key: int, dataset_id: str, batch_ids: Sequence[str] | None) -> Any:
    stmt = delete(table).where(table.c.scope_key == key, table.c.dataset_id == dataset_id)
    return stmt if batch_ids is None else stmt.where(table.c.batch_id.in_(list(batch_ids)))


def _check_dataset(expected: str, found: str) -> None:
    if found != expected:
        raise ValueError(f"a row of dataset {found!r} was given to write dataset {expected!r}")


def _fragment_order(f: Fragment) -> tuple[int, str, str, str]:
    return (f.ts_ms, f.dataset_id, f.namespace, f.id)


def _event(row: Any) -> ExperienceEvent:
    return ExperienceEvent(
        dataset_id=row["dataset_id"],
        namespace=row["namespace"],
        id=row["id"],
        ts_ms=int(row["ts_ms"]),
        event_id=row["event_id"],
        batch_id=row["batch_id"],
        body=orjson.loads(row["body"]),
    )

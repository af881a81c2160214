"""The metadata store implemented once on SQLAlchemy Core; subclasses configure the engine."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from headwater.stores.metadata import tables as t
from headwater.stores.metadata import unavailable
from headwater.stores.metadata.base import (
    AUDIT_FILTERS,
    AlreadyExists,
    ApiClient,
    AuditEvent,
    ConsoleSession,
    MetadataStore,
    MissingReference,
    OrderColumn,
    Org,
    Page,
    QueuedRun,
    Resource,
    Sandbox,
    Scope,
    StaleWrite,
    StillReferenced,
)
from headwater.stores.metadata.sqlpartitions import SqlPartitions

_ORDER_COLUMNS = {
    "createdAt": t.resources.c.created_at,
    "updatedAt": t.resources.c.updated_at,
    "name": t.resources.c.name,
    "id": t.resources.c.id,
}


_R = t.resources.c
_SCOPE = and_(
    _R.kind == bindparam("p_kind"), _R.org_id == bindparam("p_org"), _R.sandbox_id == bindparam("p_sandbox")
)
# Hot statements are built once: constructing SQLAlchemy expressions costs more than SQLite's lookup.
_GET_BY_ID = select(t.resources).where(_SCOPE, _R.id == bindparam("p_ident"))
_GET_BY_ALT = select(t.resources).where(_SCOPE, _R.alt_id == bindparam("p_ident"))
_INSERT = insert(t.resources)
_UPDATE = (
    update(t.resources)
    .where(_SCOPE, _R.id == bindparam("p_ident"), _R.etag == bindparam("p_expected"))
    .values(
        doc=bindparam("p_doc"),
        name=bindparam("p_name"),
        alt_id=bindparam("p_alt_id"),
        etag=bindparam("p_etag"),
        updated_at=bindparam("p_updated_at"),
    )
)
_DELETE = delete(t.resources).where(_SCOPE, _R.id == bindparam("p_ident"))
_F = t.resource_refs.c
_REFS_FROM = delete(t.resource_refs).where(
    _F.org_id == bindparam("p_org"),
    _F.sandbox_id == bindparam("p_sandbox"),
    _F.from_kind == bindparam("p_kind"),
    _F.from_id == bindparam("p_ident"),
)
_REFERRERS = (
    select(_F.from_kind, _F.from_id)
    .where(_F.org_id == bindparam("p_org"), _F.sandbox_id == bindparam("p_sandbox"))
    .where(_F.to_kind == bindparam("p_kind"), _F.to_id == bindparam("p_ident"))
    .order_by(_F.from_kind, _F.from_id)
)
_TARGET_EXISTS = select(_R.seq).where(_SCOPE, _R.id == bindparam("p_ident")).with_for_update(read=True)
_COUNT = select(func.count()).select_from(t.resources).where(_SCOPE)
_LISTS = {
    (name, desc): select(t.resources)
    .where(_SCOPE)
    .order_by(*((col.desc(), _R.seq.desc()) if desc else (col.asc(), _R.seq.asc())))
    .offset(bindparam("p_offset"))
    .limit(bindparam("p_limit"))
    for name, col in _ORDER_COLUMNS.items()
    for desc in (False, True)
}


def _scope_params(kind: str, scope: Scope) -> dict[str, str]:
    return {"p_kind": kind, "p_org": scope.org_id, "p_sandbox": scope.sandbox_id}


def _queued(row: Any) -> QueuedRun:
    return QueuedRun(
        run_id=row["run_id"],
        scope=Scope(row["org_id"], row["sandbox_id"]),
        flow_id=row["flow_id"],
        scheduled_for=row["scheduled_for"],
        enqueued_at=row["enqueued_at"],
        state=row["state"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        attempts=row["attempts"],
    )


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqlMetadataStore(SqlPartitions, MetadataStore):
    """Shared implementation. ``engine`` must be created with :func:`json_dumps` / ``orjson.loads``."""

    def __init__(self, engine: Engine) -> None:
        unavailable.install(engine)
        self.engine = engine
        self.read_engine = engine  # subclasses may use a cheaper mode for single-statement reads

    def close(self) -> None:
        self.engine.dispose()

    # --- tenancy ---
    def create_org(self, org: Org) -> None:
        self._insert_unique(
            t.orgs, id=org.id, name=org.name, tenant_id=org.tenant_id, created_at=org.created_at
        )

    def get_org(self, org_id: str) -> Org | None:
        with self.read_engine.connect() as conn:
            row = conn.execute(select(t.orgs).where(t.orgs.c.id == org_id)).mappings().first()
        return Org(**row) if row else None

    def list_orgs(self) -> list[Org]:
        with self.read_engine.connect() as conn:
            rows = conn.execute(select(t.orgs).order_by(t.orgs.c.created_at)).mappings().all()
        return [Org(**r) for r in rows]

    def create_sandbox(self, sandbox: Sandbox) -> None:
        self._insert_unique(t.sandboxes, **sandbox.__dict__)

    def get_sandbox(self, org_id: str, name: str) -> Sandbox | None:
        query = select(t.sandboxes).where(t.sandboxes.c.org_id == org_id, t.sandboxes.c.name == name)
        with self.read_engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Sandbox(**row) if row else None

    def list_sandboxes(self, org_id: str) -> list[Sandbox]:
        query = select(t.sandboxes).where(t.sandboxes.c.org_id == org_id).order_by(t.sandboxes.c.created_at)
        with self.read_engine.connect() as conn:
            return [Sandbox(**r) for r in conn.execute(query).mappings().all()]

    def create_client(self, client: ApiClient) -> None:
        self._insert_unique(t.api_clients, **client.__dict__)

    def get_client(self, client_id: str) -> ApiClient | None:
        with self.read_engine.connect() as conn:
            query = select(t.api_clients).where(t.api_clients.c.client_id == client_id)
            row = conn.execute(query).mappings().first()
        return ApiClient(**row) if row else None

    def list_clients(self, org_id: str) -> list[ApiClient]:
        query = (
            select(t.api_clients)
            .where(t.api_clients.c.org_id == org_id)
            .order_by(t.api_clients.c.created_at, t.api_clients.c.client_id)
        )
        with self.read_engine.connect() as conn:
            return [ApiClient(**r) for r in conn.execute(query).mappings().all()]

    def set_client_enabled(self, client_id: str, enabled: bool) -> bool:
        stmt = update(t.api_clients).where(t.api_clients.c.client_id == client_id).values(enabled=enabled)
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    # --- the audit log ---
    def append_audit(self, events: list[AuditEvent]) -> None:
        if not events:
            return
        with self._write() as conn:
            conn.execute(insert(t.audit_events), [e.__dict__ for e in events])

    def list_audit(
        self, org_id: str, filters: list[tuple[str, str, Any]], limit: int, offset: int = 0
    ) -> tuple[list[AuditEvent], int]:
        c = t.audit_events.c
        conditions = [c.org_id == org_id]
        for field_name, op, value in filters:
            if op not in AUDIT_FILTERS.get(field_name, ()):
                raise ValueError(f"cannot filter the audit log on {field_name} {op}")
            column = c[field_name]
            conditions.append(
                {
                    "==": column == value,
                    ">=": column >= value,
                    "<=": column <= value,
                    ">": column > value,
                    "<": column < value,
                }[op]
            )
        query = select(t.audit_events).where(*conditions).order_by(c.seq.desc()).limit(limit).offset(offset)
        count = select(func.count()).select_from(t.audit_events).where(*conditions)
        with self.read_engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            total = int(conn.execute(count).scalar_one())
        return [AuditEvent(**{k: v for k, v in r.items() if k != "seq"}) for r in rows], total

    # --- console sessions ---
    def create_session(self, session: ConsoleSession) -> None:
        c = t.console_sessions.c
        # Expired sessions go a few at a time, with the writes that make new ones.
        stale = select(c.id).where(c.expires_at < session.created_at).limit(20).scalar_subquery()
        with self._write() as conn:
            conn.execute(delete(t.console_sessions).where(c.id.in_(stale)))
            conn.execute(insert(t.console_sessions).values(**session.__dict__))

    def get_session(self, session_id: str) -> ConsoleSession | None:
        query = select(t.console_sessions).where(t.console_sessions.c.id == session_id)
        with self.read_engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return ConsoleSession(**row) if row else None

    def delete_session(self, session_id: str) -> bool:
        stmt = delete(t.console_sessions).where(t.console_sessions.c.id == session_id)
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def delete_user_sessions(self, org_id: str, user_id: str) -> int:
        c = t.console_sessions.c
        stmt = delete(t.console_sessions).where(c.org_id == org_id, c.user_id == user_id)
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount)

    # --- upgrade marks ---
    def has_mark(self, name: str) -> bool:
        query = select(t.upgrade_marks.c.name).where(t.upgrade_marks.c.name == name)
        with self.read_engine.connect() as conn:
            return conn.execute(query).first() is not None

    def set_mark(self, name: str) -> None:
        with contextlib.suppress(AlreadyExists):
            self._insert_unique(t.upgrade_marks, name=name, done_at=int(time.time() * 1000))

    def _insert_unique(self, table: Any, **values: Any) -> None:
        try:
            with self._write() as conn:
                conn.execute(insert(table).values(**values))
        except IntegrityError as exc:
            raise AlreadyExists(str(exc.orig)) from exc

    # --- resources ---
    def insert(self, resource: Resource) -> None:
        row = self._row(resource)
        try:
            with self._write() as conn:
                conn.execute(_INSERT, row)
                self._write_refs(conn, resource)
        except IntegrityError as exc:
            raise AlreadyExists(str(exc.orig)) from exc

    def get(self, kind: str, scope: Scope, ident: str) -> Resource | None:
        return self._get_one(_GET_BY_ID, kind, scope, ident)

    def get_by_alt_id(self, kind: str, scope: Scope, alt_id: str) -> Resource | None:
        return self._get_one(_GET_BY_ALT, kind, scope, alt_id)

    def get_many(self, kind: str, scope: Scope, idents: Iterable[str]) -> dict[str, Resource]:
        wanted = list(dict.fromkeys(idents))
        if not wanted:
            return {}
        query = select(t.resources).where(_SCOPE, t.resources.c.id.in_(wanted))
        with self.read_engine.connect() as conn:
            rows = conn.execute(query, _scope_params(kind, scope)).mappings()
            return {r["id"]: self._resource(r) for r in rows}

    def update(self, resource: Resource, expected_etag: str) -> None:
        row = self._row(resource)
        params = {
            **_scope_params(resource.kind, resource.scope),
            "p_ident": resource.id,
            "p_expected": expected_etag,
            "p_doc": row["doc"],
            "p_name": row["name"],
            "p_alt_id": row["alt_id"],
            "p_etag": row["etag"],
            "p_updated_at": row["updated_at"],
        }
        with self._write() as conn:
            if conn.execute(_UPDATE, params).rowcount != 1:
                raise StaleWrite(resource.id)
            conn.execute(_REFS_FROM, {**_scope_params(resource.kind, resource.scope), "p_ident": resource.id})
            self._write_refs(conn, resource)

    def delete(self, kind: str, scope: Scope, ident: str) -> bool:
        # Delete first, then look for referrers: the delete takes the row (PostgreSQL) or the database
        # (SQLite) write lock, so a concurrent writer that references this row either committed before
        # (and is seen here) or finds the row gone (see _write_refs). Raising rolls the delete back.
        params = {**_scope_params(kind, scope), "p_ident": ident}
        with self._write() as conn:
            if conn.execute(_DELETE, params).rowcount != 1:
                return False
            referrers = self._referrers(conn, scope, kind, ident)
            if referrers:
                raise StillReferenced(referrers)
            conn.execute(_REFS_FROM, params)
            return True

    def referrers(self, scope: Scope, kind: str, ident: str) -> list[tuple[str, str]]:
        with self.read_engine.connect() as conn:
            return self._referrers(conn, scope, kind, ident)

    def list(
        self,
        kind: str,
        scope: Scope,
        *,
        order: OrderColumn = "createdAt",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
        count: bool = False,
    ) -> Page:
        params = {**_scope_params(kind, scope), "p_offset": offset, "p_limit": -1 if limit is None else limit}
        if limit is None and self.engine.dialect.name != "sqlite":
            params["p_limit"] = None
        with self.read_engine.connect() as conn:
            items = [self._resource(r) for r in conn.execute(_LISTS[order, descending], params).mappings()]
            total = conn.execute(_COUNT, _scope_params(kind, scope)).scalar_one() if count else None
        return Page(items=items, total=total)

    def scan_kind(self, kind: str) -> Iterator[Resource]:
        query = select(t.resources).where(t.resources.c.kind == kind).order_by(t.resources.c.seq)
        with self.read_engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        for row in rows:
            yield self._resource(row)

    # --- the run queue ---
    def enqueue_run(self, run: QueuedRun) -> bool:
        values = {
            "run_id": run.run_id,
            "org_id": run.scope.org_id,
            "sandbox_id": run.scope.sandbox_id,
            "flow_id": run.flow_id,
            "scheduled_for": run.scheduled_for,
            "enqueued_at": run.enqueued_at,
            "state": "queued",
            "attempts": 0,
        }
        try:
            with self._write() as conn:
                conn.execute(insert(t.run_queue).values(**values))
        except IntegrityError:
            return False
        return True

    def claim_run(
        self, worker: str, lease_ms: int, now_ms: int, run_id: str | None = None
    ) -> QueuedRun | None:
        q = t.run_queue.c
        sibling = t.run_queue.alias("sibling").c
        claimable = (q.state == "queued") | ((q.state == "running") & (q.lease_expires_at < now_ms))
        if run_id is not None:
            claimable = claimable & (q.run_id == run_id)
        # Runs of one flow execute one after another: each reads from where the previous one committed.
        busy = (
            select(sibling.run_id)
            .where(sibling.flow_id == q.flow_id, sibling.run_id != q.run_id, sibling.state == "running")
            .where(sibling.lease_expires_at >= now_ms)
            .exists()
        )
        candidates = select(t.run_queue).where(claimable, ~busy).order_by(q.enqueued_at).limit(8)
        with self._write() as conn:
            for row in conn.execute(candidates).mappings().all():
                self._lock_flow(conn, row["flow_id"])
                still_busy = select(sibling.run_id).where(
                    sibling.flow_id == row["flow_id"],
                    sibling.run_id != row["run_id"],
                    sibling.state == "running",
                    sibling.lease_expires_at >= now_ms,
                )
                if conn.execute(still_busy.limit(1)).first() is not None:
                    continue
                same_lease = (
                    q.lease_expires_at.is_(None)
                    if row["lease_expires_at"] is None
                    else q.lease_expires_at == row["lease_expires_at"]
                )
                taken = conn.execute(
                    update(t.run_queue)
                    .where(q.run_id == row["run_id"], q.state == row["state"], same_lease)
                    .values(
                        state="running",
                        lease_owner=worker,
                        lease_expires_at=now_ms + lease_ms,
                        attempts=q.attempts + 1,
                    )
                )
                if taken.rowcount == 1:
                    return _queued(
                        {
                            **row,
                            "state": "running",
                            "lease_owner": worker,
                            "lease_expires_at": now_ms + lease_ms,
                            "attempts": row["attempts"] + 1,
                        }
                    )
        return None

    def _lock_flow(self, conn: Connection, flow_id: str) -> None:
        """Serialize claims of one flow's runs within the claiming transaction (databases with several
        concurrent writers override this; SQLite has one writer)."""

    def renew_lease(self, run_id: str, worker: str, until_ms: int) -> bool:
        q = t.run_queue.c
        stmt = (
            update(t.run_queue)
            .where(q.run_id == run_id, q.lease_owner == worker, q.state == "running")
            .values(lease_expires_at=until_ms)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def finish_run(self, run_id: str, worker: str) -> bool:
        q = t.run_queue.c
        stmt = (
            update(t.run_queue)
            .where(q.run_id == run_id, q.lease_owner == worker, q.state == "running")
            .values(state="done", lease_expires_at=None)
        )
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    def last_slot(self, flow_id: str) -> int | None:
        q = t.run_queue.c
        with self.read_engine.connect() as conn:
            value = conn.execute(select(func.max(q.scheduled_for)).where(q.flow_id == flow_id)).scalar()
        return int(value) if value is not None else None

    def write_transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction queued like the store's own: for another store that shares this
        database (the profile store), so that its writers and these wait in one line."""
        return self._write()

    # --- helpers ---
    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction. Databases with a single writer override this to queue writers."""
        return self.engine.begin()

    def _get_one(self, statement: Any, kind: str, scope: Scope, ident: str) -> Resource | None:
        with self.read_engine.connect() as conn:
            row = conn.execute(statement, {**_scope_params(kind, scope), "p_ident": ident}).mappings().first()
        return self._resource(row) if row else None

    @staticmethod
    def _referrers(conn: Connection, scope: Scope, kind: str, ident: str) -> builtins.list[tuple[str, str]]:
        return [
            (r[0], r[1]) for r in conn.execute(_REFERRERS, {**_scope_params(kind, scope), "p_ident": ident})
        ]

    @staticmethod
    def _write_refs(conn: Connection, resource: Resource) -> None:
        """Record references after checking, under a share lock, that every target still exists."""
        pairs = sorted(set(resource.refs))
        for kind, ident in pairs:
            if (
                conn.execute(
                    _TARGET_EXISTS, {**_scope_params(kind, resource.scope), "p_ident": ident}
                ).first()
                is None
            ):
                raise MissingReference(kind, ident)
        if pairs:
            conn.execute(
                insert(t.resource_refs),
                [
                    {
                        "org_id": resource.scope.org_id,
                        "sandbox_id": resource.scope.sandbox_id,
                        "from_kind": resource.kind,
                        "from_id": resource.id,
                        "to_kind": k,
                        "to_id": i,
                    }
                    for k, i in pairs
                ],
            )

    @staticmethod
    def _row(resource: Resource) -> dict[str, Any]:
        return {
            "kind": resource.kind,
            "id": resource.id,
            "org_id": resource.scope.org_id,
            "sandbox_id": resource.scope.sandbox_id,
            "name": resource.name,
            "alt_id": resource.alt_id,
            "doc": resource.doc,
            "etag": resource.etag,
            "created_at": resource.created_at,
            "updated_at": resource.updated_at,
        }

    @staticmethod
    def _resource(row: Any) -> Resource:
        return Resource(
            kind=row["kind"],
            id=row["id"],
            scope=Scope(row["org_id"], row["sandbox_id"]),
            doc=row["doc"],
            etag=row["etag"],
            name=row["name"],
            alt_id=row["alt_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

"""The metadata store implemented once on SQLAlchemy Core; subclasses configure the engine."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from headwater.stores.metadata import tables as t
from headwater.stores.metadata.base import (
    AlreadyExists,
    ApiClient,
    MetadataStore,
    OrderColumn,
    Org,
    Page,
    Resource,
    Sandbox,
    Scope,
    StaleWrite,
    StillReferenced,
    MissingReference,
)

_ORDER_COLUMNS = {
    "createdAt": t.resources.c.created_at,
    "updatedAt": t.resources.c.updated_at,
    "name": t.resources.c.name,
    "id": t.resources.c.id,
}


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqlMetadataStore(MetadataStore):
    """Shared implementation. ``engine`` must be created with :func:`json_dumps` / ``orjson.loads``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    # --- tenancy ---
    def create_org(self, org: Org) -> None:
        self._insert_unique(
            t.orgs, id=org.id, name=org.name, tenant_id=org.tenant_id, created_at=org.created_at
        )

    def get_org(self, org_id: str) -> Org | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.orgs).where(t.orgs.c.id == org_id)).mappings().first()
        return Org(**row) if row else None

    def list_orgs(self) -> list[Org]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.orgs).order_by(t.orgs.c.created_at)).mappings().all()
        return [Org(**r) for r in rows]

    def create_sandbox(self, sandbox: Sandbox) -> None:
        self._insert_unique(t.sandboxes, **sandbox.__dict__)

    def get_sandbox(self, org_id: str, name: str) -> Sandbox | None:
        query = select(t.sandboxes).where(t.sandboxes.c.org_id == org_id, t.sandboxes.c.name == name)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return Sandbox(**row) if row else None

    def list_sandboxes(self, org_id: str) -> list[Sandbox]:
        query = select(t.sandboxes).where(t.sandboxes.c.org_id == org_id).order_by(t.sandboxes.c.created_at)
        with self.engine.connect() as conn:
            return [Sandbox(**r) for r in conn.execute(query).mappings().all()]

    def create_client(self, client: ApiClient) -> None:
        self._insert_unique(t.api_clients, **client.__dict__)

    def get_client(self, client_id: str) -> ApiClient | None:
        with self.engine.connect() as conn:
            query = select(t.api_clients).where(t.api_clients.c.client_id == client_id)
            row = conn.execute(query).mappings().first()
        return ApiClient(**row) if row else None

    def list_clients(self, org_id: str) -> list[ApiClient]:
        query = (
            select(t.api_clients)
            .where(t.api_clients.c.org_id == org_id)
            .order_by(t.api_clients.c.created_at, t.api_clients.c.client_id)
        )
        with self.engine.connect() as conn:
            return [ApiClient(**r) for r in conn.execute(query).mappings().all()]

    def set_client_enabled(self, client_id: str, enabled: bool) -> bool:
        stmt = update(t.api_clients).where(t.api_clients.c.client_id == client_id).values(enabled=enabled)
        with self.engine.begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def _insert_unique(self, table: Any, **values: Any) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(table).values(**values))
        except IntegrityError as exc:
            raise AlreadyExists(str(exc.orig)) from exc

    # --- resources ---
    def insert(self, resource: Resource) -> None:
        row = self._row(resource)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t.resources).values(**row))
                self._write_refs(conn, resource)
        except IntegrityError as exc:
            raise AlreadyExists(str(exc.orig)) from exc

    def get(self, kind: str, scope: Scope, ident: str) -> Resource | None:
        return self._get_one(kind, scope, t.resources.c.id == ident)

    def get_by_alt_id(self, kind: str, scope: Scope, alt_id: str) -> Resource | None:
        return self._get_one(kind, scope, t.resources.c.alt_id == alt_id)

    def get_many(self, kind: str, scope: Scope, idents: Iterable[str]) -> dict[str, Resource]:
        wanted = list(dict.fromkeys(idents))
        if not wanted:
            return {}
        query = select(t.resources).where(_in_scope(kind, scope), t.resources.c.id.in_(wanted))
        with self.engine.connect() as conn:
            return {r["id"]: self._resource(r) for r in conn.execute(query).mappings()}

    def update(self, resource: Resource, expected_etag: str) -> None:
        row = self._row(resource)
        stmt = (
            update(t.resources)
            .where(_in_scope(resource.kind, resource.scope), t.resources.c.id == resource.id)
            .where(t.resources.c.etag == expected_etag)
            .values(doc=row["doc"], name=row["name"], alt_id=row["alt_id"], etag=row["etag"],
                    updated_at=row["updated_at"])
        )
        with self.engine.begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                raise StaleWrite(resource.id)
            conn.execute(delete(t.resource_refs).where(*_refs_from(resource)))
            self._write_refs(conn, resource)

    def delete(self, kind: str, scope: Scope, ident: str) -> bool:
        # Delete first, then look for referrers: the delete takes the row (PostgreSQL) or the database
        # (SQLite) write lock, so a concurrent writer that references this row either committed before
        # (and is seen here) or finds the row gone (see _write_refs). Raising rolls the delete back.
        with self.engine.begin() as conn:
            gone = conn.execute(delete(t.resources).where(_in_scope(kind, scope), t.resources.c.id == ident))
            if gone.rowcount != 1:
                return False
            referrers = self._referrers(conn, scope, kind, ident)
            if referrers:
                raise StillReferenced(referrers)
            refs = t.resource_refs.c
            conn.execute(
                delete(t.resource_refs).where(
                    refs.org_id == scope.org_id, refs.sandbox_id == scope.sandbox_id,
                    refs.from_kind == kind, refs.from_id == ident,
                )
            )
            return True

    def referrers(self, scope: Scope, kind: str, ident: str) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
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
        column = _ORDER_COLUMNS[order]
        seq = t.resources.c.seq
        ordering = [column.desc(), seq.desc()] if descending else [column.asc(), seq.asc()]
        query = select(t.resources).where(_in_scope(kind, scope)).order_by(*ordering).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            items = [self._resource(r) for r in conn.execute(query).mappings()]
            total = None
            if count:
                total = conn.execute(
                    select(func.count()).select_from(t.resources).where(_in_scope(kind, scope))
                ).scalar_one()
        return Page(items=items, total=total)

    # --- helpers ---
    def _get_one(self, kind: str, scope: Scope, condition: Any) -> Resource | None:
        query = select(t.resources).where(_in_scope(kind, scope), condition)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return self._resource(row) if row else None

    @staticmethod
    def _referrers(conn: Connection, scope: Scope, kind: str, ident: str) -> list[tuple[str, str]]:
        refs = t.resource_refs.c
        query = (
            select(refs.from_kind, refs.from_id)
            .where(refs.org_id == scope.org_id, refs.sandbox_id == scope.sandbox_id)
            .where(refs.to_kind == kind, refs.to_id == ident)
            .order_by(refs.from_kind, refs.from_id)
        )
        return [(r[0], r[1]) for r in conn.execute(query)]

    @staticmethod
    def _write_refs(conn: Connection, resource: Resource) -> None:
        """Record references after checking, under a share lock, that every target still exists."""
        pairs = sorted(set(resource.refs))
        for kind, ident in pairs:
            query = (
                select(t.resources.c.seq)
                .where(_in_scope(kind, resource.scope), t.resources.c.id == ident)
                .with_for_update(read=True)
            )
            if conn.execute(query).first() is None:
                raise MissingReference(kind, ident)
        if pairs:
            conn.execute(
                insert(t.resource_refs),
                [
                    {
                        "org_id": resource.scope.org_id, "sandbox_id": resource.scope.sandbox_id,
                        "from_kind": resource.kind, "from_id": resource.id, "to_kind": k, "to_id": i,
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


@functools.lru_cache(maxsize=None)
def _scope_columns() -> tuple[Any, Any, Any]:
    c = t.resources.c
    return c.kind, c.org_id, c.sandbox_id


def _in_scope(kind: str, scope: Scope) -> Any:
    k, o, s = _scope_columns()
    return and_(k == kind, o == scope.org_id, s == scope.sandbox_id)


def _refs_from(resource: Resource) -> list[Any]:
    refs = t.resource_refs.c
    return [
        refs.org_id == resource.scope.org_id,
        refs.sandbox_id == resource.scope.sandbox_id,
        refs.from_kind == resource.kind,
        refs.from_id == resource.id,
    ]

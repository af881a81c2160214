"""What a wire session asks of the platform: who a login is (an access token, an organization, a
sandbox), the sandbox's tables, and its queries through :meth:`Queries.run` (the safe engine).

Every statement authenticates the login again (the token still valid, its client still enabled, the
sandbox still there: the authenticator's caches make that cheap), so a session does not outlive its
token. The calls block: sessions make them through :meth:`Backend.call`, on a small pool of threads
that also bounds how many queries run at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import pyarrow as pa

from headwater.errors import HeadwaterError
from headwater.pgwire import catalog
from headwater.pgwire.errors import (
    INVALID_AUTHORIZATION,
    INVALID_CATALOG_NAME,
    PgError,
    from_exception,
)
from headwater.pgwire.statements import VERSION
from headwater.services import access
from headwater.services.catalogsvc import TABLE_TAG

if TYPE_CHECKING:
    from headwater.edge.auth import Authenticator
    from headwater.lake.query import QueryResult
    from headwater.services.queries import Queries
    from headwater.services.tenancy import Actor

P = ParamSpec("P")
R = TypeVar("R")
ORG_SUFFIX = "@AdobeOrg"
DATABASE_SUFFIX = ":all"


@dataclass(frozen=True)
class Login:
    """A session's credentials: AEP's user (``{IMS org id}``), password (the token) and database."""

    token: str
    org_id: str
    sandbox: str


class Backend:
    def __init__(self, authenticator: Authenticator, queries: Queries, max_concurrent: int) -> None:
        self.authenticator, self.queries = authenticator, queries
        self.executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="pgwire")

    async def call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``function(*args)`` on the backend's threads; PgError for what the platform refused."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def authenticate(self, token: str, user: str, database: str) -> Login:
        """The login of a startup packet's user and database and the password message's token."""
        if not user:
            raise PgError(INVALID_AUTHORIZATION, "Connect as user '{IMS org id}@AdobeOrg'.", fatal=True)
        org_id = user if user.endswith(ORG_SUFFIX) else user + ORG_SUFFIX
        sandbox = database.removesuffix(DATABASE_SUFFIX)
        if not sandbox or ":" in sandbox:
            raise PgError(
                INVALID_CATALOG_NAME,
                f"database {database!r}: connect to '{{sandbox}}:all' (e.g. prod:all).",
                fatal=True,
            )
        login = Login(token, org_id, sandbox)
        self.actor(login)
        return login

    def actor(self, login: Login) -> Actor:
        try:
            actor = self.authenticator.token_actor(login.token, login.org_id, login.sandbox)
            # As the Query Service API: reading datasets through queries needs manage-queries.
            actor.require(access.MANAGE_QUERIES, "querying over the PostgreSQL endpoint")
            return actor
        except HeadwaterError as exc:
            raise from_exception(exc) from exc

    def run(self, login: Login, sql: str) -> QueryResult:
        """One SELECT over the login's sandbox, through the safe engine."""
        return self.queries.run(self.actor(login), sql)

    def catalog(self, login: Login, sql: str, database: str) -> QueryResult:
        """A query of PostgreSQL's catalog, answered by the emulated catalog of the login's sandbox
        (pgwire/catalog.py): its tables, with their columns as results describe them."""
        from headwater.lake.query import QueryError

        actor = self.actor(login)
        rewritten = catalog.rewrite(sql)
        columns = catalog.reads_columns(rewritten)  # else no table's metadata is loaded (\dt, \dn, \l)
        tables = self.queries.tables(actor)
        described: list[tuple[str, pa.Schema | None]] = []
        for name, source in tables.items():
            try:
                described.append((name, source.schema() if columns else None))
            except QueryError:  # a dataset with no data yet: a table without columns
                described.append((name, None))
        setup = catalog.setup(sql, rewritten, described, login.org_id, database, VERSION)
        try:
            return self.queries.run(actor, rewritten, setup=setup, tables=tables)  # loaded once
        except QueryError as exc:
            exc.detail = catalog.plain_names(exc.detail)
            raise

    def tables(self, login: Login) -> pa.Table:
        """Query Service's ``SHOW TABLES``: each dataset of the sandbox that has a table name."""
        actor = self.actor(login)
        rows: list[dict[str, str]] = []
        for resource in self.queries.store.list(self.queries.datasets.kind, actor.scope).items:
            for name in resource.doc.get("tags", {}).get(TABLE_TAG, [])[:1]:
                doc = resource.doc
                rows.append(
                    {
                        "name": str(name),
                        "type": "table",
                        "dataSetId": resource.id,
                        "dataSet": str(doc.get("name", "")),
                        "description": str(doc.get("description", "")),
                    }
                )
        rows.sort(key=lambda row: row["name"])
        schema = pa.schema(
            [(n, pa.string()) for n in ("name", "type", "dataSetId", "dataSet", "description")]
        )
        return pa.Table.from_pylist(rows, schema=schema)

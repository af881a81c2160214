"""Query Service queries (``/data/foundation/query/queries``), in Adobe Experience Platform's shapes.

``POST {"dbName", "sql", "name"?, "description"?}`` checks the request, stores the query ``SUBMITTED``
and signals this process's runner (runtime/queryjobs.py); runners of other processes find it at their
next poll. A runner claims the query (``IN_PROGRESS``, with a lease: a query whose runner died is claimed
again once the lease expires, at most :data:`MAX_ATTEMPTS` times), runs it through the safe query engine
(services/queries.py) and ends it ``SUCCESS`` (``rowCount``, ``elapsedTime``) or ``FAILED`` with the
engine's message in ``errors``. A claim is an update conditional on the etag: two runners never both run
one query. ``PATCH {"op": "cancel"}`` ends a ``SUBMITTED`` query ``CANCELLED`` at once and asks a running
one to stop before it writes anything.

What the SQL may be (services/querysql.py): one SELECT; ``CREATE TABLE name AS SELECT`` (a new dataset);
``INSERT INTO name SELECT`` (appended to a dataset). A SELECT's rows are kept for
``HEADWATER_QUERY_RESULTS_HOURS`` as an Arrow file beside the lake and read in pages at
``GET /queries/{id}/results`` (AEP answers no rows over REST for ad-hoc queries; docs/pending/qsapi.md
says why Headwater does). Errors in the request are 400s naming the field (``dbName``, ``sql``); errors
of the SQL itself end the query ``FAILED``, except what can be told before it runs: a CTAS whose table
exists, an INSERT INTO whose table does not or whose columns name no field of its schema.

Permissions (services/access.py): ``manage-queries`` to create, cancel, delete a query and read its rows
(they are the datasets' data); CTAS needs ``manage-schemas`` and ``manage-datasets`` as well (it creates
both), INSERT INTO ``manage-datasets``; reading queries needs ``read``.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

from headwater.errors import BadRequest, Conflict, HeadwaterError, NotFound
from headwater.lake.query import QueryError
from headwater.services import access
from headwater.services.catalogsvc import TABLE_TAG
from headwater.services.ids import now_ms
from headwater.services.pendingjobs import PendingJobs
from headwater.services.queryresults import ResultFiles
from headwater.services.querysql import CTAS, IDENTIFIER, INSERT, SELECT, Statement, StatementError, parse
from headwater.services.querytemplates import QueryTemplates, parameters, substitute
from headwater.services.querywrites import ctas_fields, insert_destinations
from headwater.services.resources import Built, Collection, require_object
from headwater.services.runs import QueuedSignal, iso
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource
from headwater.stores.objectfiles import object_files

if TYPE_CHECKING:
    from headwater.services.catalogsvc import DataSets
    from headwater.services.queries import Queries
    from headwater.services.schemas import SchemaRegistry
    from headwater.settings import Settings

KIND = "queryServiceQuery"
CODE = "QRY-1400-400"
BASE = "/data/foundation/query/queries"
SUBMITTED, IN_PROGRESS, SUCCESS, FAILED, CANCELLED = (
    "SUBMITTED",
    "IN_PROGRESS",
    "SUCCESS",
    "FAILED",
    "CANCELLED",
)
STATES = (SUBMITTED, IN_PROGRESS, SUCCESS, FAILED, CANCELLED)
ENDED = frozenset({SUCCESS, FAILED, CANCELLED})
LEASE_MS = 15 * 60 * 1000  # a query runs at most this long before another runner may take it over
MAX_ATTEMPTS = 3  # a query whose runner died this many times fails instead of being claimed again
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
MAX_SQL_CHARS = 1_000_000
DEFAULT_ROWS, MAX_ROWS_PAGE = 100, 10_000
ORDERS = ("created", "-created", "updated", "-updated")


def bad(field: str, message: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", code=CODE, report={"field": field})


class QueryJobs(Collection):
    kind = KIND
    label = "query"
    service = "QRY"

    def __init__(
        self,
        store: MetadataStore,
        settings: Settings,
        queries: Queries,
        datasets: DataSets,
        schemas: SchemaRegistry,
        templates: QueryTemplates,
    ) -> None:
        super().__init__(store)
        self.templates = templates
        self.result_files = ResultFiles(
            object_files(settings, "_queryresults", settings.warehouse_dir / "_queryresults")
        )
        self.settings = settings
        self.queries = queries
        self.datasets = datasets
        self.schemas = schemas
        self.created = QueuedSignal()  # a query was submitted in this process
        self.pending = PendingJobs(store, self.kind, lambda query: query.doc.get("state") not in ENDED)

    # --- the API ---
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        actor.require(access.MANAGE_QUERIES, "run queries")
        resource = super().create(actor, require_object(body), ident)
        self.pending.mark(resource)
        self.created.notify()
        return resource

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        db_name = body.get("dbName")
        if not isinstance(db_name, str) or not db_name.strip():
            raise bad("dbName", f'is required: the sandbox, as "{actor.sandbox.name}:all"')
        sandbox = db_name.strip().split(":", 1)[0]
        if sandbox != actor.sandbox.name or db_name.strip() not in (sandbox, f"{sandbox}:all"):
            raise bad(
                "dbName",
                f'must name this request\'s sandbox, as "{actor.sandbox.name}:all" (x-sandbox-name), '
                f"not {db_name!r}",
            )
        sql = self._sql(actor, body)
        for field in ("name", "description"):
            value = body.get(field)
            if value is not None and (not isinstance(value, str) or len(value) > 4096):
                raise bad(field, "must be a string of at most 4096 characters")
        try:
            statement = parse(sql)
        except StatementError as exc:
            raise bad("sql", str(exc)) from exc
        statement = self._parameters(actor, body, statement)
        target = self._check_statement(actor, statement)
        request = {
            "dbName": db_name,
            "sql": sql,
            "name": body.get("name"),
            "description": body.get("description"),
            "templateId": body.get("templateId"),
            "queryParameters": body.get("queryParameters"),
            "ctasParameters": body.get("ctasParameters"),
            "insertIntoParameters": body.get("insertIntoParameters"),
        }
        doc: dict[str, Any] = {
            "request": {k: v for k, v in request.items() if v is not None},
            "state": SUBMITTED,
            "statement": {"kind": statement.kind, "select": statement.select, "table": statement.table},
            "targetDatasetId": target,
            "clientId": actor.client_id,
            "userId": actor.user,
            "rowCount": 0,
            "errors": [],
            "elapsedTime": 0,
            "attempts": 0,
        }
        return Built(doc=doc)  # no indexed name: a query's name is free text (NUL included)

    def _parameters(self, actor: Actor, body: dict[str, Any], statement: Statement) -> Statement:
        """A SELECT with ``ctasParameters`` ``{"datasetName", "description"?}`` is a CTAS into a table
        named after the dataset; with ``insertIntoParameters`` ``{"datasetName"}``, an INSERT INTO the
        dataset of that name (or table name). aepp's ``createQuery`` sends them."""
        for field, kind in (("ctasParameters", CTAS), ("insertIntoParameters", INSERT)):
            value = body.get(field)
            if value is None:
                continue
            name = value.get("datasetName") if isinstance(value, dict) else None
            if not isinstance(name, str) or not name.strip() or "\x00" in name or len(name) > 1024:
                raise bad(f"{field}.datasetName", "is required: the name of the dataset to write")
            if statement.kind != SELECT:
                raise bad(field, f"goes with a SELECT; the sql is a {statement.kind} already")
            if value.get("targetSchemaTitle") is not None:
                raise bad(f"{field}.targetSchemaTitle", "is not supported: a CTAS creates its own schema")
            description = value.get("description")
            if description is not None and not isinstance(description, str):
                raise bad(f"{field}.description", "must be a string")
            table = self._dataset_table(actor, name) if kind == INSERT else None
            if table is None:
                table = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
                table = table if IDENTIFIER.match(table) else f"t_{table}"
                if not IDENTIFIER.match(table):
                    raise bad(f"{field}.datasetName", "must hold letters or digits")
            return Statement(kind, statement.select, table)
        return statement

    def _dataset_table(self, actor: Actor, name: str) -> str | None:
        """The table name of the dataset named ``name`` in the actor's sandbox, if there is one."""
        for resource in self.store.list(self.datasets.kind, actor.scope).items:
            tables = resource.doc.get("tags", {}).get(TABLE_TAG, [])
            if resource.doc.get("name") == name and tables:
                return str(tables[0])
        return None

    def _sql(self, actor: Actor, body: dict[str, Any]) -> str:
        """The SQL to run: ``sql``, or the template's (``templateId``), with ``$name`` placeholders
        replaced from ``queryParameters`` (and the template's defaults) when either is given."""
        sql, template_id = body.get("sql"), body.get("templateId")
        values = parameters(body.get("queryParameters"))
        if template_id is not None:
            if not isinstance(template_id, str) or not template_id:
                raise bad("templateId", "must be the id of a query template")
            template = self.store.get(self.templates.kind, actor.scope, template_id)
            if template is None:
                raise bad("templateId", f"no query template {template_id!r} in this sandbox")
            sql = template.doc["sql"] if sql is None else sql
            values = {**template.doc.get("queryParameters", {}), **values}
        if not isinstance(sql, str) or not sql.strip():
            raise bad("sql", "is required: the SQL text to run (or a templateId)")
        if len(sql) > MAX_SQL_CHARS:
            raise bad("sql", f"is longer than {MAX_SQL_CHARS} characters")
        if template_id is not None or body.get("queryParameters") is not None:
            sql = substitute(sql, values)
        return sql

    def _check_statement(self, actor: Actor, statement: Statement) -> str | None:
        """What can be told before a CTAS or INSERT INTO runs; the target dataset of an INSERT INTO."""
        if statement.kind == CTAS:
            actor.require(access.MANAGE_SCHEMAS, "create tables (CREATE TABLE AS creates a schema)")
            actor.require(access.MANAGE_DATASETS, "create tables (CREATE TABLE AS creates a dataset)")
            assert statement.table is not None
            if self.queries.table_dataset(actor, statement.table) is not None:
                raise bad("sql", f"a table named {statement.table!r} exists already in this sandbox")
            with contextlib.suppress(QueryError):  # a SELECT that does not run ends the query FAILED
                ctas_fields(self.queries.describe(actor, statement.select))
            return None
        if statement.kind != INSERT:
            return None
        actor.require(access.MANAGE_DATASETS, "insert into tables")
        assert statement.table is not None
        target = self.queries.table_dataset(actor, statement.table)
        if target is None:
            raise bad(
                "sql", f"no table named {statement.table!r} in this sandbox (INSERT INTO appends to one)"
            )
        self.check_insert(actor, target, statement)
        return target

    def check_insert(self, actor: Actor, dataset_id: str, statement: Statement) -> dict[str, str]:
        """The INSERT INTO's column -> field, checked against the dataset's schema without reading rows.
        A SELECT that does not run is left for the run to report (the query ends FAILED)."""
        assert statement.table is not None
        try:
            columns = self.queries.describe(actor, statement.select)
        except QueryError:
            return {}
        resolved = self.resolved_schema(actor, dataset_id)
        return insert_destinations(columns, resolved, self.schemas.tenant_namespace(actor), statement.table)

    def resolved_schema(self, actor: Actor, dataset_id: str) -> dict[str, Any]:
        dataset = self.datasets.get(actor, dataset_id)
        schema = self.schemas.get_schema(actor, dataset.doc["schemaRef"]["id"])
        if schema is None:
            raise HeadwaterError(f"the schema of dataset {dataset_id} no longer exists")
        return self.schemas.resolved(actor, schema)

    def find(self, actor: Actor, ident: str) -> dict[str, Any]:
        return self.render(self.get(actor, ident))

    def query(self, actor: Actor, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /queries``: ``orderby`` (``-created`` by default; created, updated), ``limit`` (20, at
        most 1000), ``start`` (an offset), ``property`` (``state==X``, ``id==X``, comma-separated),
        ``excludeSoftDeleted`` (true). AEP's page shape, with ``_links.next`` while there are more."""
        order, limit, start, filters, exclude_deleted = "-created", DEFAULT_LIMIT, 0, [], True
        for key, value in params:
            if key == "orderby":
                if value.strip() not in ORDERS and value.strip().lstrip("+") not in ORDERS:
                    raise bad("orderby", "must be one of " + ", ".join(ORDERS))
                order = value.strip().lstrip("+")
            elif key == "limit":
                limit = _int("limit", value, 1, MAX_LIMIT)
            elif key == "start":
                start = _int("start", value, 0, 10**9)
            elif key == "property":
                filters = _filters(value)
            elif key == "excludeSoftDeleted":
                exclude_deleted = value.strip().lower() != "false"
        items = self.store.list(self.kind, actor.scope).items
        kept = [
            r
            for r in items
            if all(_matches(r, f, op, v) for f, op, v in filters)
            and not (exclude_deleted and r.doc.get("softDeleted"))
        ]
        field = order.lstrip("-")
        kept.sort(
            key=lambda r: (r.created_at if field == "created" else r.updated_at, r.id),
            reverse=order[0] == "-",
        )
        page = kept[start : start + limit]
        following = start + limit if start + limit < len(kept) else None
        links: dict[str, Any] = {}
        if following is not None:
            links["next"] = {"href": f"{BASE}?orderby={order}&start={following}&limit={limit}"}
        if start > 0:
            links["prev"] = {"href": f"{BASE}?orderby={order}&start={max(0, start - limit)}&limit={limit}"}
        return {
            "queries": [self.render(r) for r in page],
            "_page": {"orderby": order, "start": str(start), "count": len(page), "totalCount": len(kept)},
            "_links": links,
            "version": 1,
        }

    def cancel(self, actor: Actor, ident: str, body: Any) -> dict[str, Any]:
        """``PATCH /queries/{id} {"op": "cancel"}``: AEP's answer ``{"message", "statusCode": 202}``."""
        actor.require(access.MANAGE_QUERIES, "cancel queries")
        op = require_object(body).get("op")
        if op != "cancel":
            raise bad("op", 'must be "cancel" (the only operation on a query)')
        for _ in range(10):
            query = self.get(actor, ident)
            state = query.doc["state"]
            if state in ENDED:
                raise Conflict(
                    f"The query has ended ({state}): it cannot be cancelled.",
                    code="QRY-1409-409",
                    report={"state": state},
                )
            changes: dict[str, Any] = (
                {"state": CANCELLED, "leaseUntil": 0} if state == SUBMITTED else {"cancelRequested": True}
            )
            if self.save_if_unchanged(query, **changes) is not None:
                return {"message": "Query cancel request received", "statusCode": 202}
        raise Conflict("The query kept changing while it was cancelled; retry.", code="QRY-1409-409")

    def soft_delete(self, actor: Actor, ident: str) -> dict[str, Any]:
        """``DELETE /queries/{id}``: hidden from lists (``excludeSoftDeleted=false`` shows it), its rows
        deleted; a running query is cancelled first."""
        actor.require(access.MANAGE_QUERIES, "delete queries")
        for _ in range(10):
            query = self.get(actor, ident)
            changes: dict[str, Any] = {"softDeleted": True}
            if query.doc["state"] == SUBMITTED:
                changes.update(state=CANCELLED, leaseUntil=0)
            elif query.doc["state"] == IN_PROGRESS:
                changes["cancelRequested"] = True
            if self.save_if_unchanged(query, **changes) is not None:
                self.result_files.remove(query.id)
                return {"message": "Query deleted", "statusCode": 200}
        raise Conflict("The query kept changing while it was deleted; retry.", code="QRY-1409-409")

    # --- results ---
    def results(self, actor: Actor, ident: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """``GET /queries/{id}/results``: a page of a SUCCESS SELECT's rows (``start``, ``limit``: 100, at
        most 10,000, and at most 16 MB of data), with its columns."""
        actor.require(access.MANAGE_QUERIES, "read query results")
        query = self.get(actor, ident)
        start, limit = 0, DEFAULT_ROWS
        for key, value in params:
            if key == "start":
                start = _int("start", value, 0, 10**12)
            elif key == "limit":
                limit = _int("limit", value, 1, MAX_ROWS_PAGE)
        state, kind = query.doc["state"], query.doc["statement"]["kind"]
        if kind != SELECT:
            raise bad("id", f"the query is a {kind}: its rows are in the table it wrote, query that")
        if state != SUCCESS:
            raise Conflict(
                f"The query is {state}: rows are readable once it is SUCCESS.",
                code="QRY-1409-409",
                report={"state": state},
            )
        expires = int(query.doc.get("resultsExpire") or 0)
        if expires < now_ms() or not self.result_files.exists(query.id):
            raise NotFound(
                f"The rows of query {ident} were kept until {iso(expires)} and are gone: run it again.",
                code="QRY-1410-404",
                report={"id": ident},
            )
        columns, rows, total = self.result_files.page(query.id, start, limit)
        following = start + len(rows) if start + len(rows) < total else None
        return {
            "columns": columns,
            "rows": rows,
            "_page": {"start": start, "count": len(rows), "totalCount": total},
            "truncated": bool(query.doc.get("truncated")),
            "expires": iso(expires),
            "_links": {"next": {"href": f"{BASE}/{ident}/results?start={following}&limit={limit}"}}
            if following is not None
            else {},
        }

    # --- the runner's side ---
    def claim_next(self, worker: str) -> Resource | None:
        """Claim the oldest SUBMITTED query, or an IN_PROGRESS one whose lease expired (failing it after
        :data:`MAX_ATTEMPTS`); None when there is none."""
        now = now_ms()
        for query in self.pending.candidates():
            state, lease = query.doc.get("state"), int(query.doc.get("leaseUntil") or 0)
            if state == IN_PROGRESS and lease < now and int(query.doc.get("attempts") or 0) >= MAX_ATTEMPTS:
                error = {
                    "code": "QRY-1500-500",
                    "message": "The query's runner stopped several times; run it again.",
                }
                self.save_if_unchanged(query, state=FAILED, errors=[error], leaseUntil=0)
                continue
            if state == SUBMITTED or (state == IN_PROGRESS and lease < now):
                claimed = self.save_if_unchanged(
                    query,
                    state=IN_PROGRESS,
                    worker=worker,
                    leaseUntil=now + LEASE_MS,
                    startedAt=query.doc.get("startedAt") or now,
                    attempts=int(query.doc.get("attempts") or 0) + 1,
                )
                if claimed is not None:
                    return claimed
        return None

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        link = f"{BASE}/{resource.id}"
        kind = d["statement"]["kind"]
        out: dict[str, Any] = {
            "isInsertInto": kind == INSERT,
            "request": d["request"],
            "clientId": d.get("clientId"),
            "state": d["state"],
            "rowCount": d.get("rowCount", 0),
            "errors": d.get("errors") or [],
            "isCTAS": kind == CTAS,
            "version": 1,
            "id": resource.id,
            "elapsedTime": d.get("elapsedTime", 0),
            "updated": iso(resource.updated_at),
            "userId": d.get("userId"),
            "created": iso(resource.created_at),
            "client": "API",
            "_links": {
                "self": {"href": link, "method": "GET"},
                "soft_delete": {"href": link, "method": "DELETE"},
                "cancel": {"href": link, "method": "PATCH", "body": '{"op": "cancel"}'},
            },
        }
        if d.get("datasetId"):
            out["datasetId"] = d["datasetId"]  # the table a CTAS created or an INSERT INTO appended to
        if kind == "SELECT" and d["state"] == SUCCESS:
            out["truncated"] = bool(d.get("truncated"))
            out["_links"]["results"] = {"href": f"{link}/results", "method": "GET"}
        if d.get("softDeleted"):
            out["softDeleted"] = True
        return out


def _int(key: str, value: str, low: int, high: int) -> int:
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise bad(key, f"must be a whole number from {low} to {high}")
    return int(value)


def _filters(value: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        op = "==" if "==" in part else "!=" if "!=" in part else None
        field, _, wanted = part.partition(op or "==")
        if op is None or field.strip() not in ("state", "id"):
            raise bad("property", "supports state==X, state!=X, id==X and id!=X, comma-separated")
        out.append((field.strip(), op, wanted.strip()))
    return out


def _matches(resource: Resource, field: str, op: str, wanted: str) -> bool:
    have = resource.doc.get("state") if field == "state" else resource.id
    return (have == wanted) == (op == "==")

"""Runs Query Service queries (services/queryservice.py) claimed by a :class:`JobRunner`.

One attempt at a claimed query (:class:`QueryExecution`):

- SELECT: the engine's rows (bounded by the HEADWATER_QUERY_* limits; ``truncated`` says when more
  existed) are written as an Arrow file under ``WAREHOUSE/_queryresults/`` (to a hidden name, then
  renamed: a file is whole or absent), readable until ``resultsExpire``.
- CREATE TABLE AS: the rows (all of them: a result over the limits fails the query, nothing is written),
  a field group, a schema and a dataset (services/querywrites.py says their shape), each under an id
  derived from the query's (an attempt that takes over finds what an earlier one created), then the rows
  mapped onto the schema and added in ONE Iceberg commit whose checkpoint names the query,
  ``once_per=("queryId",)``: two attempts can never both commit. A query that fails before its commit
  removes the schema and dataset it created; nothing else was written.
- INSERT INTO: the rows mapped onto the target dataset's schema (a column that names no field, or a row
  that does not conform, fails the query before anything is written), added in one commit, once per query.

A query cancelled before its commit ends ``CANCELLED`` and writes nothing; an attempt whose query was
taken over meanwhile (its lease ran out) stops without writing or saving anything.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater.errors import Conflict, HeadwaterError, NotFound
from headwater.runtime.segmentjobs import JobRunner
from headwater.services.catalogsvc import TABLE_TAG
from headwater.services.ids import now_ms
from headwater.services.queryservice import CANCELLED, FAILED, IN_PROGRESS, SUCCESS, QueryJobs
from headwater.services.querysql import CTAS, SELECT
from headwater.services.querywrites import (
    CONTENT_TYPE,
    ctas_destinations,
    ctas_fields,
    group_body,
    insert_destinations,
    refuse,
    schema_body,
)
from headwater.services.runs import QueuedSignal
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.lake.iceberg import Lake
    from headwater.services.catalogsvc import DataSets
    from headwater.services.queries import Queries
    from headwater.services.schemas import SchemaRegistry
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore

log = logging.getLogger("headwater.queries")
SWEEP_SECONDS = 60.0  # how often a runner deletes expired result files


@dataclass(frozen=True)
class QueryServices:
    """The collaborators of a query's execution (the container builds it)."""

    settings: Settings
    store: MetadataStore
    jobs: QueryJobs
    queries: Queries
    lake: Lake
    datasets: DataSets
    schemas: SchemaRegistry


class QueryRuns:
    """Query Service queries as a :class:`~headwater.runtime.segmentjobs.JobRunner` runs them."""

    def __init__(self, services: QueryServices) -> None:
        self.services = services
        self._swept = 0.0

    @property
    def created(self) -> QueuedSignal:
        return self.services.jobs.created

    def claim_next(self, worker: str) -> Resource | None:
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            self._swept = time.monotonic()
            hours = self.services.settings.query_results_hours
            self.services.jobs.result_files.sweep(now_ms() - int(hours * 3600 * 1000))
        return self.services.jobs.claim_next(worker)

    def run(self, job: Resource) -> Resource | None:
        return QueryExecution(self.services, job).execute()


def query_job_runner(services: QueryServices) -> JobRunner:
    return JobRunner(QueryRuns(services), name="query")


class Stopped(Exception):
    """Another attempt holds the query now: this one stops without writing or saving anything."""


class Cancelled(Exception):
    """The query was cancelled before anything was written."""


class QueryExecution:
    def __init__(self, services: QueryServices, job: Resource) -> None:
        self.services = services
        self.job = job
        self.worker = job.doc.get("worker")
        statement = job.doc["statement"]
        self.kind, self.select, self.table = statement["kind"], statement["select"], statement["table"]
        self.created: list[tuple[str, str]] = []  # (collection, id) a CTAS created in this attempt

    def execute(self) -> Resource | None:
        started = time.monotonic()
        try:
            actor = self._actor()
            if self.kind == SELECT:
                changes = self._select(actor)
            elif self.kind == CTAS:
                changes = self._ctas(actor)
            else:
                changes = self._insert(actor)
            state, errors = SUCCESS, []
        except Stopped:
            log.info("query %s: taken over by another runner", self.job.id)
            return None
        except Cancelled:
            self._undo()
            return self._finish(CANCELLED, [], {}, started)
        except HeadwaterError as exc:  # the SQL's or the data's fault: the engine's message, as AEP shows it
            self._undo()
            changes, state, errors = {}, FAILED, [{"code": exc.code, "message": exc.detail}]
        except Exception as exc:
            log.exception("query %s failed", self.job.id)
            self._undo()
            message = f"The query failed inside Headwater ({type(exc).__name__}); the server log says more."
            changes, state, errors = {}, FAILED, [{"code": "QRY-1500-500", "message": message}]
        return self._finish(state, errors, changes, started)

    # --- the statements ---
    def _select(self, actor: Actor) -> dict[str, Any]:
        result = self.services.queries.run(actor, self.select)
        self._check()
        self.services.jobs.result_files.write(self.job.id, result.table)
        expires = now_ms() + int(self.services.settings.query_results_hours * 3600 * 1000)
        return {"rowCount": result.table.num_rows, "truncated": result.truncated, "resultsExpire": expires}

    def _ctas(self, actor: Actor) -> dict[str, Any]:
        svc = self.services
        rows = self._all_rows(actor)
        fields = ctas_fields(rows.schema)
        ns = svc.schemas.tenant_namespace(actor)
        assert self.table is not None
        key = self.job.id.replace("-", "")
        existing = svc.queries.table_dataset(actor, self.table)
        if existing is not None and existing != key[:24]:
            raise refuse(f"A table named {self.table!r} exists already in this sandbox.")
        tenant = actor.org.tenant_id
        group = self._get_or_create(
            actor,
            "fieldgroups",
            f"https://ns.adobe.com/{tenant}/mixins/q{key}",
            group_body(self.table, ns, fields),
        )
        schema = self._get_or_create(
            actor, "schemas", f"https://ns.adobe.com/{tenant}/schemas/q{key}", schema_body(self.table, group)
        )
        request = self.job.doc["request"]
        description = (
            (request.get("ctasParameters") or {}).get("description")
            or request.get("description")
            or f"Created by Query Service query {self.job.id} (CREATE TABLE AS)."
        )
        body = {
            "name": (request.get("ctasParameters") or {}).get("datasetName") or self.table,
            "description": description,
            "schemaRef": {"id": schema, "contentType": CONTENT_TYPE},
            "tags": {TABLE_TAG: [self.table]},
        }
        dataset = self._get_or_create(actor, "datasets", key[:24], body)
        self._save(datasetId=dataset)
        count = self._write(actor, dataset, rows, ctas_destinations(rows.schema, ns))
        return {"rowCount": count, "datasetId": dataset}

    def _insert(self, actor: Actor) -> dict[str, Any]:
        svc = self.services
        dataset = str(self.job.doc.get("targetDatasetId") or "")
        assert self.table is not None
        try:
            svc.datasets.get(actor, dataset)
        except NotFound:
            raise refuse(f"Table {self.table!r} (dataset {dataset}) no longer exists.") from None
        rows = self._all_rows(actor)
        resolved = svc.jobs.resolved_schema(actor, dataset)
        destinations = insert_destinations(
            rows.schema, resolved, svc.schemas.tenant_namespace(actor), self.table
        )
        count = self._write(actor, dataset, rows, destinations)
        return {"rowCount": count, "datasetId": dataset}

    def _all_rows(self, actor: Actor) -> pa.Table:
        result = self.services.queries.run(actor, self.select)
        if result.truncated:
            limits = self.services.queries.engine.limits
            raise refuse(
                f"The SELECT has more than {result.table.num_rows} rows, past what one query may write "
                f"(HEADWATER_QUERY_MAX_ROWS={limits.max_rows}, HEADWATER_QUERY_MAX_RESULT_MB="
                f"{limits.max_result_bytes // (1024 * 1024)}): nothing was written. Write it in parts "
                "(CREATE TABLE AS with a WHERE, then INSERT INTO)."
            )
        self._check()
        return result.table

    def _write(self, actor: Actor, dataset_id: str, rows: pa.Table, destinations: dict[str, str]) -> int:
        """``rows`` mapped onto the dataset's schema and committed once for this query; how many rows."""
        from headwater.engines.mapping import identity_compile

        svc = self.services
        mapping = identity_compile(svc.jobs.resolved_schema(actor, dataset_id))
        renamed = rows.rename_columns([destinations[name] for name in rows.column_names])
        mapped: list[pa.RecordBatch] = []
        for batch in renamed.to_batches(max_chunksize=65_536):
            result = mapping.apply(batch)
            if result.errors:
                first = result.errors[0]
                raise refuse(
                    f"{len(result.errors)} value(s) do not fit table {self.table!r}'s schema; the first, in "
                    f"row {first.row + 1}: {first.message}. Nothing was written."
                )
            mapped.append(result.output)
        table = svc.lake.ensure_table(actor.scope, dataset_id, mapping.target)
        done = svc.lake.latest_checkpoint(table, queryId=self.job.id)
        if done is not None:  # an earlier attempt committed, then died before saving the query
            return int(done.properties.get("headwater.rows") or 0)
        data_files = svc.lake.write_files(table, iter(mapped), mapping.target)
        self._check()
        checkpoint = {"origin": "queryService", "queryId": self.job.id, "rows": renamed.num_rows}
        svc.lake.commit(table, data_files, checkpoint, once_per=("queryId",))
        self.created.clear()  # committed: what this attempt created stays, whatever happens next
        return int(renamed.num_rows)

    # --- parts ---
    def _actor(self) -> Actor:
        store, scope = self.services.store, self.job.scope
        org = store.get_org(scope.org_id)
        sandbox = store.get_sandbox(scope.org_id, str(self.job.doc.get("sandboxName"))) if org else None
        if org is None or sandbox is None or sandbox.id != scope.sandbox_id:
            raise HeadwaterError("The query's organization or sandbox no longer exists.")
        return Actor(org=org, sandbox=sandbox, client_id="headwater-queries")

    def _get_or_create(self, actor: Actor, collection: str, ident: str, body: dict[str, Any]) -> str:
        svc = self.services
        coll: Any = svc.datasets if collection == "datasets" else getattr(svc.schemas, collection)
        found = svc.store.get(coll.kind, actor.scope, ident)
        if found is not None:
            return found.id
        try:
            created = coll.create(actor, body, ident)
        except Conflict:  # another attempt created it a moment ago
            found = svc.store.get(coll.kind, actor.scope, ident)
            if found is None:
                raise
            return found.id
        self.created.append((collection, created.id))
        return str(created.id)

    def _undo(self) -> None:
        """Remove what this attempt created (a failed CTAS leaves no empty dataset behind), newest first."""
        if not self.created:
            return
        try:
            actor = self._actor()
        except HeadwaterError:
            return
        for collection, ident in reversed(self.created):
            coll: Any = (
                self.services.datasets
                if collection == "datasets"
                else getattr(self.services.schemas, collection)
            )
            with contextlib.suppress(HeadwaterError):
                coll.delete(actor, ident)
        self.created.clear()

    def _current(self) -> Resource:
        current = self.services.store.get(self.job.kind, self.job.scope, self.job.id)
        if (
            current is None
            or current.doc.get("worker") != self.worker
            or current.doc.get("state") != IN_PROGRESS
        ):
            raise Stopped()
        return current

    def _check(self) -> None:
        """Stop when another runner holds the query; raise Cancelled when it was cancelled."""
        if self._current().doc.get("cancelRequested"):
            raise Cancelled()

    def _save(self, **changes: Any) -> None:
        for _ in range(10):
            if self.services.jobs.save_if_unchanged(self._current(), **changes) is not None:
                return
        raise Stopped()

    def _finish(
        self, state: str, errors: list[dict[str, Any]], changes: dict[str, Any], started: float
    ) -> Resource | None:
        elapsed = int((time.monotonic() - started) * 1000)
        for _ in range(10):
            try:
                current = self._current()
            except Stopped:
                return None
            saved = self.services.jobs.save_if_unchanged(
                current, state=state, errors=errors, leaseUntil=0, elapsedTime=elapsed, **changes
            )
            if saved is not None:
                return saved
        return None

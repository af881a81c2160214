"""Queries over datasets: which tables one caller's SQL may see, handed to the query engine.

A query sees the datasets of the caller's organization and sandbox and nothing else. Each dataset is a
table named by its ``adobe/pqs/table`` tag (as in Query Service); the dataset a caller names (the CLI's
``datasets query DATASET``) is also the table ``dataset``. Only the tables the SQL references are
loaded; each is read through its Iceberg table's current snapshot. The engine
(:mod:`headwater.lake.query`) refuses every other power and bounds time, memory and result size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

from headwater.lake.query import QueryEngine, QueryError, QueryLimits, QueryResult, TableSource
from headwater.services.catalogsvc import TABLE_TAG
from headwater.services.queryaccel import AcceleratedStore, combined
from headwater.services.tenancy import Actor

if TYPE_CHECKING:
    import duckdb

    from headwater.lake.iceberg import Lake
    from headwater.services.catalogsvc import DataSets
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore, Scope


class Queries:
    """Runs a caller's SQL over the datasets of the caller's sandbox."""

    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        datasets: DataSets,
        lake: Lake,
        accelerated: AcceleratedStore | None = None,
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.lake = lake
        self.engine = QueryEngine(QueryLimits.from_settings(settings))
        self.accelerated = accelerated  # AEP's Query Accelerated Store dimensions (services/queryaccel.py)

    def run(
        self,
        actor: Actor,
        sql: str,
        dataset_id: str | None = None,
        aliases: Mapping[str, str] | None = None,
        setup: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
        tables: Mapping[str, TableSource] | None = None,
    ) -> QueryResult:
        """Run one SELECT; ``dataset_id`` (a dataset of the actor's sandbox) is also the table ``dataset``;
        ``aliases`` (table name -> id of a dataset of the sandbox) are further names of datasets (the
        Data Cloud Query API's ``<table>__dll``, services/data360/queryapi.py). ``setup`` prepares the
        engine's connection first (pgwire/catalog.py); ``tables`` are :meth:`tables` of the actor when the
        caller has them already (their Iceberg metadata is then loaded once).

        Raises NotFound for a ``dataset_id`` outside the sandbox, and QueryError subclasses (400s) for
        SQL that cannot run as written, is refused, or passes a limit.
        """
        accelerated = self.accelerated.setup(actor, sql) if self.accelerated is not None else None
        visible = tables if tables is not None else self.tables(actor, dataset_id, aliases)
        return self.engine.run(sql, visible, combined(setup, accelerated))

    def describe(self, actor: Actor, sql: str) -> pa.Schema:
        """The Arrow schema of one SELECT's rows over the actor's sandbox, reading no rows (errors as
        :meth:`run`'s)."""
        return self.engine.describe(sql, self.tables(actor))

    def tables(
        self, actor: Actor, dataset_id: str | None = None, aliases: Mapping[str, str] | None = None
    ) -> dict[str, TableSource]:
        """The tables a query of ``actor`` sees, by name (see the module; ``aliases`` as :meth:`run`'s)."""
        tables: dict[str, TableSource] = {}
        for resource in self.store.list(self.datasets.kind, actor.scope).items:
            for name in resource.doc.get("tags", {}).get(TABLE_TAG, [])[:1]:
                tables[str(name)] = _DatasetTable(self.lake, actor.scope, resource.id, str(name))
        for alias, ident in (aliases or {}).items():
            tables[alias] = _DatasetTable(self.lake, actor.scope, ident, alias)
        if dataset_id is not None:
            named = self.datasets.get(actor, dataset_id)
            tables["dataset"] = _DatasetTable(self.lake, actor.scope, named.id, "dataset")
        return tables

    def table_dataset(self, actor: Actor, table: str) -> str | None:
        """The id of the dataset of ``actor``'s sandbox whose table is named ``table`` (case-insensitive)."""
        for resource in self.store.list(self.datasets.kind, actor.scope).items:
            names = resource.doc.get("tags", {}).get(TABLE_TAG, [])[:1]
            if names and str(names[0]).lower() == table.lower():
                return resource.id
        return None


class _DatasetTable:
    """One dataset's table, loaded when the query first needs it (a query that does not name it costs
    nothing). A dataset that has no data yet is an error that says so."""

    def __init__(self, lake: Lake, scope: Scope, dataset_id: str, name: str) -> None:
        self._lake, self._scope, self._dataset_id, self._name = lake, scope, dataset_id, name
        self._source: TableSource | None = None

    def _loaded(self) -> TableSource:
        if self._source is None:
            from headwater.lake.iceberg import IcebergSource

            table = self._lake.load(self._scope, self._dataset_id)
            if table is None:
                raise QueryError(
                    f"The table {self._name!r} (dataset {self._dataset_id}) has no data yet: run a flow "
                    "into it first."
                )
            self._source = IcebergSource(table)
        return self._source

    def schema(self) -> pa.Schema:
        return self._loaded().schema()

    def reader(self) -> pa.RecordBatchReader:
        return self._loaded().reader()

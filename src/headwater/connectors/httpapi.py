"""The reader shared by the HTTP API sources (Salesforce, Dynamics): plan a read of one object, page
through its records, and turn pages into Arrow batches inside the window.

A connector built on :class:`HttpApiConnector` supplies what its API decides: the columns of an object
(:meth:`~HttpApiConnector.columns`), its delta column (:meth:`~HttpApiConnector.delta_column`), the
API's filter for a window (:meth:`~HttpApiConnector.window_filter`), the pages of records of a plan
(:meth:`~HttpApiConnector.pages`) and how a value that is not typed becomes text. The shared part:

- the columns read are the source connection's ``params.columns`` (else every default column), then
  with ``key_columns`` the row keys and the delta column (connectors/base.py), then, for a window, the
  delta column when it is not read already;
- the API's filter selects a superset of the window (whole seconds); each batch is then filtered
  exactly, ``S < delta <= E``, on the parsed values, so no boundary drops or repeats a row;
- records are cut into batches of ``batch_size`` rows; empty batches are not yielded;
- a value the column's type cannot hold raises the connector's protocol error.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import pyarrow as pa

from headwater.connectors.arrowing import column_chunks, typed_array, utc, window_batch
from headwater.connectors.base import ReadRequest, SourceConnector
from headwater.connectors.errors import ConnectorError
from headwater.connectors.http import HttpClient, Records

__all__ = ["ApiColumn", "ApiPlan", "HttpApiConnector", "Records"]

Client = TypeVar("Client", bound=HttpClient)


@dataclass(frozen=True)
class ApiColumn:
    """One column read: ``name`` as output, ``source`` the API's own name of the field, ``key`` the
    record property carrying its value; its Arrow ``type``, the API's ``original_type`` and an optional
    ``label``, both kept as Arrow field metadata."""

    name: str
    source: str
    key: str
    type: pa.DataType
    original_type: str
    label: str | None = None

    def arrow_field(self) -> pa.Field:
        metadata = {"originalType": self.original_type}
        if self.label is not None:
            metadata["label"] = self.label
        return pa.field(self.name, self.type, metadata=metadata)


@dataclass(frozen=True)
class ApiPlan:
    """A read of object ``name``: its ``columns`` (the first ``outputs`` are output), the index of the
    delta column when a window is read, the window, and the API's filter for it (None without one)."""

    name: str
    columns: list[ApiColumn]
    outputs: int
    delta: int | None
    start: datetime | None
    end: datetime | None
    where: str | None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns[: self.outputs]])

    @property
    def selected(self) -> list[str]:
        """The record properties to ask the API for, each once."""
        return list(dict.fromkeys(c.key for c in self.columns))


class HttpApiConnector(SourceConnector, Generic[Client]):
    """A source read through an HTTP API by ``client`` (module docstring). ``service_name`` names it in
    messages; ``query_rejected`` and ``protocol_error`` are its errors for an impossible source
    connection and for an answer that does not fit."""

    service_name: ClassVar[str]
    query_rejected: ClassVar[type[ConnectorError]]
    protocol_error: ClassVar[type[ConnectorError]]
    client: Client

    @abstractmethod
    def columns(self, name: str, wanted: list[str] | None) -> list[ApiColumn]:
        """The columns ``wanted`` of object ``name`` (None: its default columns)."""

    @abstractmethod
    def delta_column(self, name: str, wanted: str | None) -> ApiColumn:
        """The delta column of object ``name``: ``wanted``, else the API's default."""

    @abstractmethod
    def window_filter(self, column: ApiColumn, start: datetime | None, end: datetime | None) -> str:
        """The API's filter selecting a superset of the window on ``column`` (at least one bound set)."""

    @abstractmethod
    def pages(self, plan: ApiPlan, request: ReadRequest) -> Iterator[Records]:
        """The records of ``plan``, one list per page of the API."""

    @staticmethod
    @abstractmethod
    def text(value: Any) -> str | None:
        """A record value as the text of a string column."""

    def describe(self, name: str) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns(name, None)])

    def preview(self, name: str, limit: int = 10) -> pa.Table:
        request = ReadRequest(
            params={"tableName": name},
            data_format="tabular",
            batch_size=max(1, limit),
            options={"limit": limit},
        )
        return pa.Table.from_batches(list(self.read(request)), schema=self.describe(name))

    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        plan = self.plan(request)
        keys = [c.key for c in plan.columns]
        for chunk in column_chunks(self.pages(plan, request), keys, max(1, request.batch_size)):
            batch = self._batch(plan, chunk)
            if batch.num_rows:
                yield batch

    def close(self) -> None:
        self.client.close()

    def plan(self, request: ReadRequest) -> ApiPlan:
        """The columns and window filter of ``request`` (module docstring)."""
        name = request.params.get("tableName")
        if not name:
            raise self.query_rejected("The source connection has no tableName: set params.tableName.")
        name = str(name)
        columns = self.columns(name, self._wanted(request.params.get("columns")))
        if request.key_columns is not None:  # row keys, then the delta (connectors/base.py)
            columns += self.columns(name, list(request.key_columns))
            columns.append(self.delta_column(name, request.delta_column))
        outputs = len(columns)
        start, end = utc(request.window_start), utc(request.window_end)
        delta: int | None = None
        where = None
        if start is not None or end is not None:
            column = self.delta_column(name, request.delta_column)
            delta = next((i for i, c in enumerate(columns) if c.source == column.source), None)
            if delta is None:
                columns.append(column)
                delta = len(columns) - 1
            where = self.window_filter(column, start, end)
        return ApiPlan(name, columns, outputs, delta, start, end, where)

    def _wanted(self, columns: Any) -> list[str] | None:
        if not columns:
            return None
        if not isinstance(columns, list):
            raise self.query_rejected('The source connection\'s columns must be a list of {"name": ...}.')
        names: list[str] = []
        for entry in columns:
            name = entry.get("name") if isinstance(entry, dict) else entry
            if not isinstance(name, str) or not name:
                raise self.query_rejected("Every entry of the source connection's columns needs a name.")
            names.append(name)
        return list(dict.fromkeys(names))

    def _batch(self, plan: ApiPlan, chunk: list[list[Any]]) -> pa.RecordBatch:
        arrays = [self._array(values, column) for values, column in zip(chunk, plan.columns, strict=True)]
        return window_batch(arrays, plan.schema, plan.delta, plan.start, plan.end)

    def _array(self, values: Sequence[Any], column: ApiColumn) -> pa.Array:
        try:
            return typed_array(values, column.type, self.text)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
            raise self.protocol_error(
                f"{self.service_name} returned a value for {column.source} that is not a valid "
                f"{column.original_type} ({str(exc)[:200]})."
            ) from None

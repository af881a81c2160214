"""Salesforce (and Salesforce Service Cloud) as a source: objects to explore, describe as Arrow schemas,
SOQL reads streamed as Arrow record batches.

Types: ``datetime`` -> timestamp[us, UTC], ``date`` -> date32, ``boolean`` -> bool, ``int``/``long`` ->
int64, ``double``/``currency``/``percent`` -> float64, everything else (id, string, email, phone,
picklist, reference, textarea, url, ...) -> string. Each field keeps its Salesforce type and label as
Arrow field metadata (``originalType``, ``label``).

Columns: the source connection's ``params.columns`` names (matched case-insensitively, output under the
name as written), else every field of the describe except compound ``address``/``location`` fields
(their parts are ordinary fields) and ``base64`` blobs. Relationship paths such as ``Account.Name`` are
refused with a message: read the related object in its own source connection and join on the Id.

Windows (see connectors/base.py): the SOQL filter is widened to whole seconds (SOQL datetime literals
carry no fraction) and each batch is then filtered exactly, ``S < delta <= E``, on the parsed values, so
a window boundary with microseconds neither drops nor repeats a row. The delta column defaults to
SystemModstamp (set by every change, system ones included, and indexed), else LastModifiedDate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import ExploreItem, ReadRequest, SourceConnector
from headwater.connectors.salesforce.client import SalesforceClient
from headwater.connectors.salesforce.config import RetryPolicy, SalesforceConfig
from headwater.connectors.salesforce.errors import (
    SalesforceObjectNotFound,
    SalesforceProtocolError,
    SalesforceQueryRejected,
)

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES: dict[str, pa.DataType] = {
    "datetime": TIMESTAMP,
    "date": pa.date32(),
    "boolean": pa.bool_(),
    "int": pa.int64(),
    "long": pa.int64(),
    "double": pa.float64(),
    "currency": pa.float64(),
    "percent": pa.float64(),
}
_NOT_BY_DEFAULT = {"address", "location", "base64"}
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_DEFAULT_DELTAS = ("SystemModstamp", "LastModifiedDate")
_MAX_QUERY_URL = 15_000  # Salesforce refuses REST request URIs past ~16 KB


def arrow_type(salesforce_type: str) -> pa.DataType:
    return _ARROW_TYPES.get(salesforce_type, pa.string())


@dataclass(frozen=True)
class _Column:
    name: str  # output name, as the source connection wrote it
    field: str  # Salesforce's own spelling
    type: pa.DataType
    original_type: str
    label: str

    def arrow_field(self) -> pa.Field:
        return pa.field(
            self.name, self.type, metadata={"originalType": self.original_type, "label": self.label}
        )


@dataclass(frozen=True)
class _Plan:
    soql: str
    columns: list[_Column]  # the output columns, then the delta column if only fetched for filtering
    outputs: int  # how many of ``columns`` are output
    delta: int | None  # index in ``columns`` of the delta column, when a window is read
    start: datetime | None
    end: datetime | None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns[: self.outputs]])


class SalesforceConnector(SourceConnector):
    """Reads one Salesforce org. ``retry`` tunes the client's retries (tests make them fast) and
    ``page_size`` the records per query page (200..2000, Salesforce's default and maximum 2000)."""

    def __init__(
        self,
        auth: dict[str, Any],
        outbound: OutboundPolicy,
        settings: Settings,
        *,
        retry: RetryPolicy | None = None,
        page_size: int | None = None,
    ) -> None:
        super().__init__(auth, outbound, settings)
        self.config = SalesforceConfig.from_auth(auth)
        if page_size is not None:
            self.config = replace(self.config, page_size=max(200, min(2000, page_size)))
        self.client = SalesforceClient(self.config, outbound, retry or RetryPolicy())
        self._describes: dict[str, dict[str, Any]] = {}

    def explore(self) -> list[ExploreItem]:
        return [
            ExploreItem(name=o["name"], type="table", label=o.get("label"), path=o["name"])
            for o in self.client.list_sobjects()
            if o.get("queryable") and isinstance(o.get("name"), str)
        ]

    def describe(self, name: str) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self._columns(name, None)])

    def preview(self, name: str, limit: int = 10) -> pa.Table:
        request = ReadRequest(
            params={"tableName": name},
            data_format="tabular",
            batch_size=max(1, limit),
            options={"limit": limit},
        )
        batches = list(self.read(request))
        return pa.Table.from_batches(batches, schema=self.describe(name))

    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        plan = self._plan(request)
        size = max(1, request.batch_size)
        keys = [c.field for c in plan.columns]
        pending: list[list[Any]] = [[] for _ in keys]
        for records in self.client.query(plan.soql):
            for values, page_values in zip(pending, _transpose(records, keys), strict=True):
                values.extend(page_values)
            while len(pending[0]) >= size:
                chunk = [values[:size] for values in pending]
                pending = [values[size:] for values in pending]
                yield from _non_empty(_batch(plan, chunk))
        if pending[0]:
            yield from _non_empty(_batch(plan, pending))

    def close(self) -> None:
        self.client.close()

    # -- planning ----------------------------------------------------------------------------------

    def _describe(self, name: str) -> dict[str, Any]:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise SalesforceQueryRejected(
                f"tableName {name!r} is not a Salesforce object name (e.g. Contact, or Custom__c): fix the "
                "source connection's tableName."
            )
        if name not in self._describes:
            self._describes[name] = self.client.describe(name)
        return self._describes[name]

    def _columns(self, name: str, wanted: list[str] | None) -> list[_Column]:
        described = self._describe(name)
        fields = [
            f for f in described.get("fields") or [] if isinstance(f, dict) and isinstance(f.get("name"), str)
        ]
        if described.get("queryable") is False:
            raise SalesforceObjectNotFound(
                f"Salesforce object {name} cannot be queried: pick another tableName."
            )
        if wanted is None:
            return [_column(f["name"], f) for f in fields if f.get("type") not in _NOT_BY_DEFAULT]
        by_name = {f["name"].lower(): f for f in fields}
        columns = []
        for column in wanted:
            if "." in column:
                raise SalesforceQueryRejected(
                    f"Column {column!r} is a relationship path, which this connector does not read: read the "
                    "related object in its own source connection and join on its Id."
                )
            found = by_name.get(column.lower())
            if found is None:
                known = ", ".join(sorted(f["name"] for f in fields)[:30])
                raise SalesforceQueryRejected(
                    f"{name} has no field {column!r}: fix the source connection's columns (its fields: "
                    f"{known}...)."
                )
            columns.append(_column(column, found))
        return columns

    def _plan(self, request: ReadRequest) -> _Plan:
        name = request.params.get("tableName")
        if not name:
            raise SalesforceQueryRejected("The source connection has no tableName: set params.tableName.")
        columns = self._columns(str(name), _wanted(request.params.get("columns")))
        outputs = len(columns)
        start, end = _utc(request.window_start), _utc(request.window_end)
        delta: int | None = None
        where = ""
        if start is not None or end is not None:
            delta_column = self._delta_column(str(name), request.delta_column)
            delta = next((i for i, c in enumerate(columns) if c.field == delta_column.field), None)
            if delta is None:
                columns.append(delta_column)
                delta = len(columns) - 1
            where = _where(delta_column, start, end)
        selected = list(dict.fromkeys(c.field for c in columns))
        soql = f"SELECT {', '.join(selected)} FROM {self._describe(str(name)).get('name', name)}{where}"
        limit = request.options.get("limit")
        if isinstance(limit, int) and limit > 0:
            soql += f" LIMIT {limit}"
        if len(quote_plus(soql)) > _MAX_QUERY_URL:
            raise SalesforceQueryRejected(
                f"Reading {len(selected)} fields of {name} makes a query longer than Salesforce accepts "
                "in one REST request: list only the columns you need in the source connection's columns."
            )
        return _Plan(soql, columns, outputs, delta, start, end)

    def _delta_column(self, name: str, wanted: str | None) -> _Column:
        fields = {c.field: c for c in self._columns(name, None)}
        if wanted is None:
            wanted = next((d for d in _DEFAULT_DELTAS if d in fields), None)
            if wanted is None:
                raise SalesforceQueryRejected(
                    f"{name} has neither SystemModstamp nor LastModifiedDate: name the flow's delta column."
                )
        column = self._columns(name, [wanted])[0]
        if column.original_type not in ("datetime", "date"):
            raise SalesforceQueryRejected(
                f"Delta column {wanted!r} of {name} is a {column.original_type} field: incremental reads "
                "need a datetime or date field such as SystemModstamp or LastModifiedDate."
            )
        return column


# -- building batches ----------------------------------------------------------------------------------


def _column(name: str, described: dict[str, Any]) -> _Column:
    kind = str(described.get("type") or "string")
    return _Column(name, described["name"], arrow_type(kind), kind, str(described.get("label") or name))


def _wanted(columns: Any) -> list[str] | None:
    if not columns:
        return None
    if not isinstance(columns, list):
        raise SalesforceQueryRejected('The source connection\'s columns must be a list of {"name": ...}.')
    names: list[str] = []
    for entry in columns:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            raise SalesforceQueryRejected("Every entry of the source connection's columns needs a name.")
        names.append(name)
    return list(dict.fromkeys(names))


def _transpose(records: list[dict[str, Any]], keys: list[str]) -> list[Sequence[Any]]:
    """The values of ``keys`` in ``records``, one sequence per key (built in C when every key is there)."""
    if len(keys) > 1:
        try:
            return list(zip(*map(itemgetter(*keys), records), strict=True)) or [() for _ in keys]
        except (KeyError, TypeError):
            pass
    return [[r.get(k) if isinstance(r, dict) else None for r in records] for k in keys]


def _where(column: _Column, start: datetime | None, end: datetime | None) -> str:
    """A SOQL filter that selects a superset of the window; batches are filtered exactly afterwards."""
    clauses = []
    if start is not None:
        if column.original_type == "date":
            clauses.append(f"{column.field} >= {start.date().isoformat()}")
        else:
            clauses.append(f"{column.field} > {_soql_datetime(start.replace(microsecond=0))}")
    if end is not None:
        if column.original_type == "date":
            upper = f"{column.field} <= {end.date().isoformat()}"
        else:
            ceiling = end if end.microsecond == 0 else end.replace(microsecond=0) + timedelta(seconds=1)
            upper = f"{column.field} <= {_soql_datetime(ceiling)}"
        # Rows whose delta is null belong to reads without a lower bound (connectors/base.py).
        clauses.append(upper if start is not None else f"({upper} OR {column.field} = null)")
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _soql_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _batch(plan: _Plan, chunk: list[list[Any]]) -> pa.RecordBatch:
    arrays = [_array(values, column) for values, column in zip(chunk, plan.columns, strict=True)]
    if plan.delta is not None:
        mask = _window_mask(arrays[plan.delta], plan.start, plan.end)
        arrays = [pc.filter(a, mask) for a in arrays[: plan.outputs]]
    return pa.RecordBatch.from_arrays(arrays[: plan.outputs], schema=plan.schema)


def _non_empty(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    if batch.num_rows:
        yield batch


def _window_mask(delta: pa.Array, start: datetime | None, end: datetime | None) -> pa.Array:
    instants = delta.cast(pa.timestamp("us")).cast(TIMESTAMP) if pa.types.is_date32(delta.type) else delta
    mask: pa.Array | None = None
    if start is not None:
        mask = pc.greater(instants, pa.scalar(start, type=TIMESTAMP))
    if end is not None:
        upper = pc.less_equal(instants, pa.scalar(end, type=TIMESTAMP))
        mask = upper if mask is None else pc.and_(mask, upper)
    assert mask is not None
    if start is None:
        mask = pc.or_kleene(mask, pc.is_null(instants))
    return pc.fill_null(mask, False)


def _array(values: list[Any], column: _Column) -> pa.Array:
    try:
        if column.type == TIMESTAMP:
            return _timestamps(pa.array(values, pa.string()))
        if column.type == pa.date32():
            return pa.array(values, pa.string()).cast(pa.date32())
        if column.type == pa.string():
            return _strings(values)
        if column.type == pa.int64():
            return _integers(values)
        return pa.array(values, column.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise SalesforceProtocolError(
            f"Salesforce returned a value for {column.field} that is not a valid {column.original_type} "
            f"({str(exc)[:200]})."
        ) from None


def _timestamps(strings: pa.Array) -> pa.Array:
    try:
        return strings.cast(TIMESTAMP)
    except pa.ArrowInvalid:
        # A date-only value ("2024-01-15") in a datetime field: read it as midnight UTC.
        fixed = [
            None if s is None else (s + "T00:00:00Z" if len(s) == 10 else s) for s in strings.to_pylist()
        ]
        return pa.array(fixed, pa.string()).cast(TIMESTAMP)


def _strings(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_text(v) for v in values], pa.string())


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()  # compound fields (address, location)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _integers(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values, pa.float64()).cast(pa.int64())  # 3.0 -> 3; 3.5 raises ArrowInvalid

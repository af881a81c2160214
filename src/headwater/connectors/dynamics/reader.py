"""Microsoft Dynamics 365 (Dataverse) as a source: entities to explore, describe as Arrow schemas, OData
reads streamed as Arrow record batches.

Types: ``DateTime`` -> timestamp[us, UTC] (DateOnly values read as midnight UTC), ``Boolean`` -> bool,
``Integer``/``BigInt``/``Picklist``/``State``/``Status`` -> int64, ``Money``/``Decimal``/``Double`` ->
float64, everything else (String, Memo, Uniqueidentifier, lookups, ...) -> string. Each field keeps its
AttributeType as Arrow field metadata (``originalType``).

Columns: the source connection's ``params.columns`` names (logical names, matched case-insensitively),
else every attribute the Web API can select. Lookups (Lookup, Customer, Owner) are read from their
``_{name}_value`` property, the referenced record's id, under the attribute's own name. Attributes that
cannot be selected (Virtual, Image, File, PartyList, ... and the ``...name`` shadows of lookups) are
left out.

Windows (see connectors/base.py): the ``$filter`` is widened to whole seconds and each batch is then
filtered exactly, ``S < delta <= E``, on the parsed values. The delta column defaults to ``modifiedon``.
Row keys: the entity's PrimaryIdAttribute; incremental runs re-read 10 minutes before their window by
default (runtime/lookback.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater.connectors.arrowing import (
    TIMESTAMP,
    ceil_second,
    column_chunks,
    typed_array,
    utc,
    window_batch,
)
from headwater.connectors.base import ExploreItem, ReadRequest, SourceConnector
from headwater.connectors.dynamics.client import DynamicsClient
from headwater.connectors.dynamics.config import DynamicsConfig
from headwater.connectors.dynamics.errors import DynamicsProtocolError, DynamicsQueryRejected
from headwater.connectors.http import RetryPolicy

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

_ARROW_TYPES: dict[str, pa.DataType] = {
    "DateTime": TIMESTAMP,
    "Boolean": pa.bool_(),
    "Integer": pa.int64(),
    "BigInt": pa.int64(),
    "Picklist": pa.int64(),
    "State": pa.int64(),
    "Status": pa.int64(),
    "Money": pa.float64(),
    "Decimal": pa.float64(),
    "Double": pa.float64(),
}
_LOOKUPS = {"Lookup", "Customer", "Owner"}
_NOT_SELECTABLE = {"Virtual", "CalendarRules", "PartyList", "ManagedProperty", "Image", "File", "EntityName"}
DEFAULT_DELTA = "modifiedon"


def arrow_type(attribute_type: str) -> pa.DataType:
    return _ARROW_TYPES.get(attribute_type, pa.string())


@dataclass(frozen=True)
class _Column:
    name: str  # output name, as the source connection wrote it
    attribute: str  # logical name
    type: pa.DataType
    original_type: str

    @property
    def property(self) -> str:
        """The Web API property that carries the value."""
        return f"_{self.attribute}_value" if self.original_type in _LOOKUPS else self.attribute

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.type, metadata={"originalType": self.original_type})


@dataclass(frozen=True)
class _Plan:
    entity_set: str
    select: list[str]
    where: str | None
    columns: list[_Column]  # the output columns, then the delta column if only fetched for filtering
    outputs: int
    delta: int | None
    start: datetime | None
    end: datetime | None

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns[: self.outputs]])


class DynamicsConnector(SourceConnector):
    """Reads one Dynamics environment. ``retry`` tunes the client's retries (tests make them fast)
    and ``page_size`` the records per page (Prefer: odata.maxpagesize; Dataverse's maximum is 5000)."""

    # modifiedon is stamped when the change starts; plug-ins, workflows and bulk imports commit later.
    default_lookback_seconds = 600.0

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
        self.config = DynamicsConfig.from_auth(auth)
        if page_size is not None:
            self.config = replace(self.config, page_size=max(1, min(5000, page_size)))
        self.client = DynamicsClient(self.config, outbound, retry or RetryPolicy())
        self._entities: dict[str, dict[str, Any]] = {}
        self._attributes: dict[str, list[_Column]] = {}

    def explore(self) -> list[ExploreItem]:
        items = [
            ExploreItem(name=e["LogicalName"], type="table", label=_label(e), path=e["LogicalName"])
            for e in self.client.entity_definitions()
            if isinstance(e.get("LogicalName"), str) and e.get("EntitySetName")
        ]
        return sorted(items, key=lambda item: item.name)

    def describe(self, name: str) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self._all_columns(name)])

    def preview(self, name: str, limit: int = 10) -> pa.Table:
        request = ReadRequest(
            params={"tableName": name},
            data_format="tabular",
            batch_size=max(1, limit),
            options={"limit": limit},
        )
        return pa.Table.from_batches(list(self.read(request)), schema=self.describe(name))

    def read(self, request: ReadRequest) -> Iterator[pa.RecordBatch]:
        plan = self._plan(request)
        size = max(1, request.batch_size)
        keys = [c.property for c in plan.columns]
        limit = request.options.get("limit")
        top = limit if isinstance(limit, int) and limit > 0 else None
        pages = self.client.query(plan.entity_set, plan.select, plan.where, top)
        for chunk in column_chunks(pages, keys, size):
            batch = _batch(plan, chunk)
            if batch.num_rows:
                yield batch

    def primary_key(self, params: dict[str, Any]) -> tuple[str, ...]:
        entity = self._entity(str(params.get("tableName") or ""))
        primary = entity.get("PrimaryIdAttribute") or f"{entity['LogicalName']}id"
        return (str(primary),)

    def close(self) -> None:
        self.client.close()

    # -- planning ----------------------------------------------------------------------------------

    def _entity(self, name: str) -> dict[str, Any]:
        if name not in self._entities:
            self._entities[name] = self.client.entity(name)
        return self._entities[name]

    def _all_columns(self, name: str) -> list[_Column]:
        logical = str(self._entity(name)["LogicalName"])
        if logical not in self._attributes:
            columns = []
            for a in self.client.attributes(logical):
                kind, attribute = str(a.get("AttributeType") or ""), a.get("LogicalName")
                if not isinstance(attribute, str) or a.get("AttributeOf") or a.get("IsValidForRead") is False:
                    continue
                if kind not in _NOT_SELECTABLE:
                    columns.append(_Column(attribute, attribute, arrow_type(kind), kind))
            self._attributes[logical] = columns
        return self._attributes[logical]

    def _columns(self, name: str, wanted: list[str] | None) -> list[_Column]:
        every = self._all_columns(name)
        if wanted is None:
            return list(every)
        by_name = {c.attribute.lower(): c for c in every}
        columns = []
        for column in wanted:
            found = by_name.get(column.lower()) or by_name.get(_lookup_attribute(column))
            if found is None:
                known = ", ".join(sorted(by_name)[:30])
                raise DynamicsQueryRejected(
                    f"{name} has no readable attribute {column!r}: fix the source connection's columns (its "
                    f"attributes: {known}...)."
                )
            columns.append(_Column(column, found.attribute, found.type, found.original_type))
        return columns

    def _plan(self, request: ReadRequest) -> _Plan:
        name = request.params.get("tableName")
        if not name:
            raise DynamicsQueryRejected("The source connection has no tableName: set params.tableName.")
        columns = self._columns(str(name), _wanted(request.params.get("columns")))
        if request.key_columns is not None:  # row keys, then the delta (connectors/base.py)
            columns += self._columns(str(name), list(request.key_columns))
            columns.append(self._delta_column(str(name), request.delta_column or DEFAULT_DELTA))
        outputs = len(columns)
        start, end = utc(request.window_start), utc(request.window_end)
        delta: int | None = None
        where = None
        if start is not None or end is not None:
            delta_column = self._delta_column(str(name), request.delta_column or DEFAULT_DELTA)
            delta = next((i for i, c in enumerate(columns) if c.attribute == delta_column.attribute), None)
            if delta is None:
                columns.append(delta_column)
                delta = len(columns) - 1
            where = _where(delta_column, start, end)
        select = list(dict.fromkeys(c.property for c in columns))
        entity_set = str(self._entity(str(name))["EntitySetName"])
        return _Plan(entity_set, select, where, columns, outputs, delta, start, end)

    def _delta_column(self, name: str, wanted: str) -> _Column:
        column = self._columns(name, [wanted])[0]
        if column.original_type != "DateTime":
            raise DynamicsQueryRejected(
                f"Delta column {wanted!r} of {name} is a {column.original_type} attribute: incremental reads "
                "need a DateTime attribute such as modifiedon."
            )
        return column


# -- building batches ----------------------------------------------------------------------------------


def _label(entity: dict[str, Any]) -> str | None:
    display = entity.get("DisplayName")
    label = (display.get("UserLocalizedLabel") or {}).get("Label") if isinstance(display, dict) else None
    return label if isinstance(label, str) else None


def _lookup_attribute(name: str) -> str:
    match = re.fullmatch(r"_(\w+)_value", name.lower())
    return match.group(1) if match else ""


def _wanted(columns: Any) -> list[str] | None:
    if not columns:
        return None
    if not isinstance(columns, list):
        raise DynamicsQueryRejected('The source connection\'s columns must be a list of {"name": ...}.')
    names: list[str] = []
    for entry in columns:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            raise DynamicsQueryRejected("Every entry of the source connection's columns needs a name.")
        names.append(name)
    return list(dict.fromkeys(names))


def _where(column: _Column, start: datetime | None, end: datetime | None) -> str | None:
    """An OData filter that selects a superset of the window; batches are filtered exactly afterwards."""
    clauses = []
    if start is not None:
        clauses.append(f"{column.attribute} gt {_odata_datetime(start.replace(microsecond=0))}")
    if end is not None:
        upper = f"{column.attribute} le {_odata_datetime(ceil_second(end))}"
        # Rows whose delta is null belong to reads without a lower bound (connectors/base.py).
        clauses.append(upper if start is not None else f"({upper} or {column.attribute} eq null)")
    return " and ".join(clauses) or None


def _odata_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _batch(plan: _Plan, chunk: list[list[Any]]) -> pa.RecordBatch:
    arrays = [_array(values, column) for values, column in zip(chunk, plan.columns, strict=True)]
    return window_batch(arrays, plan.schema, plan.delta, plan.start, plan.end)


def _array(values: Sequence[Any], column: _Column) -> pa.Array:
    try:
        return typed_array(values, column.type, _text)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise DynamicsProtocolError(
            f"Dynamics returned a value for {column.attribute} that is not a valid {column.original_type} "
            f"({str(exc)[:200]})."
        ) from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)

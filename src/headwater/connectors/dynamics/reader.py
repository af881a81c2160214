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
default (runtime/lookback.py). Planning, paging into batches and the exact window filter are the shared
reader's (connectors/httpapi.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from headwater.connectors.arrowing import TIMESTAMP, ceil_second
from headwater.connectors.base import ExploreItem, ReadRequest
from headwater.connectors.dynamics.client import DynamicsClient
from headwater.connectors.dynamics.config import DynamicsConfig
from headwater.connectors.dynamics.errors import DynamicsProtocolError, DynamicsQueryRejected
from headwater.connectors.http import RetryPolicy
from headwater.connectors.httpapi import ApiColumn, ApiPlan, HttpApiConnector, Records

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


class DynamicsConnector(HttpApiConnector[DynamicsClient]):
    """Reads one Dynamics environment. ``retry`` tunes the client's retries (tests make them fast)
    and ``page_size`` the records per page (Prefer: odata.maxpagesize; Dataverse's maximum is 5000)."""

    # modifiedon is stamped when the change starts; plug-ins, workflows and bulk imports commit later.
    default_lookback_seconds = 600.0
    service_name = "Dynamics"
    query_rejected = DynamicsQueryRejected
    protocol_error = DynamicsProtocolError

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
        self._attributes: dict[str, list[ApiColumn]] = {}

    def explore(self) -> list[ExploreItem]:
        items = [
            ExploreItem(name=e["LogicalName"], type="table", label=_label(e), path=e["LogicalName"])
            for e in self.client.entity_definitions()
            if isinstance(e.get("LogicalName"), str) and e.get("EntitySetName")
        ]
        return sorted(items, key=lambda item: item.name)

    def primary_key(self, params: dict[str, Any]) -> tuple[str, ...]:
        entity = self._entity(str(params.get("tableName") or ""))
        primary = entity.get("PrimaryIdAttribute") or f"{entity['LogicalName']}id"
        return (str(primary),)

    # -- what the shared reader asks (connectors/httpapi.py) -------------------------------------------

    def pages(self, plan: ApiPlan, request: ReadRequest) -> Iterator[Records]:
        limit = request.options.get("limit")
        top = limit if isinstance(limit, int) and limit > 0 else None
        entity_set = str(self._entity(plan.name)["EntitySetName"])
        return self.client.query(entity_set, plan.selected, plan.where, top)

    def columns(self, name: str, wanted: list[str] | None) -> list[ApiColumn]:
        every = self._all_columns(name)
        if wanted is None:
            return list(every)
        by_name = {c.source.lower(): c for c in every}
        columns = []
        for column in wanted:
            found = by_name.get(column.lower()) or by_name.get(_lookup_attribute(column))
            if found is None:
                known = ", ".join(sorted(by_name)[:30])
                raise DynamicsQueryRejected(
                    f"{name} has no readable attribute {column!r}: fix the source connection's columns (its "
                    f"attributes: {known}...)."
                )
            columns.append(replace(found, name=column))
        return columns

    def delta_column(self, name: str, wanted: str | None) -> ApiColumn:
        wanted = wanted or DEFAULT_DELTA
        column = self.columns(name, [wanted])[0]
        if column.original_type != "DateTime":
            raise DynamicsQueryRejected(
                f"Delta column {wanted!r} of {name} is a {column.original_type} attribute: incremental reads "
                "need a DateTime attribute such as modifiedon."
            )
        return column

    def window_filter(self, column: ApiColumn, start: datetime | None, end: datetime | None) -> str:
        """An OData filter that selects a superset of the window; batches are filtered exactly after."""
        clauses = []
        if start is not None:
            clauses.append(f"{column.source} gt {_odata_datetime(start.replace(microsecond=0))}")
        if end is not None:
            upper = f"{column.source} le {_odata_datetime(ceil_second(end))}"
            # Rows whose delta is null belong to reads without a lower bound (connectors/base.py).
            clauses.append(upper if start is not None else f"({upper} or {column.source} eq null)")
        return " and ".join(clauses)

    @staticmethod
    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    # -- metadata ------------------------------------------------------------------------------------

    def _entity(self, name: str) -> dict[str, Any]:
        if name not in self._entities:
            self._entities[name] = self.client.entity(name)
        return self._entities[name]

    def _all_columns(self, name: str) -> list[ApiColumn]:
        logical = str(self._entity(name)["LogicalName"])
        if logical not in self._attributes:
            columns = []
            for a in self.client.attributes(logical):
                kind, attribute = str(a.get("AttributeType") or ""), a.get("LogicalName")
                if not isinstance(attribute, str) or a.get("AttributeOf") or a.get("IsValidForRead") is False:
                    continue
                if kind not in _NOT_SELECTABLE:
                    columns.append(_column(attribute, kind))
            self._attributes[logical] = columns
        return self._attributes[logical]


def _column(attribute: str, kind: str) -> ApiColumn:
    """A column of ``attribute``; lookups are read from their ``_{name}_value`` property."""
    key = f"_{attribute}_value" if kind in _LOOKUPS else attribute
    return ApiColumn(attribute, attribute, key, arrow_type(kind), kind)


def _label(entity: dict[str, Any]) -> str | None:
    display = entity.get("DisplayName")
    label = (display.get("UserLocalizedLabel") or {}).get("Label") if isinstance(display, dict) else None
    return label if isinstance(label, str) else None


def _lookup_attribute(name: str) -> str:
    match = re.fullmatch(r"_(\w+)_value", name.lower())
    return match.group(1) if match else ""


def _odata_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")

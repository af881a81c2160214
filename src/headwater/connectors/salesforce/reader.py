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
Row keys: ``Id``; incremental runs re-read 10 minutes before their window by default (runtime/lookback.py).
Planning, paging into batches and the exact window filter are the shared reader's (connectors/httpapi.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import orjson
import pyarrow as pa

from headwater.connectors.arrowing import TIMESTAMP, ceil_second
from headwater.connectors.base import ExploreItem, ReadRequest
from headwater.connectors.http import RetryPolicy
from headwater.connectors.httpapi import ApiColumn, ApiPlan, HttpApiConnector, Records
from headwater.connectors.salesforce.client import SalesforceClient
from headwater.connectors.salesforce.config import SalesforceConfig
from headwater.connectors.salesforce.errors import (
    SalesforceObjectNotFound,
    SalesforceProtocolError,
    SalesforceQueryRejected,
)

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.settings import Settings

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


class SalesforceConnector(HttpApiConnector[SalesforceClient]):
    """Reads one Salesforce org. ``retry`` tunes the client's retries (tests make them fast) and
    ``page_size`` the records per query page (200..2000, Salesforce's default and maximum 2000)."""

    # SystemModstamp is the transaction's start: a long transaction or a Bulk API job makes rows visible
    # minutes after their stamp (Airbyte's Salesforce source re-reads 10 minutes for the same reason).
    default_lookback_seconds = 600.0
    service_name = "Salesforce"
    query_rejected = SalesforceQueryRejected
    protocol_error = SalesforceProtocolError

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

    def primary_key(self, params: dict[str, Any]) -> tuple[str, ...]:
        return ("Id",)  # every sObject has one

    # -- what the shared reader asks (connectors/httpapi.py) -------------------------------------------

    def pages(self, plan: ApiPlan, request: ReadRequest) -> Iterator[Records]:
        return self.client.query(self._soql(plan, request))

    def columns(self, name: str, wanted: list[str] | None) -> list[ApiColumn]:
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

    def delta_column(self, name: str, wanted: str | None) -> ApiColumn:
        fields = {c.source: c for c in self.columns(name, None)}
        if wanted is None:
            wanted = next((d for d in _DEFAULT_DELTAS if d in fields), None)
            if wanted is None:
                raise SalesforceQueryRejected(
                    f"{name} has neither SystemModstamp nor LastModifiedDate: name the flow's delta column."
                )
        column = self.columns(name, [wanted])[0]
        if column.original_type not in ("datetime", "date"):
            raise SalesforceQueryRejected(
                f"Delta column {wanted!r} of {name} is a {column.original_type} field: incremental reads "
                "need a datetime or date field such as SystemModstamp or LastModifiedDate."
            )
        return column

    def window_filter(self, column: ApiColumn, start: datetime | None, end: datetime | None) -> str:
        """A SOQL condition that selects a superset of the window; batches are filtered exactly after."""
        clauses = []
        if start is not None:
            if column.original_type == "date":
                clauses.append(f"{column.source} >= {start.date().isoformat()}")
            else:
                clauses.append(f"{column.source} > {_soql_datetime(start.replace(microsecond=0))}")
        if end is not None:
            if column.original_type == "date":
                upper = f"{column.source} <= {end.date().isoformat()}"
            else:
                upper = f"{column.source} <= {_soql_datetime(ceil_second(end))}"
            # Rows whose delta is null belong to reads without a lower bound (connectors/base.py).
            clauses.append(upper if start is not None else f"({upper} OR {column.source} = null)")
        return " AND ".join(clauses)

    @staticmethod
    def text(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict | list):
            return orjson.dumps(value).decode()  # compound fields (address, location)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    # -- SOQL ----------------------------------------------------------------------------------------

    def _describe(self, name: str) -> dict[str, Any]:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise SalesforceQueryRejected(
                f"tableName {name!r} is not a Salesforce object name (e.g. Contact, or Custom__c): fix the "
                "source connection's tableName."
            )
        if name not in self._describes:
            self._describes[name] = self.client.describe(name)
        return self._describes[name]

    def _soql(self, plan: ApiPlan, request: ReadRequest) -> str:
        selected = plan.selected
        where = f" WHERE {plan.where}" if plan.where else ""
        soql = f"SELECT {', '.join(selected)} FROM {self._describe(plan.name).get('name', plan.name)}{where}"
        limit = request.options.get("limit")
        if isinstance(limit, int) and limit > 0:
            soql += f" LIMIT {limit}"
        if len(quote_plus(soql)) > _MAX_QUERY_URL:
            raise SalesforceQueryRejected(
                f"Reading {len(selected)} fields of {plan.name} makes a query longer than Salesforce accepts "
                "in one REST request: list only the columns you need in the source connection's columns."
            )
        return soql


def _column(name: str, described: dict[str, Any]) -> ApiColumn:
    kind = str(described.get("type") or "string")
    field = str(described["name"])
    return ApiColumn(name, field, field, arrow_type(kind), kind, str(described.get("label") or name))


def _soql_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")

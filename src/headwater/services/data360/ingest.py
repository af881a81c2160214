"""The Ingestion API on data streams: server-to-server events and streaming inserts, validation, deletes.

Callers authenticate with an ingestion token (``services.identity.verify_ingestion_token``); the token
names the organization and data space (sandbox) whose data streams receive the records. A request is
checked whole before anything is published: one bad record refuses the request and nothing is kept.
Accepted records go to their flows' streams with ``Streams.publish`` (durable when it returns), as
raw records (the flow's mapping set shapes them) or as ``{"key": id}`` delete records.

Record rules: every field the event's schema marks required (the primary key and the six mandatory
fields always are) is present and not blank; no field outside the schema; values match the field's data
type (Text, Email, Phone, Url: strings; Number, Percent, Currency: numbers; Boolean: true/false; Date:
``YYYY-MM-DD``; DateTime: ISO 8601 with a time, e.g. ``2024-05-01T10:00:00.000Z``).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from headwater.errors import BadRequest, Forbidden, NotFound, Transient, Unauthenticated, ValidationFailed
from headwater.services.data360.apps import INGEST_SCOPE
from headwater.services.data360.lookup import EventRoute, IngestLookup
from headwater.services.ids import now_ms
from headwater.services.runs import iso
from headwater.stores.metadata import Scope

if TYPE_CHECKING:
    from headwater.services.cache import TtlCache
    from headwater.services.data360.identity import Data360Identity, IngestPrincipal
    from headwater.services.streaming import Streams
    from headwater.stores.metadata import Org

log = logging.getLogger(__name__)
CODE = "INGEST-1422-400"
UNAVAILABLE = "INGEST-1503-503"  # the streaming log did not take the records: retry the request
MAX_BODY = 200 * 1024
MAX_DELETES = 200
MAX_ERRORS = 100
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STRINGS = frozenset({"Text", "Email", "Phone", "Url"})
NUMBERS = frozenset({"Number", "Percent", "Currency"})
MISMATCH = "Bad Request: JSON is properly formatted but has a mismatch with Schema."


class SchemaMismatch(ValidationFailed):
    """A 400 carrying both Headwater's error shape and the Ingestion API's fields (``timestamp``,
    ``error``, ``message``, ``path``, ``tenantId``, ``internalErrorCode``, ``validationReport``)."""

    def __init__(self, errors: list[dict[str, str]], uri: str, tenant_id: str, records: int) -> None:
        super().__init__(errors, code=CODE, detail=f"{MISMATCH} {_summary(errors)}")
        self.uri, self.tenant_id, self.records = uri, tenant_id, records

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        failed = {e["record"] for e in self.errors if "record" in e}
        return {
            **super().body(request_id),
            "timestamp": iso(now_ms()),
            "error": "Bad Request",
            "message": MISMATCH,
            "path": f"uri={self.uri}",
            "tenantId": self.tenant_id,
            "internalErrorCode": "COMMON_ERROR_GENERIC",
            "validationReport": {
                "records": self.records,
                "failedRecords": len(failed),
                "failures": [
                    {
                        "recordIndex": int(e["record"]) if "record" in e else None,
                        "field": e.get("field"),
                        "reason": e["message"],
                    }
                    for e in self.errors
                ],
            },
        }


def _summary(errors: list[dict[str, str]]) -> str:
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['path']}: {first['message']}{more}"


class Ingestion:
    def __init__(
        self,
        identity: Data360Identity,
        orgs: TtlCache[str, Org | None],
        streams: Streams,
        lookup: IngestLookup,
    ) -> None:
        self.identity = identity
        self.orgs = orgs
        self.streams = streams
        self.lookup = lookup

    # --- authentication ---
    def principal(self, authorization: str | None, client: str | None = None) -> IngestPrincipal:
        """The caller of an ingestion endpoint, from ``Authorization: Bearer <ingestion token>``, calling
        from the address ``client`` (which the token's app's IP policy must allow)."""
        if not authorization:
            raise Unauthenticated(
                "The Authorization header is missing: send 'Authorization: Bearer <token>' with an "
                "ingestion token from POST /services/a360/token.",
                code="INGEST-1401-401",
                report={"header": "Authorization"},
            )
        scheme, _, token = authorization.partition(" ")
        principal = (
            self.identity.verify_ingestion_token(token.strip())
            if scheme.lower() == "bearer" and token.strip()
            else None
        )
        if principal is None:
            raise Unauthenticated(
                "The JWT is invalid or expired: get a new ingestion token (POST /services/a360/token).",
                code="INGEST-1402-401",
                report={"header": "Authorization"},
            )
        if INGEST_SCOPE not in principal.scopes:  # a token for the Query API only (cdp_query_api)
            raise Forbidden(
                "This Data 360 token lacks the cdp_ingest_api scope: add it to the external client app's "
                "scopes and get a new token.",
                code="INGEST-1403-403",
                report={"header": "Authorization"},
            )
        refusal = self.identity.ingestion_refusal(principal, client)
        if refusal:
            raise Forbidden(refusal, code="INGEST-1403-403", report={"header": "Authorization"})
        return principal

    # --- server-to-server events ---
    def check_events(self, scope: Scope, source_id: str, body: Any) -> dict[str, list[dict[str, Any]]]:
        """``{"events": [...]}`` of ``POST /server/events/{appSourceId}``: the records per flow id."""
        source = self.lookup.source(scope, source_id)
        if source is None:
            raise NotFound(
                f"No data stream of this data space receives events of Source ID {source_id!r}: deploy a "
                "data stream from the connector in the data space your token is for.",
                code="INGEST-1404-404",
                report={"appSourceId": source_id},
            )
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise ValidationFailed(
                [{"path": "events", "message": "is required: a non-empty list of events"}], code=CODE
            )
        errors: list[dict[str, str]] = []
        out: dict[str, list[dict[str, Any]]] = {}
        for index, event in enumerate(events):
            where = f"events[{index}]"
            kind = event.get("eventType") if isinstance(event, dict) else None
            route = source.events.get(kind) if isinstance(kind, str) else None
            if route is None:
                known = ", ".join(source.events) or "none"
                message = (
                    "must be an object"
                    if not isinstance(event, dict)
                    else f"eventType {kind!r} has no data stream in this data space "
                    f"(deployed events: {known})"
                )
                errors.append(
                    {"path": f"{where}.eventType" if isinstance(event, dict) else where, "message": message}
                )
                continue
            found = record_errors(route, event, where)
            category = event.get("category")
            if isinstance(category, str) and category.lower() != route.category.lower():
                found.append(
                    {
                        "path": f"{where}.category",
                        "message": f"is {category!r} but event {kind!r} is {route.category}",
                    }
                )
            errors += found
            if len(errors) >= MAX_ERRORS:
                break
            out.setdefault(route.flow_id, []).append(event)
        if errors:
            raise ValidationFailed(errors[:MAX_ERRORS], code=CODE)
        return out

    # --- the Ingestion API's streaming object endpoints ---
    def route(self, scope: Scope, source: str, obj: str) -> EventRoute:
        route = self.lookup.route(scope, source, obj)
        if route is None:
            raise NotFound(
                f"No data stream of this data space receives object {obj!r} of source {source!r}: check "
                "the source (a connector's developer name or Source ID), the object (an event's developer "
                "name) and the data space of your token.",
                code="INGEST-1404-404",
                report={"source": source, "object": obj},
            )
        return route

    def check_data(
        self, scope: Scope, source: str, obj: str, body: Any, uri: str
    ) -> tuple[EventRoute, list[Any]]:
        """``{"data": [...]}``: every record valid, else SchemaMismatch naming record index and field."""
        route = self.route(scope, source, obj)
        records = body.get("data") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise ValidationFailed(
                [{"path": "data", "message": "is required: a non-empty list of records"}], code=CODE
            )
        errors: list[dict[str, str]] = []
        for index, record in enumerate(records):
            errors += record_errors(route, record, f"data[{index}]", index)
            if len(errors) >= MAX_ERRORS:
                break
        if errors:
            org = self.orgs.get(scope.org_id)
            raise SchemaMismatch(errors[:MAX_ERRORS], uri, org.tenant_id if org else "", len(records))
        return route, records

    def check_deletes(self, scope: Scope, source: str, obj: str, ids: Any, path: str) -> EventRoute:
        route = self.route(scope, source, obj)
        if not route.deletes:
            raise ValidationFailed(
                [
                    {
                        "path": path,
                        "message": f"{route.category} object {obj!r} keeps every record it receives (its "
                        "data stream deduplicates by primary key); only Profile objects accept deletes",
                    }
                ],
                code=CODE,
            )
        if not isinstance(ids, list) or not ids:
            raise ValidationFailed(
                [
                    {
                        "path": path,
                        "message": 'is required: the primary keys to delete (?ids=a,b or {"ids": [...]})',
                    }
                ],
                code=CODE,
            )
        if len(ids) > MAX_DELETES:
            raise ValidationFailed(
                [{"path": path, "message": f"has {len(ids)} ids; at most {MAX_DELETES} per request"}],
                code=CODE,
            )
        bad = [i for i, v in enumerate(ids) if not isinstance(v, str) or not v.strip()]
        if bad:
            raise ValidationFailed(
                [{"path": f"{path}[{i}]", "message": "must be a non-empty primary key string"} for i in bad],
                code=CODE,
            )
        return route

    async def publish(
        self, scope: Scope, flow_id: str, records: list[dict[str, Any]], kind: str = "raw"
    ) -> None:
        """Make ``records`` durable in the flow's streaming log. :class:`Transient` (503) when the log
        cannot take them (unreachable, its disk failing, closing): nothing was acknowledged, so the
        caller retries the whole request, as a streaming inlet's client does."""
        try:
            await self.streams.publish(scope, flow_id, records, kind=kind)
        except (OSError, RuntimeError) as exc:  # LogUnavailable is an OSError; a closed log a RuntimeError
            log.warning("streaming log of flow %s did not take %d records: %r", flow_id, len(records), exc)
            raise Transient(
                "The streaming log is not available; nothing was accepted. Retry with backoff.",
                code=UNAVAILABLE,
            ) from exc


def parse_ids(query: str | None, body: Any) -> tuple[list[Any] | None, str]:
    """Delete ids from ``?ids=a,b`` or a body ``{"ids": [...]}`` (and the name of what was used)."""
    if query is not None:
        return [i.strip() for i in query.split(",") if i.strip()], "ids"
    if isinstance(body, dict) and "ids" in body:
        value = body["ids"]
        return (value if isinstance(value, list) else None), "ids"
    if body is not None and not isinstance(body, dict):
        raise BadRequest('The body must be {"ids": [...]}.', code="INGEST-1400-400")
    return None, "ids"


def record_errors(
    route: EventRoute, record: Any, where: str, index: int | None = None
) -> list[dict[str, str]]:
    """Every problem of one record against its event's fields."""
    extra = {"record": str(index)} if index is not None else {}
    if not isinstance(record, dict):
        return [{"path": where, "message": "must be a JSON object", **extra}]
    errors: list[dict[str, str]] = []
    for key in record:
        if key not in route.fields:
            errors.append(
                {
                    "path": f"{where}.{key}",
                    "message": f"is not a field of {route.event!r} (add it to the connector's schema with "
                    "Update Schema, or leave it out)",
                    "field": key,
                    **extra,
                }
            )
    for name, spec in route.fields.items():
        problem = value_error(spec, record.get(name), route.event)
        if problem:
            errors.append({"path": f"{where}.{name}", "message": problem, "field": name, **extra})
    return errors


def value_error(spec: dict[str, Any], value: Any, event: str) -> str | None:
    """Why ``value`` does not fit the field, or None."""
    kind, name = spec["dataType"], spec["developerName"]
    if value is None or value == "":
        return f"is required (field {name!r} of {event!r})" if spec["isDataRequired"] else None
    if kind in STRINGS:
        ok = isinstance(value, str)
    elif kind in NUMBERS:
        ok = _is_number(value)
    elif kind == "Boolean":
        ok = isinstance(value, bool)
    elif kind == "Date":
        ok = isinstance(value, str) and _is_date(value)
    else:
        ok = isinstance(value, str) and _is_datetime(value)
    if ok:
        return None
    return f"{_short(value)} is not a valid {kind} ({_EXPECT[kind]})"


_EXPECT = {
    **{k: "a string" for k in STRINGS},
    **{k: "a JSON number" for k in NUMBERS},
    "Boolean": "true or false",
    "Date": "YYYY-MM-DD",
    "DateTime": "ISO 8601 such as 2024-05-01T10:00:00.000Z",
}


def _is_number(value: Any) -> bool:
    """A JSON number a double holds: no booleans, NaN, infinities or integers beyond 1e308."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 10**308
    return isinstance(value, float) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    if "T" not in text and " " not in text:
        return False
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        datetime.fromisoformat(candidate)
    except ValueError:
        return False
    return True


def typed(spec: dict[str, Any], text: str) -> Any:
    """A CSV cell as the field's JSON value (checked beforehand by :func:`cell_error`)."""
    if text == "":
        return None
    kind = spec["dataType"]
    if kind in NUMBERS:
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == "Boolean":
        return text.strip().lower() in ("true", "1")
    return text


def cell_error(spec: dict[str, Any], text: str, event: str) -> str | None:
    """Why a CSV cell does not fit the field, or None."""
    if text == "":
        return value_error(spec, None, event)
    kind = spec["dataType"]
    if kind in NUMBERS:
        try:
            ok = math.isfinite(float(text))
        except ValueError:
            ok = False
        return None if ok else f"{_short(text)} is not a valid {kind} (a number)"
    if kind == "Boolean":
        return (
            None
            if text.strip().lower() in ("true", "false", "1", "0")
            else f"{_short(text)} is not true or false"
        )
    return value_error(spec, text, event)

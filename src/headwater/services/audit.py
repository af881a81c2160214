"""The audit log: every write through the platform API, allowed, refused or failed, as one event.

A finished call becomes an :class:`AuditEvent` (:func:`event_for`): who (user, API client, role), where
(organization, and sandbox unless the permission is organization-wide), what (action, asset type and id,
the permission it needed) and how it ended (``allow`` for a 2xx, ``deny`` for a permission refusal,
``fail`` for anything else). Events render in the shape of AEP's Audit Query API (:func:`render`), whose
``property=`` filters :func:`parse_query` turns into the store's ``(field, op, value)`` triples.

The middleware that watches calls is edge/audit.py; the route that reads events is api/routes/audit.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from headwater.errors import BadRequest
from headwater.services import access, listing
from headwater.services.ids import new_uuid, now_ms
from headwater.services.tenancy import Actor
from headwater.stores.metadata import AUDIT_FILTERS, AuditEvent, MetadataStore

log = logging.getLogger("headwater.audit")

MAX_GROUP = 500  # events per audit commit
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DENIED = "HW-1403-403"  # the code of access.denied(): the only 403 that is a Deny
ACTIONS = {
    "create": "Create",
    "update": "Update",
    "delete": "Delete",
    "execute": "Execute",
    "signin": "Sign in",
    "signout": "Sign out",
}
SIGN_IN = "sign-in"  # the "permission" of console sign-in and sign-out events (everyone may try)
OUTCOMES = {"allow": "Allow", "deny": "Deny", "fail": "Failure"}
_UPDATES = frozenset({"PUT", "PATCH"})
_EXECUTES = frozenset({"action", "replay", "test", "runs"})  # last segment of a POST that runs something
_VERBS = frozenset({"action", "actions", "replay", "test", "preview", "schema", "files"})
# AEP groups permissions under a resource (the Permissions UI's categories); the event names it.
PERMISSION_RESOURCES = {
    access.MANAGE_SOURCES: "Sources",
    access.MANAGE_DATAFLOWS: "Dataflows",
    access.RUN_DATAFLOWS: "Dataflows",
    access.MANAGE_SCHEMAS: "Data Modeling",
    access.MANAGE_DATASETS: "Data Management",
    access.MANAGE_DESTINATIONS: "Destinations",
    access.MANAGE_APPS: "Client Apps",
    access.MANAGE_USERS: "User Management",
    access.MANAGE_SANDBOXES: "Sandbox Administration",
    access.VIEW_AUDIT_LOG: "Data Governance",
    SIGN_IN: "Sign-in",
}
# Column widths of the audit_events table (stores/metadata/tables.py): client input is cut to fit,
# so that no request can make the audit write fail.
_WIDTH = {
    "path": 2000,
    "asset_id": 400,
    "user": 200,
    "request_id": 64,
    "address": 64,
    "asset_type": 60,
    "failure_code": 40,
}


@dataclass(frozen=True)
class Call:
    """What the middleware saw of one finished platform write."""

    actor: Actor
    permission: str  # the route's (request.state.permission); a Deny's body may name another
    method: str
    template: str  # the matched route's path template, e.g. /data/foundation/flowservice/flows/{ident}
    path: str
    path_params: Mapping[str, Any]
    status_code: int
    answer: Any  # the parsed JSON answer, or None
    address: str | None
    request_id: str


def event_for(call: Call) -> AuditEvent:
    """The event recording ``call``, stamped now."""
    outcome = outcome_of(call.status_code, call.answer)
    permission = call.permission
    if outcome == "deny":
        permission = str(call.answer["report"]["permission"])
    org_wide = permission in access.ORG_PERMISSIONS
    return AuditEvent(
        id=new_uuid(),
        org_id=call.actor.org.id,
        sandbox_name=None if org_wide else call.actor.sandbox.name,
        at=now_ms(),
        user=_clip(call.actor.user, "user"),
        client_id=call.actor.client_id,
        role=call.actor.role,
        action=action_of(call.method, call.template),
        permission=permission,
        asset_type=_clip(asset_type_of(call.template), "asset_type"),
        asset_id=_clip_optional(asset_id_of(call.path_params, call.status_code, call.answer), "asset_id"),
        method=call.method,
        path=_clip(call.path, "path"),
        status_code=call.status_code,
        outcome=outcome,
        address=_clip_optional(call.address, "address"),
        request_id=_clip(call.request_id, "request_id"),
        failure_code=None
        if outcome == "allow"
        else _clip_optional(failure_code_of(call.answer), "failure_code"),
    )


def session_event(
    org_id: str,
    user: str,
    user_id: str | None,
    action: str,
    status_code: int,
    address: str | None,
    failure_code: str | None = None,
) -> AuditEvent:
    """A console sign-in or sign-out of ``user`` (``action`` signin or signout): an organization-wide
    event whose asset is the user; ``failure_code`` says why a sign-in failed (bad credentials,
    throttled)."""
    outcome = "allow" if 200 <= status_code < 400 else "fail"
    return AuditEvent(
        id=new_uuid(),
        org_id=org_id,
        sandbox_name=None,
        at=now_ms(),
        user=_clip(user, "user"),
        client_id="headwater-console",
        role="",
        action=action,
        permission=SIGN_IN,
        asset_type="sessions",
        asset_id=user_id,
        method="POST",
        path=f"/console/{'login' if action == 'signin' else 'logout'}",
        status_code=status_code,
        outcome=outcome,
        address=_clip_optional(address, "address"),
        request_id=new_uuid().replace("-", ""),
        failure_code=None if outcome == "allow" else failure_code,
    )


def failure_code_of(answer: Any) -> str | None:
    """The code of an error answer (``report.code``, or a gateway error's ``error_code``)."""
    if not isinstance(answer, dict):
        return None
    report = answer.get("report")
    code = report.get("code") if isinstance(report, dict) else answer.get("error_code")
    return str(code) if code is not None else None


def action_of(method: str, template: str) -> str:
    """create (POST), update (PUT, PATCH), delete (DELETE); execute for a POST that runs something
    (``…/action``, ``…/replay``, ``…/test``, ``…/runs``)."""
    if method == "DELETE":
        return "delete"
    if method in _UPDATES:
        return "update"
    return "execute" if template.rstrip("/").rsplit("/", 1)[-1] in _EXECUTES else "create"


def asset_type_of(template: str) -> str:
    """The collection a path template works on: the segment before ``{ident}``, else the last plain
    segment that is not a verb (``/targetConnections/test`` -> targetConnections)."""
    segments = [s for s in template.split("/") if s]
    for index, segment in enumerate(segments):
        if segment.startswith("{ident") and index > 0:
            return segments[index - 1]
    plain = [s for s in segments if not s.startswith("{") and s not in _VERBS]
    return plain[-1] if plain else "unknown"


def outcome_of(status_code: int, answer: Any) -> str:
    if 200 <= status_code < 300:
        return "allow"
    report = answer.get("report") if isinstance(answer, dict) else None
    if (
        status_code == 403
        and isinstance(report, dict)
        and report.get("code") == DENIED
        and isinstance(report.get("permission"), str)
    ):
        return "deny"
    return "fail"


def asset_id_of(path_params: Mapping[str, Any], status_code: int, answer: Any) -> str | None:
    """The ``ident`` path parameter, else the id a successful answer names: ``id``, ``$id`` or
    ``meta:altId`` of the object (or of a single ``items`` entry), or Catalog's ``["@/dataSets/{id}"]``."""
    ident = path_params.get("ident")
    if isinstance(ident, str) and ident:
        return ident
    if not 200 <= status_code < 300:
        return None
    if isinstance(answer, list) and answer and isinstance(answer[0], str) and answer[0].startswith("@/"):
        return answer[0].rsplit("/", 1)[-1] or None
    if isinstance(answer, dict):
        items = answer.get("items")
        if isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict):
            answer = items[0]
        for key in ("id", "$id", "meta:altId"):
            value = answer.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def record(store: MetadataStore, events: list[AuditEvent]) -> bool:
    """Append ``events`` in one commit; on failure log each whole and return False (the calls are
    answered anyway)."""
    try:
        store.append_audit(events)
    except Exception:
        for event in events:
            log.exception("could not write audit event %r", event)
        return False
    return True


class GroupCommit:
    """The audit writer of one server process: events whose calls finish while a commit is running go
    into the next commit together, so N concurrent writes cost about one audit commit, not N (each commit
    is an fsync). ``await add(event)`` returns once the event is stored (True) or its failure logged."""

    def __init__(self, write: Callable[[list[AuditEvent]], Awaitable[bool]]) -> None:
        self.write = write
        self.pending: list[tuple[AuditEvent, asyncio.Future[bool]]] = []
        self.flushing: asyncio.Task[None] | None = None

    async def add(self, event: AuditEvent) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((event, done))
        if self.flushing is None:
            self.flushing = asyncio.create_task(self._flush())
        return await asyncio.shield(done)  # a client that hangs up does not cancel the others' commit

    async def _flush(self) -> None:
        try:
            while self.pending:
                group, self.pending = self.pending[:MAX_GROUP], self.pending[MAX_GROUP:]
                try:
                    stored = await self.write([event for event, _ in group])
                except Exception:  # record() logs store failures; this is anything around it
                    log.exception("could not write %d audit events", len(group))
                    stored = False
                for _, done in group:
                    if not done.done():
                        done.set_result(stored)
        finally:
            self.flushing = None


def render(event: AuditEvent) -> dict[str, Any]:
    """An event in the shape of AEP's Audit Query API."""
    status = OUTCOMES.get(event.outcome, event.outcome)
    return {
        "id": event.id,
        "requestId": event.request_id,
        "permissionResource": PERMISSION_RESOURCES.get(event.permission, event.asset_type),
        "permissionType": "WRITE",
        "permission": event.permission,
        "assetType": event.asset_type,
        "assetId": event.asset_id,
        "action": ACTIONS.get(event.action, event.action),
        "status": status,
        "statusCode": event.status_code,
        "failureCode": event.failure_code or "",
        "timestamp": timestamp(event.at),
        "imsOrgId": event.org_id,
        "sandboxName": event.sandbox_name,
        "userEmail": event.user,
        "clientId": event.client_id,
        "role": event.role,
        "method": event.method,
        "path": event.path,
        "clientIp": event.address,
    }


def timestamp(at_ms: int) -> str:
    """Epoch milliseconds as AEP writes them: ``2026-11-23T10:00:00.000+0000``."""
    seconds, millis = divmod(at_ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}+0000"


# --- reading: GET /data/foundation/audit/events ---
@dataclass(frozen=True)
class EventQuery:
    filters: list[tuple[str, str, Any]]
    limit: int = DEFAULT_LIMIT
    start: int = 0
    properties: tuple[str, ...] = ()  # as sent, for the links

    def href(self, base_path: str, start: int) -> str:
        pairs = [("limit", str(self.limit)), ("start", str(start))]
        pairs += [("property", p) for p in self.properties]
        return f"{base_path}?{urlencode(pairs)}"


_PROPERTY = re.compile(r"^\s*(?P<name>[A-Za-z]+)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>.*?)\s*$")
_LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPACED_OFFSET = re.compile(r"^(.*T[\d:.]+) (\d\d:?\d\d)$")


def parse_query(params: Iterable[tuple[str, str]]) -> EventQuery:
    """``limit`` (1..1000, default 50), ``start`` (offset) and repeated ``property=NAME OP VALUE``
    filters, all of which must hold; anything else is ignored. A bad one is a 400 naming the parameter."""
    filters: list[tuple[str, str, Any]] = []
    properties: list[str] = []
    limit, start = DEFAULT_LIMIT, 0
    for key, value in params:
        if key == "limit":
            limit = listing.int_param("limit", value, 1, MAX_LIMIT, "AUDIT")
        elif key == "start":
            start = listing.int_param("start", value, 0, 10**9, "AUDIT")
        elif key == "property":
            filters.append(parse_property(value))
            properties.append(value)
    return EventQuery(filters, limit, start, tuple(properties))


def parse_property(text: str) -> tuple[str, str, Any]:
    match = _PROPERTY.match(text)
    if match is None:
        raise _bad(f"property filter {text!r} is not NAME OP VALUE (e.g. action==create).")
    name, op, raw = match["name"], match["op"], match["value"]
    known = _PROPERTIES.get(name.lower())
    if known is None:
        raise _bad(f"property {name!r} cannot be filtered on; use one of {', '.join(_NAMES)}.", name)
    field_name, convert = known
    allowed = AUDIT_FILTERS[field_name]
    if op not in allowed:
        raise _bad(f"property {name!r} takes the operators {' '.join(allowed)}, not {op}.", name)
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        raw = raw[1:-1]
    if not raw or "\x00" in raw:
        raise _bad(f"property {name!r} needs a value (without NUL characters).", name)
    try:
        value = convert(raw)
    except ValueError as exc:
        raise _bad(f"property {name!r}: {exc}", name) from None
    return field_name, op, value


def page(events: list[AuditEvent], total: int, query: EventQuery, base_path: str) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": query.href(base_path, query.start)}}
    if query.start + len(events) < total and events:
        links["next"] = {"href": query.href(base_path, query.start + query.limit)}
    return {
        "_embedded": {"events": [render(e) for e in events]},
        "_page": {"limit": query.limit, "start": query.start, "count": len(events), "totalElements": total},
        "_links": links,
    }


def _bad(detail: str, name: str | None = None) -> BadRequest:
    report = {"parameter": "property"} | ({"property": name} if name else {})
    return BadRequest(detail, code="AUDIT-1400-400", report=report)


def _text(raw: str) -> str:
    return raw


def _one_of(choices: Mapping[str, str]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        found = choices.get(raw.lower())
        if found is None:
            raise ValueError(f"must be one of {', '.join(sorted(set(choices)))}")
        return found

    return convert


def _status_code(raw: str) -> int:
    if not raw.isdigit() or not 100 <= int(raw) <= 599:
        raise ValueError("must be an HTTP status code (100-599)")
    return int(raw)


def _instant(raw: str) -> int:
    """Epoch milliseconds, or an ISO 8601 date or time (UTC unless it names an offset)."""
    if raw.isdigit():
        if int(raw) > _LATEST_MS:
            raise ValueError("is beyond the year 9999 in epoch milliseconds")
        return int(raw)
    raw = _SPACED_OFFSET.sub(r"\1+\2", raw)  # an unencoded "+0000" in a query string arrives as " 0000"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError("must be ISO 8601 (2026-11-23T10:00:00Z) or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_PROPERTIES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "action": ("action", _one_of({a: a for a in ACTIONS})),
    "status": ("outcome", _one_of({"allow": "allow", "deny": "deny", "failure": "fail", "fail": "fail"})),
    "user": ("user", _text),
    "useremail": ("user", _text),
    "clientid": ("client_id", _text),
    "role": ("role", _one_of({r.lower(): r for r in access.ROLES})),
    "assettype": ("asset_type", _text),
    "assetid": ("asset_id", _text),
    "permission": ("permission", _text),
    "sandboxname": ("sandbox_name", _text),
    "statuscode": ("status_code", _status_code),
    "timestamp": ("at", _instant),
}
_NAMES = (
    "action",
    "status",
    "user",
    "userEmail",
    "clientId",
    "role",
    "assetType",
    "assetId",
    "permission",
    "sandboxName",
    "statusCode",
    "timestamp",
)


def _clip(value: str, column: str) -> str:
    return value.replace("\x00", "")[: _WIDTH[column]]


def _clip_optional(value: str | None, column: str) -> str | None:
    return None if value is None else _clip(value, column)

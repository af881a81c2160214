"""Deploy requests for data streams: the connector, the chosen events, the data space and the refresh
cadence a request names, and the plan they make: the streams to create, or to extend with more events.

A request names its connector by id or developer name (``connectionId``, ``connectorId`` or Salesforce's
``connectorInfo.connectorDetails``), its events by developer name (``events`` or
``connectorInfo.connectorDetails.events``), its data space (``dataspace``, ``dataSpace``,
``dataLakeObjectInfo.dataspaceInfo[0].name`` or ``?dataspace=``; none or ``default`` is the ``prod``
sandbox) and optionally ``refreshCadenceSeconds`` (seconds for every stream, or per category
``{"Engagement": 60, "Profile": 0}``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import Conflict, ValidationFailed
from headwater.services.data360 import eventschema
from headwater.services.resources import require_object
from headwater.services.tenancy import SANDBOX_NAME, Actor
from headwater.stores.metadata import Resource, Sandbox

if TYPE_CHECKING:
    from headwater.services.cache import TtlCache

#: Finds a connector of the caller's sandbox by id or developer name (None when there is none).
FindConnector = Callable[[Actor, str], Resource | None]

CODE = "SSOT-1422-400"
DEFAULT_CADENCE = {"Engagement": 900, "Profile": 3600}
MAX_CADENCE = 86_400
DEFAULT_DATASPACE = "default"
DEFAULT_SANDBOX = "prod"


@dataclass
class Plan:
    """One data stream to create, or an existing one to extend with more events."""

    category: str
    events: list[dict[str, Any]]
    name: str
    label: str
    cadence: int
    existing: Resource | None = None


@dataclass
class Request:
    connector: Resource
    events: list[str]
    dataspace: str
    sandbox: Sandbox
    cadence: dict[str, int | None] = field(default_factory=dict)


class Planner:
    def __init__(
        self,
        sandboxes: TtlCache[tuple[str, str], Sandbox | None],
        find_connector: FindConnector,
        streams_in: Callable[[Actor], list[Resource]],
    ) -> None:
        self.sandboxes = sandboxes
        self.find_connector = find_connector
        self.streams_in = streams_in

    def request(self, actor: Actor, body: Any, dataspace: str | None) -> Request:
        body = require_object(body)
        errors: list[dict[str, str]] = []
        info = body.get("connectorInfo")
        details = info.get("connectorDetails") if isinstance(info, dict) else None
        if not isinstance(details, dict):
            details = {}
        connector = self._connector(actor, body, details, errors)
        events = self._events(body, details, connector, errors)
        space_name, sandbox = self._dataspace(actor, body, dataspace, errors)
        cadence = _cadence(body, errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert connector is not None and sandbox is not None
        return Request(connector, events, space_name, sandbox, cadence)

    def _connector(
        self, actor: Actor, body: dict[str, Any], details: dict[str, Any], errors: list[dict[str, str]]
    ) -> Resource | None:
        candidates = [
            ("connectionId", body.get("connectionId")),
            ("connectorId", body.get("connectorId")),
            ("connectorInfo.connectorDetails.id", details.get("id")),
            ("connectorInfo.connectorDetails.name", details.get("name")),
        ]
        path, ref = next(((p, v) for p, v in candidates if v is not None), ("connectionId", None))
        if not isinstance(ref, str) or not ref:
            errors.append(
                {
                    "path": path,
                    "message": "is required: the id or developer name of a server-to-server connector",
                }
            )
            return None
        connector = self.find_connector(actor, ref)
        if connector is None:
            errors.append({"path": path, "message": f"no connector {ref!r} in this sandbox"})
            return None
        if not (connector.doc.get("schema") or {}).get("events"):
            errors.append(
                {
                    "path": path,
                    "message": f"connector {connector.doc['name']!r} has no schema yet: upload its JSON "
                    "event-type schema first",
                }
            )
            return None
        return connector

    @staticmethod
    def _events(
        body: dict[str, Any],
        details: dict[str, Any],
        connector: Resource | None,
        errors: list[dict[str, str]],
    ) -> list[str]:
        path, value = (
            ("events", body["events"])
            if "events" in body
            else (
                "connectorInfo.connectorDetails.events",
                details.get("events"),
            )
        )
        if not isinstance(value, list) or not value:
            errors.append(
                {"path": path, "message": "is required: the developer names of the events to deploy"}
            )
            return []
        known = (
            {e["developerName"]: e for e in ((connector.doc.get("schema") or {}).get("events") or [])}
            if connector
            else {}
        )
        out: list[str] = []
        for index, item in enumerate(value):
            name = item.get("developerName") or item.get("name") if isinstance(item, dict) else item
            where = f"{path}[{index}]"
            if not isinstance(name, str) or not name:
                errors.append({"path": where, "message": "must be an event's developer name"})
            elif name in out:
                errors.append({"path": where, "message": f"event {name!r} is listed twice"})
            elif connector is not None and name not in known:
                errors.append(
                    {
                        "path": where,
                        "message": f"event {name!r} is not in connector {connector.doc['name']!r}'s schema "
                        f"(its events: {', '.join(known) or 'none'})",
                    }
                )
            else:
                out.append(name)
        return out

    def _dataspace(
        self, actor: Actor, body: dict[str, Any], query: str | None, errors: list[dict[str, str]]
    ) -> tuple[str, Sandbox | None]:
        lake = body.get("dataLakeObjectInfo")
        info = lake.get("dataspaceInfo") if isinstance(lake, dict) else None
        from_info = (
            info[0].get("name") if isinstance(info, list) and info and isinstance(info[0], dict) else None
        )
        candidates = [
            ("dataspace", body.get("dataspace")),
            ("dataSpace", body.get("dataSpace")),
            ("dataLakeObjectInfo.dataspaceInfo[0].name", from_info),
            ("?dataspace", query),
        ]
        path, value = next(((p, v) for p, v in candidates if v is not None), ("dataspace", None))
        try:
            sandbox = self.sandbox(actor, value, path)
        except ValidationFailed as exc:
            errors.extend(exc.errors)
            return str(value), None
        return (value if isinstance(value, str) and value else DEFAULT_DATASPACE), sandbox

    def sandbox(self, actor: Actor, dataspace: Any, path: str) -> Sandbox:
        if dataspace is not None and (
            not isinstance(dataspace, str)
            or not (dataspace == DEFAULT_DATASPACE or SANDBOX_NAME.match(dataspace))
        ):
            raise ValidationFailed(
                [{"path": path, "message": "must be a data space name: 'default' or a sandbox name"}],
                code=CODE,
            )
        name = DEFAULT_SANDBOX if dataspace in (None, DEFAULT_DATASPACE) else str(dataspace)
        sandbox = self.sandboxes.get((actor.org.id, name))
        if sandbox is None:
            raise ValidationFailed(
                [
                    {
                        "path": path,
                        "message": f"data space {dataspace!r} does not exist: a data space is a sandbox of "
                        "this organization ('default' is prod)",
                    }
                ],
                code=CODE,
            )
        return sandbox

    def plans(self, space: Actor, request: Request) -> list[Plan]:
        connector = request.connector
        schema_events = {e["developerName"]: e for e in connector.doc["schema"]["events"]}
        existing = [s for s in self.streams_in(space) if s.doc["connector"]["id"] == connector.id]
        deployed = {e["developerName"]: s for s in existing for e in s.doc["events"]}
        clashes = [n for n in request.events if n in deployed]
        if clashes:
            raise Conflict(
                "; ".join(
                    f"event {n!r} already flows into data stream {deployed[n].doc['name']!r}" for n in clashes
                )
                + f" in data space {request.dataspace!r}. An event has one data stream per data space.",
                code="SSOT-1409-409",
                report={
                    "events": [
                        {"event": n, "dataStreamId": deployed[n].id, "dataStream": deployed[n].doc["name"]}
                        for n in clashes
                    ]
                },
            )
        chosen = [schema_events[n] for n in request.events]
        name = connector.doc["name"]
        plans = [
            Plan(
                "Profile",
                [e],
                _stream_name(f"{name}_{e['developerName']}"),
                f"{connector.doc['label']} {e['masterLabel']}"[:80],
                _chosen(request.cadence, "Profile"),
            )
            for e in chosen
            if e["category"] == "Profile"
        ]
        engagement = [e for e in chosen if e["category"] == "Engagement"]
        if engagement:
            current = next((s for s in existing if s.doc["category"] == "Engagement"), None)
            plans.append(
                Plan(
                    "Engagement",
                    engagement,
                    current.doc["name"] if current else _stream_name(f"{name}_Engagement_Events"),
                    current.doc["label"] if current else f"{connector.doc['label']} Engagement Events"[:80],
                    current.doc["refreshCadenceSeconds"]
                    if current
                    else _chosen(request.cadence, "Engagement"),
                    current,
                )
            )
        return plans


# --- small rules ---
CADENCE_RULE = f"must be a whole number of seconds from 0 (continuous) to {MAX_CADENCE}"


def _valid_cadence(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CADENCE


def cadence_error(value: Any) -> str | None:
    return None if _valid_cadence(value) else CADENCE_RULE


def _cadence(body: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, int | None]:
    value = body.get("refreshCadenceSeconds")
    if value is None:
        return {}
    if isinstance(value, dict):
        out: dict[str, int | None] = {}
        for key, seconds in value.items():
            category = eventschema.CATEGORIES.get(str(key).lower())
            if category is None:
                errors.append(
                    {"path": f"refreshCadenceSeconds.{key}", "message": "must be Engagement or Profile"}
                )
            elif not _valid_cadence(seconds):
                errors.append({"path": f"refreshCadenceSeconds.{key}", "message": CADENCE_RULE})
            else:
                out[category] = seconds
        return out
    if not _valid_cadence(value):
        errors.append(
            {"path": "refreshCadenceSeconds", "message": CADENCE_RULE + " (or {Engagement, Profile})"}
        )
        return {}
    return {"Engagement": value, "Profile": value}


def _chosen(cadence: dict[str, int | None], category: str) -> int:
    value = cadence.get(category)
    return DEFAULT_CADENCE[category] if value is None else value


def _stream_name(base: str) -> str:
    """A developer name of at most 80 characters (longer ones end with a short hash)."""
    name = base.replace("__", "_")
    if len(name) <= 80:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:71]}_{digest}"

"""The lookup the ingestion endpoints use: (org, sandbox, Source ID or source name, event) -> the flow that
receives the event and the event's fields.

It reads the data stream records of one data space (sandbox) and keeps them for ``TTL`` seconds; a
process that changes a data stream drops its entry at once, other processes see the change within the
TTL. A source is known by its connector's Source ID (``/server/events/{appSourceId}``) and by its
developer name (``/api/v1/ingest/sources/{source}/...``), both immutable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.stores.metadata import Scope

if TYPE_CHECKING:
    from headwater.stores.metadata import MetadataStore

TTL = 2.0


@dataclass(frozen=True)
class EventRoute:
    """Where one event type of one source goes, and what its records must look like."""

    flow_id: str
    stream_id: str
    stream_name: str
    category: str
    source_id: str
    source_name: str
    event: str
    primary_key: str
    fields: dict[str, dict[str, Any]]  # developerName -> field spec (dataType, isDataRequired, ...)

    @property
    def required(self) -> list[str]:
        return [name for name, spec in self.fields.items() if spec["isDataRequired"]]

    @property
    def deletes(self) -> bool:
        """Deletes by primary key need an upsert key on the flow: Profile streams have one."""
        return self.category == "Profile"


@dataclass
class SourceRoutes:
    source_id: str
    source_name: str
    events: dict[str, EventRoute] = field(default_factory=dict)


class IngestLookup:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self._cache: dict[Scope, tuple[float, dict[str, SourceRoutes]]] = {}
        self._lock = threading.Lock()

    def source(self, scope: Scope, source: str) -> SourceRoutes | None:
        """A source of this data space by Source ID or developer name; None when no stream uses it."""
        return self._routes(scope).get(source)

    def route(self, scope: Scope, source: str, event: str) -> EventRoute | None:
        found = self.source(scope, source)
        return found.events.get(event) if found else None

    def invalidate(self, scope: Scope) -> None:
        with self._lock:
            self._cache.pop(scope, None)

    def _routes(self, scope: Scope) -> dict[str, SourceRoutes]:
        now = time.monotonic()
        hit = self._cache.get(scope)
        if hit is not None and hit[0] > now:
            return hit[1]
        routes = self._load(scope)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[scope] = (now + TTL, routes)
        return routes

    def _load(self, scope: Scope) -> dict[str, SourceRoutes]:
        from headwater.services.data360.datastreams import KIND

        out: dict[str, SourceRoutes] = {}
        names: dict[str, set[str]] = {}  # developer name -> Source IDs (connectors of other sandboxes)
        for stream in self.store.list(KIND, scope).items:
            d = stream.doc
            connector = d["connector"]
            routes = out.get(connector["sourceId"]) or SourceRoutes(connector["sourceId"], connector["name"])
            out[connector["sourceId"]] = routes
            names.setdefault(connector["name"], set()).add(connector["sourceId"])
            for event in d["events"]:
                routes.events[event["developerName"]] = EventRoute(
                    flow_id=d["resources"]["flowId"],
                    stream_id=stream.id,
                    stream_name=d["name"],
                    category=d["category"],
                    source_id=connector["sourceId"],
                    source_name=connector["name"],
                    event=event["developerName"],
                    primary_key=event["primaryKey"],
                    fields={f["developerName"]: f for f in event["fields"]},
                )
        # A name two connectors (of two sandboxes) share names neither: use their Source IDs.
        for name, ids in names.items():
            if len(ids) == 1 and name not in out:
                out[name] = out[next(iter(ids))]
        return out

"""Server-to-server ingestion connectors (Data 360 "Web & Mobile SDK" apps of type Server to Server), their
JSON event-type schemas, and the facade the API uses for everything Data 360-shaped.

A connector lives in one organization and sandbox. At creation it gets a system-generated Source ID
(``sourceId``, the ``{appSourceId}`` of ``POST /server/events/{appSourceId}``) that never changes; its
developer name (``name``) never changes either, and is the ``{source}`` of the Ingestion API. Its app name
(``label``) is editable. A connector holds the last schema uploaded (verbatim, for View Full Schema) and
its normalized events; a schema update is additive only (:mod:`headwater.services.data360.eventschema`)
and reaches every data stream deployed from the connector before the connector itself is saved, so a
failed save leaves streams with extra optional fields at worst, and retrying converges.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from headwater.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from headwater.services.data360 import eventschema
from headwater.services.ids import new_etag, new_uuid, now_ms
from headwater.services.resources import Built, Collection, require_object
from headwater.services.runs import iso
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource, StaleWrite

if TYPE_CHECKING:
    from headwater.services.cache import TtlCache
    from headwater.services.data360.datastreams import DataStreams, Platform
    from headwater.services.data360.identity import Data360Identity
    from headwater.services.streaming import Streams
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore, Org, Sandbox

CONNECTOR_TYPE = "StreamingApp"
APP_TYPE = "ServerToServer"
_APP_TYPES = {"servertoserver": APP_TYPE, "server to server": APP_TYPE, "server_to_server": APP_TYPE}
_OTHER_APP_TYPES = {"webapp", "mobileapp", "web", "mobile"}
CODE = "SSOT-1400-400"


class ByIdOrName(Collection):
    """A collection whose members are addressed by id or by developer name (their alternative id)."""

    def find(self, actor: Actor, ident: str) -> Resource | None:
        if not ident or eventschema.has_control(ident):
            return None
        return self.store.get(self.kind, actor.scope, ident) or self.store.get_by_alt_id(
            self.kind, actor.scope, ident
        )

    def get(self, actor: Actor, ident: str) -> Resource:
        found = self.find(actor, ident)
        if found is None:
            raise self.not_found(ident)
        return found


class Connectors(ByIdOrName):
    kind = "data360Connector"
    label = "connector"
    service = "SSOT"

    def __init__(self, store: MetadataStore, data_streams: DataStreams) -> None:
        super().__init__(store)
        self.data_streams = data_streams

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        label = _app_name(body, errors)
        name = _developer_name(body, label, existing, errors)
        _connector_type(body, errors)
        app_type = _app_type(body, existing, errors)
        _source_id(body, existing, errors)
        if errors:
            raise ValidationFailed(errors, code=CODE)
        assert label is not None and name is not None
        doc: dict[str, Any] = {
            "name": name,
            "label": label,
            "connectorType": CONNECTOR_TYPE,
            "streamingAppType": app_type,
            "sourceId": existing.doc["sourceId"] if existing else new_uuid(),
            "schema": existing.doc.get("schema") if existing else None,
        }
        return Built(doc=doc, name=label, alt_id=name)

    def update(self, actor: Actor, ident: str, body: Any, if_match: str | None) -> Resource:
        """PATCH: a JSON object of the fields to change; only ``label`` (the app name) may change."""
        current = self.get(actor, ident)
        self.check_if_match(current, if_match)
        changes = require_object(body)
        return self.replace(actor, current, {**self.editable(current), **changes})

    def delete(self, actor: Actor, ident: str) -> None:
        current = self.get(actor, ident)
        users = self.data_streams.of_connector(actor, current.id)
        if users:
            raise Conflict(
                f"Connector {current.doc['name']!r} still feeds {len(users)} data stream(s); delete them "
                "first (DELETE /ssot/data-streams/{id}?dataspace=...).",
                code="SSOT-1410-409",
                report={
                    "referencedBy": [
                        {"type": "dataStream", "id": s.id, "name": s.doc["name"], "dataspace": sb}
                        for sb, s in users
                    ]
                },
            )
        super().delete(actor, current.id)

    def editable(self, resource: Resource) -> dict[str, Any]:
        return {k: resource.doc[k] for k in ("name", "label", "connectorType", "streamingAppType")}

    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        schema = d.get("schema") or {}
        events = schema.get("events") or []
        return {
            "id": resource.id,
            "name": d["name"],
            "label": d["label"],
            "connectorType": d["connectorType"],
            "streamingAppType": d["streamingAppType"],
            "sourceId": d["sourceId"],
            "appSourceId": d["sourceId"],
            "schemaVersion": schema.get("version"),
            "events": [{"developerName": e["developerName"], "category": e["category"]} for e in events],
            "sandboxName": d.get("sandboxName"),
            "createdDate": iso(resource.created_at),
            "lastModifiedDate": iso(resource.updated_at),
            "createdById": d.get("createdBy"),
            "lastModifiedById": d.get("updatedBy"),
            "etag": resource.etag,
        }

    # --- schema ---
    def uploaded_schema(self, actor: Actor, ident: str) -> Any:
        """View Full Schema: the last schema document uploaded, as it was sent."""
        connector = self.get(actor, ident)
        schema = connector.doc.get("schema")
        if not schema:
            raise NotFound(
                f"Connector {connector.doc['name']!r} has no schema yet; upload one with "
                "PUT .../ssot/connections/{id}/schema.",
                code="SSOT-1404-404",
                report={"id": connector.id, "type": "schema"},
            )
        return schema["uploaded"]

    def preview_schema(self, actor: Actor, ident: str, document: Any) -> dict[str, Any]:
        """Validate a schema (and, once one is saved, that it only adds to it); saves nothing."""
        connector = self.get(actor, ident)
        parsed, changes = self._check(connector, document)
        return _schema_view(connector, parsed, changes, version=_version(connector))

    def put_schema(self, actor: Actor, ident: str, document: Any, if_match: str | None) -> dict[str, Any]:
        """Upload or update (additively) the connector's schema, evolving its deployed data streams."""
        connector = self.get(actor, ident)
        self.check_if_match(connector, if_match)
        parsed, changes = self._check(connector, document)
        updated = self.data_streams.evolve_connector(actor, connector, parsed.events)
        version = (_version(connector) or 0) + 1
        schema = {"version": version, "uploaded": document, "events": parsed.events, "uploadedAt": now_ms()}
        changed = {
            "schema": schema,
            "updatedAt": now_ms(),
            "updatedBy": actor.user,
            "updatedClient": actor.client_id,
        }
        saved = self._save(connector, {**connector.doc, **changed})
        view = _schema_view(saved, parsed, changes, version=version)
        view["dataStreamsUpdated"] = updated
        return view

    def _check(self, connector: Resource, document: Any) -> tuple[eventschema.Parsed, eventschema.Changes]:
        parsed = eventschema.parse(document)
        old = (connector.doc.get("schema") or {}).get("events")
        if not old:
            return parsed, eventschema.Changes(added_events=[e["developerName"] for e in parsed.events])
        changes, errors = eventschema.compare(old, parsed)
        if errors:
            raise ValidationFailed(
                errors,
                code=eventschema.EVOLUTION_CODE,
                detail=f"An updated schema can only add events and fields; {len(errors)} change(s) to "
                f"connector {connector.doc['name']!r} are not additive (listed in report.errors). "
                "Nothing was changed.",
            )
        return parsed, changes

    def _save(self, current: Resource, doc: dict[str, Any]) -> Resource:
        updated = Resource(
            kind=self.kind,
            id=current.id,
            scope=current.scope,
            doc=doc,
            etag=new_etag(),
            name=current.name,
            alt_id=current.alt_id,
            created_at=current.created_at,
            updated_at=doc["updatedAt"],
        )
        try:
            self.store.update(updated, current.etag)
        except StaleWrite as exc:
            raise PreconditionFailed(
                "The connector changed while its schema was being saved; GET it again and retry.",
                code="SSOT-1412-412",
            ) from exc
        return updated


def _version(connector: Resource) -> int | None:
    return (connector.doc.get("schema") or {}).get("version")


def _schema_view(
    connector: Resource, parsed: eventschema.Parsed, changes: eventschema.Changes, version: int | None
) -> dict[str, Any]:
    events = eventschema.preview(parsed.events)
    return {
        "connectorId": connector.id,
        "connectorName": connector.doc["name"],
        "sourceId": connector.doc["sourceId"],
        "schemaVersion": version,
        "valid": True,
        "eventCount": len(events),
        "fieldCount": sum(e["fieldCount"] for e in events),
        "events": events,
        "changes": changes.as_json(),
    }


def _app_name(body: dict[str, Any], errors: list[dict[str, str]]) -> str | None:
    keys = [k for k in ("label", "appName", "masterLabel") if body.get(k) is not None]
    if not keys:
        errors.append({"path": "label", "message": "is required: the app name"})
        return None
    value = body[keys[0]]
    if not isinstance(value, str) or not value.strip():
        errors.append({"path": keys[0], "message": "must be a non-empty string (the app name)"})
        return None
    if len(value) > eventschema.MAX_NAME:
        errors.append({"path": keys[0], "message": f"is longer than {eventschema.MAX_NAME} characters"})
        return None
    if eventschema.has_control(value):
        errors.append({"path": keys[0], "message": "must not contain control characters"})
        return None
    return value.strip()


def _source_id(body: dict[str, Any], existing: Resource | None, errors: list[dict[str, str]]) -> None:
    """The Source ID is system-generated (document 000): a body may repeat it, never set or change it."""
    current = existing.doc["sourceId"] if existing is not None else None
    for key in ("sourceId", "appSourceId"):
        value = body.get(key)
        if value is None or value == current:
            continue
        errors.append(
            {
                "path": key,
                "message": (
                    f"cannot change (it is {current!r}): the Source ID is system-generated and never changes"
                    if current is not None
                    else "cannot be set: the Source ID is system-generated when the connector is created"
                ),
            }
        )


def _developer_name(
    body: dict[str, Any], label: str | None, existing: Resource | None, errors: list[dict[str, str]]
) -> str | None:
    key = "developerName" if body.get("developerName") is not None else "name"
    value = body.get(key)
    if existing is not None:
        if value is not None and value != existing.doc["name"]:
            errors.append(
                {
                    "path": key,
                    "message": f"cannot change (it is {existing.doc['name']!r}): the developer name is the "
                    "connector's source name in the Ingestion API; change label (the app name) instead",
                }
            )
        return str(existing.doc["name"])
    if value is None:
        return derive_name(label) if label else None
    if not isinstance(value, str) or not value:
        errors.append({"path": key, "message": "must be a non-empty string"})
        return None
    if len(value) > eventschema.MAX_NAME or not eventschema.NAME.match(value) or "__" in value:
        errors.append(
            {
                "path": key,
                "message": f"{value!r} is not a valid developer name: at most 80 letters, digits, _ and -, "
                "starting with a letter, without '__'",
            }
        )
        return None
    return value


def derive_name(label: str) -> str:
    """A developer name from an app name: ``"Acme Web Shop!"`` -> ``"Acme_Web_Shop"``."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", label)).strip("_-")
    if not name or not name[0].isalpha():
        name = "App_" + name
    return name[: eventschema.MAX_NAME].rstrip("_-")


def _connector_type(body: dict[str, Any], errors: list[dict[str, str]]) -> None:
    value = body.get("connectorType")
    if value is None:
        return
    if not isinstance(value, str) or (
        value != CONNECTOR_TYPE and value.lower().replace("-", " ") not in _APP_TYPES
    ):
        errors.append(
            {
                "path": "connectorType",
                "message": f"must be {CONNECTOR_TYPE} (a Web & Mobile SDK app) or ServerToServer",
            }
        )


def _app_type(body: dict[str, Any], existing: Resource | None, errors: list[dict[str, str]]) -> str:
    value = body.get("streamingAppType")
    if value is None and isinstance(body.get("connectorType"), str):
        value = body["connectorType"] if body["connectorType"] != CONNECTOR_TYPE else None
    if value is None:
        return str(existing.doc["streamingAppType"]) if existing else APP_TYPE
    normalized = _APP_TYPES.get(value.lower().replace("-", " ")) if isinstance(value, str) else None
    if normalized is None:
        other = isinstance(value, str) and value.lower() in _OTHER_APP_TYPES
        errors.append(
            {
                "path": "streamingAppType",
                "message": "Headwater's Web & Mobile SDK apps are ServerToServer connectors only"
                if other
                else "must be ServerToServer",
            }
        )
        return APP_TYPE
    return normalized


class IngestionConnectors:
    """Everything Data 360-shaped: connectors, their data streams, the ingestion lookup, the Ingestion
    API (streaming and bulk). Routes reach the parts through this object (``services.ingestion_connectors``).
    """

    def __init__(
        self,
        store: MetadataStore,
        settings: Settings,
        platform: Platform,
        identity: Data360Identity,
        sandboxes: TtlCache[tuple[str, str], Sandbox | None],
        orgs: TtlCache[str, Org | None],
        streams: Streams,
    ) -> None:
        from headwater.services.data360.bulk import BulkJobs
        from headwater.services.data360.datastreams import DataStreams
        from headwater.services.data360.ingest import Ingestion
        from headwater.services.data360.lookup import IngestLookup

        self.lookup = IngestLookup(store)
        self.data_streams = DataStreams(store, platform, identity.users, sandboxes, self.lookup)
        self.connectors = Connectors(store, self.data_streams)
        self.data_streams.connectors = self.connectors  # the two refer to each other
        self.ingest = Ingestion(identity, orgs, streams, self.lookup)
        self.bulk = BulkJobs(store, settings, streams, self.lookup)

    def start(self) -> None:
        """Start the bulk job processor (it resumes jobs a previous process left unfinished)."""
        self.bulk.start()

    def stop(self) -> None:
        self.bulk.stop()

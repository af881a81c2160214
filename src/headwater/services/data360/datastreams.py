"""Data streams: what deploying a connector's events creates, keeps in step with its schema, and removes.

A data stream is deployed into a data space, which is a sandbox of the connector's organization
(``default``, or no data space, is the ``prod`` sandbox). One stream per Profile event, one shared by all
the Engagement events of a connector in that data space (choosing more Engagement events later adds
them to it). Each stream is an ordinary streaming dataflow in its data space:

    tenant field group   the events' fields under ``_{tenantId}`` (one XDM field per event field)
    schema               XDM Individual Profile (Profile) or XDM ExperienceEvent (Engagement) + that group
    identity descriptor  Profile streams: the primary key is the schema's primary identity
    dataset              the stream's data lake object (its Iceberg table)
    connections          an HTTP API streaming base + source connection, a Data Lake target connection
    mapping set          each field to ``_{tenantId}.{field}``; the primary key also to ``_id``;
                         Engagement ``dateTime`` also to ``timestamp``
    flow                 HttpStreamingWithTransformation, ``options.cadenceSeconds`` (900 s Engagement,
                         3600 s Profile by default, 0 = continuous), ``options.upsertKey`` (Profile) or
                         ``options.dedupPath`` (Engagement) = ``_id``, the mapped primary key

The data stream record (kind ``data360DataStream``) references the flow, dataset, schema and mapping
set, so none of them can be deleted under it; the ingestion lookup reads these records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from headwater.catalog import ids
from headwater.errors import Conflict, HeadwaterError, ValidationFailed
from headwater.services import access
from headwater.services.catalogsvc import TABLE_TAG
from headwater.services.data360 import eventschema
from headwater.services.data360.connectors import ByIdOrName
from headwater.services.data360.generated import (
    CLASSES,
    CONTENT_TYPE,
    GROUP,
    KEY_PATH,
    base_body,
    field_rows,
    flow_body,
    group_body,
    group_fields,
    identity_body,
    key_namespace_code,
    mapping_body,
    mapping_rows,
    schema_body,
)
from headwater.services.data360.streamplans import CODE, Plan, Planner, Request, cadence_error
from headwater.services.ids import new_uuid
from headwater.services.resources import Built, require_object
from headwater.services.runs import iso
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource, Scope

if TYPE_CHECKING:
    from headwater.services.cache import TtlCache
    from headwater.services.catalogsvc import DataSets
    from headwater.services.conversion import MappingSets
    from headwater.services.data360.connectors import Connectors
    from headwater.services.data360.lookup import IngestLookup
    from headwater.services.flowservice import Connections, Flows, SourceConnections, TargetConnections
    from headwater.services.identity_namespaces import IdentityNamespaces
    from headwater.services.schemas import SchemaRegistry
    from headwater.services.users import Users
    from headwater.stores.log.base import StreamLog
    from headwater.stores.metadata import Sandbox


@dataclass(frozen=True)
class Platform:
    """The services a data stream's resources are created in (generated.py writes their bodies)."""

    schemas: SchemaRegistry
    datasets: DataSets
    connections: Connections
    source_connections: SourceConnections
    target_connections: TargetConnections
    mapping_sets: MappingSets
    flows: Flows
    namespaces: IdentityNamespaces


KIND = "data360DataStream"
HISTORY = 24  # refresh windows (hours) the metrics list
#: A run's state as a Data 360 status word (an open hourly window is IN_PROGRESS).
RUN_STATUS = {
    "queued": "QUEUED",
    "inProgress": "IN_PROGRESS",
    "success": "SUCCESS",
    "partialSuccess": "PARTIAL_SUCCESS",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}


class DataStreams(ByIdOrName):
    kind = KIND
    label = "data stream"
    service = "SSOT"

    # --- the collection (documents are built by this module, never taken from clients as is) ---
    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        res = body["resources"]
        refs = [
            ("flow", res["flowId"]),
            ("dataSet", res["dataSetId"]),
            ("schema", res["schemaId"]),
            ("mappingSet", res["mappingSetId"]),
        ]
        if body["connector"]["sandboxId"] == actor.sandbox.id:
            refs.append(("data360Connector", body["connector"]["id"]))
        return Built(doc=dict(body), refs=refs, name=body["label"], alt_id=body["name"])

    #: The connectors data streams are deployed from; set by IngestionConnectors once built (each refers
    #: to the other).
    connectors: Connectors

    def __init__(
        self,
        store: MetadataStore,
        platform: Platform,
        users: Users,
        sandboxes: TtlCache[tuple[str, str], Sandbox | None],
        lookup: IngestLookup,
    ) -> None:
        super().__init__(store)
        self.platform = platform
        self.users = users
        self.lookup = lookup
        self.planner = Planner(sandboxes, lambda actor, ref: self.connectors.find(actor, ref), self.list_in)

    def in_space(self, actor: Actor, dataspace: str | None) -> Actor:
        """The actor acting in a data space (a sandbox of its organization)."""
        sandbox = self.planner.sandbox(actor, dataspace, "dataspace")
        return self.users.acting_in(actor, sandbox)

    def list_in(self, actor: Actor, connector: str | None = None) -> list[Resource]:
        items = self.store.list(self.kind, actor.scope).items
        if connector:
            items = [s for s in items if connector in (s.doc["connector"]["id"], s.doc["connector"]["name"])]
        return items

    def of_connector(self, actor: Actor, connector_id: str) -> list[tuple[str, Resource]]:
        """Every data stream deployed from a connector, in every data space: (sandbox name, stream)."""
        out = []
        for sandbox in self.store.list_sandboxes(actor.org.id):
            for stream in self.store.list(self.kind, Scope(actor.org.id, sandbox.id)).items:
                if stream.doc["connector"]["id"] == connector_id:
                    out.append((sandbox.name, stream))
        return out

    # --- deploy ---
    def preview(self, actor: Actor, body: Any, dataspace: str | None) -> dict[str, Any]:
        """The review step: the streams a deploy would create or extend, their fields and mappings."""
        request = self.planner.request(actor, body, dataspace)
        space = self.users.acting_in(actor, request.sandbox)
        plans = self.planner.plans(space, request)
        ns = self.platform.schemas.tenant_namespace(actor)
        return {
            "dataspace": request.dataspace,
            "sandboxName": request.sandbox.name,
            "dataStreams": [self._plan_view(request, plan, ns) for plan in plans],
        }

    def create_streams(self, actor: Actor, body: Any, dataspace: str | None) -> list[Resource]:
        """Deploy: create (or extend) the data streams of the chosen events. All or nothing per stream."""
        request = self.planner.request(actor, body, dataspace)
        space = self.users.acting_in(actor, request.sandbox)
        # The streams land in the data space: the caller needs the permission there, not only where the
        # call was made.
        space.require(access.MANAGE_DATAFLOWS, f"a data stream in data space {request.sandbox.name!r}")
        out = []
        try:
            for plan in self.planner.plans(space, request):
                if plan.existing is not None:
                    events = plan.existing.doc["events"] + plan.events
                    out.append(self._evolve(space, plan.existing, events))
                else:
                    out.append(self._deploy(space, request, plan))
        finally:
            self._invalidate(space.scope)
        return out

    def _plan_view(self, request: Request, plan: Plan, ns: str) -> dict[str, Any]:
        events = (plan.existing.doc["events"] if plan.existing else []) + plan.events
        return {
            "action": "extend" if plan.existing else "create",
            "dataStreamId": plan.existing.id if plan.existing else None,
            "name": plan.name,
            "label": plan.label,
            "category": plan.category,
            "dataspace": request.dataspace,
            "events": [e["developerName"] for e in events],
            "refreshCadenceSeconds": plan.cadence,
            "primaryKey": {"field": events[0]["primaryKey"], "targetField": KEY_PATH},
            "fields": field_rows(events, ns),
            "mappings": mapping_rows(plan.category, events, ns),
            "dataLakeObjectInfo": {"class": CLASSES[plan.category], "category": plan.category},
        }

    def _key_namespace(self, space: Actor, plan: Plan) -> str:
        """The identity namespace of a Profile stream's primary key: the sandbox's namespace of that code if
        there is one (a key named ``email`` is an Email), else a custom CROSS_DEVICE namespace made for it.
        Namespaces are never deleted, so removing the stream leaves it."""
        key = str(plan.events[0]["primaryKey"])
        code = key_namespace_code(key)
        namespaces = self.platform.namespaces
        found = namespaces.resolve(space, code)
        if found is None:
            body = {
                "name": f"{plan.label} {key}",
                "code": code,
                "idType": "CROSS_DEVICE",
                "description": f"Primary key {key!r} of Data 360 data stream {plan.label!r}",
            }
            with contextlib.suppress(Conflict):  # made meanwhile by a concurrent deploy
                return str(namespaces.create(space, body).doc["code"])
            found = namespaces.resolve(space, code)
        assert found is not None
        return str(found["code"])

    def _deploy(self, space: Actor, request: Request, plan: Plan) -> Resource:
        """Create every resource of a new stream; on failure, remove those already created."""
        svc = self.platform
        ns = svc.schemas.tenant_namespace(space)
        connector = request.connector
        stream_id = new_uuid()
        undo: list[Callable[[], None]] = []
        try:
            group = svc.schemas.fieldgroups.create(
                space, group_body(plan.label, plan.category, plan.events, ns)
            )
            undo.append(lambda: svc.schemas.fieldgroups.delete(space, group.id))
            schema = svc.schemas.schemas.create(space, schema_body(plan.label, plan.category, group.id))
            undo.append(lambda: svc.schemas.schemas.delete(space, schema.id))
            descriptor_id: str | None = None
            if plan.category == "Profile":
                namespace = self._key_namespace(space, plan)
                descriptor = svc.schemas.descriptors.create(
                    space, identity_body(schema.id, plan.events[0], ns, namespace)
                )
                descriptor_id = descriptor.id
                undo.append(lambda: svc.schemas.descriptors.delete(space, descriptor.id))
            dataset = svc.datasets.create(
                space,
                {
                    "name": plan.label,
                    "description": f"Data stream {plan.name} ({plan.category}) of connector "
                    f"{connector.doc['name']}",
                    "schemaRef": {"id": schema.id, "contentType": CONTENT_TYPE},
                },
            )
            undo.append(lambda: svc.datasets.delete(space, dataset.id))
            base = svc.connections.create(space, base_body(plan, connector))
            undo.append(lambda: svc.connections.delete(space, base.id))
            source = svc.source_connections.create(
                space,
                {
                    "name": f"{plan.label} source",
                    "baseConnectionId": base.id,
                    "data": {"format": "json"},
                    "params": {},
                    "connectionSpec": {"id": ids.HTTP_API_STREAMING, "version": "1.0"},
                },
            )
            undo.append(lambda: svc.source_connections.delete(space, source.id))
            target = svc.target_connections.create(
                space,
                {
                    "name": f"{plan.label} target",
                    "data": {"schema": {"id": schema.id, "version": CONTENT_TYPE}},
                    "params": {"dataSetId": dataset.id},
                    "connectionSpec": {"id": ids.DATA_LAKE, "version": "1.0"},
                },
            )
            undo.append(lambda: svc.target_connections.delete(space, target.id))
            mapping = svc.mapping_sets.create(
                space, mapping_body(plan.label, plan.category, plan.events, schema.id, ns)
            )
            undo.append(lambda: svc.mapping_sets.delete(space, mapping.id))
            flow = svc.flows.create(
                space, flow_body(plan, connector, stream_id, source.id, target.id, mapping.id, 0)
            )
            undo.append(lambda: svc.flows.delete(space, flow.id))
            doc = {
                "name": plan.name,
                "label": plan.label,
                "category": plan.category,
                "dataspace": request.dataspace,
                "connector": {
                    "id": connector.id,
                    "name": connector.doc["name"],
                    "sourceId": connector.doc["sourceId"],
                    "sandboxId": connector.scope.sandbox_id,
                    "sandboxName": connector.doc.get("sandboxName"),
                },
                "events": plan.events,
                "refreshCadenceSeconds": plan.cadence,
                "keyPath": KEY_PATH,
                "namespace": ns,
                "tableName": (dataset.doc["tags"].get(TABLE_TAG) or [None])[0],
                "resources": {
                    "flowId": flow.id,
                    "dataSetId": dataset.id,
                    "schemaId": schema.id,
                    "fieldGroupId": group.id,
                    "descriptorId": descriptor_id,
                    "mappingSetId": mapping.id,
                    "sourceConnectionId": source.id,
                    "targetConnectionId": target.id,
                    "baseConnectionId": base.id,
                },
            }
            try:
                return self.create(space, doc, stream_id)
            except Conflict as exc:
                raise Conflict(
                    f"A data stream named {plan.name!r} already exists in data space {request.dataspace!r}.",
                    code="SSOT-1409-409",
                ) from exc
        except BaseException:
            for step in reversed(undo):
                with contextlib.suppress(Exception):  # keep the error that made the deploy fail
                    step()
            raise

    # --- keeping streams in step with their connector's schema ---
    def evolve_connector(self, actor: Actor, connector: Resource, events: list[dict[str, Any]]) -> list[str]:
        """Give every stream of ``connector`` (in any data space) the new fields of its events."""
        by_name = {e["developerName"]: e for e in events}
        updated = []
        for sandbox_name, stream in self.of_connector(actor, connector.id):
            new = [by_name.get(e["developerName"], e) for e in stream.doc["events"]]
            if new == stream.doc["events"]:
                continue
            sandbox = self.store.get_sandbox(actor.org.id, sandbox_name)
            if sandbox is None:
                continue
            # Keeping a stream in step with its connector's additive schema change is part of that change
            # (allowed where the connector is); the stream records who made it.
            space = replace(actor, sandbox=sandbox)
            self._evolve(space, stream, new)
            self._invalidate(space.scope)
            updated.append(stream.id)
        return updated

    def _evolve(self, space: Actor, stream: Resource, events: list[dict[str, Any]]) -> Resource:
        """Additive: new XDM fields in the stream's field group, a new mapping set version naming them,
        the flow moved to that version (so running micro-batchers pick it up), then the stream record."""
        svc = self.platform
        ns = svc.schemas.tenant_namespace(space)
        res = stream.doc["resources"]
        group = svc.schemas.fieldgroups.get(space, res["fieldGroupId"])
        wanted = group_body(stream.doc["label"], stream.doc["category"], events, ns)
        current_props = group_fields(group.doc, ns)
        new_props = group_fields(wanted, ns)
        if set(new_props) - set(current_props):
            body = svc.schemas.fieldgroups.editable(group)
            merged = {**new_props, **current_props}
            body["definitions"] = {GROUP: {"properties": {ns: {"type": "object", "properties": merged}}}}
            body["allOf"] = [{"$ref": f"#/definitions/{GROUP}"}]
            svc.schemas.fieldgroups.update(space, group.id, body, None, patch=False)
        mapping = svc.mapping_sets.get(space, res["mappingSetId"])
        rows = mapping_rows(stream.doc["category"], events, ns)
        have = {(m["source"], m["destination"]) for m in mapping.doc["mappings"]}
        if {(r["source"], r["destination"]) for r in rows} != have:
            body = mapping_body(stream.doc["label"], stream.doc["category"], events, res["schemaId"], ns)
            mapping = svc.mapping_sets.put(space, mapping.id, body, None)
            flow = svc.flows.get(space, res["flowId"])
            flow_body = svc.flows.editable(flow)
            flow_body["transformations"] = [
                {
                    "name": "Mapping",
                    "params": {"mappingId": mapping.id, "mappingVersion": mapping.doc["version"]},
                }
            ]
            svc.flows.replace(space, flow, flow_body)
        return self.replace(space, stream, {**stream.doc, "events": events})

    # --- changes and removal ---
    def update(
        self, actor: Actor, ident: str, body: Any, dataspace: str | None, if_match: str | None
    ) -> Resource:
        """PATCH: ``label`` and ``refreshCadenceSeconds`` (0 = continuous ... 86400)."""
        space = self.in_space(actor, dataspace)
        current = self.get(space, ident)
        self.check_if_match(current, if_match)
        changes = require_object(body)
        errors: list[dict[str, str]] = []
        allowed = {"label", "refreshCadenceSeconds"}
        errors += [
            {"path": k, "message": "cannot be changed; a data stream's label and refreshCadenceSeconds can"}
            for k in changes
            if k not in allowed
        ]
        label = changes.get("label", current.doc["label"])
        if (
            not isinstance(label, str)
            or not label.strip()
            or len(label) > 80
            or eventschema.has_control(label)
        ):
            errors.append({"path": "label", "message": "must be a non-empty string of at most 80 characters"})
        cadence = changes.get("refreshCadenceSeconds", current.doc["refreshCadenceSeconds"])
        if cadence_error(cadence):
            errors.append({"path": "refreshCadenceSeconds", "message": cadence_error(cadence) or ""})
        if errors:
            raise ValidationFailed(errors, code=CODE)
        if cadence != current.doc["refreshCadenceSeconds"]:
            flow = self.platform.flows.get(space, current.doc["resources"]["flowId"])
            flow_body = self.platform.flows.editable(flow)
            flow_body["options"] = {**(flow_body.get("options") or {}), "cadenceSeconds": cadence}
            self.platform.flows.replace(space, flow, flow_body)
        return self.replace(
            space, current, {**current.doc, "label": label.strip(), "refreshCadenceSeconds": cadence}
        )

    def remove(self, actor: Actor, ident: str, dataspace: str | None, delete_lake_object: bool) -> list[str]:
        """Delete the stream, then its flow (with its runs and unprocessed log), connections and mapping
        set, and, if asked, its dataset, descriptor, schema and field group. The stream's events are
        refused from then on. Something still in use elsewhere (a dataset another flow writes, or
        whose batches are kept) stops the cleanup there; returns the kinds left behind, in order."""
        space = self.in_space(actor, dataspace)
        stream = self.get(space, ident)
        self.delete(space, stream.id)
        self._invalidate(space.scope)
        res = stream.doc["resources"]
        svc = self.platform
        steps: list[tuple[str, Callable[[], None]]] = [
            ("flow", lambda: self._delete_flow(space, res["flowId"])),
            ("sourceConnection", lambda: svc.source_connections.delete(space, res["sourceConnectionId"])),
            ("connection", lambda: svc.connections.delete(space, res["baseConnectionId"])),
            ("targetConnection", lambda: svc.target_connections.delete(space, res["targetConnectionId"])),
            ("mappingSet", lambda: svc.mapping_sets.delete(space, res["mappingSetId"])),
        ]
        if delete_lake_object:
            steps += [
                ("dataSet", lambda: svc.datasets.delete(space, res["dataSetId"])),
                (
                    "descriptor",
                    lambda: _delete_if(
                        res.get("descriptorId"), lambda i: svc.schemas.descriptors.delete(space, i)
                    ),
                ),
                ("schema", lambda: svc.schemas.schemas.delete(space, res["schemaId"])),
                ("fieldGroup", lambda: svc.schemas.fieldgroups.delete(space, res["fieldGroupId"])),
            ]
        kept = []
        for index, (_, step) in enumerate(steps):
            try:
                step()
            except HeadwaterError:
                kept += [k for k, _ in steps[index:]]
                break
        return kept

    def _delete_flow(self, space: Actor, flow_id: str) -> None:
        """Delete the flow; if that fails, leave it disabled so that it stops ingesting."""
        try:
            self.platform.flows.delete(space, flow_id)
        except HeadwaterError:
            with contextlib.suppress(HeadwaterError):
                self.platform.flows.set_state(space, flow_id, "disable")
            raise

    def _invalidate(self, scope: Scope) -> None:
        self.lookup.invalidate(scope)

    # --- ingestion counts ---
    def metrics(
        self, actor: Actor, ident: str, dataspace: str | None, log: Callable[[], StreamLog] | None = None
    ) -> dict[str, Any]:
        """What the stream's flow has ingested, from its hourly runs (newest first, at most
        :data:`HISTORY` of them): records received, processed (written to the data lake object) and
        failed, in total and per refresh window; and whether accepted records wait in the streaming log
        for the next refresh (``log`` gives the streaming log; without it, ``recordsWaiting`` is null)."""
        space = self.in_space(actor, dataspace)
        stream = self.get(space, ident)
        flow_id = stream.doc["resources"]["flowId"]
        run_ids = [i for kind, i in self.store.referrers(space.scope, "flow", flow_id) if kind == "run"]
        runs = sorted(
            self.store.get_many("run", space.scope, run_ids).values(),
            key=lambda r: r.created_at,
            reverse=True,
        )
        totals = {"received": 0, "processed": 0, "failed": 0}
        history: list[dict[str, Any]] = []
        for run in runs:
            records = run.doc["metrics"]["recordSummary"]
            counts = {
                "received": int(records.get("inputRecordCount") or 0),
                "processed": int(records.get("outputRecordCount") or 0),
                "failed": int(records.get("failedRecordCount") or 0),
            }
            for key, n in counts.items():
                totals[key] += n
            if len(history) < HISTORY:
                params = run.doc.get("params") or {}
                history.append(
                    {
                        "runId": run.id,
                        "windowStartDate": params.get("windowStartTime"),
                        "windowEndDate": params.get("windowEndTime"),
                        "status": _run_status(run.doc),
                        "recordsReceived": counts["received"],
                        "recordsProcessed": counts["processed"],
                        "recordsFailed": counts["failed"],
                        "lastModifiedDate": iso(run.updated_at),
                    }
                )
        waiting, next_refresh = self._waiting(log, flow_id, runs, stream.doc["refreshCadenceSeconds"])
        return {
            "dataStreamId": stream.id,
            "name": stream.doc["name"],
            "dataspace": stream.doc["dataspace"],
            "refreshCadenceSeconds": stream.doc["refreshCadenceSeconds"],
            "totalRecordsReceived": totals["received"],
            "totalRecordsProcessed": totals["processed"],
            "totalRecordsFailed": totals["failed"],
            "lastRefreshDate": iso(runs[0].updated_at) if runs else None,
            "lastRunStatus": _run_status(runs[0].doc) if runs else None,
            "recordsWaiting": waiting,
            "nextRefreshDate": next_refresh,
            "refreshHistory": history,
        }

    @staticmethod
    def _waiting(
        log_of: Callable[[], StreamLog] | None, flow_id: str, runs: list[Resource], cadence: int
    ) -> tuple[bool | None, str | None]:
        """(records wait in the log past what the runs counted, when the next refresh takes them)."""
        if log_of is None:
            return None, None
        try:
            log = log_of()
            counted = max((int(r.doc.get("streamOffset") or 0) for r in runs), default=log.START)
            if log.end_offset(flow_id) <= counted:
                return False, None
            first = log.read(flow_id, counted, max_records=1)
        except (OSError, RuntimeError):  # the log is unavailable: say nothing rather than fail the page
            return None, None
        if not first:
            return False, None
        return True, iso(first[0].appended_ms + cadence * 1000)

    # --- representation ---
    def render(self, resource: Resource) -> dict[str, Any]:
        d = resource.doc
        res = d["resources"]
        ns = d["namespace"]
        events = d["events"]
        return {
            "id": resource.id,
            "name": d["name"],
            "label": d["label"],
            "category": d["category"],
            "status": "ACTIVE",
            "dataspace": d["dataspace"],
            "sandboxName": d.get("sandboxName"),
            "connectorInfo": {
                "connectorType": "StreamingApp",
                "connectorDetails": {
                    "id": d["connector"]["id"],
                    "name": d["connector"]["name"],
                    "sourceId": d["connector"]["sourceId"],
                    "sandboxName": d["connector"].get("sandboxName"),
                    "streamingAppType": "ServerToServer",
                    "events": [e["developerName"] for e in events],
                },
            },
            "dataLakeObjectInfo": {
                "name": d.get("tableName"),
                "label": d["label"],
                "category": d["category"],
                "dataSetId": res["dataSetId"],
                "schemaId": res["schemaId"],
                "primaryKey": events[0]["primaryKey"],
                "keyPath": d["keyPath"],
                **({"eventDateTimeFieldName": "dateTime"} if d["category"] == "Engagement" else {}),
                "dataspaceInfo": [{"name": d["dataspace"]}],
            },
            "refreshCadenceSeconds": d["refreshCadenceSeconds"],
            "fields": field_rows(events, ns),
            "mappings": mapping_rows(d["category"], events, ns),
            **res,
            "createdDate": iso(resource.created_at),
            "lastModifiedDate": iso(resource.updated_at),
            "etag": resource.etag,
        }


def _run_status(doc: dict[str, Any]) -> str:
    state = str(doc.get("state") or "")
    return RUN_STATUS.get(state, state.upper())


def _delete_if(ident: str | None, delete: Callable[[str], None]) -> None:
    if ident:
        delete(ident)

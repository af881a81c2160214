"""Flows: a flow spec joining source and target connections, with transformations and a schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headwater.catalog import ids
from headwater.connectors.base import lookback_option_errors
from headwater.engines import javadate
from headwater.errors import BadRequest, NotFound, ValidationFailed
from headwater.services import access, destinations, validation
from headwater.services.flowservice.connections import FlowServiceCollection
from headwater.services.ids import new_hex, now_ms
from headwater.services.resources import Built, text_field
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource

if TYPE_CHECKING:
    from headwater.services.conversion import MappingSets
    from headwater.services.specs import SpecCatalog
    from headwater.services.streaming import Streams
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore
    from headwater.stores.secrets import SecretBox

STATES = ("enabled", "disabled")


class Flows(FlowServiceCollection):
    kind, label = "flow", "flow"

    def __init__(
        self,
        store: MetadataStore,
        specs: SpecCatalog,
        streams: Streams,
        settings: Settings,
        box: SecretBox,
        mapping_sets: MappingSets,
    ) -> None:
        super().__init__(store, specs, streams)
        self.settings = settings
        self.box = box
        self.mapping_sets = mapping_sets

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        text_field(body, "description", errors, required=False)
        refs: list[tuple[str, str]] = []
        flow_spec = self._flow_spec(body, errors)
        sources = self._connections(
            actor, body, "sourceConnectionIds", "sourceConnection", flow_spec, errors, refs
        )
        targets = self._connections(
            actor, body, "targetConnectionIds", "targetConnection", flow_spec, errors, refs
        )
        transformations = self._transformations(actor, body, flow_spec, errors, refs)
        schedule = self._schedule(body, flow_spec, errors)
        state = body.get("state", "enabled")
        if state not in STATES:
            errors.append({"path": "state", "message": "must be enabled or disabled"})
        options = self._options(body, flow_spec, existing) if flow_spec is not None else {}
        errors.extend(lookback_option_errors(options))
        if flow_spec is not None and ids.flow_kind({"flowSpec": flow_spec}).delivers:
            actor.require(access.MANAGE_DESTINATIONS, "an activation flow")
            destinations.check_activation(
                self.store, self.box, actor, sources, targets, transformations, errors, refs
            )
            options = destinations.delivery_options(options, errors)
        if errors:
            raise ValidationFailed(errors, code="FLOW-1422-400")
        assert flow_spec is not None
        doc: dict[str, Any] = {
            "name": name,
            "description": body.get("description", ""),
            "flowSpec": {
                "id": flow_spec["id"],
                "version": str((body.get("flowSpec") or {}).get("version", "1.0")),
            },
            "state": state,
            "sourceConnectionIds": [s.id for s in sources],
            "targetConnectionIds": [t.id for t in targets],
            "inheritedAttributes": {
                "properties": {
                    "isSourceFlow": bool((flow_spec.get("attributes") or {}).get("isSourceFlow", True)),
                    "isDestinationFlow": bool(
                        (flow_spec.get("attributes") or {}).get("isDestinationFlow", False)
                    ),
                },
                "sourceConnections": [_inherited(s) for s in sources],
                "targetConnections": [_inherited(t) for t in targets],
            },
            "transformations": transformations,
            "options": options,
            "providerRefId": flow_spec.get("providerId"),
            "lastOperation": _operation(_operation_name(existing, state), state),
        }
        if schedule is not None:
            doc["scheduleParams"] = schedule
        return Built(doc=doc, refs=refs, name=name)

    def delete(self, actor: Actor, ident: str) -> None:
        """Delete a flow with its runs (as the reference does: 204, the runs go with it). The datasets
        and batches it wrote stay. A streaming flow's unprocessed log goes too."""
        flow = self.get(actor, ident)
        flow_kind = ids.flow_kind(flow.doc)
        if flow_kind.delivers:
            actor.require(access.MANAGE_DESTINATIONS, "an activation flow")
        store = self.store
        for kind, run_id in store.referrers(actor.scope, "flow", ident):
            if kind == "run":
                store.delete("run", actor.scope, run_id)
        super().delete(actor, ident)
        if flow_kind.consumes_log or flow_kind.delivers:
            self.streams.log.drop(ident)
        if flow_kind.delivers:  # its dead letters stay, to be read or replayed while the destination exists
            store.delete("activationState", actor.scope, ident)

    def set_state(self, actor: Actor, ident: str, op: str) -> Resource:
        """``POST /flows/{id}/action?op=enable|disable``."""
        if op not in ("enable", "disable"):
            raise BadRequest(
                "op must be enable or disable.", code="FLOW-1400-400", report={"parameter": "op"}
            )
        current = self.get(actor, ident)
        body = dict(current.doc)
        body["state"] = op + "d"
        return self.replace(actor, current, body)

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = super().render(resource)
        doc["runs"] = f"/runs?property=flowId=={resource.id}"
        return doc

    def editable(self, resource: Resource) -> dict[str, Any]:
        doc = dict(resource.doc)
        for key in ("inheritedAttributes", "lastOperation", "providerRefId", "runs"):
            doc.pop(key, None)
        return doc

    # --- parts ---
    def _flow_spec(self, body: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any] | None:
        ref = body.get("flowSpec")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            errors.append({"path": "flowSpec.id", "message": "is required"})
            return None
        spec = self.specs.flow_spec(ref["id"])
        if spec is None:
            errors.append(
                {"path": "flowSpec.id", "message": f"{ref['id']!r} is not a known flow spec (GET /flowSpecs)"}
            )
        return spec

    def _connections(
        self,
        actor: Actor,
        body: dict[str, Any],
        field: str,
        kind: str,
        flow_spec: dict[str, Any] | None,
        errors: list[dict[str, str]],
        refs: list[tuple[str, str]],
    ) -> list[Resource]:
        ids = body.get(field)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            errors.append({"path": field, "message": "must be a non-empty array of connection ids"})
            return []
        found = self.store.get_many(kind, actor.scope, ids)
        allowed_key = "sourceConnectionSpecIds" if kind == "sourceConnection" else "targetConnectionSpecIds"
        allowed = (flow_spec or {}).get(allowed_key)
        out = []
        for index, ident in enumerate(ids):
            conn = found.get(ident)
            if conn is None:
                errors.append(
                    {
                        "path": f"{field}[{index}]",
                        "message": f"{kind} {ident!r} does not exist in this sandbox",
                    }
                )
                continue
            spec_id = conn.doc["connectionSpec"]["id"]
            if allowed is not None and spec_id not in allowed:
                errors.append(
                    {
                        "path": f"{field}[{index}]",
                        "message": f"its connection spec {spec_id} is not allowed by flow spec "
                        f"{flow_spec.get('name') if flow_spec else ''!r}",
                    }
                )
                continue
            refs.append((kind, ident))
            out.append(conn)
        return out

    def _transformations(
        self,
        actor: Actor,
        body: dict[str, Any],
        flow_spec: dict[str, Any] | None,
        errors: list[dict[str, str]],
        refs: list[tuple[str, str]],
    ) -> list[dict[str, Any]]:
        items = body.get("transformations", [])
        if not isinstance(items, list):
            errors.append({"path": "transformations", "message": "must be an array"})
            return []
        specs = {t["name"].lower(): t for t in (flow_spec or {}).get("transformationSpecs") or []}
        out = []
        for index, item in enumerate(items):
            where = f"transformations[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                errors.append({"path": f"{where}.name", "message": "is required"})
                continue
            spec = specs.get(item["name"].lower())
            if flow_spec is not None and spec is None:
                names = ", ".join(t["name"] for t in specs.values()) or "none"
                errors.append({"path": f"{where}.name", "message": f"must be one of: {names}"})
                continue
            params = item.get("params", {})
            if not isinstance(params, dict):
                errors.append({"path": f"{where}.params", "message": "must be an object"})
                continue
            if spec is not None:
                params = validation.coerce(params, spec.get("spec"))
                errors.extend(validation.check(params, spec.get("spec") or {}, f"{where}.params"))
                if spec["name"] == "Mapping" and isinstance(params.get("mappingId"), str):
                    self._mapping(actor, params, f"{where}.params", errors, refs)
            if item["name"].lower() == "copy":
                errors.extend(_date_format_errors(params, f"{where}.params.deltaColumn.dateFormat"))
            out.append({"name": spec["name"] if spec else item["name"], "params": params})
        return out

    def _mapping(
        self,
        actor: Actor,
        params: dict[str, Any],
        path: str,
        errors: list[dict[str, str]],
        refs: list[tuple[str, str]],
    ) -> None:
        """The Mapping transformation must name an existing mapping set (and version, when given)."""
        mapping_id = params["mappingId"]
        version = params.get("mappingVersion")
        try:
            self.mapping_sets.get(actor, mapping_id, int(version) if version is not None else None)
        except (NotFound, ValueError):
            if self.store.get("mappingSet", actor.scope, mapping_id) is None:
                message = f"mapping set {mapping_id!r} does not exist in this sandbox"
                errors.append({"path": f"{path}.mappingId", "message": message})
            else:
                message = f"mapping set {mapping_id!r} has no version {version!r}"
                errors.append({"path": f"{path}.mappingVersion", "message": message})
            return
        refs.append(("mappingSet", mapping_id))

    def _schedule(
        self, body: dict[str, Any], flow_spec: dict[str, Any] | None, errors: list[dict[str, str]]
    ) -> dict[str, Any] | None:
        params = body.get("scheduleParams")
        if flow_spec is None:
            return None
        schedule_spec = flow_spec.get("scheduleSpec")
        if params is None:
            return None
        if not schedule_spec and (flow_spec.get("attributes") or {}).get("frequency") == "streaming":
            return None  # as the platform does: a streaming flow takes scheduleParams and ignores them
        if not schedule_spec:
            errors.append(
                {"path": "scheduleParams", "message": "is not allowed: this flow spec is not scheduled"}
            )
            return None
        if not isinstance(params, dict):
            errors.append({"path": "scheduleParams", "message": "must be an object"})
            return None
        params = validation.coerce(params, schedule_spec.get("spec"))
        if params.get("frequency") == "once" and "interval" in params:
            # Document 002: "Interval is not required when frequency is set as once". A client that
            # sends one anyway is not refused (the spec's if/then would): a run once has no interval,
            # so it is dropped, not stored.
            params = {k: v for k, v in params.items() if k != "interval"}
        errors.extend(validation.check(params, schedule_spec.get("spec") or {}, "scheduleParams"))
        return _epoch_seconds(dict(params), errors)

    def _options(
        self, body: dict[str, Any], flow_spec: dict[str, Any], existing: Resource | None
    ) -> dict[str, Any]:
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        options = dict(options or {})
        if ids.flow_kind({"flowSpec": flow_spec}) is ids.FlowKind.STREAMING:
            old = (existing.doc.get("options") or {}) if existing else {}
            inlet = old.get("inletId") or new_hex(32)
            options["inletId"] = inlet
            options["inletUrl"] = f"{self.settings.base_url}/collection/{inlet}"
        return options


def _date_format_errors(params: dict[str, Any], where: str) -> list[dict[str, str]]:
    """The Copy transformation's ``deltaColumn.dateFormat`` is a Java date pattern the reader parses the
    delta column with (engines/javadate.py): one it cannot translate is refused here, not ignored."""
    delta = params.get("deltaColumn")
    pattern = delta.get("dateFormat") if isinstance(delta, dict) else None
    if pattern is None or not isinstance(pattern, str):
        return []  # absent, or the wrong type (which the spec's own check names)
    try:
        javadate.strptime_format(pattern)
    except javadate.UnsupportedPattern as exc:
        return [{"path": where, "message": str(exc)}]
    return []


def _epoch_seconds(params: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any]:
    """``startTime`` and ``endTime`` as epoch seconds, which the scheduler reads: epoch milliseconds
    (told apart by magnitude, as for run windows) are converted; other moments before 1970 or after
    9999 are errors naming the field."""
    from headwater.services.runs import epoch_seconds

    for key in ("startTime", "endTime"):
        value = params.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue  # absent, or already reported by the schedule spec's check (JSON integers past
            # 64 bits arrive as floats, which the spec's "integer" accepts when they are whole)
        seconds = epoch_seconds(value)
        if seconds is None:
            errors.append(
                {"path": f"scheduleParams.{key}", "message": "must be epoch seconds between 1970 and 9999"}
            )
        else:
            params[key] = int(seconds)
    return params


def _inherited(conn: Resource) -> dict[str, Any]:
    return {"id": conn.id, "connectionSpec": conn.doc["connectionSpec"]}


def _operation_name(existing: Resource | None, state: str) -> str:
    if existing is None:
        return "create"
    if existing.doc.get("state") != state:
        return "enable" if state == "enabled" else "disable"
    return "update"


def _operation(operation: str, state: str) -> dict[str, Any]:
    now = now_ms()
    return {
        "started": now,
        "updated": now,
        "operation": operation,
        "status": {"value": "completed", "errors": []},
        "state": state,
    }

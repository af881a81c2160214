"""Base connections (accounts with encrypted credentials), source connections and target connections."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from headwater.catalog import ids
from headwater.catalog.ids import LOCAL_FILES
from headwater.connectors.files import roots
from headwater.errors import Conflict, ValidationFailed
from headwater.services import access, destination_secrets, destinations, validation
from headwater.services.flowservice import drafts
from headwater.services.ids import new_hex
from headwater.services.resources import Built, Collection, text_field
from headwater.services.specs import SpecCatalog
from headwater.services.tenancy import Actor
from headwater.stores.metadata import Resource, Scope
from headwater.stores.secrets import MASK, is_sealed, mask_sealed, open_sealed

if TYPE_CHECKING:
    from headwater.connectors.outbound import OutboundPolicy
    from headwater.services.schemas import SchemaRegistry
    from headwater.services.streaming import Streams
    from headwater.settings import Settings
    from headwater.stores.metadata import MetadataStore
    from headwater.stores.secrets import SecretBox

FORMATS = ("delimited", "json", "parquet", "tabular")


log = logging.getLogger("headwater.flowservice")


class FlowServiceCollection(Collection):
    """A Flow Service collection: checked against the connection and flow specs; every change is told to
    the streams (which route inlet messages by flows and connections)."""

    def __init__(self, store: MetadataStore, specs: SpecCatalog, streams: Streams) -> None:
        super().__init__(store)
        self.specs = specs
        self.streams = streams

    # Flows and connections decide where an inlet's messages go: changes are seen by the next message.
    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        resource = super().create(actor, body, ident)
        self.streams.forget_inlets()
        return resource

    def replace(self, actor: Actor, current: Resource, body: dict[str, Any]) -> Resource:
        resource = super().replace(actor, current, body)
        self.streams.forget_inlets()
        return resource

    def delete(self, actor: Actor, ident: str) -> None:
        super().delete(actor, ident)
        self.streams.forget_inlets()

    def spec_ref(
        self, body: dict[str, Any], errors: list[dict[str, str]], required: bool = True
    ) -> dict[str, Any] | None:
        """The connection spec named by ``connectionSpec.id``, or None with an error recorded."""
        ref = body.get("connectionSpec")
        if ref is None and not required:
            return None
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            errors.append({"path": "connectionSpec.id", "message": "is required"})
            return None
        spec = self.specs.connection_spec(ref["id"])
        if spec is None:
            errors.append(
                {
                    "path": "connectionSpec.id",
                    "message": f"{ref['id']!r} is not a known connection spec (GET /connectionSpecs)",
                }
            )
        return spec

    def render(self, resource: Resource) -> dict[str, Any]:
        return {**resource.doc, "etag": resource.etag, "version": resource.etag}


class Connections(FlowServiceCollection):
    """Base connections: an account at a connector, with credentials encrypted at rest."""

    def __init__(
        self,
        store: MetadataStore,
        specs: SpecCatalog,
        streams: Streams,
        settings: Settings,
        box: SecretBox,
        outbound: OutboundPolicy,
        target_connections: TargetConnections,
    ) -> None:
        super().__init__(store, specs, streams)
        self.settings = settings
        self.box = box
        self.outbound = outbound
        self.target_connections = target_connections

    kind, label = "connection", "connection"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        text_field(body, "description", errors, required=False)
        spec = self.spec_ref(body, errors)
        if existing is not None and spec is not None and spec["id"] != existing.doc["connectionSpec"]["id"]:
            errors.append({"path": "connectionSpec.id", "message": "cannot change; create a new connection"})
        auth = body.get("auth")
        doc_auth: dict[str, Any] | None = None
        extra: dict[str, Any] = {}
        destination = spec is not None and destinations.is_destination(spec["id"])
        state = drafts.connection_state(body, existing, destination)
        if destination:
            actor.require(access.MANAGE_DESTINATIONS, "a destination connection")
            if not drafts.editable(existing):
                raise destinations.refuse_edit()
            extra = destinations.check_connection(self, body, errors)
        if spec is not None:
            doc_auth = self._auth(actor, spec, auth, existing, errors)
        if errors:
            raise ValidationFailed(errors, code="FLOW-1422-400")
        assert spec is not None
        doc = {
            **extra,
            "name": name,
            "description": body.get("description", ""),
            "connectionSpec": {
                "id": spec["id"],
                "version": str(body["connectionSpec"].get("version", "1.0")),
            },
            "state": state
            or (body.get("state", "enabled") if body.get("state") in ("enabled", "disabled") else "enabled"),
        }
        if "providerId" in body or "providerId" in spec:
            doc["providerId"] = body.get("providerId") or spec.get("providerId")
        if doc_auth is not None:
            doc["auth"] = doc_auth
        if extra:  # a destination's name is unique in the sandbox (enforced by the store: alt_id)
            return Built(doc=doc, name=name, alt_id=f"destination:{(name or '').strip().casefold()}")
        return Built(doc=doc, name=name)

    def _auth(
        self,
        actor: Actor,
        spec: dict[str, Any],
        auth: Any,
        existing: Resource | None,
        errors: list[dict[str, str]],
    ) -> dict[str, Any] | None:
        auth_specs = spec.get("authSpec") or []
        if auth is None:
            if auth_specs and self.specs.requires_base_connection(spec):
                names = ", ".join(a["name"] for a in auth_specs)
                errors.append({"path": "auth", "message": f"is required (auth.specName one of: {names})"})
            return None
        if not isinstance(auth, dict):
            errors.append({"path": "auth", "message": "must be an object with specName and params"})
            return None
        spec_name = auth.get("specName")
        auth_spec = self.specs.auth_spec(spec, spec_name) if isinstance(spec_name, str) else None
        if auth_spec is None:
            names = ", ".join(a["name"] for a in auth_specs) or "(none: this spec takes no auth)"
            errors.append({"path": "auth.specName", "message": f"must be one of: {names}"})
            return None
        params = auth.get("params", {})
        if not isinstance(params, dict):
            errors.append({"path": "auth.params", "message": "must be an object"})
            return None
        schema = auth_spec.get("spec") or {"type": "object"}
        params = validation.coerce(params, schema)
        secrets = self.specs.secret_fields(auth_spec)
        old = ((existing.doc.get("auth") or {}).get("params") or {}) if existing else {}
        kept = {k: old[k] for k, v in params.items() if k in secrets and v == MASK and is_sealed(old.get(k))}
        view = {k: (MASK if k in secrets and (is_sealed(v) or k in kept) else v) for k, v in params.items()}
        required = set(schema.get("required") or ())
        for key in secrets & params.keys():
            if not (isinstance(params[key], str) or is_sealed(params[key])):
                errors.append({"path": f"auth.params.{key}", "message": "must be a string"})
            elif key in required and params[key] == "":
                errors.append({"path": f"auth.params.{key}", "message": "is required: it must not be empty"})
        errors.extend(e for e in validation.check(view, schema, "auth.params") if e not in errors)
        if spec["id"] == LOCAL_FILES:  # confined to the allowed folders (connectors/files/roots.py)
            place = roots.Place(actor.org.id, actor.sandbox.name)
            errors.extend(roots.save_errors(self.settings, place, params))
        if destinations.is_destination(spec["id"]):  # secret token request headers and form items
            params = destination_secrets.seal_auth(self.box, actor.org.id, params, errors)
        if errors:
            return None
        stored = dict(params)
        for key in secrets & params.keys():
            if key in kept:
                stored[key] = kept[key]
            elif isinstance(params[key], str):
                stored[key] = self.box.seal(params[key], f"{actor.org.id}:{key}")
        if self.specs.is_streaming(spec) and "sourceId" in (schema.get("properties") or {}):
            inlet = old.get("inletId") or new_hex(32)
            stored["inletId"] = inlet
            stored["inletUrl"] = f"{self.settings.base_url}/collection/{inlet}"
        built: dict[str, Any] = {"specName": auth_spec["name"], "params": stored}
        if destinations.is_destination(spec["id"]):  # its extra headers and form items sealed by the rule
            built[destination_secrets.SEALED_MARK] = destination_secrets.SEALED_VERSION
        return built

    def create(self, actor: Actor, body: Any, ident: str | None = None) -> Resource:
        try:
            return super().create(actor, body, ident)
        except Conflict as exc:  # a destination's name is taken: say so at the field
            if not isinstance(body, dict) or not destinations.is_destination(
                (body.get("connectionSpec") or {}).get("id")
                if isinstance(body.get("connectionSpec"), dict)
                else None
            ):
                raise
            message = "is already the name of a destination in this sandbox; choose another"
            raise Conflict(
                f"A destination named {body.get('name')!r} already exists in this sandbox.",
                code=exc.code,
                report={"errors": [{"path": "name", "message": message}]},
            ) from exc

    def delete(self, actor: Actor, ident: str) -> None:
        """A destination goes with its request (target connections), unless an activation flow uses it."""
        resource = self.get(actor, ident)
        if destinations.is_destination(resource.doc["connectionSpec"]["id"]):
            actor.require(access.MANAGE_DESTINATIONS, "a destination connection")
            targets = [
                i
                for k, i in self.store.referrers(actor.scope, "connection", ident)
                if k == "targetConnection"
            ]
            users = [
                (k, i) for t in targets for k, i in self.store.referrers(actor.scope, "targetConnection", t)
            ]
            if users:
                names = ", ".join(f"{k} {i}" for k, i in users)
                raise Conflict(
                    f"This destination is used by {names}; delete those activation flows first.",
                    code="FLOW-1410-409",
                    report={"referencedBy": [{"type": k, "id": i} for k, i in users]},
                )
            for target in targets:
                self.target_connections.delete(actor, target)
        super().delete(actor, ident)
        if resource.doc["connectionSpec"]["id"] == ids.UPLOADED_FILES:
            try:  # its files go with it; the connection is gone whatever happens here
                roots.remove_uploads(self.settings, roots.Place(actor.org.id, actor.sandbox.name), ident)
            except Exception:  # the store may be away: logged, the files stay
                log.exception("the uploads of deleted connection %s could not all be removed", ident)

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = super().render(resource)
        auth = doc.get("auth")
        if isinstance(auth, dict) and isinstance(auth.get("params"), dict):
            params = {k: mask_sealed(v) for k, v in auth["params"].items()}
            auth = {**auth, "params": params}
            if destinations.is_destination((doc.get("connectionSpec") or {}).get("id")):
                auth = destination_secrets.render_auth(auth)
            doc = {**doc, "auth": auth}
        return doc

    def secret_params(self, actor: Actor, resource: Resource) -> dict[str, Any]:
        """The connection's auth params with secrets decrypted, for connectors (never for responses)."""
        return self.secret_params_of(actor.scope, resource)

    def secret_params_of(self, scope: Scope, resource: Resource) -> dict[str, Any]:
        params = ((resource.doc.get("auth") or {}).get("params")) or {}
        box = self.box
        return {k: open_sealed(box, v, f"{scope.org_id}:{k}") for k, v in params.items()}


class SourceConnections(FlowServiceCollection):
    kind, label = "sourceConnection", "source connection"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        text_field(body, "description", errors, required=False)
        refs: list[tuple[str, str]] = []
        spec = self.spec_ref(body, errors, required=False)
        base_id = body.get("baseConnectionId")
        if base_id is not None:
            spec = _base_spec(self, actor, base_id, spec, errors, refs)
        elif spec is not None and self.specs.requires_base_connection(spec):
            errors.append(
                {
                    "path": "baseConnectionId",
                    "message": f"is required for connection spec {spec.get('name', spec['id'])!r}",
                }
            )
        elif spec is None and not any(e["path"] == "connectionSpec.id" for e in errors):
            errors.append({"path": "baseConnectionId", "message": "is required (or give connectionSpec.id)"})
        data = _data(body, errors)
        if spec is not None and data is not None:
            supported = ((spec.get("sourceSpec") or {}).get("attributes") or {}).get("supportedFormats")
            if supported and data.get("format") not in supported:
                errors.append({"path": "data.format", "message": "must be one of " + ", ".join(supported)})
        params = _params(body, spec, "sourceSpec", errors)
        if errors:
            raise ValidationFailed(errors, code="FLOW-1422-400")
        assert spec is not None
        doc: dict[str, Any] = {
            "name": name,
            "description": body.get("description", ""),
            "baseConnectionId": base_id,
            "connectionSpec": {"id": spec["id"], "version": _version(body)},
            "data": data,
            "params": params,
            "state": "enabled",
        }
        if body.get("providerId") or spec.get("providerId"):
            doc["providerId"] = body.get("providerId") or spec.get("providerId")
        return Built(doc=doc, refs=refs, name=name)


class TargetConnections(FlowServiceCollection):
    def __init__(
        self,
        store: MetadataStore,
        specs: SpecCatalog,
        streams: Streams,
        box: SecretBox,
        outbound: OutboundPolicy,
        schemas: SchemaRegistry,
    ) -> None:
        super().__init__(store, specs, streams)
        self.box = box
        self.outbound = outbound
        self.schemas = schemas

    kind, label = "targetConnection", "target connection"

    def build(self, actor: Actor, body: dict[str, Any], existing: Resource | None) -> Built:
        errors: list[dict[str, str]] = []
        name = text_field(body, "name", errors)
        text_field(body, "description", errors, required=False)
        refs: list[tuple[str, str]] = []
        spec = self.spec_ref(body, errors)
        base_id = body.get("baseConnectionId")
        if base_id is not None:
            spec = _base_spec(self, actor, base_id, spec, errors, refs)
        elif spec is not None and self.specs.requires_base_connection(spec):
            errors.append(
                {
                    "path": "baseConnectionId",
                    "message": f"is required for connection spec {spec.get('name', spec['id'])!r}",
                }
            )
        data = body.get("data", {})
        if not isinstance(data, dict):
            errors.append({"path": "data", "message": "must be an object"})
            data = {}
        params = _params(body, spec, "targetSpec", errors)
        if spec is not None and spec["id"] == ids.DATA_LAKE and params is not None:
            self._check_dataset(actor, data, params, errors, refs)
        state = "enabled"
        if spec is not None and destinations.is_destination(spec["id"]):
            actor.require(access.MANAGE_DESTINATIONS, "a destination's request")
            if not drafts.editable(existing):
                raise destinations.refuse_edit()
            state = drafts.request_state(self.store, actor.scope, body, base_id, errors)
            if params is not None and not any(e["path"].startswith("params") for e in errors):
                params = destinations.stored_request(self, self.box, actor.org.id, base_id, params, errors)
        if errors:
            raise ValidationFailed(errors, code="FLOW-1422-400")
        assert spec is not None
        doc: dict[str, Any] = {
            "name": name,
            "description": body.get("description", ""),
            "baseConnectionId": base_id,
            "connectionSpec": {"id": spec["id"], "version": _version(body)},
            "data": data,
            "params": params,
            "state": state,
        }
        if destinations.is_destination(spec["id"]):  # its secret places are sealed by the rule
            doc[destination_secrets.SEALED_MARK] = destination_secrets.SEALED_VERSION
        return Built(doc=doc, refs=refs, name=name)

    def render(self, resource: Resource) -> dict[str, Any]:
        doc = super().render(resource)
        if destinations.is_destination(doc["connectionSpec"]["id"]):
            doc = destination_secrets.render_request(doc)
        return doc

    def _check_dataset(
        self,
        actor: Actor,
        data: dict[str, Any],
        params: dict[str, Any],
        errors: list[dict[str, str]],
        refs: list[tuple[str, str]],
    ) -> None:
        dataset_id = params.get("dataSetId")
        if not isinstance(dataset_id, str):
            if not any(e["path"] == "params.dataSetId" for e in errors):
                errors.append({"path": "params.dataSetId", "message": "is required"})
            return
        dataset = self.store.get("dataSet", actor.scope, dataset_id)
        if dataset is None:
            errors.append({"path": "params.dataSetId", "message": f"dataset {dataset_id!r} does not exist"})
            return
        refs.append(("dataSet", dataset_id))
        dataset_schema = (dataset.doc.get("schemaRef") or {}).get("id")
        schema = data.get("schema")
        if schema is None:
            data["schema"] = {
                "id": dataset_schema,
                "version": "application/vnd.adobe.xed-full+json;version=1",
            }
            return
        schema_id = schema.get("id") if isinstance(schema, dict) else None
        if not isinstance(schema_id, str):
            errors.append({"path": "data.schema.id", "message": "is required when data.schema is given"})
            return
        found = self.schemas.get_schema(actor, schema_id)
        if found is None:
            errors.append({"path": "data.schema.id", "message": f"schema {schema_id!r} does not exist"})
        elif found.id != dataset_schema:
            errors.append(
                {
                    "path": "data.schema.id",
                    "message": f"does not match the schema of dataset {dataset_id!r} ({dataset_schema})",
                }
            )


def _base_spec(
    coll: FlowServiceCollection,
    actor: Actor,
    base_id: Any,
    spec: dict[str, Any] | None,
    errors: list[dict[str, str]],
    refs: list[tuple[str, str]],
) -> dict[str, Any] | None:
    if not isinstance(base_id, str):
        errors.append({"path": "baseConnectionId", "message": "must be a connection id string"})
        return spec
    base = coll.store.get("connection", actor.scope, base_id)
    if base is None:
        errors.append({"path": "baseConnectionId", "message": f"connection {base_id!r} does not exist"})
        return spec
    refs.append(("connection", base_id))
    base_spec = coll.specs.connection_spec(base.doc["connectionSpec"]["id"])
    if spec is not None and base_spec is not None and spec["id"] != base_spec["id"]:
        errors.append(
            {
                "path": "connectionSpec.id",
                "message": f"differs from the spec of base connection {base_id!r} ({base_spec['id']})",
            }
        )
    return base_spec


def _data(body: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any] | None:
    data = body.get("data")
    if not isinstance(data, dict):
        errors.append({"path": "data.format", "message": "is required: one of " + ", ".join(FORMATS)})
        return None
    if data.get("format") not in FORMATS:
        errors.append({"path": "data.format", "message": "must be one of " + ", ".join(FORMATS)})
        return None
    return data


def _params(
    body: dict[str, Any], spec: dict[str, Any] | None, which: str, errors: list[dict[str, str]]
) -> dict[str, Any] | None:
    params = body.get("params", {})
    if not isinstance(params, dict):
        errors.append({"path": "params", "message": "must be an object"})
        return None
    schema = ((spec or {}).get(which) or {}).get("spec")
    if spec is not None and not (spec.get(which)):
        role = "source" if which == "sourceSpec" else "target"
        errors.append(
            {"path": "connectionSpec.id", "message": f"spec {spec['id']!r} cannot be used as a {role}"}
        )
        return None
    if schema:
        params = validation.coerce(params, schema)
        errors.extend(validation.check(params, schema, "params"))
    return dict(params)


def _version(body: dict[str, Any]) -> str:
    ref = body.get("connectionSpec")
    return str(ref.get("version", "1.0")) if isinstance(ref, dict) else "1.0"

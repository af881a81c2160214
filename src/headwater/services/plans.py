"""Flow plans: one call resolves a flow into everything a runner needs, typed.

:meth:`Plans.resolve` reads the flow and, by its kind (catalog/ids.py :func:`flow_kind`), the documents
its runner uses, in this order: the source connection (batch, dataset and audience activation), the
target connection, the dataset and its resolved schema (batch and streaming ingestion), the mapping set
(when the flow maps). An audience activation's plan also names its segment and, when it has one, the request
sent on exits (its second target connection). A missing document raises what its collection's ``get``
raises (NotFound naming it), except an activation flow's destination: LookupError (the deliverer's own
message).

A plan is frozen and holds no secret: a source's credentials are opened only when a connector is built
(:meth:`Plans.source_auth`), so a cached plan keeps none in memory. ``version`` is a digest of the etags
of every document the plan was built from (``documents``); :meth:`Plans.stale` re-reads those
documents (no schema resolution) and says whether any changed, which is how a cache keyed by flow
knows to resolve again. Compiling the mapping is the runner's (batch and streaming compile differently).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from headwater.catalog.ids import FlowKind, flow_kind
from headwater.errors import HeadwaterError
from headwater.services.audience_activation import segment_of
from headwater.services.tenancy import Actor
from headwater.stores.metadata import MetadataStore, Resource, Scope

if TYPE_CHECKING:
    from headwater.services.catalogsvc import DataSets
    from headwater.services.conversion import MappingSets
    from headwater.services.flowservice import Connections, Flows, SourceConnections, TargetConnections
    from headwater.services.schemas import SchemaRegistry


@dataclass(frozen=True)
class SourcePlan:
    """A flow's source connection: its spec, params, data format and base connection (credentials)."""

    id: str
    spec_id: str
    params: Mapping[str, Any]
    data_format: str | None
    base_connection_id: str | None


@dataclass(frozen=True)
class TargetPlan:
    """A flow's target connection. ``resource`` is the document itself, for the destination opener
    (runtime/delivery/destination.py reads its request templates and auth)."""

    id: str
    spec_id: str
    params: Mapping[str, Any]
    resource: Resource


@dataclass(frozen=True)
class MappingPlan:
    """The flow's mapping set, rendered (as ``GET /mappingSets/{id}`` shows it)."""

    id: str
    version: int | None
    doc: Mapping[str, Any]


@dataclass(frozen=True)
class FlowPlan:
    """A flow resolved for its runner. ``dataset_id`` is the dataset written (ingestion) or read
    (dataset activation); ``schema`` is the dataset's resolved schema (ingestion only). An audience
    activation has ``segment_id`` (the audience it delivers) and ``exit_target`` (the request sent when
    a profile exits; None: exits send nothing)."""

    flow: Resource
    kind: FlowKind
    source: SourcePlan | None
    target: TargetPlan
    dataset_id: str | None
    schema: Mapping[str, Any] | None
    mapping: MappingPlan | None
    options: Mapping[str, Any]
    documents: tuple[tuple[str, str, str], ...]  # (kind, id, etag) of every document read
    version: str
    segment_id: str | None = None
    exit_target: TargetPlan | None = None

    @property
    def flow_id(self) -> str:
        return self.flow.id

    @property
    def scope(self) -> Scope:
        return self.flow.scope

    @property
    def sandbox_name(self) -> Any:
        return self.flow.doc.get("sandboxName")

    @property
    def schedule(self) -> Mapping[str, Any]:
        return self.flow.doc.get("scheduleParams") or {}

    @property
    def enabled(self) -> bool:
        return self.flow.doc.get("state") == "enabled"

    def transformation(self, name: str) -> Mapping[str, Any] | None:
        """The params of the flow's first transformation called ``name`` (Copy, Mapping, Variables)."""
        return transformation(self.flow, name)


class Plans:
    """Resolves flows into :class:`FlowPlan`\\ s (collaborators given explicitly)."""

    def __init__(
        self,
        store: MetadataStore,
        flows: Flows,
        connections: Connections,
        source_connections: SourceConnections,
        target_connections: TargetConnections,
        datasets: DataSets,
        schemas: SchemaRegistry,
        mapping_sets: MappingSets,
    ) -> None:
        self.store = store
        self.flows = flows
        self.connections = connections
        self.source_connections = source_connections
        self.target_connections = target_connections
        self.datasets = datasets
        self.schemas = schemas
        self.mapping_sets = mapping_sets

    def resolve(self, who: Actor | Scope, flow_id: str) -> FlowPlan:
        """The plan of flow ``flow_id`` for ``who`` (an actor; activation flows need only a scope)."""
        scope = who.scope if isinstance(who, Actor) else who
        read: list[Resource] = []
        flow = self._get(self.flows.kind, scope, flow_id, self.flows.not_found, read)
        return self._resolve(who, flow, read)

    def resolve_flow(self, who: Actor | Scope, flow: Resource) -> FlowPlan:
        """The plan of ``flow`` (a document just read)."""
        return self._resolve(who, flow, [flow])

    def stale(self, plan: FlowPlan) -> bool:
        """Whether a document ``plan`` was built from changed (or went) since."""
        for kind, ident, etag in plan.documents:
            current = self.store.get(kind, plan.scope, ident)
            if current is None or current.etag != etag:
                return True
        return False

    def source_auth(self, actor: Actor, source: SourcePlan) -> dict[str, Any]:
        """The source's credentials opened for its connector (with the connector's own keys: the
        connection, and the organization and sandbox the files connectors are confined to)."""
        auth: dict[str, Any] = {}
        if source.base_connection_id:
            base = self.connections.get(actor, source.base_connection_id)
            auth = self.connections.secret_params(actor, base)
        auth["_connectionId"] = source.base_connection_id or source.id
        auth["_orgId"], auth["_sandboxName"] = actor.org.id, actor.sandbox.name
        return auth

    # --- parts ---
    def _resolve(self, who: Actor | Scope, flow: Resource, read: list[Resource]) -> FlowPlan:
        kind = flow_kind(flow.doc)
        scope = flow.scope
        source = None
        if kind in (FlowKind.BATCH, FlowKind.DATASET_ACTIVATION, FlowKind.AUDIENCE_ACTIVATION):
            source = _source(self._first(self.source_connections, scope, flow, "sourceConnectionIds", read))
        target = self._target(scope, flow, kind, read)
        segment_id = exit_target = None
        if kind is FlowKind.AUDIENCE_ACTIVATION:
            segment_id = segment_of(flow.doc.get("transformations"))
            if len(flow.doc.get("targetConnectionIds") or []) > 1:
                exit_target = self._target(scope, flow, kind, read, index=1)
        dataset_id: str | None = None
        schema: dict[str, Any] | None = None
        mapping = None
        if kind is FlowKind.DATASET_ACTIVATION and source is not None:
            dataset_id = source.params["dataSetId"]
        if kind in (FlowKind.BATCH, FlowKind.STREAMING):
            actor = _actor(who)
            dataset_id = target.params["dataSetId"]
            dataset = self._get(self.datasets.kind, scope, dataset_id, self.datasets.not_found, read)
            schema = self._schema(actor, dataset.doc["schemaRef"]["id"], read)
            mapping = self._mapping(actor, flow, read)
        documents = tuple((r.kind, r.id, r.etag) for r in read)
        version = hashlib.sha1(repr(documents).encode()).hexdigest()
        options = flow.doc.get("options") or {}
        return FlowPlan(
            flow, kind, source, target, dataset_id, schema, mapping, options, documents, version,
            segment_id, exit_target,
        )  # fmt: skip

    def _target(
        self, scope: Scope, flow: Resource, kind: FlowKind, read: list[Resource], index: int = 0
    ) -> TargetPlan:
        if kind.delivers:
            ident = flow.doc["targetConnectionIds"][index]
            resource = self.store.get(self.target_connections.kind, scope, ident)
            if resource is None:
                raise LookupError(f"the destination of activation flow {flow.id} no longer exists")
            read.append(resource)
        else:
            resource = self._first(self.target_connections, scope, flow, "targetConnectionIds", read)
        spec_id = (resource.doc.get("connectionSpec") or {}).get("id") or ""
        return TargetPlan(resource.id, spec_id, resource.doc.get("params") or {}, resource)

    def _schema(self, actor: Actor, schema_id: str, read: list[Resource]) -> dict[str, Any]:
        schema = self.schemas.get_schema(actor, schema_id)
        if schema is None:
            raise self.schemas.schemas.not_found(schema_id)
        read.append(schema)
        return self.schemas.resolved(actor, schema)

    def _mapping(self, actor: Actor, flow: Resource, read: list[Resource]) -> MappingPlan | None:
        spec = transformation(flow, "Mapping")
        if spec is None:
            return None
        raw = spec.get("mappingVersion")
        version = int(raw) if raw is not None else None
        mapping_set = self.mapping_sets.get(actor, spec["mappingId"], version)
        read.append(mapping_set)
        return MappingPlan(mapping_set.id, version, self.mapping_sets.render(mapping_set))

    def _first(
        self, collection: Any, scope: Scope, flow: Resource, key: str, read: list[Resource]
    ) -> Resource:
        return self._get(collection.kind, scope, flow.doc[key][0], collection.not_found, read)

    def _get(self, kind: str, scope: Scope, ident: str, not_found: Any, read: list[Resource]) -> Resource:
        resource = self.store.get(kind, scope, ident)
        if resource is None:
            raise not_found(ident)
        read.append(resource)
        return resource


def transformation(flow: Resource, name: str) -> dict[str, Any] | None:
    """The params of ``flow``'s first transformation called ``name``, or None."""
    for item in flow.doc.get("transformations") or []:
        if item.get("name") == name:
            params: dict[str, Any] = item.get("params") or {}
            return params
    return None


def _source(resource: Resource) -> SourcePlan:
    doc = resource.doc
    data_format = (doc.get("data") or {}).get("format")
    return SourcePlan(
        resource.id,
        doc["connectionSpec"]["id"],
        doc.get("params") or {},
        data_format if isinstance(data_format, str) else None,
        doc.get("baseConnectionId") or None,
    )


def _actor(who: Actor | Scope) -> Actor:
    if not isinstance(who, Actor):
        raise HeadwaterError("an ingestion flow's plan needs the actor its schema is resolved for")
    return who

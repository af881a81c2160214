"""Streaming ingestion: inlets, routing of messages to streaming flows, and the durable log behind them.

CONTRACT used by other modules (keep these signatures):

    Streams(settings, store, box)
        .log -> StreamLog                      the process's streaming log (opened on first use)
        await .publish(scope, flow_id, records, kind="raw") -> list[int]
            Append ``records`` (dicts shaped as the flow's source records) to the flow's log stream.
            Returns when they are durable: the caller may then answer 2xx. kind "raw" records go through
            the flow's mapping; kind "xdm" records are already shaped like the target schema; kind
            "delete" records are {"key": value} removals by the flow's ``options.upsertKey``.

Flow options the micro-batcher (runtime/streaming.py) reads:
    options.cadenceSeconds  how often the flow commits to its dataset; 0 (default) = continuous
                            (about every HEADWATER_STREAM_FLUSH_SECONDS)
    options.dedupPath       target path of a record's id: a record whose id is already in the dataset
                            is dropped (default "_id" when the target schema has it)
    options.upsertKey       target path of a primary key: a record replaces the row with the same key
                            (profile data); also the key of "delete" records
    options.deduplicate     false turns duplicate suppression off (every message becomes a row)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from headwater.catalog import ids
from headwater.connectors.customerio.webhook import SIGNING_KEY_PARAM
from headwater.settings import Settings
from headwater.stores.log import StreamLog, open_log
from headwater.stores.metadata import MetadataStore, Resource, Scope
from headwater.stores.secrets import SecretBox, is_sealed

INLET_CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class InletFlow:
    flow_id: str
    enabled: bool
    dataset_id: str | None
    schema_id: str | None
    signing_key: str | None  # Customer.io webhook signing key of the flow's source (decrypted)
    activation: bool = False  # an activation flow: gets a copy of every message, is never routed to


#: Routing result for an inlet that only feeds activation flows (no ingestion flow takes the message).
ACTIVATION_ONLY = InletFlow("", True, None, None, None)


@dataclass(frozen=True)
class Inlet:
    """Where an inlet id leads: a streaming flow's own inlet, or an HTTP API connection's."""

    inlet_id: str
    scope: Scope
    sandbox_name: str
    kind: str  # "flow" | "connection"
    resource_id: str
    auth_required: bool
    flows: tuple[InletFlow, ...] = field(default=())

    def flow(self, flow_id: str) -> InletFlow | None:
        found = self.by_id.get(flow_id)
        return found if found is not None and not found.activation else None

    @property
    def activations(self) -> tuple[str, ...]:
        """The enabled activation flows fed by this inlet: each gets every accepted message."""
        found: tuple[str, ...] | None = self.__dict__.get("_activations")
        if found is None:
            found = tuple(f.flow_id for f in self.flows if f.activation and f.enabled)
            object.__setattr__(self, "_activations", found)
        return found

    @property
    def by_id(self) -> dict[str, InletFlow]:
        found: dict[str, InletFlow] | None = self.__dict__.get("_by_id")
        if found is None:
            found = {f.flow_id: f for f in self.flows}
            object.__setattr__(self, "_by_id", found)
        return found


class MessageRejected(Exception):
    """One message cannot be accepted; ``status`` and ``message`` go into its response."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Streams:
    def __init__(self, settings: Settings, store: MetadataStore, box: SecretBox) -> None:
        self.settings = settings
        self.store = store
        self.box = box
        self._log: StreamLog | None = None
        self._lock = threading.Lock()
        self._inlets: dict[str, tuple[float, Inlet | None]] = {}
        self._index: dict[str, tuple[str, Scope, str]] = {}
        self._index_built = 0.0
        self.validators: dict[str, Any] = {}  # flow id -> MicroBatcher, for synchronous validation

    @property
    def log(self) -> StreamLog:
        if self._log is None:
            with self._lock:
                if self._log is None:
                    settings = self.settings
                    self._log = open_log(settings.stream_log, str(settings.streams_dir))
        return self._log

    async def publish(
        self, scope: Scope, flow_id: str, records: Sequence[dict[str, Any]], kind: str = "raw"
    ) -> list[int]:
        now = int(time.time() * 1000)
        payloads = [orjson.dumps({"k": kind, "t": now, "o": scope.org_id, "r": r}) for r in records]
        return await self.log.append_async(flow_id, payloads)

    async def publish_routed(
        self, inlet: Inlet, flow_id: str, records: Sequence[dict[str, Any]], kind: str = "raw"
    ) -> list[int]:
        """Publish an inlet's routed messages to their flow and to every activation flow of the inlet,
        all durable when this returns; the offsets are those in the first stream written."""
        activations = inlet.activations
        if not activations:  # the usual case: one stream, no gather on the inlet's hot path
            return await self.publish(inlet.scope, flow_id, records, kind)
        streams = [f for f in (flow_id, *activations) if f]
        results = await asyncio.gather(*(self.publish(inlet.scope, f, records, kind) for f in streams))
        return results[0]

    # --- inlets ---
    def inlet(self, inlet_id: str) -> Inlet | None:
        """The inlet ``inlet_id``, cached briefly. An unknown id rescans flows and connections, at most
        once a second (flow and connection changes in this process reset that at once)."""
        now = time.monotonic()
        hit = self._inlets.get(inlet_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        where = self._index.get(inlet_id)
        if where is None and now - self._index_built >= 1.0:
            with self._lock:
                self._index = self._scan_inlets()
                self._index_built = time.monotonic()
            where = self._index.get(inlet_id)
        if where is None:
            return None
        inlet = self._load_inlet(inlet_id, *where)
        if len(self._inlets) > 10_000:
            self._inlets.clear()
        self._inlets[inlet_id] = (now + INLET_CACHE_SECONDS, inlet)
        return inlet

    def _scan_inlets(self) -> dict[str, tuple[str, Scope, str]]:
        index: dict[str, tuple[str, Scope, str]] = {}
        store = self.store
        for flow in store.scan_kind("flow"):
            inlet_id = (flow.doc.get("options") or {}).get("inletId")
            if isinstance(inlet_id, str):
                index[inlet_id] = ("flow", flow.scope, flow.id)
        for conn in store.scan_kind("connection"):
            inlet_id = ((conn.doc.get("auth") or {}).get("params") or {}).get("inletId")
            if isinstance(inlet_id, str):
                index[inlet_id] = ("connection", conn.scope, conn.id)
        return index

    def _load_inlet(self, inlet_id: str, kind: str, scope: Scope, resource_id: str) -> Inlet | None:
        store = self.store
        resource = store.get(kind, scope, resource_id)
        if resource is None:
            return None
        if kind == "flow":
            flows = [resource]
            auth_required = False
        else:
            params = (resource.doc.get("auth") or {}).get("params") or {}
            auth_required = params.get("authenticationRequired") is True
            flows = self._flows_of_connection(scope, resource_id)
        return Inlet(
            inlet_id,
            scope,
            str(resource.doc.get("sandboxName") or ""),
            kind,
            resource_id,
            auth_required,
            tuple(self._inlet_flow(scope, flow) for flow in flows),
        )

    def _flows_of_connection(self, scope: Scope, connection_id: str) -> list[Resource]:
        store = self.store
        flows: list[Resource] = []
        for kind, source_id in store.referrers(scope, "connection", connection_id):
            if kind != "sourceConnection":
                continue
            for flow_kind, flow_id in store.referrers(scope, "sourceConnection", source_id):
                flow = store.get("flow", scope, flow_id) if flow_kind == "flow" else None
                if flow is not None:
                    flows.append(flow)
        return flows

    def _inlet_flow(self, scope: Scope, flow: Resource) -> InletFlow:
        store = self.store
        dataset_id = schema_id = signing_key = None
        targets = flow.doc.get("targetConnectionIds") or []
        target = store.get("targetConnection", scope, targets[0]) if targets else None
        if target is not None:
            dataset_id = (target.doc.get("params") or {}).get("dataSetId")
            dataset = store.get("dataSet", scope, dataset_id) if dataset_id else None
            if dataset is not None:
                schema_id = (dataset.doc.get("schemaRef") or {}).get("id")
        sources = flow.doc.get("sourceConnectionIds") or []
        source = store.get("sourceConnection", scope, sources[0]) if sources else None
        base_id = source.doc.get("baseConnectionId") if source is not None else None
        base = store.get("connection", scope, base_id) if base_id else None
        if base is not None:
            sealed = ((base.doc.get("auth") or {}).get("params") or {}).get(SIGNING_KEY_PARAM)
            if is_sealed(sealed):
                signing_key = self.box.open(sealed, f"{scope.org_id}:{SIGNING_KEY_PARAM}")
            elif isinstance(sealed, str) and sealed:
                signing_key = sealed
        activation = ids.flow_kind(flow.doc) is ids.FlowKind.ACTIVATION
        enabled = flow.doc.get("state") == "enabled"
        return InletFlow(flow.id, enabled, dataset_id, schema_id, signing_key, activation)

    def forget_inlets(self) -> None:
        self._inlets.clear()
        self._index_built = 0.0

    # --- messages ---
    def route(self, inlet: Inlet, message: Any, flow_hint: str | None) -> tuple[str, str, dict[str, Any]]:
        """(flow id, kind, record) of one message posted to ``inlet``; MessageRejected when it cannot go."""
        if not isinstance(message, dict):
            raise MessageRejected(
                f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.scope.org_id}] "
                "Message has unknown xdm format: a message must be a JSON object"
            )
        header, body = message.get("header"), message.get("body")
        if isinstance(header, dict) and isinstance(body, dict) and "xdmEntity" in body:
            return self._route_xdm(inlet, header, body, flow_hint)
        flow = self._pick_flow(inlet, flow_hint, None)
        return flow.flow_id, "raw", message

    def _route_xdm(
        self, inlet: Inlet, header: dict[str, Any], body: dict[str, Any], flow_hint: str | None
    ) -> tuple[str, str, dict[str, Any]]:
        prefix = f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.scope.org_id}]"
        org = header.get("imsOrgId")
        if org is not None and org != inlet.scope.org_id:
            raise MessageRejected(f"{prefix} header.imsOrgId [{org}] is not the organization of this inlet")
        entity = body.get("xdmEntity")
        if not isinstance(entity, dict):
            raise MessageRejected(f"{prefix} body.xdmEntity must be an object")
        dataset_id = header.get("datasetId")
        hint = header.get("flowId") if isinstance(header.get("flowId"), str) else flow_hint
        flow = self._pick_flow(inlet, hint, dataset_id if isinstance(dataset_id, str) else None)
        if dataset_id is not None and dataset_id != flow.dataset_id:
            raise MessageRejected(
                f"{prefix} header.datasetId [{dataset_id}] is not the dataset of dataflow {flow.flow_id}"
            )
        ref = header.get("schemaRef")
        schema_id = ref.get("id") if isinstance(ref, dict) else None
        if schema_id is not None and schema_id != flow.schema_id:
            raise MessageRejected(
                f"{prefix} header.schemaRef.id [{schema_id}] does not exist or is not the schema of dataset "
                f"{flow.dataset_id}"
            )
        return flow.flow_id, "xdm", entity

    def _pick_flow(self, inlet: Inlet, flow_id: str | None, dataset_id: str | None) -> InletFlow:
        prefix = f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.scope.org_id}]"
        if flow_id is not None:
            flow = inlet.flow(flow_id)
            if flow is None:
                raise MessageRejected(f"{prefix} dataflow [{flow_id}] does not take messages from this inlet")
            return flow
        candidates = [
            f for f in inlet.flows if not f.activation and (dataset_id is None or f.dataset_id == dataset_id)
        ]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates and inlet.activations and flow_id is None and dataset_id is None:
            return ACTIVATION_ONLY
        if not candidates:
            raise MessageRejected(f"{prefix} no dataflow takes messages from this inlet; create one first")
        raise MessageRejected(
            f"{prefix} several dataflows take messages from this inlet: name one with the x-adobe-flow-id "
            "header or header.flowId"
        )

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

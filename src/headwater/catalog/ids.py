"""Every connection spec, flow spec and provider id Headwater's code names, and the kind of a flow.

The ids are the catalog's own (``catalog/*/*.json`` and ``connectors/*/spec*.json``;
tests/test_catalog_ids.py checks each constant against its file). Code compares ids only through these
names, and decides what kind of flow it holds only through :func:`flow_kind`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

# Connection specs: sources.
SALESFORCE = "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
SALESFORCE_SERVICE_CLOUD = "b66ab34-8619-49cb-96d1-39b37ede86ea"
DYNAMICS = "38ad80fe-8b06-4938-94f4-d4ee80266b07"
LOCAL_FILES = "c79513cd-ceb9-437a-812d-a5b148aceb4c"
UPLOADED_FILES = "f86cfe35-a63a-41ad-818c-7924dda79033"
POSTGRESQL = "deb251f1-86be-44d2-ae93-634cd683b572"
HTTP_API_STREAMING = "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb"
CUSTOMERIO = "96479064-7b8a-4d69-b9ed-21c5683837ea"
# Connection specs: the lake (target of ingestion, source of dataset activation), the unified profiles
# (source of audience activation: AEP's "Profile Service" spec) and destinations.
DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
PROFILE_SERVICE = "8a9c3494-9708-43d7-ae3f-cda01e5030e1"
HTTP_DESTINATION = "ce55fc04-f79b-4668-a8b7-2565a5c65ad4"

# Flow specs.
CRM_TO_AEP = "14518937-270c-4525-bdec-c2ba7cce3860"
CLOUD_STORAGE_TO_AEP = "9753525b-82c7-4dce-8a9b-5ccfce2b9876"
FILES_TO_AEP = "52b72b28-2b0c-4932-b239-a3ed85e219bc"
DATABASE_TO_AEP = "36f6fd49-fd11-49d8-8350-1a1e43917b67"
HTTP_STREAMING_NO_TRANSFORMATION = "d8a6f005-7eaf-4153-983e-e8574508b877"
HTTP_STREAMING_WITH_TRANSFORMATION = "c1a19761-d2c7-4702-b9fa-fe91f0613e81"
CUSTOMERIO_STREAMING = "e77fde5a-22a8-11ed-861d-0242ac120002"
ACTIVATION = "cf0ccb51-d329-4dd2-a912-d3c87e068aa4"

# Providers.
PROVIDER_CRM = "0ed90a81-07f4-4586-8190-b40eccef1c5a"
PROVIDER_CLOUD = "64de6006-9854-495f-8bf7-aaba56743806"
PROVIDER_STREAMING = "521eee4d-8cbe-4906-bb48-fb6bd4450033"

# The flow specs whose flows run continuously from an inlet (their spec's frequency is "streaming").
STREAMING_FLOW_SPECS = frozenset(
    {HTTP_STREAMING_NO_TRANSFORMATION, HTTP_STREAMING_WITH_TRANSFORMATION, CUSTOMERIO_STREAMING}
)
# The connection specs whose connections are inlets (their spec's isStreaming is true).
STREAMING_CONNECTION_SPECS = frozenset({HTTP_API_STREAMING, CUSTOMERIO})


class FlowKind(StrEnum):
    """What runs a flow: the run queue (batch), a stream consumer writing the lake (streaming), a stream
    consumer delivering to a destination (activation), the run queue reading a dataset and delivering
    it (dataset activation), or a reader of an audience's membership transitions delivering them
    (audience activation)."""

    BATCH = "batch"
    STREAMING = "streaming"
    ACTIVATION = "activation"
    DATASET_ACTIVATION = "datasetActivation"
    AUDIENCE_ACTIVATION = "audienceActivation"

    @property
    def consumes_log(self) -> bool:
        """Whether flows of this kind read the streaming log (and own a consumer position in it)."""
        return self in (FlowKind.STREAMING, FlowKind.ACTIVATION)

    @property
    def delivers(self) -> bool:
        """Whether flows of this kind deliver to a destination (an activation flow spec)."""
        return self in (FlowKind.ACTIVATION, FlowKind.DATASET_ACTIVATION, FlowKind.AUDIENCE_ACTIVATION)

    @property
    def delivers_continuously(self) -> bool:
        """Whether the activation supervisor delivers flows of this kind as their feed grows (a streaming
        log, an audience's transitions), reporting one run per hour."""
        return self in (FlowKind.ACTIVATION, FlowKind.AUDIENCE_ACTIVATION)

    @property
    def runs_on_queue(self) -> bool:
        """Whether runs of flows of this kind are scheduled and claimed through the run queue."""
        return self in (FlowKind.BATCH, FlowKind.DATASET_ACTIVATION)


def flow_kind(flow: Mapping[str, Any]) -> FlowKind:
    """The kind of the flow document ``flow`` (as stored: flowSpec, inheritedAttributes)."""
    spec_id = (flow.get("flowSpec") or {}).get("id")
    if spec_id == ACTIVATION:
        sources = _source_specs(flow)
        if DATA_LAKE in sources:
            return FlowKind.DATASET_ACTIVATION
        return FlowKind.AUDIENCE_ACTIVATION if PROFILE_SERVICE in sources else FlowKind.ACTIVATION
    if spec_id in STREAMING_FLOW_SPECS:
        return FlowKind.STREAMING
    return FlowKind.BATCH


def _source_specs(flow: Mapping[str, Any]) -> set[str]:
    inherited = (flow.get("inheritedAttributes") or {}).get("sourceConnections") or []
    specs = (source.get("connectionSpec") or {} for source in inherited if isinstance(source, dict))
    return {spec["id"] for spec in specs if isinstance(spec.get("id"), str)}

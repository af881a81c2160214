"""The ids code names (headwater.catalog.ids) are the catalog's own, and flow kinds follow the specs."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from headwater.catalog import ids
from headwater.catalog.ids import FlowKind, flow_kind


def _catalog_files(folder: str) -> list:
    root = resources.files("headwater") / "catalog" / folder
    return [p for p in root.iterdir() if p.name.endswith(".json")]


def _connector_files() -> list:
    """Every spec*.json under a connector folder, found on disk (not through the registry, so a spec file
    the registry forgot still has to be named here)."""
    root = resources.files("headwater") / "connectors"
    folders = [f for f in root.iterdir() if f.is_dir()]
    return [p for f in folders for p in f.iterdir() if p.name.startswith("spec") and p.name.endswith(".json")]


def _specs(files: list) -> dict[str, dict]:
    docs = [json.loads(p.read_bytes()) for p in files]
    return {d["id"]: d for d in docs}


CONNECTION_SPECS = _specs(_connector_files() + _catalog_files("connection_specs"))
FLOW_SPECS = _specs(_catalog_files("flow_specs"))

NAMED_CONNECTIONS = {
    "SALESFORCE": "salesforce",
    "SALESFORCE_SERVICE_CLOUD": "salesforce-service-cloud",
    "DYNAMICS": "microsoft-dynamics",
    "LOCAL_FILES": "local-files",
    "UPLOADED_FILES": "uploaded-files",
    "POSTGRESQL": "postgresql",
    "HTTP_API_STREAMING": "http-api-streaming",
    "CUSTOMERIO": "customerio",
    "DATA_LAKE": "datalake",
    "PROFILE_SERVICE": "Profile Service",
    "HTTP_DESTINATION": "http-destination",
}
NAMED_FLOWS = {
    "CRM_TO_AEP": "CRMToAEP",
    "CLOUD_STORAGE_TO_AEP": "CloudStorageToAEP",
    "FILES_TO_AEP": "FilesToAEP",
    "DATABASE_TO_AEP": "DatabaseToAEP",
    "HTTP_STREAMING_NO_TRANSFORMATION": "HttpStreamingNoTransformation",
    "HTTP_STREAMING_WITH_TRANSFORMATION": "HttpStreamingWithTransformation",
    "CUSTOMERIO_STREAMING": "CustomerIOStreaming",
    "ACTIVATION": "Activation",
}


@pytest.mark.parametrize("constant,name", sorted(NAMED_CONNECTIONS.items()))
def test_each_connection_spec_constant_is_the_catalog_id_of_its_spec(constant: str, name: str) -> None:
    spec = CONNECTION_SPECS[getattr(ids, constant)]
    assert spec["name"] == name


def test_the_catalog_serves_every_connection_spec_file() -> None:
    """As written, except a side the spec lacks (``"targetSpec": null``): left out, as the platform does."""
    from headwater.services.specs import catalog

    sides = ("sourceSpec", "targetSpec")
    expected = {
        i: {k: v for k, v in d.items() if not (k in sides and v is None)} for i, d in CONNECTION_SPECS.items()
    }
    assert catalog().connection_specs == expected


def test_each_flow_spec_constant_is_a_catalog_flow_spec() -> None:
    for constant in NAMED_FLOWS:
        assert getattr(ids, constant) in FLOW_SPECS, constant
    # Every flow spec has its own name, so a lookup by name (aepp's, document 002's) finds one.
    names = [d["name"] for d in FLOW_SPECS.values()]
    assert len(names) == len(set(names))
    for constant, name in NAMED_FLOWS.items():
        if not name.endswith(".json"):
            assert FLOW_SPECS[getattr(ids, constant)]["name"] == name


def test_every_flow_spec_and_provider_has_a_name_in_code() -> None:
    """Flow specs and providers are the catalog's own and each has a name. A connection spec needs one
    only when code compares against it: a new source connector registers by its folder and JSON alone."""
    named = {v for k, v in vars(ids).items() if k.isupper() and isinstance(v, str)}
    assert set(FLOW_SPECS) <= named
    providers = {d["providerId"] for d in [*CONNECTION_SPECS.values(), *FLOW_SPECS.values()]}
    assert providers <= named


def test_streaming_sets_follow_the_spec_attributes() -> None:
    streaming_flows = {i for i, d in FLOW_SPECS.items() if d["attributes"].get("frequency") == "streaming"}
    assert streaming_flows == ids.STREAMING_FLOW_SPECS
    inlets = {i for i, d in CONNECTION_SPECS.items() if (d.get("attributes") or {}).get("isStreaming")}
    assert inlets == ids.STREAMING_CONNECTION_SPECS


def _flow(spec_id: str, *source_specs: str) -> dict:
    sources = [
        {"id": f"s{i}", "connectionSpec": {"id": s, "version": "1.0"}} for i, s in enumerate(source_specs)
    ]
    return {
        "flowSpec": {"id": spec_id, "version": "1.0"},
        "inheritedAttributes": {"sourceConnections": sources},
    }


def test_the_kind_of_every_flow_spec() -> None:
    assert flow_kind(_flow(ids.CRM_TO_AEP, ids.SALESFORCE)) is FlowKind.BATCH
    assert flow_kind(_flow(ids.FILES_TO_AEP, ids.LOCAL_FILES)) is FlowKind.BATCH
    assert flow_kind(_flow(ids.DATABASE_TO_AEP, ids.POSTGRESQL)) is FlowKind.BATCH
    for spec in ids.STREAMING_FLOW_SPECS:
        assert flow_kind(_flow(spec, ids.HTTP_API_STREAMING)) is FlowKind.STREAMING
    assert flow_kind(_flow(ids.ACTIVATION, ids.HTTP_API_STREAMING)) is FlowKind.ACTIVATION
    assert flow_kind(_flow(ids.ACTIVATION, ids.CUSTOMERIO)) is FlowKind.ACTIVATION
    assert flow_kind(_flow(ids.ACTIVATION, ids.DATA_LAKE)) is FlowKind.DATASET_ACTIVATION
    assert flow_kind(_flow(ids.ACTIVATION, ids.PROFILE_SERVICE)) is FlowKind.AUDIENCE_ACTIVATION
    # A flow spec alone (a flow being built) is an activation: it delivers, whatever its source.
    assert flow_kind({"flowSpec": {"id": ids.ACTIVATION}}) is FlowKind.ACTIVATION
    assert [k for k in FlowKind if k.consumes_log] == [FlowKind.STREAMING, FlowKind.ACTIVATION]
    assert [k for k in FlowKind if k.runs_on_queue] == [FlowKind.BATCH, FlowKind.DATASET_ACTIVATION]
    assert [k for k in FlowKind if k.delivers] == [
        FlowKind.ACTIVATION,
        FlowKind.DATASET_ACTIVATION,
        FlowKind.AUDIENCE_ACTIVATION,
    ]
    assert [k for k in FlowKind if k.delivers_continuously] == [
        FlowKind.ACTIVATION,
        FlowKind.AUDIENCE_ACTIVATION,
    ]

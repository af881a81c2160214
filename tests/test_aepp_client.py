"""aepp (Adobe's Python client for Experience Platform, PyPI ``aepp``) against a live Headwater.

aepp is configured as for the platform, then only its host strings (``aepp.config.endpoints``, the IMS
token endpoint) point at the server; every call below is aepp's own, and the assertions read what aepp
returns. One server for the module (SQLite); setup that aepp has no call for goes through the HTTP API.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support import ApiClient, LiveServer, start_server, token_for, wait_until

aepp = pytest.importorskip("aepp")

SR = "/data/foundation/schemaregistry"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
PERSONAL = "https://ns.adobe.com/xdm/context/profile-personal-details"
DATA_LAKE_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(make_settings(tmp_path_factory.mktemp("headwater-aepp") / "home"))
    yield server
    server.stop()
    server.services.close()


@pytest.fixture(scope="module")
def api(live: LiveServer) -> Iterator[ApiClient]:
    c = live.creds
    token = token_for(live.base_url, c["apiKey"], c["clientSecret"])
    with ApiClient(live.base_url, token, c["apiKey"], c["orgId"], "prod", c["tenantId"]) as client:
        yield client


@pytest.fixture(scope="module")
def configured(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """aepp configured for the default organization's prod sandbox; only hosts and credentials differ
    from a platform configuration. aepp may write files in the working folder: a temporary one."""
    from aepp import config

    c = live.creds
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("aepp-cwd"))
    aepp.configure(
        org_id=c["orgId"], client_id=c["apiKey"], secret=c["clientSecret"], scopes="openid", sandbox="prod"
    )
    config.endpoints["global"] = live.base_url
    config.endpoints["streaming"]["inlet"] = live.base_url + "/data/core/edge"
    config.endpoints["streaming"]["collection"] = live.base_url
    config.config_object["imsEndpoint"] = live.base_url
    config.config_object["oauthTokenEndpointV2"] = live.base_url + "/ims/token/v3"
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def seeded(api: ApiClient) -> dict[str, Any]:
    """A tenant field group, a union schema using it with a primary identity, and its dataset."""
    tenant = f"_{api.tenant_id}"
    group = api.post(
        f"{SR}/tenant/fieldgroups",
        json={
            "type": "object",
            "title": "Loyalty",
            "meta:intendedToExtend": [PROFILE],
            "definitions": {
                "loyalty": {
                    "properties": {tenant: {"type": "object", "properties": {"points": {"type": "integer"}}}}
                }
            },
            "allOf": [{"$ref": "#/definitions/loyalty"}],
        },
    )
    assert group.status_code == 201, group.text
    schema = api.post(
        f"{SR}/tenant/schemas",
        json={
            "type": "object",
            "title": "Loyalty members",
            "allOf": [{"$ref": PROFILE}, {"$ref": PERSONAL}, {"$ref": group.json()["$id"]}],
            "meta:immutableTags": ["union"],
        },
    )
    assert schema.status_code == 201, schema.text
    schema_id = schema.json()["$id"]
    descriptor = api.post(
        f"{SR}/tenant/descriptors",
        json={
            "@type": "xdm:descriptorIdentity",
            "xdm:sourceSchema": schema_id,
            "xdm:sourceVersion": 1,
            "xdm:sourceProperty": "/personalEmail/address",
            "xdm:namespace": "Email",
            "xdm:property": "xdm:code",
            "xdm:isPrimary": True,
        },
    )
    assert descriptor.status_code == 201, descriptor.text
    dataset = api.post(
        "/data/foundation/catalog/dataSets",
        json={"name": "Loyalty members", "schemaRef": {"id": schema_id}},
    )
    assert dataset.status_code == 201, dataset.text
    return {
        "tenant": tenant,
        "fieldgroup": group.json()["$id"],
        "schema": schema_id,
        "descriptor": descriptor.json()["@id"],
        "dataset": dataset.json()[0].split("/")[-1],
    }


def test_trailing_slashes_name_the_same_collection(
    live: LiveServer, api: ApiClient, configured: None, seeded: dict[str, Any]
) -> None:
    from aepp import schema

    s = schema.Schema()
    assert s.getStats()["tenantId"] == api.tenant_id  # GET /stats/
    assert [x["title"] for x in s.getSchemas()] == ["Loyalty members"]  # GET /tenant/schemas/
    assert [x["$id"] for x in s.getFieldGroups()] == [seeded["fieldgroup"]]  # /tenant/fieldgroups/
    assert PERSONAL in [x["$id"] for x in s.getFieldGroupsGlobal()]  # /global/fieldgroups/
    # Everywhere, the console and /docs included; a POST with a trailing slash creates.
    assert api.get(f"{SR}/tenant/schemas/").json() == api.get(f"{SR}/tenant/schemas").json()
    assert httpx.get(live.base_url + "/docs/").status_code == httpx.get(live.base_url + "/docs").status_code
    console = httpx.get(live.base_url + "/console/", follow_redirects=False)
    assert console.status_code == httpx.get(live.base_url + "/console", follow_redirects=False).status_code
    created = api.post(
        "/data/foundation/conversion/mappingSets/",
        json={
            "xdmSchema": seeded["schema"],
            "mappings": [{"sourceType": "ATTRIBUTE", "source": "e", "destination": "personalEmail.address"}],
        },
    )
    assert created.status_code == 201, created.text


def test_schema_registry_classes_unions_representations_descriptors(
    api: ApiClient, configured: None, seeded: dict[str, Any]
) -> None:
    from aepp import schema

    s = schema.Schema()
    assert s.getClasses() == []  # tenant classes: none, in the platform's envelope
    assert PROFILE in [c["$id"] for c in s.getClassesGlobal()]
    unions = s.getUnions()
    assert [(u["$id"], u["meta:altId"]) for u in unions] == [
        (f"{PROFILE}__union", "_xdm.context.profile__union")
    ]
    union = s.getUnion(unions[0]["$id"])  # Accept: application/vnd.adobe.xdm-full+json
    assert union["properties"][seeded["tenant"]]["properties"]["points"]["type"] == "integer"
    assert "personalEmail" in union["properties"]
    full = s.getSchema(seeded["schema"])  # xdm-full: resolved
    assert full["title"] == "Loyalty members"
    assert full["properties"][seeded["tenant"]]["properties"]["points"]["type"] == "integer"
    paths = s.getSchemaPaths(seeded["schema"])  # xdm-full-flat: every field at the root
    assert f"{seeded['tenant']}.points" in paths and "personalEmail.address" in paths
    flat_group = s.getFieldGroup(seeded["fieldgroup"], full=True, flat=True)
    assert flat_group["properties"][f"{seeded['tenant']}.points"]["type"] == "integer"
    descriptors = s.getDescriptors()  # _page.next is read
    assert [d["@id"] for d in descriptors] == [seeded["descriptor"]]
    assert api.get(f"{SR}/tenant/classes/nope").status_code == 404
    assert api.get(f"{SR}/tenant/unions/nope").status_code == 404


def test_catalog_datasets_carry_their_classification(configured: None, seeded: dict[str, Any]) -> None:
    from aepp import catalog

    cat = catalog.Catalog()
    datasets = cat.getDataSets()
    assert datasets[seeded["dataset"]]["classification"] == {
        "dataBehavior": "record",
        "managedBy": "CUSTOMER",
    }
    infos = cat.data.infos  # aepp's dataframe of getDatasetsInfos, built from classification and tags
    assert infos.loc[infos["id"] == seeded["dataset"], "dataBehavior"].tolist() == ["record"]


def test_mapping_set_mappings(api: ApiClient, configured: None, seeded: dict[str, Any]) -> None:
    from aepp import dataprep

    created = api.post(
        "/data/foundation/conversion/mappingSets",
        json={
            "xdmSchema": seeded["schema"],
            "mappings": [
                {"sourceType": "ATTRIBUTE", "source": "email", "destination": "personalEmail.address"}
            ],
        },
    )
    assert created.status_code == 201, created.text
    mappings = dataprep.DataPrep().getMappingSetMappings(created.json()["id"])
    assert [(m["source"], m["destination"]) for m in mappings] == [("email", "personalEmail.address")]


def test_streaming_flow_created_by_aepp_and_read_back(configured: None, seeded: dict[str, Any]) -> None:
    from aepp import flowservice

    fs = flowservice.FlowService()
    assert fs.getConnectionSpecIdFromName("datalake") == DATA_LAKE_SPEC
    # aepp's one-call streaming flow: base, source and target connections, then the flow (it always
    # sends scheduleParams; a streaming flow takes and ignores them).
    made = fs.createFlowStreaming(datasetId=seeded["dataset"])
    flow = made["flow"]
    assert "id" in flow, flow
    found = fs.getFlow(flow["id"])
    assert found["flowSpec"]["id"] == "d8a6f005-7eaf-4153-983e-e8574508b877"
    assert "scheduleParams" not in found
    connection_id = fs.getSourceConnection(found["sourceConnectionIds"][0])["baseConnectionId"]
    assert fs.connectionTest(connection_id) == {}
    # aepp's FlowManager reads the specs' sides with .get("targetSpec", {}).
    manager = flowservice.FlowManager(flow["id"])
    assert manager.datasetId == seeded["dataset"]


def test_flow_specs_are_found_by_their_names(configured: None) -> None:
    from aepp import flowservice

    fs = flowservice.FlowService()
    # One spec per name, as in AEP: 14518937-... is CRMToAEP, 9753525b-... CloudStorageToAEP.
    assert fs.getFlowSpecIdFromNames("CRMToAEP") == "14518937-270c-4525-bdec-c2ba7cce3860"
    assert fs.getFlowSpecIdFromNames("CloudStorageToAEP") == "9753525b-82c7-4dce-8a9b-5ccfce2b9876"
    assert fs.getFlowSpecIdFromNames("CRMToAEP", target_spec_name="datalake") == (
        "14518937-270c-4525-bdec-c2ba7cce3860"
    )


def test_paging_follows_next_links_as_aepp_does(configured: None, seeded: dict[str, Any]) -> None:
    from aepp import flowservice

    fs = flowservice.FlowService()
    for _ in range(2):
        assert "id" in fs.createFlowStreaming(datasetId=seeded["dataset"])["flow"]
    run = uuid.uuid4().hex[:6]
    before = len(fs.getConnections(limit=100))
    for n in range(3):
        base = fs.createConnectionStreaming(
            name=f"paging {run} {n}", sourceId=f"paging-{run}-{n}", paramName=f"paging {run} {n}"
        )
        # aepp's default data format is "delimited", as in AEP's own streaming tutorial.
        source = fs.createSourceConnectionStreaming(connectionId=base["id"], name=f"paging {run} {n}")
        assert "id" in source, source
    connections = fs.getConnections(limit=1, n_results="inf")  # appends the href to the service path
    assert len(connections) == before + 3 and len({c["id"] for c in connections}) == len(connections)
    sources = fs.getSourceConnections(limit=1, n_results="inf")  # takes the token after "="
    assert len({c["id"] for c in sources}) == len(sources) >= 3
    flows_all = fs.getFlows(limit=1, n_results="inf")
    assert len({f["id"] for f in flows_all}) == len(flows_all) >= 2
    # The token carries its query: a filtered list pages within the filter.
    filtered = fs.getConnections(limit=1, n_results="inf", property=f'name=="paging {run} 1"')
    assert [c["name"] for c in filtered] == [f"paging {run} 1"]


def test_a_continuation_token_alone_continues_its_query(api: ApiClient, configured: None) -> None:
    """The next href has the token as its only parameter; the token keeps the filter, order and limit."""
    run = uuid.uuid4().hex[:6]
    names = [f"token {run} {n}" for n in range(3)]
    for name in names:
        created = api.post(
            "/data/foundation/flowservice/connections",
            json={
                "name": name,
                "connectionSpec": {"id": "bc7b00d6-623a-4dfc-9fdb-f1240aeadaeb", "version": "1.0"},
                "auth": {"specName": "Streaming Connection", "params": {"sourceId": name, "name": name}},
            },
        )
        assert created.status_code == 201, created.text
    wanted = ",".join(f'"{n}"' for n in names[1:])
    url = f"/data/foundation/flowservice/connections?property=name=={wanted}&orderby=-name&limit=1"
    seen = []
    while url:
        page = api.get(url)
        assert page.status_code == 200, page.text
        seen += [c["name"] for c in page.json()["items"]]
        url = page.json()["_links"].get("next", {}).get("href")
        assert url is None or (url.count("=") == 1 and "?continuationToken=" in url)
    assert seen == [names[2], names[1]]
    garbage = api.get("/data/foundation/flowservice/connections?continuationToken=eyJvIjoxLCJxIjoxfQ")
    assert garbage.status_code == 400 and garbage.json()["report"]["parameter"] == "continuationToken"


def test_no_route_ends_with_a_slash(tmp_path: Path) -> None:
    """The trailing-slash normalisation (api/paths.py) assumes it."""
    from headwater.container import Services
    from headwater.server import create_app

    settings = make_settings(tmp_path / "home")
    app = create_app(settings, Services(settings))

    def paths(routes: list[Any]) -> Iterator[str]:
        for route in routes:
            if hasattr(route, "original_router"):
                yield from paths(route.original_router.routes)
            elif isinstance(getattr(route, "path", None), str):
                yield route.path

    found = list(paths(app.routes))
    assert f"{SR}/tenant/schemas" in found
    assert [p for p in found if p.endswith("/")] == []


def test_batch_ingestion_and_last_batches_through_aepp(
    live: LiveServer, configured: None, seeded: dict[str, Any]
) -> None:

    live.services.batch_promoter.start()  # what a worker runs: it promotes completed batches
    try:
        _batch_through_aepp(seeded["dataset"])
    finally:
        live.services.batch_promoter.stop()


def _batch_through_aepp(dataset: str) -> None:
    from aepp import catalog, ingestion

    ingest = ingestion.DataIngestion()
    batch = ingest.createBatch(datasetId=dataset, format="json")
    assert batch.get("status") == "loading", batch
    people = [{"personalEmail": {"address": f"batch{n}@example.com"}} for n in range(3)]
    ingest.uploadSmallFile(batchId=batch["id"], datasetId=dataset, filePath="people.json", data=people)
    ingest.uploadSmallFileFinish(batchId=batch["id"])
    cat = catalog.Catalog()
    final: dict[str, Any] = {}

    def landed() -> bool:
        final.update(cat.getBatch(batch["id"])[batch["id"]])
        return final["status"] in ("success", "failed")

    wait_until(landed, timeout=30)
    assert final["status"] == "success" and final["metrics"]["outputRecordCount"] == 3, final
    last = cat.getLastBatches(dataSetId=dataset)
    assert list(last) == [batch["id"]]


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_last_batches_limit_out_of_range_is_a_400(api: ApiClient, limit: str) -> None:
    answer = api.get("/data/foundation/catalog/lastBatches", params={"limit": limit})
    assert answer.status_code == 400 and answer.json()["report"]["parameter"] == "limit"

"""Document 000's control plane: a server-to-server connector, its JSON event-type schema (preview, View
Full Schema, refused and accepted updates), its Source ID, and data streams deployed into a data space.

Every test runs against a live server, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import ApiClient

SSOT = "/services/data/v62.0/ssot"
FS = "/data/foundation/flowservice"
SR = "/data/foundation/schemaregistry"
CAT = "/data/foundation/catalog"
CONV = "/data/foundation/conversion"
SCHEMA_FILE = Path(__file__).parent / "data" / "data360" / "acme_web_schema.json"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MANDATORY = ("eventId", "dateTime", "deviceId", "sessionId", "eventType", "category")


# --- building blocks (test_data360_ingest.py uses them too) ---
def acme_schema() -> dict[str, Any]:
    """Salesforce's web connector format: records / externalDataTranFields / primaryIndexOrder."""
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return document


def field(name: str, data_type: str = "Text", required: bool = False, pk: bool = False) -> dict[str, Any]:
    return {
        "masterLabel": name,
        "developerName": name,
        "dataType": data_type,
        "isDataRequired": required,
        "isPrimaryKey": pk,
    }


def event(name: str, category: str, extra: list[dict[str, Any]], pk: str | None = None) -> dict[str, Any]:
    """An event in the console's spelling (events / fields / isPrimaryKey) with the six mandatory fields."""
    key = pk or ("eventId" if category == "Engagement" else "deviceId")
    fields = [field(n, "DateTime" if n == "dateTime" else "Text", True, n == key) for n in MANDATORY]
    return {"masterLabel": name, "developerName": name, "category": category, "fields": fields + extra}


def create_connector(api: ApiClient, label: str = "Acme Web Shop") -> dict[str, Any]:
    response = api.post(
        f"{SSOT}/connections",
        json={"label": label, "connectorType": "StreamingApp", "streamingAppType": "ServerToServer"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def upload(api: ApiClient, connector_id: str, document: Any) -> Any:
    return api.put(f"{SSOT}/connections/{connector_id}/schema", json=document)


def deploy(api: ApiClient, connector: str, events: list[str], dataspace: str | None, **extra: Any) -> Any:
    body: dict[str, Any] = {"connectionId": connector, "events": events, **extra}
    if dataspace is not None:
        body["dataspace"] = dataspace
    return api.post(f"{SSOT}/data-streams", json=body)


def by_category(streams: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for stream in streams:
        out.setdefault(stream["category"], []).append(stream)
    return out


def errors_of(response: Any) -> list[dict[str, str]]:
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "report"}, body
    errors: list[dict[str, str]] = body["report"]["errors"]
    return errors


def resolved(api: ApiClient, schema_id: str) -> dict[str, Any]:
    from urllib.parse import quote

    response = api.get(
        f"{SR}/tenant/schemas/{quote(schema_id, safe='')}",
        headers={"Accept": "application/vnd.adobe.xed-full+json; version=1"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def flow_of(api: ApiClient, flow_id: str) -> dict[str, Any]:
    response = api.get(f"{FS}/flows/{flow_id}")
    assert response.status_code == 200, response.text
    flow: dict[str, Any] = response.json()["items"][0]
    return flow


# --- document 000, step by step ---
def test_document_000_connector_schema_and_data_streams(api: ApiClient, other_sandbox_api: ApiClient) -> None:
    space = other_sandbox_api.sandbox_name
    # Web & Mobile SDK > New: an app name and the Server to Server connector type.
    connector = create_connector(api)
    assert connector["connectorType"] == "StreamingApp"
    assert connector["streamingAppType"] == "ServerToServer"
    assert connector["label"] == "Acme Web Shop" and connector["name"] == "Acme_Web_Shop"
    # The system-generated Source ID, needed as {appSourceId}.
    source_id = connector["sourceId"]
    assert UUID.match(source_id) and connector["appSourceId"] == source_id
    ident = connector["id"]

    # The app name can be edited later; the Source ID and developer name stay.
    renamed = api.patch(f"{SSOT}/connections/{ident}", json={"label": "Acme Shop Server"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["label"] == "Acme Shop Server"
    assert renamed.json()["sourceId"] == source_id and renamed.json()["name"] == "Acme_Web_Shop"
    assert api.get(f"{SSOT}/connections/Acme_Web_Shop").json()["label"] == "Acme Shop Server"
    # The Source ID is system-generated: a PATCH changing it is refused naming the field, not ignored.
    for key in ("sourceId", "appSourceId"):
        refused = api.patch(f"{SSOT}/connections/{ident}", json={"label": "Other", key: "my-own-id"})
        assert refused.status_code == 400, refused.text
        assert key in refused.text and "system-generated" in refused.text
    same = api.patch(f"{SSOT}/connections/{ident}", json={"sourceId": source_id})  # repeating it is fine
    assert same.status_code == 200 and same.json()["sourceId"] == source_id
    assert api.get(f"{SSOT}/connections/{ident}").json()["label"] == "Acme Shop Server"
    listed = api.get(f"{SSOT}/connections", params={"connectorType": "StreamingApp"}).json()
    assert [c["sourceId"] for c in listed["connections"]] == [source_id]

    # Upload Files: preview first (categories, data types, primary keys, required), which saves nothing.
    assert api.get(f"{SSOT}/connections/{ident}/schema").status_code == 404
    document = acme_schema()
    preview = api.post(f"{SSOT}/connections/{ident}/schema/actions/preview", json=document)
    assert preview.status_code == 200, preview.text
    shown = {e["developerName"]: e for e in preview.json()["events"]}
    assert {n: e["category"] for n, e in shown.items()} == {
        "cartAdd": "Engagement",
        "pageView": "Engagement",
        "identity": "Profile",
    }
    assert shown["cartAdd"]["primaryKey"] == "eventId" and shown["identity"]["primaryKey"] == "deviceId"
    cart = {f["developerName"]: f for f in shown["cartAdd"]["fields"]}
    assert cart["quantity"] == {
        "developerName": "quantity",
        "masterLabel": "Quantity",
        "dataType": "Number",
        "isPrimaryKey": False,
        "isDataRequired": False,
    }
    assert cart["productId"]["isDataRequired"] is True and cart["eventId"]["isPrimaryKey"] is True
    assert api.get(f"{SSOT}/connections/{ident}/schema").status_code == 404

    # Save, then compare: View Full Schema gives back the file as uploaded.
    saved = upload(api, ident, document)
    assert saved.status_code == 200, saved.text
    assert saved.json()["schemaVersion"] == 1
    assert api.get(f"{SSOT}/connections/{ident}/schema").json() == document

    # Update Schema that removes, retypes, re-keys and re-categorizes: refused, naming each; nothing changes.
    bad = copy.deepcopy(document)
    records = bad["records"]
    records[:] = [r for r in records if r["developerName"] != "pageView"]
    cart_fields = records[0]["externalDataTranFields"]
    next(f for f in cart_fields if f["developerName"] == "quantity")["dataType"] = "Text"
    cart_fields[:] = [f for f in cart_fields if f["developerName"] != "price"]
    records[0]["category"] = "Profile"
    refused = upload(api, ident, bad)
    assert refused.status_code == 400, refused.text
    messages = " | ".join(e["message"] for e in errors_of(refused))
    assert "event 'pageView' (Engagement) was removed" in messages
    assert "field 'quantity' of event 'cartAdd': data type changed from Number to Text" in messages
    assert "field 'price' of event 'cartAdd' was removed" in messages
    assert "event 'cartAdd': category changed from Engagement to Profile" in messages
    paths = {e["path"] for e in errors_of(refused)}
    assert "records[0].externalDataTranFields[7].dataType" in paths and "records[0].category" in paths
    assert "Nothing was changed" in refused.json()["detail"]
    rekeyed = copy.deepcopy(document)
    for f in rekeyed["records"][2]["externalDataTranFields"]:
        f.pop("primaryIndexOrder", None)
        if f["developerName"] == "email":
            f["primaryIndexOrder"] = 1
    refused_key = upload(api, ident, rekeyed)
    assert refused_key.status_code == 400
    assert any("the primary key cannot change" in e["message"] for e in errors_of(refused_key))
    assert api.get(f"{SSOT}/connections/{ident}/schema").json() == document
    assert api.get(f"{SSOT}/connections/{ident}").json()["schemaVersion"] == 1

    # Update Schema that only adds (a field, an event): accepted.
    added = copy.deepcopy(document)
    added["records"][0]["externalDataTranFields"].append(
        {"masterLabel": "Currency", "developerName": "currency", "dataType": "Text", "isDataRequired": False}
    )
    loyalty = copy.deepcopy(added["records"][2])
    loyalty.update(developerName="loyalty", masterLabel="Loyalty")
    tier = {"masterLabel": "Tier", "developerName": "tier", "dataType": "Text", "isDataRequired": False}
    loyalty["externalDataTranFields"] = [*loyalty["externalDataTranFields"][:6], tier]
    added["records"].append(loyalty)
    accepted = upload(api, ident, added)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["schemaVersion"] == 2
    assert accepted.json()["changes"] == {
        "addedEvents": ["loyalty"],
        "addedFields": [{"event": "cartAdd", "field": "currency"}],
    }
    assert api.get(f"{SSOT}/connections/{ident}/schema").json() == added

    # Data Streams > New > Server to Server > the events > review > data space > Deploy.
    chosen = ["cartAdd", "pageView", "identity"]
    review = api.post(
        f"{SSOT}/data-streams/actions/preview",
        json={"connectionId": ident, "events": chosen, "dataspace": space},
    )
    assert review.status_code == 200, review.text
    planned = by_category(review.json()["dataStreams"])
    assert [p["events"] for p in planned["Engagement"]] == [["cartAdd", "pageView"]]
    assert [p["events"] for p in planned["Profile"]] == [["identity"]]
    engagement_plan = planned["Engagement"][0]
    assert {"sourceType": "ATTRIBUTE", "source": "eventId", "destination": "_id"} in engagement_plan[
        "mappings"
    ]
    assert {"sourceType": "ATTRIBUTE", "source": "dateTime", "destination": "timestamp"} in engagement_plan[
        "mappings"
    ]
    assert {
        "sourceType": "ATTRIBUTE",
        "source": "price",
        "destination": "_headwater.price",
    } in engagement_plan["mappings"]
    assert other_sandbox_api.get(f"{FS}/flows").json()["items"] == []  # the review created nothing

    deployed = deploy(api, ident, chosen, space)
    assert deployed.status_code == 201, deployed.text
    streams = by_category(deployed.json()["dataStreams"])
    assert len(streams["Profile"]) == 1 and len(streams["Engagement"]) == 1
    profile, engagement = streams["Profile"][0], streams["Engagement"][0]
    assert engagement["connectorInfo"]["connectorDetails"]["events"] == ["cartAdd", "pageView"]
    assert profile["connectorInfo"]["connectorDetails"]["sourceId"] == source_id
    assert engagement["dataspace"] == space
    # Engagement refreshes every 15 minutes, profile every hour.
    assert engagement["refreshCadenceSeconds"] == 900 and profile["refreshCadenceSeconds"] == 3600

    # Each stream is a streaming flow in the data space's sandbox, into its own dataset.
    eflow, pflow = (
        flow_of(other_sandbox_api, engagement["flowId"]),
        flow_of(other_sandbox_api, profile["flowId"]),
    )
    assert eflow["options"]["cadenceSeconds"] == 900 and eflow["options"]["dedupPath"] == "_id"
    assert pflow["options"]["cadenceSeconds"] == 3600 and pflow["options"]["upsertKey"] == "_id"
    assert "inletId" in eflow["options"] and "upsertKey" not in eflow["options"]
    assert eflow["flowSpec"]["id"] == "c1a19761-d2c7-4702-b9fa-fe91f0613e81"
    assert engagement["dataSetId"] != profile["dataSetId"]
    dataset = other_sandbox_api.get(f"{CAT}/dataSets/{engagement['dataSetId']}").json()
    assert dataset[engagement["dataSetId"]]["schemaRef"]["id"] == engagement["schemaId"]
    eschema, pschema = (
        resolved(other_sandbox_api, engagement["schemaId"]),
        resolved(other_sandbox_api, profile["schemaId"]),
    )
    assert eschema["meta:class"] == "https://ns.adobe.com/xdm/context/experienceevent"
    assert pschema["meta:class"] == "https://ns.adobe.com/xdm/context/profile"
    tenant = eschema["properties"]["_headwater"]["properties"]
    assert tenant["price"]["type"] == "number" and tenant["dateTime"]["format"] == "date-time"
    assert {"productId", "pageUrl", "currency"} <= set(tenant)
    assert pschema["properties"]["_headwater"]["properties"]["birthDate"]["format"] == "date"
    # The profile's primary key is its primary identity (so the resolved schema requires it).
    assert "deviceId" in pschema["properties"]["_headwater"]["required"]
    # Nothing was created in the connector's own sandbox.
    assert api.get(f"{FS}/flows").json()["items"] == []
    assert api.get(f"{SSOT}/data-streams", params={"dataspace": space}).json()["totalSize"] == 2

    # The same event cannot get a second stream in the data space.
    again = deploy(api, ident, ["identity"], space)
    assert again.status_code == 409 and "identity" in again.json()["detail"]

    # A new profile event with a cadence chosen at deploy; 0 = continuous for the engagement stream later.
    loyal = deploy(api, ident, ["loyalty"], space, refreshCadenceSeconds={"Profile": 60})
    assert loyal.status_code == 201, loyal.text
    loyal_stream = loyal.json()["dataStreams"][0]
    assert loyal_stream["refreshCadenceSeconds"] == 60
    assert flow_of(other_sandbox_api, loyal_stream["flowId"])["options"]["cadenceSeconds"] == 60
    faster = api.patch(
        f"{SSOT}/data-streams/{engagement['id']}",
        params={"dataspace": space},
        json={"refreshCadenceSeconds": 0},
    )
    assert faster.status_code == 200, faster.text
    assert faster.json()["refreshCadenceSeconds"] == 0
    assert flow_of(other_sandbox_api, engagement["flowId"])["options"]["cadenceSeconds"] == 0
    slow = api.patch(
        f"{SSOT}/data-streams/{engagement['id']}",
        params={"dataspace": space},
        json={"refreshCadenceSeconds": 86401},
    )
    assert slow.status_code == 400 and errors_of(slow)[0]["path"] == "refreshCadenceSeconds"

    # An additive update reaches the deployed streams: new XDM fields, a new mapping version on the flow.
    more = copy.deepcopy(added)
    more["records"][1]["externalDataTranFields"].append(
        {"masterLabel": "Title", "developerName": "pageTitle", "dataType": "Text", "isDataRequired": False}
    )
    evolved = upload(api, ident, more)
    assert evolved.status_code == 200, evolved.text
    assert evolved.json()["dataStreamsUpdated"] == [engagement["id"]]
    tenant = resolved(other_sandbox_api, engagement["schemaId"])["properties"]["_headwater"]["properties"]
    assert tenant["pageTitle"]["type"] == "string"
    mapping = flow_of(other_sandbox_api, engagement["flowId"])["transformations"][0]["params"]
    assert mapping["mappingVersion"] == 1
    mapping_set = other_sandbox_api.get(f"{CONV}/mappingSets/{mapping['mappingId']}").json()
    assert any(m["destination"] == "_headwater.pageTitle" for m in mapping_set["mappings"])
    shown = api.get(f"{SSOT}/data-streams/{engagement['id']}", params={"dataspace": space}).json()
    assert any(f["developerName"] == "pageTitle" for f in shown["fields"])

    # The connector cannot be deleted while data streams use it.
    busy = api.delete(f"{SSOT}/connections/{ident}")
    assert busy.status_code == 409, busy.text
    assert len(busy.json()["report"]["referencedBy"]) == 3
    for stream in (engagement, profile, loyal_stream):
        gone = api.delete(
            f"{SSOT}/data-streams/{stream['id']}",
            params={"dataspace": space, "shouldDeleteDataLakeObject": "true"},
        )
        assert gone.status_code == 200, gone.text
        assert gone.json()["keptResources"] == []
    assert other_sandbox_api.get(f"{FS}/flows").json()["items"] == []
    assert api.delete(f"{SSOT}/connections/{ident}").status_code == 204
    assert api.get(f"{SSOT}/connections/{ident}").status_code == 404


def test_engagement_events_chosen_later_join_the_engagement_stream(api: ApiClient) -> None:
    connector = create_connector(api, "Later Shop")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    first = deploy(api, connector["id"], ["cartAdd"], api.sandbox_name)
    assert first.status_code == 201, first.text
    stream = first.json()["dataStreams"][0]
    second = deploy(api, connector["name"], ["pageView"], api.sandbox_name)
    assert second.status_code == 201, second.text
    joined = second.json()["dataStreams"][0]
    assert joined["id"] == stream["id"]
    assert joined["connectorInfo"]["connectorDetails"]["events"] == ["cartAdd", "pageView"]
    assert api.get(f"{SSOT}/data-streams", params={"dataspace": api.sandbox_name}).json()["totalSize"] == 1
    tenant = resolved(api, stream["schemaId"])["properties"]["_headwater"]["properties"]
    assert {"pageUrl", "productId"} <= set(tenant)


def test_no_data_space_means_prod(api: ApiClient) -> None:
    connector = create_connector(api, f"Prod Shop {api.sandbox_name}")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    made = deploy(api, connector["id"], ["identity"], None)
    assert made.status_code == 201, made.text
    stream = made.json()["dataStreams"][0]
    try:
        assert stream["dataspace"] == "default" and stream["sandboxName"] == "prod"
        listed = api.get(f"{SSOT}/data-streams", params={"connectorId": connector["id"]}).json()
        assert [s["id"] for s in listed["dataStreams"]] == [stream["id"]]
        named = api.get(f"{SSOT}/data-streams/{stream['name']}", params={"dataspace": "default"})
        assert named.status_code == 200 and named.json()["id"] == stream["id"]
        assert (
            api.get(f"{SSOT}/data-streams/{stream['id']}", params={"dataspace": api.sandbox_name}).status_code
            == 404
        )
    finally:
        api.delete(f"{SSOT}/data-streams/{stream['id']}", params={"shouldDeleteDataLakeObject": "true"})
    assert api.delete(f"{SSOT}/connections/{connector['id']}").status_code == 204


def test_simple_spelling_is_accepted(api: ApiClient) -> None:
    connector = create_connector(api, "Short Names")
    simple = {
        "schemas": [
            {
                "name": "purchase",
                "category": "engagement",
                "fields": [
                    *[
                        {"name": n, "type": "datetime" if n == "dateTime" else "text", "required": True}
                        for n in MANDATORY
                    ],
                    {"name": "orderTotal", "type": "number"},
                ],
            }
        ]
    }
    simple["schemas"][0]["fields"][0]["primaryKey"] = True
    saved = upload(api, connector["id"], simple)
    assert saved.status_code == 200, saved.text
    purchase = saved.json()["events"][0]
    assert purchase["category"] == "Engagement" and purchase["primaryKey"] == "eventId"
    total = next(f for f in purchase["fields"] if f["developerName"] == "orderTotal")
    assert total["dataType"] == "Number" and total["masterLabel"] == "orderTotal"


BAD_CASES = [
    pytest.param(
        lambda d: d["events"][1]["fields"][7].update(dataType="Money"),
        "events[1].fields[7].dataType",
        "field 'price' of event 'cartAdd': 'Money' is not a data type",
        id="unknown-type",
    ),
    pytest.param(
        lambda d: d["events"][0].update(
            fields=[f for f in d["events"][0]["fields"] if f["developerName"] != "sessionId"]
        ),
        "events[0].fields",
        "event 'pageView': the mandatory field 'sessionId' is missing",
        id="missing-mandatory",
    ),
    pytest.param(
        lambda d: d["events"][0]["fields"][6].update(isPrimaryKey=True),
        "events[0].fields[6].isPrimaryKey",
        "event 'pageView': needs exactly one primary key field",
        id="two-primary-keys",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][6].update(developerName="product__id"),
        "events[1].fields[6].developerName",
        "'product__id' contains '__'",
        id="double-underscore",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][6].update(developerName="row_count"),
        "events[1].fields[6].developerName",
        "'row_count' is a reserved field name",
        id="reserved",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][6].update(developerName="a" * 81),
        "events[1].fields[6].developerName",
        "longer than 80 characters",
        id="too-long",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][6].update(developerName="product id"),
        "events[1].fields[6].developerName",
        "is not a valid developer name",
        id="bad-characters",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][7].update(developerName="PRODUCTID"),
        "events[1].fields[7].developerName",
        "field 'PRODUCTID' of event 'cartAdd': the name is already used by events[1].fields[6]",
        id="duplicate-field",
    ),
    pytest.param(
        lambda d: d["events"][1].update(developerName="pageview"),
        "events[1].developerName",
        "event 'pageview': the name is already used by events[0]",
        id="duplicate-event",
    ),
    pytest.param(
        lambda d: d["events"][1].update(category="Other"),
        "events[1].category",
        "event 'cartAdd': category must be Engagement or Profile",
        id="category",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"].extend(field(f"f{i}") for i in range(1000)),
        "events[1].fields",
        "event 'cartAdd': has 1008 fields; an event has at most 1000",
        id="too-many-fields",
    ),
    pytest.param(
        lambda d: (
            d["events"][2]["fields"][7].update(isPrimaryKey=True)
            or d["events"][2]["fields"][2].update(isPrimaryKey=False)
        ),
        "events[2].fields[7].dataType",
        "a primary key must be a Text field, not Boolean",
        id="boolean-key",
    ),
    pytest.param(
        lambda d: d["events"][1]["fields"][7].update(developerName="pageUrl", dataType="Number"),
        "events[1].fields[7].dataType",
        "field 'pageUrl' of event 'cartAdd' is Number but the Engagement event 'pageView' has it as Url",
        id="engagement-type-clash",
    ),
]


def console_schema() -> dict[str, Any]:
    return {
        "events": [
            event("pageView", "Engagement", [field("pageUrl", "Url")]),
            event("cartAdd", "Engagement", [field("productId", required=True), field("price", "Number")]),
            event("identity", "Profile", [field("email", "Email"), field("isAnonymous", "Boolean")]),
        ]
    }


@pytest.mark.parametrize(("breakit", "path", "message"), BAD_CASES)
def test_validation_errors_name_the_event_and_field(
    api: ApiClient, breakit: Any, path: str, message: str
) -> None:
    connector = create_connector(api, "Validation")
    good = console_schema()
    preview = api.post(f"{SSOT}/connections/{connector['id']}/schema/actions/preview", json=good)
    assert preview.status_code == 200, preview.text
    bad = copy.deepcopy(good)
    breakit(bad)
    for response in (
        api.post(f"{SSOT}/connections/{connector['id']}/schema/actions/preview", json=bad),
        upload(api, connector["id"], bad),
    ):
        assert response.status_code == 400, response.text
        found = [e for e in errors_of(response) if e["path"] == path]
        assert found, errors_of(response)
        assert any(message in e["message"] for e in found), found
    assert api.get(f"{SSOT}/connections/{connector['id']}/schema").status_code == 404


def test_every_problem_is_reported_at_once(api: ApiClient) -> None:
    connector = create_connector(api, "Many Problems")
    bad = console_schema()
    bad["events"][0]["fields"][6]["dataType"] = "Money"
    bad["events"][2]["category"] = "Lead"
    response = upload(api, connector["id"], bad)
    assert response.status_code == 400
    paths = {e["path"] for e in errors_of(response)}
    assert {"events[0].fields[6].dataType", "events[2].category"} <= paths


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "label"),
        ({"label": ""}, "label"),
        ({"label": "x" * 81}, "label"),
        ({"label": "App", "streamingAppType": "WebApp"}, "streamingAppType"),
        ({"label": "App", "connectorType": "SalesforceDotCom"}, "connectorType"),
        ({"label": "App", "name": "bad name"}, "name"),
    ],
)
def test_connector_bodies_are_checked(api: ApiClient, body: dict[str, Any], path: str) -> None:
    response = api.post(f"{SSOT}/connections", json=body)
    assert response.status_code == 400, response.text
    assert errors_of(response)[0]["path"] == path


def test_connector_names_and_source_ids(api: ApiClient) -> None:
    first, second = create_connector(api, "Same App"), create_connector(api, "Other App")
    assert first["sourceId"] != second["sourceId"]
    clash = api.post(f"{SSOT}/connections", json={"label": "Same App"})
    assert clash.status_code == 409
    rename = api.patch(f"{SSOT}/connections/{first['id']}", json={"name": "Renamed"})
    assert rename.status_code == 400 and errors_of(rename)[0]["path"] == "name"
    stale = api.patch(
        f"{SSOT}/connections/{first['id']}", json={"label": "X"}, headers={"If-Match": '"nope"'}
    )
    assert stale.status_code == 412


def test_data_stream_requests_are_checked(api: ApiClient) -> None:
    connector = create_connector(api, "Streams Checked")
    no_schema = deploy(api, connector["id"], ["cartAdd"], api.sandbox_name)
    assert no_schema.status_code == 400 and "has no schema yet" in errors_of(no_schema)[0]["message"]
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    cases = [
        ({"events": ["cartAdd"], "dataspace": api.sandbox_name}, "connectionId"),
        ({"connectionId": "missing", "events": ["cartAdd"]}, "connectionId"),
        ({"connectionId": connector["id"], "events": []}, "events"),
        ({"connectionId": connector["id"], "events": ["nope"], "dataspace": api.sandbox_name}, "events[0]"),
        ({"connectionId": connector["id"], "events": ["cartAdd", "cartAdd"]}, "events[1]"),
        ({"connectionId": connector["id"], "events": ["cartAdd"], "dataspace": "no-such-space"}, "dataspace"),
        (
            {"connectionId": connector["id"], "events": ["cartAdd"], "refreshCadenceSeconds": -1},
            "refreshCadenceSeconds",
        ),
        (
            {"connectionId": connector["id"], "events": ["cartAdd"], "refreshCadenceSeconds": {"Other": 5}},
            "refreshCadenceSeconds.Other",
        ),
    ]
    for body, path in cases:
        response = api.post(f"{SSOT}/data-streams", json=body)
        assert response.status_code == 400, (body, response.text)
        assert path in {e["path"] for e in errors_of(response)}, (body, errors_of(response))
    salesforce_shape = {
        "connectorInfo": {
            "connectorType": "StreamingApp",
            "connectorDetails": {"name": connector["name"], "events": ["identity"]},
        },
        "dataLakeObjectInfo": {"dataspaceInfo": [{"name": api.sandbox_name}]},
    }
    made = api.post(f"{SSOT}/data-streams", json=salesforce_shape)
    assert made.status_code == 201, made.text
    assert made.json()["dataStreams"][0]["sandboxName"] == api.sandbox_name


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/connections", [1, 2]),
        ("post", "/connections", {"label": 5}),
        ("put", "/connections/{id}/schema", [1]),
        ("put", "/connections/{id}/schema", {"events": "x"}),
        ("put", "/connections/{id}/schema", {"events": [None, 5, {"fields": {}}]}),
        (
            "put",
            "/connections/{id}/schema",
            {"events": [{"developerName": 5, "category": [], "fields": [7]}]},
        ),
        ("put", "/connections/{id}/schema", {"records": [{"externalDataTranFields": [{"dataType": {}}]}]}),
        ("put", "/connections/{id}/schema", {"events": [], "records": []}),
        ("post", "/connections/{id}/schema/actions/preview", "text"),
        ("patch", "/connections/{id}", [{"op": "replace"}]),
        ("post", "/data-streams", {"connectorInfo": "x", "events": {}}),
        ("post", "/data-streams", {"connectorInfo": {"connectorDetails": [1]}}),
        ("post", "/data-streams", {"connectionId": 5, "events": [1, None], "dataspace": 7}),
        ("post", "/data-streams/actions/preview", {"dataLakeObjectInfo": {"dataspaceInfo": "x"}}),
    ],
)
def test_junk_is_a_client_error(api: ApiClient, method: str, path: str, body: Any) -> None:
    connector = create_connector(api, "Junk")
    response = getattr(api, method)(f"{SSOT}{path.format(id=connector['id'])}", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) >= {"type", "title", "status", "detail", "report"}


def test_unknown_api_version_is_not_found(api: ApiClient) -> None:
    assert api.get("/services/data/latest/ssot/connections").status_code == 404


def test_connectors_are_isolated(
    api: ApiClient, other_sandbox_api: ApiClient, other_org_api: ApiClient
) -> None:
    connector = create_connector(api, "Isolated")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    for other in (other_sandbox_api, other_org_api):
        assert other.get(f"{SSOT}/connections/{connector['id']}").status_code == 404
        assert other.get(f"{SSOT}/connections").json()["connections"] == []
        assert other.get(f"{SSOT}/connections/{connector['id']}/schema").status_code == 404
        assert other.delete(f"{SSOT}/connections/{connector['id']}").status_code == 404
        assert deploy(other, connector["id"], ["identity"], other.sandbox_name).status_code == 400
    # Another organization's sandbox is not a data space of this one.
    foreign = deploy(api, connector["id"], ["identity"], other_org_api.sandbox_name)
    assert foreign.status_code == 400 and errors_of(foreign)[0]["path"] == "dataspace"
    made = deploy(api, connector["id"], ["identity"], api.sandbox_name)
    assert made.status_code == 201
    stream = made.json()["dataStreams"][0]
    for other in (other_sandbox_api, other_org_api):
        found = other.get(f"{SSOT}/data-streams/{stream['id']}", params={"dataspace": other.sandbox_name})
        assert found.status_code == 404


def test_junk_never_causes_a_server_error(api: ApiClient) -> None:
    from tests.test_robustness import JUNK_BODIES, JUNK_QUERIES

    connector = create_connector(api, "Fuzzed")
    assert upload(api, connector["id"], acme_schema()).status_code == 200
    made = deploy(api, connector["id"], ["identity"], api.sandbox_name)
    assert made.status_code == 201
    stream = made.json()["dataStreams"][0]["id"]
    writes = [
        ("POST", "/connections"),
        ("PATCH", "/connections/{c}"),
        ("PUT", "/connections/{c}/schema"),
        ("POST", "/connections/{c}/schema/actions/preview"),
        ("POST", "/data-streams"),
        ("POST", "/data-streams/actions/preview"),
        ("PATCH", "/data-streams/{s}"),
    ]
    reads = [
        "/connections",
        "/connections/{c}",
        "/connections/{c}/schema",
        "/data-streams",
        "/data-streams/{s}",
    ]
    for c, s in ((connector["id"], stream), ("does-not-exist", "does-not-exist")):
        for method, path in writes:
            for body in JUNK_BODIES:
                response = api.request(
                    method, SSOT + path.format(c=c, s=s), json=body, headers={"If-Match": "*"}
                )
                assert response.status_code < 500, (method, path, body, response.text)
                if response.status_code >= 400:
                    assert {"type", "title", "status", "detail", "report"} <= set(response.json())
        for path in reads:
            for query in [*JUNK_QUERIES, "dataspace=", "dataspace=%00", "connectorId=x"]:
                response = api.get(f"{SSOT}{path.format(c=c, s=s)}?{query}")
                assert response.status_code < 500, (path, query, response.text)

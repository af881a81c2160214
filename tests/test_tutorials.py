"""The reference tutorials, with their request bodies as written (host, credentials and IDs substituted).

Document 001: a Salesforce Service Cloud base connection with Basic authentication.
Document 002: a CRM batch dataflow, from source connection to the created flow.
Document 004: a Customer.io streaming dataflow, then the flow's inlet URL, an update and a delete.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.streaming_helpers import cio_event, streaming, wait_rows
from tests.support import ApiClient, LiveServer, fresh_sandbox_client, token_for

FS = "/data/foundation/flowservice"

DOC_001_CONNECTION = """{
        "name": "Base connection for salesforce service cloud",
        "description": "Base connection for salesforce service cloud",
        "auth": {
            "specName": "Basic Authentication",
            "params": {
                "username": "{USERNAME}",
                "password": "{PASSWORD}",
                "securityToken": "{SECURITY_TOKEN}"
            }
        },
        "connectionSpec": {
            "id": "b66ab34-8619-49cb-96d1-39b37ede86ea",
            "version": "1.0"
        }
    }"""

# Verbatim from document 002, trailing comma included.
DOC_002_SOURCE = """{
        "name": "Source Connection for a CRM system",
        "baseConnectionId": "{BASE_CONNECTION_ID}",
        "description": "Source Connection for a CRM system",
        "data": {
            "format": "tabular",
        },
        "params": {
            "tableName": "{TABLE_PATH}",
            "columns": [
                {
                    "name": "first_name",
                    "type": "string",
                    "meta": {
                        "originalType": "String"
                    }
                },
                {
                    "name": "last_name",
                    "type": "string",
                    "meta": {
                        "originalType": "String"
                    }
                },
                {
                    "name": "email",
                    "type": "string",
                    "meta": {
                        "originalType": "String"
                    }
                }
            ]
        }
    }"""

DOC_002_SCHEMA = """{
        "type": "object",
        "title": "Target schema for CRM source connector",
        "description": "",
        "allOf": [
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile"
            },
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile-person-details"
            },
            {
                "$ref": "https://ns.adobe.com/xdm/context/profile-personal-details"
            }
        ],
        "meta:containerId": "tenant",
        "meta:resourceType": "schemas",
        "meta:xdmType": "object",
        "meta:class": "https://ns.adobe.com/xdm/context/profile"
    }"""

DOC_002_DATASET = """{
        "name": "Target Dataset for CRM data",
        "schemaRef": {
            "id": "{SCHEMA_ID}",
            "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"
        }
    }"""

DOC_002_TARGET = """{
        "name": "Target Connection for a CRM connector",
        "description": "Target Connection for CRM data",
        "data": {
            "schema": {
                "id": "{SCHEMA_ID}",
                "version": "application/vnd.adobe.xed-full+json;version=1.0"
            }
        },
        "params": {
            "dataSetId": "{DATASET_ID}"
        },
        "connectionSpec": {
            "id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c",
            "version": "1.0"
        }
    }"""

DOC_002_MAPPING = """{
        "version": 0,
        "xdmSchema": "{SCHEMA_ID}",
        "xdmVersion": "1.0",
        "id": null,
        "mappings": [
            {
                "destinationXdmPath": "person.name.firstName",
                "sourceAttribute": "first_name",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            },
            {
                "destinationXdmPath": "person.name.lastName",
                "sourceAttribute": "last_name",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            },
            {
                "destinationXdmPath": "personalEmail.address",
                "sourceAttribute": "email",
                "identity": false,
                "identityGroup": null,
                "namespaceCode": null,
                "version": 0
            }
        ]
    }"""

DOC_002_FLOW = """{
        "name": "Dataflow between a CRM system and Platform",
        "description": "Inbound data to Platform",
        "flowSpec": {
            "id": "9753525b-82c7-4dce-8a9b-5ccfce2b9876",
            "version": "1.0"
        },
        "sourceConnectionIds": [
            "{SOURCE_ID}"
        ],
        "targetConnectionIds": [
            "{TARGET_ID}"
        ],
        "transformations": [
            {
                "name": "Copy",
                "params": {
                    "deltaColumn": {
                        "name": "updatedAt",
                        "dateFormat": "YYYY-MM-DD",
                        "timezone": "UTC"
                    }
                }
            },
            {
                "name": "Mapping",
                "params": {
                    "mappingId": "{MAPPING_ID}"
                }
            }
        ],
        "scheduleParams": {
            "startTime": "1567411548",
            "frequency":"minute",
            "interval":"30"
        }
    }"""


def _send(api: ApiClient, method: str, path: str, template: str, **values: str) -> dict:  # type: ignore[type-arg]
    body = template
    for key, value in values.items():
        body = body.replace("{" + key + "}", value)
    response = api.request(method, path, content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    return response.json()  # type: ignore[no-any-return]


def test_document_001_service_cloud_connection(api: ApiClient) -> None:
    body = _send(
        api,
        "POST",
        f"{FS}/connections",
        DOC_001_CONNECTION,
        USERNAME="ada@example.com",
        PASSWORD="hunter2-pw",
        SECURITY_TOKEN="tok-9",
    )
    assert set(body) == {"id", "etag"}
    conn = api.get(f"{FS}/connections/{body['id']}").json()["items"][0]
    assert conn["connectionSpec"]["id"] == "b66ab34-8619-49cb-96d1-39b37ede86ea"
    assert conn["auth"]["specName"] == "Basic Authentication"
    assert conn["auth"]["params"]["password"] != "hunter2-pw"
    assert conn["auth"]["params"]["securityToken"] != "tok-9"


def test_document_002_crm_dataflow_as_written(api: ApiClient) -> None:
    base = _send(
        api,
        "POST",
        f"{FS}/connections",
        DOC_001_CONNECTION.replace(
            "b66ab34-8619-49cb-96d1-39b37ede86ea", "cfc0fee1-7dc0-40ef-b73e-d8b134c436f5"
        ),
        USERNAME="ada@example.com",
        PASSWORD="pw",
        SECURITY_TOKEN="tok",
    )
    source = _send(
        api,
        "POST",
        f"{FS}/sourceConnections",
        DOC_002_SOURCE,
        BASE_CONNECTION_ID=base["id"],
        TABLE_PATH="Contact",
    )
    assert set(source) == {"id", "etag"}

    schema = _send(api, "POST", "/data/foundation/schemaregistry/tenant/schemas", DOC_002_SCHEMA)
    tenant = api.tenant_id
    assert schema["$id"].startswith(f"https://ns.adobe.com/{tenant}/schemas/")
    assert schema["meta:extends"] == [
        "https://ns.adobe.com/xdm/context/profile",
        "https://ns.adobe.com/xdm/context/profile-person-details",
        "https://ns.adobe.com/xdm/context/profile-personal-details",
    ]
    assert schema["version"] == "1.0" and schema["meta:containerId"] == "tenant"

    dataset = api.post(
        "/data/foundation/catalog/dataSets?requestDataSource=true",
        content=DOC_002_DATASET.replace("{SCHEMA_ID}", schema["$id"]).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert dataset.status_code == 201, dataset.text
    (ref,) = dataset.json()
    assert ref.startswith("@/dataSets/")
    dataset_id = ref.split("/")[-1]

    target = _send(
        api, "POST", f"{FS}/targetConnections", DOC_002_TARGET, SCHEMA_ID=schema["$id"], DATASET_ID=dataset_id
    )
    mapping = _send(
        api, "POST", "/data/foundation/conversion/mappingSets", DOC_002_MAPPING, SCHEMA_ID=schema["$id"]
    )
    assert mapping["outputSchemaRef"]["id"] == schema["$id"]
    assert {m["destinationXdmPath"] for m in mapping["mappings"]} == {
        "person.name.firstName",
        "person.name.lastName",
        "personalEmail.address",
    }

    specs = api.get(f"{FS}/flowSpecs?property=name==%22CRMToAEP%22").json()["items"]
    assert "14518937-270c-4525-bdec-c2ba7cce3860" in {s["id"] for s in specs}

    flow = _send(
        api,
        "POST",
        f"{FS}/flows",
        DOC_002_FLOW,
        SOURCE_ID=source["id"],
        TARGET_ID=target["id"],
        MAPPING_ID=mapping["id"],
    )
    assert set(flow) == {"id", "etag"}
    got = api.get(f"{FS}/flows/{flow['id']}").json()["items"][0]
    assert got["scheduleParams"] == {"startTime": 1567411548, "frequency": "minute", "interval": 30}
    assert got["transformations"][0]["params"]["deltaColumn"]["name"] == "updatedAt"


@pytest.fixture(scope="module")
def extconndev(server: LiveServer) -> dict[str, str]:
    """The organization of document 004, whose tenant id is ``extconndev``."""
    tenancy = server.services.tenancy
    org = tenancy.create_org("Extension connector development", "extconndev")
    client_id, secret = tenancy.create_client(org.id, "doc-004")
    return {
        "orgId": org.id,
        "apiKey": client_id,
        "secret": secret,
        "token": token_for(server.base_url, client_id, secret),
    }


@pytest.fixture
def dev_api(server: LiveServer, extconndev: dict[str, str]) -> Iterator[ApiClient]:
    e = extconndev
    with fresh_sandbox_client(
        server, e["orgId"], e["apiKey"], e["secret"], "extconndev", e["token"]
    ) as client:
        yield client


DOC_004_SOURCE = """{
"name": "Streaming Source Connection for Customer.io",
"providerId": "521eee4d-8cbe-4906-bb48-fb6bd4450033",
"description": "Streaming Source Connection for customer.io",
"connectionSpec": {
"id": "96479064-7b8a-4d69-b9ed-21c5683837ea",
"version": "1.0"
},
"data": {
"format": "json"
}
}"""

DOC_004_TARGET = """{
"name": "Streaming Target Connection for Customer.io",
"description": "Streaming Target Connection for Customer.io",
"connectionSpec": {
"id": "c604ff05-7f1a-43c0-8e18-33bf874cb11c",
"version": "1.0"
},
"data": {
"format": "json",
"schema": {
"id": "{SCHEMA_ID}",
"version": "application/vnd.adobe.xed-full+json;version=1"
}
},
"params": {
"dataSetId": "{DATASET_ID}"
}
}"""

DOC_004_MAPPING = """{
"outputSchema": {
"schemaRef": {
"id": "{SCHEMA_ID}",
"contentType": "application/vnd.adobe.xed-full+json;version=1"
}
},
"mappings": [
{
"destinationXdmPath": "_extconndev.cio_id",
"sourceAttribute": "data.identifiers.cio_id",
"identity": false,
"version": 0
},
{
"destinationXdmPath": "_extconndev.email",
"sourceAttribute": "data.identifiers.email",
"identity": false,
"version": 0
},
{
"destinationXdmPath": "_extconndev.event_id0",
"sourceAttribute": "event_id",
"identity": false,
"version": 0
},
{
"destinationXdmPath": "_extconndev.metricx",
"sourceAttribute": "metric",
"identity": false,
"version": 0
},
{
"destinationXdmPath": "_extconndev.object_type1",
"sourceAttribute": "object_type",
"identity": false,
"version": 0
},
{
"destinationXdmPath": "_extconndev.timestampx",
"sourceAttribute": "timestamp",
"identity": false,
"version": 0
}
]
}"""

DOC_004_FLOW = """{
"name": "Streaming Dataflow for Customer.io",
"description": "Streaming Dataflow for Customer.io",
"flowSpec": {
"id": "e77fde5a-22a8-11ed-861d-0242ac120002",
"version": "1.0"
},
"sourceConnectionIds": [
"{SOURCE_ID}"
],
"targetConnectionIds": [
"{TARGET_ID}"
],
"transformations": [
{
"name": "Mapping",
"params": {
"mappingId": "{MAPPING_ID}",
"mappingVersion": 0
}
}
]
}"""


def _customerio_schema(api: ApiClient) -> str:
    fields = {
        name: {"type": "string", "title": name}
        for name in ("cio_id", "email", "event_id0", "metricx", "object_type1", "timestampx")
    }
    group = api.post(
        "/data/foundation/schemaregistry/tenant/fieldgroups",
        json={
            "title": "Customer.io reporting webhook",
            "description": "",
            "type": "object",
            "meta:intendedToExtend": ["https://ns.adobe.com/xdm/context/experienceevent"],
            "definitions": {
                "customio": {"properties": {"_extconndev": {"type": "object", "properties": fields}}}
            },
            "allOf": [{"$ref": "#/definitions/customio"}],
        },
    )
    assert group.status_code == 201, group.text
    schema = api.post(
        "/data/foundation/schemaregistry/tenant/schemas",
        json={
            "type": "object",
            "title": "Customer.io events",
            "description": "",
            "allOf": [
                {"$ref": "https://ns.adobe.com/xdm/context/experienceevent"},
                {"$ref": group.json()["$id"]},
            ],
            "meta:class": "https://ns.adobe.com/xdm/context/experienceevent",
        },
    )
    assert schema.status_code == 201, schema.text
    return str(schema.json()["$id"])


def test_document_004_customerio_streaming_flow_as_written(server: LiveServer, dev_api: ApiClient) -> None:
    api = dev_api
    source = _send(api, "POST", f"{FS}/sourceConnections", DOC_004_SOURCE)
    schema_id = _customerio_schema(api)
    dataset = api.post(
        "/data/foundation/catalog/dataSets",
        json={
            "name": "Customer.io events",
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
        },
    )
    assert dataset.status_code == 201, dataset.text
    dataset_id = dataset.json()[0].split("/")[-1]
    target = _send(
        api, "POST", f"{FS}/targetConnections", DOC_004_TARGET, SCHEMA_ID=schema_id, DATASET_ID=dataset_id
    )
    mapping = _send(
        api, "POST", "/data/foundation/conversion/mappingSets", DOC_004_MAPPING, SCHEMA_ID=schema_id
    )
    flow = _send(
        api,
        "POST",
        f"{FS}/flows",
        DOC_004_FLOW,
        SOURCE_ID=source["id"],
        TARGET_ID=target["id"],
        MAPPING_ID=mapping["id"],
    )

    got = api.get(f"{FS}/flows/{flow['id']}")
    assert got.status_code == 200
    item = got.json()["items"][0]
    assert item["state"] == "enabled"
    assert item["inheritedAttributes"]["properties"]["isSourceFlow"] is True
    assert (
        item["inheritedAttributes"]["sourceConnections"][0]["connectionSpec"]["id"]
        == "96479064-7b8a-4d69-b9ed-21c5683837ea"
    )
    assert item["options"]["inletUrl"].startswith(str(api.base_url).rstrip("/").rsplit(":", 1)[0])
    assert "/collection/" in item["options"]["inletUrl"]
    assert item["transformations"][0]["params"] == {"mappingId": mapping["id"], "mappingVersion": 0}
    assert item["runs"] == f"/runs?property=flowId=={flow['id']}"

    # Customer.io's reporting webhooks, posted to the inlet URL, land mapped in the dataset.
    inlet = item["options"]["inletUrl"]
    for event_id, metric in (
        ("01E4C4C6P79C12J5A6KPE6XNFD", "sent"),
        ("01E4C4C6P79C12J5A6KPE6XNFE", "opened"),
    ):
        assert httpx.post(inlet, json=cio_event(event_id, metric=metric)).status_code == 200
    with streaming(server, api):
        landed = wait_rows(server, api, dataset_id, 2)
    mapped = sorted((r["_extconndev"]["event_id0"], r["_extconndev"]["metricx"]) for r in landed)
    assert mapped == [("01E4C4C6P79C12J5A6KPE6XNFD", "sent"), ("01E4C4C6P79C12J5A6KPE6XNFE", "opened")]
    assert {r["_extconndev"]["cio_id"] for r in landed} == {"d9c106000001"}
    assert {r["_extconndev"]["email"] for r in landed} == {"ada@example.com"}
    assert {r["_extconndev"]["object_type1"] for r in landed} == {"email"}

    update = api.patch(
        f"{FS}/flows/{flow['id']}",
        headers={"If-Match": item["etag"]},
        json=[{"op": "replace", "path": "/name", "value": "Customer.io events (renamed)"}],
    )
    assert update.status_code == 200, update.text
    renamed = api.get(f"{FS}/flows/{flow['id']}").json()["items"][0]
    assert renamed["name"] == "Customer.io events (renamed)"
    assert renamed["options"]["inletUrl"] == item["options"]["inletUrl"]

    assert api.delete(f"{FS}/flows/{flow['id']}").status_code == 204
    assert api.get(f"{FS}/flows/{flow['id']}").status_code == 404
